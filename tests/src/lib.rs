//! sextant-tests: end-to-end tests against the real `sextant` binary, and
//! workspace structure checks.
//!
//! The binary under test is `sextant-under-test`, built in this package from
//! `src/bin/sextant_under_test.rs`, whose `main` is exactly the `sextant`
//! binary's (`sextant_server::main()`): Cargo exposes `CARGO_BIN_EXE_<name>`
//! only for the package's own binaries, so this is how an integration test
//! gets a fresh build of the real server without a nested `cargo build`.
//! Tests pass `env!("CARGO_BIN_EXE_sextant-under-test")` to [`Server::start`].
//!
//! Every server binds 127.0.0.1 port 0 (it prints `listening on ADDR`) and
//! keeps its data in a temporary directory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub use serde_json::{json, Value};

/// A blocking HTTP client for tests (installs the rustls provider once).
pub fn client() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("building the test HTTP client")
}

/// A running `sextant serve`.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    bin: PathBuf,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// Directory holding `sextant.toml` and `data/`.
    pub dir: PathBuf,
    pub http: reqwest::blocking::Client,
    /// The server's stderr (logs), collected by a thread.
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// A response: status and JSON body (Null when the body is not JSON).
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub text: String,
}

impl Server {
    /// Starts the binary on `dir` (created if absent) with `config` as its
    /// `sextant.toml` (data dir and listen address come from flags).
    pub fn start(bin: &str, dir: &Path, config: &str) -> Server {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("sextant.toml"), config).unwrap();
        let mut s = Server {
            child: None,
            bin: PathBuf::from(bin),
            base: String::new(),
            dir: dir.to_path_buf(),
            http: client(),
            stderr: None,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let mut child = Command::new(&self.bin)
            .arg("serve")
            .arg("--config")
            .arg(self.dir.join("sextant.toml"))
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .arg("--listen")
            .arg("127.0.0.1:0")
            .env_remove("SEXTANT_LISTEN")
            .env_remove("SEXTANT_DATA_DIR")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the sextant binary");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        self.stderr = Some(std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                all.push_str(&line);
                all.push('\n');
            }
            all
        }));
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(addr) => self.base = format!("http://{addr}"),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let logs = self
                    .stderr
                    .take()
                    .map(|h| h.join().unwrap_or_default())
                    .unwrap_or_default();
                panic!("sextant did not print its address; stderr:\n{logs}");
            }
        }
        self.child = Some(child);
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().expect("server not running").id() as i32
    }

    /// Sends SIGTERM and waits for the process to exit; returns its status and stderr.
    pub fn stop(&mut self) -> (ExitStatus, String) {
        unsafe_free_kill(self.pid(), libc::SIGTERM);
        self.wait_exit()
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        unsafe_free_kill(self.pid(), libc::SIGKILL);
        let _ = self.wait_exit();
    }

    fn wait_exit(&mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("server not running");
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("sextant did not exit within 120 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let logs = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        (status, logs)
    }

    /// Starts the binary again on the same directory and config.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill the server first");
        self.spawn();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn finish(r: reqwest::blocking::Response) -> Resp {
        let status = r.status().as_u16();
        let text = r.text().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp { status, body, text }
    }

    pub fn get(&self, path: &str) -> Resp {
        Self::finish(self.http.get(self.url(path)).send().expect("GET"))
    }

    pub fn post(&self, path: &str, body: &Value) -> Resp {
        Self::finish(
            self.http
                .post(self.url(path))
                .json(body)
                .send()
                .expect("POST"),
        )
    }

    /// Any request with raw bytes and headers.
    pub fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Resp {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(m, self.url(path)).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Self::finish(req.send().expect("request"))
    }
}

fn unsafe_free_kill(pid: i32, sig: i32) {
    // libc::kill is declared `unsafe`; the workspace forbids unsafe code, so
    // signal through the `kill` command instead.
    let name = if sig == libc::SIGKILL {
        "-KILL"
    } else {
        "-TERM"
    };
    let ok = Command::new("kill")
        .arg(name)
        .arg(pid.to_string())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill {name} {pid} failed");
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Unix ms now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The seed's percentile: `sorted[int(n * q)]`.
pub fn seed_percentile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
}

/// Waits until `f` returns Some (for effects that happen in the background,
/// e.g. a judge call); panics after `timeout`.
pub fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "condition not reached within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub mod otlp;
