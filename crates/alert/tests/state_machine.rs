//! Table-driven tests of the pure state machine with a fake clock: each case
//! is a script of evaluations (time, observation) with the phase and the
//! notifications expected after each, checked by one helper.

use std::collections::HashMap;

use sextant_alert::{
    compile_rule, default_rules, evaluate, instance_key, EvalContext, GroupObservation,
    InstanceState, Labels, Notification, NotifyKind, Observation, Phase, Rule, RuleResult, Silence,
};

use NotifyKind::{Escalated as Esc, Firing as Fire, Repeat as Rep, Resolved as Res};
use Phase::{Error as Err_, Firing, Inactive, NoData, Pending, Recovering};

#[derive(Clone, Copy)]
enum Obs {
    V(f64),
    /// Value with a sample count.
    N(f64, u64),
    Missing,
    Fail,
}

enum Ev {
    /// (seconds, observation, expected phase, expected notifications)
    Eval(i64, Obs, Phase, &'static [NotifyKind]),
    /// The process restarts at this second with this grace (seconds).
    Restart(i64, i64),
    /// A silence covering the rule over [from, to) seconds.
    Silence(i64, i64),
}

use Ev::{Eval as E, Restart, Silence as Sil};

fn rule(edit: impl FnOnce(&mut Rule)) -> Rule {
    let mut r = Rule {
        name: "r".into(),
        metric: "latency_p95_ms".into(),
        window_minutes: 5,
        filters: Default::default(),
        group_by: vec![],
        op: ">".into(),
        threshold: 5000.0,
        warning_threshold: None,
        for_seconds: 0,
        keep_firing_for_seconds: 0,
        repeat_interval_seconds: 0,
        min_samples: 0,
        no_data: "ok".into(),
        severity: "critical".into(),
        labels: Default::default(),
        message: "p95 {latency_p95_ms:.0f}ms".into(),
        notifiers: vec![],
    };
    edit(&mut r);
    r
}

/// Runs `script` and checks every step; returns every notification.
fn check(name: &str, rule: Rule, script: &[Ev]) -> Vec<Notification> {
    let compiled = compile_rule(&rule, &[]).unwrap();
    let rules = vec![compiled];
    let mut state: HashMap<String, InstanceState> = HashMap::new();
    let mut restarted_at_ms = i64::MIN / 2;
    let mut grace_ms = 0;
    let mut silences: Vec<Silence> = Vec::new();
    let mut all = Vec::new();
    let key = instance_key(&rule.name, &Labels::new());
    for (i, ev) in script.iter().enumerate() {
        match ev {
            Restart(at, grace) => {
                restarted_at_ms = at * 1000;
                grace_ms = grace * 1000;
            }
            Sil(from, to) => silences.push(Silence {
                id: "s".into(),
                rule: Some(rule.name.clone()),
                matchers: Default::default(),
                starts_ms: from * 1000,
                ends_ms: to * 1000,
                comment: String::new(),
            }),
            E(t, obs, phase, notes) => {
                let result: RuleResult = match obs {
                    Obs::Fail => Err("query failed".into()),
                    o => Ok(vec![GroupObservation {
                        labels: Labels::new(),
                        observation: match o {
                            Obs::V(v) => Observation::Value {
                                value: *v,
                                samples: 100,
                            },
                            Obs::N(v, n) => Observation::Value {
                                value: *v,
                                samples: *n,
                            },
                            _ => Observation::NoData,
                        },
                        metrics: None,
                    }]),
                };
                let results = HashMap::from([(rule.name.clone(), result)]);
                let ctx = EvalContext {
                    now_ms: t * 1000,
                    restarted_at_ms,
                    grace_ms,
                };
                let ev = evaluate(&rules, &results, &state, &silences, &ctx);
                let got_phase = ev.next.get(&key).map(|s| s.phase);
                let got: Vec<NotifyKind> = ev.notifications.iter().map(|n| n.kind).collect();
                assert_eq!(got_phase, Some(*phase), "{name}: step {i} (t={t}s): phase");
                assert_eq!(&got[..], *notes, "{name}: step {i} (t={t}s): notifications");
                all.extend(ev.notifications);
                state = ev.next;
            }
        }
    }
    check_keys(name, &all);
    all
}

/// Idempotency keys are unique per notification; resolve and trigger of one
/// episode share the episode key.
fn check_keys(name: &str, all: &[Notification]) {
    let mut seen = std::collections::HashSet::new();
    for n in all {
        assert!(
            seen.insert(n.idempotency_key.clone()),
            "{name}: duplicate key {}",
            n.idempotency_key
        );
        assert!(n.idempotency_key.starts_with(&n.episode_key));
    }
    for r in all.iter().filter(|n| n.kind == Res) {
        assert!(
            all.iter()
                .any(|f| f.kind == Fire && f.episode_key == r.episode_key),
            "{name}: resolve without a firing of its episode"
        );
    }
}

const HI: Obs = Obs::V(6000.0);
const LO: Obs = Obs::V(100.0);

#[test]
fn for_delays_firing_until_elapsed_and_resolve_is_sent_once() {
    check(
        "for",
        rule(|r| r.for_seconds = 60),
        &[
            E(0, HI, Pending, &[]),
            E(15, HI, Pending, &[]),
            E(45, HI, Pending, &[]),
            E(60, HI, Firing, &[Fire]),
            E(75, HI, Firing, &[]),
            E(90, LO, Inactive, &[Res]),
            E(105, LO, Inactive, &[]),
        ],
    );
}

#[test]
fn pending_that_clears_never_notifies() {
    check(
        "pending cancelled",
        rule(|r| r.for_seconds = 60),
        &[
            E(0, HI, Pending, &[]),
            E(30, LO, Inactive, &[]),
            E(45, HI, Pending, &[]),
            E(90, HI, Pending, &[]),
            E(105, HI, Firing, &[Fire]),
        ],
    );
}

#[test]
fn without_for_fires_and_resolves_on_the_first_evaluation() {
    check(
        "no for",
        rule(|_| {}),
        &[
            E(0, LO, Inactive, &[]),
            E(15, HI, Firing, &[Fire]),
            E(30, LO, Inactive, &[Res]),
        ],
    );
}

#[test]
fn threshold_is_strict_for_gt_and_inclusive_for_ge() {
    check(
        "gt",
        rule(|_| {}),
        &[
            E(0, Obs::V(5000.0), Inactive, &[]),
            E(15, Obs::V(5000.5), Firing, &[Fire]),
        ],
    );
    check(
        "ge",
        rule(|r| r.op = ">=".into()),
        &[E(0, Obs::V(5000.0), Firing, &[Fire])],
    );
    check(
        "lt",
        rule(|r| {
            r.op = "<".into();
            r.threshold = 10.0
        }),
        &[
            E(0, Obs::V(10.0), Inactive, &[]),
            E(1, Obs::V(9.0), Firing, &[Fire]),
        ],
    );
}

#[test]
fn repeats_are_spaced_by_repeat_interval_and_zero_means_never() {
    check(
        "repeat",
        rule(|r| r.repeat_interval_seconds = 300),
        &[
            E(0, HI, Firing, &[Fire]),
            E(15, HI, Firing, &[]),
            E(285, HI, Firing, &[]),
            E(300, HI, Firing, &[Rep]),
            E(315, HI, Firing, &[]),
            E(600, HI, Firing, &[Rep]),
            E(615, LO, Inactive, &[Res]),
        ],
    );
    check(
        "no repeat",
        rule(|r| r.repeat_interval_seconds = 0),
        &[
            E(0, HI, Firing, &[Fire]),
            E(10_000, HI, Firing, &[]),
            E(100_000, HI, Firing, &[]),
        ],
    );
}

#[test]
fn keep_firing_for_absorbs_flapping_and_resolves_after_a_quiet_stretch() {
    check(
        "keep_firing_for",
        rule(|r| {
            r.for_seconds = 30;
            r.keep_firing_for_seconds = 60;
        }),
        &[
            E(0, HI, Pending, &[]),
            E(30, HI, Firing, &[Fire]),
            E(45, LO, Recovering, &[]),
            E(60, HI, Firing, &[]),
            E(75, LO, Recovering, &[]),
            E(90, LO, Recovering, &[]),
            E(120, LO, Recovering, &[]),
            E(135, LO, Inactive, &[Res]),
            // A new episode needs `for` again.
            E(150, HI, Pending, &[]),
            E(180, HI, Firing, &[Fire]),
        ],
    );
}

#[test]
fn flapping_without_keep_firing_for_gives_one_firing_and_one_resolve_per_episode() {
    let all = check(
        "flapping",
        rule(|_| {}),
        &[
            E(0, HI, Firing, &[Fire]),
            E(15, LO, Inactive, &[Res]),
            E(30, HI, Firing, &[Fire]),
            E(45, LO, Inactive, &[Res]),
            E(60, HI, Firing, &[Fire]),
        ],
    );
    let episodes: std::collections::HashSet<_> =
        all.iter().map(|n| n.episode_key.clone()).collect();
    assert_eq!(episodes.len(), 3);
}

#[test]
fn no_data_policies() {
    check(
        "no_data=ok resolves",
        rule(|_| {}),
        &[
            E(0, Obs::Missing, NoData, &[]),
            E(15, HI, Firing, &[Fire]),
            E(30, Obs::Missing, NoData, &[Res]),
        ],
    );
    check(
        "no_data=keep_last holds state and timers",
        rule(|r| {
            r.no_data = "keep_last".into();
            r.for_seconds = 30;
        }),
        &[
            E(0, HI, Pending, &[]),
            E(15, Obs::Missing, Pending, &[]),
            E(60, Obs::Missing, Pending, &[]),
            // Held evaluations add nothing; only the 15 s since 60 count: still pending.
            E(75, HI, Pending, &[]),
            E(90, HI, Firing, &[Fire]),
            E(105, Obs::Missing, Firing, &[]),
            E(120, LO, Inactive, &[Res]),
        ],
    );
    check(
        "no_data=alert fires on silence from the app",
        rule(|r| r.no_data = "alert".into()),
        &[
            E(0, LO, Inactive, &[]),
            E(15, Obs::Missing, Firing, &[Fire]),
            E(30, LO, Inactive, &[Res]),
        ],
    );
}

#[test]
fn min_samples_treats_thin_windows_as_no_data() {
    check(
        "min_samples",
        rule(|r| r.min_samples = 10),
        &[
            E(0, Obs::N(60_000.0, 3), NoData, &[]),
            E(15, Obs::N(6000.0, 9), NoData, &[]),
            E(30, Obs::N(6000.0, 10), Firing, &[Fire]),
            E(45, Obs::N(6000.0, 2), NoData, &[Res]),
        ],
    );
}

#[test]
fn escalation_to_the_full_threshold_notifies_once_per_episode() {
    let all = check(
        "escalation",
        rule(|r| r.warning_threshold = Some(3000.0)),
        &[
            E(0, Obs::V(4000.0), Firing, &[Fire]),
            E(15, Obs::V(6000.0), Firing, &[Esc]),
            E(30, Obs::V(4000.0), Firing, &[]),
            E(45, Obs::V(6000.0), Firing, &[]),
            E(60, LO, Inactive, &[Res]),
        ],
    );
    assert_eq!(all[0].severity, "warning");
    assert_eq!(all[0].threshold, 3000.0);
    assert_eq!(all[1].severity, "critical");
    assert_eq!(all[1].threshold, 5000.0);
}

#[test]
fn query_errors_hold_state_and_show_error_when_quiet() {
    check(
        "errors",
        rule(|r| r.repeat_interval_seconds = 60),
        &[
            E(0, Obs::Fail, Err_, &[]),
            E(15, LO, Inactive, &[]),
            E(30, HI, Firing, &[Fire]),
            E(45, Obs::Fail, Firing, &[]),
            // Repeats continue while the value is held.
            E(90, Obs::Fail, Firing, &[Rep]),
            E(105, LO, Inactive, &[Res]),
        ],
    );
}

#[test]
fn restart_does_not_count_downtime_towards_for() {
    check(
        "restart pending",
        rule(|r| r.for_seconds = 60),
        &[
            Restart(0, 0),
            E(0, HI, Pending, &[]),
            E(45, HI, Pending, &[]),
            Restart(1000, 15),
            // 955 s of downtime would complete `for`; they do not count.
            E(1000, HI, Pending, &[]),
            E(1015, HI, Firing, &[Fire]),
        ],
    );
}

#[test]
fn restart_grace_keeps_fresh_breaches_pending() {
    check(
        "restart grace",
        rule(|_| {}),
        &[
            Restart(1000, 30),
            E(1000, HI, Pending, &[]),
            E(1015, HI, Pending, &[]),
            E(1030, HI, Firing, &[Fire]),
        ],
    );
}

#[test]
fn firing_survives_restart_without_renotifying_before_repeat_interval() {
    check(
        "restart firing",
        rule(|r| {
            r.repeat_interval_seconds = 300;
            r.keep_firing_for_seconds = 60;
        }),
        &[
            E(0, HI, Firing, &[Fire]),
            Restart(100, 15),
            E(100, HI, Firing, &[]),
            E(290, HI, Firing, &[]),
            E(300, HI, Firing, &[Rep]),
            E(310, LO, Recovering, &[]),
            Restart(500, 15),
            // The keep_firing_for timer resumes; downtime does not count.
            E(500, LO, Recovering, &[]),
            E(550, LO, Recovering, &[]),
            E(560, LO, Inactive, &[Res]),
        ],
    );
}

#[test]
fn silences_suppress_notifications_but_not_state_and_late_firing_is_sent() {
    check(
        "silence",
        rule(|_| {}),
        &[
            Sil(0, 30),
            E(0, HI, Firing, &[]),
            E(15, HI, Firing, &[]),
            E(30, HI, Firing, &[Fire]),
            E(45, LO, Inactive, &[Res]),
            Sil(60, 90),
            E(60, HI, Firing, &[]),
            // Never notified: no resolve either.
            E(75, LO, Inactive, &[]),
        ],
    );
}

#[test]
fn a_changed_rule_resets_its_instances_and_resolves_a_notified_episode() {
    let r1 = rule(|_| {});
    let r2 = rule(|r| r.threshold = 7000.0);
    let c1 = compile_rule(&r1, &[]).unwrap();
    let c2 = compile_rule(&r2, &[]).unwrap();
    let res = |v: f64| {
        HashMap::from([(
            "r".to_string(),
            Ok(vec![GroupObservation {
                labels: Labels::new(),
                observation: Observation::Value {
                    value: v,
                    samples: 10,
                },
                metrics: None,
            }]),
        )])
    };
    let ctx = |t: i64| EvalContext {
        now_ms: t,
        restarted_at_ms: 0,
        grace_ms: 0,
    };
    let ev = evaluate(&[c1], &res(6000.0), &HashMap::new(), &[], &ctx(0));
    assert_eq!(ev.notifications.len(), 1);
    let ev2 = evaluate(&[c2], &res(6000.0), &ev.next, &[], &ctx(1000));
    let kinds: Vec<_> = ev2.notifications.iter().map(|n| n.kind).collect();
    assert_eq!(kinds, vec![Res]);
    assert!(ev2.transitions.iter().any(|t| t.kind == "rule_changed"));
    assert_eq!(ev2.next.values().next().unwrap().phase, Inactive);
}

#[test]
fn groups_are_independent_instances_and_vanished_quiet_groups_are_dropped() {
    let r = rule(|r| r.group_by = vec!["model".into()]);
    let c = compile_rule(&r, &[]).unwrap();
    let g = |m: &str, v: f64| GroupObservation {
        labels: Labels::from([("model".to_string(), m.to_string())]),
        observation: Observation::Value {
            value: v,
            samples: 10,
        },
        metrics: None,
    };
    let ctx = |t: i64| EvalContext {
        now_ms: t,
        restarted_at_ms: 0,
        grace_ms: 0,
    };
    let res = |gs: Vec<GroupObservation>| HashMap::from([("r".to_string(), Ok(gs))]);
    let ev = evaluate(
        std::slice::from_ref(&c),
        &res(vec![g("a", 6000.0), g("b", 1.0)]),
        &HashMap::new(),
        &[],
        &ctx(0),
    );
    assert_eq!(ev.notifications.len(), 1);
    assert_eq!(ev.notifications[0].labels["model"], "a");
    assert_eq!(ev.next.len(), 2);
    // Both vanish: "a" resolves (no data, policy ok) and both are dropped.
    let ev2 = evaluate(
        std::slice::from_ref(&c),
        &res(vec![]),
        &ev.next,
        &[],
        &ctx(15_000),
    );
    assert_eq!(
        ev2.notifications.iter().map(|n| n.kind).collect::<Vec<_>>(),
        vec![Res]
    );
    assert!(ev2.next.is_empty());
}

#[test]
fn default_high_latency_fires_above_5000_ms_not_at_it() {
    let high_latency = default_rules()
        .into_iter()
        .find(|r| r.name == "high_latency")
        .unwrap();
    let at = check(
        "5000",
        high_latency.clone(),
        &[E(0, Obs::V(5000.0), Inactive, &[])],
    );
    assert!(at.is_empty());
    let above = check(
        "5001",
        high_latency,
        &[E(0, Obs::V(5001.0), Firing, &[Fire])],
    );
    assert_eq!(above[0].message, "High latency detected: P95 = 5001ms");
    assert_eq!(above[0].severity, "warning");
}
