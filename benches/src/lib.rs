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
        let model = self.model();
        let endpoint = ENDPOINTS[self.rng.usize(..ENDPOINTS.len())];
        // Product of uniforms: a right-skewed latency around ~800 ms.
        let latency = 150.0 + 2000.0 * self.rng.f64() * self.rng.f64() * self.rng.f64() * 3.0;
        let prompt = 50 + self.rng.u64(0..3000);
        let completion = 10 + self.rng.u64(0..800);
        let error = self.rng.u32(0..100) < 2;
        let _ = write!(
            out,
            r#"{{"request_id":"{}-{}","model":"{model}","endpoint":"{endpoint}","latency_ms":{latency:.2},"time_to_first_token_ms":{:.2},"prompt_tokens":{prompt},"completion_tokens":{completion},"finish_reason":"{}","error":{},"user_id":"user-{}","tags":{{"team":"{}"}}}}"#,
            self.prefix,
            self.next_id,
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
}
