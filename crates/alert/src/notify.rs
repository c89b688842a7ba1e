//! Notification payloads (pure) and their HTTP delivery (the crate's edge).
//!
//! **Invariants:** a payload is a pure function of (notifier kind, outbox
//! entry), so a retry sends the same bytes and the same idempotency key;
//! secrets (URLs, routing keys) go only into the request, never into an error
//! message, a log line or a `Debug` output.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::api::{NotifierConfig, NotifierKind};
use crate::machine::{Notification, NotifyKind};

/// The PagerDuty Events v2 endpoint used when `events_url` is not set.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// One queued delivery: a notification for one notifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct OutboxEntry {
    pub(crate) seq: u64,
    pub(crate) notifier: String,
    /// Unix ms the entry was queued (its age is measured from here).
    pub(crate) queued_ms: i64,
    pub(crate) notification: Notification,
}

/// The seed's Slack colours, by severity.
pub(crate) fn slack_color(severity: &str) -> &'static str {
    match severity {
        "info" => "#36a64f",
        "warning" => "#ff9800",
        "critical" => "#f44336",
        _ => "#808080",
    }
}

/// The JSON body for `kind`.
pub(crate) fn payload(kind: NotifierKind, routing_key: Option<&str>, n: &Notification) -> Value {
    match kind {
        NotifierKind::Slack => {
            let (color, tag) = if n.kind == NotifyKind::Resolved {
                ("#36a64f", "RESOLVED".to_string())
            } else {
                (slack_color(&n.severity), n.severity.to_uppercase())
            };
            json!({"attachments": [{
                "color": color,
                "title": format!("[{tag}] {}", n.rule),
                "text": n.message,
                "ts": n.at_ms.div_euclid(1000),
            }]})
        }
        NotifierKind::Pagerduty => {
            if n.kind == NotifyKind::Resolved {
                json!({
                    "routing_key": routing_key.unwrap_or_default(),
                    "event_action": "resolve",
                    "dedup_key": n.episode_key,
                })
            } else {
                json!({
                    "routing_key": routing_key.unwrap_or_default(),
                    "event_action": "trigger",
                    "dedup_key": n.episode_key,
                    "payload": {
                        "summary": n.message,
                        "severity": n.severity,
                        "source": "sextant",
                        "custom_details": {
                            "rule": n.rule,
                            "labels": n.rule_labels,
                            "value": n.value,
                            "threshold": n.threshold,
                            "kind": n.kind.as_str(),
                        },
                    },
                })
            }
        }
        _ => json!({
            "rule": n.rule,
            "labels": n.labels,
            "rule_labels": n.rule_labels,
            "state": n.state,
            "kind": n.kind.as_str(),
            "severity": n.severity,
            "value": n.value,
            "threshold": n.threshold,
            "message": n.message,
            "started_at_ms": n.started_ms,
            "timestamp_ms": n.at_ms,
            "idempotency_key": n.idempotency_key,
            "episode_key": n.episode_key,
        }),
    }
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    Delivered,
    /// Try again later; `after` is the receiver's `Retry-After`.
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// Retrying cannot help (4xx other than 408/429, missing URL).
    Permanent(String),
}

/// Sends `entry` to `notifier`.
pub(crate) async fn send(
    client: &reqwest::Client,
    notifier: &NotifierConfig,
    entry: &OutboxEntry,
) -> Outcome {
    let n = &entry.notification;
    let url = match notifier.kind {
        NotifierKind::Pagerduty => notifier
            .events_url
            .as_deref()
            .unwrap_or(PAGERDUTY_EVENTS_URL),
        _ => match notifier.url.as_deref() {
            Some(u) => u,
            None => return Outcome::Permanent(format!("notifier {} has no url", notifier.name)),
        },
    };
    let body = payload(notifier.kind, notifier.routing_key.as_deref(), n);
    let req = client
        .post(url)
        .header("Idempotency-Key", &n.idempotency_key)
        .json(&body);
    match req.send().await {
        Ok(resp) => {
            let status = resp.status();
            if status.is_success() {
                Outcome::Delivered
            } else if status.as_u16() == 429 || status.as_u16() == 408 || status.is_server_error() {
                let after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                Outcome::Retry {
                    after,
                    reason: format!("HTTP {}", status.as_u16()),
                }
            } else {
                Outcome::Permanent(format!("HTTP {}", status.as_u16()))
            }
        }
        // `without_url` keeps the (secret) URL out of the message.
        Err(e) => Outcome::Retry {
            after: None,
            reason: describe(e),
        },
    }
}

fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    format!("{kind}: {}", e.without_url())
}

/// Backoff before attempt `attempt + 1` (attempt ≥ 1): `initial × 2^(attempt-1)`,
/// capped at `max`, with jitter drawing uniformly from [50 %, 100 %] of it.
pub(crate) fn backoff(attempt: u32, initial: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = initial.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = exp.min(max);
    capped.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn n(kind: NotifyKind, severity: &str) -> Notification {
        Notification {
            kind,
            rule: "high_latency".into(),
            labels: BTreeMap::from([("model".into(), "gpt-4o".into())]),
            rule_labels: BTreeMap::from([("model".into(), "gpt-4o".into())]),
            severity: severity.into(),
            state: if kind == NotifyKind::Resolved {
                "resolved"
            } else {
                "firing"
            }
            .into(),
            value: Some(5001.0),
            threshold: 5000.0,
            message: "High latency detected: P95 = 5001ms".into(),
            started_ms: 1_700_000_000_000,
            at_ms: 1_700_000_060_500,
            episode_key: "high_latency/1/1700000000000".into(),
            idempotency_key: "high_latency/1/1700000000000/firing".into(),
            instance_key: "high_latency\0model=gpt-4o".into(),
        }
    }

    #[test]
    fn slack_payload_is_the_seeds_attachment() {
        let p = payload(NotifierKind::Slack, None, &n(NotifyKind::Firing, "warning"));
        assert_eq!(
            p,
            json!({"attachments":[{"color":"#ff9800","title":"[WARNING] high_latency",
                "text":"High latency detected: P95 = 5001ms","ts":1_700_000_060i64}]})
        );
        let c = payload(
            NotifierKind::Slack,
            None,
            &n(NotifyKind::Firing, "critical"),
        );
        assert_eq!(c["attachments"][0]["color"], "#f44336");
        let i = payload(NotifierKind::Slack, None, &n(NotifyKind::Firing, "info"));
        assert_eq!(i["attachments"][0]["color"], "#36a64f");
        let r = payload(
            NotifierKind::Slack,
            None,
            &n(NotifyKind::Resolved, "critical"),
        );
        assert_eq!(r["attachments"][0]["title"], "[RESOLVED] high_latency");
    }

    #[test]
    fn pagerduty_trigger_and_resolve_share_the_dedup_key() {
        let t = payload(
            NotifierKind::Pagerduty,
            Some("rk"),
            &n(NotifyKind::Firing, "critical"),
        );
        let r = payload(
            NotifierKind::Pagerduty,
            Some("rk"),
            &n(NotifyKind::Resolved, "critical"),
        );
        assert_eq!(t["event_action"], "trigger");
        assert_eq!(r["event_action"], "resolve");
        assert_eq!(t["dedup_key"], r["dedup_key"]);
        assert_eq!(t["payload"]["severity"], "critical");
        assert_eq!(t["routing_key"], "rk");
    }

    #[test]
    fn webhook_payload_carries_the_idempotency_key_and_timestamps() {
        let w = payload(
            NotifierKind::Webhook,
            None,
            &n(NotifyKind::Firing, "warning"),
        );
        assert_eq!(w["idempotency_key"], "high_latency/1/1700000000000/firing");
        assert_eq!(w["state"], "firing");
        assert_eq!(w["value"], 5001.0);
        assert_eq!(w["threshold"], 5000.0);
        assert_eq!(w["started_at_ms"], 1_700_000_000_000i64);
        assert_eq!(w["labels"]["model"], "gpt-4o");
    }

    #[test]
    fn backoff_grows_exponentially_is_capped_and_jittered() {
        let i = Duration::from_millis(100);
        let m = Duration::from_secs(5);
        assert_eq!(backoff(1, i, m, 1.0), Duration::from_millis(100));
        assert_eq!(backoff(3, i, m, 1.0), Duration::from_millis(400));
        assert_eq!(backoff(3, i, m, 0.0), Duration::from_millis(200));
        assert_eq!(backoff(30, i, m, 1.0), m);
    }
}
