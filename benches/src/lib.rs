//! sextant-benches: a realistic LLM-call workload generator and load tools.
//!
//! [`Workload`] produces `POST /v1/metrics` bodies (the seed's fields plus
//! extensions) with a skewed model mix, log-normal-ish latencies and token
//! counts; [`http`] is a minimal keep-alive HTTP/1.1 client over `TcpStream`
//! so the load generator costs as little CPU as possible on a 2-core box.

use std::fmt::Write as _;

/// Deterministic generator of LLM-call records.
#[derive(Debug)]
pub struct Workload {
    rng: fastrand::Rng,
    next_id: u64,
    prefix: String,
}

const MODELS: &[(&str, u32)] = &[
    ("gpt-4o", 40),
    ("gpt-4o-mini", 30),
    ("claude-3-5-sonnet", 15),
    ("o3-mini", 10),
    ("local-llama", 5),
];
const ENDPOINTS: &[&str] = &["chat.completions", "summarize", "rag.answer", "classify"];
const FINISH: &[&str] = &["stop", "stop", "stop", "stop", "length", "tool_calls"];

impl Workload {
    /// `prefix` keeps request ids unique across generators and runs.
    pub fn new(seed: u64, prefix: &str) -> Workload {
        Workload {
            rng: fastrand::Rng::with_seed(seed),
            next_id: 0,
            prefix: prefix.to_string(),
        }
    }

    fn model(&mut self) -> &'static str {
        let total: u32 = MODELS.iter().map(|m| m.1).sum();
        let mut x = self.rng.u32(0..total);
        for (m, w) in MODELS {
            if x < *w {
                return m;
            }
            x -= w;
        }
        MODELS[0].0
    }

    /// One call as a JSON object (no trailing newline).
    pub fn call_json(&mut self, out: &mut String) {
        self.next_id += 1;
        let id = format!("{}-{}", self.prefix, self.next_id);
        self.call_json_with_id(out, &id);
    }

    /// One call whose `request_id` is `id` (which must need no JSON escaping).
    fn call_json_with_id(&mut self, out: &mut String, id: &str) {
        let model = self.model();
        let endpoint = ENDPOINTS[self.rng.usize(..ENDPOINTS.len())];
        // Product of uniforms: a right-skewed latency around ~800 ms.
        let latency = 150.0 + 2000.0 * self.rng.f64() * self.rng.f64() * self.rng.f64() * 3.0;
        let prompt = 50 + self.rng.u64(0..3000);
        let completion = 10 + self.rng.u64(0..800);
        let error = self.rng.u32(0..100) < 2;
        let _ = write!(
            out,
            r#"{{"request_id":"{id}","model":"{model}","endpoint":"{endpoint}","latency_ms":{latency:.2},"time_to_first_token_ms":{:.2},"prompt_tokens":{prompt},"completion_tokens":{completion},"finish_reason":"{}","error":{},"user_id":"user-{}","tags":{{"team":"{}"}}}}"#,
            latency * 0.2,
            FINISH[self.rng.usize(..FINISH.len())],
            if error { "\"rate_limited\"" } else { "null" },
            self.rng.u32(0..500),
            if self.rng.bool() { "search" } else { "support" },
        );
    }

    /// A JSON array of `n` calls.
    pub fn batch_json(&mut self, n: usize) -> String {
        let mut s = String::with_capacity(n * 300);
        s.push('[');
        for i in 0..n {
            if i > 0 {
                s.push(',');
            }
            self.call_json(&mut s);
        }
        s.push(']');
        s
    }
}

/// Width of the batch sequence number inside template request ids.
const SEQ_DIGITS: usize = 12;

/// Pre-serialized batch bodies whose request ids are rewritten in place for
/// every request, so each request carries distinct ids without the load
/// generator formatting JSON (the CPU is shared with the server).
///
/// Every id is `{prefix}-{seq:012}-{i}`: `seq` is the request's sequence
/// number, `i` the record's index in its template.
#[derive(Debug)]
pub struct BatchPool {
    bodies: Vec<Vec<u8>>,
    /// Byte offsets of the `seq` digits of each id, per body.
    seq_at: Vec<Vec<usize>>,
    next_seq: u64,
}

impl BatchPool {
    /// `templates` distinct bodies of `n` records each (a JSON array).
    pub fn new(w: &mut Workload, templates: usize, n: usize) -> BatchPool {
        let placeholder = "0".repeat(SEQ_DIGITS);
        let mut bodies = Vec::with_capacity(templates);
        let mut seq_at = Vec::with_capacity(templates);
        for _ in 0..templates.max(1) {
            let mut s = String::with_capacity(n * 300);
            let mut offsets = Vec::with_capacity(n);
            s.push('[');
            for i in 0..n {
                if i > 0 {
                    s.push(',');
                }
                let id = format!("{}-{placeholder}-{i}", w.prefix);
                offsets.push(s.len() + r#"{"request_id":""#.len() + w.prefix.len() + 1);
                w.call_json_with_id(&mut s, &id);
            }
            s.push(']');
            bodies.push(s.into_bytes());
            seq_at.push(offsets);
        }
        BatchPool {
            bodies,
            seq_at,
            next_seq: 0,
        }
    }

    /// The next body, its ids stamped with a fresh sequence number.
    pub fn next_body(&mut self) -> &[u8] {
        let seq = self.next_seq;
        self.next_seq += 1;
        let k = (seq % self.bodies.len() as u64) as usize;
        let mut digits = [b'0'; SEQ_DIGITS];
        let mut v = seq;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
        let body = &mut self.bodies[k];
        for &at in &self.seq_at[k] {
            body[at..at + SEQ_DIGITS].copy_from_slice(&digits);
        }
        &self.bodies[k]
    }
}

/// A minimal HTTP/1.1 keep-alive client (loopback load generation only).
pub mod http {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{SocketAddr, TcpStream};

    /// One persistent connection.
    #[derive(Debug)]
    pub struct Conn {
        reader: BufReader<TcpStream>,
        writer: TcpStream,
        host: String,
    }

    impl Conn {
        pub fn connect(addr: SocketAddr) -> std::io::Result<Conn> {
            let s = TcpStream::connect(addr)?;
            s.set_nodelay(true)?;
            Ok(Conn {
                reader: BufReader::new(s.try_clone()?),
                writer: s,
                host: addr.to_string(),
            })
        }

        /// Sends a request and reads the whole response; returns the status.
        pub fn request(
            &mut self,
            method: &str,
            path: &str,
            content_type: &str,
            body: &[u8],
        ) -> std::io::Result<u16> {
            let head = format!(
                "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
                self.host,
                body.len()
            );
            self.writer.write_all(head.as_bytes())?;
            self.writer.write_all(body)?;
            let mut line = String::new();
            self.reader.read_line(&mut line)?;
            let status: u16 = line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
            let mut len = 0usize;
            let mut chunked = false;
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                let l = line.to_ascii_lowercase();
                if let Some(v) = l.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if l.starts_with("transfer-encoding:") && l.contains("chunked") {
                    chunked = true;
                }
            }
            if chunked {
                loop {
                    line.clear();
                    self.reader.read_line(&mut line)?;
                    let n =
                        usize::from_str_radix(line.trim(), 16).map_err(std::io::Error::other)?;
                    let mut buf = vec![0; n + 2];
                    self.reader.read_exact(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                }
            } else {
                let mut buf = vec![0; len];
                self.reader.read_exact(&mut buf)?;
            }
            Ok(status)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_batches_are_valid_json_with_unique_ids() {
        let mut w = Workload::new(1, "t");
        let b = w.batch_json(50);
        assert!(b.starts_with('[') && b.ends_with(']'));
        let ids: std::collections::BTreeSet<_> = b
            .match_indices("\"request_id\":\"t-")
            .map(|(i, _)| &b[i..i + 25])
            .collect();
        assert!(ids.len() > 1);
        assert_eq!(b.matches("\"request_id\"").count(), 50);
    }

    fn ids(body: &[u8]) -> Vec<String> {
        let s = std::str::from_utf8(body).unwrap();
        s.split("\"request_id\":\"")
            .skip(1)
            .map(|r| r.split('"').next().unwrap().to_string())
            .collect()
    }

    #[test]
    fn pooled_batches_get_fresh_ids_on_every_request() {
        let mut w = Workload::new(3, "p");
        let mut pool = BatchPool::new(&mut w, 2, 20);
        let mut seen = std::collections::BTreeSet::new();
        for seq in 0..5u64 {
            let ids = ids(pool.next_body());
            assert_eq!(ids.len(), 20);
            for (i, id) in ids.iter().enumerate() {
                assert_eq!(id, &format!("p-{seq:012}-{i}"));
                assert!(seen.insert(id.clone()), "{id} repeated");
            }
        }
        let body = pool.next_body().to_vec();
        assert!(body.starts_with(b"[{") && body.ends_with(b"}]"));
    }
}
