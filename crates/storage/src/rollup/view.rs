//! Rollups as reads hand them out: [`RollupView`], a rollup whose exact
//! fields, finish reasons and digests are read from the stored bytes only
//! when asked for.
//!
//! **Invariants:**
//! - A view of stored bytes exists only after the frame's version and CRC
//!   were checked and the exact fields' extent found (the presence mask and
//!   digest size validated); the exact fields are decoded with
//!   [`Rollup::decode`]'s validation on the first [`RollupView::totals`]
//!   (a series of percentiles never reads them), and a digest read steps
//!   over the finish reasons checking only their extent (their names are
//!   validated by [`RollupView::for_each_finish_reason`]); every part read later is
//!   validated as it is read, and a bad
//!   part is a [`StorageError::Decode`] naming the view's tree and key —
//!   never a panic, never a silently wrong value.
//! - What a view yields equals what [`Rollup::decode`] of the same bytes
//!   holds: the same exact fields, the same finish reasons, and the same
//!   centroid sequence for every digest.
//! - A view does not check the parts nobody reads (e.g. trailing bytes after
//!   the last digest); [`RollupView::to_rollup`] and `Store::verify` do.
//! - A [`Prepared`] is those first checks, and the decoding of the latency
//!   and ttft digests, done ahead of time for bytes held in memory and read
//!   many times (the hot minute mirror): a view made with it
//!   ([`RollupView::with_prepared`]) yields what [`RollupView::stored`]
//!   yields for the same bytes, errors included.

use std::cell::{Cell, OnceCell};

use super::digest::{QuantDigest, StoredDigest};
use super::wire::Reader;
use super::{
    decode_totals, field, read_finish_reasons, read_totals_head, skip_finish_reasons,
    skip_totals_fields, unframe_rollup, Digest, Rollup,
};
use crate::error::{CodecError, StorageError};
use crate::frame;

/// The exact fields of a rollup: everything but its digests and finish
/// reasons (see [`Rollup`] for each field's meaning).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RollupTotals {
    pub count: u64,
    pub errors: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub cached_input_tokens: u64,
    pub reasoning_tokens: u64,
    pub cost_nano_usd: u128,
    pub cost_unknown: u64,
    pub latency_sum_us: u128,
    pub latency_min_ms: f64,
    pub latency_max_ms: f64,
    pub ttft_count: u64,
    pub ttft_sum_us: u128,
    pub quality_count: u64,
    pub refusals: u64,
    pub hedging: u64,
    pub response_length_sum: u64,
    pub sentiment_sum_micro: i128,
    pub factual_count: u64,
    pub factual_sum_micro: u128,
    pub feedback_count: u64,
    pub rating_sum: i64,
    pub digest_size: usize,
}

impl RollupTotals {
    /// The totals of an empty rollup with `digest_size` digests.
    pub(crate) fn empty(digest_size: usize) -> RollupTotals {
        RollupTotals {
            count: 0,
            errors: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            total_tokens: 0,
            cached_input_tokens: 0,
            reasoning_tokens: 0,
            cost_nano_usd: 0,
            cost_unknown: 0,
            latency_sum_us: 0,
            latency_min_ms: f64::INFINITY,
            latency_max_ms: f64::NEG_INFINITY,
            ttft_count: 0,
            ttft_sum_us: 0,
            quality_count: 0,
            refusals: 0,
            hedging: 0,
            response_length_sum: 0,
            sentiment_sum_micro: 0,
            factual_count: 0,
            factual_sum_micro: 0,
            feedback_count: 0,
            rating_sum: 0,
            digest_size,
        }
    }
}

/// One of a rollup's four digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestField {
    Latency,
    Ttft,
    TotalTokens,
    ResponseLength,
}

impl DigestField {
    /// Presence-mask bit (digests are encoded in bit order).
    fn bit(self) -> u32 {
        match self {
            DigestField::Latency => field::LATENCY,
            DigestField::Ttft => field::TTFT,
            DigestField::TotalTokens => field::TOTAL_TOKENS_DIGEST,
            DigestField::ResponseLength => field::RESPONSE_LENGTH,
        }
    }

    fn name(self) -> &'static str {
        match self {
            DigestField::Latency => "latency",
            DigestField::Ttft => "ttft",
            DigestField::TotalTokens => "total_tokens_digest",
            DigestField::ResponseLength => "response_length",
        }
    }

    fn of(self, r: &Rollup) -> Option<&Digest> {
        match self {
            DigestField::Latency => r.latency.as_ref(),
            DigestField::Ttft => r.ttft.as_ref(),
            DigestField::TotalTokens => r.total_tokens_digest.as_ref(),
            DigestField::ResponseLength => r.response_length.as_ref(),
        }
    }
}

/// Where the parts of one framed rollup value start, found once by
/// checking it as a view's first reads do ([`Layout::of`]): its frame
/// (version and CRC), presence mask and digest size, the extent of its exact
/// fields and of its finish reasons. Valid only for the bytes it was made
/// from; whoever keeps one keeps it with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    version: u8,
    mask: u64,
    digest_size: u32,
    /// Offsets in the payload (the bytes after the frame header).
    totals_at: u32,
    reasons_at: u32,
    digests_at: u32,
}

impl Layout {
    /// Checks `value` (a framed rollup) up to its first digest. An error
    /// here is the error a [`RollupView::stored`] of the same bytes gives
    /// when made, or on the first read that walks that far.
    pub(crate) fn of(value: &[u8]) -> Result<Layout, CodecError> {
        let (version, payload) = unframe_rollup(value)?;
        let mut r = Reader::new("rollup", payload);
        let (mask, digest_size) = read_totals_head(&mut r, version)?;
        let totals_at = r.pos();
        skip_totals_fields(&mut r, mask, version)?;
        let reasons_at = r.pos();
        if mask & (1 << field::FINISH_REASONS) != 0 {
            skip_finish_reasons(&mut r, version)?;
        }
        let digests_at = r.pos();
        let small = |x: usize| {
            u32::try_from(x).map_err(|_| CodecError::new("rollup", format!("{x} is over 4 GiB")))
        };
        Ok(Layout {
            version,
            mask,
            digest_size: small(digest_size)?,
            totals_at: small(totals_at)?,
            reasons_at: small(reasons_at)?,
            digests_at: small(digests_at)?,
        })
    }
}

/// A framed rollup value checked and partly decoded once ([`Prepared::of`]):
/// its [`Layout`], and its latency and ttft digests in quantized form
/// (each `None` when absent or malformed: then read from the bytes).
/// Valid only for the bytes it was made from; whoever keeps one keeps it
/// with them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Prepared {
    layout: Layout,
    latency: Option<QuantDigest>,
    ttft: Option<QuantDigest>,
}

impl Prepared {
    /// `None` when `value` fails [`Layout::of`] (reads then check it whole,
    /// and report what they find, as for any stored value).
    pub(crate) fn of(value: &[u8]) -> Option<Prepared> {
        let layout = Layout::of(value).ok()?;
        let view = RollupView::with_layout("rollup", &[], value, layout, None)?;
        let quantized = |which| match view.digest(which) {
            Ok(Some(DigestRef(DRef::Stored { d, .. }))) => d.quantized(),
            _ => None,
        };
        Some(Prepared {
            layout,
            latency: quantized(DigestField::Latency),
            ttft: quantized(DigestField::Ttft),
        })
    }

    /// Bytes it holds on the heap.
    pub(crate) fn heap_bytes(&self) -> usize {
        [&self.latency, &self.ttft]
            .iter()
            .map(|d| d.as_ref().map_or(0, QuantDigest::heap_bytes))
            .sum()
    }

    pub(super) fn digest(&self, which: DigestField) -> Option<&QuantDigest> {
        match which {
            DigestField::Latency => self.latency.as_ref(),
            DigestField::Ttft => self.ttft.as_ref(),
            _ => None,
        }
    }
}

/// A rollup handed out by a read (see the module docs).
#[derive(Debug)]
pub struct RollupView<'a> {
    /// Decoded on first use (set at once for a rollup in memory).
    totals: OnceCell<RollupTotals>,
    digest_size: usize,
    src: Src<'a>,
    /// Where the bytes came from, for errors.
    tree: &'static str,
    key: &'a [u8],
    /// Digests decoded ahead of time ([`Prepared`]).
    prepared: Option<&'a Prepared>,
}

#[derive(Debug)]
enum Src<'a> {
    /// A CRC-checked payload; `totals_at` is the offset of the first exact
    /// field (after mask and digest size); `reasons_at`, just past the exact
    /// fields, is filled in by whichever first walks them (decoding them for
    /// [`RollupView::totals`], or stepping over them to reach what follows);
    /// `digests_at` once the finish reasons were walked.
    Stored {
        payload: &'a [u8],
        /// Rollup format version (1 or 2).
        version: u8,
        mask: u64,
        totals_at: usize,
        reasons_at: Cell<Option<usize>>,
        digests_at: Cell<Option<usize>>,
    },
    /// A rollup in memory.
    Memory(&'a Rollup),
}

impl<'a> RollupView<'a> {
    /// A view of a framed rollup value (what [`Rollup::encode`] returns):
    /// checks version and CRC and decodes the exact fields. Errors name
    /// `tree` and `key` (hex).
    pub(crate) fn stored(
        tree: &'static str,
        key: &'a [u8],
        value: &'a [u8],
    ) -> Result<RollupView<'a>, StorageError> {
        let wrap = |e: CodecError| StorageError::decode(tree, key, e);
        let (version, payload) = unframe_rollup(value).map_err(wrap)?;
        let mut r = Reader::new("rollup", payload);
        let (mask, digest_size) = read_totals_head(&mut r, version).map_err(wrap)?;
        Ok(RollupView {
            totals: OnceCell::new(),
            digest_size,
            src: Src::Stored {
                payload,
                version,
                mask,
                totals_at: r.pos(),
                reasons_at: Cell::new(None),
                digests_at: Cell::new(None),
            },
            tree,
            key,
            prepared: None,
        })
    }

    /// A view of a framed rollup value prepared before ([`Prepared::of`]
    /// of these very bytes: nothing it covers is checked again); `None`:
    /// not prepared, the value is checked here as [`RollupView::stored`] does.
    pub(crate) fn with_prepared(
        tree: &'static str,
        key: &'a [u8],
        value: &'a [u8],
        prepared: Option<&'a Prepared>,
    ) -> Result<RollupView<'a>, StorageError> {
        let Some(p) = prepared else {
            return RollupView::stored(tree, key, value);
        };
        match RollupView::with_layout(tree, key, value, p.layout, Some(p)) {
            Some(v) => Ok(v),
            None => RollupView::stored(tree, key, value),
        }
    }

    /// A view of `value` with its `layout` (`None` if `value` cannot hold
    /// a frame, which a layout rules out).
    fn with_layout(
        tree: &'static str,
        key: &'a [u8],
        value: &'a [u8],
        l: Layout,
        prepared: Option<&'a Prepared>,
    ) -> Option<RollupView<'a>> {
        Some(RollupView {
            totals: OnceCell::new(),
            digest_size: l.digest_size as usize,
            src: Src::Stored {
                payload: value.get(frame::FRAME_HEADER..)?,
                version: l.version,
                mask: l.mask,
                totals_at: l.totals_at as usize,
                reasons_at: Cell::new(Some(l.reasons_at as usize)),
                digests_at: Cell::new(Some(l.digests_at as usize)),
            },
            tree,
            key,
            prepared,
        })
    }

    /// A view of an encoded rollup held outside a store (errors name the
    /// tree "rollup" and no key).
    pub fn decode(value: &'a [u8]) -> Result<RollupView<'a>, StorageError> {
        RollupView::stored("rollup", &[], value)
    }

    /// A view of a rollup in memory.
    pub fn of(r: &'a Rollup) -> RollupView<'a> {
        RollupView {
            totals: OnceCell::from(r.totals()),
            digest_size: r.digest_size,
            src: Src::Memory(r),
            tree: "rollup",
            key: &[],
            prepared: None,
        }
    }

    /// The exact fields, decoded and validated on the first call.
    pub fn totals(&self) -> Result<&RollupTotals, StorageError> {
        if let Some(t) = self.totals.get() {
            return Ok(t);
        }
        let (payload, version, reasons_at) = match &self.src {
            Src::Stored {
                payload,
                version,
                reasons_at,
                ..
            } => (*payload, *version, reasons_at),
            // Set when the view was made.
            Src::Memory(r) => return Ok(self.totals.get_or_init(|| r.totals())),
        };
        let mut r = Reader::new("rollup", payload);
        let (_, t) = decode_totals(&mut r, version).map_err(|e| self.err(e))?;
        reasons_at.set(Some(r.pos()));
        Ok(self.totals.get_or_init(|| t))
    }

    /// A reader of a stored view's payload positioned just past the exact
    /// fields (stepping over them the first time, unless `totals` decoded them).
    fn at_reasons(
        &self,
        payload: &'a [u8],
        version: u8,
        mask: u64,
        totals_at: usize,
        reasons_at: &Cell<Option<usize>>,
    ) -> Result<Reader<'a>, StorageError> {
        let mut r = Reader::new("rollup", payload);
        match reasons_at.get() {
            Some(at) => {
                r.bytes("finish_reasons", at).map_err(|e| self.err(e))?;
            }
            None => {
                r.bytes("exact fields", totals_at)
                    .map_err(|e| self.err(e))?;
                skip_totals_fields(&mut r, mask, version).map_err(|e| self.err(e))?;
                reasons_at.set(Some(r.pos()));
            }
        }
        Ok(r)
    }

    fn err(&self, e: CodecError) -> StorageError {
        StorageError::decode(self.tree, self.key, e)
    }

    /// Calls `f(name, count)` for each finish reason, names ascending.
    pub fn for_each_finish_reason(&self, mut f: impl FnMut(&str, u64)) -> Result<(), StorageError> {
        match &self.src {
            Src::Memory(r) => {
                for (k, v) in &r.finish_reasons {
                    f(k, *v);
                }
                Ok(())
            }
            Src::Stored {
                payload,
                version,
                mask,
                totals_at,
                reasons_at,
                digests_at,
            } => {
                let mut r = self.at_reasons(payload, *version, *mask, *totals_at, reasons_at)?;
                if mask & (1 << field::FINISH_REASONS) != 0 {
                    read_finish_reasons(&mut r, *version, f).map_err(|e| self.err(e))?;
                }
                digests_at.set(Some(r.pos()));
                Ok(())
            }
        }
    }

    /// The digest `which` (`None` when empty), read in place; its header
    /// is validated here (version 1: and its weights), the rest as it is
    /// visited.
    pub fn digest(&self, which: DigestField) -> Result<Option<DigestRef<'a>>, StorageError> {
        let (payload, version, mask, totals_at, reasons_at, digests_at) = match &self.src {
            Src::Memory(r) => {
                return Ok(which
                    .of(r)
                    .filter(|d| !d.is_empty())
                    .map(|d| DigestRef(DRef::Memory(d))));
            }
            Src::Stored {
                payload,
                version,
                mask,
                totals_at,
                reasons_at,
                digests_at,
            } => (
                *payload, *version, *mask, *totals_at, reasons_at, digests_at,
            ),
        };
        if mask & (1 << which.bit()) == 0 {
            return Ok(None);
        }
        if let Some(q) = self.prepared.and_then(|p| p.digest(which)) {
            return Ok(Some(DigestRef(DRef::Quantized {
                q,
                max_centroids: self.digest_size,
            })));
        }
        let start = match digests_at.get() {
            Some(at) => at,
            None => {
                let mut r = self.at_reasons(payload, version, mask, totals_at, reasons_at)?;
                if mask & (1 << field::FINISH_REASONS) != 0 {
                    skip_finish_reasons(&mut r, version).map_err(|e| self.err(e))?;
                }
                digests_at.set(Some(r.pos()));
                r.pos()
            }
        };
        let mut r = Reader::new("rollup", payload);
        r.bytes(which.name(), start).map_err(|e| self.err(e))?;
        for bit in field::LATENCY..which.bit() {
            if mask & (1 << bit) != 0 {
                let d = StoredDigest::open(&mut r, which.name(), self.digest_size, version)
                    .map_err(|e| self.err(e))?;
                d.skip_means(&mut r, which.name())
                    .map_err(|e| self.err(e))?;
            }
        }
        let d = StoredDigest::open(&mut r, which.name(), self.digest_size, version)
            .map_err(|e| self.err(e))?;
        Ok(Some(DigestRef(DRef::Stored {
            d,
            max_centroids: self.digest_size,
            field: which.name(),
            tree: self.tree,
            key: self.key,
        })))
    }

    /// The whole rollup, decoded and validated as [`Rollup::decode`] does.
    pub fn to_rollup(&self) -> Result<Rollup, StorageError> {
        match &self.src {
            Src::Memory(r) => Ok((*r).clone()),
            Src::Stored {
                payload, version, ..
            } => Rollup::decode_payload(payload, *version).map_err(|e| self.err(e)),
        }
    }
}

/// A digest of a [`RollupView`]: stored bytes read in place, or a digest in memory.
#[derive(Debug, Clone, Copy)]
pub struct DigestRef<'a>(DRef<'a>);

#[derive(Debug, Clone, Copy)]
enum DRef<'a> {
    Stored {
        d: StoredDigest<'a>,
        max_centroids: usize,
        field: &'static str,
        tree: &'static str,
        key: &'a [u8],
    },
    /// A stored digest decoded ahead of time ([`Prepared`]).
    Quantized {
        q: &'a QuantDigest,
        max_centroids: usize,
    },
    Memory(&'a Digest),
}

impl DigestRef<'_> {
    /// Number of values (exact).
    pub fn count(&self) -> u64 {
        match &self.0 {
            DRef::Stored { d, .. } => d.count(),
            DRef::Quantized { q, .. } => q.count(),
            DRef::Memory(d) => d.count(),
        }
    }

    /// Smallest value (exact).
    pub fn min(&self) -> f64 {
        match &self.0 {
            DRef::Stored { d, .. } => d.min(),
            DRef::Quantized { q, .. } => q.min(),
            DRef::Memory(d) => d.min().unwrap_or(f64::INFINITY),
        }
    }

    /// Largest value (exact).
    pub fn max(&self) -> f64 {
        match &self.0 {
            DRef::Stored { d, .. } => d.max(),
            DRef::Quantized { q, .. } => q.max(),
            DRef::Memory(d) => d.max().unwrap_or(f64::NEG_INFINITY),
        }
    }

    /// The digest size of its rollup.
    pub fn max_centroids(&self) -> usize {
        match &self.0 {
            DRef::Stored { max_centroids, .. } => *max_centroids,
            DRef::Quantized { max_centroids, .. } => *max_centroids,
            DRef::Memory(d) => d.max_centroids(),
        }
    }

    /// Number of centroids [`DigestRef::try_for_each_centroid`] visits
    /// (for an in-memory digest, its compressed size).
    pub fn len(&self) -> usize {
        match &self.0 {
            DRef::Stored { d, .. } => d.len(),
            DRef::Quantized { q, .. } => q.len(),
            DRef::Memory(d) => d.centroid_count(),
        }
    }

    /// Always false: views hand out non-empty digests only.
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// A stored digest's centroids, their means still quantized: appends
    /// the quantized means to `qs` and, unless every weight is 1, the
    /// weights to `ws`; returns `Some(true)` when the weights are all 1,
    /// `Some(false)` when they were appended. Each mean is
    /// [`dequantize_mean`]`(q, self.min(), self.max())` — exactly what
    /// [`DigestRef::try_for_each_centroid`] visits — so a reader can defer
    /// that work to the centroids it needs. `None` (nothing appended) for
    /// a digest in memory. Malformed means are a [`StorageError::Decode`]
    /// and append nothing.
    ///
    /// [`dequantize_mean`]: crate::dequantize_mean
    pub fn decode_quantized(
        &self,
        qs: &mut Vec<u32>,
        ws: &mut Vec<u64>,
    ) -> Result<Option<bool>, StorageError> {
        match &self.0 {
            DRef::Stored {
                d,
                field,
                tree,
                key,
                ..
            } => d.decode_quantized(qs, ws).map(Some).map_err(|reason| {
                StorageError::decode(
                    tree,
                    key,
                    CodecError::new("rollup", format!("field {field}: {reason}")),
                )
            }),
            DRef::Quantized { q, .. } => Ok(Some(q.decode_quantized(qs, ws))),
            DRef::Memory(_) => Ok(None),
        }
    }

    /// Calls `f(mean, weight)` for each centroid, ascending by mean — the
    /// sequence [`Digest::for_each_centroid`] visits on the decoded digest.
    /// A stored digest whose means turn out malformed is a
    /// [`StorageError::Decode`], after `f` saw a prefix.
    #[inline]
    pub fn try_for_each_centroid(&self, f: impl FnMut(f64, u64)) -> Result<(), StorageError> {
        match &self.0 {
            DRef::Stored {
                d,
                field,
                tree,
                key,
                ..
            } => d.try_for_each(f).map_err(|reason| {
                StorageError::decode(
                    tree,
                    key,
                    CodecError::new("rollup", format!("field {field}: {reason}")),
                )
            }),
            DRef::Quantized { q, .. } => {
                q.for_each(f);
                Ok(())
            }
            DRef::Memory(d) => {
                d.for_each_centroid(f);
                Ok(())
            }
        }
    }
}

impl<'a> From<&'a Digest> for DigestRef<'a> {
    fn from(d: &'a Digest) -> DigestRef<'a> {
        DigestRef(DRef::Memory(d))
    }
}
