//! Message templates with Python `str.format` semantics for the forms the
//! seed uses: `{name}`, `{name:.Nf}`, `{name:.N%}` (value × 100, then `%`),
//! `{name:,.Nf}` (thousands separators), `{{` / `}}` escapes, and any other
//! text (including `$`) copied literally.
//!
//! **Invariant:** `parse` rejects every template `render` could not render,
//! so rendering never fails; a placeholder without a value renders `n/a`.

use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// No spec: Python's `str(float)`.
    Plain,
    Fixed,
    Percent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    kind: Kind,
    precision: Option<usize>,
    thousands: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field { name: String, spec: Spec },
}

/// A parsed message template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

impl Template {
    pub(crate) fn parse(s: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    text.push('}');
                }
                '}' => return Err("single '}' in template; write '}}' for a literal brace".into()),
                '{' => {
                    let mut field = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some('{') => return Err("nested '{' in a placeholder".into()),
                            Some(c) => field.push(c),
                            None => return Err("unclosed '{' in template".into()),
                        }
                    }
                    let (name, spec) = match field.split_once(':') {
                        Some((n, s)) => (n, parse_spec(s)?),
                        None => (
                            field.as_str(),
                            Spec {
                                kind: Kind::Plain,
                                precision: None,
                                thousands: false,
                            },
                        ),
                    };
                    if name.is_empty() {
                        return Err("empty placeholder '{}'; name a metric".into());
                    }
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(Part::Field {
                        name: name.to_string(),
                        spec,
                    });
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template { parts })
    }

    pub(crate) fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field { name, .. } => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    /// Renders with `lookup(name)` giving each placeholder's value.
    pub(crate) fn render(&self, lookup: impl Fn(&str) -> Option<f64>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field { name, spec } => match lookup(name) {
                    Some(v) => format_value(&mut out, v, spec),
                    None => out.push_str("n/a"),
                },
            }
        }
        out
    }
}

fn parse_spec(s: &str) -> Result<Spec, String> {
    let bad = || format!("unsupported format spec {s:?}; use .Nf, .N%, ,.Nf or none");
    let mut rest = s;
    let thousands = if let Some(r) = rest.strip_prefix(',') {
        rest = r;
        true
    } else {
        false
    };
    let (precision, kind_str) = if let Some(r) = rest.strip_prefix('.') {
        let digits: String = r.chars().take_while(|c| c.is_ascii_digit()).collect();
        if digits.is_empty() || digits.len() > 2 {
            return Err(bad());
        }
        (
            Some(digits.parse::<usize>().map_err(|_| bad())?),
            &r[digits.len()..],
        )
    } else {
        (None, rest)
    };
    let kind = match kind_str {
        "f" | "F" => Kind::Fixed,
        "%" => Kind::Percent,
        "" if precision.is_none() => Kind::Plain,
        _ => return Err(bad()),
    };
    Ok(Spec {
        kind,
        precision,
        thousands,
    })
}

fn format_value(out: &mut String, v: f64, spec: &Spec) {
    if !v.is_finite() {
        out.push_str(if v.is_nan() {
            "nan"
        } else if v > 0.0 {
            "inf"
        } else {
            "-inf"
        });
        if spec.kind == Kind::Percent {
            out.push('%');
        }
        return;
    }
    let s = match spec.kind {
        Kind::Plain => {
            // Python's repr of a float: integral values keep ".0".
            let mut s = format!("{v}");
            if v.fract() == 0.0 && v.abs() < 1e16 && !s.contains('e') {
                s.push_str(".0");
            }
            s
        }
        Kind::Fixed => format!("{:.*}", spec.precision.unwrap_or(6), v),
        Kind::Percent => format!("{:.*}", spec.precision.unwrap_or(6), v * 100.0),
    };
    if spec.thousands {
        push_with_thousands(out, &s);
    } else {
        out.push_str(&s);
    }
    if spec.kind == Kind::Percent {
        out.push('%');
    }
}

fn push_with_thousands(out: &mut String, s: &str) {
    let (sign, body) = match s.strip_prefix('-') {
        Some(b) => ("-", b),
        None => ("", s),
    };
    let (int, frac) = match body.find('.') {
        Some(i) => (&body[..i], &body[i..]),
        None => (body, ""),
    };
    out.push_str(sign);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    let _ = write!(out, "{frac}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(template: &str, value: f64, expected: &str) {
        let t = Template::parse(template).unwrap();
        assert_eq!(t.render(|_| Some(value)), expected, "template {template:?}");
    }

    #[test]
    fn seed_templates_render_like_python_str_format() {
        // Expected strings are what CPython 3 prints for the same format call.
        check(
            "High latency detected: P95 = {latency_p95_ms:.0f}ms",
            5001.4,
            "High latency detected: P95 = 5001ms",
        );
        check(
            "Critical latency: P99 = {latency_p99_ms:.0f}ms",
            10000.6,
            "Critical latency: P99 = 10001ms",
        );
        check(
            "High error rate: {error_rate:.1%}",
            0.0625,
            "High error rate: 6.2%",
        );
        check(
            "Critical error rate: {error_rate:.1%}",
            0.123,
            "Critical error rate: 12.3%",
        );
        check(
            "Cost spike: ${total_cost_usd:.2f} in monitoring window",
            123.456,
            "Cost spike: $123.46 in monitoring window",
        );
        check(
            "High token usage: avg {avg_tokens:.0f} tokens per request",
            12345.5,
            "High token usage: avg 12346 tokens per request",
        );
        check("{x:.0f}", 2.5, "2");
        check("{x:.0f}", 0.5, "0");
        check("{x}", 5001.0, "5001.0");
        check("{x}", 0.05, "0.05");
        check("{x:,.2f}", 1234567.891, "1,234,567.89");
        check("{x:,.0f}", -1234.0, "-1,234");
        check("{{literal}} {x:.1f}", 1.25, "{literal} 1.2");
        check("no placeholders $5", 1.0, "no placeholders $5");
    }

    #[test]
    fn missing_values_render_na_and_bad_templates_are_rejected() {
        let t = Template::parse("p95 {latency_p95_ms:.0f}").unwrap();
        assert_eq!(t.render(|_| None), "p95 n/a");
        for bad in [
            "{",
            "}",
            "{x:.f}",
            "{x:d}",
            "{}",
            "{x:.0q}",
            "{a{b}}",
            "{x:.123f}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
