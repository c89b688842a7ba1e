//! Factual accuracy through a (fake, local) OpenAI-compatible judge.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sextant_tests::{eventually, json, Server};

const BIN: &str = env!("CARGO_BIN_EXE_sextant-under-test");

/// Answers chat completions: "0.8" unless the prompt mentions "banana".
fn fake_judge() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/v1/chat/completions",
        listener.local_addr().unwrap()
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let l = line.to_ascii_lowercase();
                if let Some(v) = l.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let body = String::from_utf8_lossy(&body).to_string();
            let answer = if body.contains("banana") {
                "banana"
            } else {
                "0.8"
            };
            log.lock().unwrap().push(body);
            let resp = json!({"choices": [{"message": {"role": "assistant", "content": answer}}]})
                .to_string();
            let _ = write!(stream, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{resp}", resp.len());
        }
    });
    (url, seen)
}

#[test]
fn judged_scores_are_stored_and_unparseable_answers_are_counted_not_stored() {
    let (url, seen) = fake_judge();
    let dir = tempfile::tempdir().unwrap();
    let config = format!("[quality.judge]\nurl = \"{url}\"\napi_key = \"sk-test\"\n");
    let s = Server::start(BIN, dir.path(), &config);
    let r = s.post(
        "/v1/quality",
        &json!({"request_id": "j1", "response": "Paris is the capital of France.",
                                         "ground_truth": "The capital of France is Paris."}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["has_refusal"], false);
    let avg = eventually(Duration::from_secs(30), || {
        s.get("/v1/summary").body["avg_factual_accuracy"].as_f64()
    });
    assert!((avg - 0.8).abs() < 1e-9, "{avg}");
    let prompt = seen.lock().unwrap()[0].clone();
    assert!(
        prompt.contains("Ground Truth: The capital of France is Paris."),
        "{prompt}"
    );
    assert!(
        prompt.contains("gpt-4o-mini"),
        "the seed's judge model by default: {prompt}"
    );

    let r = s.post(
        "/v1/quality",
        &json!({"request_id": "j2", "response": "banana", "ground_truth": "banana"}),
    );
    assert_eq!(r.status, 200);
    eventually(Duration::from_secs(30), || {
        let m = s.get("/metrics").text;
        m.lines()
            .any(|l| l == "sextant_judge_failures_total 1")
            .then_some(())
    });
    let b = eventually(Duration::from_secs(30), || {
        let b = s.get("/v1/summary").body;
        (b["quality_count"].as_f64() == Some(2.0)).then_some(b)
    });
    assert!(
        (b["avg_factual_accuracy"].as_f64().unwrap() - 0.8).abs() < 1e-9,
        "failed judgement stored no score: {b}"
    );
}
