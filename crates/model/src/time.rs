//! Time buckets and timestamp parsing. All times are Unix ms, UTC.

use serde::{Deserialize, Serialize};

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
pub const DAY_MS: i64 = 24 * HOUR_MS;
pub const WEEK_MS: i64 = 7 * DAY_MS;
/// Week buckets start on Mondays 00:00 UTC (ISO weeks): the Unix epoch,
/// 1970-01-01, was a Thursday, so the first week boundary after it is
/// 1970-01-05 = epoch + 4 days. Part of the on-disk format (format 3).
pub const WEEK_OFFSET_MS: i64 = 4 * DAY_MS;

/// A rollup resolution. Minute, hour and day buckets are aligned to the
/// Unix epoch (UTC days); week buckets are 7 days starting on Mondays
/// 00:00 UTC ([`WEEK_OFFSET_MS`]).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Minute,
    Hour,
    Day,
    Week,
}

impl Tier {
    /// Finest first.
    pub const ALL: [Tier; 4] = [Tier::Minute, Tier::Hour, Tier::Day, Tier::Week];

    /// Bucket width, ms.
    pub fn width_ms(self) -> i64 {
        match self {
            Tier::Minute => MINUTE_MS,
            Tier::Hour => HOUR_MS,
            Tier::Day => DAY_MS,
            Tier::Week => WEEK_MS,
        }
    }

    /// Where bucket starts fall modulo the width, ms: 0 except for weeks.
    pub fn offset_ms(self) -> i64 {
        match self {
            Tier::Minute | Tier::Hour | Tier::Day => 0,
            Tier::Week => WEEK_OFFSET_MS,
        }
    }

    /// Start of the bucket containing `ts_ms` (floors toward −∞).
    pub fn floor(self, ts_ms: i64) -> i64 {
        let w = self.width_ms();
        match self.offset_ms() {
            0 => ts_ms.div_euclid(w) * w,
            // Computed in i128 so no `ts_ms` overflows; saturates at i64::MIN.
            off => {
                let rem = (i128::from(ts_ms) - i128::from(off)).rem_euclid(i128::from(w));
                ts_ms.saturating_sub(rem as i64)
            }
        }
    }

    /// Smallest bucket start ≥ `ts_ms`.
    pub fn ceil(self, ts_ms: i64) -> i64 {
        let f = self.floor(ts_ms);
        if f == ts_ms {
            f
        } else {
            f.saturating_add(self.width_ms())
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Minute => "minute",
            Tier::Hour => "hour",
            Tier::Day => "day",
            Tier::Week => "week",
        }
    }
}

/// A half-open time range `[from_ms, to_ms)`, Unix ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TimeRange {
    pub from_ms: i64,
    pub to_ms: i64,
}

impl TimeRange {
    pub fn new(from_ms: i64, to_ms: i64) -> TimeRange {
        TimeRange { from_ms, to_ms }
    }

    pub fn is_empty(&self) -> bool {
        self.to_ms <= self.from_ms
    }

    pub fn contains(&self, ts_ms: i64) -> bool {
        ts_ms >= self.from_ms && ts_ms < self.to_ms
    }

    pub fn duration_ms(&self) -> i64 {
        (self.to_ms - self.from_ms).max(0)
    }
}

/// The current time, Unix ms.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Parses an RFC 3339 timestamp or an integer Unix-ms string.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return s.parse::<i64>().ok();
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Formats Unix ms as RFC 3339 with millisecond precision and a `Z` suffix.
pub fn format_rfc3339_ms(ts_ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ts_ms) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        None => ts_ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_and_ceil_align_to_epoch_buckets() {
        assert_eq!(Tier::Minute.floor(61_000), 60_000);
        assert_eq!(Tier::Minute.floor(-1), -60_000);
        assert_eq!(Tier::Hour.ceil(HOUR_MS + 1), 2 * HOUR_MS);
        assert_eq!(Tier::Day.ceil(DAY_MS), DAY_MS);
    }

    #[test]
    fn weeks_start_on_monday_utc() {
        // 2026-11-30T00:00:00Z is a Monday; 2026-11-29 a Sunday.
        let monday = 1_795_996_800_000;
        assert_eq!(
            format_rfc3339_ms(Tier::Week.floor(monday + 3 * DAY_MS + 5)),
            "2026-11-30T00:00:00.000Z"
        );
        assert_eq!(Tier::Week.floor(monday), monday);
        assert_eq!(Tier::Week.floor(monday - 1), monday - WEEK_MS);
        assert_eq!(Tier::Week.ceil(monday - 1), monday);
        assert_eq!(Tier::Week.ceil(monday + 1), monday + WEEK_MS);
        // Before the epoch and at the extremes: aligned, no overflow.
        assert_eq!(Tier::Week.floor(0), -3 * DAY_MS); // Mon 1969-12-29
        assert_eq!(Tier::Week.floor(-1), -3 * DAY_MS);
        assert_eq!(Tier::Week.floor(WEEK_OFFSET_MS), WEEK_OFFSET_MS);
        assert_eq!(Tier::Week.floor(i64::MIN), i64::MIN);
        let top = Tier::Week.floor(i64::MAX);
        assert!(i64::MAX - top < WEEK_MS && Tier::Day.floor(top) == top);
        // Every week is 7 whole days: day buckets tile week buckets.
        for ts in [-10 * WEEK_MS - 17, 0, monday + 12_345, 1 << 50] {
            let w = Tier::Week.floor(ts);
            assert_eq!(Tier::Day.floor(w), w);
            assert!(w <= ts && ts < w + WEEK_MS);
        }
    }

    #[test]
    fn parses_rfc3339_and_unix_ms() {
        assert_eq!(parse_timestamp("1700000000000"), Some(1_700_000_000_000));
        assert_eq!(
            parse_timestamp("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_timestamp("2023-11-14T23:13:20.5+01:00"),
            Some(1_700_000_000_500)
        );
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(
            format_rfc3339_ms(1_700_000_000_000),
            "2023-11-14T22:13:20.000Z"
        );
    }
}
