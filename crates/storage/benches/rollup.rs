//! Rollup merge cost as a query sees it: decode ~3,000 stored day/hour
//! rollups (digest size 200, latency + ttft + total-tokens digests) and merge
//! them into one accumulator, then read p50/p95/p99.

use criterion::{criterion_group, criterion_main, Criterion};
use sextant_model::LlmCall;
use sextant_storage::Rollup;

fn stored_rollups(n: usize, events_each: usize) -> Vec<Vec<u8>> {
    let mut rng = fastrand::Rng::with_seed(11);
    let mut call = LlmCall {
        model: "gpt-4o".into(),
        endpoint: "chat".into(),
        finish_reason: "stop".into(),
        cost_usd: Some(0.001),
        ..LlmCall::default()
    };
    (0..n)
        .map(|_| {
            let mut r = Rollup::new(200);
            for _ in 0..events_each {
                call.latency_ms = 100.0 + rng.f64() * rng.f64() * 5000.0;
                call.time_to_first_token_ms = Some(20.0 + rng.f64() * 400.0);
                call.total_tokens = rng.u64(10..4000);
                r.add_call(&call);
            }
            r.resize_digests(200);
            r.encode()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let stored = stored_rollups(3000, 5000);
    let mut g = c.benchmark_group("rollup");
    g.sample_size(20);
    g.bench_function("decode_3000", |b| {
        b.iter(|| {
            stored
                .iter()
                .map(|s| Rollup::decode(s).unwrap().count)
                .sum::<u64>()
        })
    });
    g.bench_function("decode_merge_3000_p95", |b| {
        b.iter(|| {
            let mut acc = Rollup::new(200);
            for s in &stored {
                acc.merge(&Rollup::decode(s).unwrap());
            }
            acc.latency.as_ref().unwrap().quantiles(&[0.5, 0.95, 0.99])
        })
    });
    let decoded: Vec<Rollup> = stored.iter().map(|s| Rollup::decode(s).unwrap()).collect();
    g.bench_function("merge_3000_p95", |b| {
        b.iter(|| {
            let mut acc = Rollup::new(200);
            for r in &decoded {
                acc.merge(r);
            }
            acc.latency.as_ref().unwrap().quantiles(&[0.5, 0.95, 0.99])
        })
    });
    g.finish();
    let bytes: usize = stored.iter().map(Vec::len).sum();
    println!("mean stored day rollup: {} bytes", bytes / stored.len());
}

criterion_group!(benches, bench);
criterion_main!(benches);
