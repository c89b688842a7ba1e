//! The tier planner: splits a time range into the parts each source answers
//! exactly.
//!
//! **Invariants** (tested below with hand-built edges):
//! - the parts and the `missing` ranges are disjoint and together cover the
//!   requested range exactly, oldest first;
//! - a rollup part is a whole number of its tier's buckets, all inside the
//!   range, all inside the tier's retained window (`*_from_ms`) and, for
//!   hours, days and weeks, ending at or before `*_until_ms`;
//! - each piece is served by the coarsest tier that can serve it exactly
//!   (week, then day, then hour, then minute, then raw rows): whole weeks
//!   (Monday 00:00 UTC) from week rollups, the edges before and after them
//!   as before;
//! - when the filter or group_by names a non-rollup dim, or `exact` is set,
//!   only raw rows serve;
//! - whatever no retained source can serve is listed in `missing` (the
//!   answer is then `partial`) — never silently dropped.

use sextant_model::{format_rfc3339_ms, Dim, Tier, TimeRange};
use sextant_storage::{Coverage, RowFilter};

/// Which source answers a part.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PartSource {
    Week,
    Day,
    Hour,
    Minute,
    /// Raw rows (sealed segments and the head).
    Raw,
}

impl PartSource {
    /// The rollup tier, `None` for raw rows.
    pub fn tier(self) -> Option<Tier> {
        match self {
            PartSource::Week => Some(Tier::Week),
            PartSource::Day => Some(Tier::Day),
            PartSource::Hour => Some(Tier::Hour),
            PartSource::Minute => Some(Tier::Minute),
            PartSource::Raw => None,
        }
    }
}

/// One piece of a plan: `source` answers `range` exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub source: PartSource,
    pub range: TimeRange,
}

/// Why only raw rows can serve a query.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawReason {
    /// Rollups serve (not raw-only).
    None,
    /// `exact=true`.
    Exact,
    /// The filter or group_by names a dim rollups are not grouped by, or filters on error.
    NonRollupDim,
}

/// A plan for one range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Oldest first, disjoint.
    pub parts: Vec<Part>,
    /// Sub-ranges no retained source can answer, oldest first.
    pub missing: Vec<TimeRange>,
    pub raw_reason: RawReason,
}

impl Plan {
    pub fn is_partial(&self) -> bool {
        !self.missing.is_empty()
    }

    /// A sentence naming what could not be answered, `None` when nothing is missing.
    pub fn coverage_note(&self, coverage: &Coverage) -> Option<String> {
        coverage_note(&self.missing, self.raw_reason, coverage)
    }
}

/// The note for a set of missing ranges (shared by summaries and series).
pub(crate) fn coverage_note(
    missing: &[TimeRange],
    raw_reason: RawReason,
    coverage: &Coverage,
) -> Option<String> {
    let first = missing.first()?;
    let last = missing.last()?;
    let why = match raw_reason {
        RawReason::Exact => format!(
            "exact=true needs raw rows, retained from {}",
            format_rfc3339_ms(coverage.raw_from_ms)
        ),
        RawReason::NonRollupDim => format!(
            "the filter or group_by needs raw rows, retained from {}",
            format_rfc3339_ms(coverage.raw_from_ms)
        ),
        RawReason::None => format!(
            "past retention of every tier (raw rows from {}, minute rollups from {}, hour rollups from {}, day rollups from {}, week rollups from {})",
            format_rfc3339_ms(coverage.raw_from_ms),
            format_rfc3339_ms(coverage.minute_from_ms),
            format_rfc3339_ms(coverage.hour_from_ms),
            format_rfc3339_ms(coverage.day_from_ms),
            format_rfc3339_ms(coverage.week_from_ms),
        ),
    };
    let span = if missing.len() == 1 {
        format!(
            "[{}, {})",
            format_rfc3339_ms(first.from_ms),
            format_rfc3339_ms(first.to_ms)
        )
    } else {
        format!(
            "{} pieces between {} and {}",
            missing.len(),
            format_rfc3339_ms(first.from_ms),
            format_rfc3339_ms(last.to_ms)
        )
    };
    Some(format!("no data for {span}: {why}"))
}

/// True when rollups grouped by `rollup_dims` can answer this filter and grouping.
pub fn rollups_serve(rollup_dims: &[Dim], filter: &RowFilter, group_by: &[Dim]) -> bool {
    filter.served_by_rollups(rollup_dims) && group_by.iter().all(|d| rollup_dims.contains(d))
}

/// Plans `range`; see the module docs for the rules.
pub fn plan(
    range: TimeRange,
    coverage: &Coverage,
    rollup_dims: &[Dim],
    filter: &RowFilter,
    group_by: &[Dim],
    exact: bool,
) -> Plan {
    let raw_reason = if exact {
        RawReason::Exact
    } else if !rollups_serve(rollup_dims, filter, group_by) {
        RawReason::NonRollupDim
    } else {
        RawReason::None
    };
    let mut p = Plan {
        parts: Vec::new(),
        missing: Vec::new(),
        raw_reason,
    };
    let start = if raw_reason == RawReason::None {
        Level::Week
    } else {
        Level::Raw
    };
    let cov = Coverage {
        raw_from_ms: clamp_ts(coverage.raw_from_ms),
        minute_from_ms: clamp_ts(coverage.minute_from_ms),
        hour_from_ms: clamp_ts(coverage.hour_from_ms),
        hour_until_ms: clamp_ts(coverage.hour_until_ms),
        day_from_ms: clamp_ts(coverage.day_from_ms),
        day_until_ms: clamp_ts(coverage.day_until_ms),
        week_from_ms: clamp_ts(coverage.week_from_ms),
        week_until_ms: clamp_ts(coverage.week_until_ms),
    };
    let range = TimeRange::new(clamp_ts(range.from_ms), clamp_ts(range.to_ms));
    cover(range, start, &cov, &mut p);
    p
}

/// Timestamps beyond ±2^60 ms (±36 million years) are clamped so bucket
/// arithmetic cannot overflow.
pub(crate) const TS_LIMIT: i64 = 1 << 60;

fn clamp_ts(ts: i64) -> i64 {
    ts.clamp(-TS_LIMIT, TS_LIMIT)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Week,
    Day,
    Hour,
    Minute,
    Raw,
}

impl Level {
    fn finer(self) -> Level {
        match self {
            Level::Week => Level::Day,
            Level::Day => Level::Hour,
            Level::Hour => Level::Minute,
            Level::Minute | Level::Raw => Level::Raw,
        }
    }
}

fn cover(range: TimeRange, level: Level, cov: &Coverage, out: &mut Plan) {
    if range.is_empty() {
        return;
    }
    let (tier, source, from, until) = match level {
        Level::Week => (
            Tier::Week,
            PartSource::Week,
            cov.week_from_ms,
            cov.week_until_ms,
        ),
        Level::Day => (
            Tier::Day,
            PartSource::Day,
            cov.day_from_ms,
            cov.day_until_ms,
        ),
        Level::Hour => (
            Tier::Hour,
            PartSource::Hour,
            cov.hour_from_ms,
            cov.hour_until_ms,
        ),
        // Minute rollups include the head's open minutes: no upper limit.
        Level::Minute => (
            Tier::Minute,
            PartSource::Minute,
            cov.minute_from_ms,
            TS_LIMIT,
        ),
        Level::Raw => {
            let a = range.from_ms.max(cov.raw_from_ms).min(range.to_ms);
            if range.from_ms < a {
                push_missing(out, TimeRange::new(range.from_ms, a));
            }
            if a < range.to_ms {
                push_part(out, PartSource::Raw, TimeRange::new(a, range.to_ms));
            }
            return;
        }
    };
    // Whole buckets inside the range, starting at or after `from` and ending
    // at or before `until`.
    let a = tier.ceil(range.from_ms).max(tier.ceil(from));
    let b = tier.floor(range.to_ms).min(tier.floor(until));
    if a < b {
        cover(TimeRange::new(range.from_ms, a), level.finer(), cov, out);
        push_part(out, source, TimeRange::new(a, b));
        cover(TimeRange::new(b, range.to_ms), level.finer(), cov, out);
    } else {
        cover(range, level.finer(), cov, out);
    }
}

fn push_part(out: &mut Plan, source: PartSource, range: TimeRange) {
    if let Some(last) = out.parts.last_mut() {
        if last.source == source && last.range.to_ms == range.from_ms {
            last.range.to_ms = range.to_ms;
            return;
        }
    }
    out.parts.push(Part { source, range });
}

fn push_missing(out: &mut Plan, range: TimeRange) {
    if let Some(last) = out.missing.last_mut() {
        if last.to_ms == range.from_ms {
            last.to_ms = range.to_ms;
            return;
        }
    }
    out.missing.push(range);
}

#[cfg(test)]
mod tests {
    use super::*;
    use sextant_model::{DAY_MS, HOUR_MS, MINUTE_MS, WEEK_MS};

    const T0: i64 = 1_700_006_400_000; // 2023-11-15T00:00:00Z (a Wednesday), a day boundary
    /// 2023-11-20T00:00:00Z, the Monday after `T0`: a week boundary.
    const MON: i64 = T0 + 5 * DAY_MS;
    const DIMS: &[Dim] = &[Dim::Model, Dim::Endpoint];

    /// Everything retained; hour and day rollups written up to `T0 + 10
    /// days`, week rollups up to the last whole week before that (`MON`).
    fn full() -> Coverage {
        Coverage {
            raw_from_ms: 0,
            minute_from_ms: 0,
            hour_from_ms: 0,
            hour_until_ms: T0 + 10 * DAY_MS,
            day_from_ms: 0,
            day_until_ms: T0 + 10 * DAY_MS,
            week_from_ms: 0,
            week_until_ms: MON,
        }
    }

    /// Hours, days and weeks rolled up to `T0 + 400 days` (weeks to the
    /// Monday before it).
    fn long() -> Coverage {
        Coverage {
            hour_until_ms: T0 + 400 * DAY_MS,
            day_until_ms: T0 + 400 * DAY_MS,
            week_until_ms: Tier::Week.floor(T0 + 400 * DAY_MS),
            ..full()
        }
    }

    fn r(from: i64, to: i64) -> TimeRange {
        TimeRange::new(from, to)
    }

    fn parts(p: &Plan) -> Vec<(PartSource, i64, i64)> {
        p.parts
            .iter()
            .map(|x| (x.source, x.range.from_ms, x.range.to_ms))
            .collect()
    }

    fn plain(range: TimeRange, cov: &Coverage) -> Plan {
        let p = plan(range, cov, DIMS, &RowFilter::default(), &[], false);
        assert_covers_exactly(range, &p);
        p
    }

    /// Parts and missing ranges tile the range: disjoint, contiguous, in order.
    fn assert_covers_exactly(range: TimeRange, p: &Plan) {
        let mut pieces: Vec<TimeRange> = p.parts.iter().map(|x| x.range).collect();
        pieces.extend(p.missing.iter().copied());
        pieces.sort_by_key(|x| x.from_ms);
        if range.is_empty() {
            assert!(pieces.is_empty(), "{p:?}");
            return;
        }
        let mut at = range.from_ms;
        for x in &pieces {
            assert_eq!(x.from_ms, at, "gap or overlap in {p:?}");
            assert!(x.from_ms < x.to_ms, "empty piece in {p:?}");
            at = x.to_ms;
        }
        assert_eq!(at, range.to_ms, "{p:?}");
        for part in &p.parts {
            if let Some(t) = part.source.tier() {
                assert_eq!(t.floor(part.range.from_ms), part.range.from_ms, "{p:?}");
                assert_eq!(t.floor(part.range.to_ms), part.range.to_ms, "{p:?}");
            }
        }
    }

    #[test]
    fn aligned_days_are_served_by_day_rollups_alone() {
        let p = plain(r(T0, T0 + 3 * DAY_MS), &full());
        assert_eq!(parts(&p), vec![(PartSource::Day, T0, T0 + 3 * DAY_MS)]);
        assert!(!p.is_partial());
    }

    #[test]
    fn mid_minute_mid_hour_mid_day_edges_step_down_tier_by_tier() {
        let from = T0 + 5 * HOUR_MS + 7 * MINUTE_MS + 30_000; // day 0, 05:07:30
        let to = T0 + 2 * DAY_MS + 3 * HOUR_MS + 2 * MINUTE_MS + 15_000; // day 2, 03:02:15
        let p = plain(r(from, to), &full());
        assert_eq!(
            parts(&p),
            vec![
                (PartSource::Raw, from, T0 + 5 * HOUR_MS + 8 * MINUTE_MS),
                (
                    PartSource::Minute,
                    T0 + 5 * HOUR_MS + 8 * MINUTE_MS,
                    T0 + 6 * HOUR_MS
                ),
                (PartSource::Hour, T0 + 6 * HOUR_MS, T0 + DAY_MS),
                (PartSource::Day, T0 + DAY_MS, T0 + 2 * DAY_MS),
                (
                    PartSource::Hour,
                    T0 + 2 * DAY_MS,
                    T0 + 2 * DAY_MS + 3 * HOUR_MS
                ),
                (
                    PartSource::Minute,
                    T0 + 2 * DAY_MS + 3 * HOUR_MS,
                    T0 + 2 * DAY_MS + 3 * HOUR_MS + 2 * MINUTE_MS
                ),
                (
                    PartSource::Raw,
                    T0 + 2 * DAY_MS + 3 * HOUR_MS + 2 * MINUTE_MS,
                    to
                ),
            ]
        );
    }

    #[test]
    fn range_inside_one_minute_is_raw_only() {
        let p = plain(r(T0 + 10, T0 + 59_000), &full());
        assert_eq!(parts(&p), vec![(PartSource::Raw, T0 + 10, T0 + 59_000)]);
    }

    #[test]
    fn single_event_range_is_one_raw_ms() {
        let p = plain(r(T0 + 1234, T0 + 1235), &full());
        assert_eq!(parts(&p), vec![(PartSource::Raw, T0 + 1234, T0 + 1235)]);
    }

    #[test]
    fn empty_and_inverted_ranges_have_no_parts() {
        assert!(plain(r(T0, T0), &full()).parts.is_empty());
        let p = plain(r(T0 + 5, T0), &full());
        assert!(p.parts.is_empty() && p.missing.is_empty());
    }

    #[test]
    fn future_days_past_the_rolled_up_horizon_fall_to_minutes() {
        // day/hour rollups exist up to T0 + 10 d; a range reaching 20 d ahead
        // is days up to the horizon and minutes (which include the head) after.
        let p = plain(r(T0 + 9 * DAY_MS, T0 + 20 * DAY_MS), &full());
        assert_eq!(
            parts(&p),
            vec![
                (PartSource::Day, T0 + 9 * DAY_MS, T0 + 10 * DAY_MS),
                (PartSource::Minute, T0 + 10 * DAY_MS, T0 + 20 * DAY_MS),
            ]
        );
        assert!(!p.is_partial());
    }

    #[test]
    fn unclosed_hours_and_days_are_served_by_minutes() {
        let cov = Coverage {
            hour_until_ms: T0 + 3 * HOUR_MS + 30 * MINUTE_MS, // hour 3 not closed
            day_until_ms: T0,
            ..full()
        };
        let p = plain(r(T0, T0 + 5 * HOUR_MS), &cov);
        assert_eq!(
            parts(&p),
            vec![
                (PartSource::Hour, T0, T0 + 3 * HOUR_MS),
                (PartSource::Minute, T0 + 3 * HOUR_MS, T0 + 5 * HOUR_MS),
            ]
        );
    }

    #[test]
    fn past_minute_retention_an_unaligned_edge_is_missing_not_dropped() {
        // Raw and minutes kept 30 d, hours 400 d, days forever; now = T0 + 100 d.
        let now = T0 + 100 * DAY_MS;
        let cov = Coverage {
            raw_from_ms: now - 30 * DAY_MS,
            minute_from_ms: now - 30 * DAY_MS,
            hour_from_ms: now - 400 * DAY_MS,
            hour_until_ms: now - HOUR_MS,
            day_from_ms: i64::MIN,
            day_until_ms: now - DAY_MS,
            // No week rolled up (a store migrated after its last whole week).
            week_from_ms: i64::MIN,
            week_until_ms: i64::MIN,
        };
        let from = T0 + 10 * DAY_MS + 5 * MINUTE_MS + 1; // 90 d ago, mid-minute
        let p = plain(r(from, now), &cov);
        // Minute rollups and raw rows of 90 days ago are gone: the part of the
        // first hour that is not a whole hour cannot be answered.
        assert_eq!(p.missing, vec![r(from, T0 + 10 * DAY_MS + HOUR_MS)]);
        assert_eq!(
            parts(&p),
            vec![
                (
                    PartSource::Hour,
                    T0 + 10 * DAY_MS + HOUR_MS,
                    T0 + 11 * DAY_MS
                ),
                (PartSource::Day, T0 + 11 * DAY_MS, T0 + 99 * DAY_MS),
                (PartSource::Hour, T0 + 99 * DAY_MS, now - HOUR_MS),
                (PartSource::Minute, now - HOUR_MS, now),
            ]
        );
        let note = p.coverage_note(&cov).unwrap();
        assert!(note.contains("past retention"), "{note}");
    }

    #[test]
    fn retention_cutoffs_fall_to_the_next_finer_retained_tier() {
        // Day rollups dropped before T0+5d (a day-retention config), hours kept from T0+2d.
        let cov = Coverage {
            raw_from_ms: T0,
            minute_from_ms: T0,
            hour_from_ms: T0 + 2 * DAY_MS,
            hour_until_ms: T0 + 10 * DAY_MS,
            day_from_ms: T0 + 5 * DAY_MS,
            day_until_ms: T0 + 10 * DAY_MS,
            week_from_ms: T0 + 5 * DAY_MS,
            week_until_ms: T0 + 5 * DAY_MS,
        };
        let p = plain(r(T0, T0 + 7 * DAY_MS), &cov);
        assert_eq!(
            parts(&p),
            vec![
                (PartSource::Minute, T0, T0 + 2 * DAY_MS),
                (PartSource::Hour, T0 + 2 * DAY_MS, T0 + 5 * DAY_MS),
                (PartSource::Day, T0 + 5 * DAY_MS, T0 + 7 * DAY_MS),
            ]
        );
        assert!(!p.is_partial());
    }

    #[test]
    fn unaligned_retention_bounds_never_serve_a_partly_deleted_bucket() {
        let cov = Coverage {
            raw_from_ms: T0 + 90_000,
            minute_from_ms: T0 + 30_000,
            ..full()
        };
        let cov = Coverage {
            hour_from_ms: T0 + 2 * DAY_MS,
            day_from_ms: T0 + 2 * DAY_MS,
            ..cov
        };
        let p = plain(r(T0, T0 + 3 * MINUTE_MS), &cov);
        // The minute bucket at T0 is partly deleted (minutes kept from T0+30 s)
        // and raw rows start at T0+90 s: [T0, T0+1 min) cannot be answered.
        assert_eq!(p.missing, vec![r(T0, T0 + MINUTE_MS)]);
        assert_eq!(
            parts(&p),
            vec![(PartSource::Minute, T0 + MINUTE_MS, T0 + 3 * MINUTE_MS)]
        );
        // With raw rows from T0+10 s the edge is answered from raw rows.
        let cov = Coverage {
            raw_from_ms: T0 + 10_000,
            ..cov
        };
        let p = plain(r(T0 + 5_000, T0 + 3 * MINUTE_MS), &cov);
        assert_eq!(p.missing, vec![r(T0 + 5_000, T0 + 10_000)]);
        assert_eq!(
            parts(&p),
            vec![
                (PartSource::Raw, T0 + 10_000, T0 + MINUTE_MS),
                (PartSource::Minute, T0 + MINUTE_MS, T0 + 3 * MINUTE_MS),
            ]
        );
    }

    #[test]
    fn non_rollup_filters_and_group_bys_use_raw_rows_and_say_so_past_retention() {
        let cov = Coverage {
            raw_from_ms: T0 + DAY_MS,
            ..full()
        };
        let range = r(T0, T0 + 3 * DAY_MS);
        let by_user = RowFilter {
            equals: vec![(Dim::UserId, vec!["u1".into()])],
            error: None,
        };
        for (filter, group_by) in [
            (by_user, vec![]),
            (RowFilter::default(), vec![Dim::Tag("team".into())]),
            (
                RowFilter {
                    equals: vec![],
                    error: Some(true),
                },
                vec![],
            ),
        ] {
            let p = plan(range, &cov, DIMS, &filter, &group_by, false);
            assert_covers_exactly(range, &p);
            assert_eq!(
                parts(&p),
                vec![(PartSource::Raw, T0 + DAY_MS, T0 + 3 * DAY_MS)]
            );
            assert_eq!(p.missing, vec![r(T0, T0 + DAY_MS)]);
            assert_eq!(p.raw_reason, RawReason::NonRollupDim);
            assert!(p.coverage_note(&cov).unwrap().contains("needs raw rows"));
        }
        // A rollup-dim filter keeps the rollup plan.
        let by_model = RowFilter {
            equals: vec![(Dim::Model, vec!["m".into()])],
            error: None,
        };
        let p = plan(range, &cov, DIMS, &by_model, &[Dim::Endpoint], false);
        assert_eq!(parts(&p), vec![(PartSource::Day, T0, T0 + 3 * DAY_MS)]);
    }

    #[test]
    fn exact_uses_raw_rows_only() {
        let p = plan(
            r(T0, T0 + 2 * DAY_MS),
            &full(),
            DIMS,
            &RowFilter::default(),
            &[],
            true,
        );
        assert_eq!(parts(&p), vec![(PartSource::Raw, T0, T0 + 2 * DAY_MS)]);
        assert_eq!(p.raw_reason, RawReason::Exact);
    }

    #[test]
    fn a_year_plans_into_a_handful_of_parts() {
        let from = T0 + 17 * MINUTE_MS + 3;
        let p = plain(r(from, from + 365 * DAY_MS), &long());
        assert!(p.parts.len() <= 9, "{p:?}");
        // Whole weeks serve all but < 2 weeks of it: 51 week buckets.
        let weeks: Vec<_> = p
            .parts
            .iter()
            .filter(|x| x.source == PartSource::Week)
            .collect();
        assert_eq!(weeks.len(), 1, "{p:?}");
        assert_eq!(weeks[0].range.duration_ms(), 51 * WEEK_MS, "{p:?}");
    }

    #[test]
    fn whole_weeks_are_served_by_week_rollups_alone() {
        let cov = long();
        let p = plain(r(MON, MON + 2 * WEEK_MS), &cov);
        assert_eq!(parts(&p), vec![(PartSource::Week, MON, MON + 2 * WEEK_MS)]);
        assert!(!p.is_partial());
        // Exactly one week.
        let p = plain(r(MON + WEEK_MS, MON + 2 * WEEK_MS), &cov);
        assert_eq!(
            parts(&p),
            vec![(PartSource::Week, MON + WEEK_MS, MON + 2 * WEEK_MS)]
        );
    }

    #[test]
    fn mid_week_edges_step_down_week_day_hour_minute_raw() {
        // Starts Wednesday 05:07:30 before MON, ends the Thursday 03:02:15
        // two weeks after MON.
        let from = T0 + 5 * HOUR_MS + 7 * MINUTE_MS + 30_000;
        let to = MON + 2 * WEEK_MS + 3 * DAY_MS + 3 * HOUR_MS + 2 * MINUTE_MS + 15_000;
        let p = plain(r(from, to), &long());
        let end = MON + 2 * WEEK_MS;
        assert_eq!(
            parts(&p),
            vec![
                (PartSource::Raw, from, T0 + 5 * HOUR_MS + 8 * MINUTE_MS),
                (
                    PartSource::Minute,
                    T0 + 5 * HOUR_MS + 8 * MINUTE_MS,
                    T0 + 6 * HOUR_MS
                ),
                (PartSource::Hour, T0 + 6 * HOUR_MS, T0 + DAY_MS),
                (PartSource::Day, T0 + DAY_MS, MON),
                (PartSource::Week, MON, end),
                (PartSource::Day, end, end + 3 * DAY_MS),
                (
                    PartSource::Hour,
                    end + 3 * DAY_MS,
                    end + 3 * DAY_MS + 3 * HOUR_MS
                ),
                (
                    PartSource::Minute,
                    end + 3 * DAY_MS + 3 * HOUR_MS,
                    end + 3 * DAY_MS + 3 * HOUR_MS + 2 * MINUTE_MS
                ),
                (
                    PartSource::Raw,
                    end + 3 * DAY_MS + 3 * HOUR_MS + 2 * MINUTE_MS,
                    to
                ),
            ]
        );
        assert!(!p.is_partial());
    }

    #[test]
    fn a_range_starting_or_ending_on_a_week_boundary_has_one_edge() {
        let cov = long();
        // Starts on Monday, ends mid-week (Wednesday noon).
        let to = MON + WEEK_MS + 2 * DAY_MS + 12 * HOUR_MS;
        let p = plain(r(MON, to), &cov);
        assert_eq!(
            parts(&p),
            vec![
                (PartSource::Week, MON, MON + WEEK_MS),
                (PartSource::Day, MON + WEEK_MS, MON + WEEK_MS + 2 * DAY_MS),
                (PartSource::Hour, MON + WEEK_MS + 2 * DAY_MS, to),
            ]
        );
        // Starts mid-week (Saturday), ends on a Monday.
        let from = MON - 2 * DAY_MS;
        let p = plain(r(from, MON + 3 * WEEK_MS), &cov);
        assert_eq!(
            parts(&p),
            vec![
                (PartSource::Day, from, MON),
                (PartSource::Week, MON, MON + 3 * WEEK_MS),
            ]
        );
    }

    #[test]
    fn ranges_without_a_whole_week_use_days() {
        let cov = long();
        // Seven whole days, Wednesday to Wednesday: no week bucket inside.
        let p = plain(r(T0, T0 + 7 * DAY_MS), &cov);
        assert_eq!(parts(&p), vec![(PartSource::Day, T0, T0 + 7 * DAY_MS)]);
        // Shorter than a week, across a week boundary (Saturday to Tuesday).
        let p = plain(r(MON - 2 * DAY_MS, MON + 2 * DAY_MS), &cov);
        assert_eq!(
            parts(&p),
            vec![(PartSource::Day, MON - 2 * DAY_MS, MON + 2 * DAY_MS)]
        );
        // Six days of a week, starting on its Monday.
        let p = plain(r(MON, MON + 6 * DAY_MS), &cov);
        assert_eq!(parts(&p), vec![(PartSource::Day, MON, MON + 6 * DAY_MS)]);
    }

    #[test]
    fn weeks_past_their_watermarks_fall_to_days() {
        // Weeks rolled up to MON + 1 week only (the next one is still open),
        // and removed by retention before MON.
        let cov = Coverage {
            week_from_ms: MON,
            week_until_ms: MON + WEEK_MS,
            ..long()
        };
        let p = plain(r(MON - WEEK_MS, MON + 3 * WEEK_MS), &cov);
        assert_eq!(
            parts(&p),
            vec![
                (PartSource::Day, MON - WEEK_MS, MON),
                (PartSource::Week, MON, MON + WEEK_MS),
                (PartSource::Day, MON + WEEK_MS, MON + 3 * WEEK_MS),
            ]
        );
        // An unaligned week watermark never serves a partly covered week.
        let cov = Coverage {
            week_from_ms: MON + 1,
            week_until_ms: MON + 2 * WEEK_MS - 1,
            ..long()
        };
        let p = plain(r(MON, MON + 3 * WEEK_MS), &cov);
        // (Week MON is partly before week_from; week MON+1w partly past week_until.)
        assert_eq!(parts(&p), vec![(PartSource::Day, MON, MON + 3 * WEEK_MS)]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn plans_tile_any_range_under_any_coverage(
            from in 0i64..(40 * DAY_MS), len in 0i64..(40 * DAY_MS),
            raw in 0i64..(40 * DAY_MS), minute in 0i64..(40 * DAY_MS),
            hour in 0i64..(40 * DAY_MS), hour_until in 0i64..(60 * DAY_MS),
            day in 0i64..(40 * DAY_MS), day_until in 0i64..(60 * DAY_MS),
            week in 0i64..(40 * DAY_MS), week_until in 0i64..(60 * DAY_MS),
        ) {
            let cov = Coverage { raw_from_ms: raw, minute_from_ms: minute, hour_from_ms: hour,
                hour_until_ms: hour_until, day_from_ms: day, day_until_ms: day_until,
                week_from_ms: week, week_until_ms: week_until };
            let range = r(from, from + len);
            let p = plain(range, &cov);
            for part in &p.parts {
                let x = part.range;
                match part.source {
                    PartSource::Raw => proptest::prop_assert!(x.from_ms >= raw),
                    PartSource::Minute => proptest::prop_assert!(x.from_ms >= minute),
                    PartSource::Hour => proptest::prop_assert!(x.from_ms >= hour && x.to_ms <= hour_until),
                    PartSource::Day => proptest::prop_assert!(x.from_ms >= day && x.to_ms <= day_until),
                    PartSource::Week => proptest::prop_assert!(x.from_ms >= week && x.to_ms <= week_until),
                }
                // Coarsest first: no finer part holds a whole week the week tier covers.
                if part.source != PartSource::Week {
                    let w = Tier::Week.ceil(x.from_ms.max(week));
                    proptest::prop_assert!(
                        w + WEEK_MS > x.to_ms.min(week_until),
                        "{:?} holds the covered week at {}", part, w
                    );
                }
            }
            // Nothing retained is reported missing: every missing ms is older than the raw and minute cut-offs.
            for m in &p.missing {
                proptest::prop_assert!(m.to_ms <= raw);
            }
        }
    }
}
