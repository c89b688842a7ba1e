//! The frozen v1 fixture store opens with exactly the contents it was
//! written with, and a store of a newer format version is refused.
//!
//! Regenerate the fixture (only when the format version changes — then
//! add a `v2` directory and keep `v1`):
//! `SEXTANT_WRITE_FIXTURE=1 cargo test -p sextant-storage --test fixture write_v1_fixture`

mod common;

use std::path::{Path, PathBuf};

use common::*;
use sextant_model::{Batch, Tier, TimeRange, DAY_MS, HOUR_MS};
use sextant_storage::{ErrorKind, RowFilter, Space, StorageError, Store, WriteSet, FORMAT_VERSION};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1/store")
}

const T0: i64 = BASE_MS;

/// The fixture's events: (sealed batches, batches left in the WAL).
fn events() -> (Vec<Batch>, Vec<Batch>) {
    let mut rng = fastrand::Rng::with_seed(2026);
    let mut sealed = Vec::new();
    for b in 0..3u64 {
        let calls: Vec<_> = (0..100)
            .map(|i| {
                call(
                    &mut rng,
                    b * 1000 + i,
                    T0 + b as i64 * HOUR_MS + i as i64 * 20_000,
                )
            })
            .collect();
        let quality = calls
            .iter()
            .step_by(5)
            .map(|c| quality(&mut rng, &c.request_id, c.timestamp_ms + 1000))
            .collect();
        let feedback = calls
            .iter()
            .step_by(7)
            .map(|c| feedback(&mut rng, &c.request_id, c.timestamp_ms + 2000))
            .collect();
        let spans = (0..10)
            .map(|i| span(&format!("trace-{b}"), i, T0 + b as i64 * HOUR_MS))
            .collect();
        sealed.push(Batch {
            calls,
            quality,
            feedback,
            spans,
        });
    }
    let calls: Vec<_> = (0..60)
        .map(|i| call(&mut rng, 9000 + i, T0 + DAY_MS + i as i64 * 1000))
        .collect();
    let feedback = vec![feedback(&mut rng, &calls[0].request_id, T0 + DAY_MS + 5000)];
    let wal = vec![Batch {
        calls,
        feedback,
        spans: vec![span("trace-wal", 0, T0 + DAY_MS)],
        ..Batch::default()
    }];
    (sealed, wal)
}

fn write(dir: &Path) {
    let store = open(dir);
    let (sealed, wal) = events();
    for b in sealed {
        store.append(b).unwrap();
    }
    store.seal(T0).unwrap();
    store.downsample(T0 + DAY_MS).unwrap();
    for b in wal {
        store.append(b).unwrap();
    }
    let mut ws = WriteSet::default();
    ws.put(Space::Rules, "rule/p95_high", "{\"threshold\":5000}");
    store.kv_commit(ws).unwrap();
    store.close().unwrap();
}

#[test]
fn write_v1_fixture() {
    if std::env::var("SEXTANT_WRITE_FIXTURE").is_err() {
        return;
    }
    let dir = fixture_dir();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    write(&dir);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn check_contents(store: &Store) {
    let (sealed, wal) = events();
    let all_batches: Vec<&Batch> = sealed.iter().chain(&wal).collect();
    let all = TimeRange::new(i64::MIN, i64::MAX);
    // Raw calls, field for field.
    let mut got = Vec::new();
    store
        .scan_calls(all, &RowFilter::default(), &mut |c| got.push(c.clone()))
        .unwrap();
    got.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    let mut want: Vec<_> = all_batches.iter().flat_map(|b| b.calls.clone()).collect();
    want.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    assert_eq!(got, want);
    // Rollups per tier.
    let sums = |tier| {
        let mut s = Sums::default();
        let mut fb = 0;
        store
            .rollups(tier, all, &RowFilter::default(), &mut |_, _, r| {
                s.add_rollup(r);
                fb += r.feedback_count;
            })
            .unwrap();
        (s, fb)
    };
    let mut every = Sums::default();
    want.iter().for_each(|c| every.add(c));
    let mut sealed_sums = Sums::default();
    sealed
        .iter()
        .flat_map(|b| &b.calls)
        .for_each(|c| sealed_sums.add(c));
    let fb_all = all_batches
        .iter()
        .map(|b| b.feedback.len() as u64)
        .sum::<u64>();
    let fb_sealed = sealed.iter().map(|b| b.feedback.len() as u64).sum::<u64>();
    assert_eq!(sums(Tier::Minute), (every, fb_all));
    assert_eq!(sums(Tier::Hour), (sealed_sums.clone(), fb_sealed));
    assert_eq!(sums(Tier::Day), (Sums::default(), 0));
    assert_eq!(sums(Tier::Week), (Sums::default(), 0));
    let cov = store.coverage();
    // T0 is a Monday: no week is closed (a fresh store rolled [.., T0)).
    assert!(cov.week_until_ms <= T0, "{cov:?}");
    assert_eq!(cov.week_from_ms, i64::MIN);
    assert_eq!(cov.hour_until_ms, Tier::Hour.floor(T0 + DAY_MS - 120_000));
    assert_eq!(cov.day_until_ms, Tier::Day.floor(T0 + DAY_MS - 120_000));
    // Quality and feedback rows with their joins.
    let mut q = 0;
    store
        .scan_quality(all, &mut |_, r| {
            assert!(r.is_some());
            q += 1
        })
        .unwrap();
    assert_eq!(q, sealed.iter().map(|b| b.quality.len()).sum::<usize>());
    let mut f = 0;
    store
        .scan_feedback(all, &mut |_, r| {
            assert!(r.is_some());
            f += 1
        })
        .unwrap();
    assert_eq!(f as u64, fb_all);
    // Traces.
    for (b, batch) in sealed.iter().enumerate() {
        assert_eq!(store.trace(&format!("trace-{b}")).unwrap(), batch.spans);
    }
    assert_eq!(store.recent_traces(1).unwrap()[0].trace_id, "trace-wal");
    assert_eq!(
        store.kv_get(Space::Rules, b"rule/p95_high").unwrap(),
        Some(b"{\"threshold\":5000}".to_vec())
    );
    assert_eq!(store.stats().head_events, 61);
    assert!(store.verify().unwrap().problems.is_empty());
}

#[test]
fn v1_fixture_opens_with_exactly_its_contents() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture_dir(), dir.path());
    let store = open(dir.path());
    check_contents(&store);
    // Its segments were moved into segment files (format 5), and the
    // moved store opens again with the same contents.
    let f = store.segment_files();
    assert_eq!((f.files, f.file_bytes), (1, f.live_bytes));
    assert!(f.segments > 0);
    store.close().unwrap();
    drop(store);
    let store = open(dir.path());
    check_contents(&store);
    assert_eq!(store.segment_files(), f);
    // And still after sealing what the WAL held.
    store.seal(T0).unwrap();
    assert_eq!(store.stats().head_events, 0);
    // The run of what it sealed is in a file of its own (format 6).
    let runs = std::fs::read_dir(dir.path().join("request_runs"))
        .unwrap()
        .count();
    assert_eq!(runs, 1);
    // The migrated store rolls its first week up from the v1 data: every
    // call, every feedback row.
    let report = store.downsample(T0 + 8 * DAY_MS).unwrap();
    assert!(report.weeks_rolled > 0);
    assert_eq!(store.coverage().week_until_ms, T0 + 7 * DAY_MS);
    let (sealed, wal) = events();
    let mut every = Sums::default();
    let mut fb = 0;
    for b in sealed.iter().chain(&wal) {
        b.calls.iter().for_each(|c| every.add(c));
        fb += b.feedback.len() as u64;
    }
    let mut got = Sums::default();
    let mut got_fb = 0;
    store
        .rollups(
            Tier::Week,
            TimeRange::new(i64::MIN, i64::MAX),
            &RowFilter::default(),
            &mut |_, _, r| {
                got.add_rollup(r);
                got_fb += r.feedback_count;
            },
        )
        .unwrap();
    assert_eq!((got, got_fb), (every, fb));
    assert!(store.verify().unwrap().problems.is_empty());
}

#[test]
fn a_freshly_written_store_has_the_fixture_contents() {
    // Guards the generator itself: what it writes is what the checks expect.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path());
    check_contents(&open(dir.path()));
}

#[test]
fn a_store_of_a_newer_format_version_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path())
        .set_format_version_for_test(FORMAT_VERSION + 1)
        .unwrap();
    let err = Store::open(dir.path(), config()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(
        matches!(err, StorageError::NewerFormat { found, supported, .. } if found == FORMAT_VERSION + 1 && supported == FORMAT_VERSION)
    );
    assert!(err.to_string().contains("upgrade"));
}
