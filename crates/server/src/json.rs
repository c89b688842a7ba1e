//! A borrowed, one-pass view of ingest JSON: `serde_json` visits the body
//! once, straight from its bytes, into per-field [`Scalar`]s — no
//! `serde_json::Value` tree, and strings without escapes are not copied.
//!
//! Invariants: exactly the documents `serde_json::Value` accepts are accepted
//! (unknown fields are visited by [`Skip`], which still checks number ranges,
//! UTF-8 and nesting depth, rather than skipped unchecked); a key given twice
//! keeps its last value, as `Value`'s map does; containers are remembered only
//! by their type, which is all a field error names.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// One JSON value as an ingest field sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar<'a> {
    Null,
    Bool(bool),
    /// A non-negative integer (serde_json's `u64` numbers).
    U64(u64),
    /// A negative integer.
    I64(i64),
    /// Any other number (fraction, exponent, or beyond 64 bits).
    F64(f64),
    Str(Cow<'a, str>),
    Array,
    Object,
}

impl<'a> Scalar<'a> {
    /// The same view of an already parsed `Value` (numbers classified as
    /// serde_json classifies them while parsing).
    pub(crate) fn from_value(v: &'a Value) -> Scalar<'a> {
        match v {
            Value::Null => Scalar::Null,
            Value::Bool(b) => Scalar::Bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    Scalar::U64(u)
                } else if let Some(i) = n.as_i64() {
                    Scalar::I64(i)
                } else {
                    Scalar::F64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => Scalar::Str(Cow::Borrowed(s)),
            Value::Array(_) => Scalar::Array,
            Value::Object(_) => Scalar::Object,
        }
    }

    /// The type's name as errors print it ("a string", "an array", ...).
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Bool(_) => "a boolean",
            Scalar::U64(_) | Scalar::I64(_) | Scalar::F64(_) => "a number",
            Scalar::Str(_) => "a string",
            Scalar::Array => "an array",
            Scalar::Object => "an object",
        }
    }
}

/// Visits any JSON value fully (numbers parsed, strings UTF-8 checked) and
/// keeps nothing.
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Skip, D::Error> {
        d.deserialize_any(ScalarVisitor).map(|_| Skip)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Scalar<'de>, E> {
        Ok(if v >= 0 {
            Scalar::U64(v as u64)
        } else {
            Scalar::I64(v)
        })
    }
    fn visit_u64<E>(self, v: u64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::U64(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::F64(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Scalar<'de>, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar<'de>, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Scalar::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar<'de>, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Scalar::Object)
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Scalar<'de>, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

/// An object key, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The `tags` field: an object's entries (sorted by key, last duplicate
/// wins — as in `Value`'s map), or any other value, kept for its error.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TagsField<'a> {
    Map(Vec<(Cow<'a, str>, Scalar<'a>)>),
    Other(Scalar<'a>),
}

impl<'a> TagsField<'a> {
    #[cfg(test)]
    pub(crate) fn from_value(v: &'a Value) -> TagsField<'a> {
        match v {
            Value::Object(m) => TagsField::Map(
                m.iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), Scalar::from_value(v)))
                    .collect(),
            ),
            other => TagsField::Other(Scalar::from_value(other)),
        }
    }
}

impl<'de> Deserialize<'de> for TagsField<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TagsField<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TagsField<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TagsField<'de>, A::Error> {
                let mut entries: Vec<(Cow<'de, str>, Scalar<'de>)> = Vec::new();
                while let Some(Key(k)) = map.next_key()? {
                    let v: Scalar<'de> = map.next_value()?;
                    match entries.iter_mut().find(|(ek, _)| *ek == k) {
                        Some(slot) => slot.1 = v,
                        None => entries.push((k, v)),
                    }
                }
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(TagsField::Map(entries))
            }
            fn visit_bool<E>(self, v: bool) -> Result<TagsField<'de>, E> {
                Ok(TagsField::Other(Scalar::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<TagsField<'de>, E> {
                Ok(TagsField::Other(if v >= 0 {
                    Scalar::U64(v as u64)
                } else {
                    Scalar::I64(v)
                }))
            }
            fn visit_u64<E>(self, v: u64) -> Result<TagsField<'de>, E> {
                Ok(TagsField::Other(Scalar::U64(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<TagsField<'de>, E> {
                Ok(TagsField::Other(Scalar::F64(v)))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<TagsField<'de>, E> {
                Ok(TagsField::Other(Scalar::Str(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<TagsField<'de>, E> {
                Ok(TagsField::Other(Scalar::Str(Cow::Owned(v.to_owned()))))
            }
            fn visit_unit<E>(self) -> Result<TagsField<'de>, E> {
                Ok(TagsField::Other(Scalar::Null))
            }
            fn visit_none<E>(self) -> Result<TagsField<'de>, E> {
                Ok(TagsField::Other(Scalar::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<TagsField<'de>, A::Error> {
                ScalarVisitor.visit_seq(seq).map(TagsField::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// The fields of one `POST /v1/metrics` record that Sextant reads; unknown
/// fields are visited and dropped. `None`: the key is absent.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct CallFields<'a> {
    pub(crate) request_id: Option<Scalar<'a>>,
    pub(crate) timestamp: Option<Scalar<'a>>,
    pub(crate) model: Option<Scalar<'a>>,
    pub(crate) provider: Option<Scalar<'a>>,
    pub(crate) endpoint: Option<Scalar<'a>>,
    pub(crate) latency_ms: Option<Scalar<'a>>,
    pub(crate) time_to_first_token_ms: Option<Scalar<'a>>,
    pub(crate) prompt_tokens: Option<Scalar<'a>>,
    pub(crate) completion_tokens: Option<Scalar<'a>>,
    pub(crate) total_tokens: Option<Scalar<'a>>,
    pub(crate) cached_input_tokens: Option<Scalar<'a>>,
    pub(crate) reasoning_tokens: Option<Scalar<'a>>,
    pub(crate) cost_usd: Option<Scalar<'a>>,
    pub(crate) finish_reason: Option<Scalar<'a>>,
    pub(crate) error: Option<Scalar<'a>>,
    pub(crate) user_id: Option<Scalar<'a>>,
    pub(crate) session_id: Option<Scalar<'a>>,
    pub(crate) trace_id: Option<Scalar<'a>>,
    pub(crate) span_id: Option<Scalar<'a>>,
    pub(crate) tags: Option<TagsField<'a>>,
}

impl<'a> CallFields<'a> {
    /// The slot for a scalar field, None for `tags` and unknown keys.
    fn slot(&mut self, key: &str) -> Option<&mut Option<Scalar<'a>>> {
        Some(match key {
            "request_id" => &mut self.request_id,
            "timestamp" => &mut self.timestamp,
            "model" => &mut self.model,
            "provider" => &mut self.provider,
            "endpoint" => &mut self.endpoint,
            "latency_ms" => &mut self.latency_ms,
            "time_to_first_token_ms" => &mut self.time_to_first_token_ms,
            "prompt_tokens" => &mut self.prompt_tokens,
            "completion_tokens" => &mut self.completion_tokens,
            "total_tokens" => &mut self.total_tokens,
            "cached_input_tokens" => &mut self.cached_input_tokens,
            "reasoning_tokens" => &mut self.reasoning_tokens,
            "cost_usd" => &mut self.cost_usd,
            "finish_reason" => &mut self.finish_reason,
            "error" => &mut self.error,
            "user_id" => &mut self.user_id,
            "session_id" => &mut self.session_id,
            "trace_id" => &mut self.trace_id,
            "span_id" => &mut self.span_id,
            _ => return None,
        })
    }

    #[cfg(test)]
    /// The fields of an already parsed JSON object.
    pub(crate) fn from_map(map: &'a serde_json::Map<String, Value>) -> CallFields<'a> {
        let mut f = CallFields::default();
        for (k, v) in map {
            if k == "tags" {
                f.tags = Some(TagsField::from_value(v));
            } else if let Some(slot) = f.slot(k) {
                *slot = Some(Scalar::from_value(v));
            }
        }
        f
    }
}

/// One record of a metrics body: an object's fields, or the type of
/// whatever else stood there.
// Not boxed: an item lives on the stack only until it becomes an `LlmCall`
// (arrays are visited item by item), and a box would be one more allocation
// per record on the hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CallItem<'a> {
    Object(CallFields<'a>),
    NotObject(&'static str),
}

impl<'de> Deserialize<'de> for CallItem<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<CallItem<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CallItem<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CallItem<'de>, A::Error> {
                let mut f = CallFields::default();
                while let Some(Key(k)) = map.next_key()? {
                    if k == "tags" {
                        f.tags = Some(map.next_value()?);
                    } else if let Some(slot) = f.slot(&k) {
                        *slot = Some(map.next_value()?);
                    } else {
                        map.next_value::<Skip>()?;
                    }
                }
                Ok(CallItem::Object(f))
            }
            fn visit_bool<E>(self, _: bool) -> Result<CallItem<'de>, E> {
                Ok(CallItem::NotObject("a boolean"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<CallItem<'de>, E> {
                Ok(CallItem::NotObject("a number"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<CallItem<'de>, E> {
                Ok(CallItem::NotObject("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<CallItem<'de>, E> {
                Ok(CallItem::NotObject("a number"))
            }
            fn visit_str<E>(self, _: &str) -> Result<CallItem<'de>, E> {
                Ok(CallItem::NotObject("a string"))
            }
            fn visit_unit<E>(self) -> Result<CallItem<'de>, E> {
                Ok(CallItem::NotObject("null"))
            }
            fn visit_none<E>(self) -> Result<CallItem<'de>, E> {
                Ok(CallItem::NotObject("null"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<CallItem<'de>, A::Error> {
                ScalarVisitor.visit_seq(seq)?;
                Ok(CallItem::NotObject("an array"))
            }
        }
        d.deserialize_any(V)
    }
}

/// Visits a JSON array of metrics records, handing each to `f` as it is
/// decoded, so no array of decoded records is ever built.
pub(crate) struct EachCallItem<F>(pub(crate) F);

impl<'de, F: FnMut(CallItem<'de>)> DeserializeSeed<'de> for EachCallItem<F> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        struct V<F>(F);
        impl<'de, F: FnMut(CallItem<'de>)> Visitor<'de> for V<F> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON array")
            }
            fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
                while let Some(item) = seq.next_element::<CallItem<'de>>()? {
                    (self.0)(item);
                }
                Ok(())
            }
        }
        d.deserialize_seq(V(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(s: &str) -> CallItem<'_> {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn the_one_pass_view_equals_the_view_of_a_parsed_value() {
        let docs = [
            r#"{"request_id":"r1","model":"gpt-4o","latency_ms":12.5,"prompt_tokens":10,
               "completion_tokens":3,"finish_reason":"stop","error":null,"extra":{"a":[1,{"b":2}]},
               "tags":{"z":"1","a":2,"m":true,"n":null,"o":[1],"a":-3.5e2},"cost_usd":-1,
               "timestamp":"2027-01-15T08:00:00Z","user_id":"\u00e9\"q","model":"last wins"}"#,
            r#"{"prompt_tokens":18446744073709551616,"completion_tokens":-9223372036854775808,
               "total_tokens":1.0,"tags":"a=b","span_id":[1,2],"trace_id":{}}"#,
            r#"{"tags":null,"session_id":false}"#,
            r#"{}"#,
        ];
        for d in docs {
            let v: Value = serde_json::from_str(d).unwrap();
            let CallItem::Object(fast) = item(d) else {
                panic!("{d}")
            };
            assert_eq!(fast, CallFields::from_map(v.as_object().unwrap()), "{d}");
        }
        let CallItem::Object(f) = item(r#"{"model":"a","model":"b","tags":{"k":1,"k":"x"}}"#)
        else {
            panic!()
        };
        assert_eq!(f.model, Some(Scalar::Str("b".into())));
        assert_eq!(
            f.tags,
            Some(TagsField::Map(vec![("k".into(), Scalar::Str("x".into()))]))
        );
    }

    #[test]
    fn arrays_are_visited_item_by_item_in_order() {
        let body = br#"[{"model":"a"}, 7, {"model":"b"}, []]"#;
        let mut seen = Vec::new();
        let mut de = serde_json::Deserializer::from_slice(body);
        EachCallItem(|item: CallItem<'_>| {
            seen.push(match item {
                CallItem::Object(f) => format!("{:?}", f.model),
                CallItem::NotObject(t) => t.to_string(),
            })
        })
        .deserialize(&mut de)
        .unwrap();
        de.end().unwrap();
        assert_eq!(
            seen,
            [
                r#"Some(Str("a"))"#,
                "a number",
                r#"Some(Str("b"))"#,
                "an array"
            ]
        );
        let mut de = serde_json::Deserializer::from_slice(b"{}");
        assert!(EachCallItem(|_: CallItem<'_>| {})
            .deserialize(&mut de)
            .is_err());
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let CallItem::Object(f) = item(r#"{"model":"gpt-4o","user_id":"a\nb"}"#) else {
            panic!()
        };
        assert!(matches!(
            f.model,
            Some(Scalar::Str(Cow::Borrowed("gpt-4o")))
        ));
        assert!(matches!(f.user_id, Some(Scalar::Str(Cow::Owned(ref s))) if s == "a\nb"));
    }

    #[test]
    fn non_objects_are_named_by_type() {
        for (d, t) in [
            ("[1,2]", "an array"),
            ("3", "a number"),
            ("-3", "a number"),
            ("3.5", "a number"),
            ("\"x\"", "a string"),
            ("null", "null"),
            ("true", "a boolean"),
        ] {
            assert_eq!(item(d), CallItem::NotObject(t), "{d}");
        }
    }

    #[test]
    fn documents_value_rejects_are_rejected_even_in_unknown_fields() {
        for d in [
            r#"{"unknown": 1e999}"#,
            r#"{"unknown": [1e999]}"#,
            r#"{"unknown": {"x": 1e999}}"#,
            r#"{"model": "a",}"#,
            r#"{"model": "a"} x"#,
        ] {
            assert!(serde_json::from_str::<Value>(d).is_err(), "{d}");
            assert!(serde_json::from_str::<CallItem<'_>>(d).is_err(), "{d}");
        }
        let mut bad_utf8 = br#"{"unknown": "x"}"#.to_vec();
        bad_utf8[13] = 0xff;
        assert!(serde_json::from_slice::<Value>(&bad_utf8).is_err());
        assert!(serde_json::from_slice::<CallItem<'_>>(&bad_utf8).is_err());
        let deep = format!("{{\"unknown\": {}{}}}", "[".repeat(200), "]".repeat(200));
        assert!(serde_json::from_str::<Value>(&deep).is_err());
        assert!(serde_json::from_str::<CallItem<'_>>(&deep).is_err());
    }
}
