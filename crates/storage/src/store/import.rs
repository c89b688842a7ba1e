//! Test and benchmark support: loads pre-built rollups straight into a tier,
//! so benchmarks can hold years of rollups without ingesting hundreds of
//! millions of events. Not part of the supported API (`#[doc(hidden)]`).
//!
//! **Invariant:** rows are written exactly as downsampling writes them (same
//! keys, same encoding), so every read path sees an ordinary store.

use sextant_model::Tier;

use super::{maint::rollup_tree, meta_keys as mk, records::rollup_key, Store};
use crate::api::GroupKey;
use crate::db::{ts_key, Bytes, Ops, T};
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
        let t = rollup_tree(tier);
        let mut ops = Ops::default();
        let mut hot = Vec::new();
        for (bucket, group, r) in rows {
            debug_assert_eq!(tier.floor(bucket), bucket, "unaligned bucket");
            let (key, value) = (rollup_key(bucket, &group), r.encode());
            if tier == Tier::Minute {
                hot.push((key.clone(), Bytes::from(value.as_slice())));
            }
            ops.put(t, key, value);
        }
        let core = self.core();
        {
            // The hot mirror changes with the tree (`store/hot.rs`).
            let mut st = core.state.write();
            core.db.commit(&ops)?;
            st.hot.insert(hot);
        }
        core.db.flush()
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

    /// Marks weeks before `week_until_ms` as rolled up (never past the day
    /// watermark: a week is rolled only once all its days are).
    #[doc(hidden)]
    pub fn import_mark_weeks_rolled_up(&self, week_until_ms: i64) -> Result<()> {
        let core = self.core();
        let mut st = core.state.write();
        let week = st
            .wm
            .week_until
            .max(Tier::Week.floor(week_until_ms.min(st.wm.day_until)));
        let mut ops = Ops::default();
        ops.put(T::Meta, mk::WEEK_UNTIL, ts_key(week).to_vec());
        core.db.commit(&ops)?;
        st.wm.week_until = week;
        drop(st);
        core.db.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StoreConfig;
    use sextant_model::{Dim, LlmCall, TimeRange, DAY_MS};

    #[test]
    fn imported_rollups_read_back_and_watermarks_mark_them_rolled_up() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            rollup_dims: vec![Dim::Model, Dim::Endpoint],
            background_maintenance: false,
            ..StoreConfig::default()
        };
        let day = 1_700_006_400_000; // a day boundary
        let mut r = Rollup::new(200);
        for i in 0..7 {
            r.add_call(&LlmCall {
                latency_ms: 100.0 + f64::from(i),
                ..LlmCall::default()
            });
        }
        let group = GroupKey(vec!["m".into(), "e".into()]);
        {
            let store = Store::open(dir.path(), config.clone()).unwrap();
            store
                .import_rollups(Tier::Day, [(day, group.clone(), r.clone())])
                .unwrap();
            store
                .import_mark_rolled_up(day + DAY_MS, day + DAY_MS)
                .unwrap();
        }
        // Persisted: visible after reopening.
        let store = Store::open(dir.path(), config).unwrap();
        let cov = store.coverage();
        assert_eq!(
            (cov.hour_until_ms, cov.day_until_ms),
            (day + DAY_MS, day + DAY_MS)
        );
        let mut seen = Vec::new();
        store
            .rollups(
                Tier::Day,
                TimeRange::new(day, day + DAY_MS),
                &Default::default(),
                &mut |b, g, x| seen.push((b, g.clone(), x.count, x.latency_min_ms)),
            )
            .unwrap();
        assert_eq!(seen, vec![(day, group, 7, 100.0)]);
    }

    #[test]
    fn imported_weeks_read_back_only_below_the_week_watermark_capped_by_days() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            background_maintenance: false,
            ..StoreConfig::default()
        };
        let monday = Tier::Week.floor(1_700_006_400_000);
        let mut r = Rollup::new(200);
        r.add_call(&LlmCall {
            latency_ms: 5.0,
            ..LlmCall::default()
        });
        let group = GroupKey(vec!["m".into(), "e".into()]);
        let week = sextant_model::WEEK_MS;
        {
            let store = Store::open(dir.path(), config.clone()).unwrap();
            store
                .import_rollups(Tier::Week, [(monday, group.clone(), r.clone())])
                .unwrap();
            // Days rolled up to mid-week only: the week is not closed.
            store
                .import_mark_rolled_up(monday + 3 * DAY_MS, monday + 3 * DAY_MS)
                .unwrap();
            store.import_mark_weeks_rolled_up(monday + week).unwrap();
            assert_eq!(store.coverage().week_until_ms, monday);
            store
                .import_mark_rolled_up(monday + week, monday + week)
                .unwrap();
            store.import_mark_weeks_rolled_up(monday + week).unwrap();
        }
        let store = Store::open(dir.path(), config).unwrap();
        assert_eq!(store.coverage().week_until_ms, monday + week);
        let mut seen = Vec::new();
        store
            .rollups(
                Tier::Week,
                TimeRange::new(i64::MIN, i64::MAX),
                &Default::default(),
                &mut |b, g, x| seen.push((b, g.clone(), x.count)),
            )
            .unwrap();
        assert_eq!(seen, vec![(monday, group, 1)]);
    }
}
