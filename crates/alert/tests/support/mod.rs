//! Test support: a hand-rolled HTTP/1.1 receiver on 127.0.0.1 that records
//! every request and answers from a script, and fake metric sources.

#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sextant_alert::{GroupObservation, Labels, MetricSource, Observation, Rule, RuleResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<u64>,
    /// Wait this long before answering (to exceed a client timeout).
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            retry_after: None,
            delay: Duration::ZERO,
        }
    }
}

/// One request the receiver saw.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub idempotency_key: Option<String>,
    pub body: serde_json::Value,
    /// The status it was answered with.
    pub status: u16,
}

#[derive(Debug, Default)]
pub struct ReceiverState {
    pub script: VecDeque<Reply>,
    pub log: Vec<Received>,
}

#[derive(Debug, Clone)]
pub struct Receiver {
    pub addr: std::net::SocketAddr,
    pub state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    /// Starts a receiver on 127.0.0.1:`port` (0 = any).
    pub async fn start(port: u16) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    break;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let _ = serve(sock, st).await;
                });
            }
        });
        Receiver { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn push(&self, r: Reply) {
        self.state.lock().script.push_back(r);
    }

    /// Requests answered 2xx.
    pub fn delivered(&self) -> Vec<Received> {
        self.state
            .lock()
            .log
            .iter()
            .filter(|r| (200..300).contains(&r.status))
            .cloned()
            .collect()
    }

    pub fn all(&self) -> Vec<Received> {
        self.state.lock().log.clone()
    }
}

async fn serve(
    mut sock: tokio::net::TcpStream,
    st: Arc<Mutex<ReceiverState>>,
) -> std::io::Result<()> {
    loop {
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = sock.read(&mut tmp).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&tmp[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let path = lines
            .next()
            .unwrap_or("")
            .split(' ')
            .nth(1)
            .unwrap_or("")
            .to_string();
        let mut len = 0usize;
        let mut key = None;
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                let k = k.trim().to_ascii_lowercase();
                if k == "content-length" {
                    len = v.trim().parse().unwrap_or(0);
                } else if k == "idempotency-key" {
                    key = Some(v.trim().to_string());
                }
            }
        }
        while buf.len() < head_end + len {
            let n = sock.read(&mut tmp).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&tmp[..n]);
        }
        let body = serde_json::from_slice(&buf[head_end..head_end + len])
            .unwrap_or(serde_json::Value::Null);
        let reply = st.lock().script.pop_front().unwrap_or(Reply::status(200));
        if !reply.delay.is_zero() {
            tokio::time::sleep(reply.delay).await;
        }
        st.lock().log.push(Received {
            path,
            idempotency_key: key,
            body,
            status: reply.status,
        });
        let mut resp = format!("HTTP/1.1 {} X\r\ncontent-length: 2\r\n", reply.status);
        if let Some(s) = reply.retry_after {
            resp.push_str(&format!("retry-after: {s}\r\n"));
        }
        resp.push_str("\r\n{}");
        sock.write_all(resp.as_bytes()).await?;
    }
}

/// A metric source answering every rule with one settable value.
#[derive(Debug, Default)]
pub struct FixedSource {
    /// None: no data.
    pub value: Mutex<Option<f64>>,
    /// Per group label `model` values to report; empty = one ungrouped group.
    pub groups: Mutex<Vec<String>>,
}

impl FixedSource {
    pub fn set(&self, v: Option<f64>) {
        *self.value.lock() = v;
    }
}

impl MetricSource for FixedSource {
    fn observe(&self, rules: &[&Rule], _now_ms: i64) -> Vec<RuleResult> {
        let v = *self.value.lock();
        let groups = self.groups.lock().clone();
        rules
            .iter()
            .map(|r| {
                let obs = match v {
                    Some(value) => Observation::Value {
                        value,
                        samples: 100,
                    },
                    None => Observation::NoData,
                };
                if groups.is_empty() || r.group_by.is_empty() {
                    Ok(vec![GroupObservation {
                        labels: Labels::new(),
                        observation: obs,
                        metrics: None,
                    }])
                } else {
                    Ok(groups
                        .iter()
                        .map(|g| GroupObservation {
                            labels: Labels::from([("model".to_string(), g.clone())]),
                            observation: obs.clone(),
                            metrics: None,
                        })
                        .collect())
                }
            })
            .collect()
    }
}
