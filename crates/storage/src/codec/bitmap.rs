//! Partitions: every row of a column belongs to exactly one of `k` classes
//! (null / present, a dictionary value, an id kind, …), stored as roaring
//! bitmaps of row numbers.
//!
//! Layout: `[k: varint][implicit class: varint]`, then for every class except
//! the implicit one, in class order, `[byte length: varint][roaring bitmap in
//! the standard portable format, run containers allowed]`. The implicit class
//! (the encoder picks the largest) holds every row no other class holds, so
//! the commonest case costs nothing.
//!
//! **Invariant:** decoded bitmaps are pairwise disjoint and hold only rows < n.

use roaring::RoaringBitmap;

use super::bytes::{put_bytes, put_varint, Reader};
use crate::error::CodecError;

/// `[byte length: varint][roaring bytes]`; an empty bitmap is just length 0.
pub(crate) fn put_bitmap(out: &mut Vec<u8>, b: &RoaringBitmap) {
    if b.is_empty() {
        out.push(0);
        return;
    }
    let mut b = b.clone();
    b.optimize();
    let mut buf = Vec::with_capacity(b.serialized_size());
    // Writing into a Vec cannot fail.
    let _ = b.serialize_into(&mut buf);
    put_bytes(out, &buf);
}

pub(crate) fn read_bitmap(r: &mut Reader<'_>, n: usize) -> Result<RoaringBitmap, CodecError> {
    let bytes = r.bytes()?;
    if bytes.is_empty() {
        return Ok(RoaringBitmap::new());
    }
    let b = RoaringBitmap::deserialize_from(bytes)
        .map_err(|e| r.err(format!("bad roaring bitmap: {e}")))?;
    if b.is_empty() || b.serialized_size() != bytes.len() {
        return Err(r.err("roaring bitmap has trailing bytes"));
    }
    if b.max().is_some_and(|m| m as usize >= n) {
        return Err(r.err(format!("bitmap row beyond the {n} rows")));
    }
    Ok(b)
}

/// Row sets above this many rows are built through a bit vector.
const DENSE: usize = 4096;

/// The bitmap of strictly increasing `rows`.
fn bitmap_of_sorted(rows: &[u32]) -> RoaringBitmap {
    let Some(&last) = rows.last() else {
        return RoaringBitmap::new();
    };
    if rows.len() > DENSE {
        let mut bits = vec![0u8; last as usize / 8 + 1];
        for &r in rows {
            bits[r as usize / 8] |= 1 << (r % 8);
        }
        return RoaringBitmap::from_lsb0_bytes(0, &bits);
    }
    RoaringBitmap::from_sorted_iter(rows.iter().copied())
        .unwrap_or_else(|_| rows.iter().copied().collect())
}

/// Rows split into classes; see the module docs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Partition {
    pub(crate) n: usize,
    pub(crate) implicit: usize,
    /// One entry per class; `None` for the implicit class.
    pub(crate) sets: Vec<Option<RoaringBitmap>>,
}

impl Partition {
    /// Builds the partition of `class_of` (one class per row, each < `k`).
    pub(crate) fn build(class_of: &[u32], k: usize) -> Partition {
        let mut counts = vec![0usize; k];
        for &c in class_of {
            counts[c as usize] += 1;
        }
        let implicit = (0..k)
            .max_by_key(|&c| (counts[c], usize::MAX - c))
            .unwrap_or(0);
        // Row numbers per class, increasing; then each bitmap in bulk
        // (inserting row by row costs a search per row; `try_push` into a
        // bitmap container scans it for its maximum).
        let mut rows: Vec<Vec<u32>> = counts
            .iter()
            .enumerate()
            .map(|(c, &len)| Vec::with_capacity(if c == implicit { 0 } else { len }))
            .collect();
        for (row, &c) in class_of.iter().enumerate() {
            if c as usize != implicit {
                if let Some(v) = rows.get_mut(c as usize) {
                    v.push(row as u32);
                }
            }
        }
        let sets: Vec<Option<RoaringBitmap>> = rows
            .into_iter()
            .enumerate()
            .map(|(c, v)| (c != implicit).then(|| bitmap_of_sorted(&v)))
            .collect();
        Partition {
            n: class_of.len(),
            implicit,
            sets,
        }
    }

    pub(crate) fn put(&self, out: &mut Vec<u8>) {
        put_varint(out, self.sets.len() as u64);
        put_varint(out, self.implicit as u64);
        for b in self.sets.iter().flatten() {
            put_bitmap(out, b);
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>, n: usize) -> Result<Partition, CodecError> {
        let k = r.count(r.remaining().saturating_add(1), "class")?;
        let implicit = r.varint()?;
        if k == 0 {
            if n != 0 {
                return Err(r.err("no classes for a non-empty column"));
            }
            return Ok(Partition {
                n,
                implicit: 0,
                sets: Vec::new(),
            });
        }
        if implicit >= k as u64 {
            return Err(r.err(format!("implicit class {implicit} of {k}")));
        }
        let implicit = implicit as usize;
        let mut sets = Vec::with_capacity(k);
        let mut total = 0u64;
        let mut union = RoaringBitmap::new();
        for c in 0..k {
            if c == implicit {
                sets.push(None);
                continue;
            }
            let b = read_bitmap(r, n)?;
            total += b.len();
            union |= &b;
            sets.push(Some(b));
        }
        if union.len() != total {
            return Err(r.err("partition classes overlap"));
        }
        Ok(Partition { n, implicit, sets })
    }

    pub(crate) fn classes(&self) -> usize {
        self.sets.len()
    }

    /// The rows of class `c`.
    pub(crate) fn rows(&self, c: usize) -> RoaringBitmap {
        match self.sets.get(c) {
            Some(Some(b)) => b.clone(),
            Some(None) => {
                let mut all = RoaringBitmap::new();
                all.insert_range(0..self.n as u32);
                for b in self.sets.iter().flatten() {
                    all -= b;
                }
                all
            }
            None => RoaringBitmap::new(),
        }
    }

    /// The class of every row.
    pub(crate) fn class_of(&self) -> Vec<u32> {
        let mut v = vec![self.implicit as u32; self.n];
        for (c, b) in self.sets.iter().enumerate() {
            if let Some(b) = b {
                for row in b {
                    v[row as usize] = c as u32;
                }
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn partition_round_trips(classes in proptest::collection::vec(0u32..5, 0..3000)) {
            let k = if classes.is_empty() { 0 } else { 5 };
            let p = Partition::build(&classes, k);
            let mut out = Vec::new();
            p.put(&mut out);
            let mut r = Reader::new("t", &out);
            let q = Partition::read(&mut r, classes.len()).unwrap();
            r.finish().unwrap();
            prop_assert_eq!(q.class_of(), classes.clone());
            for c in 0..k {
                let want: RoaringBitmap = classes.iter().enumerate().filter(|(_, &x)| x as usize == c).map(|(i, _)| i as u32).collect();
                prop_assert_eq!(q.rows(c), want);
            }
        }

        #[test]
        fn partition_decoder_survives_random_bytes(b in proptest::collection::vec(any::<u8>(), 0..80), n in 0usize..100) {
            let _ = Partition::read(&mut Reader::new("t", &b), n);
        }
    }

    /// Dense classes (more than [`DENSE`] rows, across several containers)
    /// are built in bulk: same set, same bytes as inserting row by row.
    #[test]
    fn dense_classes_match_row_by_row_insertion() {
        let n = 150_000u32;
        let classes: Vec<u32> = (0..n)
            .map(|i| match i {
                _ if i % 7 == 0 => 2,
                10_000..=20_000 | 70_000..=140_000 => 1,
                _ => 0,
            })
            .collect();
        let p = Partition::build(&classes, 3);
        for c in 0..3u32 {
            let want: RoaringBitmap = (0..n).filter(|&i| classes[i as usize] == c).collect();
            assert_eq!(p.rows(c as usize), want, "class {c}");
            if let Some(Some(b)) = p.sets.get(c as usize) {
                let (mut got, mut exp) = (Vec::new(), Vec::new());
                put_bitmap(&mut got, b);
                put_bitmap(&mut exp, &want);
                assert_eq!(got, exp, "class {c}");
            }
        }
        let mut out = Vec::new();
        p.put(&mut out);
        let q = Partition::read(&mut Reader::new("t", &out), n as usize).unwrap();
        assert_eq!(q.class_of(), classes);
    }

    #[test]
    fn overlapping_or_out_of_range_classes_are_rejected() {
        let mut out = Vec::new();
        put_varint(&mut out, 3);
        put_varint(&mut out, 0);
        let b: RoaringBitmap = [1u32, 2].into_iter().collect();
        put_bitmap(&mut out, &b);
        put_bitmap(&mut out, &b);
        assert!(Partition::read(&mut Reader::new("t", &out), 10).is_err());
        let mut out = Vec::new();
        put_varint(&mut out, 2);
        put_varint(&mut out, 0);
        put_bitmap(&mut out, &b);
        assert!(Partition::read(&mut Reader::new("t", &out), 2).is_err());
        assert!(Partition::read(&mut Reader::new("t", &out), 3).is_ok());
    }
}
