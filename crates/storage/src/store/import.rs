//! Test and benchmark support: loads pre-built rollups straight into a tier,
//! so benchmarks can hold years of rollups without ingesting hundreds of
//! millions of events. Not part of the supported API (`#[doc(hidden)]`).
//!
//! **Invariant:** rows are written exactly as downsampling writes them (same
//! keys, same encoding), so every read path sees an ordinary store.

use sextant_model::Tier;

use super::{meta_keys as mk, records::rollup_key, Store};
use crate::api::GroupKey;
use crate::db::{ts_key, Ops, T};
use crate::error::Result;
use crate::rollup::Rollup;

impl Store {
    /// Writes each `(bucket start, group, rollup)` into `tier`, replacing
    /// what was there. Buckets must be aligned to the tier (not checked
    /// beyond a debug assertion) and groups keyed by the store's rollup dims.
    #[doc(hidden)]
    pub fn import_rollups(
        &self,
        tier: Tier,
        rows: impl IntoIterator<Item = (i64, GroupKey, Rollup)>,
    ) -> Result<()> {
        let t = match tier {
            Tier::Minute => T::RollupMinute,
            Tier::Hour => T::RollupHour,
            _ => T::RollupDay,
        };
        let mut ops = Ops::default();
        for (bucket, group, r) in rows {
            debug_assert_eq!(tier.floor(bucket), bucket, "unaligned bucket");
            ops.put(t, rollup_key(bucket, &group), r.encode());
        }
        self.core().db.commit(&ops)?;
        self.core().db.flush()
    }

    /// Marks hours before `hour_until_ms` and days before `day_until_ms` as
    /// rolled up (the downsampling watermarks; they only grow).
    #[doc(hidden)]
    pub fn import_mark_rolled_up(&self, hour_until_ms: i64, day_until_ms: i64) -> Result<()> {
        let core = self.core();
        let mut st = core.state.write();
        let hour = st.wm.hour_until.max(Tier::Hour.floor(hour_until_ms));
        let day = st.wm.day_until.max(Tier::Day.floor(day_until_ms));
        let mut ops = Ops::default();
        ops.put(T::Meta, mk::HOUR_UNTIL, ts_key(hour).to_vec());
        ops.put(T::Meta, mk::DAY_UNTIL, ts_key(day).to_vec());
        core.db.commit(&ops)?;
        st.wm.hour_until = hour;
        st.wm.day_until = day;
        drop(st);
        core.db.flush()
    }
}
