//! The `allsource` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use allsource_engine::EventStore;
use allsource_engine::wal::{self, SegmentStatus, VerifyReport};
use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use crate::config::{Flags, ServeConfig};
use crate::remote::Remote;
use crate::server::{self, AppState};
use crate::transfer::{self, FileFormat};
use allsource_operators::Pipelines;

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
    /// Run an EventQL query on a running server and print the result as a table.
    Query(QueryArgs),
    /// Append the events of a JSONL, CSV or Parquet file through a running server.
    Import(ImportArgs),
    /// Write a query's result to a Parquet, JSONL or CSV file.
    Export(ExportArgs),
}

/// Where the server is, for the commands that work through it.
#[derive(Debug, clap::Args)]
pub struct ServerArg {
    /// Base URL of a running `allsource serve`.
    #[arg(
        long,
        env = "ALLSOURCE_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
}

/// Options of `allsource query`.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// The EventQL statement, e.g. "SELECT event_type, count(*) FROM events GROUP BY 1".
    pub sql: String,
    /// The server to work through.
    #[command(flatten)]
    pub server: ServerArg,
}

/// Options of `allsource import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The file: .jsonl, .csv or .parquet.
    pub file: PathBuf,
    /// The file's format [default: from its extension].
    #[arg(long, value_enum)]
    pub format: Option<FileFormat>,
    /// Events per request; each request is atomic.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    /// The server to work through.
    #[command(flatten)]
    pub server: ServerArg,
}

/// Options of `allsource export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The EventQL statement whose result is written.
    #[arg(long)]
    pub sql: String,
    /// The output format [default: from the output file's extension].
    #[arg(long, value_enum)]
    pub format: Option<FileFormat>,
    /// The output file; replaced only once the whole result is written.
    #[arg(short, long)]
    pub output: PathBuf,
    /// The server to work through.
    #[command(flatten)]
    pub server: ServerArg,
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
        Command::Query(args) => query(&args),
        Command::Import(args) => import(&args),
        Command::Export(args) => export(&args),
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
        let flight_listener = TcpListener::bind(config.flight_addr)
            .await
            .with_context(|| format!("listening on {}", config.flight_addr))?;
        let flight_addr = flight_listener.local_addr()?;
        let stats = store.stats();
        let state = AppState::new(store.clone(), config.max_body_bytes)
            .with_query_limits(config.query_limits)
            .with_graphql_limits(config.graphql_limits.clone());
        let pipelines = Pipelines::open(store.clone(), state.eventql().clone())
            .await
            .context("starting the stored pipelines")?;
        let pipeline_count = pipelines.count();
        let state = state.with_pipelines(Arc::clone(&pipelines));
        let eventql = state.eventql().clone();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut http_stopped = stopped.clone();
        let http = tokio::spawn(server::serve(listener, state, async move {
            let _ = http_stopped.wait_for(|stop| *stop).await;
        }));
        let mut flight_stopped = stopped;
        let flight = tokio::spawn(allsource_flight::serve(
            flight_listener,
            store.clone(),
            eventql,
            allsource_flight::Auth::tokens(config.flight_tokens.clone()),
            Some(Arc::clone(&pipelines)),
            async move {
                let _ = flight_stopped.wait_for(|stop| *stop).await;
            },
        ));
        tracing::info!(
            http = %http_addr,
            flight = %flight_addr,
            flight_auth = !config.flight_tokens.is_empty(),
            data_dir = %config.store.data_dir.display(),
            partitions = stats.partitions,
            streams = stats.streams,
            events = stats.events,
            pipelines = pipeline_count,
            "serving; stop with SIGINT or SIGTERM"
        );
        shutdown.await?;
        tracing::info!("shutting down: no new requests; finishing those in flight");
        let _ = stop.send(true);
        http.await??;
        flight.await?.context("serving Flight")?;
        pipelines.stop().await;
        tracing::info!("pipelines checkpointed and stopped");
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

fn query(args: &QueryArgs) -> anyhow::Result<ExitCode> {
    let remote = Remote::new(&args.server.server)?;
    let batches = remote
        .query(&args.sql)?
        .collect::<Result<Vec<_>, _>>()
        .context("reading the result from the server")?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);
    println!("({rows} row{})", if rows == 1 { "" } else { "s" });
    Ok(ExitCode::SUCCESS)
}

fn import(args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let remote = Remote::new(&args.server.server)?;
    let format = match args.format {
        Some(format) => format,
        None => FileFormat::of_path(&args.file)?,
    };
    let started = std::time::Instant::now();
    let report = transfer::import(&remote, &args.file, format, args.batch_size)?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "imported {} events in {} batches from {} in {seconds:.2} s ({:.0} events/s)",
        report.events,
        report.batches,
        args.file.display(),
        report.events as f64 / seconds.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}

fn export(args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let remote = Remote::new(&args.server.server)?;
    let format = match args.format {
        Some(format) => format,
        None => FileFormat::of_path(&args.output)?,
    };
    let rows = transfer::export(&remote, &args.sql, format, &args.output)?;
    println!("wrote {rows} rows to {}", args.output.display());
    Ok(ExitCode::SUCCESS)
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
