//! The command line: --help, import/export round trip, offline check.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_sextant-under-test");

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("SEXTANT_DATA_DIR")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_every_command_and_serve_flag() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for c in ["serve", "check", "import", "export"] {
        assert!(out.contains(c), "{out}");
    }
    let (code, out, _) = run(&["serve", "--help"]);
    assert_eq!(code, 0);
    for f in [
        "--config",
        "--data-dir",
        "--listen",
        "SEXTANT_DATA_DIR",
        "SEXTANT_LISTEN",
    ] {
        assert!(out.contains(f), "{out}");
    }
    let (code, _, err) = run(&["serve", "--config", "/nonexistent/sextant.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/sextant.toml"), "{err}");
}

#[test]
fn import_then_export_round_trips_calls_and_check_passes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let now = sextant_tests::now_ms();
    let mut lines = String::new();
    for i in 0..3 {
        lines.push_str(&serde_json::json!({"request_id": format!("imp-{i}"), "timestamp": now - 60_000 * i,
            "model": "gpt-4o", "latency_ms": 10.0 * i as f64, "prompt_tokens": 5, "completion_tokens": 7,
            "finish_reason": "stop", "tags": {"src": "import"}}).to_string());
        lines.push('\n');
    }
    lines.push_str("{\"request_id\": \"broken\"}\n");
    let file = dir.path().join("calls.ndjson");
    std::fs::write(&file, lines).unwrap();
    let (code, _, err) = run(&["import", "--data-dir", data, file.to_str().unwrap()]);
    assert_eq!(code, 1, "one invalid line: {err}");
    assert!(err.contains("imported 3 calls"), "{err}");
    assert!(err.contains("line 4"), "{err}");
    let out_file = dir.path().join("out.ndjson");
    let (code, _, err) = run(&[
        "export",
        "--data-dir",
        data,
        "--output",
        out_file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let exported = std::fs::read_to_string(&out_file).unwrap();
    let mut ids: Vec<String> = exported
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["request_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, ["imp-0", "imp-1", "imp-2"]);
    // Re-importing the export into a second store gives the same export.
    let data2 = dir.path().join("data2");
    let (code, _, err) = run(&[
        "import",
        "--data-dir",
        data2.to_str().unwrap(),
        out_file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let out2 = dir.path().join("out2.ndjson");
    run(&[
        "export",
        "--data-dir",
        data2.to_str().unwrap(),
        "-o",
        out2.to_str().unwrap(),
    ]);
    let mut a: Vec<_> = exported.lines().collect();
    let text2 = std::fs::read_to_string(&out2).unwrap();
    let mut b: Vec<_> = text2.lines().collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    let (code, out, err) = run(&["check", "--data-dir", data]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok"), "{out}");
}
