//! The `sextant` command line: `serve`, `check`, `import`, `export`.
//!
//! Invariant: settings resolve flag > environment > config file > default;
//! `import` validates every line exactly as `POST /v1/metrics` does, and
//! `export` writes lines `import` reads back unchanged.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use sextant_model::{format_rfc3339_ms, now_ms, parse_timestamp, Batch, LlmCall, TimeRange};
use sextant_storage::{RowFilter, Store};

use crate::config::Config;
use crate::dto::{self, IngestCtx};

/// Sextant: a persistent, restart-safe monitoring backend for LLM applications.
///
/// One binary, one data directory. `sextant serve` runs the HTTP API (the
/// seed's endpoints plus OTLP/HTTP ingest, summaries, drift and alerting).
#[derive(Debug, Parser)]
#[command(name = "sextant", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server until SIGTERM or SIGINT (then shut down cleanly).
    ///
    /// Prints `listening on ADDR` on stdout once the socket is bound.
    Serve(ServeArgs),
    /// Verify the data directory offline: every segment and rollup is decoded
    /// and checksummed. Exits 1 when a problem is found. The server must be stopped.
    Check(StoreArgs),
    /// Import LLM calls from an NDJSON file (one `POST /v1/metrics` body per
    /// line; `-` reads stdin). Invalid lines are reported and skipped (exit 1).
    Import(ImportArgs),
    /// Export LLM calls as NDJSON (readable by `sextant import`). The server must be stopped.
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Configuration file (TOML; see sextant.example.toml).
    #[arg(long, short = 'c', env = "SEXTANT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory [default: ./sextant-data, or [storage] data_dir].
    #[arg(long, env = "SEXTANT_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address to listen on, e.g. 127.0.0.1:7700; port 0 picks a free port
    /// [default: 127.0.0.1:7700, or [server] listen].
    #[arg(long, env = "SEXTANT_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// NDJSON file of calls; `-` for stdin.
    pub file: PathBuf,
    /// Calls appended per batch.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Start (inclusive), RFC 3339 or Unix ms [default: the oldest raw data].
    #[arg(long)]
    pub from: Option<String>,
    /// End (exclusive), RFC 3339 or Unix ms [default: now + 5 minutes].
    #[arg(long)]
    pub to: Option<String>,
    /// Output file [default: stdout].
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

fn load_config(args: &StoreArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(dir) = &args.data_dir {
        config.storage.data_dir = dir.clone();
    }
    Ok(config)
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if config.log.format == "json" {
        builder.json().try_init()
    } else {
        builder.with_ansi(false).try_init()
    };
}

/// Opens the store for an offline command (no background maintenance).
fn open_offline(config: &Config) -> anyhow::Result<Store> {
    let mut sc = config.store_config()?;
    sc.background_maintenance = false;
    let dir = &config.storage.data_dir;
    Store::open(dir, sc)
        .map_err(|e| anyhow::anyhow!("{e} (is a server running on {}?)", dir.display()))
}

/// Runs the command line; the process exit code.
pub fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sextant: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            let mut config = load_config(&args.store)?;
            if let Some(l) = args.listen {
                config.server.listen = l;
            }
            config.check()?;
            init_logging(&config);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(crate::app::serve(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check(args) => {
            let config = load_config(&args)?;
            init_logging(&config);
            let store = open_offline(&config)?;
            let report = store.verify()?;
            store.close()?;
            println!(
                "checked {} values in {}",
                report.checked,
                config.storage.data_dir.display()
            );
            for (place, problem) in &report.problems {
                println!("PROBLEM {place}: {problem}");
            }
            if report.problems.is_empty() {
                println!("ok");
                Ok(ExitCode::SUCCESS)
            } else {
                println!("{} problem(s)", report.problems.len());
                Ok(ExitCode::from(1))
            }
        }
        Command::Import(args) => import(args),
        Command::Export(args) => export(args),
    }
}

fn import(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.store)?;
    init_logging(&config);
    let prices = config.price_table()?;
    let limits = config.limits();
    let (reader, total): (Box<dyn BufRead>, Option<u64>) = if args.file.as_os_str() == "-" {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let f = std::fs::File::open(&args.file)
            .map_err(|e| anyhow::anyhow!("opening {}: {e}", args.file.display()))?;
        let len = f.metadata().ok().map(|m| m.len());
        (Box::new(std::io::BufReader::new(f)), len)
    };
    let bar = match total {
        Some(t) => indicatif::ProgressBar::new(t),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
    ) {
        bar.set_style(style);
    }
    let store = open_offline(&config)?;
    let batch_size = args.batch_size.clamp(1, 100_000);
    let mut pending = Vec::with_capacity(batch_size);
    let (mut imported, mut invalid) = (0u64, 0u64);
    for (n, line) in reader.split(b'\n').enumerate() {
        let line = line?;
        bar.inc(line.len() as u64 + 1);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let ctx = IngestCtx {
            now_ms: now_ms(),
            limits: &limits,
            prices: &prices,
        };
        match dto::parse_call_item(&line).and_then(|item| dto::call_from_item(&item, ctx)) {
            Ok(call) => pending.push(call),
            Err(e) => {
                invalid += 1;
                bar.suspend(|| eprintln!("line {}: {}", n + 1, e.body()["error"]));
            }
        }
        if pending.len() >= batch_size {
            imported += pending.len() as u64;
            store.append(Batch::from_calls(std::mem::take(&mut pending)))?;
            bar.set_message(format!("{imported} calls"));
        }
    }
    if !pending.is_empty() {
        imported += pending.len() as u64;
        store.append(Batch::from_calls(pending))?;
    }
    store.close()?;
    bar.finish_with_message(format!("{imported} calls"));
    eprintln!("imported {imported} calls; {invalid} invalid line(s) skipped");
    Ok(if invalid == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// One call as an NDJSON line in `POST /v1/metrics` shape (timestamp as Unix ms).
pub(crate) fn call_json(c: &LlmCall) -> serde_json::Value {
    serde_json::json!({
        "request_id": c.request_id,
        "timestamp": c.timestamp_ms,
        "model": c.model,
        "provider": c.provider,
        "endpoint": c.endpoint,
        "latency_ms": c.latency_ms,
        "time_to_first_token_ms": c.time_to_first_token_ms,
        "prompt_tokens": c.prompt_tokens,
        "completion_tokens": c.completion_tokens,
        "total_tokens": c.total_tokens,
        "cached_input_tokens": c.cached_input_tokens,
        "reasoning_tokens": c.reasoning_tokens,
        "cost_usd": c.cost_usd,
        "finish_reason": c.finish_reason,
        "error": c.error,
        "user_id": c.user_id,
        "session_id": c.session_id,
        "trace_id": c.trace_id,
        "span_id": c.span_id,
        "tags": c.tags,
    })
}

fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.store)?;
    init_logging(&config);
    let parse = |name: &str, v: &Option<String>| -> anyhow::Result<Option<i64>> {
        v.as_deref()
            .map(|s| {
                parse_timestamp(s)
                    .ok_or_else(|| anyhow::anyhow!("--{name} {s:?} is not RFC 3339 or Unix ms"))
            })
            .transpose()
    };
    let from = parse("from", &args.from)?.unwrap_or(i64::MIN / 2);
    let to = parse("to", &args.to)?.unwrap_or(now_ms() + 300_000);
    if from >= to {
        anyhow::bail!("--from must be before --to");
    }
    let store = open_offline(&config)?;
    let out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(
            std::fs::File::create(p)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", p.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::new(out);
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    let mut written = 0u64;
    let mut io_error = None;
    store.scan_calls(TimeRange::new(from, to), &RowFilter::default(), &mut |c| {
        if io_error.is_some() {
            return;
        }
        let line = call_json(c).to_string();
        if let Err(e) = writeln!(out, "{line}") {
            io_error = Some(e);
            return;
        }
        written += 1;
        if written % 10_000 == 0 {
            bar.set_message(format!("{written} calls"));
            bar.tick();
        }
    })?;
    if let Some(e) = io_error {
        return Err(e.into());
    }
    out.flush()?;
    store.close()?;
    bar.finish_and_clear();
    eprintln!(
        "exported {written} calls from {} to {}",
        format_rfc3339_ms(from.max(0)),
        format_rfc3339_ms(to)
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn help_is_complete_and_consistent() {
        Cli::command().debug_assert();
        let mut cmd = Cli::command();
        let help = cmd.render_long_help().to_string();
        for sub in ["serve", "check", "import", "export"] {
            assert!(help.contains(sub), "{help}");
        }
        let serve = Cli::command()
            .find_subcommand_mut("serve")
            .unwrap()
            .render_long_help()
            .to_string();
        for flag in [
            "--config",
            "--data-dir",
            "--listen",
            "SEXTANT_LISTEN",
            "SEXTANT_DATA_DIR",
        ] {
            assert!(serve.contains(flag), "{serve}");
        }
    }

    #[test]
    fn flags_parse_for_every_command() {
        let c = Cli::try_parse_from([
            "sextant",
            "serve",
            "--data-dir",
            "/tmp/x",
            "--listen",
            "127.0.0.1:0",
        ])
        .unwrap();
        match c.command {
            Command::Serve(a) => {
                assert_eq!(a.listen.as_deref(), Some("127.0.0.1:0"));
                assert_eq!(a.store.data_dir, Some(PathBuf::from("/tmp/x")));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            Cli::try_parse_from(["sextant", "export", "--from", "2025-01-01T00:00:00Z"]).is_ok()
        );
        assert!(Cli::try_parse_from(["sextant", "import", "calls.ndjson"]).is_ok());
        assert!(
            Cli::try_parse_from(["sextant", "import"]).is_err(),
            "FILE is required"
        );
        assert!(Cli::try_parse_from(["sextant", "bogus"]).is_err());
    }

    #[test]
    fn exported_lines_import_back_to_the_same_call() {
        let call = LlmCall {
            request_id: "r".into(),
            timestamp_ms: 1_799_999_000_000,
            model: "gpt-4o".into(),
            provider: "openai".into(),
            endpoint: "chat".into(),
            latency_ms: 12.5,
            time_to_first_token_ms: Some(3.0),
            prompt_tokens: 10,
            completion_tokens: 4,
            total_tokens: 14,
            cached_input_tokens: 2,
            reasoning_tokens: 1,
            cost_usd: Some(0.25),
            finish_reason: "stop".into(),
            error: Some("x".into()),
            user_id: Some("u".into()),
            session_id: Some("s".into()),
            trace_id: Some("t".into()),
            span_id: Some("sp".into()),
            tags: [("a".to_string(), "b".to_string())].into(),
        };
        let (limits, prices) = (
            sextant_model::Limits::default(),
            sextant_model::PriceTable::default(),
        );
        let ctx = IngestCtx {
            now_ms: 1_800_000_000_000,
            limits: &limits,
            prices: &prices,
        };
        let line = serde_json::to_vec(&call_json(&call)).unwrap();
        let back = dto::call_from_item(&dto::parse_call_item(&line).unwrap(), ctx).unwrap();
        assert_eq!(back, call);
    }
}
