//! Engine behaviour: visibility, reopen, seal, rollups, joins, traces,
//! key-value spaces, retention, durability modes, versions, corruption.

mod common;

use common::*;
use sextant_model::{Batch, Dim, LlmCall, Tier, TimeRange, DAY_MS, HOUR_MS, MINUTE_MS};
use sextant_storage::{
    Durability, ErrorKind, GroupKey, Retention, RowFilter, Space, StorageError, Store, StoreConfig,
    WriteSet,
};

fn all() -> TimeRange {
    TimeRange::new(i64::MIN, i64::MAX)
}

fn scan_sums(store: &Store, range: TimeRange, filter: &RowFilter) -> (Sums, Vec<String>) {
    let mut s = Sums::default();
    let mut ids = Vec::new();
    store
        .scan_calls(range, filter, &mut |c| {
            s.add(c);
            ids.push(c.request_id.clone());
        })
        .unwrap();
    ids.sort();
    (s, ids)
}

fn rollup_sums(store: &Store, tier: Tier, range: TimeRange) -> Sums {
    let mut s = Sums::default();
    store
        .rollups(tier, range, &RowFilter::default(), &mut |_, _, r| {
            s.add_rollup(r)
        })
        .unwrap();
    s
}

fn calls(n: u64, start: i64, step_ms: i64, seed: u64) -> Vec<LlmCall> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n)
        .map(|i| call(&mut rng, seed * 1_000_000 + i, start + i as i64 * step_ms))
        .collect()
}

fn expected(cs: &[LlmCall]) -> (Sums, Vec<String>) {
    let mut s = Sums::default();
    let mut ids: Vec<String> = cs.iter().map(|c| c.request_id.clone()).collect();
    cs.iter().for_each(|c| s.add(c));
    ids.sort();
    (s, ids)
}

#[test]
fn appended_calls_are_visible_immediately_and_after_seal_and_reopen_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let cs = calls(500, BASE_MS, 1000, 1);
    let want = expected(&cs);
    {
        let store = open(dir.path());
        store.append(batch_of(cs[..300].to_vec())).unwrap();
        store.seal(BASE_MS).unwrap();
        store.append(batch_of(cs[300..].to_vec())).unwrap();
        assert_eq!(scan_sums(&store, all(), &RowFilter::default()), want);
        assert_eq!(rollup_sums(&store, Tier::Minute, all()), want.0);
        let st = store.stats();
        assert_eq!((st.head_events, st.wal_batches), (200, 1));
    }
    // Reopen replays the unsealed batch from the WAL into the head.
    let store = open(dir.path());
    assert_eq!(store.stats().head_events, 200);
    assert_eq!(scan_sums(&store, all(), &RowFilter::default()), want);
    assert_eq!(rollup_sums(&store, Tier::Minute, all()), want.0);
    store.seal(BASE_MS).unwrap();
    assert_eq!(store.stats().wal_batches, 0);
    assert_eq!(scan_sums(&store, all(), &RowFilter::default()), want);
    assert_eq!(rollup_sums(&store, Tier::Minute, all()), want.0);
    assert!(store.verify().unwrap().problems.is_empty());
}

#[test]
fn scans_honour_time_range_and_dimension_filters() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let cs = calls(400, BASE_MS, 500, 2);
    store.append(batch_of(cs[..250].to_vec())).unwrap();
    store.seal(BASE_MS).unwrap();
    store.append(batch_of(cs[250..].to_vec())).unwrap();
    let range = TimeRange::new(BASE_MS + 20_000, BASE_MS + 150_000);
    let filter = RowFilter {
        equals: vec![(Dim::Model, vec!["gpt-4o".into()])],
        error: Some(false),
    };
    let want: Vec<LlmCall> = cs
        .iter()
        .filter(|c| range.contains(c.timestamp_ms) && filter.matches(c))
        .cloned()
        .collect();
    assert!(!want.is_empty());
    assert_eq!(scan_sums(&store, range, &filter), expected(&want));
    // Rollups filtered by a rollup dim see the same calls (no error filter).
    let f2 = RowFilter {
        equals: vec![(Dim::Model, vec!["gpt-4o".into()])],
        error: None,
    };
    let mut s = Sums::default();
    store
        .rollups(
            Tier::Minute,
            TimeRange::new(BASE_MS, BASE_MS + HOUR_MS),
            &f2,
            &mut |_, g, r| {
                assert_eq!(g.0[0], "gpt-4o");
                s.add_rollup(r)
            },
        )
        .unwrap();
    let mut w = Sums::default();
    cs.iter()
        .filter(|c| c.model == "gpt-4o")
        .for_each(|c| w.add(c));
    assert_eq!(s, w);
}

#[test]
fn sealed_rows_round_trip_field_for_field() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let cs = calls(100, BASE_MS, 10, 3);
    store.append(batch_of(cs.clone())).unwrap();
    store.seal(BASE_MS).unwrap();
    let mut got = Vec::new();
    store
        .scan_calls(all(), &RowFilter::default(), &mut |c| got.push(c.clone()))
        .unwrap();
    got.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    let mut want = cs;
    want.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    assert_eq!(got, want);
}

#[test]
fn quality_and_feedback_join_their_call_through_the_request_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(4);
    let c = call(&mut rng, 1, BASE_MS);
    let group = GroupKey(vec![c.model.clone(), c.endpoint.clone()]);
    {
        let store = open(dir.path());
        store.append(batch_of(vec![c.clone()])).unwrap();
        store.seal(BASE_MS).unwrap();
        // The call is sealed; its quality and feedback arrive a day later.
        let later = BASE_MS + DAY_MS;
        store
            .append(Batch {
                quality: vec![quality(&mut rng, &c.request_id, later)],
                feedback: vec![
                    feedback(&mut rng, &c.request_id, later),
                    feedback(&mut rng, "unknown-request", later),
                ],
                ..Batch::default()
            })
            .unwrap();
        assert_eq!(store.request(&c.request_id).unwrap().unwrap().group, group);
        assert_eq!(store.request("nope").unwrap(), None);
    }
    let store = open(dir.path());
    for sealed in [false, true] {
        if sealed {
            store.seal(BASE_MS).unwrap();
        }
        let mut seen = Vec::new();
        store
            .scan_feedback(all(), &mut |f, r| {
                seen.push((f.request_id.clone(), r.map(|r| r.group.clone())))
            })
            .unwrap();
        seen.sort();
        assert_eq!(
            seen,
            vec![
                (c.request_id.clone(), Some(group.clone())),
                ("unknown-request".into(), None)
            ]
        );
        let mut q = 0;
        store
            .scan_quality(all(), &mut |_, r| {
                assert_eq!(r.unwrap().timestamp_ms, BASE_MS);
                q += 1
            })
            .unwrap();
        assert_eq!(q, 1);
        // Bucketed by their own timestamp, in their call's group.
        let mut by_group = Vec::new();
        store
            .rollups(
                Tier::Minute,
                TimeRange::new(BASE_MS + DAY_MS, BASE_MS + DAY_MS + MINUTE_MS),
                &RowFilter::default(),
                &mut |b, g, r| by_group.push((b, g.clone(), r.feedback_count, r.quality_count)),
            )
            .unwrap();
        by_group.sort();
        let empty = GroupKey(vec![String::new(), String::new()]);
        let mut want = vec![
            (BASE_MS + DAY_MS, group.clone(), 1, 1),
            (BASE_MS + DAY_MS, empty, 1, 0),
        ];
        want.sort();
        assert_eq!(by_group, want);
    }
}

#[test]
fn a_trace_is_read_back_whole_in_start_order_and_recent_traces_lists_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let mut spans: Vec<_> = (0..300)
            .rev()
            .map(|i| span("trace-a", i, BASE_MS))
            .collect();
        spans.push(span("trace-b", 0, BASE_MS + 10_000));
        spans.push(span("trace-ab", 0, BASE_MS + 5_000));
        store
            .append(Batch {
                spans,
                ..Batch::default()
            })
            .unwrap();
    }
    let store = open(dir.path());
    let t = store.trace("trace-a").unwrap();
    assert_eq!(t.len(), 300);
    assert!(t
        .windows(2)
        .all(|w| w[0].start_unix_nano <= w[1].start_unix_nano));
    assert_eq!(t[0], span("trace-a", 0, BASE_MS));
    assert_eq!(store.trace("trace-b").unwrap().len(), 1);
    assert!(store.trace("trace").unwrap().is_empty());
    let recent: Vec<_> = store
        .recent_traces(2)
        .unwrap()
        .into_iter()
        .map(|s| (s.trace_id, s.root_name))
        .collect();
    assert_eq!(
        recent,
        vec![
            ("trace-b".into(), "chain".into()),
            ("trace-ab".into(), "chain".into())
        ]
    );
}

#[test]
fn kv_commit_is_atomic_durable_and_scannable_by_prefix() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let mut ws = WriteSet::default();
        ws.put(Space::Rules, "rule/a", "1");
        ws.put(Space::Rules, "rule/b", "2");
        ws.put(Space::Outbox, "n/1", "x");
        store.kv_commit(ws).unwrap();
        let mut ws = WriteSet::default();
        ws.delete(Space::Rules, "rule/a");
        ws.put(Space::AlertState, "s", "firing");
        store.kv_commit(ws).unwrap();
    }
    let store = open(dir.path());
    assert_eq!(store.kv_get(Space::Rules, b"rule/a").unwrap(), None);
    assert_eq!(
        store.kv_scan(Space::Rules, b"rule/").unwrap(),
        vec![(b"rule/b".to_vec(), b"2".to_vec())]
    );
    assert_eq!(
        store.kv_get(Space::AlertState, b"s").unwrap(),
        Some(b"firing".to_vec())
    );
    assert_eq!(store.kv_scan(Space::Settings, b"").unwrap(), vec![]);
}

#[test]
fn downsampling_then_late_events_keep_every_tier_exact() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // A Monday: the week starting at day0 closes with its 7th day.
    let day0 = Tier::Week.floor(BASE_MS);
    let early = calls(300, day0 + 5 * HOUR_MS, 30_000, 5);
    store.append(batch_of(early.clone())).unwrap();
    store.seal(day0).unwrap();
    let report = store.downsample(day0 + 8 * DAY_MS).unwrap();
    let groups: std::collections::HashSet<_> =
        early.iter().map(|c| (&c.model, &c.endpoint)).collect();
    assert_eq!(
        report.weeks_rolled,
        groups.len() as u64,
        "one week per group"
    );
    let cov = store.coverage();
    assert_eq!(cov.hour_until_ms, day0 + 8 * DAY_MS - HOUR_MS);
    assert_eq!(cov.day_until_ms, day0 + 7 * DAY_MS);
    assert_eq!(cov.week_until_ms, day0 + 7 * DAY_MS);
    // Late events into the downsampled hours, days and week: head first, then sealed.
    let late = calls(50, day0 + 5 * HOUR_MS + 7, 60_000, 6);
    store.append(batch_of(late.clone())).unwrap();
    let mut want = Sums::default();
    early.iter().chain(&late).for_each(|c| want.add(c));
    for round in 0..2 {
        for tier in Tier::ALL {
            assert_eq!(
                rollup_sums(&store, tier, all()),
                want,
                "{tier:?} round {round}"
            );
        }
        store.seal(day0).unwrap();
    }
    // Re-running downsample is a no-op.
    let again = store.downsample(day0 + 8 * DAY_MS).unwrap();
    assert_eq!((again.hours_rolled, again.weeks_rolled), (0, 0));
    assert_eq!(rollup_sums(&store, Tier::Hour, all()), want);
}

#[test]
fn retention_removes_old_data_per_tier_by_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        retention: Retention {
            raw_ms: Some(2 * DAY_MS),
            minute_ms: Some(3 * DAY_MS),
            hour_ms: Some(10 * DAY_MS),
            day_ms: None,
            week_ms: None,
            traces_ms: Some(2 * DAY_MS),
        },
        ..config()
    };
    let store = Store::open(dir.path(), config).unwrap();
    let day0 = Tier::Day.floor(BASE_MS) - 20 * DAY_MS;
    let old = calls(100, day0, 60_000, 7);
    let new = calls(100, day0 + 15 * DAY_MS, 60_000, 8);
    store.append(batch_of(old.clone())).unwrap();
    store.append(batch_of(new.clone())).unwrap();
    store
        .append(Batch {
            spans: vec![span("old", 0, day0), span("new", 0, day0 + 15 * DAY_MS)],
            ..Batch::default()
        })
        .unwrap();
    store.seal(day0).unwrap();
    let now = day0 + 16 * DAY_MS;
    store.maintain(now).unwrap();
    let cov = store.coverage();
    assert_eq!(cov.raw_from_ms, now - 2 * DAY_MS);
    let mut want = Sums::default();
    new.iter().for_each(|c| want.add(c));
    assert_eq!(scan_sums(&store, all(), &RowFilter::default()).0, want);
    assert_eq!(rollup_sums(&store, Tier::Minute, all()), want);
    // Day rollups are kept forever; the new day is not closed yet.
    let mut old_sums = Sums::default();
    old.iter().for_each(|c| old_sums.add(c));
    assert_eq!(rollup_sums(&store, Tier::Day, all()), old_sums);
    // So are weeks: the old week closed, the new one did not.
    assert_eq!(rollup_sums(&store, Tier::Week, all()), old_sums);
    assert!(store.trace("old").unwrap().is_empty());
    assert_eq!(store.trace("new").unwrap().len(), 1);
    assert_eq!(store.stats().segments, 1);
}

/// Segment files (`<store>/segments/*.seg`) on disk, by name.
fn segment_file_names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    v.sort();
    v
}

#[test]
fn retention_deletes_a_segment_file_once_nothing_in_it_is_live() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        retention: Retention {
            raw_ms: Some(2 * DAY_MS),
            ..Retention::default()
        },
        ..config()
    };
    let day0 = Tier::Day.floor(BASE_MS) - 20 * DAY_MS;
    let old = calls(300, day0, 60_000, 21);
    let mid = calls(300, day0 + 10 * DAY_MS, 60_000, 22);
    let new = calls(300, day0 + 15 * DAY_MS, 60_000, 23);
    {
        let store = Store::open(dir.path(), config.clone()).unwrap();
        // Two seals into the first file.
        store.append(batch_of(old.clone())).unwrap();
        store.seal(day0).unwrap();
        store.append(batch_of(mid.clone())).unwrap();
        store.seal(day0).unwrap();
        store.close().unwrap();
    }
    // A reopened store appends to a new file.
    let store = Store::open(dir.path(), config.clone()).unwrap();
    store.append(batch_of(new.clone())).unwrap();
    store.seal(day0).unwrap();
    let before = segment_file_names(dir.path());
    assert_eq!(before.len(), 2, "{before:?}");
    let f = store.segment_files();
    assert_eq!((f.files, f.segments), (2, 3));
    assert_eq!(f.file_bytes, f.live_bytes);
    assert!(store.verify().unwrap().problems.is_empty());
    // Retention of `old` only: the first file still holds `mid`.
    store.apply_retention(day0 + 3 * DAY_MS).unwrap();
    assert_eq!(segment_file_names(dir.path()), before);
    assert_eq!(store.segment_files().segments, 2);
    assert!(store.segment_files().file_bytes > store.segment_files().live_bytes);
    // Retention of `mid` too: nothing in the first file is live any more.
    store.apply_retention(day0 + 13 * DAY_MS).unwrap();
    assert_eq!(segment_file_names(dir.path()), before[1..].to_vec());
    let f = store.segment_files();
    assert_eq!((f.files, f.segments), (1, 1));
    assert_eq!(f.file_bytes, f.live_bytes);
    // The rest reads as before, and after a reopen.
    assert_eq!(
        scan_sums(&store, all(), &RowFilter::default()),
        expected(&new)
    );
    assert!(store.verify().unwrap().problems.is_empty());
    store.close().unwrap();
    drop(store);
    let store = Store::open(dir.path(), config).unwrap();
    assert_eq!(
        scan_sums(&store, all(), &RowFilter::default()),
        expected(&new)
    );
    assert_eq!(segment_file_names(dir.path()), before[1..].to_vec());
    assert!(store.verify().unwrap().problems.is_empty());
}

#[test]
fn interval_durability_acknowledges_and_survives_a_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        durability: Durability::Interval { interval_ms: 50 },
        ..config()
    };
    let cs = calls(200, BASE_MS, 100, 9);
    {
        let store = Store::open(dir.path(), config.clone()).unwrap();
        for chunk in cs.chunks(20) {
            store.append(batch_of(chunk.to_vec())).unwrap();
        }
        store.close().unwrap();
        assert!(matches!(
            store.append(batch_of(cs[..1].to_vec())),
            Err(StorageError::ShuttingDown)
        ));
    }
    let store = Store::open(dir.path(), config).unwrap();
    assert_eq!(
        scan_sums(&store, all(), &RowFilter::default()),
        expected(&cs)
    );
}

#[test]
fn invalid_events_are_rejected_and_nothing_of_their_batch_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut cs = calls(3, BASE_MS, 1, 10);
    cs[2].latency_ms = f64::NAN;
    let e = store.append(batch_of(cs)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert_eq!(store.stats().appended_events_total, 0);
}

#[test]
fn reopening_with_other_rollup_dims_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let other = StoreConfig {
        rollup_dims: vec![Dim::Provider],
        ..config()
    };
    assert!(Store::open(dir.path(), other).is_err());
    assert_eq!(open(dir.path()).rollup_dims(), &[Dim::Model, Dim::Endpoint]);
}

#[test]
fn a_corrupted_segment_is_named_by_verify_and_other_data_stays_readable() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = calls(200, BASE_MS, 100, 11);
    let b = calls(200, BASE_MS + DAY_MS, 100, 12);
    store.append(batch_of(a.clone())).unwrap();
    store.seal(BASE_MS).unwrap();
    store.append(batch_of(b.clone())).unwrap();
    store.seal(BASE_MS).unwrap();
    assert!(store.verify().unwrap().problems.is_empty());
    for offset in [0usize, 3, 40, 999, 5000] {
        let id = store
            .corrupt_segment_for_test(0, offset, 0x5a)
            .unwrap()
            .unwrap();
        let report = store.verify().unwrap();
        assert_eq!(report.problems.len(), 1, "{report:?}");
        assert!(report.problems[0].0.starts_with("segments/"));
        assert!(
            report.problems[0].1.contains(&format!("segment {id}")),
            "{report:?}"
        );
        // The other segment and the rollups still read.
        let range_b = TimeRange::new(BASE_MS + DAY_MS, i64::MAX);
        assert_eq!(
            scan_sums(&store, range_b, &RowFilter::default()),
            expected(&b)
        );
        let mut want = Sums::default();
        a.iter().chain(&b).for_each(|c| want.add(c));
        assert_eq!(rollup_sums(&store, Tier::Minute, all()), want);
        // Scanning the corrupted one is an error, not a panic.
        let err = store
            .scan_calls(
                TimeRange::new(BASE_MS, BASE_MS + DAY_MS),
                &RowFilter::default(),
                &mut |_| {},
            )
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupted);
        assert!(matches!(err, StorageError::ReadSegment { segment_id, .. } if segment_id == id));
        // Undo for the next offset.
        store.corrupt_segment_for_test(0, offset, 0x5a).unwrap();
    }
}

#[test]
fn concurrent_appenders_share_group_commits_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let cs = calls(400, BASE_MS, 7, 100 + t);
                for chunk in cs.chunks(10) {
                    store.append(batch_of(chunk.to_vec())).unwrap();
                }
                cs
            })
        })
        .collect();
    let mut all_calls = Vec::new();
    for t in threads {
        all_calls.extend(t.join().unwrap());
    }
    assert_eq!(
        scan_sums(&store, all(), &RowFilter::default()),
        expected(&all_calls)
    );
    assert_eq!(store.stats().wal_batches, 160);
}

#[test]
fn automatic_seals_run_off_the_writer_and_complete_by_close() {
    let dir = tempfile::tempdir().unwrap();
    let cs = calls(1_000, BASE_MS, 1000, 3);
    let want = expected(&cs);
    let cfg = StoreConfig {
        seal_max_events: 100,
        ..config()
    };
    {
        let store = Store::open(dir.path(), cfg.clone()).unwrap();
        for chunk in cs.chunks(100) {
            store.append(batch_of(chunk.to_vec())).unwrap();
        }
        assert_eq!(scan_sums(&store, all(), &RowFilter::default()), want);
        // Closing joins the seal thread after its pending seal.
        store.close().unwrap();
    }
    let store = Store::open(dir.path(), cfg).unwrap();
    let st = store.stats();
    assert_eq!((st.head_events, st.wal_batches), (0, 0));
    assert_eq!(scan_sums(&store, all(), &RowFilter::default()), want);
    assert_eq!(rollup_sums(&store, Tier::Minute, all()), want.0);
    assert!(store.verify().unwrap().problems.is_empty());
}
