//! The head: acknowledged events not yet sealed, and their minute rollups.
//!
//! **Invariant:** the head holds exactly the events of the WAL entries in
//! `seqs`, applied in sequence order; replaying those entries into an empty
//! head rebuilds it (group resolution included, because it depends only on
//! what was stored or applied before).

use std::collections::HashMap;

use sextant_model::{Batch, Dim, Feedback, LlmCall, Quality, Tier};

use crate::api::{GroupKey, RequestRef};
use crate::db::ts_key;
use crate::rollup::Rollup;

/// Key of a quality or feedback row: ts, WAL sequence, index in the batch.
pub(crate) fn row_key(ts_ms: i64, seq: u64, idx: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(20);
    k.extend_from_slice(&ts_key(ts_ms));
    k.extend_from_slice(&seq.to_be_bytes());
    k.extend_from_slice(&idx.to_be_bytes());
    k
}

pub(crate) fn group_of(dims: &[Dim], call: &LlmCall) -> GroupKey {
    GroupKey(dims.iter().map(|d| d.value_of(call).to_string()).collect())
}

/// The group of a quality/feedback row whose call is unknown.
pub(crate) fn unknown_group(dims: &[Dim]) -> GroupKey {
    GroupKey(vec![String::new(); dims.len()])
}

#[derive(Debug, Default)]
pub(crate) struct Head {
    pub(crate) calls: Vec<LlmCall>,
    pub(crate) quality: Vec<(Vec<u8>, Quality)>,
    pub(crate) feedback: Vec<(Vec<u8>, Feedback)>,
    /// (minute bucket start ms, group) → rollup of the head's events there.
    pub(crate) rollups: HashMap<(i64, GroupKey), Rollup>,
    pub(crate) requests: HashMap<String, RequestRef>,
    /// WAL sequences applied, ascending.
    pub(crate) seqs: Vec<u64>,
    pub(crate) wal_bytes: u64,
    /// Wall-clock ms when the oldest event here was applied.
    pub(crate) first_applied_ms: Option<i64>,
}

impl Head {
    pub(crate) fn events(&self) -> usize {
        self.calls.len() + self.quality.len() + self.feedback.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    fn rollup(&mut self, bucket: i64, group: GroupKey, size: usize) -> &mut Rollup {
        self.rollups
            .entry((bucket, group))
            .or_insert_with(|| Rollup::new(size))
    }

    /// Applies one WAL batch. `lookup` finds calls not in this head.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn apply(
        &mut self,
        seq: u64,
        wal_bytes: u64,
        batch: Batch,
        dims: &[Dim],
        digest_size: usize,
        now_ms: i64,
        lookup: &dyn Fn(&str) -> Option<RequestRef>,
    ) {
        self.seqs.push(seq);
        self.wal_bytes += wal_bytes;
        if self.first_applied_ms.is_none() && !batch.is_empty() {
            self.first_applied_ms = Some(now_ms);
        }
        for call in batch.calls {
            let group = group_of(dims, &call);
            let bucket = Tier::Minute.floor(call.timestamp_ms);
            self.rollup(bucket, group.clone(), digest_size)
                .add_call(&call);
            self.requests.insert(
                call.request_id.clone(),
                RequestRef {
                    timestamp_ms: call.timestamp_ms,
                    group,
                },
            );
            self.calls.push(call);
        }
        for (i, q) in batch.quality.into_iter().enumerate() {
            let group = self.resolve(&q.request_id, dims, lookup);
            self.rollup(Tier::Minute.floor(q.timestamp_ms), group, digest_size)
                .add_quality(&q);
            self.quality
                .push((row_key(q.timestamp_ms, seq, i as u32), q));
        }
        for (i, fb) in batch.feedback.into_iter().enumerate() {
            let group = self.resolve(&fb.request_id, dims, lookup);
            self.rollup(Tier::Minute.floor(fb.timestamp_ms), group, digest_size)
                .add_feedback(&fb);
            self.feedback
                .push((row_key(fb.timestamp_ms, seq, i as u32), fb));
        }
    }

    fn resolve(
        &self,
        request_id: &str,
        dims: &[Dim],
        lookup: &dyn Fn(&str) -> Option<RequestRef>,
    ) -> GroupKey {
        match self.requests.get(request_id) {
            Some(r) => r.group.clone(),
            None => lookup(request_id)
                .map(|r| r.group)
                .unwrap_or_else(|| unknown_group(dims)),
        }
    }
}
