//! The `allsource` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use allsource_engine::wal::{self, SegmentStatus, VerifyReport};
use allsource_engine::{Durability, EventStore, StoreConfig};
use clap::{Parser, Subcommand};

/// AllSource: an event store and stream-processing engine.
#[derive(Debug, Parser)]
#[command(name = "allsource", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open (or create) the store and run until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Check every WAL segment and print a report; exits non-zero on corruption.
    Verify(VerifyArgs),
}

/// Options of `allsource serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Directory holding the store; created if missing.
    #[arg(long, env = "ALLSOURCE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// When appends are acknowledged: always (after fsync), interval, never.
    #[arg(long, env = "ALLSOURCE_WAL_FSYNC")]
    pub durability: Option<String>,
    /// Partition count of a new store (an existing store keeps its own).
    #[arg(long, env = "ALLSOURCE_PARTITIONS")]
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
    let mut config = StoreConfig::from_env(&args.data_dir)?;
    config.data_dir = args.data_dir;
    if let Some(durability) = args.durability {
        config.durability = durability.parse::<Durability>()?;
    }
    if args.partitions.is_some() {
        config.partitions = args.partitions;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // Handlers first: a signal that arrives once "serving" is logged must be caught.
        let shutdown = shutdown_signals()?;
        let store = EventStore::open(config)?;
        let stats = store.stats();
        tracing::info!(
            partitions = stats.partitions,
            streams = stats.streams,
            events = stats.events,
            "serving; stop with SIGINT or SIGTERM"
        );
        shutdown.await?;
        tracing::info!("shutting down");
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
