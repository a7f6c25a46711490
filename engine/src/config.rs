//! Store configuration: every field documented, units in names, defaults, env vars.

use std::path::PathBuf;
use std::str::FromStr;

use crate::error::{Error, Result};

/// When an append is acknowledged relative to the disk.
///
/// | policy | an acknowledged event survives | cost |
/// |---|---|---|
/// | `always` (default) | a process crash **and** a power loss or OS crash | one fsync per group commit |
/// | `interval` | a process crash; a power loss may lose the last `wal_fsync_interval_ms` | one fsync per interval |
/// | `never` | a process crash; a power loss may lose anything not yet written back by the OS | none |
///
/// In every mode the WAL record is written to the operating system before the append
/// is acknowledged, so killing the process never loses an acknowledged event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Acknowledge only after the record is fsynced.
    #[default]
    Always,
    /// Fsync every `wal_fsync_interval_ms`; acknowledge after the write.
    Interval,
    /// Never fsync (except on rotation and close); acknowledge after the write.
    Never,
}

impl FromStr for Durability {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "always" => Ok(Durability::Always),
            "interval" => Ok(Durability::Interval),
            "never" => Ok(Durability::Never),
            other => Err(Error::Config(format!(
                "unknown durability {other:?}: use \"always\", \"interval\" or \"never\""
            ))),
        }
    }
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Durability::Always => "always",
            Durability::Interval => "interval",
            Durability::Never => "never",
        })
    }
}

/// How an [`EventStore`](crate::EventStore) is opened.
///
/// ```
/// # use allsource_engine::{StoreConfig, Durability};
/// let config = StoreConfig::new("/var/lib/allsource")
///     .with_durability(Durability::Always)
///     .with_partitions(32);
/// assert_eq!(config.max_payload_bytes, 1024 * 1024);
/// ```
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Directory holding the store (`ALLSOURCE_DATA_DIR`). Created if missing.
    pub data_dir: PathBuf,
    /// Number of partitions for a **new** store (`ALLSOURCE_PARTITIONS`, default 32).
    /// An existing store keeps the count it was created with; giving a different one
    /// is an error. `None` means "32 for a new store, whatever an existing one has".
    pub partitions: Option<u16>,
    /// When appends are acknowledged (`ALLSOURCE_WAL_FSYNC`, default `always`).
    pub durability: Durability,
    /// Fsync period for [`Durability::Interval`] (`ALLSOURCE_WAL_FSYNC_INTERVAL_MS`, default 100).
    pub wal_fsync_interval_ms: u64,
    /// A WAL segment is closed and a new one started once it reaches this size
    /// (`ALLSOURCE_WAL_SEGMENT_BYTES`, default 64 MiB).
    pub wal_segment_bytes: u64,
    /// Largest accepted payload, and separately metadata, of one event
    /// (`ALLSOURCE_MAX_PAYLOAD_BYTES`, default 1 MiB).
    pub max_payload_bytes: usize,
    /// Largest accepted append request, all events together
    /// (`ALLSOURCE_MAX_REQUEST_BYTES`, default 64 MiB).
    pub max_request_bytes: usize,
    /// Target rows per buffered Arrow batch: small batches from group commits are
    /// merged up to this size (`ALLSOURCE_BUFFER_BATCH_ROWS`, default 8192).
    pub buffer_batch_rows: usize,
    /// Most events a subscription reads from the log in one step; bounds a
    /// subscriber's memory (`ALLSOURCE_SUBSCRIPTION_CHUNK_EVENTS`, default 1024).
    pub subscription_chunk_events: usize,
}

impl StoreConfig {
    /// Defaults for a store in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            partitions: None,
            durability: Durability::Always,
            wal_fsync_interval_ms: 100,
            wal_segment_bytes: 64 * 1024 * 1024,
            max_payload_bytes: 1024 * 1024,
            max_request_bytes: 64 * 1024 * 1024,
            buffer_batch_rows: 8192,
            subscription_chunk_events: 1024,
        }
    }

    /// Set the partition count for a new store.
    pub fn with_partitions(mut self, partitions: u16) -> Self {
        self.partitions = Some(partitions);
        self
    }

    /// Set the durability policy.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Set the WAL segment size.
    pub fn with_wal_segment_bytes(mut self, bytes: u64) -> Self {
        self.wal_segment_bytes = bytes;
        self
    }

    /// Defaults overridden by the `ALLSOURCE_*` environment variables that are set.
    pub fn from_env(data_dir: impl Into<PathBuf>) -> Result<Self> {
        let mut config = Self::new(data_dir);
        if let Some(dir) = env_var("ALLSOURCE_DATA_DIR") {
            config.data_dir = dir.into();
        }
        if let Some(v) = env_var("ALLSOURCE_PARTITIONS") {
            config.partitions = Some(parse_env("ALLSOURCE_PARTITIONS", &v)?);
        }
        if let Some(v) = env_var("ALLSOURCE_WAL_FSYNC") {
            config.durability = v.parse()?;
        }
        set_from_env(
            &mut config.wal_fsync_interval_ms,
            "ALLSOURCE_WAL_FSYNC_INTERVAL_MS",
        )?;
        set_from_env(&mut config.wal_segment_bytes, "ALLSOURCE_WAL_SEGMENT_BYTES")?;
        set_from_env(&mut config.max_payload_bytes, "ALLSOURCE_MAX_PAYLOAD_BYTES")?;
        set_from_env(&mut config.max_request_bytes, "ALLSOURCE_MAX_REQUEST_BYTES")?;
        set_from_env(&mut config.buffer_batch_rows, "ALLSOURCE_BUFFER_BATCH_ROWS")?;
        set_from_env(
            &mut config.subscription_chunk_events,
            "ALLSOURCE_SUBSCRIPTION_CHUNK_EVENTS",
        )?;
        Ok(config)
    }

    /// Check the values for ranges that would make the store misbehave.
    pub fn validate(&self) -> Result<()> {
        if self.partitions == Some(0) {
            return Err(Error::Config("partitions must be at least 1".into()));
        }
        if self.wal_segment_bytes < 4096 {
            return Err(Error::Config(
                "wal_segment_bytes must be at least 4096".into(),
            ));
        }
        if self.durability == Durability::Interval && self.wal_fsync_interval_ms == 0 {
            return Err(Error::Config(
                "wal_fsync_interval_ms must be at least 1 with durability \"interval\"".into(),
            ));
        }
        if self.max_request_bytes > crate::wal::MAX_RECORD_BODY_BYTES {
            return Err(Error::Config(format!(
                "max_request_bytes must be at most {}",
                crate::wal::MAX_RECORD_BODY_BYTES
            )));
        }
        if self.buffer_batch_rows == 0 || self.subscription_chunk_events == 0 {
            return Err(Error::Config(
                "buffer_batch_rows and subscription_chunk_events must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn parse_env<T: FromStr>(name: &str, value: &str) -> Result<T> {
    value
        .parse()
        .map_err(|_| Error::Config(format!("{name}={value:?} is not a valid number")))
}

fn set_from_env<T: FromStr>(field: &mut T, name: &str) -> Result<()> {
    if let Some(v) = env_var(name) {
        *field = parse_env(name, &v)?;
    }
    Ok(())
}
