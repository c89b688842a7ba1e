//! Reads: rollups, raw scans, traces, verify.
//!
//! **Invariant:** every read takes the state read lock once and takes its
//! view of the head, the head being sealed and the stored trees under it,
//! so it sees each acknowledged event exactly once (see `store/mod.rs`);
//! raw call scans read that view's rows after releasing the lock
//! (`store/scan.rs`).

use std::collections::{BTreeMap, HashSet};

use sextant_model::{Dim, Feedback, LlmCall, Quality, Span, Tier, TimeRange};

use crate::api::{GroupKey, RequestRef, RowFilter, TraceSummary, VerifyReport};
use crate::db::{ts_key, u64_from, T};
use crate::error::{Result, StorageError};
use crate::rollup::Rollup;
use crate::store::head::Head;
use crate::store::maint::hex;
use crate::store::records::{
    decode_request, decode_row, decode_span, decode_wal, parse_rollup_key, parse_span_time_key,
    trace_prefix, SegMeta,
};
use crate::store::{requests, Core, State};

fn group_matches(dims: &[Dim], filter: &RowFilter, g: &GroupKey) -> bool {
    filter
        .equals
        .iter()
        .all(|(dim, values)| match dims.iter().position(|d| d == dim) {
            Some(i) => g.0.get(i).is_some_and(|v| values.iter().any(|x| x == v)),
            None => true,
        })
}

fn heads(st: &State) -> impl Iterator<Item = &Head> {
    st.sealing
        .as_deref()
        .into_iter()
        .chain(std::iter::once(&st.head))
}

impl Core {
    pub(crate) fn collect_rollups(
        &self,
        tier: Tier,
        range: TimeRange,
        filter: &RowFilter,
    ) -> Result<BTreeMap<(i64, GroupKey), Rollup>> {
        let st = self.state.read_recursive();
        let wm = st.wm;
        let (lo, hi) = match tier {
            Tier::Minute => (range.from_ms.max(wm.minute_from), range.to_ms),
            Tier::Hour => (
                range.from_ms.max(wm.hour_from),
                range.to_ms.min(wm.hour_until),
            ),
            Tier::Day => (
                range.from_ms.max(wm.day_from),
                range.to_ms.min(wm.day_until),
            ),
            // Tier::Week (`Tier` is non-exhaustive).
            _ => (
                range.from_ms.max(wm.week_from),
                range.to_ms.min(wm.week_until),
            ),
        };
        let mut out: BTreeMap<(i64, GroupKey), Rollup> = BTreeMap::new();
        if hi <= lo {
            return Ok(out);
        }
        let t = match tier {
            Tier::Minute => T::RollupMinute,
            Tier::Hour => T::RollupHour,
            Tier::Day => T::RollupDay,
            _ => T::RollupWeek,
        };
        for kv in self.db.range(t, ts_key(lo).to_vec()..ts_key(hi).to_vec()) {
            let (k, v) = kv?;
            let Some((bucket, group)) = parse_rollup_key(&k) else {
                return Err(StorageError::Decode {
                    tree: t.name(),
                    key: hex(&k),
                    source: crate::error::CodecError::new("rollup key", "unparsable"),
                });
            };
            if !group_matches(&self.dims, filter, &group) {
                continue;
            }
            let r = Rollup::decode(&v).map_err(|e| StorageError::Decode {
                tree: t.name(),
                key: hex(&k),
                source: e,
            })?;
            out.insert((bucket, group), r);
        }
        for h in heads(&st) {
            for ((m, g), r) in h.rollups() {
                let b = tier.floor(*m);
                if b < lo || b >= hi || !group_matches(&self.dims, filter, g) {
                    continue;
                }
                out.entry((b, g.clone()))
                    .or_insert_with(|| Rollup::new(self.digest_size(tier)))
                    .merge(r);
            }
        }
        Ok(out)
    }

    pub(crate) fn scan_calls(
        &self,
        range: TimeRange,
        filter: &RowFilter,
        f: &mut dyn FnMut(&LlmCall),
    ) -> Result<()> {
        // The view is taken under the lock; the rows are read without it,
        // so a long scan never holds the writer out.
        let scan = {
            let st = self.state.read_recursive();
            let r = TimeRange::new(range.from_ms.max(st.wm.raw_from), range.to_ms);
            if r.is_empty() {
                return Ok(());
            }
            let n = heads(&st).count();
            self.call_scan(&st, vec![r], vec![vec![r]; n])
        };
        self.run_call_scan(&scan, filter, f)
    }

    pub(crate) fn scan_quality(
        &self,
        range: TimeRange,
        f: &mut dyn FnMut(&Quality, Option<&RequestRef>),
    ) -> Result<()> {
        self.scan_rows(
            T::Quality,
            range,
            |h| &h.quality,
            |q: &Quality| &q.request_id,
            |q| q.timestamp_ms,
            f,
        )
    }

    pub(crate) fn scan_feedback(
        &self,
        range: TimeRange,
        f: &mut dyn FnMut(&Feedback, Option<&RequestRef>),
    ) -> Result<()> {
        self.scan_rows(
            T::Feedback,
            range,
            |h| &h.feedback,
            |x: &Feedback| &x.request_id,
            |x| x.timestamp_ms,
            f,
        )
    }

    fn scan_rows<R: for<'de> serde::Deserialize<'de>>(
        &self,
        t: T,
        range: TimeRange,
        rows: impl Fn(&Head) -> &Vec<(Vec<u8>, R)>,
        id: impl Fn(&R) -> &String,
        ts: impl Fn(&R) -> i64,
        f: &mut dyn FnMut(&R, Option<&RequestRef>),
    ) -> Result<()> {
        let st = self.state.read_recursive();
        let r = TimeRange::new(range.from_ms.max(st.wm.raw_from), range.to_ms);
        if r.is_empty() {
            return Ok(());
        }
        for kv in self
            .db
            .range(t, ts_key(r.from_ms).to_vec()..ts_key(r.to_ms).to_vec())
        {
            let (k, v) = kv?;
            let row: R = decode_row(t.name(), &v).map_err(|e| StorageError::Decode {
                tree: t.name(),
                key: hex(&k),
                source: e,
            })?;
            let rr = self.lookup_request(&st, id(&row))?;
            f(&row, rr.as_ref());
        }
        for h in heads(&st) {
            for (_, row) in rows(h) {
                if r.contains(ts(row)) {
                    let rr = self.lookup_request(&st, id(row))?;
                    f(row, rr.as_ref());
                }
            }
        }
        Ok(())
    }

    pub(crate) fn trace(&self, trace_id: &str) -> Result<Vec<Span>> {
        let mut out = Vec::new();
        for kv in self.db.scan_prefix(T::Traces, &trace_prefix(trace_id)) {
            let (k, v) = kv?;
            out.push(decode_span(&v).map_err(|e| StorageError::Decode {
                tree: "traces",
                key: hex(&k),
                source: e,
            })?);
        }
        Ok(out)
    }

    pub(crate) fn recent_traces(&self, limit: usize) -> Result<Vec<TraceSummary>> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        for kv in self.db.range(T::TraceTime, ..).rev() {
            let (k, _) = kv?;
            let Some((_, trace_id, _)) = parse_span_time_key(&k) else {
                continue;
            };
            if !seen.insert(trace_id.clone()) {
                continue;
            }
            let first = self
                .db
                .scan_prefix(T::Traces, &trace_prefix(&trace_id))
                .next();
            if let Some(kv) = first {
                let (k, v) = kv?;
                let s = decode_span(&v).map_err(|e| StorageError::Decode {
                    tree: "traces",
                    key: hex(&k),
                    source: e,
                })?;
                out.push(TraceSummary {
                    trace_id,
                    start_unix_nano: s.start_unix_nano,
                    root_name: s.name,
                });
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn verify(&self) -> Result<VerifyReport> {
        let mut rep = VerifyReport::default();
        let codec = self.codec.read();
        let all = TimeRange::new(i64::MIN, i64::MAX);
        let none = RowFilter::default();
        let mut check = |t: T, k: &[u8], res: std::result::Result<(), String>| {
            rep.checked += 1;
            if let Err(msg) = res {
                rep.problems.push((format!("{}/{}", t.name(), hex(k)), msg));
            }
        };
        for kv in self.db.range(T::Segments, ..) {
            let (k, v) = kv?;
            let id = k.get(8..).and_then(u64_from).unwrap_or(0);
            let res = codec
                .decode(&v, all, &none)
                .map(|_| ())
                .map_err(|e| format!("segment {id}: {e}"));
            check(T::Segments, &k, res);
        }
        for kv in self.db.range(T::SegmentMeta, ..) {
            let (k, v) = kv?;
            check(
                T::SegmentMeta,
                &k,
                SegMeta::decode(&v).map(|_| ()).map_err(|e| e.to_string()),
            );
        }
        for t in [T::RollupMinute, T::RollupHour, T::RollupDay, T::RollupWeek] {
            for kv in self.db.range(t, ..) {
                let (k, v) = kv?;
                let res = match parse_rollup_key(&k) {
                    None => Err("unparsable key".to_string()),
                    Some(_) => Rollup::decode(&v).map(|_| ()).map_err(|e| e.to_string()),
                };
                check(t, &k, res);
            }
        }
        for kv in self.db.range(T::Dict, ..) {
            let (k, v) = kv?;
            check(
                T::Dict,
                &k,
                codec.verify_dict_entry(&k, &v).map_err(|e| e.to_string()),
            );
        }
        for kv in self.db.range(T::Wal, ..) {
            let (k, v) = kv?;
            check(
                T::Wal,
                &k,
                decode_wal(&v).map(|_| ()).map_err(|e| e.to_string()),
            );
        }
        for kv in self.db.range(T::Quality, ..) {
            let (k, v) = kv?;
            let res = decode_row::<Quality>("quality", &v).map(|_| ());
            check(T::Quality, &k, res.map_err(|e| e.to_string()));
        }
        for kv in self.db.range(T::Feedback, ..) {
            let (k, v) = kv?;
            let res = decode_row::<Feedback>("feedback", &v).map(|_| ());
            check(T::Feedback, &k, res.map_err(|e| e.to_string()));
        }
        for kv in self.db.range(T::Requests, ..) {
            let (k, v) = kv?;
            check(
                T::Requests,
                &k,
                decode_request(&v).map(|_| ()).map_err(|e| e.to_string()),
            );
        }
        for kv in self.db.range(T::RequestRunDir, ..) {
            let (k, v) = kv?;
            check(T::RequestRunDir, &k, requests::verify_dir_entry(&k, &v));
        }
        for kv in self.db.range(T::RequestRuns, ..) {
            let (k, v) = kv?;
            check(T::RequestRuns, &k, requests::verify_chunk(&v));
        }
        for kv in self.db.range(T::Traces, ..) {
            let (k, v) = kv?;
            check(
                T::Traces,
                &k,
                decode_span(&v).map(|_| ()).map_err(|e| e.to_string()),
            );
        }
        Ok(rep)
    }
}
