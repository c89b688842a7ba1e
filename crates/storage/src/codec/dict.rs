//! The in-memory side of the persistent string dictionary.
//!
//! **Invariants:** ids are dense from 0 in creation order and never reused; a
//! string has exactly one id. Entries created since the last
//! [`Dict::take_pending`] must be persisted (the engine writes them in the
//! same transaction as the segment that first uses them) before any segment
//! referring to them is readable.

use std::collections::HashMap;

use crate::error::CodecError;

#[derive(Debug, Clone, Default)]
pub(crate) struct Dict {
    strings: Vec<String>,
    ids: HashMap<String, u32>,
    /// Ids ≥ this are not yet handed out by `take_pending`.
    pending_from: usize,
}

impl Dict {
    pub(crate) fn new() -> Dict {
        Dict::default()
    }

    /// Rebuilds a dictionary from persisted entries (any order). Fails when
    /// the ids are not dense from 0 or a string appears twice.
    pub(crate) fn from_entries(
        entries: impl IntoIterator<Item = (u32, String)>,
    ) -> Result<Dict, CodecError> {
        let mut entries: Vec<(u32, String)> = entries.into_iter().collect();
        entries.sort_unstable_by_key(|e| e.0);
        let mut d = Dict::new();
        for (want, (id, s)) in entries.into_iter().enumerate() {
            if id as usize != want {
                return Err(CodecError::new(
                    "dictionary",
                    format!("ids are not dense: found {id} where {want} was expected"),
                ));
            }
            if d.ids.insert(s.clone(), id).is_some() {
                return Err(CodecError::new(
                    "dictionary",
                    format!("string {s:?} has two ids"),
                ));
            }
            d.strings.push(s);
        }
        d.pending_from = d.strings.len();
        Ok(d)
    }

    /// The id of `s`, creating it if new.
    pub(crate) fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = u32::try_from(self.strings.len()).expect("dictionary exceeds u32 ids");
        self.strings.push(s.to_owned());
        self.ids.insert(s.to_owned(), id);
        id
    }

    pub(crate) fn get(&self, id: u32) -> Option<&str> {
        self.strings.get(id as usize).map(String::as_str)
    }

    /// The id of `s` if it has one (never creates).
    pub(crate) fn lookup(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    /// Entries created since the last call, by id.
    pub(crate) fn take_pending(&mut self) -> Vec<(u32, String)> {
        let from = self.pending_from;
        self.pending_from = self.strings.len();
        self.strings[from..]
            .iter()
            .enumerate()
            .map(|(i, s)| ((from + i) as u32, s.clone()))
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.strings.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intern_is_dense_stable_and_pending_is_handed_out_once() {
        let mut d = Dict::new();
        assert_eq!(d.intern("gpt-4o"), 0);
        assert_eq!(d.intern(""), 1);
        assert_eq!(d.intern("gpt-4o"), 0);
        assert_eq!(
            d.take_pending(),
            vec![(0, "gpt-4o".into()), (1, String::new())]
        );
        assert!(d.take_pending().is_empty());
        assert_eq!(d.intern("x"), 2);
        let mut e = Dict::from_entries(vec![(1, String::new()), (0, "gpt-4o".into())]).unwrap();
        assert!(e.take_pending().is_empty());
        assert_eq!(e.intern("x"), 2);
        assert_eq!(e.get(1), Some(""));
        assert_eq!(e.get(3), None);
        assert_eq!(e.lookup("gpt-4o"), Some(0));
        assert_eq!(e.len(), 3);
    }

    #[test]
    fn from_entries_rejects_gaps_and_duplicates() {
        assert!(Dict::from_entries(vec![(1, "a".into())]).is_err());
        assert!(Dict::from_entries(vec![(0, "a".into()), (1, "a".into())]).is_err());
        assert!(Dict::from_entries(vec![(0, "a".into()), (0, "b".into())]).is_err());
    }
}
