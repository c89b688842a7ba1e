//! The configuration file (`sextant.toml`): one typed struct per section.
//!
//! Invariants: every key has a default written in its doc comment (and in
//! `sextant.example.toml`, which a test parses); unknown keys are errors
//! (`deny_unknown_fields` on every section). Precedence, highest first:
//! command-line flag, environment variable, file, default.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use sextant_alert::{AlertConfig, NotifierConfig};
use sextant_model::{parse_timestamp, Dim, Limits, Price, PriceTable, DAY_MS};
use sextant_query::{DriftConfig, QualityConfig};
use sextant_storage::{Durability, Retention, StoreConfig};

/// The whole file.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerSection,
    pub storage: StorageSection,
    pub alerting: AlertConfig,
    /// `[[notifier]]` entries.
    pub notifier: Vec<NotifierConfig>,
    pub auth: AuthSection,
    pub pricing: PricingSection,
    pub quality: QualitySection,
    pub drift: DriftSection,
    pub log: LogSection,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// Address to bind. Default `127.0.0.1:7700`. `--listen`, `SEXTANT_LISTEN`.
    pub listen: String,
    /// Largest request body accepted (after gzip decoding too), bytes. Default 16,777,216.
    pub max_body_bytes: usize,
    /// Most records in one `/v1/metrics/batch` or `/v1/spans` request. Default 10,000.
    pub max_batch_items: usize,
    /// How long shutdown waits for in-flight requests and background judge calls, seconds. Default 30.
    pub shutdown_timeout_seconds: u64,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: "127.0.0.1:7700".into(),
            max_body_bytes: 16 * 1024 * 1024,
            max_batch_items: 10_000,
            shutdown_timeout_seconds: 30,
        }
    }
}

/// `[storage]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSection {
    /// Data directory. Default `./sextant-data`. `--data-dir`, `SEXTANT_DATA_DIR`.
    pub data_dir: PathBuf,
    /// `"batch"` (fsync before acknowledging; default) or `"interval"`.
    pub durability: String,
    /// With `durability = "interval"`: fsync period, ms (the loss window). Default 100.
    pub interval_ms: u64,
    /// Dimensions rollups are grouped by; fixed when the store is created.
    /// Default `["model", "endpoint"]`.
    pub rollup_dims: Vec<String>,
    /// Seal the head into a segment at this many events. Default 200,000.
    pub seal_max_events: usize,
    /// Seal the head when its oldest event is this old, seconds. Default 60.
    pub seal_max_age_seconds: u64,
    /// Minute rollups of this most recent window (ending at the newest
    /// stored minute) are also held in memory and read from there, seconds.
    /// 0 (off) or at least 60. Default 90,000 (25 hours).
    pub hot_minutes_window_seconds: u64,
    /// Most bytes of minute rollups held in memory; the oldest minutes
    /// leave first. 0 = off. Default 134,217,728 (128 MiB).
    pub hot_minutes_max_bytes: u64,
    pub retention: RetentionSection,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            data_dir: PathBuf::from("./sextant-data"),
            durability: "batch".into(),
            interval_ms: 100,
            rollup_dims: vec!["model".into(), "endpoint".into()],
            seal_max_events: 200_000,
            seal_max_age_seconds: 60,
            hot_minutes_window_seconds: 90_000,
            hot_minutes_max_bytes: 128 << 20,
            retention: RetentionSection::default(),
        }
    }
}

/// `[storage.retention]`: days per tier; 0 = keep forever.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSection {
    /// Raw calls, quality and feedback rows. Default 30.
    pub raw_days: u64,
    /// Minute rollups. Default 30.
    pub minute_days: u64,
    /// Hour rollups. Default 400.
    pub hour_days: u64,
    /// Day rollups. Default 0 (forever). Days are kept until their week is
    /// rolled up, so values under 8 keep them up to ~7 days longer.
    pub day_days: u64,
    /// Week rollups. Default 0 (forever).
    pub week_days: u64,
    /// Traces. Default 30.
    pub traces_days: u64,
}

impl Default for RetentionSection {
    fn default() -> Self {
        RetentionSection {
            raw_days: 30,
            minute_days: 30,
            hour_days: 400,
            day_days: 0,
            week_days: 0,
            traces_days: 30,
        }
    }
}

/// `[auth]`: API keys per scope. When every list is empty, no key is needed;
/// once any key is set, every endpoint but `/health` needs a key of its
/// scope (admin keys are accepted everywhere).
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// May ingest (`POST /v1/metrics`, `/v1/traces`, …). Default `[]`.
    pub ingest_keys: Vec<String>,
    /// May read summaries, traces, alerts, `/metrics`. Default `[]`.
    pub read_keys: Vec<String>,
    /// Everything, including rules, silences and baselines. Default `[]`.
    pub admin_keys: Vec<String>,
}

/// `[pricing]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PricingSection {
    /// Start from the built-in price table. Default true.
    pub use_builtin: bool,
    /// `[[pricing.price]]` entries; an entry with the model and `valid_from`
    /// of a built-in price replaces it. Default none.
    pub price: Vec<PriceEntry>,
}

impl Default for PricingSection {
    fn default() -> Self {
        PricingSection {
            use_builtin: true,
            price: Vec::new(),
        }
    }
}

/// One `[[pricing.price]]`. Prices are US dollars per million tokens.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceEntry {
    /// Model name; also matches longer names by prefix (`gpt-4o` prices `gpt-4o-2024-08-06`).
    pub model: String,
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    /// Default: the input price.
    #[serde(default)]
    pub cached_input_per_mtok: Option<f64>,
    /// Default: the output price.
    #[serde(default)]
    pub reasoning_per_mtok: Option<f64>,
    /// `YYYY-MM-DD` or RFC 3339 (UTC); the price applies to calls from then on.
    /// Default: since forever.
    #[serde(default)]
    pub valid_from: Option<String>,
}

/// `[quality]`: the seed's pattern lists (regular expressions, matched
/// case-insensitively). An absent list keeps the seed's default.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct QualitySection {
    pub refusal_patterns: Option<Vec<String>>,
    pub hedging_patterns: Option<Vec<String>>,
    pub positive_words: Option<Vec<String>>,
    pub negative_words: Option<Vec<String>>,
    /// Optional LLM judge for factual accuracy.
    pub judge: Option<JudgeSection>,
}

/// `[quality.judge]`: an OpenAI-compatible chat-completions endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeSection {
    /// Full URL, e.g. `https://api.openai.com/v1/chat/completions`.
    pub url: String,
    /// Default `gpt-4o-mini` (the seed's).
    #[serde(default = "default_judge_model")]
    pub model: String,
    /// Sent as `Authorization: Bearer …`; never logged. Default none.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Per-call timeout, seconds. Default 30.
    #[serde(default = "default_judge_timeout")]
    pub timeout_seconds: u64,
    /// Judge calls in flight at once; more wait. Default 4.
    #[serde(default = "default_judge_concurrency")]
    pub max_concurrent: usize,
}

fn default_judge_model() -> String {
    "gpt-4o-mini".into()
}
fn default_judge_timeout() -> u64 {
    30
}
fn default_judge_concurrency() -> usize {
    4
}

/// `[drift]`: default thresholds of `GET /v1/drift` (the seed's).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriftSection {
    /// Default 0.10.
    pub refusal_rate_abs: f64,
    /// Default 0.30.
    pub length_rel: f64,
    /// Default 0.15.
    pub hedging_rate_abs: f64,
    /// Default 0.05.
    pub error_rate_abs: f64,
    /// Default 0.2.
    pub latency_ks: f64,
    /// Default 0.30.
    pub tokens_rel: f64,
    /// Default 0.30.
    pub cost_rel: f64,
    /// Default 0.5.
    pub rating_abs: f64,
    /// Default 0.05.
    pub p_value: f64,
    /// Default 10.
    pub min_samples: u64,
}

impl Default for DriftSection {
    fn default() -> Self {
        let d = DriftConfig::default();
        DriftSection {
            refusal_rate_abs: d.refusal_rate_abs,
            length_rel: d.length_rel,
            hedging_rate_abs: d.hedging_rate_abs,
            error_rate_abs: d.error_rate_abs,
            latency_ks: d.latency_ks,
            tokens_rel: d.tokens_rel,
            cost_rel: d.cost_rel,
            rating_abs: d.rating_abs,
            p_value: d.p_value,
            min_samples: d.min_samples,
        }
    }
}

impl DriftSection {
    pub(crate) fn to_drift_config(&self) -> DriftConfig {
        DriftConfig {
            refusal_rate_abs: self.refusal_rate_abs,
            length_rel: self.length_rel,
            hedging_rate_abs: self.hedging_rate_abs,
            error_rate_abs: self.error_rate_abs,
            latency_ks: self.latency_ks,
            tokens_rel: self.tokens_rel,
            cost_rel: self.cost_rel,
            rating_abs: self.rating_abs,
            p_value: self.p_value,
            min_samples: self.min_samples,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// A `tracing` filter: `error`, `warn`, `info`, `debug`, `trace`, or
    /// directives like `sextant_server=debug,info`. Default `info`.
    /// `RUST_LOG`, when set, wins.
    pub level: String,
    /// `"text"` or `"json"`. Default `"text"`.
    pub format: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

/// A configuration error, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid {key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

impl Config {
    /// Parses TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        config.check()?;
        Ok(config)
    }

    /// Reads and parses a file.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Cross-field checks serde cannot express.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        self.store_config()?;
        self.price_table()?;
        if self.server.max_body_bytes == 0 {
            return Err(invalid("server.max_body_bytes", "must be positive"));
        }
        if self.server.max_batch_items == 0 {
            return Err(invalid("server.max_batch_items", "must be positive"));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(invalid("log.format", "must be \"text\" or \"json\""));
        }
        if let Some(j) = &self.quality.judge {
            if !(j.url.starts_with("http://") || j.url.starts_with("https://")) {
                return Err(invalid("quality.judge.url", "must be an http(s) URL"));
            }
            if j.max_concurrent == 0 {
                return Err(invalid("quality.judge.max_concurrent", "must be positive"));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for n in &self.notifier {
            if !names.insert(n.name.as_str()) {
                return Err(invalid(
                    "notifier.name",
                    format!("{} is defined twice", n.name),
                ));
            }
        }
        for (key, keys) in [
            ("auth.ingest_keys", &self.auth.ingest_keys),
            ("auth.read_keys", &self.auth.read_keys),
            ("auth.admin_keys", &self.auth.admin_keys),
        ] {
            if keys.iter().any(|k| k.len() < 8) {
                return Err(invalid(key, "keys must be at least 8 characters"));
            }
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server
            .listen
            .parse()
            .map_err(|e| invalid("server.listen", format!("{:?}: {e}", self.server.listen)))
    }

    pub fn store_config(&self) -> Result<StoreConfig, ConfigError> {
        let s = &self.storage;
        let durability = match s.durability.as_str() {
            "batch" => Durability::Batch,
            "interval" => {
                if s.interval_ms == 0 {
                    return Err(invalid("storage.interval_ms", "must be positive"));
                }
                Durability::Interval {
                    interval_ms: s.interval_ms,
                }
            }
            other => {
                return Err(invalid(
                    "storage.durability",
                    format!("{other:?}: must be \"batch\" or \"interval\""),
                ))
            }
        };
        let mut dims = Vec::new();
        for d in &s.rollup_dims {
            let dim = Dim::parse(d).ok_or_else(|| {
                invalid("storage.rollup_dims", format!("{d:?} is not a dimension"))
            })?;
            if dims.contains(&dim) {
                return Err(invalid(
                    "storage.rollup_dims",
                    format!("{d:?} is listed twice"),
                ));
            }
            dims.push(dim);
        }
        let days = |d: u64| -> Option<i64> {
            if d == 0 {
                None
            } else {
                Some((d.min(1_000_000) as i64) * DAY_MS)
            }
        };
        let r = &s.retention;
        let mut config = StoreConfig {
            durability,
            rollup_dims: dims,
            retention: Retention {
                raw_ms: days(r.raw_days),
                minute_ms: days(r.minute_days),
                hour_ms: days(r.hour_days),
                day_ms: days(r.day_days),
                week_ms: days(r.week_days),
                traces_ms: days(r.traces_days),
            },
            ..StoreConfig::default()
        };
        if s.seal_max_events == 0 {
            return Err(invalid("storage.seal_max_events", "must be positive"));
        }
        config.seal_max_events = s.seal_max_events;
        config.seal_max_age_ms = (s.seal_max_age_seconds.min(86_400 * 365) as i64) * 1000;
        let window = s.hot_minutes_window_seconds;
        if window != 0 && !(60..=86_400 * 366).contains(&window) {
            return Err(invalid(
                "storage.hot_minutes_window_seconds",
                "must be 0 (off) or between 60 and 31,622,400 (366 days)",
            ));
        }
        config.hot_minutes_window_ms = window as i64 * 1000;
        config.hot_minutes_max_bytes = s.hot_minutes_max_bytes;
        Ok(config)
    }

    /// Input limits: timestamps older than every retention tier are rejected.
    pub fn limits(&self) -> Limits {
        let mut limits = Limits::default();
        let r = &self.storage.retention;
        let tiers = [
            r.raw_days,
            r.minute_days,
            r.hour_days,
            r.day_days,
            r.week_days,
        ];
        if tiers.iter().all(|d| *d > 0) {
            let max_days = tiers.iter().copied().max().unwrap_or(0).min(1_000_000);
            limits.max_age_ms = max_days as i64 * DAY_MS;
        }
        limits
    }

    pub fn price_table(&self) -> Result<PriceTable, ConfigError> {
        let mut overrides = Vec::new();
        for p in &self.pricing.price {
            if p.model.is_empty() {
                return Err(invalid("pricing.price.model", "must not be empty"));
            }
            let prices = [
                Some(p.input_per_mtok),
                Some(p.output_per_mtok),
                p.cached_input_per_mtok,
                p.reasoning_per_mtok,
            ];
            if prices.iter().flatten().any(|v| !v.is_finite() || *v < 0.0) {
                return Err(invalid(
                    "pricing.price",
                    format!("{}: prices must be finite and not negative", p.model),
                ));
            }
            let valid_from_ms = match &p.valid_from {
                None => 0,
                Some(s) => parse_date(s).ok_or_else(|| {
                    invalid(
                        "pricing.price.valid_from",
                        format!("{s:?} is not YYYY-MM-DD or RFC 3339"),
                    )
                })?,
            };
            overrides.push(Price {
                model: p.model.clone(),
                input_per_mtok: p.input_per_mtok,
                output_per_mtok: p.output_per_mtok,
                cached_input_per_mtok: p.cached_input_per_mtok,
                reasoning_per_mtok: p.reasoning_per_mtok,
                valid_from_ms,
            });
        }
        let base = if self.pricing.use_builtin {
            PriceTable::default()
        } else {
            PriceTable::new(Vec::new())
        };
        Ok(base.with_overrides(overrides))
    }

    pub fn quality_config(&self) -> QualityConfig {
        let d = QualityConfig::default();
        let q = &self.quality;
        QualityConfig {
            refusal_patterns: q.refusal_patterns.clone().unwrap_or(d.refusal_patterns),
            hedging_patterns: q.hedging_patterns.clone().unwrap_or(d.hedging_patterns),
            positive_words: q.positive_words.clone().unwrap_or(d.positive_words),
            negative_words: q.negative_words.clone().unwrap_or(d.negative_words),
        }
    }
}

/// `YYYY-MM-DD` (midnight UTC) or RFC 3339 / Unix ms.
fn parse_date(s: &str) -> Option<i64> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d") {
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis());
    }
    parse_timestamp(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_yields_documented_defaults() {
        let c = Config::parse("", "test").unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:7700");
        assert_eq!(c.storage.data_dir, PathBuf::from("./sextant-data"));
        assert_eq!(c.store_config().unwrap().durability, Durability::Batch);
        assert_eq!(c.alerting.eval_interval_seconds, 15);
        assert_eq!(c.store_config().unwrap().retention, Retention::default());
    }

    const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sextant.example.toml");

    #[test]
    fn example_file_parses_and_matches_defaults() {
        let text = std::fs::read_to_string(EXAMPLE).unwrap();
        let c = Config::parse(&text, EXAMPLE).unwrap();
        let d = Config::default();
        assert_eq!(c.server, d.server);
        assert_eq!(c.storage, d.storage);
        assert_eq!(c.alerting, d.alerting);
        assert_eq!(c.auth, d.auth);
        assert_eq!(c.drift, d.drift);
        assert_eq!(c.log, d.log);
        assert_eq!(c.quality_config(), QualityConfig::default());
        assert_eq!(c.quality.judge, None);
        assert_eq!(c.notifier.len(), 1, "the example enables one notifier");
        assert_eq!(
            c.pricing.price.len(),
            1,
            "the example documents one price override"
        );
    }

    #[test]
    fn example_file_optional_lines_parse_when_enabled() {
        let text = std::fs::read_to_string(EXAMPLE).unwrap();
        let enabled: String = text
            .lines()
            .map(|l| l.strip_prefix("#= ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let c = Config::parse(&enabled, EXAMPLE).unwrap();
        let judge = c.quality.judge.expect("the example documents the judge");
        assert_eq!(judge.model, "gpt-4o-mini");
        assert_eq!(c.notifier.len(), 2);
        assert_eq!(c.alerting.restart_grace_seconds, Some(15));
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        for text in [
            "[server]\nlisten_addr = \"x\"",
            "[storage]\ndata = \"x\"",
            "[bogus]\n",
            "[alerting]\neval_interval = 3",
            "[[notifier]]\nname=\"a\"\nkind=\"webhook\"\nurll=\"x\"",
            "[storage.retention]\nraw = 3",
        ] {
            let e = Config::parse(text, "t").unwrap_err().to_string();
            assert!(e.contains("unknown field"), "{text}: {e}");
        }
    }

    #[test]
    fn invalid_values_name_their_key() {
        let cases = [
            ("[server]\nlisten = \"nope\"", "server.listen"),
            ("[storage]\ndurability = \"sometimes\"", "storage.durability"),
            ("[storage]\nrollup_dims = [\"colour\"]", "storage.rollup_dims"),
            (
                "[storage]\nhot_minutes_window_seconds = 59",
                "storage.hot_minutes_window_seconds",
            ),
            (
                "[storage]\nhot_minutes_window_seconds = 40000000",
                "storage.hot_minutes_window_seconds",
            ),
            ("[log]\nformat = \"xml\"", "log.format"),
            ("[auth]\nadmin_keys = [\"short\"]", "auth.admin_keys"),
            (
                "[[pricing.price]]\nmodel=\"m\"\ninput_per_mtok=-1.0\noutput_per_mtok=1.0",
                "pricing.price",
            ),
            (
                "[[pricing.price]]\nmodel=\"m\"\ninput_per_mtok=1.0\noutput_per_mtok=1.0\nvalid_from=\"soon\"",
                "pricing.price.valid_from",
            ),
        ];
        for (text, key) in cases {
            let e = Config::parse(text, "t").unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn price_overrides_replace_and_add_with_dates() {
        let c = Config::parse(
            "[[pricing.price]]\nmodel=\"my-llm\"\ninput_per_mtok=1.0\noutput_per_mtok=2.0\nvalid_from=\"2025-01-01\"",
            "t",
        )
        .unwrap();
        let t = c.price_table().unwrap();
        assert!(t.lookup("my-llm", 1_735_689_600_000).is_some());
        assert!(t.lookup("my-llm", 1_735_689_599_999).is_none());
        assert!(t.lookup("gpt-4o", 0).is_some());
    }

    #[test]
    fn hot_minutes_settings_reach_the_store_config_and_zero_turns_the_mirror_off() {
        let d = Config::default().store_config().unwrap();
        let s = StoreConfig::default();
        assert_eq!(
            (d.hot_minutes_window_ms, d.hot_minutes_max_bytes),
            (s.hot_minutes_window_ms, s.hot_minutes_max_bytes)
        );
        let c = Config::parse(
            "[storage]\nhot_minutes_window_seconds = 3600\nhot_minutes_max_bytes = 1000",
            "t",
        )
        .unwrap()
        .store_config()
        .unwrap();
        assert_eq!(
            (c.hot_minutes_window_ms, c.hot_minutes_max_bytes),
            (3_600_000, 1000)
        );
        let off = Config::parse("[storage]\nhot_minutes_window_seconds = 0", "t")
            .unwrap()
            .store_config()
            .unwrap();
        assert_eq!(off.hot_minutes_window_ms, 0);
    }

    #[test]
    fn retention_age_limit_follows_the_longest_tier() {
        let c = Config::default();
        assert_eq!(
            c.limits().max_age_ms,
            Limits::default().max_age_ms,
            "day tier is forever"
        );
        // Weeks are kept forever by default, so a finite day tier alone does not limit.
        let c = Config::parse("[storage.retention]\nday_days = 800", "t").unwrap();
        assert_eq!(c.limits().max_age_ms, Limits::default().max_age_ms);
        let c = Config::parse("[storage.retention]\nday_days = 800\nweek_days = 900", "t").unwrap();
        assert_eq!(c.limits().max_age_ms, 900 * DAY_MS);
        assert_eq!(
            c.store_config().unwrap().retention.week_ms,
            Some(900 * DAY_MS)
        );
    }
}
