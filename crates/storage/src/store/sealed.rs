//! Sealed segments as the engine lists them: summary + location in the
//! segment files (`seg_files.rs`), loading them at open, reading their
//! bytes, and moving the inline segment values of a format ≤ 4 store into
//! the files (format 5).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::db::{Db, Ops, T};
use crate::error::{hex, CodecError, Result, StorageError};
use crate::seg_files::{Location, Pinned, SegFiles};
use crate::store::records::SegMeta;

/// A stored segment: its summary and where its bytes are. `loc` is `None`
/// when its location record was missing or unreadable at open (reads look
/// the record up again and report it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sealed {
    pub(crate) meta: SegMeta,
    pub(crate) loc: Option<Location>,
}

/// A segment file failure while writing (not a corruption).
pub(crate) fn write_err(e: CodecError) -> StorageError {
    StorageError::Db {
        op: "segment file",
        message: e.reason,
    }
}

fn open_err(dir: &Path, e: CodecError) -> StorageError {
    StorageError::Open {
        path: dir.display().to_string(),
        source: Box::new(e),
    }
}

/// Opens the segment files and moves any inline segment value into them
/// (see [`move_inline`]); returns them with the location of every segment.
pub(crate) fn open_files(db: &Db, dir: &Path) -> Result<(SegFiles, HashMap<Vec<u8>, Location>)> {
    let mut locs = HashMap::new();
    let mut inline = 0usize;
    let mut unreadable = 0usize;
    for kv in db.range(T::Segments, ..) {
        let (k, v) = kv?;
        if Location::is_location(&v) {
            // An unreadable record counts for no file: verify and reads
            // report it by key.
            match Location::decode(&v) {
                Ok(l) => {
                    locs.insert(k.to_vec(), l);
                }
                Err(e) => {
                    unreadable += 1;
                    tracing::warn!(key = %hex(&k), error = %e, "unreadable segment location record");
                }
            }
        } else {
            inline += 1;
        }
    }
    // Whatever file an unreadable record names must not be deleted as
    // an orphan: with one, no orphan is (until it is repaired or removed).
    if unreadable > 0 {
        tracing::warn!(
            records = unreadable,
            "unreadable segment location records: unreferenced segment files are kept"
        );
    }
    let files = SegFiles::open(dir, locs.values().copied(), unreadable == 0)
        .map_err(|e| open_err(dir, e))?;
    if inline > 0 {
        let moved = move_inline(db, &files, &mut locs)?;
        tracing::info!(
            segments = moved,
            "moved inline segments into segment files (format 5)"
        );
    }
    Ok((files, locs))
}

/// Bytes of inline segments appended per batch of the move.
const MOVE_BATCH_BYTES: usize = 64 << 20;

/// Moves every inline segment value (format ≤ 4) into the segment files:
/// per batch, the bytes are appended and synced first, then one
/// transaction replaces the inline values by their locations, then it is
/// flushed. Re-runnable after a crash at any point: values not yet
/// replaced are still inline and are moved again; the bytes appended for
/// them are in no location, so their file is deleted at the next open.
pub(crate) fn move_inline(
    db: &Db,
    files: &SegFiles,
    locs: &mut HashMap<Vec<u8>, Location>,
) -> Result<usize> {
    let mut moved = 0;
    let mut batch: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut bytes = 0usize;
    let mut flush_batch = |batch: &mut Vec<(Vec<u8>, Vec<u8>)>| -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let values: Vec<&[u8]> = batch.iter().map(|(_, v)| v.as_slice()).collect();
        let new = files.append(&values).map_err(write_err)?;
        let mut ops = Ops::default();
        for ((k, _), l) in batch.iter().zip(&new) {
            ops.put(T::Segments, k.clone(), l.encode());
        }
        db.commit(&ops)?;
        db.flush()?;
        files.add_live(&new);
        moved += new.len();
        for ((k, _), l) in batch.drain(..).zip(new) {
            locs.insert(k, l);
        }
        Ok(())
    };
    for kv in db.range(T::Segments, ..) {
        let (k, v) = kv?;
        if Location::is_location(&v) {
            continue;
        }
        bytes += v.len();
        batch.push((k.to_vec(), v.to_vec()));
        if bytes >= MOVE_BATCH_BYTES {
            flush_batch(&mut batch)?;
            bytes = 0;
        }
    }
    flush_batch(&mut batch)?;
    Ok(moved)
}

/// Joins the segment summaries with their locations.
pub(crate) fn load(
    db: &Db,
    locs: &HashMap<Vec<u8>, Location>,
) -> Result<BTreeMap<Vec<u8>, Sealed>> {
    let mut segments = BTreeMap::new();
    for kv in db.range(T::SegmentMeta, ..) {
        let (k, v) = kv?;
        match SegMeta::decode(&v) {
            Ok(meta) => {
                let loc = locs.get(k.as_ref()).copied();
                segments.insert(k.to_vec(), Sealed { meta, loc });
            }
            Err(e) => {
                tracing::error!(key = ?k, error = %e, "unreadable segment summary; segment skipped")
            }
        }
    }
    Ok(segments)
}

/// The framed bytes of the segment stored under `key`, `None` if it is
/// gone (retention deleted it). Its location is read from sled; `pinned`
/// is the handle a reader took on its file when it listed the segment.
pub(crate) fn read(
    db: &Db,
    files: &SegFiles,
    key: &[u8],
    pinned: &Pinned,
) -> Result<Option<Vec<u8>>, CodecError> {
    let Some(v) = db
        .get(T::Segments, key)
        .map_err(|e| CodecError::new("segment location", e.to_string()))?
    else {
        return Ok(None);
    };
    let loc = Location::decode(&v)?;
    files.read(loc, pinned).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::DbOptions;
    use crate::store::Store;
    use sextant_model::{Batch, TimeRange};

    use crate::store::test_support::{manual_config as config, raw_ids};

    fn batch(n: usize, ts: i64, tag: &str) -> Batch {
        crate::store::test_support::calls(n, ts, 1000, tag, "m")
    }

    fn seg_file_names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir.join(crate::seg_files::DIR_NAME))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Puts the bytes of the segments `which` picks back inline, as a
    /// format 4 store (or a move cut short) has them.
    fn inline_again(dir: &Path, which: impl Fn(usize) -> bool) {
        let db = Db::open(
            dir,
            DbOptions {
                cache_bytes: 1 << 20,
                flush_every_ms: None,
            },
        )
        .unwrap();
        let (files, locs) = open_files(&db, dir).unwrap();
        let mut keys: Vec<&Vec<u8>> = locs.keys().collect();
        keys.sort();
        let mut ops = Ops::default();
        for (i, k) in keys.into_iter().enumerate() {
            if which(i) {
                let bytes = files.read(locs[k], &None).unwrap();
                ops.put(T::Segments, k.clone(), bytes);
            }
        }
        db.commit(&ops).unwrap();
        db.flush().unwrap();
    }

    #[test]
    fn inline_segments_are_moved_into_files_at_open_and_a_cut_move_is_finished() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 1_700_000_000_000;
        let mut want = Vec::new();
        {
            let store = Store::open(dir.path(), config()).unwrap();
            for (i, tag) in ["a", "b", "c"].iter().enumerate() {
                let b = batch(50, t0 + i as i64 * 3_600_000, tag);
                want.extend(b.calls.iter().map(|c| c.request_id.clone()));
                store.append(b).unwrap();
                store.seal(t0).unwrap();
            }
            assert_eq!(store.segment_files().segments, 3);
        }
        want.sort();
        // A format 4 store: every segment inline, no segment files (an
        // orphan file of a crashed earlier move lies there).
        inline_again(dir.path(), |_| true);
        let seg_dir = dir.path().join(crate::seg_files::DIR_NAME);
        std::fs::remove_dir_all(&seg_dir).unwrap();
        std::fs::create_dir(&seg_dir).unwrap();
        std::fs::write(seg_dir.join("0000000000000009.seg"), b"torn").unwrap();
        {
            let store = Store::open(dir.path(), config()).unwrap();
            assert_eq!(raw_ids(&store), want);
            assert!(store.verify().unwrap().problems.is_empty());
            let f = store.segment_files();
            assert_eq!((f.files, f.segments), (1, 3));
            assert_eq!(f.file_bytes, f.live_bytes);
            let db = &store.core().db;
            for kv in db.range(T::Segments, ..) {
                assert!(Location::is_location(&kv.unwrap().1));
            }
        }
        assert_eq!(seg_file_names(dir.path()), vec!["000000000000000a.seg"]);
        // A move cut short: one segment still inline, the others moved.
        inline_again(dir.path(), |i| i == 1);
        let store = Store::open(dir.path(), config()).unwrap();
        assert_eq!(raw_ids(&store), want);
        assert!(store.verify().unwrap().problems.is_empty());
        assert_eq!(store.segment_files().segments, 3);
        assert_eq!(
            seg_file_names(dir.path()),
            vec!["000000000000000a.seg", "000000000000000b.seg"]
        );
    }

    #[test]
    fn a_location_past_the_end_of_its_file_is_reported_by_key_and_other_segments_read() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 1_700_000_000_000;
        let store = Store::open(dir.path(), config()).unwrap();
        store.append(batch(40, t0, "a")).unwrap();
        store.seal(t0).unwrap();
        store.append(batch(40, t0 + 86_400_000, "b")).unwrap();
        store.seal(t0).unwrap();
        let (key, s) = {
            let st = store.core().state.read();
            let (k, s) = st.segments.iter().next().unwrap();
            (k.clone(), *s)
        };
        let loc = s.loc.unwrap();
        let past = Location {
            offset: loc.offset + 1_000_000,
            ..loc
        };
        let db = &store.core().db;
        db.insert(T::Segments, &key, &past.encode()).unwrap();
        let report = store.verify().unwrap();
        assert_eq!(report.problems.len(), 1, "{report:?}");
        let (where_, msg) = &report.problems[0];
        assert_eq!(where_, &format!("segments/{}", crate::error::hex(&key)));
        assert!(msg.contains(&format!("segment {}", s.meta.id)), "{msg}");
        assert!(msg.contains("past the end"), "{msg}");
        let err = store
            .scan_calls(
                TimeRange::new(t0, t0 + 1000),
                &crate::RowFilter::default(),
                &mut |_| {},
            )
            .unwrap_err();
        assert!(
            matches!(err, StorageError::ReadSegment { segment_id, .. } if segment_id == s.meta.id),
            "{err}"
        );
        let mut b = 0;
        store
            .scan_calls(
                TimeRange::new(t0 + 86_400_000, i64::MAX),
                &crate::RowFilter::default(),
                &mut |_| b += 1,
            )
            .unwrap();
        assert_eq!(b, 40);
    }

    #[test]
    fn a_scan_reads_the_files_it_listed_even_once_they_are_unlinked() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 1_700_000_000_000;
        {
            let store = Store::open(dir.path(), config()).unwrap();
            store.append(batch(40, t0, "a")).unwrap();
            store.seal(t0).unwrap();
        }
        // Reopened: the file is no longer the one appended to.
        let store = Store::open(dir.path(), config()).unwrap();
        let core = store.core();
        let all = TimeRange::new(i64::MIN, i64::MAX);
        let scan = {
            let st = core.state.read();
            core.call_scan(&st, vec![all], Vec::new())
        };
        let loc = core
            .state
            .read()
            .segments
            .values()
            .next()
            .unwrap()
            .loc
            .unwrap();
        // Retention's last step, as if it ran right after the scan listed
        // the segment and before it read it.
        assert_eq!(core.segs.release(&[loc]).unwrap(), 1);
        assert!(seg_file_names(dir.path()).is_empty());
        let mut n = 0;
        core.run_call_scan(&scan, &crate::RowFilter::default(), &mut |_| n += 1)
            .unwrap();
        assert_eq!(n, 40);
    }
}
