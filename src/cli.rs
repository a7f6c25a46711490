//! The `allsource` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use allsource_engine::EventStore;
use allsource_engine::wal::{self, SegmentStatus, VerifyReport};
use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use crate::config::{Flags, ServeConfig};
use crate::server::{self, AppState};

/// AllSource: an event store and stream-processing engine.
#[derive(Debug, Parser)]
#[command(name = "allsource", version, about)]
pub struct Cli {
    /// How log lines are written to stderr: text for people, json for collectors.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "ALLSOURCE_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per line, with the request id and other fields as keys.
    Json,
}

impl Cli {
    /// Send log lines to stderr in the chosen format, filtered by `RUST_LOG`
    /// (default `info`).
    pub fn init_logs(&self) {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        match self.log_format {
            LogFormat::Text => builder
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init(),
            LogFormat::Json => builder
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .init(),
        }
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open (or create) the store and run until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Check every WAL segment and print a report; exits non-zero on corruption.
    Verify(VerifyArgs),
}

/// Options of `allsource serve`. Each flag wins over its environment variable,
/// which wins over the configuration file (see `docs/configuration.md`).
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long = "config", value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// Directory holding the store; created if missing [default: ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// HTTP listen address; port 0 picks a free port [default: 127.0.0.1:8080].
    #[arg(long)]
    pub http_addr: Option<SocketAddr>,
    /// Arrow Flight listen address [default: 127.0.0.1:50051].
    #[arg(long)]
    pub flight_addr: Option<SocketAddr>,
    /// When appends are acknowledged: always (after fsync), interval, never.
    #[arg(long)]
    pub durability: Option<String>,
    /// Partition count of a new store (an existing store keeps its own).
    #[arg(long)]
    pub partitions: Option<u16>,
}

/// Options of `allsource verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Directory holding the store.
    #[arg(long, env = "ALLSOURCE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

/// Run the command line; the exit code is non-zero on any failure.
pub fn run(cli: Cli) -> ExitCode {
    let outcome = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Verify(args) => verify(&args),
    };
    match outcome {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = ServeConfig::load(&Flags {
        config_file: args.config_file,
        data_dir: args.data_dir,
        http_addr: args.http_addr,
        flight_addr: args.flight_addr,
        durability: args.durability,
        partitions: args.partitions,
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // Handlers first: a signal that arrives once "serving" is logged must be caught.
        let shutdown = shutdown_signals()?;
        let store = EventStore::open(config.store.clone())?;
        let listener = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("listening on {}", config.http_addr))?;
        let http_addr = listener.local_addr()?;
        let stats = store.stats();
        let state = AppState::new(store.clone(), config.max_body_bytes);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let http = tokio::spawn(server::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        tracing::info!(
            http = %http_addr,
            data_dir = %config.store.data_dir.display(),
            partitions = stats.partitions,
            streams = stats.streams,
            events = stats.events,
            "serving; stop with SIGINT or SIGTERM"
        );
        shutdown.await?;
        tracing::info!("shutting down: no new requests; finishing those in flight");
        let _ = stop.send(());
        http.await??;
        match store.flush().await {
            Ok(report) => tracing::info!(events = report.events, "flushed the buffer to Parquet"),
            Err(e) => {
                tracing::warn!(error = %e, "flushing at shutdown failed; the WAL keeps every event")
            }
        }
        store.close()?;
        tracing::info!("store closed cleanly");
        Ok(ExitCode::SUCCESS)
    })
}

/// Install the SIGTERM and SIGINT handlers now; the future resolves on either.
fn shutdown_signals() -> anyhow::Result<impl std::future::Future<Output = anyhow::Result<()>>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        Ok(())
    })
}

fn verify(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let report = wal::verify(&args.data_dir)?;
    print_report(&report);
    Ok(match report.corruption() {
        Some(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    })
}

fn print_report(report: &VerifyReport) {
    println!(
        "{:<28} {:>10} {:>12} {:>14}  status",
        "segment", "records", "events", "bytes"
    );
    for s in &report.segments {
        let name = s
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let status = match &s.status {
            SegmentStatus::Ok => "ok".to_string(),
            SegmentStatus::TornTail { offset, reason } => {
                format!(
                    "torn tail at byte offset {offset} ({reason}); opening the store truncates it"
                )
            }
            SegmentStatus::Corrupt { offset, reason } => {
                format!("CORRUPT at byte offset {offset}: {reason}")
            }
        };
        println!(
            "{name:<28} {:>10} {:>12} {:>14}  {status}",
            s.records, s.events, s.file_bytes
        );
    }
    println!(
        "{} segments, {} records, {} events",
        report.segments.len(),
        report.records(),
        report.events()
    );
}
