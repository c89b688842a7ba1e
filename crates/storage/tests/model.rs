//! Model-based test: random sequences of append / seal / downsample /
//! maintenance / reopen, with a fake clock, against an in-memory model.
//! Counts and fixed-point sums of raw scans and of every rollup tier must
//! match exactly; the median from merged minute digests within a rank bound.
//! Day retention is shorter than a week, so the model also checks that days
//! are kept until their week is rolled up (`day_from <= week_until`).

mod common;

use common::*;
use proptest::prelude::*;
use sextant_model::{Batch, LlmCall, Tier, TimeRange, DAY_MS, HOUR_MS, MINUTE_MS, WEEK_MS};
use sextant_storage::{Digest, Retention, RowFilter, Store, StoreConfig};

const GRACE_MS: i64 = 120_000;

fn model_config() -> StoreConfig {
    StoreConfig {
        retention: Retention {
            raw_ms: Some(2 * DAY_MS),
            minute_ms: Some(3 * DAY_MS),
            hour_ms: Some(6 * DAY_MS),
            day_ms: Some(4 * DAY_MS),
            week_ms: None,
            traces_ms: Some(2 * DAY_MS),
        },
        downsample_grace_ms: GRACE_MS,
        ..config()
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// `n` calls at `now - back_ms - i·step_ms`.
    Append {
        n: u64,
        back_ms: i64,
        step_ms: i64,
        seed: u64,
    },
    /// Feedback for the `k` most recent calls plus one unknown request.
    Feedback {
        k: usize,
    },
    Seal,
    Advance {
        ms: i64,
    },
    Downsample,
    Maintain,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u64..40, 0i64..3 * DAY_MS, 0i64..10 * MINUTE_MS, any::<u64>())
            .prop_map(|(n, back_ms, step_ms, seed)| Op::Append { n, back_ms, step_ms, seed }),
        1 => (0usize..5).prop_map(|k| Op::Feedback { k }),
        2 => Just(Op::Seal),
        2 => (0i64..2 * DAY_MS).prop_map(|ms| Op::Advance { ms }),
        // Long jumps, so that weeks close within a case.
        1 => (3 * DAY_MS..WEEK_MS + DAY_MS).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Downsample),
        2 => Just(Op::Maintain),
        1 => Just(Op::Reopen),
    ]
}

/// The reference: every event appended, and the tier watermarks as the
/// spec defines them.
#[derive(Debug)]
struct Model {
    now: i64,
    calls: Vec<LlmCall>,
    /// (feedback timestamp, known call?)
    feedback: Vec<(i64, bool)>,
    raw_from: i64,
    minute_from: i64,
    hour_from: i64,
    hour_until: i64,
    day_from: i64,
    day_until: i64,
    week_until: i64,
    next_id: u64,
}

impl Model {
    fn downsample(&mut self) {
        let closed = self.now - GRACE_MS;
        self.hour_until = Tier::Hour.floor(closed).max(self.hour_until);
        self.day_until = Tier::Day
            .floor(closed)
            .min(self.hour_until)
            .max(self.day_until);
        self.week_until = Tier::Week
            .floor(closed.min(self.day_until))
            .max(self.week_until);
    }

    fn retention(&mut self) {
        self.raw_from = (self.now - 2 * DAY_MS).max(self.raw_from);
        self.minute_from = Tier::Minute
            .floor(self.now - 3 * DAY_MS)
            .max(self.minute_from);
        self.hour_from = Tier::Hour.floor(self.now - 6 * DAY_MS).max(self.hour_from);
        // Days wait for their week's rollup.
        self.day_from = Tier::Day
            .floor(self.now - 4 * DAY_MS)
            .min(self.week_until)
            .max(self.day_from);
    }

    fn tier_sums(&self, tier: Tier) -> Sums {
        let (lo, hi) = match tier {
            Tier::Minute => (self.minute_from, i64::MAX),
            Tier::Hour => (self.hour_from, self.hour_until),
            Tier::Day => (self.day_from, self.day_until),
            _ => (i64::MIN, self.week_until),
        };
        let mut s = Sums::default();
        for c in &self.calls {
            let b = tier.floor(c.timestamp_ms);
            if b >= lo && b < hi {
                s.add(c);
            }
        }
        s
    }
}

fn check(store: &Store, m: &Model) -> Result<(), TestCaseError> {
    let cov = store.coverage();
    prop_assert_eq!(
        (
            cov.raw_from_ms,
            cov.minute_from_ms,
            cov.hour_from_ms,
            cov.hour_until_ms,
            cov.day_from_ms,
            cov.day_until_ms,
            cov.week_from_ms,
            cov.week_until_ms,
        ),
        (
            m.raw_from,
            m.minute_from,
            m.hour_from,
            m.hour_until,
            m.day_from,
            m.day_until,
            i64::MIN,
            m.week_until,
        )
    );
    let all = TimeRange::new(i64::MIN, i64::MAX);
    // Raw.
    let mut got = Sums::default();
    let mut ids = Vec::new();
    store
        .scan_calls(all, &RowFilter::default(), &mut |c| {
            got.add(c);
            ids.push(c.request_id.clone());
        })
        .unwrap();
    let mut want = Sums::default();
    let mut want_ids = Vec::new();
    for c in m.calls.iter().filter(|c| c.timestamp_ms >= m.raw_from) {
        want.add(c);
        want_ids.push(c.request_id.clone());
    }
    ids.sort();
    want_ids.sort();
    prop_assert_eq!(ids, want_ids);
    prop_assert_eq!(got, want);
    // Every tier.
    for tier in Tier::ALL {
        let mut got = Sums::default();
        let mut fb = 0;
        let mut latency: Option<Digest> = None;
        store
            .rollups(tier, all, &RowFilter::default(), &mut |_, _, r| {
                got.add_rollup(r);
                fb += r.feedback_count;
                if let Some(d) = &r.latency {
                    match &mut latency {
                        Some(l) => l.merge(d),
                        None => latency = Some(d.clone()),
                    }
                }
            })
            .unwrap();
        prop_assert_eq!(&got, &m.tier_sums(tier), "tier {:?}", tier);
        if tier == Tier::Minute {
            let want_fb = m
                .feedback
                .iter()
                .filter(|(ts, _)| Tier::Minute.floor(*ts) >= m.minute_from)
                .count();
            prop_assert_eq!(fb, want_fb as u64);
            // The median of merged digests within 10% rank of the exact one.
            let mut lat: Vec<f64> = m
                .calls
                .iter()
                .filter(|c| Tier::Minute.floor(c.timestamp_ms) >= m.minute_from)
                .map(|c| c.latency_ms)
                .collect();
            if lat.len() >= 20 {
                lat.sort_by(f64::total_cmp);
                let est = latency.unwrap().quantile(0.5);
                let rank = lat.iter().filter(|x| **x <= est).count() as f64 / lat.len() as f64;
                prop_assert!((rank - 0.5).abs() <= 0.1, "median rank {}", rank);
            }
        }
    }
    // Feedback rows.
    let mut fb = Vec::new();
    store
        .scan_feedback(all, &mut |f, r| fb.push((f.timestamp_ms, r.is_some())))
        .unwrap();
    fb.sort();
    let mut want_fb: Vec<(i64, bool)> = m
        .feedback
        .iter()
        .filter(|(ts, _)| *ts >= m.raw_from)
        .cloned()
        .collect();
    want_fb.sort();
    prop_assert_eq!(fb, want_fb);
    Ok(())
}

/// Runs `ops`; returns the calls the week tier held at the end.
fn run(ops: Vec<Op>) -> Result<u64, TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Some(Store::open(dir.path(), model_config()).unwrap());
    let mut m = Model {
        now: BASE_MS,
        calls: Vec::new(),
        feedback: Vec::new(),
        raw_from: i64::MIN,
        minute_from: i64::MIN,
        hour_from: i64::MIN,
        hour_until: i64::MIN,
        day_from: i64::MIN,
        day_until: i64::MIN,
        week_until: i64::MIN,
        next_id: 0,
    };
    for op in ops {
        let s = store.as_ref().unwrap();
        match op {
            Op::Append {
                n,
                back_ms,
                step_ms,
                seed,
            } => {
                let mut rng = fastrand::Rng::with_seed(seed);
                let calls: Vec<LlmCall> = (0..n)
                    .map(|i| {
                        m.next_id += 1;
                        call(&mut rng, m.next_id, m.now - back_ms - i as i64 * step_ms)
                    })
                    .collect();
                s.append(Batch::from_calls(calls.clone())).unwrap();
                m.calls.extend(calls);
            }
            Op::Feedback { k } => {
                let mut rng = fastrand::Rng::with_seed(k as u64);
                let mut batch = Batch::default();
                for c in m.calls.iter().rev().take(k) {
                    batch
                        .feedback
                        .push(feedback(&mut rng, &c.request_id, m.now));
                    m.feedback.push((m.now, true));
                }
                batch
                    .feedback
                    .push(feedback(&mut rng, "no-such-call", m.now - HOUR_MS));
                m.feedback.push((m.now - HOUR_MS, false));
                s.append(batch).unwrap();
            }
            Op::Seal => {
                s.seal(m.now).unwrap();
            }
            Op::Advance { ms } => m.now += ms,
            Op::Downsample => {
                s.downsample(m.now).unwrap();
                m.downsample();
            }
            Op::Maintain => {
                s.maintain(m.now).unwrap();
                m.downsample();
                m.retention();
            }
            Op::Reopen => {
                drop(store.take());
                store = Some(Store::open(dir.path(), model_config()).unwrap());
            }
        }
        check(store.as_ref().unwrap(), &m)?;
    }
    Ok(m.tier_sums(Tier::Week).count)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn store_agrees_with_an_in_memory_model(ops in prop::collection::vec(op(), 4..24)) {
        run(ops)?;
    }
}

#[test]
fn weeks_roll_up_late_events_reroll_and_days_wait_for_their_week() {
    // BASE_MS is a Monday. Calls over the first week; the week closes;
    // late calls for it arrive after it was rolled up; days are past
    // retention only once the week holds them.
    let seed = |s| Op::Append {
        n: 30,
        back_ms: 0,
        step_ms: 5 * HOUR_MS,
        seed: s,
    };
    let late = Op::Append {
        n: 10,
        back_ms: 2 * DAY_MS + 3 * HOUR_MS,
        step_ms: 7 * MINUTE_MS,
        seed: 9,
    };
    let ops = vec![
        Op::Advance { ms: 6 * DAY_MS },
        seed(1),
        Op::Seal,
        Op::Maintain,
        Op::Advance { ms: 2 * DAY_MS },
        late.clone(),
        Op::Maintain,
        Op::Reopen,
        late,
        Op::Seal,
        Op::Advance { ms: 5 * DAY_MS },
        Op::Maintain,
        Op::Reopen,
        Op::Advance { ms: WEEK_MS },
        Op::Maintain,
    ];
    let in_weeks = run(ops).unwrap();
    assert!(in_weeks >= 40, "the week tier held {in_weeks} calls");
}
