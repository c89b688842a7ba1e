//! 0003 week tier: a fourth rollup tier, `rollup_week` (7-day buckets
//! starting Mondays 00:00 UTC), with watermarks `wm.week_from` /
//! `wm.week_until` in `meta`.
//!
//! No rollup is rewritten here. Version-3 builds roll weeks up from day
//! rollups as weeks close, starting at `wm.week_until`; with the watermark
//! absent (`i64::MIN`) the first downsampling pass after this step builds
//! every week from the existing day rollups (one transaction, like any
//! downsampling pass). That is only exact where no day was deleted: when
//! day retention already removed days (`wm.day_from` set), this step starts
//! week coverage at the first week boundary at or after `wm.day_from`
//! (`wm.week_from = wm.week_until =` that boundary), so no week is built
//! from part of its days; older ranges stay answered by days and hours.
//!
//! The version bump also makes a version-2 build refuse the store: it would
//! neither re-roll late events into weeks nor keep days until their week
//! is rolled up.

use crate::{KvStore, Step, META_TREE};

pub(crate) const WEEK_TIER: Step = Step {
    version: 3,
    name: "0003_week_tier",
    apply,
};

/// Format 3's week alignment, frozen here: 7 days from Monday 1970-01-05,
/// i.e. epoch + 4 days (the epoch was a Thursday).
const DAY_MS: i64 = 86_400_000;
const WEEK_MS: i64 = 7 * DAY_MS;
const WEEK_OFFSET_MS: i64 = 4 * DAY_MS;

/// Decodes a `ts` watermark (i64 with the sign bit flipped, big-endian).
fn ts_from(v: &[u8]) -> Result<i64, String> {
    let a: [u8; 8] = v
        .try_into()
        .map_err(|_| format!("watermark of {} bytes", v.len()))?;
    Ok((u64::from_be_bytes(a) ^ (1 << 63)) as i64)
}

fn ts_bytes(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

/// The first week boundary at or after `ts` (saturating).
fn week_ceil(ts: i64) -> i64 {
    let rem = (i128::from(ts) - i128::from(WEEK_OFFSET_MS)).rem_euclid(i128::from(WEEK_MS)) as i64;
    if rem == 0 {
        ts
    } else {
        ts.saturating_add(WEEK_MS - rem)
    }
}

fn apply(store: &mut dyn KvStore) -> Result<(), String> {
    if store.get(META_TREE, b"wm.week_until")?.is_some() {
        return Ok(());
    }
    let Some(v) = store.get(META_TREE, b"wm.day_from")? else {
        return Ok(());
    };
    let day_from = ts_from(&v)?;
    if day_from == i64::MIN {
        return Ok(());
    }
    let start = ts_bytes(week_ceil(day_from));
    store.put(META_TREE, b"wm.week_from", &start)?;
    store.put(META_TREE, b"wm.week_until", &start)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn week_ceil_lands_on_mondays() {
        // 2026-11-30T00:00:00Z is a Monday.
        let monday = 1_795_996_800_000;
        assert_eq!(week_ceil(monday), monday);
        assert_eq!(week_ceil(monday - 1), monday);
        assert_eq!(week_ceil(monday - 6 * DAY_MS), monday);
        assert_eq!(week_ceil(monday + 1), monday + WEEK_MS);
        assert_eq!(week_ceil(i64::MAX), i64::MAX);
        assert_eq!(ts_from(&ts_bytes(-5)).unwrap(), -5);
        assert!(ts_from(&[1, 2]).is_err());
    }
}
