//! The server's own health as Prometheus text (`GET /metrics`).
//!
//! Invariant: labels have bounded cardinality — endpoint labels are route
//! templates from a fixed list, never raw paths or user values.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// A histogram with fixed buckets (upper bounds), counts and sum.
#[derive(Debug)]
pub(crate) struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// Sum, in micro-units (µs for seconds histograms).
    sum_micro: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micro: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub(crate) fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micro = if v.is_finite() && v > 0.0 {
            (v * 1e6) as u64
        } else {
            0
        };
        self.sum_micro.fetch_add(micro, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}\n{name}_count {count}",
            self.sum_micro.load(Ordering::Relaxed) as f64 / 1e6
        );
    }
}

const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const SIZES: &[f64] = &[1.0, 10.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0];

/// Ingest kinds counted separately.
pub(crate) const INGEST_KINDS: [&str; 4] = ["calls", "spans", "quality", "feedback"];

/// Counters and histograms; one per server.
#[derive(Debug)]
pub(crate) struct Telemetry {
    /// Accepted events per `INGEST_KINDS` entry.
    ingested: [AtomicU64; 4],
    /// Rejected records (invalid items of batches, rejected spans, bad bodies).
    pub(crate) rejected: AtomicU64,
    pub(crate) requests_4xx: AtomicU64,
    pub(crate) requests_5xx: AtomicU64,
    pub(crate) batch_items: Histogram,
    pub(crate) append_seconds: Histogram,
    /// `/v1/metrics/batch`: body bytes → validated, priced `LlmCall`s.
    pub(crate) decode_seconds: Histogram,
    pub(crate) query_seconds: Histogram,
    pub(crate) judge_ok: AtomicU64,
    pub(crate) judge_failed: AtomicU64,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            ingested: Default::default(),
            rejected: AtomicU64::new(0),
            requests_4xx: AtomicU64::new(0),
            requests_5xx: AtomicU64::new(0),
            batch_items: Histogram::new(SIZES),
            append_seconds: Histogram::new(SECONDS),
            decode_seconds: Histogram::new(SECONDS),
            query_seconds: Histogram::new(SECONDS),
            judge_ok: AtomicU64::new(0),
            judge_failed: AtomicU64::new(0),
        }
    }
}

/// Gauges read from the layers below at scrape time.
#[derive(Debug, Default)]
pub(crate) struct Gauges {
    pub(crate) wal_bytes: u64,
    pub(crate) wal_batches: u64,
    pub(crate) head_events: u64,
    pub(crate) segments: u64,
    pub(crate) sealed_events_total: u64,
    pub(crate) outbox_depth: u64,
    pub(crate) notifications_sent_total: u64,
    pub(crate) notifications_failed_total: u64,
    pub(crate) eval_last_cycle_seconds: f64,
    pub(crate) eval_cycles_total: u64,
}

impl Telemetry {
    pub(crate) fn ingested(&self, kind: usize, n: u64) {
        if let Some(c) = self.ingested.get(kind) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(crate) fn render(&self, g: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        let _ = writeln!(
            out,
            "# HELP sextant_ingested_events_total Events accepted and durably stored.\n# TYPE sextant_ingested_events_total counter"
        );
        for (i, kind) in INGEST_KINDS.iter().enumerate() {
            let _ = writeln!(
                out,
                "sextant_ingested_events_total{{kind=\"{kind}\"}} {}",
                self.ingested[i].load(Ordering::Relaxed)
            );
        }
        let counters = [
            (
                "sextant_rejected_records_total",
                "Records rejected as invalid.",
                self.rejected.load(Ordering::Relaxed),
            ),
            (
                "sextant_http_client_errors_total",
                "Requests answered 4xx.",
                self.requests_4xx.load(Ordering::Relaxed),
            ),
            (
                "sextant_http_server_errors_total",
                "Requests answered 5xx.",
                self.requests_5xx.load(Ordering::Relaxed),
            ),
            (
                "sextant_judge_scores_total",
                "Factual-accuracy judge answers stored.",
                self.judge_ok.load(Ordering::Relaxed),
            ),
            (
                "sextant_judge_failures_total",
                "Judge calls that failed or answered no number in [0, 1].",
                self.judge_failed.load(Ordering::Relaxed),
            ),
            (
                "sextant_notifications_sent_total",
                "Alert notifications delivered.",
                g.notifications_sent_total,
            ),
            (
                "sextant_notification_failures_total",
                "Alert notifications given up on.",
                g.notifications_failed_total,
            ),
            (
                "sextant_evaluator_cycles_total",
                "Alert evaluation cycles run.",
                g.eval_cycles_total,
            ),
            (
                "sextant_sealed_events_total",
                "Events sealed into segments.",
                g.sealed_events_total,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        let gauges = [
            (
                "sextant_wal_bytes",
                "Bytes in the write-ahead log.",
                g.wal_bytes as f64,
            ),
            (
                "sextant_wal_batches",
                "Batches in the write-ahead log.",
                g.wal_batches as f64,
            ),
            (
                "sextant_head_events",
                "Acknowledged events not yet sealed.",
                g.head_events as f64,
            ),
            ("sextant_segments", "Sealed segments.", g.segments as f64),
            (
                "sextant_outbox_depth",
                "Notifications waiting for delivery.",
                g.outbox_depth as f64,
            ),
            (
                "sextant_evaluator_last_cycle_seconds",
                "Duration of the last alert evaluation cycle.",
                g.eval_last_cycle_seconds,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        self.batch_items.render(
            &mut out,
            "sextant_ingest_batch_items",
            "Records per ingest request.",
        );
        self.append_seconds.render(
            &mut out,
            "sextant_append_seconds",
            "Time to append a batch durably (WAL and head).",
        );
        self.decode_seconds.render(
            &mut out,
            "sextant_ingest_decode_seconds",
            "Time to parse, validate and price one /v1/metrics/batch body (before the append).",
        );
        self.query_seconds.render(
            &mut out,
            "sextant_query_seconds",
            "Time to answer a summary, series or drift query.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_exposition_is_well_formed() {
        let t = Telemetry::default();
        t.batch_items.observe(5.0);
        t.batch_items.observe(1000.0);
        t.batch_items.observe(1e9);
        t.ingested(0, 3);
        let text = t.render(&Gauges::default());
        assert!(
            text.contains("sextant_ingest_batch_items_bucket{le=\"10\"} 1"),
            "{text}"
        );
        assert!(text.contains("sextant_ingest_batch_items_bucket{le=\"1000\"} 2"));
        assert!(text.contains("sextant_ingest_batch_items_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("sextant_ingested_events_total{kind=\"calls\"} 3"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let mut parts = line.rsplitn(2, ' ');
            let value = parts.next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
