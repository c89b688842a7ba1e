//! The crate dependency direction of docs/architecture.md:
//! `model ← storage ← query ← alert ← server`, `migrations` used by `storage`,
//! nothing depends on `server`, and only `storage` may depend on sled.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// (crate dir, package name, sextant crates it may depend on in [dependencies]).
const ALLOWED: &[(&str, &str, &[&str])] = &[
    ("crates/model", "sextant-model", &[]),
    ("migrations", "sextant-migrations", &[]),
    (
        "crates/storage",
        "sextant-storage",
        &["sextant-model", "sextant-migrations"],
    ),
    (
        "crates/query",
        "sextant-query",
        &["sextant-model", "sextant-storage"],
    ),
    (
        "crates/alert",
        "sextant-alert",
        &["sextant-model", "sextant-storage", "sextant-query"],
    ),
    (
        "crates/server",
        "sextant-server",
        &[
            "sextant-model",
            "sextant-storage",
            "sextant-query",
            "sextant-alert",
        ],
    ),
];

fn deps(manifest: &toml::Table, section: &str) -> Vec<String> {
    manifest
        .get(section)
        .and_then(|d| d.as_table())
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default()
}

fn manifest(dir: &str) -> toml::Table {
    let path = root().join(dir).join("Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn crates_depend_only_downward() {
    for (dir, name, allowed) in ALLOWED {
        let m = manifest(dir);
        assert_eq!(m["package"]["name"].as_str(), Some(*name), "{dir}");
        for dep in deps(&m, "dependencies") {
            if dep.starts_with("sextant-") {
                assert!(
                    allowed.contains(&dep.as_str()),
                    "{name} must not depend on {dep}"
                );
            }
        }
    }
}

#[test]
fn only_storage_touches_sled_and_nothing_depends_on_server() {
    let members = [
        "crates/model",
        "migrations",
        "crates/storage",
        "crates/query",
        "crates/alert",
        "crates/server",
        "tests",
        "benches",
    ];
    for dir in members {
        let m = manifest(dir);
        for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
            let d = deps(&m, section);
            if dir != "crates/storage" {
                assert!(
                    !d.iter().any(|x| x == "sled"),
                    "{dir} [{section}] must not depend on sled"
                );
            }
            if dir != "tests" {
                assert!(
                    !d.iter().any(|x| x == "sextant-server"),
                    "{dir} [{section}] must not depend on sextant-server"
                );
            }
        }
    }
    let model = manifest("crates/model");
    for io in ["tokio", "sled", "axum", "reqwest"] {
        assert!(
            !deps(&model, "dependencies").iter().any(|x| x == io),
            "sextant-model must stay pure: {io}"
        );
    }
}
