//! Reopen time of a store with 1,000,000 events in the WAL (unsealed): the
//! engine bench's `reopen/1m_events_in_wal` store (1,000 batches of 1,000
//! realistic calls, each batch spread over the last hour), built once in a
//! directory so several builds can be timed on the same store back to back.
//! Prints wall time and this process's CPU time (user + system, from
//! /proc/self/stat; 0 where unavailable) per `Store::open`.
//!
//! `cargo run --release -p sextant-storage --example reopen_wal -- build DIR`
//! `cargo run --release -p sextant-storage --example reopen_wal -- open DIR [times=3]`

use std::time::Instant;

use sextant_model::{now_ms, Batch, HOUR_MS};
use sextant_storage::{Store, StoreConfig};

#[path = "../benches/common/workload.rs"]
mod workload;

fn config() -> StoreConfig {
    StoreConfig {
        background_maintenance: false,
        seal_max_events: usize::MAX,
        ..StoreConfig::default()
    }
}

/// User + system CPU seconds of this process.
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(cmd), Some(dir)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: reopen_wal build|open DIR [times]");
        std::process::exit(2);
    };
    let dir = std::path::Path::new(dir);
    if cmd == "build" {
        let store = Store::open(dir, config()).unwrap();
        let mut rng = fastrand::Rng::with_seed(7);
        let start = now_ms() - HOUR_MS;
        for _ in 0..1000 {
            let calls = workload::calls(&mut rng, 1000, start, HOUR_MS);
            store.append(Batch::from_calls(calls)).unwrap();
        }
        store.close().unwrap();
        return;
    }
    let times: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
    for _ in 0..times {
        let (t0, c0) = (Instant::now(), cpu_s());
        let store = Store::open(dir, config()).unwrap();
        let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_s() - c0);
        assert_eq!(store.stats().head_events, 1_000_000);
        store.close().unwrap();
        println!("open {wall:.3} s, cpu {cpu:.2} s");
    }
}
