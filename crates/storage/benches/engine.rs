//! Criterion benches of the engine: durable append throughput (1 and 4
//! appender threads, batches of 1,000 realistic calls) and reopen time
//! (1M events in the WAL; 1M sealed events); seal of a 200k-event head.
//!
//! `cargo bench -p sextant-storage --bench engine`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sextant_model::{now_ms, Batch, HOUR_MS};
use sextant_storage::{Store, StoreConfig};

#[path = "common/workload.rs"]
mod workload;

fn config() -> StoreConfig {
    StoreConfig {
        background_maintenance: false,
        seal_max_events: usize::MAX,
        ..StoreConfig::default()
    }
}

fn batches(n: usize, seed: u64) -> Vec<Batch> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let start = now_ms() - HOUR_MS;
    (0..n)
        .map(|_| Batch::from_calls(workload::calls(&mut rng, 1000, start, HOUR_MS)))
        .collect()
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    for threads in [1usize, 4] {
        let per_thread = 8;
        let data: Vec<Vec<Batch>> = (0..threads)
            .map(|t| batches(per_thread, t as u64))
            .collect();
        g.throughput(Throughput::Elements((threads * per_thread * 1000) as u64));
        g.bench_function(format!("durable_batches_of_1000_{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().unwrap();
                    let store = Store::open(dir.path(), config()).unwrap();
                    let work = data.clone();
                    let t0 = Instant::now();
                    std::thread::scope(|s| {
                        for batches in work {
                            let store = store.clone();
                            s.spawn(move || {
                                for b in batches {
                                    store.append(b).unwrap();
                                }
                            });
                        }
                    });
                    total += t0.elapsed();
                    drop(store);
                }
                total
            })
        });
    }
    g.finish();
}

fn reopen(c: &mut Criterion) {
    let mut g = c.benchmark_group("reopen");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    for sealed in [false, true] {
        let name = if sealed {
            "1m_sealed_events"
        } else {
            "1m_events_in_wal"
        };
        // Built on first use (criterion calls the routine once per sample),
        // so a filter that skips this bench skips its setup (1M appends,
        // and a seal) too.
        let mut built: Option<tempfile::TempDir> = None;
        g.bench_function(name, |b| {
            let dir = built.get_or_insert_with(|| {
                let dir = tempfile::tempdir().unwrap();
                let store = Store::open(dir.path(), config()).unwrap();
                for b in batches(1000, 7) {
                    store.append(b).unwrap();
                }
                if sealed {
                    store.seal(now_ms()).unwrap();
                }
                store.close().unwrap();
                dir
            });
            b.iter(|| {
                let store = Store::open(dir.path(), config()).unwrap();
                assert_eq!(
                    store.stats().head_events,
                    if sealed { 0 } else { 1_000_000 }
                );
                store.close().unwrap();
            })
        });
    }
    g.finish();
}

/// Seal of a 200k-event head (the automatic seal size), and how long a
/// reader waits on the state lock meanwhile (`stats()` takes a read lock).
fn seal(c: &mut Criterion) {
    let mut g = c.benchmark_group("seal");
    g.sample_size(10).measurement_time(Duration::from_secs(30));
    let data = batches(200, 11);
    g.throughput(Throughput::Elements(200_000));
    g.bench_function("200k_head_events", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().unwrap();
                let store = Store::open(dir.path(), config()).unwrap();
                for b in data.clone() {
                    store.append(b).unwrap();
                }
                let t0 = Instant::now();
                let report = store.seal(now_ms()).unwrap();
                total += t0.elapsed();
                assert_eq!(report.sealed_events, 200_000);
                drop(store);
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, append, reopen, seal);
criterion_main!(benches);
