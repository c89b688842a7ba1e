//! Real-kill crash test: the test binary re-runs itself as a child that
//! appends from three threads while sealing and downsampling; the parent
//! SIGKILLs it at random moments (some right as a seal or downsample
//! starts), reopens the store and checks that every acknowledged event is
//! present exactly once in raw data and in every rollup tier, and that
//! nothing is present twice. A quarter of the batches are late events for
//! the previous (closed) week, so seals re-roll them into hour, day and
//! week rollups while being killed.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use sextant_model::{now_ms, Batch, Tier, TimeRange, DAY_MS, HOUR_MS};
use sextant_storage::{RowFilter, Store, StoreConfig};

const CHILD_ENV: &str = "SEXTANT_CRASH_CHILD_DIR";
const CYCLE_ENV: &str = "SEXTANT_CRASH_CYCLE";
const THREADS: u64 = 3;
const BATCH: u64 = 40;
const CYCLES: u64 = 22;

fn child_config() -> StoreConfig {
    StoreConfig {
        seal_max_events: 1_500,
        downsample_grace_ms: 0,
        ..config()
    }
}

/// request id = cycle, thread, batch, index.
fn rid(cycle: u64, thread: u64, batch: u64, i: u64) -> String {
    format!("c{cycle:03}-t{thread}-b{batch:06}-{i:03}")
}

fn parse_rid(s: &str) -> Option<(u64, u64, u64)> {
    let mut p = s.split('-');
    let c = p.next()?.strip_prefix('c')?.parse().ok()?;
    let t = p.next()?.strip_prefix('t')?.parse().ok()?;
    let b = p.next()?.strip_prefix('b')?.parse().ok()?;
    Some((c, t, b))
}

/// Child mode: does nothing unless started by the parent with `CHILD_ENV`.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let cycle: u64 = std::env::var(CYCLE_ENV).unwrap().parse().unwrap();
    let store = Store::open(Path::new(&dir), child_config()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    println!("READY");
    let mut handles = Vec::new();
    for t in 0..THREADS {
        let store = store.clone();
        let stop = stop.clone();
        handles.push(std::thread::spawn(move || {
            let mut rng = fastrand::Rng::with_seed(cycle * 100 + t);
            for b in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let now = now_ms();
                let calls = (0..BATCH)
                    .map(|i| {
                        // Every 4th batch is late: the 3 days before this
                        // week's Monday (a closed, rolled-up week).
                        let ts = if b % 4 == 3 {
                            Tier::Week.floor(now) - 1 - rng.i64(0..3 * DAY_MS)
                        } else {
                            now - rng.i64(0..3 * HOUR_MS)
                        };
                        let mut c = call(&mut rng, 0, ts);
                        c.request_id = rid(cycle, t, b, i);
                        c
                    })
                    .collect();
                store.append(Batch::from_calls(calls)).unwrap();
                let mut out = std::io::stdout().lock();
                writeln!(out, "ACK {cycle} {t} {b}").unwrap();
                out.flush().unwrap();
            }
        }));
    }
    let mut i = 0u64;
    while i < 100_000 {
        i += 1;
        std::thread::sleep(Duration::from_millis(3));
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "SEAL").unwrap();
            out.flush().unwrap();
        }
        store.seal(now_ms()).unwrap();
        if i % 3 == 0 {
            let mut out = std::io::stdout().lock();
            writeln!(out, "DOWN").unwrap();
            out.flush().unwrap();
            store.downsample(now_ms()).unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
}

#[derive(Default)]
struct Acks {
    /// (cycle, thread) → acknowledged batch numbers.
    acked: HashMap<(u64, u64), HashSet<u64>>,
}

fn run_cycle(dir: &Path, cycle: u64, rng: &mut fastrand::Rng, acks: &mut Acks) {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .env(CYCLE_ENV, cycle.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = crossbeam_channel::unbounded::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(l) => {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    });
    // Kill plan: after a random delay, or as the n-th seal / downsample starts.
    let plan = rng.u8(..3);
    let delay = Duration::from_millis(rng.u64(20..300));
    let nth = rng.u32(1..12);
    let mut started: Option<Instant> = None;
    let mut marks = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut lines = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(1)) {
            Ok(l) => {
                if l.ends_with("READY") {
                    started = Some(Instant::now());
                }
                let mark = match plan {
                    1 => l == "SEAL",
                    2 => l == "DOWN",
                    _ => false,
                };
                lines.push(l);
                if mark {
                    marks += 1;
                    if marks >= nth {
                        std::thread::sleep(Duration::from_micros(rng.u64(0..3000)));
                        break;
                    }
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
        if started.is_some_and(|s| s.elapsed() >= delay) && plan == 0 {
            break;
        }
        if started.is_some_and(|s| s.elapsed() >= Duration::from_millis(500)) {
            break;
        }
        assert!(Instant::now() < deadline, "child never got going");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    for l in lines {
        let p: Vec<&str> = l.split(' ').collect();
        if p.len() == 4 && p[0] == "ACK" {
            let (c, t, b) = (
                p[1].parse().unwrap(),
                p[2].parse().unwrap(),
                p[3].parse().unwrap(),
            );
            acks.acked.entry((c, t)).or_default().insert(b);
        }
    }
}

fn check(dir: &Path, acks: &Acks) -> u64 {
    let store = Store::open(dir, child_config()).expect("the store must always reopen");
    let mut seen: HashMap<String, u32> = HashMap::new();
    let mut raw = Sums::default();
    let cov = store.coverage();
    let mut hour_raw = Sums::default();
    // Day and week tiers: events whose bucket is rolled up and retained.
    let coarse = [
        (Tier::Day, cov.day_from_ms, cov.day_until_ms),
        (Tier::Week, cov.week_from_ms, cov.week_until_ms),
    ];
    let mut coarse_raw = [Sums::default(), Sums::default()];
    store
        .scan_calls(
            TimeRange::new(i64::MIN, i64::MAX),
            &RowFilter::default(),
            &mut |c| {
                *seen.entry(c.request_id.clone()).or_default() += 1;
                raw.add(c);
                if c.timestamp_ms >= cov.hour_from_ms && c.timestamp_ms < cov.hour_until_ms {
                    hour_raw.add(c);
                }
                for ((tier, from, until), sums) in coarse.iter().zip(coarse_raw.iter_mut()) {
                    let b = tier.floor(c.timestamp_ms);
                    if b >= *from && b < *until {
                        sums.add(c);
                    }
                }
            },
        )
        .unwrap();
    for (id, n) in &seen {
        assert_eq!(*n, 1, "{id} is present {n} times");
    }
    let mut per_batch: HashMap<(u64, u64, u64), u64> = HashMap::new();
    for id in seen.keys() {
        *per_batch.entry(parse_rid(id).unwrap()).or_default() += 1;
    }
    for (&(c, t), batches) in &acks.acked {
        for &b in batches {
            let n = per_batch.get(&(c, t, b)).copied().unwrap_or(0);
            assert_eq!(
                n, BATCH,
                "acknowledged batch c{c} t{t} b{b} has {n} of {BATCH} events"
            );
        }
    }
    // A batch is all or nothing, acknowledged or not.
    for (k, n) in &per_batch {
        assert_eq!(*n, BATCH, "batch {k:?} is torn");
    }
    let mut minute = Sums::default();
    let all = TimeRange::new(i64::MIN, i64::MAX);
    store
        .rollups(Tier::Minute, all, &RowFilter::default(), &mut |_, _, r| {
            minute.add_rollup(r)
        })
        .unwrap();
    assert_eq!(minute, raw, "minute rollups disagree with raw data");
    let mut hour = Sums::default();
    store
        .rollups(Tier::Hour, all, &RowFilter::default(), &mut |_, _, r| {
            hour.add_rollup(r)
        })
        .unwrap();
    assert_eq!(hour, hour_raw, "hour rollups disagree with raw data");
    for ((tier, _, _), want) in coarse.iter().zip(coarse_raw) {
        let mut got = Sums::default();
        store
            .rollups(*tier, all, &RowFilter::default(), &mut |_, _, r| {
                got.add_rollup(r)
            })
            .unwrap();
        assert_eq!(got, want, "{tier:?} rollups disagree with raw data");
    }
    assert!(store.verify().unwrap().problems.is_empty());
    store.close().unwrap();
    raw.count
}

#[test]
fn acknowledged_events_survive_sigkill_exactly_once() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let seed = std::env::var("SEXTANT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("crash test seed {seed} (set SEXTANT_CRASH_SEED to replay)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut acks = Acks::default();
    let mut last = 0;
    for cycle in 0..CYCLES {
        run_cycle(dir.path(), cycle, &mut rng, &mut acks);
        let n = check(dir.path(), &acks);
        assert!(n >= last, "events went missing: {n} < {last}");
        last = n;
    }
    let acked: usize = acks.acked.values().map(|s| s.len()).sum();
    assert!(
        acked > 100,
        "too few acknowledged batches ({acked}) for the test to mean anything"
    );
}
