//! An in-memory model of the storage read API for the executor's tests:
//! rollups are computed on the fly from the raw events (minute rollups from
//! calls, hour, day and week rollups merged from minutes and re-compressed,
//! as the real store does), and the coverage limits are honoured exactly — data
//! before a tier's `*_from_ms` is invisible in that tier.

use std::collections::{BTreeMap, HashMap};

use sextant_model::{Dim, Feedback, LlmCall, Quality, Tier, TimeRange, MINUTE_MS};
use sextant_storage::{
    Coverage, GroupKey, RequestRef, Rollup, RollupView, RowFilter, StorageError,
};

use crate::source::{DataSource, RollupFn};

#[derive(Debug, Clone)]
pub(crate) struct MemSource {
    pub(crate) dims: Vec<Dim>,
    pub(crate) calls: Vec<LlmCall>,
    pub(crate) quality: Vec<Quality>,
    pub(crate) feedback: Vec<Feedback>,
    pub(crate) coverage: Coverage,
    by_id: HashMap<String, usize>,
}

pub(crate) fn everything() -> Coverage {
    Coverage {
        raw_from_ms: i64::MIN / 4,
        minute_from_ms: i64::MIN / 4,
        hour_from_ms: i64::MIN / 4,
        hour_until_ms: i64::MAX / 4,
        day_from_ms: i64::MIN / 4,
        day_until_ms: i64::MAX / 4,
        week_from_ms: i64::MIN / 4,
        week_until_ms: i64::MAX / 4,
    }
}

impl MemSource {
    pub(crate) fn new(
        calls: Vec<LlmCall>,
        quality: Vec<Quality>,
        feedback: Vec<Feedback>,
    ) -> MemSource {
        let by_id = calls
            .iter()
            .enumerate()
            .map(|(i, c)| (c.request_id.clone(), i))
            .collect();
        MemSource {
            dims: vec![Dim::Model, Dim::Endpoint],
            calls,
            quality,
            feedback,
            coverage: everything(),
            by_id,
        }
    }

    fn key_of(&self, c: &LlmCall) -> GroupKey {
        GroupKey(
            self.dims
                .iter()
                .map(|d| d.value_of(c).to_string())
                .collect(),
        )
    }

    fn reference(&self, request_id: &str) -> Option<RequestRef> {
        let c = &self.calls[*self.by_id.get(request_id)?];
        Some(RequestRef {
            timestamp_ms: c.timestamp_ms,
            group: self.key_of(c),
        })
    }

    fn key_passes(&self, filter: &RowFilter, key: &GroupKey) -> bool {
        filter.equals.iter().all(|(d, values)| {
            let i = self.dims.iter().position(|x| x == d).expect("rollup dim");
            values.iter().any(|v| *v == key.0[i])
        })
    }

    fn minute_rollups(&self, range: TimeRange) -> BTreeMap<(i64, GroupKey), Rollup> {
        let mut out: BTreeMap<(i64, GroupKey), Rollup> = BTreeMap::new();
        fn get(
            out: &mut BTreeMap<(i64, GroupKey), Rollup>,
            range: TimeRange,
            ts: i64,
            key: GroupKey,
        ) -> Option<&mut Rollup> {
            let b = Tier::Minute.floor(ts);
            range
                .contains(b)
                .then(|| out.entry((b, key)).or_insert_with(|| Rollup::new(50)))
        }
        for c in &self.calls {
            if let Some(r) = get(&mut out, range, c.timestamp_ms, self.key_of(c)) {
                r.add_call(c);
            }
        }
        let empty = GroupKey(vec![String::new(); self.dims.len()]);
        for q in &self.quality {
            let key = self
                .reference(&q.request_id)
                .map_or(empty.clone(), |r| r.group);
            if let Some(r) = get(&mut out, range, q.timestamp_ms, key) {
                r.add_quality(q);
            }
        }
        for f in &self.feedback {
            let key = self
                .reference(&f.request_id)
                .map_or(empty.clone(), |r| r.group);
            if let Some(r) = get(&mut out, range, f.timestamp_ms, key) {
                r.add_feedback(f);
            }
        }
        out
    }
}

impl DataSource for MemSource {
    fn coverage(&self) -> Coverage {
        self.coverage
    }

    fn rollup_dims(&self) -> Vec<Dim> {
        self.dims.clone()
    }

    fn rollups(
        &self,
        tier: Tier,
        range: TimeRange,
        filter: &RowFilter,
        f: &mut RollupFn<'_>,
    ) -> Result<(), StorageError> {
        assert!(
            filter.served_by_rollups(&self.dims),
            "rollups asked for a non-rollup filter"
        );
        let cov = &self.coverage;
        let (from, until, size) = match tier {
            Tier::Minute => (cov.minute_from_ms, i64::MAX, 50),
            Tier::Hour => (cov.hour_from_ms, cov.hour_until_ms, 100),
            Tier::Day => (cov.day_from_ms, cov.day_until_ms, 200),
            _ => (cov.week_from_ms, cov.week_until_ms, 200),
        };
        // Widen to whole buckets of `tier` so coarse buckets get all their minutes.
        let wide = TimeRange::new(tier.floor(range.from_ms), tier.ceil(range.to_ms));
        let mut merged: BTreeMap<(i64, GroupKey), Rollup> = BTreeMap::new();
        for ((m, key), r) in self.minute_rollups(wide) {
            let b = tier.floor(m);
            if !range.contains(b)
                || b < from
                || b + tier.width_ms() > until
                || !self.key_passes(filter, &key)
            {
                continue;
            }
            merged
                .entry((b, key))
                .or_insert_with(|| Rollup::new(size))
                .merge(&r);
        }
        for ((b, key), mut r) in merged {
            r.resize_digests(size);
            // Like the store: mostly stored bytes read in place, some
            // rollups in memory (the store's head), mixed within buckets.
            let in_memory =
                (b / MINUTE_MS + key.0.iter().map(String::len).sum::<usize>() as i64) % 3 == 0;
            if in_memory {
                f(b, &key, &RollupView::of(&r))?;
            } else {
                let bytes = r.encode();
                f(b, &key, &RollupView::decode(&bytes)?)?;
            }
        }
        Ok(())
    }

    fn scan_calls(
        &self,
        range: TimeRange,
        filter: &RowFilter,
        f: &mut dyn FnMut(&LlmCall),
    ) -> Result<(), StorageError> {
        for c in &self.calls {
            if range.contains(c.timestamp_ms)
                && c.timestamp_ms >= self.coverage.raw_from_ms
                && filter.matches(c)
            {
                f(c);
            }
        }
        Ok(())
    }

    fn scan_quality(
        &self,
        range: TimeRange,
        f: &mut dyn FnMut(&Quality, Option<&RequestRef>),
    ) -> Result<(), StorageError> {
        for q in &self.quality {
            if range.contains(q.timestamp_ms) && q.timestamp_ms >= self.coverage.raw_from_ms {
                f(q, self.reference(&q.request_id).as_ref());
            }
        }
        Ok(())
    }

    fn scan_feedback(
        &self,
        range: TimeRange,
        f: &mut dyn FnMut(&Feedback, Option<&RequestRef>),
    ) -> Result<(), StorageError> {
        for x in &self.feedback {
            if range.contains(x.timestamp_ms) && x.timestamp_ms >= self.coverage.raw_from_ms {
                f(x, self.reference(&x.request_id).as_ref());
            }
        }
        Ok(())
    }
}
