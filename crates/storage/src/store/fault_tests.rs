//! Failures injected into the store's file writes (test hooks of
//! `run_files.rs` and `seg_files.rs`), and damaged records at open.

use std::sync::atomic::Ordering;

use super::*;

use super::test_support::manual_config as config;

/// `n` calls of model `model-<tag>` (a new dictionary string per tag).
fn calls(n: usize, ts: i64, tag: &str) -> Batch {
    super::test_support::calls(n, ts, 1, tag, &format!("model-{tag}"))
}

/// Every stored call as (request id, model), sorted.
fn rows(store: &Store) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    store
        .scan_calls(
            TimeRange::new(i64::MIN, i64::MAX),
            &RowFilter::default(),
            &mut |c| rows.push((c.request_id.clone(), c.model.clone())),
        )
        .unwrap();
    rows.sort();
    rows
}

fn want(tags: &[&str], n: usize) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = tags
        .iter()
        .flat_map(|t| (0..n).map(move |i| (format!("{t}-{i}"), format!("model-{t}"))))
        .collect();
    v.sort();
    v
}

/// A run-file write failing in a seal that introduced a new dictionary
/// string: the retried seal must still store that string's entry, and the
/// next new string must get the next id.
#[test]
fn a_failed_run_file_write_in_a_seal_forgets_the_dictionary_entries_it_handed_out() {
    let dir = tempfile::tempdir().unwrap();
    let now = sextant_model::now_ms();
    let store = Store::open(dir.path(), config()).unwrap();
    store.append(calls(3, now - 90_000, "a")).unwrap();
    store.seal(now).unwrap();
    store.append(calls(3, now - 60_000, "b")).unwrap();
    let files = store.h.core.state.read().requests.files.clone();
    files.fail_next_write.store(true, Ordering::SeqCst);
    assert!(store.seal(now).is_err(), "the injected failure surfaces");
    assert!(!files.fail_next_write.load(Ordering::SeqCst));
    // Retried: succeeds.
    store.seal(now).unwrap();
    store.append(calls(3, now - 30_000, "c")).unwrap();
    store.seal(now).unwrap();
    assert_eq!(rows(&store), want(&["a", "b", "c"], 3));
    store.close().unwrap();
    drop(store);

    let store = Store::open(dir.path(), config()).unwrap();
    assert_eq!(rows(&store), want(&["a", "b", "c"], 3));
    let report = store.verify().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

fn count_files(dir: &std::path::Path, sub: &str) -> usize {
    std::fs::read_dir(dir.join(sub)).unwrap().count()
}

/// An unreadable segment location record or request run directory entry:
/// the open deletes no file it might name.
#[test]
fn open_deletes_no_file_an_unreadable_record_might_name() {
    let dir = tempfile::tempdir().unwrap();
    let now = sextant_model::now_ms();
    // Two opens, one seal each: two segment files, two run files.
    for (i, tag) in ["a", "b"].into_iter().enumerate() {
        let store = Store::open(dir.path(), config()).unwrap();
        store
            .append(calls(3, now - 60_000 + i as i64 * 10, tag))
            .unwrap();
        store.seal(now).unwrap();
        store.close().unwrap();
    }
    let segs = crate::seg_files::DIR_NAME;
    let runs = crate::run_files::DIR_NAME;
    assert_eq!(count_files(dir.path(), segs), 2);
    assert_eq!(count_files(dir.path(), runs), 2);
    {
        let opts = crate::db::DbOptions {
            cache_bytes: 1 << 20,
            flush_every_ms: None,
        };
        let db = Db::open(dir.path(), opts).unwrap();
        let damage = |t: T, bad: Vec<u8>| {
            let (k, _) = db.range(t, ..).last().unwrap().unwrap();
            db.insert(t, &k, &bad).unwrap();
        };
        damage(
            T::Segments,
            vec![crate::seg_files::LOCATION_VERSION, 1, 2, 3],
        );
        damage(T::RequestRunDir, b"not a run".to_vec());
        db.flush().unwrap();
    }
    for _ in 0..2 {
        let store = Store::open(dir.path(), config()).unwrap();
        assert_eq!(count_files(dir.path(), segs), 2);
        assert_eq!(count_files(dir.path(), runs), 2);
        let report = store.verify().unwrap();
        assert!(report.problems.len() >= 2, "{:?}", report.problems);
        store.close().unwrap();
    }
}

/// Retention deleting a segment's record and then its file while verify
/// is between reading the record and reading the file: no false damage.
#[test]
fn verify_reports_no_damage_for_a_segment_deleted_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let now = sextant_model::now_ms();
    let store = Store::open(dir.path(), config()).unwrap();
    store.append(calls(3, now - 60_000, "a")).unwrap();
    store.seal(now).unwrap();
    store.close().unwrap();
    drop(store);
    // Reopened: no handle on the file is cached.
    let store = Store::open(dir.path(), config()).unwrap();
    let core = store.h.core.clone();
    let (key, loc) = {
        let (k, v) = core.db.range(T::Segments, ..).next().unwrap().unwrap();
        (k.to_vec(), crate::seg_files::Location::decode(&v).unwrap())
    };
    let path = dir
        .path()
        .join(crate::seg_files::DIR_NAME)
        .join(format!("{:016x}.seg", loc.file));
    assert!(path.exists());
    let db_core = core.clone();
    *core.segs.before_next_read.lock() = Some(crate::seg_files::TestHook(Box::new(move || {
        // What retention does: the record goes (durably), then the file.
        db_core.db.remove_many(T::Segments, &[key]).unwrap();
        db_core.db.flush().unwrap();
        std::fs::remove_file(&path).unwrap();
    })));
    let report = store.verify().unwrap();
    assert!(core.segs.before_next_read.lock().is_none(), "the hook ran");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    drop(core);
    store.close().unwrap();
}
