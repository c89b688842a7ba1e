//! The request index: request_id → (timestamp, group), kept forever so that
//! quality and feedback of a call of any age join to it.
//!
//! Stored as sorted **runs**, one per seal (merged in the background): a
//! run is a directory entry (tree `request_run_dir`, key `run_id u64 BE`)
//! and its entries in chunks of up to [`CHUNK`]. Every request id has a
//! sort key: `0x00 ‖ 16 bytes` for a canonical lowercase UUID, `0x01 ‖
//! UTF-8 bytes` for any other id. The directory (first key of every chunk,
//! the run's group table) is loaded at open: O(entries / 512) memory, so a
//! lookup is one fence search in memory and one chunk read per run, newest
//! run first.
//!
//! **Fingerprint runs (format 7).** A run written since format 7 holds no
//! ids: its entries are keyed and sorted by the id's **fingerprint**,
//! SipHash-2-4 of the sort key under the store's 128-bit random key
//! (`meta/request_fp_key`), and its chunks (version 2, `fp_chunk.rs`)
//! store the fingerprints Rice-coded (≈ 64 − log2(run entries) + 1.5 bits
//! each instead of 128). A lookup of an absent id matches an entry with
//! probability ≈ entries / 2^64; two ids with one fingerprint share one
//! entry (the newer call's). Runs written before (format ≤ 6: chunks of
//! sort keys, version 1) are still read with their keys; a merge turns
//! them into fingerprint runs.
//!
//! **Invariant (visibility):** a run's chunks are written before the
//! transaction that inserts its directory entry and advances
//! `meta/next_request_run`; chunks without a directory entry are never
//! read. At open, chunks at or above `next_request_run` (a crash before
//! the commit) and chunks of tombstoned directory entries (a crash while a
//! merge deleted them) are deleted.
//!
//! **Invariant (key):** the fingerprint key is written and flushed at the
//! first open of a store that has none (before any run can use it) and
//! never changed; an open that finds fingerprint runs but no key fails
//! rather than making a new one.
//!
//! Format version 1 stores (no runs) keep their per-request entries in tree
//! `requests`; they are still read (after every run) and never rewritten.
//!
//! Since format 6 a run's chunks are not in tree `request_runs` but in a
//! file of their own (`run_files.rs`), and its directory entry (version 2)
//! records each chunk's end offset in it. A fingerprint run's fences and
//! chunk lengths are not in its directory entry (version 3) but in an
//! index block at the end of its file, which the entry locates (offset,
//! length, CRC): the entry stays a few bytes plus the group table however
//! big the run, and the block is read at open (one read per run). The
//! file (chunks and index block) is written and synced before the entry is
//! committed, and deleted
//! only once the entry's tombstone is durable; at open, files without a
//! published entry are deleted, and runs of a format ≤ 5 store (chunks in
//! `request_runs`, version 1 entry) are moved into files: file first, then
//! the entry rewritten, then the tree's chunks deleted.

mod fp_chunk;
mod siphash;

#[cfg(test)]
use std::collections::HashMap;
use std::sync::Arc;

use crate::api::{GroupKey, RequestRef};
use crate::codec::{put_bytes, put_varint, Reader};
use crate::db::{u64_from, Db, Ops, T};
use crate::error::{hex, CodecError, Result, StorageError};
use crate::frame::{frame, unframe};
use crate::run_files::RunFiles;
use crate::store::records::decode_request;
use fp_chunk::{FpChunk, FpEntry};

/// Entries per chunk.
pub(crate) const CHUNK: usize = 512;
/// Runs kept before the two adjacent runs with the fewest entries are merged.
pub(crate) const MAX_RUNS: usize = 8;
/// Version byte of sort-key chunks (format ≤ 6), and of directory entries
/// of runs whose chunks are in tree `request_runs` (format ≤ 5).
const RUN_VERSION: u8 = 1;
/// Version byte of directory entries of sort-key runs whose chunks are in
/// a run file (format 6): version 1's payload, then the chunks' lengths.
const RUN_FILE_VERSION: u8 = 2;
/// Version byte of directory entries of fingerprint runs (format 7, chunks
/// in a run file): the chunk count and where the run's index block is in
/// its file (offset, length, CRC-32 of the framed block); the fences and
/// chunk lengths are in that block, not in sled.
const FP_RUN_VERSION: u8 = 3;
/// Version byte of a fingerprint run's index block (the last bytes of its
/// run file): chunk count, every chunk's first fingerprint (u64 BE), every
/// chunk's length (varint).
const FP_INDEX_VERSION: u8 = 1;
/// Meta key: the id the next run gets (u64 BE).
pub(crate) const NEXT_RUN_KEY: &[u8] = b"next_request_run";
/// Meta key: the 16-byte SipHash key of the store's fingerprints.
pub(crate) const FP_KEY_META: &[u8] = b"request_fp_key";

/// The store's fingerprint function: SipHash-2-4 of an id's sort key
/// ([`id_key`]) under the store's key.
#[derive(Clone, Copy)]
pub(crate) struct FpKey {
    key: [u8; 16],
    /// Test hook: seals write sort-key runs (format 6) as older builds did.
    #[cfg(test)]
    pub(crate) key_runs: bool,
}

impl std::fmt::Debug for FpKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: never in logs.
        f.write_str("FpKey(..)")
    }
}

impl FpKey {
    pub(crate) fn new(key: [u8; 16]) -> FpKey {
        FpKey {
            key,
            #[cfg(test)]
            key_runs: false,
        }
    }

    /// A fresh random key: 16 bytes of `/dev/urandom`, or (where that
    /// cannot be read) of the standard library's randomly seeded hasher.
    fn random() -> FpKey {
        use std::io::Read;
        let mut key = [0u8; 16];
        let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut key));
        if read.is_err() {
            use std::hash::BuildHasher;
            for (i, half) in key.chunks_mut(8).enumerate() {
                let h = std::collections::hash_map::RandomState::new().hash_one((
                    i,
                    std::time::SystemTime::now(),
                    std::process::id(),
                ));
                half.copy_from_slice(&h.to_le_bytes());
            }
        }
        FpKey::new(key)
    }

    /// The fingerprint of a sort key.
    pub(crate) fn of_key(&self, sort_key: &[u8]) -> u64 {
        siphash::siphash24(&self.key, sort_key)
    }

    /// The fingerprint of a request id.
    #[cfg(test)]
    pub(crate) fn of_id(&self, id: &str) -> u64 {
        self.of_key(&id_key(id))
    }

    /// Loads the store's key; creates, stores and flushes one if it has
    /// none and `may_create` (no fingerprint run exists).
    fn load(db: &Db, may_create: bool) -> Result<FpKey> {
        match db.get(T::Meta, FP_KEY_META)? {
            Some(v) => {
                let key: [u8; 16] = v.as_ref().try_into().map_err(|_| {
                    StorageError::decode(
                        T::Meta.name(),
                        FP_KEY_META,
                        CodecError::new("request fingerprint key", "not 16 bytes"),
                    )
                })?;
                Ok(FpKey::new(key))
            }
            None if may_create => {
                let k = FpKey::random();
                db.insert(T::Meta, FP_KEY_META, &k.key)?;
                db.flush()?;
                Ok(k)
            }
            None => Err(StorageError::decode(
                T::Meta.name(),
                FP_KEY_META,
                CodecError::new(
                    "request fingerprint key",
                    "missing, but fingerprint runs exist",
                ),
            )),
        }
    }
}

/// The sort key of a request id: canonical lowercase UUIDs as 16 bytes.
pub(crate) fn id_key(id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    id_key_into(id, &mut k);
    k
}

/// [`id_key`] into `k` (cleared first).
fn id_key_into(id: &str, k: &mut Vec<u8>) {
    k.clear();
    let b = id.as_bytes();
    if b.len() == 36 && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-') {
        k.push(0);
        let mut hi = None;
        let mut ok = true;
        for (i, &c) in b.iter().enumerate() {
            if [8, 13, 18, 23].contains(&i) {
                continue;
            }
            let v = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                _ => {
                    ok = false;
                    break;
                }
            };
            match hi.take() {
                None => hi = Some(v),
                Some(h) => k.push((h << 4) | v),
            }
        }
        if ok && k.len() == 17 {
            return;
        }
        k.clear();
    }
    k.push(1);
    k.extend_from_slice(b);
}

fn chunk_key(run: u64, chunk: u32) -> Vec<u8> {
    let mut k = run.to_be_bytes().to_vec();
    k.extend_from_slice(&chunk.to_be_bytes());
    k
}

fn bits_for(v: u64) -> u32 {
    64 - v.leading_zeros()
}

/// Packs `values` at `w` bits each, little-endian bit order.
#[cfg(test)]
fn pack(out: &mut Vec<u8>, values: impl Iterator<Item = u64>, n: usize, w: u32) {
    let start = out.len();
    out.resize(start + (n * w as usize).div_ceil(8), 0);
    if w == 0 {
        return;
    }
    for (i, v) in values.enumerate() {
        let base = i * w as usize;
        for b in 0..w as usize {
            if (v >> b) & 1 == 1 {
                let bit = base + b;
                out[start + bit / 8] |= 1 << (bit % 8);
            }
        }
    }
}

/// The `i`-th `w`-bit value of `bytes` (bounds checked by the caller).
fn unpack_at(bytes: &[u8], i: usize, w: u32) -> u64 {
    let mut v = 0u64;
    let base = i * w as usize;
    for b in 0..w as usize {
        let bit = base + b;
        if bytes
            .get(bit / 8)
            .is_some_and(|x| (x >> (bit % 8)) & 1 == 1)
        {
            v |= 1 << b;
        }
    }
    v
}

/// One decoded entry of a sort-key run: (key, timestamp, group id in the
/// run's table).
#[cfg(test)]
type Entry = (Vec<u8>, i64, u32);

/// A sort-key chunk (version 1). Only tests write them now.
#[cfg(test)]
fn encode_chunk(entries: &[Entry], group_bits: u32) -> Vec<u8> {
    let n16 = entries.iter().filter(|e| e.0[0] == 0).count();
    let ns = entries.len() - n16;
    let base = entries.iter().map(|e| e.1).min().unwrap_or(0);
    let max = entries.iter().map(|e| e.1).max().unwrap_or(0);
    let ts_bits = bits_for(max.wrapping_sub(base) as u64);
    let mut p = Vec::with_capacity(16 + entries.len() * 20);
    put_varint(&mut p, n16 as u64);
    put_varint(&mut p, ns as u64);
    crate::codec::put_ivarint(&mut p, base);
    p.push(ts_bits as u8);
    p.push(group_bits as u8);
    for e in &entries[..n16] {
        p.extend_from_slice(&e.0[1..]);
    }
    for e in &entries[n16..] {
        put_bytes(&mut p, &e.0[1..]);
    }
    pack(
        &mut p,
        entries.iter().map(|e| e.1.wrapping_sub(base) as u64),
        entries.len(),
        ts_bits,
    );
    pack(
        &mut p,
        entries.iter().map(|e| u64::from(e.2)),
        entries.len(),
        group_bits,
    );
    frame(RUN_VERSION, &p)
}

/// A sort-key chunk's payload (version 1), parsed just enough to search it.
struct Chunk<'a> {
    ids16: &'a [u8],
    strs: Vec<&'a [u8]>,
    base: i64,
    ts_bits: u32,
    group_bits: u32,
    ts: &'a [u8],
    groups: &'a [u8],
}

impl<'a> Chunk<'a> {
    fn parse(bytes: &'a [u8]) -> std::result::Result<Chunk<'a>, CodecError> {
        let p = unframe("request index chunk", RUN_VERSION, bytes)?;
        let mut r = Reader::new("request index chunk", p);
        let n16 = r.count(r.remaining() / 16, "16-byte id")?;
        let ns = r.count(r.remaining(), "string id")?;
        let base = r.ivarint()?;
        let ts_bits = u32::from(r.u8()?);
        let group_bits = u32::from(r.u8()?);
        if ts_bits > 64 || group_bits > 32 {
            return Err(r.err("bit width out of range"));
        }
        let ids16 = r.take(n16 * 16)?;
        let mut strs = Vec::with_capacity(ns);
        for _ in 0..ns {
            strs.push(r.bytes()?);
        }
        let n = n16 + ns;
        let ts = r.take((n * ts_bits as usize).div_ceil(8))?;
        let groups = r.take((n * group_bits as usize).div_ceil(8))?;
        r.finish()?;
        Ok(Chunk {
            ids16,
            strs,
            base,
            ts_bits,
            group_bits,
            ts,
            groups,
        })
    }

    fn len(&self) -> usize {
        self.ids16.len() / 16 + self.strs.len()
    }

    fn key(&self, i: usize) -> Vec<u8> {
        let n16 = self.ids16.len() / 16;
        let mut k = Vec::with_capacity(17);
        if i < n16 {
            k.push(0);
            k.extend_from_slice(&self.ids16[i * 16..i * 16 + 16]);
        } else {
            k.push(1);
            k.extend_from_slice(self.strs[i - n16]);
        }
        k
    }

    fn find(&self, key: &[u8]) -> Option<usize> {
        let n16 = self.ids16.len() / 16;
        match key.split_first() {
            Some((0, raw)) if raw.len() == 16 => {
                let (mut lo, mut hi) = (0, n16);
                while lo < hi {
                    let mid = (lo + hi) / 2;
                    match self.ids16[mid * 16..mid * 16 + 16].cmp(raw) {
                        std::cmp::Ordering::Less => lo = mid + 1,
                        std::cmp::Ordering::Greater => hi = mid,
                        std::cmp::Ordering::Equal => return Some(mid),
                    }
                }
                None
            }
            Some((1, s)) => self
                .strs
                .binary_search_by(|x| (*x).cmp(s))
                .ok()
                .map(|i| n16 + i),
            _ => None,
        }
    }

    fn ts(&self, i: usize) -> i64 {
        self.base
            .wrapping_add(unpack_at(self.ts, i, self.ts_bits) as i64)
    }

    fn group(&self, i: usize) -> u32 {
        unpack_at(self.groups, i, self.group_bits) as u32
    }
}

/// What the store keeps in memory about one run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Run {
    pub(crate) id: u64,
    /// Recency: lookups try higher `seq` first; a merged run takes the
    /// highest `seq` of its sources.
    pub(crate) seq: u64,
    pub(crate) count: u64,
    pub(crate) groups: Vec<GroupKey>,
    /// First key of every chunk, ascending; their kind is the kind of the
    /// run's chunks.
    pub(crate) fences: Fences,
    /// End offset of every chunk in the run's file; `None` while the
    /// chunks are in tree `request_runs` (a format ≤ 5 run not moved yet,
    /// or a run being built).
    pub(crate) ends: Option<Vec<u64>>,
    /// Where a fingerprint run's index block is in its file (`None` for
    /// sort-key runs and runs being built).
    pub(crate) index: Option<IndexLoc>,
    /// Why a fingerprint run's index block could not be read at open: its
    /// fences and chunk offsets are then empty and every lookup in the run
    /// is an error naming it.
    pub(crate) broken: Option<String>,
}

/// The location of a fingerprint run's index block in its run file, as
/// its directory entry records it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct IndexLoc {
    /// Chunks in the run.
    pub(crate) chunks: u64,
    /// Offset of the block (the end of the last chunk).
    pub(crate) off: u64,
    /// Length of the (framed) block.
    pub(crate) len: u64,
    /// CRC-32 of the framed block.
    pub(crate) crc: u32,
}

/// Encodes a fingerprint run's index block.
fn encode_index(fences: &[u64], ends: &[u64]) -> Vec<u8> {
    let mut p = Vec::with_capacity(fences.len() * 11 + 8);
    put_varint(&mut p, fences.len() as u64);
    for f in fences {
        p.extend_from_slice(&f.to_be_bytes());
    }
    let mut prev = 0;
    for e in ends {
        put_varint(&mut p, e.saturating_sub(prev));
        prev = *e;
    }
    frame(FP_INDEX_VERSION, &p)
}

/// Decodes a fingerprint run's index block `bytes`, found at `ix`:
/// (fences, chunk end offsets).
fn decode_index(
    ix: &IndexLoc,
    bytes: &[u8],
) -> std::result::Result<(Vec<u64>, Vec<u64>), CodecError> {
    const WHAT: &str = "request run index block";
    if crc32fast::hash(bytes) != ix.crc {
        return Err(CodecError::new(
            WHAT,
            "checksum differs from the directory entry's",
        ));
    }
    let p = unframe(WHAT, FP_INDEX_VERSION, bytes)?;
    let mut r = Reader::new(WHAT, p);
    let n = r.count(r.remaining() / 8, "chunk")?;
    if n as u64 != ix.chunks {
        return Err(r.err("chunk count differs from the directory entry's"));
    }
    let mut fences = Vec::with_capacity(n);
    for _ in 0..n {
        let mut b = [0u8; 8];
        b.copy_from_slice(r.take(8)?);
        fences.push(u64::from_be_bytes(b));
    }
    if fences.windows(2).any(|w| w[0] >= w[1]) {
        return Err(r.err("fences are not ascending"));
    }
    let mut ends = Vec::with_capacity(n);
    let mut end = 0u64;
    for _ in 0..n {
        end = end
            .checked_add(r.varint()?)
            .ok_or_else(|| r.err("chunk offsets overflow"))?;
        ends.push(end);
    }
    r.finish()?;
    if end != ix.off {
        return Err(r.err("chunks do not end where the block starts"));
    }
    Ok((fences, ends))
}

/// The first key of every chunk of a run, which also says how the run is
/// keyed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Fences {
    /// Sort keys (format ≤ 6 runs; chunks of version 1).
    Keys(Vec<Vec<u8>>),
    /// Fingerprints (format 7; chunks of version 2).
    Fps(Vec<u64>),
}

impl Fences {
    pub(crate) fn len(&self) -> usize {
        match self {
            Fences::Keys(f) => f.len(),
            Fences::Fps(f) => f.len(),
        }
    }
}

impl Run {
    fn encode(&self) -> Vec<u8> {
        let mut p = Vec::new();
        put_varint(&mut p, self.seq);
        put_varint(&mut p, self.count);
        put_varint(&mut p, self.groups.len() as u64);
        for g in &self.groups {
            put_varint(&mut p, g.0.len() as u64);
            for s in &g.0 {
                put_bytes(&mut p, s.as_bytes());
            }
        }
        let version = match &self.fences {
            Fences::Keys(fences) => {
                put_varint(&mut p, fences.len() as u64);
                for f in fences {
                    put_bytes(&mut p, f);
                }
                if self.ends.is_some() {
                    RUN_FILE_VERSION
                } else {
                    RUN_VERSION
                }
            }
            Fences::Fps(_) => {
                debug_assert!(self.index.is_some(), "fingerprint runs are in files");
                let ix = self.index.unwrap_or(IndexLoc {
                    chunks: 0,
                    off: 0,
                    len: 0,
                    crc: 0,
                });
                put_varint(&mut p, ix.chunks);
                put_varint(&mut p, ix.off);
                put_varint(&mut p, ix.len);
                p.extend_from_slice(&ix.crc.to_le_bytes());
                FP_RUN_VERSION
            }
        };
        if version == RUN_FILE_VERSION {
            let ends = self.ends.as_deref().unwrap_or_default();
            put_varint(&mut p, ends.len() as u64);
            let mut prev = 0;
            for e in ends {
                put_varint(&mut p, e.saturating_sub(prev));
                prev = *e;
            }
        }
        frame(version, &p)
    }

    /// Decodes a directory entry. A fingerprint run's fences and chunk
    /// offsets are in its index block, not here: they come back empty
    /// (with `index` set) until [`Run::load_index`].
    fn decode(id: u64, bytes: &[u8]) -> std::result::Result<Run, CodecError> {
        const WHAT: &str = "request run directory entry";
        let version = match bytes.first() {
            Some(&v) if v == RUN_FILE_VERSION || v == FP_RUN_VERSION => v,
            _ => RUN_VERSION,
        };
        let in_file = version != RUN_VERSION;
        let p = unframe(WHAT, version, bytes)?;
        let mut r = Reader::new(WHAT, p);
        let seq = r.varint()?;
        let count = r.varint()?;
        let ng = r.count(r.remaining(), "group")?;
        let mut groups = Vec::with_capacity(ng);
        for _ in 0..ng {
            let nd = r.count(r.remaining(), "group value")?;
            let mut g = Vec::with_capacity(nd);
            for _ in 0..nd {
                let s = std::str::from_utf8(r.bytes()?)
                    .map_err(|_| r.err("group value is not UTF-8"))?;
                g.push(s.to_string());
            }
            groups.push(GroupKey(g));
        }
        if version == FP_RUN_VERSION {
            let chunks = r.varint()?;
            let off = r.varint()?;
            let len = r.varint()?;
            let mut b = [0u8; 4];
            b.copy_from_slice(r.take(4)?);
            r.finish()?;
            if chunks > count || (chunks == 0) != (count == 0) {
                return Err(r.err("chunk count out of range"));
            }
            return Ok(Run {
                id,
                seq,
                count,
                groups,
                fences: Fences::Fps(Vec::new()),
                ends: Some(Vec::new()),
                index: Some(IndexLoc {
                    chunks,
                    off,
                    len,
                    crc: u32::from_le_bytes(b),
                }),
                broken: None,
            });
        }
        let nf = r.count(r.remaining(), "chunk")?;
        let mut fences = Vec::with_capacity(nf);
        for _ in 0..nf {
            fences.push(r.bytes()?.to_vec());
        }
        let fences = Fences::Keys(fences);
        let ends = if in_file {
            let n = r.count(r.remaining(), "chunk length")?;
            if n != nf {
                return Err(r.err("chunk lengths disagree with the chunk count"));
            }
            let mut ends = Vec::with_capacity(n);
            let mut end = 0u64;
            for _ in 0..n {
                end = end
                    .checked_add(r.varint()?)
                    .ok_or_else(|| r.err("chunk offsets overflow"))?;
                ends.push(end);
            }
            Some(ends)
        } else {
            None
        };
        r.finish()?;
        Ok(Run {
            id,
            seq,
            count,
            groups,
            fences,
            ends,
            index: None,
            broken: None,
        })
    }

    /// Reads a fingerprint run's index block from its file (one positioned
    /// read) into `fences` and `ends`; a no-op for other runs.
    fn load_index(&mut self, files: &RunFiles) -> std::result::Result<(), CodecError> {
        let Some(ix) = self.index else {
            return Ok(());
        };
        let to = ix
            .off
            .checked_add(ix.len)
            .ok_or_else(|| CodecError::new("request run index block", "location out of range"))?;
        let bytes = files.read(self.id, ix.off, to)?;
        let (fences, ends) = decode_index(&ix, &bytes)?;
        self.fences = Fences::Fps(fences);
        self.ends = Some(ends);
        Ok(())
    }

    /// Decodes a directory entry and loads the run's index block. An index
    /// block that cannot be read leaves the run `broken` (an `Err` only for
    /// an unreadable directory entry).
    fn load(id: u64, bytes: &[u8], files: &RunFiles) -> std::result::Result<Run, CodecError> {
        let mut run = Run::decode(id, bytes)?;
        if let Err(e) = run.load_index(files) {
            run.broken = Some(format!("index block: {e}"));
        }
        Ok(run)
    }

    /// The error of a lookup in (or merge of) a run whose index block is
    /// unreadable.
    fn check_broken(&self) -> Result<()> {
        match &self.broken {
            None => Ok(()),
            Some(why) => Err(StorageError::decode(
                T::RequestRunDir.name(),
                &self.id.to_be_bytes(),
                CodecError::new("request run", why.clone()),
            )),
        }
    }

    fn group_bits(&self) -> u32 {
        bits_for(self.groups.len().saturating_sub(1) as u64)
    }

    /// Chunk `i`'s bytes: from the run's file, or (format ≤ 5) from tree
    /// `request_runs`. `None`: a format ≤ 5 chunk that is missing.
    fn chunk(&self, db: &Db, files: &RunFiles, i: usize) -> Result<Option<Vec<u8>>> {
        let ck = chunk_key(self.id, i as u32);
        match &self.ends {
            Some(ends) => {
                let from = if i == 0 { 0 } else { ends[i - 1] };
                let Some(&to) = ends.get(i) else {
                    return Ok(None);
                };
                files
                    .read(self.id, from, to)
                    .map(Some)
                    .map_err(|e| decode_err(&ck, e))
            }
            None => Ok(db.get(T::RequestRuns, &ck)?.map(|v| v.to_vec())),
        }
    }

    /// The entry of the id with sort key `key` and fingerprint `fp` in
    /// this run (looked up by whichever its chunks are keyed by), if any.
    fn find(&self, db: &Db, files: &RunFiles, key: &[u8], fp: u64) -> Result<Option<RequestRef>> {
        self.check_broken()?;
        let i = match &self.fences {
            Fences::Keys(f) => f.partition_point(|f| f.as_slice() <= key),
            Fences::Fps(f) => f.partition_point(|&f| f <= fp),
        };
        if i == 0 {
            return Ok(None);
        }
        let ck = chunk_key(self.id, (i - 1) as u32);
        let Some(v) = self.chunk(db, files, i - 1)? else {
            return Ok(None);
        };
        let found = match &self.fences {
            Fences::Keys(_) => {
                let c = Chunk::parse(&v).map_err(|e| decode_err(&ck, e))?;
                c.find(key).map(|j| (c.ts(j), c.group(j)))
            }
            Fences::Fps(f) => {
                let c = FpChunk::parse(&v).map_err(|e| decode_err(&ck, e))?;
                check_fence(&c, f[i - 1]).map_err(|e| decode_err(&ck, e))?;
                c.find(fp)
                    .map_err(|e| decode_err(&ck, e))?
                    .map(|j| (c.ts(j), c.group(j)))
            }
        };
        let Some((timestamp_ms, g)) = found else {
            return Ok(None);
        };
        let group = self.groups.get(g as usize).cloned().ok_or_else(|| {
            decode_err(
                &ck,
                CodecError::new("request index chunk", "group id out of range"),
            )
        })?;
        Ok(Some(RequestRef {
            timestamp_ms,
            group,
        }))
    }
}

/// A fingerprint chunk must start at its fence.
fn check_fence(c: &FpChunk<'_>, fence: u64) -> std::result::Result<(), CodecError> {
    if c.first() == fence {
        Ok(())
    } else {
        Err(CodecError::new(
            "request index chunk",
            "first fingerprint differs from the run's fence",
        ))
    }
}

/// A run being built: its entries sorted by key, chunk values ready to store.
#[derive(Debug)]
pub(crate) struct NewRun {
    pub(crate) run: Run,
    pub(crate) chunks: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Builds a sort-key run (format 6) from entries sorted by key with no
/// duplicate keys. Only tests write them now.
#[cfg(test)]
fn build_key_run(id: u64, seq: u64, entries: &[Entry], groups: Vec<GroupKey>) -> NewRun {
    let mut run = Run {
        id,
        seq,
        count: entries.len() as u64,
        groups,
        fences: Fences::Keys(Vec::new()),
        ends: None,
        index: None,
        broken: None,
    };
    let gb = run.group_bits();
    let mut chunks = Vec::new();
    let mut fences = Vec::new();
    for (i, c) in entries.chunks(CHUNK).enumerate() {
        fences.push(c[0].0.clone());
        chunks.push((chunk_key(id, i as u32), encode_chunk(c, gb)));
    }
    run.fences = Fences::Keys(fences);
    NewRun { run, chunks }
}

/// Builds a fingerprint run from entries sorted by fingerprint with no
/// repeats.
fn build_fp_run(id: u64, seq: u64, entries: &[FpEntry], groups: Vec<GroupKey>) -> NewRun {
    let mut run = Run {
        id,
        seq,
        count: entries.len() as u64,
        groups,
        fences: Fences::Fps(Vec::new()),
        ends: None,
        index: None,
        broken: None,
    };
    let gb = run.group_bits();
    let mut chunks = Vec::new();
    let mut fences = Vec::new();
    for (i, c) in entries.chunks(CHUNK).enumerate() {
        fences.push(c[0].0);
        chunks.push((chunk_key(id, i as u32), fp_chunk::encode(c, gb)));
    }
    run.fences = Fences::Fps(fences);
    NewRun { run, chunks }
}

/// A sort-key run of `requests` (as format 6 wrote them), for tests.
#[cfg(test)]
pub(crate) fn run_of<'a>(
    id: u64,
    seq: u64,
    requests: impl Iterator<Item = (&'a str, RequestRef)>,
) -> NewRun {
    let mut groups: Vec<GroupKey> = Vec::new();
    let mut gid: HashMap<GroupKey, u32> = HashMap::new();
    let mut entries: Vec<Entry> = Vec::new();
    for (id, r) in requests {
        let g = match gid.get(&r.group) {
            Some(&g) => g,
            None => {
                groups.push(r.group.clone());
                let g = (groups.len() - 1) as u32;
                gid.insert(r.group, g);
                g
            }
        };
        entries.push((id_key(id), r.timestamp_ms, g));
    }
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    entries.dedup_by(|b, a| a.0 == b.0);
    build_key_run(id, seq, &entries, groups)
}

/// Of calls `(key, applied ordinal, timestamp, group index into
/// `groups`)`, the newest per key, in key order, with groups renumbered
/// into the run's own table (in key order of their first entry).
fn newest_per_key<K: Ord>(
    mut keyed: Vec<(K, u32, i64, u32)>,
    groups: &[GroupKey],
) -> (Vec<(K, i64, u32)>, Vec<GroupKey>) {
    // Equal keys newest first; `dedup_by` keeps the first of a run.
    keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    keyed.dedup_by(|b, a| a.0 == b.0);
    let mut remap: Vec<u32> = vec![u32::MAX; groups.len()];
    let mut run_groups: Vec<GroupKey> = Vec::new();
    let entries = keyed
        .into_iter()
        .map(|(k, _, ts, g)| {
            let g = g as usize;
            let slot = match remap.get(g) {
                Some(&s) if s != u32::MAX => s,
                _ => {
                    let s = run_groups.len() as u32;
                    run_groups.push(groups.get(g).cloned().unwrap_or_default());
                    if let Some(r) = remap.get_mut(g) {
                        *r = s;
                    }
                    s
                }
            };
            (k, ts, slot)
        })
        .collect();
    (entries, run_groups)
}

/// The run of a head's calls: `calls` in applied order as (request id,
/// timestamp, index into `groups`), keyed by fingerprint under `fp`; of
/// calls sharing a fingerprint (the same id, or — with probability ≈ n² /
/// 2^65 — two ids) the last one (the newest) wins.
pub(crate) fn run_of_calls<'a>(
    fp: &FpKey,
    id: u64,
    seq: u64,
    groups: &[GroupKey],
    calls: impl Iterator<Item = (&'a str, i64, u32)>,
) -> NewRun {
    #[cfg(test)]
    if fp.key_runs {
        let keyed = calls
            .enumerate()
            .map(|(ord, (rid, ts, g))| (id_key(rid), ord as u32, ts, g))
            .collect();
        let (entries, run_groups) = newest_per_key(keyed, groups);
        return build_key_run(id, seq, &entries, run_groups);
    }
    let mut buf = Vec::with_capacity(64);
    let keyed = calls
        .enumerate()
        .map(|(ord, (rid, ts, g))| {
            id_key_into(rid, &mut buf);
            (fp.of_key(&buf), ord as u32, ts, g)
        })
        .collect();
    let (entries, run_groups) = newest_per_key(keyed, groups);
    build_fp_run(id, seq, &entries, run_groups)
}

fn decode_err(key: &[u8], e: CodecError) -> StorageError {
    StorageError::decode(T::RequestRuns.name(), key, e)
}

/// The in-memory directory of runs, newest (highest `seq`) first.
#[derive(Debug)]
pub(crate) struct RequestIndex {
    pub(crate) runs: Vec<Run>,
    /// Whether the version-1 tree `requests` holds entries.
    pub(crate) legacy: bool,
    pub(crate) next_run: u64,
    /// The runs' chunk files.
    pub(crate) files: Arc<RunFiles>,
    /// The store's fingerprint function.
    pub(crate) fp: FpKey,
}

impl RequestIndex {
    /// Loads the directory; deletes chunks and run files no published
    /// directory entry owns; moves format ≤ 5 runs into files.
    pub(crate) fn open(db: &Db, files: RunFiles) -> Result<RequestIndex> {
        let next_run = db
            .get(T::Meta, NEXT_RUN_KEY)?
            .and_then(|v| u64_from(&v))
            .unwrap_or(1);
        let mut runs = Vec::new();
        let mut dead = Vec::new();
        // Whether some directory entry could not be read: its run's file
        // and chunks are then unknown, and no run file or tree chunk is
        // deleted as unowned (verify names the entry).
        let mut unreadable = false;
        // Whether some entry is a fingerprint run's (readable or not).
        let mut fp_runs = false;
        for kv in db.range(T::RequestRunDir, ..) {
            let (k, v) = kv?;
            let Some(id) = u64_from(&k) else {
                unreadable = true;
                tracing::error!(key = %hex(&k), "request run directory key is not a run id");
                continue;
            };
            if v.is_empty() {
                dead.push(id);
                continue;
            }
            fp_runs |= v.first() == Some(&FP_RUN_VERSION);
            match Run::load(id, &v, &files) {
                Ok(r) => {
                    if let Some(why) = &r.broken {
                        tracing::error!(run = id, error = %why, "unreadable request run index block; lookups in the run fail");
                    }
                    runs.push(r)
                }
                Err(e) => {
                    unreadable = true;
                    tracing::error!(run = id, error = %e, "unreadable request run directory entry; run skipped, unowned run files and chunks kept")
                }
            }
        }
        let fp = FpKey::load(db, !fp_runs)?;
        // Chunks of runs a crash left uncommitted.
        let orphans: Vec<Vec<u8>> = db
            .range(T::RequestRuns, next_run.to_be_bytes().to_vec()..)
            .map(|kv| kv.map(|(k, _)| k.to_vec()))
            .collect::<Result<_>>()?;
        db.remove_many(T::RequestRuns, &orphans)?;
        for id in dead {
            delete_chunks(db, &files, id)?;
            db.remove_many(T::RequestRunDir, &[id.to_be_bytes().to_vec()])?;
        }
        // Files of runs never published (a crash before the commit), of a
        // format ≤ 5 run whose move a crash cut short (moved again below),
        // or of an entry whose tombstone was already removed.
        if !unreadable {
            for id in files.list().map_err(file_err)? {
                if !runs.iter().any(|r| r.id == id && r.ends.is_some()) {
                    files.remove(id).map_err(file_err)?;
                }
            }
        }
        // Runs left in the tree: a chunk missing or unreadable (lookups
        // skip it, verify names it).
        let mut unmoved = Vec::new();
        for run in runs.iter_mut().filter(|r| r.ends.is_none()) {
            if !move_run(db, &files, run)? {
                unmoved.push(run.id);
            }
        }
        // Every other run is in a file now: chunks left in the tree (a
        // move cut short after its entry was rewritten) belong to none.
        if !unreadable {
            let stale: Vec<Vec<u8>> = db
                .range(T::RequestRuns, ..)
                .filter(|kv| match kv {
                    Ok((k, _)) => !unmoved.iter().any(|id| k.starts_with(&id.to_be_bytes())),
                    Err(_) => true,
                })
                .map(|kv| kv.map(|(k, _)| k.to_vec()))
                .collect::<Result<_>>()?;
            for c in stale.chunks(4096) {
                db.remove_many(T::RequestRuns, c)?;
            }
        }
        runs.sort_by_key(|r| std::cmp::Reverse(r.seq));
        let legacy = db.range(T::Requests, ..).next().is_some();
        Ok(RequestIndex {
            runs,
            legacy,
            next_run,
            files: Arc::new(files),
            fp,
        })
    }

    /// Looks `id` up in every run (newest first), then in the version-1 tree.
    /// The caller holds the state lock, so no run it sees is deleted meanwhile.
    pub(crate) fn get(&self, db: &Db, id: &str) -> Result<Option<RequestRef>> {
        let key = id_key(id);
        let fp = self.fp.of_key(&key);
        for run in &self.runs {
            if let Some(r) = run.find(db, &self.files, &key, fp)? {
                return Ok(Some(r));
            }
        }
        if self.legacy {
            if let Some(v) = db.get(T::Requests, id.as_bytes())? {
                return decode_request(&v)
                    .map(Some)
                    .map_err(|e| StorageError::Decode {
                        tree: "requests",
                        key: id.to_string(),
                        source: e,
                    });
            }
        }
        Ok(None)
    }

    /// Allocates a run id (persisted by the commit that publishes the run).
    pub(crate) fn take_id(&mut self) -> u64 {
        let id = self.next_run;
        self.next_run += 1;
        id
    }

    /// The next `seq` (recency) for a new run.
    pub(crate) fn next_seq(&self) -> u64 {
        self.runs.iter().map(|r| r.seq + 1).max().unwrap_or(1)
    }

    /// Adds the publishing writes of `run` (directory entry, next run id).
    pub(crate) fn publish(ops: &mut Ops, run: &Run, next_run: u64) {
        ops.put(
            T::RequestRunDir,
            run.id.to_be_bytes().to_vec(),
            run.encode(),
        );
        ops.put(T::Meta, NEXT_RUN_KEY, next_run.to_be_bytes().to_vec());
    }

    /// Installs a published run (caller holds the state write lock).
    pub(crate) fn install(&mut self, run: Run) {
        self.runs.push(run);
        self.runs.sort_by_key(|r| std::cmp::Reverse(r.seq));
    }

    /// The pair of adjacent runs (by recency) to merge next, if more than
    /// [`MAX_RUNS`] exist: the pair with the fewest entries together.
    pub(crate) fn merge_candidate(&self) -> Option<(Run, Run)> {
        if self.runs.len() <= MAX_RUNS {
            return None;
        }
        let i = (0..self.runs.len() - 1)
            .min_by_key(|&i| self.runs[i].count + self.runs[i + 1].count)?;
        Some((self.runs[i].clone(), self.runs[i + 1].clone()))
    }
}

/// Every entry of `run` keyed by fingerprint under `fp`, in fingerprint
/// order without repeats, with its group id mapped through `map`. A
/// sort-key run's entries get their fingerprints here; of two of its ids
/// with one fingerprint, the one with the later timestamp is kept.
fn read_run(db: &Db, files: &RunFiles, fp: &FpKey, run: &Run, map: &[u32]) -> Result<Vec<FpEntry>> {
    run.check_broken()?;
    let mut out: Vec<FpEntry> = Vec::with_capacity(run.count as usize);
    let mapped = |ck: &[u8], g: u32| {
        map.get(g as usize).copied().ok_or_else(|| {
            decode_err(
                ck,
                CodecError::new("request index chunk", "group id out of range"),
            )
        })
    };
    for i in 0..run.fences.len() {
        let ck = chunk_key(run.id, i as u32);
        let v = run
            .chunk(db, files, i)?
            .ok_or_else(|| decode_err(&ck, CodecError::new("request index chunk", "missing")))?;
        match &run.fences {
            Fences::Keys(_) => {
                let c = Chunk::parse(&v).map_err(|e| decode_err(&ck, e))?;
                for j in 0..c.len() {
                    out.push((fp.of_key(&c.key(j)), c.ts(j), mapped(&ck, c.group(j))?));
                }
            }
            Fences::Fps(f) => {
                let c = FpChunk::parse(&v).map_err(|e| decode_err(&ck, e))?;
                check_fence(&c, f[i]).map_err(|e| decode_err(&ck, e))?;
                if out.last().is_some_and(|l| l.0 >= c.first()) {
                    return Err(decode_err(
                        &ck,
                        CodecError::new("request index chunk", "chunks overlap"),
                    ));
                }
                for (f, ts, g) in c.entries().map_err(|e| decode_err(&ck, e))? {
                    out.push((f, ts, mapped(&ck, g)?));
                }
            }
        }
    }
    if matches!(run.fences, Fences::Keys(_)) {
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        out.dedup_by(|b, a| a.0 == b.0);
    }
    Ok(out)
}

/// Merges `newer` and `older` into one fingerprint run with id `id`
/// (fingerprints under `fp`); `newer` wins on a repeated fingerprint.
pub(crate) fn merge_runs(
    db: &Db,
    files: &RunFiles,
    fp: &FpKey,
    id: u64,
    newer: &Run,
    older: &Run,
) -> Result<NewRun> {
    // One group table for both; each source's ids map into it.
    let mut groups: Vec<GroupKey> = Vec::new();
    let mut maps: Vec<Vec<u32>> = Vec::new();
    for run in [newer, older] {
        let map = run
            .groups
            .iter()
            .map(|g| match groups.iter().position(|x| x == g) {
                Some(i) => i as u32,
                None => {
                    groups.push(g.clone());
                    (groups.len() - 1) as u32
                }
            })
            .collect();
        maps.push(map);
    }
    let a = read_run(db, files, fp, newer, &maps[0])?;
    let b = read_run(db, files, fp, older, &maps[1])?;
    let mut entries: Vec<FpEntry> = Vec::with_capacity(a.len() + b.len());
    let (mut ia, mut ib) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let take_a = match (ia.peek(), ib.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(x), Some(y)) => {
                if x.0 == y.0 {
                    ib.next();
                    true
                } else {
                    x.0 < y.0
                }
            }
        };
        let e = if take_a { ia.next() } else { ib.next() };
        entries.extend(e);
    }
    Ok(build_fp_run(id, newer.seq.max(older.seq), &entries, groups))
}

/// Deletes run `id`'s file and every chunk of it in tree `request_runs`
/// (plain batches; idempotent).
pub(crate) fn delete_chunks(db: &Db, files: &RunFiles, id: u64) -> Result<()> {
    files.remove(id).map_err(file_err)?;
    let keys: Vec<Vec<u8>> = db
        .scan_prefix(T::RequestRuns, &id.to_be_bytes())
        .map(|kv| kv.map(|(k, _)| k.to_vec()))
        .collect::<Result<_>>()?;
    for c in keys.chunks(4096) {
        db.remove_many(T::RequestRuns, c)?;
    }
    Ok(())
}

/// Writes a new run's chunks to its file (durably) and records their
/// offsets in the run, before the transaction that publishes it.
pub(crate) fn write_file(files: &RunFiles, new: &mut NewRun) -> Result<()> {
    let mut parts: Vec<&[u8]> = new.chunks.iter().map(|(_, v)| v.as_slice()).collect();
    let mut ends = Vec::with_capacity(parts.len());
    let mut end = 0u64;
    for p in &parts {
        end += p.len() as u64;
        ends.push(end);
    }
    // A fingerprint run's fences and chunk lengths go after its chunks.
    let block = match &new.run.fences {
        Fences::Fps(fences) => Some(encode_index(fences, &ends)),
        Fences::Keys(_) => None,
    };
    if let Some(b) = &block {
        parts.push(b);
    }
    files.write(new.run.id, &parts).map_err(file_err)?;
    new.run.index = block.map(|b| IndexLoc {
        chunks: ends.len() as u64,
        off: end,
        len: b.len() as u64,
        crc: crc32fast::hash(&b),
    });
    new.run.ends = Some(ends);
    Ok(())
}

/// Moves a format ≤ 5 run's chunks from tree `request_runs` into its file:
/// the file first (durable), then the directory entry rewritten with the
/// offsets (flushed), then the tree's chunks deleted. A crash before the
/// entry is durable leaves the old entry, and the next open deletes the
/// file and moves the run again; after it, the chunks left in the tree
/// are unreferenced and are deleted here or by the next open's move.
///
/// `Ok(false)`: a chunk is missing, so the run is left in the tree as it
/// was (lookups skip the missing chunk; verify names it).
fn move_run(db: &Db, files: &RunFiles, run: &mut Run) -> Result<bool> {
    let mut chunks = Vec::with_capacity(run.fences.len());
    for i in 0..run.fences.len() {
        let ck = chunk_key(run.id, i as u32);
        let Some(v) = run.chunk(db, files, i)? else {
            tracing::warn!(
                run = run.id,
                chunk = %hex(&ck),
                "request index chunk missing; run left in tree request_runs"
            );
            return Ok(false);
        };
        chunks.push((ck, v));
    }
    let mut new = NewRun {
        run: run.clone(),
        chunks,
    };
    write_file(files, &mut new)?;
    let mut ops = Ops::default();
    ops.put(
        T::RequestRunDir,
        run.id.to_be_bytes().to_vec(),
        new.run.encode(),
    );
    db.commit(&ops)?;
    db.flush()?;
    run.ends = new.run.ends;
    let keys: Vec<Vec<u8>> = new.chunks.into_iter().map(|(k, _)| k).collect();
    for c in keys.chunks(4096) {
        db.remove_many(T::RequestRuns, c)?;
    }
    Ok(true)
}

/// A run file failure while listing, writing or deleting (not a corruption).
fn file_err(e: CodecError) -> StorageError {
    StorageError::Db {
        op: "request run file",
        message: e.reason,
    }
}

/// Checks every chunk of a run stored in a file (`Ok` for a tombstone);
/// of a run whose chunks are in tree `request_runs` (format ≤ 5, left
/// there by an open that found one missing), that none is missing (their
/// bytes are checked with the tree).
pub(crate) fn verify_run_file(
    db: &Db,
    files: &RunFiles,
    key: &[u8],
    value: &[u8],
) -> std::result::Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    let id = u64_from(key).ok_or("key is not a run id")?;
    let mut run = Run::decode(id, value).map_err(|e| e.to_string())?;
    run.load_index(files)
        .map_err(|e| format!("index block: {e}"))?;
    if run.ends.is_none() {
        for i in 0..run.fences.len() {
            let ck = chunk_key(id, i as u32);
            match db.get(T::RequestRuns, &ck) {
                Ok(Some(_)) => {}
                Ok(None) => return Err(format!("chunk {i}: missing")),
                Err(e) => return Err(format!("chunk {i}: {e}")),
            }
        }
        return Ok(());
    }
    let mut last: Option<u64> = None;
    let mut count = 0u64;
    for i in 0..run.fences.len() {
        let v = run
            .chunk(db, files, i)
            .map_err(|e| format!("chunk {i}: {e}"))?
            .ok_or_else(|| format!("chunk {i}: missing"))?;
        match &run.fences {
            Fences::Keys(_) => {
                Chunk::parse(&v).map_err(|e| format!("chunk {i}: {e}"))?;
            }
            Fences::Fps(f) => {
                let c = FpChunk::parse(&v).map_err(|e| format!("chunk {i}: {e}"))?;
                check_fence(&c, f[i]).map_err(|e| format!("chunk {i}: {e}"))?;
                if last.is_some_and(|l| l >= c.first()) {
                    return Err(format!("chunk {i}: overlaps the chunk before"));
                }
                let entries = c.entries().map_err(|e| format!("chunk {i}: {e}"))?;
                if entries.iter().any(|e| e.2 as usize >= run.groups.len()) {
                    return Err(format!("chunk {i}: group id out of range"));
                }
                last = entries.last().map(|e| e.0);
                count += entries.len() as u64;
            }
        }
    }
    if matches!(run.fences, Fences::Fps(_)) && count != run.count {
        return Err(format!(
            "{count} entries in the chunks, {} in the directory entry",
            run.count
        ));
    }
    Ok(())
}

/// Checks a directory entry (`Ok` for a tombstone).
pub(crate) fn verify_dir_entry(key: &[u8], value: &[u8]) -> std::result::Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    let id = u64_from(key).ok_or("key is not a run id")?;
    Run::decode(id, value)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Checks a chunk of tree `request_runs` (sort-key chunks only: format ≤ 5).
pub(crate) fn verify_chunk(value: &[u8]) -> std::result::Result<(), String> {
    Chunk::parse(value).map(|_| ()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A random id in canonical lowercase UUID form (stored as 16 bytes).
    fn random_uuid(rng: &mut fastrand::Rng) -> String {
        let h = format!("{:032x}", rng.u128(..));
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }

    fn g(m: &str) -> GroupKey {
        GroupKey(vec![m.to_string(), "chat".to_string()])
    }

    #[test]
    fn uuid_keys_are_16_bytes_only_in_canonical_lowercase_form() {
        let u = "0123abcd-4567-89ef-0123-456789abcdef";
        assert_eq!(id_key(u).len(), 17);
        assert_eq!(id_key(u)[0], 0);
        assert_eq!(id_key(&u.to_uppercase())[0], 1);
        assert_eq!(id_key("0123abcd456789ef0123456789abcdef")[0], 1);
        assert_eq!(id_key("0123abcd-4567-89ef-0123-456789abcdeg")[0], 1);
        assert_eq!(id_key("r1"), b"\x01r1".to_vec());
    }

    fn test_key(seed: u8) -> FpKey {
        FpKey::new(std::array::from_fn(|i| {
            seed.wrapping_mul(31).wrapping_add(i as u8)
        }))
    }

    /// Looks `id` up in a run built in memory (its chunks not stored).
    fn lookup(nr: &NewRun, fp: &FpKey, id: &str) -> Option<RequestRef> {
        let chunks: HashMap<&[u8], &[u8]> = nr
            .chunks
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
            .collect();
        let run = &nr.run;
        let key = id_key(id);
        let f = fp.of_key(&key);
        let i = match &run.fences {
            Fences::Keys(fs) => fs.partition_point(|x| x.as_slice() <= key.as_slice()),
            Fences::Fps(fs) => fs.partition_point(|&x| x <= f),
        };
        if i == 0 {
            return None;
        }
        let v = chunks[chunk_key(run.id, (i - 1) as u32).as_slice()];
        let (ts, g) = match &run.fences {
            Fences::Keys(_) => {
                let c = Chunk::parse(v).unwrap();
                c.find(&key).map(|j| (c.ts(j), c.group(j)))?
            }
            Fences::Fps(fs) => {
                let c = FpChunk::parse(v).unwrap();
                assert_eq!(c.first(), fs[i - 1]);
                c.find(f).unwrap().map(|j| (c.ts(j), c.group(j)))?
            }
        };
        Some(RequestRef {
            timestamp_ms: ts,
            group: run.groups[g as usize].clone(),
        })
    }

    /// A head's calls (ids repeated across and within batches): the newest
    /// call of each id is in the run, with its timestamp and group — in a
    /// fingerprint run and (as format 6 wrote them) a sort-key run.
    #[test]
    fn runs_of_calls_keep_the_newest_call_per_id() {
        let mut rng = fastrand::Rng::with_seed(3);
        let groups = vec![g("a"), g("b"), g("c"), g("unused")];
        let mut calls: Vec<(String, i64, u32)> = Vec::new();
        for i in 0..3000i64 {
            let id = if i % 2 == 0 {
                format!("req-{}", rng.u32(..400))
            } else {
                format!("{:08x}-0000-4000-8000-{:012x}", rng.u32(..300), 7)
            };
            calls.push((id, i * 13 - 5_000, rng.u32(..3)));
        }
        let mut newest: HashMap<String, RequestRef> = HashMap::new();
        for (id, ts, gi) in &calls {
            newest.insert(
                id.clone(),
                RequestRef {
                    timestamp_ms: *ts,
                    group: groups[*gi as usize].clone(),
                },
            );
        }
        for key_runs in [false, true] {
            let mut fp = test_key(1);
            fp.key_runs = key_runs;
            let nr = run_of_calls(
                &fp,
                4,
                1,
                &groups,
                calls.iter().map(|(id, ts, gi)| (id.as_str(), *ts, *gi)),
            );
            assert_eq!(matches!(nr.run.fences, Fences::Keys(_)), key_runs);
            assert_eq!(nr.run.count as usize, newest.len());
            assert!(!nr.run.groups.contains(&g("unused")));
            for (id, want) in &newest {
                assert_eq!(lookup(&nr, &fp, id).as_ref(), Some(want), "{id}");
            }
        }
    }

    /// Fingerprints depend on the key and on the whole sort key: a UUID and
    /// its upper-case spelling (a string id) differ.
    #[test]
    fn fingerprints_are_keyed_siphash_of_the_sort_key() {
        let (a, b) = (test_key(1), test_key(2));
        let u = "0123abcd-4567-89ef-0123-456789abcdef";
        assert_eq!(a.of_id(u), siphash::siphash24(&a.key, &id_key(u)));
        assert_ne!(a.of_id(u), b.of_id(u));
        assert_ne!(a.of_id(u), a.of_id(&u.to_uppercase()));
        assert_eq!(a.of_id("r1"), siphash::siphash24(&a.key, b"\x01r1"));
        let mut buf = vec![9, 9, 9];
        for id in [u, "r1", "", "0123abcd-4567-89ef-0123-456789abcdeg"] {
            id_key_into(id, &mut buf);
            assert_eq!(buf, id_key(id), "{id}");
        }
        assert_eq!(format!("{a:?}"), "FpKey(..)");
    }

    #[test]
    fn chunks_find_every_entry_and_nothing_else() {
        let mut rng = fastrand::Rng::with_seed(7);
        let groups = vec![g("a"), g("b"), g("c")];
        for n in [1usize, 2, 3, 500, 512, 513, 1300] {
            let mut reqs: HashMap<String, RequestRef> = HashMap::new();
            let mut gi: HashMap<String, u32> = HashMap::new();
            for i in 0..n {
                let id = if i % 3 == 0 {
                    format!("req-{}", rng.u32(..))
                } else {
                    random_uuid(&mut rng)
                };
                let k = rng.u32(..3);
                let r = RequestRef {
                    timestamp_ms: rng.i64(-1_000_000..2_000_000_000_000),
                    group: groups[k as usize].clone(),
                };
                gi.insert(id.clone(), k);
                reqs.insert(id, r);
            }
            let fp = test_key(3);
            let key_run = run_of(1, 1, reqs.iter().map(|(k, r)| (k.as_str(), r.clone())));
            let mut fp_run = run_of_calls(
                &fp,
                1,
                1,
                &groups,
                reqs.iter()
                    .map(|(k, r)| (k.as_str(), r.timestamp_ms, gi[k])),
            );
            let dir = tempfile::tempdir().unwrap();
            let files = RunFiles::open(dir.path()).unwrap();
            write_file(&files, &mut fp_run).unwrap();
            assert!(fp_run.run.index.is_some());
            for nr in [&key_run, &fp_run] {
                assert_eq!(nr.run.count as usize, reqs.len());
                assert_eq!(nr.run.fences.len(), n.div_ceil(CHUNK));
                let run = Run::load(1, &nr.run.encode(), &files).unwrap();
                assert_eq!(run, nr.run);
                for (id, r) in &reqs {
                    assert_eq!(lookup(nr, &fp, id).as_ref(), Some(r), "{id}");
                }
                assert_eq!(lookup(nr, &fp, "nope"), None);
                assert_eq!(
                    lookup(nr, &fp, "00000000-0000-0000-0000-000000000000"),
                    None
                );
            }
        }
    }

    #[test]
    fn damaged_chunks_are_errors_not_panics() {
        let reqs: HashMap<String, RequestRef> = (0..50)
            .map(|i| {
                (
                    format!("id-{i}"),
                    RequestRef {
                        timestamp_ms: i * 1000,
                        group: g("m"),
                    },
                )
            })
            .collect();
        let nr = run_of(3, 1, reqs.iter().map(|(k, r)| (k.as_str(), r.clone())));
        let v = &nr.chunks[0].1;
        for i in 0..v.len() {
            let mut bad = v.clone();
            bad[i] ^= 0x21;
            assert!(Chunk::parse(&bad).is_err());
        }
        for cut in 0..v.len() {
            assert!(Chunk::parse(&v[..cut]).is_err());
        }
        let d = nr.run.encode();
        for cut in 0..d.len() {
            assert!(Run::decode(3, &d[..cut]).is_err());
        }
        // A well-framed payload with absurd counts is refused too.
        let mut p = Vec::new();
        put_varint(&mut p, u64::MAX);
        assert!(Chunk::parse(&frame(RUN_VERSION, &p)).is_err());
        // Fingerprint runs' directory entries (version 3) likewise.
        let fp = test_key(4);
        let calls: Vec<(String, i64, u32)> = (0..1500).map(|i| (format!("id-{i}"), i, 0)).collect();
        let mut nr = run_of_calls(
            &fp,
            3,
            1,
            &[g("m")],
            calls.iter().map(|(id, ts, g)| (id.as_str(), *ts, *g)),
        );
        let dir = tempfile::tempdir().unwrap();
        let files = RunFiles::open(dir.path()).unwrap();
        write_file(&files, &mut nr).unwrap();
        let d = nr.run.encode();
        assert_eq!(d[0], FP_RUN_VERSION);
        // The entry is small and bounded: no fences in it.
        assert!(d.len() < 40, "{} bytes", d.len());
        assert_eq!(Run::load(3, &d, &files).unwrap(), nr.run);
        for cut in 0..d.len() {
            assert!(Run::decode(3, &d[..cut]).is_err());
        }
        // Every damaged or cut index block leaves the run broken, naming
        // the block; lookups and merges in it are errors.
        let ix = nr.run.index.unwrap();
        let good = files.read(3, ix.off, ix.off + ix.len).unwrap();
        let chunks: Vec<&[u8]> = nr.chunks.iter().map(|(_, v)| v.as_slice()).collect();
        let broken = |block: &[u8], entry: &[u8]| {
            let mut parts = chunks.clone();
            parts.push(block);
            files.write(3, &parts).unwrap();
            let run = Run::load(3, entry, &files).unwrap();
            let why = run.broken.clone().expect("broken");
            assert!(why.contains("index block"), "{why}");
            let err = run.check_broken().unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Corrupted);
            assert!(err.to_string().contains(&hex(&3u64.to_be_bytes())), "{err}");
            why
        };
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x21;
            broken(&bad, &d);
        }
        broken(&good[..good.len() - 1], &d);
        // A well-framed block that disagrees with the entry: fences out of
        // order, another chunk count, chunks ending elsewhere.
        let Fences::Fps(f) = &nr.run.fences else {
            unreachable!()
        };
        let ends = nr.run.ends.clone().unwrap();
        let mut swapped = f.clone();
        swapped.swap(0, 1);
        let mut shorter = ends.clone();
        *shorter.last_mut().unwrap() -= 1;
        for (fences, ends, what) in [
            (swapped, ends.clone(), "ascending"),
            (f[1..].to_vec(), ends[1..].to_vec(), "chunk count"),
            (f.clone(), shorter, "do not end"),
        ] {
            let block = encode_index(&fences, &ends);
            let mut run = nr.run.clone();
            run.index = Some(IndexLoc {
                len: block.len() as u64,
                crc: crc32fast::hash(&block),
                ..ix
            });
            let why = broken(&block, &run.encode());
            assert!(why.contains(what), "{why}");
        }
        // The block must be the one the entry names (its CRC).
        let mut other = nr.run.clone();
        other.index = Some(IndexLoc {
            crc: ix.crc ^ 1,
            ..ix
        });
        let why = broken(&good, &other.encode());
        assert!(why.contains("checksum"), "{why}");
    }

    fn call(id: &str, ts: i64, model: &str) -> sextant_model::LlmCall {
        sextant_model::LlmCall {
            request_id: id.to_string(),
            timestamp_ms: ts,
            model: model.to_string(),
            provider: "p".into(),
            endpoint: "chat".into(),
            latency_ms: 10.0,
            ..sextant_model::LlmCall::default()
        }
    }

    #[test]
    fn runs_survive_merges_reopen_and_crash_leftovers() {
        use crate::store::test_support::manual_config as config;
        use crate::Store;
        let dir = tempfile::tempdir().unwrap();
        let now = sextant_model::now_ms();
        let mut want: HashMap<String, RequestRef> = HashMap::new();
        let store = Store::open(dir.path(), config()).unwrap();
        let mut rng = fastrand::Rng::with_seed(11);
        let kinds = |store: &Store| {
            let st = store.h.core.state.read();
            let keys = st
                .requests
                .runs
                .iter()
                .filter(|r| matches!(r.fences, Fences::Keys(_)))
                .count();
            (keys, st.requests.runs.len() - keys)
        };
        let mut saw_mixed = false;
        for s in 0..(3 * MAX_RUNS as i64) {
            // The first seals write sort-key runs (as format 6 did) and
            // fingerprint runs in turn; merges combine both kinds.
            store.h.core.state.write().requests.fp.key_runs = s < 12 && s % 2 == 0;
            let mut calls = Vec::new();
            for i in 0..(1 + s * 37) {
                let id = if i % 4 == 0 {
                    format!("req-{s}-{i}")
                } else {
                    random_uuid(&mut rng)
                };
                calls.push(call(
                    &id,
                    now - 3_600_000 + s * 1000 + i,
                    ["a", "b"][i as usize % 2],
                ));
            }
            // The same id in every seal: the newest call wins.
            calls.push(call("again", now - 3_600_000 + s, &format!("m{s}")));
            for c in &calls {
                want.insert(
                    c.request_id.clone(),
                    RequestRef {
                        timestamp_ms: c.timestamp_ms,
                        group: GroupKey(vec![c.model.clone(), c.endpoint.clone()]),
                    },
                );
            }
            store
                .append(sextant_model::Batch::from_calls(calls))
                .unwrap();
            store.seal(now).unwrap();
            let (keys, fps) = kinds(&store);
            saw_mixed |= keys > 0 && fps > 0;
            store.maintain(now).unwrap();
            assert!(store.h.core.state.read().requests.runs.len() <= MAX_RUNS);
        }
        assert!(saw_mixed);
        // Every sort-key run was merged into a fingerprint run by now.
        assert_eq!(kinds(&store).0, 0);
        let check = |store: &Store, want: &HashMap<String, RequestRef>| {
            for (id, r) in want {
                assert_eq!(store.request(id).unwrap().as_ref(), Some(r), "{id}");
            }
            assert_eq!(store.request("absent").unwrap(), None);
            assert!(store.verify().unwrap().problems.is_empty());
        };
        check(&store, &want);
        let runs = store.h.core.state.read().requests.runs.clone();
        store.close().unwrap();
        drop(store);
        // Every published run is in a file of its own; the tree holds no chunk.
        let run_dir = dir.path().join(crate::run_files::DIR_NAME);
        let file_of = |id: u64| run_dir.join(format!("{id:016x}.run"));
        for r in &runs {
            assert!(r.ends.is_some());
            assert!(file_of(r.id).exists(), "run {}", r.id);
        }
        assert_eq!(std::fs::read_dir(&run_dir).unwrap().count(), runs.len());
        // A crash's leftovers: chunks and a file of an unpublished run, and
        // a tombstone whose file and chunks were not yet deleted.
        {
            let db = Db::open(
                dir.path(),
                crate::db::DbOptions {
                    cache_bytes: 1 << 20,
                    flush_every_ms: None,
                },
            )
            .unwrap();
            let next = u64_from(&db.get(T::Meta, NEXT_RUN_KEY).unwrap().unwrap()).unwrap();
            db.insert(T::RequestRuns, &chunk_key(next, 0), b"junk")
                .unwrap();
            db.insert(T::RequestRuns, &chunk_key(next + 5, 3), b"junk")
                .unwrap();
            let dead = &runs[runs.len() - 1];
            db.insert(T::RequestRunDir, &dead.id.to_be_bytes(), b"")
                .unwrap();
            let t = chunk_key(dead.id, 0);
            db.insert(T::RequestRuns, &t, b"junk").unwrap();
            std::fs::write(file_of(next), b"junk").unwrap();
            assert!(file_of(dead.id).exists());
            db.flush().unwrap();
            drop(db);
            let store = Store::open(dir.path(), config()).unwrap();
            let db = &store.h.core.db;
            assert!(db
                .get(T::RequestRuns, &chunk_key(next, 0))
                .unwrap()
                .is_none());
            assert!(db
                .get(T::RequestRuns, &chunk_key(next + 5, 3))
                .unwrap()
                .is_none());
            assert!(db.get(T::RequestRuns, &t).unwrap().is_none());
            assert!(db
                .get(T::RequestRunDir, &dead.id.to_be_bytes())
                .unwrap()
                .is_none());
            assert!(!file_of(next).exists());
            assert!(!file_of(dead.id).exists());
            assert_eq!(std::fs::read_dir(&run_dir).unwrap().count(), runs.len() - 1);
            assert_eq!(
                store.h.core.state.read().requests.runs.len(),
                runs.len() - 1
            );
            // The tombstoned run is gone, so drop its entries from the expectation.
            let gone: Vec<String> = want
                .keys()
                .filter(|id| store.request(id).unwrap().is_none())
                .cloned()
                .collect();
            // All of its entries but "again", which newer runs also hold.
            assert_eq!(gone.len() as u64 + 1, dead.count);
            for id in gone {
                want.remove(&id);
            }
            check(&store, &want);
        }
    }

    /// Rewrites every run as format 5 stored it: its chunks in the
    /// `request_runs` tree and a version 1 directory entry (committed, not
    /// flushed; the run files are left for the caller). Returns the run
    /// ids in order.
    fn back_to_format_5(db: &Db, files: &RunFiles) -> Vec<u64> {
        let mut ops = Ops::default();
        let mut ids = Vec::new();
        for kv in db.range(T::RequestRunDir, ..) {
            let (k, v) = kv.unwrap();
            let id = u64_from(&k).unwrap();
            let mut run = Run::decode(id, &v).unwrap();
            for i in 0..run.fences.len() {
                let c = run.chunk(db, files, i).unwrap().unwrap();
                db.insert(T::RequestRuns, &chunk_key(id, i as u32), &c)
                    .unwrap();
            }
            run.ends = None;
            ops.put(T::RequestRunDir, k.to_vec(), run.encode());
            ids.push(id);
        }
        db.commit(&ops).unwrap();
        ids
    }

    #[test]
    fn format_5_runs_are_moved_into_files_at_open_and_a_cut_move_is_redone() {
        use crate::store::test_support::manual_config as config;
        use crate::Store;
        let dir = tempfile::tempdir().unwrap();
        let now = sextant_model::now_ms();
        let mut rng = fastrand::Rng::with_seed(5);
        let mut ids = Vec::new();
        {
            let store = Store::open(dir.path(), config()).unwrap();
            // Sort-key runs, as format ≤ 6 wrote them.
            store.h.core.state.write().requests.fp.key_runs = true;
            for s in 0..3i64 {
                let calls: Vec<_> = (0..1500)
                    .map(|i| {
                        let id = random_uuid(&mut rng);
                        ids.push(id.clone());
                        call(&id, now - 3_600_000 + s * 10_000 + i, "m")
                    })
                    .collect();
                store
                    .append(sextant_model::Batch::from_calls(calls))
                    .unwrap();
                store.seal(now).unwrap();
            }
        }
        let run_dir = dir.path().join(crate::run_files::DIR_NAME);
        let opts = crate::db::DbOptions {
            cache_bytes: 1 << 20,
            flush_every_ms: None,
        };
        // Back to format 5: chunks in the tree, version 1 entries, no
        // files — except a stale file of one run, as a move cut short
        // before its entry was rewritten leaves it.
        {
            let db = Db::open(dir.path(), opts).unwrap();
            let files = RunFiles::open(dir.path()).unwrap();
            let first = back_to_format_5(&db, &files).first().copied();
            db.flush().unwrap();
            for id in files.list().unwrap() {
                if Some(id) != first {
                    files.remove(id).unwrap();
                } else {
                    files.write(id, &[b"stale"]).unwrap();
                }
            }
        }
        for round in 0..2 {
            if round == 1 {
                // A move cut short after its entry was rewritten: the
                // run's old chunk is still in the tree.
                let db = Db::open(dir.path(), opts).unwrap();
                db.insert(T::RequestRuns, &chunk_key(1, 0), b"left over")
                    .unwrap();
                db.flush().unwrap();
            }
            let store = Store::open(dir.path(), config()).unwrap();
            for id in &ids {
                assert!(store.request(id).unwrap().is_some(), "round {round}: {id}");
            }
            assert!(store.verify().unwrap().problems.is_empty());
            let core = &store.h.core;
            assert!(core
                .state
                .read()
                .requests
                .runs
                .iter()
                .all(|r| r.ends.is_some()));
            assert_eq!(core.db.range(T::RequestRuns, ..).count(), 0);
            assert_eq!(std::fs::read_dir(&run_dir).unwrap().count(), 3);
        }
    }

    /// A format ≤ 5 run with a missing chunk stays in the tree (lookups
    /// skip the chunk, verify names it) instead of failing the open.
    #[test]
    fn a_format_5_run_with_a_missing_chunk_is_left_unmoved_and_the_store_opens() {
        use crate::store::test_support::manual_config as config;
        use crate::Store;
        let dir = tempfile::tempdir().unwrap();
        let now = sextant_model::now_ms();
        let mut rng = fastrand::Rng::with_seed(6);
        let mut ids: Vec<Vec<String>> = Vec::new();
        {
            let store = Store::open(dir.path(), config()).unwrap();
            store.h.core.state.write().requests.fp.key_runs = true;
            for s in 0..2i64 {
                let run_ids: Vec<String> = (0..1500).map(|_| random_uuid(&mut rng)).collect();
                let calls = run_ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| call(id, now - 3_600_000 + s * 10_000 + i as i64, "m"))
                    .collect();
                store
                    .append(sextant_model::Batch::from_calls(calls))
                    .unwrap();
                store.seal(now).unwrap();
                ids.push(run_ids);
            }
        }
        let opts = crate::db::DbOptions {
            cache_bytes: 1 << 20,
            flush_every_ms: None,
        };
        // Back to format 5, and the newest run's first chunk lost.
        let damaged = {
            let db = Db::open(dir.path(), opts).unwrap();
            let files = RunFiles::open(dir.path()).unwrap();
            let last = back_to_format_5(&db, &files).into_iter().max().unwrap_or(0);
            db.remove_many(T::RequestRuns, &[chunk_key(last, 0)])
                .unwrap();
            db.flush().unwrap();
            for id in files.list().unwrap() {
                files.remove(id).unwrap();
            }
            last
        };
        for _ in 0..2 {
            let store = Store::open(dir.path(), config()).unwrap();
            for id in &ids[0] {
                assert!(store.request(id).unwrap().is_some(), "{id}");
            }
            let core = &store.h.core;
            let st = core.state.read();
            for r in &st.requests.runs {
                assert_eq!(r.ends.is_none(), r.id == damaged, "run {}", r.id);
            }
            drop(st);
            // Its other chunks are still in the tree.
            let left = core
                .db
                .scan_prefix(T::RequestRuns, &damaged.to_be_bytes())
                .count();
            assert!(left > 0);
            assert!(!store.verify().unwrap().problems.is_empty());
        }
    }

    /// A format 6 store (sort-key runs, no fingerprint key) gets a key at
    /// its first open, answers from its old runs, and merges turn them into
    /// fingerprint runs; the key survives reopening; a store whose key is
    /// lost while fingerprint runs exist is refused, not given a new key.
    #[test]
    fn a_store_without_a_key_gets_one_at_open_and_a_lost_key_is_refused() {
        use crate::store::test_support::manual_config as config;
        use crate::{ErrorKind, Store};
        let dir = tempfile::tempdir().unwrap();
        let now = sextant_model::now_ms();
        let mut rng = fastrand::Rng::with_seed(12);
        let opts = crate::db::DbOptions {
            cache_bytes: 1 << 20,
            flush_every_ms: None,
        };
        let mut ids: Vec<String> = Vec::new();
        let mut seal = |store: &Store, ids: &mut Vec<String>, s: i64| {
            let calls: Vec<_> = (0..700)
                .map(|i| {
                    let id = if i % 5 == 0 {
                        format!("r-{s}-{i}")
                    } else {
                        random_uuid(&mut rng)
                    };
                    ids.push(id.clone());
                    call(&id, now - 3_600_000 + s * 10_000 + i, "m")
                })
                .collect();
            store
                .append(sextant_model::Batch::from_calls(calls))
                .unwrap();
            store.seal(now).unwrap();
        };
        let key_of = |dir: &std::path::Path| {
            let db = Db::open(dir, opts).unwrap();
            db.get(T::Meta, FP_KEY_META).unwrap().map(|v| v.to_vec())
        };
        {
            let store = Store::open(dir.path(), config()).unwrap();
            store.h.core.state.write().requests.fp.key_runs = true;
            for s in 0..MAX_RUNS as i64 {
                seal(&store, &mut ids, s);
            }
        }
        // As format 6 left it: no key.
        {
            let db = Db::open(dir.path(), opts).unwrap();
            db.remove_many(T::Meta, &[FP_KEY_META.to_vec()]).unwrap();
            db.flush().unwrap();
        }
        assert_eq!(key_of(dir.path()), None);
        let key = {
            let store = Store::open(dir.path(), config()).unwrap();
            for id in &ids {
                assert!(store.request(id).unwrap().is_some(), "{id}");
            }
            // One fingerprint run more: more than MAX_RUNS, so a merge.
            seal(&store, &mut ids, MAX_RUNS as i64);
            store.maintain(now).unwrap();
            let st = store.h.core.state.read();
            assert!(st.requests.runs.len() <= MAX_RUNS);
            let fps = st
                .requests
                .runs
                .iter()
                .filter(|r| matches!(r.fences, Fences::Fps(_)))
                .count();
            assert!(fps >= 1 && fps < st.requests.runs.len(), "{fps}");
            drop(st);
            for id in &ids {
                assert!(store.request(id).unwrap().is_some(), "{id}");
            }
            assert!(store.verify().unwrap().problems.is_empty());
            key_of_store(&store)
        };
        assert_eq!(key_of(dir.path()).as_deref(), Some(key.as_slice()));
        assert_eq!(key.len(), 16);
        {
            let store = Store::open(dir.path(), config()).unwrap();
            assert_eq!(key_of_store(&store), key);
            for id in &ids {
                assert!(store.request(id).unwrap().is_some(), "{id}");
            }
        }
        // The key lost: the open fails instead of making a new one.
        {
            let db = Db::open(dir.path(), opts).unwrap();
            db.remove_many(T::Meta, &[FP_KEY_META.to_vec()]).unwrap();
            db.flush().unwrap();
        }
        let err = Store::open(dir.path(), config()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
        assert_eq!(key_of(dir.path()), None);
    }

    fn key_of_store(store: &crate::Store) -> Vec<u8> {
        store.h.core.state.read().requests.fp.key.to_vec()
    }

    #[test]
    fn a_damaged_run_file_is_named_by_verify_and_lookups_fail_without_panicking() {
        use crate::{ErrorKind, Store, StoreConfig};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            dir.path(),
            StoreConfig {
                background_maintenance: false,
                ..StoreConfig::default()
            },
        )
        .unwrap();
        let now = sextant_model::now_ms();
        let mut rng = fastrand::Rng::with_seed(9);
        let ids: Vec<String> = (0..700).map(|_| random_uuid(&mut rng)).collect();
        let calls = ids.iter().map(|id| call(id, now - 1000, "m")).collect();
        store
            .append(sextant_model::Batch::from_calls(calls))
            .unwrap();
        store.seal(now).unwrap();
        assert!(store.verify().unwrap().problems.is_empty());
        let run = store.h.core.state.read().requests.runs[0].clone();
        let path = dir
            .path()
            .join(crate::run_files::DIR_NAME)
            .join(format!("{:016x}.run", run.id));
        let good = std::fs::read(&path).unwrap();
        let mut bytes = good.clone();
        // The last byte of the second chunk (the index block follows).
        let last = run.ends.as_ref().unwrap()[1] as usize - 1;
        bytes[last] ^= 0x55;
        std::fs::write(&path, &bytes).unwrap();
        // The handle cache holds the same inode: the damage is visible.
        let report = store.verify().unwrap();
        assert_eq!(report.problems.len(), 1, "{report:?}");
        let (where_, msg) = &report.problems[0];
        assert_eq!(
            where_,
            &format!("request_runs/{}", crate::error::hex(&run.id.to_be_bytes()))
        );
        assert!(msg.contains("chunk 1"), "{msg}");
        // Ids in the damaged (second) chunk fail; the first chunk still reads.
        let fp = store.h.core.state.read().requests.fp;
        let mut sorted: Vec<u64> = ids.iter().map(|i| fp.of_id(i)).collect();
        sorted.sort();
        let in_second = ids.iter().find(|i| fp.of_id(i) == sorted[600]).unwrap();
        let in_first = ids.iter().find(|i| fp.of_id(i) == sorted[5]).unwrap();
        let err = store.request(in_second).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupted);
        assert!(store.request(in_first).unwrap().is_some());
        drop(store);
        // A damaged index block (the file's last byte): the store opens,
        // verify names the run's entry and lookups in it fail.
        let mut bytes = good;
        let last = bytes.len() - 1;
        bytes[last] ^= 0x55;
        std::fs::write(&path, &bytes).unwrap();
        let store = Store::open(
            dir.path(),
            StoreConfig {
                background_maintenance: false,
                ..StoreConfig::default()
            },
        )
        .unwrap();
        let report = store.verify().unwrap();
        assert_eq!(report.problems.len(), 1, "{report:?}");
        let (where_, msg) = &report.problems[0];
        assert_eq!(
            where_,
            &format!("request_runs/{}", crate::error::hex(&run.id.to_be_bytes()))
        );
        assert!(msg.contains("index block"), "{msg}");
        for id in [in_first, in_second] {
            let err = store.request(id).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Corrupted);
            assert!(
                err.to_string()
                    .contains(&crate::error::hex(&run.id.to_be_bytes())),
                "{err}"
            );
        }
        // The file is kept (it has a published entry).
        assert!(path.exists());
    }
}
