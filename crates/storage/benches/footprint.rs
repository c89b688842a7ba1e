//! Footprint figures (not timings): bytes on disk per sealed event with a
//! per-column breakdown, rollup bytes per group-minute and per day for a
//! 10 events/s workload, and RSS during a sustained append run.
//!
//! `cargo bench -p sextant-storage --bench footprint`

use std::path::Path;
use std::time::Instant;

use sextant_model::{now_ms, Batch, Tier, DAY_MS, MINUTE_MS};
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

/// Bytes of every file under `dir` (apparent sizes, like `du -b`).
fn du(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        n += if m.is_dir() { du(&e.path()) } else { m.len() };
    }
    n
}

/// The store directory by part: the sled main database (its log file
/// `db`, blob files, snapshots), the WAL database (`wal/`, format 4), the
/// segment files (`segments/`, format 5), the request-index run files
/// (`request_runs/`, format 6), the rest.
fn du_parts(dir: &Path) -> String {
    let (mut db, mut blobs, mut nblobs, mut snaps, mut wal, mut other) = (0, 0, 0, 0, 0, 0);
    let (mut segs, mut nsegs, mut runs, mut nruns) = (0, 0, 0, 0);
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().to_string();
        let m = e.metadata().unwrap();
        if m.is_dir() && name == "blobs" {
            for b in std::fs::read_dir(e.path()).unwrap() {
                blobs += b.unwrap().metadata().unwrap().len();
                nblobs += 1;
            }
        } else if m.is_dir() && name == "wal" {
            wal = du(&e.path());
        } else if m.is_dir() && name == "segments" {
            for f in std::fs::read_dir(e.path()).unwrap() {
                segs += f.unwrap().metadata().unwrap().len();
                nsegs += 1;
            }
        } else if m.is_dir() && name == "request_runs" {
            for f in std::fs::read_dir(e.path()).unwrap() {
                runs += f.unwrap().metadata().unwrap().len();
                nruns += 1;
            }
        } else if m.is_dir() {
            other += du(&e.path());
        } else if name == "db" {
            db = m.len();
        } else if name.starts_with("snap.") {
            snaps += m.len();
        } else {
            other += m.len();
        }
    }
    format!(
        "main db {} = log file {db} + {nblobs} blob files {blobs} + snapshots {snaps}; WAL database {wal}; {nsegs} segment files {segs}; {nruns} request run files {runs}; other {other}",
        db + blobs + snaps
    )
}

/// Bytes of the request-index run files (`request_runs/`, format 6).
fn run_file_bytes(dir: &Path) -> u64 {
    let runs = dir.join("request_runs");
    if runs.exists() {
        du(&runs)
    } else {
        0
    }
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Waits (store open, idle) until the directory stopped shrinking: no new
/// minimum for 10 s, or 180 s in all. Prints the size every 5 s.
fn settle(dir: &Path, n: usize) {
    let t0 = Instant::now();
    let mut min = du(dir);
    let mut last_min = Instant::now();
    println!(
        "  settling: at seal {:.1} bytes/event",
        min as f64 / n as f64
    );
    let mut tick = 0;
    while last_min.elapsed().as_secs() < 10 && t0.elapsed().as_secs() < 180 {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let d = du(dir);
        if d < min {
            min = d;
            last_min = Instant::now();
        }
        tick += 1;
        if tick % 10 == 0 {
            println!(
                "  settling: {:.0} s {:.1} bytes/event ({})",
                t0.elapsed().as_secs_f64(),
                d as f64 / n as f64,
                du_parts(dir)
            );
        }
    }
    println!(
        "  settled after {:.0} s: {:.1} bytes/event",
        t0.elapsed().as_secs_f64(),
        min as f64 / n as f64
    );
}

fn bytes_per_event() {
    let n = 1_000_000usize;
    let dir = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(1);
    let start = now_ms() - 2 * DAY_MS;
    let all = workload::calls(&mut rng, n, start, DAY_MS);
    let store = Store::open(dir.path(), config()).unwrap();
    for chunk in all.chunks(1000) {
        store.append(Batch::from_calls(chunk.to_vec())).unwrap();
    }
    let t0 = Instant::now();
    store.seal(now_ms()).unwrap();
    println!("seal of {n} events: {:.1} s", t0.elapsed().as_secs_f64());
    settle(dir.path(), n);
    store.close().unwrap();
    drop(store);
    let show = |what: &str| {
        let d = du(dir.path());
        println!(
            "  {what}: {d} bytes = {:.1} bytes/event ({})",
            d as f64 / n as f64,
            du_parts(dir.path())
        );
    };
    show("after seal + close");
    // Let sled settle: reopen and close a few times (each open recovers the
    // log and writes a snapshot; each close flushes).
    for i in 0..3 {
        let t0 = Instant::now();
        let s = Store::open(dir.path(), config()).unwrap();
        let opened = t0.elapsed();
        s.close().unwrap();
        drop(s);
        show(&format!(
            "after reopen {} (open {:.2} s)",
            i + 1,
            opened.as_secs_f64()
        ));
    }
    let store = Store::open(dir.path(), config()).unwrap();
    let disk = du(dir.path());
    println!(
        "sealed {n} events: du of the store dir {disk} bytes = {:.1} bytes/event ({})",
        disk as f64 / n as f64,
        du_parts(dir.path())
    );
    print_live(&store, dir.path(), n);
    println!("segment columns:");
    for (col, bytes) in store.segment_column_sizes().unwrap() {
        println!(
            "  {col:<24} {bytes:>12} bytes {:>7.2} bytes/event",
            bytes as f64 / n as f64
        );
    }
}

/// Steady state: `rounds` rounds of 1M events (1,000-call batches, each
/// round's calls spread over its own day), sealed automatically every
/// 200,000 events as the default configuration does, then sealed and
/// maintained (request-index runs merged) at the end of each round. Prints
/// the sled directory after every round and the growth per event; then
/// closes and times `Store::open` of the sealed store three times.
fn steady_state(rounds: usize) {
    let per = 1_000_000usize;
    let dir = tempfile::tempdir().unwrap();
    let cfg = || StoreConfig {
        background_maintenance: false,
        seal_max_events: 200_000,
        ..StoreConfig::default()
    };
    let store = Store::open(dir.path(), cfg()).unwrap();
    let mut rng = fastrand::Rng::with_seed(4);
    let first_day = now_ms() - (rounds as i64 + 1) * DAY_MS;
    let mut prev = du(dir.path());
    for r in 0..rounds {
        let t0 = Instant::now();
        let start = first_day + r as i64 * DAY_MS;
        for b in 0..per / 1000 {
            let ts = start + (b as i64 * DAY_MS) / (per / 1000) as i64;
            let calls = workload::calls(&mut rng, 1000, ts, DAY_MS / (per / 1000) as i64);
            store.append(Batch::from_calls(calls)).unwrap();
        }
        store.seal(now_ms()).unwrap();
        store.maintain(now_ms()).unwrap();
        let d = du(dir.path());
        let n = (r + 1) * per;
        println!(
            "round {:>2} ({:.0} s): {n} events sealed, store dir {d} bytes = {:.1} bytes/event; this round added {:.1} bytes/event ({})",
            r + 1,
            t0.elapsed().as_secs_f64(),
            d as f64 / n as f64,
            (d as f64 - prev as f64) / per as f64,
            du_parts(dir.path())
        );
        prev = d;
    }
    let n = rounds * per;
    print_live(&store, dir.path(), n);
    store.close().unwrap();
    drop(store);
    if std::env::var_os("SEXTANT_EXPORT").is_some() {
        sled_floor(dir.path(), n);
    }
    for i in 0..3 {
        let t0 = Instant::now();
        let s = Store::open(dir.path(), cfg()).unwrap();
        let opened = t0.elapsed();
        assert_eq!(s.stats().head_events, 0);
        let probe = Instant::now();
        let mut found = 0;
        let mut rng = fastrand::Rng::with_seed(4);
        let calls = workload::calls(&mut rng, 1000, first_day, DAY_MS);
        for c in &calls {
            found += s.request(&c.request_id).unwrap().is_some() as usize;
        }
        let lookups = probe.elapsed();
        s.close().unwrap();
        drop(s);
        println!(
            "reopen {} with {n} sealed events: open {:.2} s; 1,000 request lookups {:.1} ms ({found} found); store dir {:.1} bytes/event ({})",
            i + 1,
            opened.as_secs_f64(),
            lookups.as_secs_f64() * 1e3,
            du(dir.path()) as f64 / n as f64,
            du_parts(dir.path())
        );
    }
}

/// What sled itself makes of the live data: the main database copied with
/// `export` / `import` into a fresh directory (every live key and value
/// inserted once, nothing deleted), same segment size. The store must be
/// closed.
fn sled_floor(dir: &Path, n: usize) {
    let conf = String::from_utf8_lossy(&std::fs::read(dir.join("conf")).unwrap()).to_string();
    let segment_size: usize = conf
        .lines()
        .find_map(|l| l.strip_prefix("segment_size: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let open = |p: &Path| {
        // sled's flusher may still hold the closed store's lock briefly.
        for _ in 0..100 {
            if let Ok(db) = sled::Config::new()
                .path(p)
                .segment_size(segment_size)
                .open()
            {
                return db;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("could not open {}", p.display());
    };
    {
        let old = open(dir);
        let new = open(fresh.path());
        new.import(old.export());
        new.flush().unwrap();
    }
    println!(
        "main database exported and imported into a fresh one (sled's own size for the live data): {:.1} bytes/event ({})",
        du(fresh.path()) as f64 / n as f64,
        du_parts(fresh.path())
    );
}

fn rollup_bytes() {
    // 10 events/s for one day, sealed and rolled up: the Monday of last
    // week, so that its week is closed and rolled up too.
    let dir = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(2);
    let day0 = Tier::Week.floor(now_ms()) - 7 * DAY_MS;
    let n = 864_000;
    let all = workload::calls(&mut rng, n, day0, DAY_MS);
    let store = Store::open(dir.path(), config()).unwrap();
    for chunk in all.chunks(1000) {
        store.append(Batch::from_calls(chunk.to_vec())).unwrap();
    }
    store.seal(now_ms()).unwrap();
    store.downsample(now_ms()).unwrap();
    let sizes = store.tree_sizes().unwrap();
    let get = |name: &str| {
        sizes
            .iter()
            .find(|s| s.0 == name)
            .map(|s| (s.1, s.2))
            .unwrap()
    };
    let (mk, mb) = get("rollup_minute");
    let (hk, hb) = get("rollup_hour");
    let (dk, db) = get("rollup_day");
    let (wk, wb) = get("rollup_week");
    // Segment bytes are in the segment files (format 5); tree `segments`
    // holds their locations.
    let seg = store.segment_files().live_bytes;
    println!("10 ev/s for a day ({n} events): segments {seg} bytes");
    println!(
        "  minute rollups {mk} group-minutes, {mb} bytes, {:.0} bytes/group-minute",
        mb as f64 / mk as f64
    );
    println!("  hour rollups {hk}, {hb} bytes; day rollups {dk}, {db} bytes");
    // A week's rollups hold 7 such days in digests of the same capped size:
    // a day's share is a seventh of them.
    let wd = wb / 7;
    println!("  week rollups {wk}, {wb} bytes (this day's week; {wd} bytes per day)");
    println!(
        "  all tiers per day {} bytes = {:.1}% of raw segment bytes",
        mb + hb + db + wd,
        (mb + hb + db + wd) as f64 * 100.0 / seg as f64
    );
    let _ = MINUTE_MS;
}

fn rss() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        StoreConfig {
            background_maintenance: false,
            ..StoreConfig::default()
        },
    )
    .unwrap();
    let mut rng = fastrand::Rng::with_seed(3);
    let t0 = Instant::now();
    let mut n = 0usize;
    let mut peak = 0;
    for round in 0..2000 {
        let b = workload::calls(&mut rng, 1000, now_ms() - 60_000, 60_000);
        store.append(Batch::from_calls(b)).unwrap();
        n += 1000;
        if round % 100 == 99 {
            let r = rss_kb();
            peak = peak.max(r);
            println!(
                "  after {n:>8} events ({:.1} s): VmRSS {} MiB",
                t0.elapsed().as_secs_f64(),
                r / 1024
            );
        }
    }
    println!(
        "sustained append of {n} events (auto-seal every 200k): peak VmRSS {} MiB, {:.0} events/s",
        peak / 1024,
        n as f64 / t0.elapsed().as_secs_f64()
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // Optional filter: `-- bytes`, `-- steady` (rounds: SEXTANT_ROUNDS,
    // default 3; 10 builds the 10M-sealed store; SEXTANT_EXPORT=1 also
    // prints sled's own size for the live data), `-- rollup`, `-- rss`.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let want = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    if want("bytes") {
        bytes_per_event();
    }
    if want("steady") {
        let rounds = std::env::var("SEXTANT_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3);
        steady_state(rounds);
    }
    if want("rollup") {
        rollup_bytes();
    }
    if want("rss") {
        rss();
    }
}

/// Prints the live data of `store` (in `dir`), per event of `n`: sled's
/// keys and values by tree, the segment files and the request-run files.
fn print_live(store: &Store, dir: &Path, n: usize) {
    let sizes = store.tree_sizes().unwrap();
    let logical: u64 = sizes.iter().map(|s| s.2).sum();
    println!(
        "logical bytes (keys + values) {logical} = {:.1} bytes/event",
        logical as f64 / n as f64
    );
    for (t, entries, bytes) in &sizes {
        if *entries > 0 {
            println!(
                "  tree {t:<16} {entries:>9} entries {bytes:>12} bytes {:>7.2} bytes/event",
                *bytes as f64 / n as f64
            );
        }
    }
    let f = store.segment_files();
    println!(
        "  segment files: {} files, {} segments, {} live bytes {:.2} bytes/event, {} bytes on disk {:.2} bytes/event",
        f.files,
        f.segments,
        f.live_bytes,
        f.live_bytes as f64 / n as f64,
        f.file_bytes,
        f.file_bytes as f64 / n as f64
    );
    let runs = run_file_bytes(dir);
    println!(
        "  request run files: {runs} bytes {:.2} bytes/event",
        runs as f64 / n as f64
    );
    println!(
        "live data (keys + values + segment bytes + request run files) {:.1} bytes/event",
        (logical + f.live_bytes + runs) as f64 / n as f64
    );
}
