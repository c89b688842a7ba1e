//! `sextant-load`: HTTP load against a running Sextant on loopback.
//!
//! ```text
//! sextant-load --addr 127.0.0.1:7700 [--seconds 10] [--conns 2] [--scenario all|batch|single|summary]
//! ```
//! Scenarios (each bounded by `--seconds` and by a request cap):
//! - `batch`: `POST /v1/metrics/batch` with 1,000-record JSON batches from `--conns`
//!   connections (default 2, at most 16) → events/s. Bodies are pre-serialized
//!   (a pool of 8 per connection) and only their request ids are rewritten per
//!   request, so every request carries distinct ids at almost no client CPU.
//! - `single`: `POST /v1/metrics` from 4, then 64 concurrent clients → requests/s, p50, p99.
//! - `summary`: `GET /v1/summary?window_minutes=60` from 2 clients while 1 connection
//!   ingests batches → summary p50/p99 and ingest events/s.
//!
//! Only loopback addresses are accepted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sextant_benches::http::Conn;
use sextant_benches::{BatchPool, Workload};

const MAX_REQUESTS_PER_CLIENT: u64 = 1_000_000;

struct Args {
    addr: SocketAddr,
    seconds: u64,
    scenario: String,
    conns: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut addr = None;
    let mut seconds = 10;
    let mut scenario = "all".to_string();
    let mut conns = 2;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--addr" => addr = it.next(),
            "--seconds" => {
                seconds = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--seconds N")?
            }
            "--conns" => conns = it.next().and_then(|s| s.parse().ok()).ok_or("--conns N")?,
            "--scenario" => scenario = it.next().ok_or("--scenario NAME")?,
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let addr: SocketAddr = addr
        .ok_or("--addr HOST:PORT is required")?
        .parse()
        .map_err(|e| format!("--addr: {e}"))?;
    if !addr.ip().is_loopback() {
        return Err("only loopback addresses are allowed".into());
    }
    Ok(Args {
        addr,
        seconds: seconds.clamp(1, 600),
        scenario,
        conns: conns.clamp(1, 16),
    })
}

fn pct(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Ingests 1,000-record batches from `conns` connections until `stop`.
fn batch_ingest(addr: SocketAddr, conns: usize, stop: Arc<AtomicBool>, tag: &str) -> (u64, u64) {
    let events = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..conns)
        .map(|c| {
            let (stop, events, failures) = (stop.clone(), events.clone(), failures.clone());
            let prefix = format!("{tag}{c}-{}", std::process::id());
            std::thread::spawn(move || {
                let mut w = Workload::new(c as u64 + 7, &prefix);
                // Pre-serialized bodies, ids stamped per request: the generator
                // must not compete with the server for CPU.
                let mut pool = BatchPool::new(&mut w, 8, 1000);
                let mut conn = Conn::connect(addr).expect("connect");
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) && i < MAX_REQUESTS_PER_CLIENT {
                    let body = pool.next_body();
                    match conn.request("POST", "/v1/metrics/batch", "application/json", body) {
                        Ok(200) => {
                            events.fetch_add(1000, Ordering::Relaxed);
                        }
                        _ => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            conn = Conn::connect(addr).expect("reconnect");
                        }
                    }
                    i += 1;
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    (
        events.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed),
    )
}

fn scenario_batch(args: &Args) {
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let secs = args.seconds;
    let timer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(secs));
        s2.store(true, Ordering::Relaxed);
    });
    let started = Instant::now();
    let (events, failures) = batch_ingest(args.addr, args.conns, stop, "b");
    let _ = timer.join();
    let el = started.elapsed().as_secs_f64();
    println!("batch: {events} events in {el:.1} s = {:.0} events/s (1,000-record batches, {} connections, {failures} failed requests)", events as f64 / el, args.conns);
}

fn scenario_single(args: &Args, clients: usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let stop = stop.clone();
            let addr = args.addr;
            std::thread::spawn(move || {
                let mut w = Workload::new(
                    1000 + c as u64,
                    &format!("s{clients}-{c}-{}", std::process::id()),
                );
                let mut conn = Conn::connect(addr).expect("connect");
                let mut lat = Vec::new();
                let mut failures = 0u64;
                let mut body = String::new();
                while !stop.load(Ordering::Relaxed) && (lat.len() as u64) < MAX_REQUESTS_PER_CLIENT
                {
                    body.clear();
                    w.call_json(&mut body);
                    let t = Instant::now();
                    match conn.request("POST", "/v1/metrics", "application/json", body.as_bytes()) {
                        Ok(200) => lat.push(t.elapsed()),
                        _ => {
                            failures += 1;
                            conn = Conn::connect(addr).expect("reconnect");
                        }
                    }
                }
                (lat, failures)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(args.seconds));
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut failures = 0;
    for h in handles {
        let (l, f) = h.join().unwrap();
        all.extend(l);
        failures += f;
    }
    let el = started.elapsed().as_secs_f64();
    all.sort();
    println!(
        "single POST /v1/metrics, {clients} clients: {} requests in {el:.1} s = {:.0} req/s; p50 {:.2} ms, p99 {:.2} ms ({failures} failed)",
        all.len(),
        all.len() as f64 / el,
        pct(&all, 0.5),
        pct(&all, 0.99)
    );
}

fn scenario_summary(args: &Args) {
    let stop = Arc::new(AtomicBool::new(false));
    let (s2, addr) = (stop.clone(), args.addr);
    let ingest = std::thread::spawn(move || batch_ingest(addr, 1, s2, "q"));
    let started = Instant::now();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut conn = Conn::connect(addr).expect("connect");
                let mut lat = Vec::new();
                while !stop.load(Ordering::Relaxed) && (lat.len() as u64) < MAX_REQUESTS_PER_CLIENT
                {
                    let t = Instant::now();
                    if let Ok(200) = conn.request(
                        "GET",
                        "/v1/summary?window_minutes=60",
                        "application/json",
                        b"",
                    ) {
                        lat.push(t.elapsed());
                    }
                }
                lat
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(args.seconds));
    stop.store(true, Ordering::Relaxed);
    let mut all: Vec<Duration> = readers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let (events, _) = ingest.join().unwrap();
    let el = started.elapsed().as_secs_f64();
    all.sort();
    println!(
        "GET /v1/summary?window_minutes=60 under ingest: {} queries, p50 {:.2} ms, p99 {:.2} ms; concurrent ingest {:.0} events/s",
        all.len(),
        pct(&all, 0.5),
        pct(&all, 0.99),
        events as f64 / el
    );
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\nusage: sextant-load --addr 127.0.0.1:PORT [--seconds N] [--conns N] [--scenario all|batch|single|summary]");
            std::process::exit(2);
        }
    };
    let all = args.scenario == "all";
    if all || args.scenario == "batch" {
        scenario_batch(&args);
    }
    if all || args.scenario == "single" {
        scenario_single(&args, 4);
        scenario_single(&args, 64);
    }
    if all || args.scenario == "summary" {
        scenario_summary(&args);
    }
}
