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
    /// Where the Parquet tables go (`ALLSOURCE_STORAGE_URL`): `None` for
    /// `<data_dir>/tables`, else `file:///path`, `s3://bucket/prefix` or `memory://`.
    pub storage_url: Option<String>,
    /// Settings for an `s3://` storage URL.
    pub s3: S3Settings,
    /// The background flusher writes buffered events to Parquet at least this often
    /// when there are any (`ALLSOURCE_FLUSH_INTERVAL_MS`, default 10000; 0 turns the
    /// background flusher off, leaving [`EventStore::flush`](crate::EventStore::flush)).
    pub flush_interval_ms: u64,
    /// ... and as soon as this many events are waiting (`ALLSOURCE_FLUSH_MIN_EVENTS`,
    /// default 262144).
    pub flush_min_events: u64,
    /// While this many events or more wait to be flushed, appends wait for the
    /// background flusher before they are sequenced (`ALLSOURCE_MAX_UNFLUSHED_EVENTS`,
    /// default 8388608; 0 never waits). Tiering costs more CPU per event than an
    /// append; under a load it cannot keep up with, appends slow down to its pace
    /// instead of the buffer growing without bound. Applies only with the background
    /// flusher on.
    pub max_unflushed_events: u64,
    /// Rows per Parquet data page, the unit a point read decodes
    /// (`ALLSOURCE_PARQUET_PAGE_ROWS`, default 256).
    pub parquet_page_rows: usize,
    /// Rows per Parquet row group (`ALLSOURCE_PARQUET_ROW_GROUP_ROWS`, default 65536).
    pub parquet_row_group_rows: usize,
    /// Compaction merges a partition's newest adjacent small files once this many of
    /// them are alike in size (each at most twice the size of the newer ones together)
    /// (`ALLSOURCE_COMPACTION_MIN_FILES`, default 8).
    pub compaction_min_files: usize,
    /// Files at least this large are left alone by compaction, and merged files stay
    /// below it (`ALLSOURCE_COMPACTION_TARGET_BYTES`, default 128 MiB).
    pub compaction_target_bytes: u64,
    /// Files replaced by compaction are deleted this long afterwards, so reads that
    /// started before still find them (`ALLSOURCE_RETIRED_FILE_GRACE_MS`, default 60000).
    pub retired_file_grace_ms: u64,
    /// A state read that merges at least this many events past the entity's newest
    /// snapshot stores the state it computed as a new snapshot, in the background
    /// (`ALLSOURCE_SNAPSHOT_EVERY_EVENTS`, default 1000; 0 turns automatic snapshots
    /// off). Appends never take snapshots.
    pub snapshot_every_events: u64,
    /// The nice value of the tiering threads (`ALLSOURCE_TIER_NICE`, default 10, 0 to
    /// 19; Linux): flushes and compactions take the cores the appenders leave idle
    /// and yield to them under load. Stream reads from Parquet run on these threads
    /// too. 0 leaves the threads at the process's priority.
    pub tier_nice: i32,
}

/// Connection settings for S3 and S3-compatible servers; unset fields fall back to the
/// usual `AWS_*` environment variables.
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    /// Endpoint URL, e.g. `http://127.0.0.1:9000` (`ALLSOURCE_S3_ENDPOINT`).
    pub endpoint: Option<String>,
    /// Region (`ALLSOURCE_S3_REGION`).
    pub region: Option<String>,
    /// Access key id (`ALLSOURCE_S3_ACCESS_KEY_ID`).
    pub access_key_id: Option<String>,
    /// Secret access key (`ALLSOURCE_S3_SECRET_ACCESS_KEY`).
    pub secret_access_key: Option<String>,
    /// Allow plain HTTP endpoints (`ALLSOURCE_S3_ALLOW_HTTP`).
    pub allow_http: Option<bool>,
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
            storage_url: None,
            s3: S3Settings::default(),
            flush_interval_ms: 10_000,
            flush_min_events: 262_144,
            max_unflushed_events: 8 * 1024 * 1024,
            parquet_page_rows: 256,
            parquet_row_group_rows: 65_536,
            compaction_min_files: 8,
            compaction_target_bytes: 128 * 1024 * 1024,
            retired_file_grace_ms: 60_000,
            snapshot_every_events: 1000,
            tier_nice: 10,
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

    /// Set where the Parquet tables go (see [`StoreConfig::storage_url`]).
    pub fn with_storage_url(mut self, url: impl Into<String>) -> Self {
        self.storage_url = Some(url.into());
        self
    }

    /// Set the background flush interval (0: no background flushing).
    pub fn with_flush_interval_ms(mut self, ms: u64) -> Self {
        self.flush_interval_ms = ms;
        self
    }

    /// Defaults overridden by the `ALLSOURCE_*` environment variables that are set.
    pub fn from_env(data_dir: impl Into<PathBuf>) -> Result<Self> {
        let mut config = Self::new(data_dir);
        config.apply_env()?;
        Ok(config)
    }

    /// Apply every `ALLSOURCE_*` variable that is set (see [`SETTINGS`]).
    pub fn apply_env(&mut self) -> Result<()> {
        for (key, var) in SETTINGS {
            if let Some(value) = env_var(var) {
                self.set(key, &value)?;
            }
        }
        Ok(())
    }

    /// Set the setting named `key` (a field name, `s3.*` for the S3 fields) from its
    /// text form, as a configuration file or an environment variable gives it.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        match key {
            "data_dir" => self.data_dir = value.into(),
            "partitions" => self.partitions = Some(parse_env(key, value)?),
            "durability" => self.durability = value.parse()?,
            "wal_fsync_interval_ms" => self.wal_fsync_interval_ms = parse_env(key, value)?,
            "wal_segment_bytes" => self.wal_segment_bytes = parse_env(key, value)?,
            "max_payload_bytes" => self.max_payload_bytes = parse_env(key, value)?,
            "max_request_bytes" => self.max_request_bytes = parse_env(key, value)?,
            "buffer_batch_rows" => self.buffer_batch_rows = parse_env(key, value)?,
            "subscription_chunk_events" => self.subscription_chunk_events = parse_env(key, value)?,
            "storage_url" => self.storage_url = Some(value.to_string()),
            "s3.endpoint" => self.s3.endpoint = Some(value.to_string()),
            "s3.region" => self.s3.region = Some(value.to_string()),
            "s3.access_key_id" => self.s3.access_key_id = Some(value.to_string()),
            "s3.secret_access_key" => self.s3.secret_access_key = Some(value.to_string()),
            "s3.allow_http" => self.s3.allow_http = Some(parse_bool(key, value)?),
            "flush_interval_ms" => self.flush_interval_ms = parse_env(key, value)?,
            "flush_min_events" => self.flush_min_events = parse_env(key, value)?,
            "max_unflushed_events" => self.max_unflushed_events = parse_env(key, value)?,
            "parquet_page_rows" => self.parquet_page_rows = parse_env(key, value)?,
            "parquet_row_group_rows" => self.parquet_row_group_rows = parse_env(key, value)?,
            "compaction_min_files" => self.compaction_min_files = parse_env(key, value)?,
            "compaction_target_bytes" => self.compaction_target_bytes = parse_env(key, value)?,
            "retired_file_grace_ms" => self.retired_file_grace_ms = parse_env(key, value)?,
            "snapshot_every_events" => self.snapshot_every_events = parse_env(key, value)?,
            "tier_nice" => self.tier_nice = parse_env(key, value)?,
            _ => {
                return Err(Error::Config(format!(
                    "unknown setting {key:?} (known: {})",
                    SETTINGS.map(|(k, _)| k).join(", ")
                )));
            }
        }
        Ok(())
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
        if self.parquet_page_rows == 0
            || self.parquet_row_group_rows == 0
            || self.compaction_min_files < 2
        {
            return Err(Error::Config(
                "parquet_page_rows and parquet_row_group_rows must be at least 1, compaction_min_files at least 2".into(),
            ));
        }
        if !(0..=19).contains(&self.tier_nice) {
            return Err(Error::Config("tier_nice must be between 0 and 19".into()));
        }
        if self.buffer_batch_rows == 0 || self.subscription_chunk_events == 0 {
            return Err(Error::Config(
                "buffer_batch_rows and subscription_chunk_events must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Every store setting: its name (in configuration files and [`StoreConfig::set`])
/// and its environment variable.
pub const SETTINGS: [(&str, &str); 25] = [
    ("data_dir", "ALLSOURCE_DATA_DIR"),
    ("partitions", "ALLSOURCE_PARTITIONS"),
    ("durability", "ALLSOURCE_WAL_FSYNC"),
    ("wal_fsync_interval_ms", "ALLSOURCE_WAL_FSYNC_INTERVAL_MS"),
    ("wal_segment_bytes", "ALLSOURCE_WAL_SEGMENT_BYTES"),
    ("max_payload_bytes", "ALLSOURCE_MAX_PAYLOAD_BYTES"),
    ("max_request_bytes", "ALLSOURCE_MAX_REQUEST_BYTES"),
    ("buffer_batch_rows", "ALLSOURCE_BUFFER_BATCH_ROWS"),
    (
        "subscription_chunk_events",
        "ALLSOURCE_SUBSCRIPTION_CHUNK_EVENTS",
    ),
    ("storage_url", "ALLSOURCE_STORAGE_URL"),
    ("s3.endpoint", "ALLSOURCE_S3_ENDPOINT"),
    ("s3.region", "ALLSOURCE_S3_REGION"),
    ("s3.access_key_id", "ALLSOURCE_S3_ACCESS_KEY_ID"),
    ("s3.secret_access_key", "ALLSOURCE_S3_SECRET_ACCESS_KEY"),
    ("s3.allow_http", "ALLSOURCE_S3_ALLOW_HTTP"),
    ("flush_interval_ms", "ALLSOURCE_FLUSH_INTERVAL_MS"),
    ("flush_min_events", "ALLSOURCE_FLUSH_MIN_EVENTS"),
    ("max_unflushed_events", "ALLSOURCE_MAX_UNFLUSHED_EVENTS"),
    ("parquet_page_rows", "ALLSOURCE_PARQUET_PAGE_ROWS"),
    ("parquet_row_group_rows", "ALLSOURCE_PARQUET_ROW_GROUP_ROWS"),
    ("compaction_min_files", "ALLSOURCE_COMPACTION_MIN_FILES"),
    (
        "compaction_target_bytes",
        "ALLSOURCE_COMPACTION_TARGET_BYTES",
    ),
    ("retired_file_grace_ms", "ALLSOURCE_RETIRED_FILE_GRACE_MS"),
    ("snapshot_every_events", "ALLSOURCE_SNAPSHOT_EVERY_EVENTS"),
    ("tier_nice", "ALLSOURCE_TIER_NICE"),
];

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn parse_env<T: FromStr>(name: &str, value: &str) -> Result<T> {
    value
        .parse()
        .map_err(|_| Error::Config(format!("{name} = {value:?} is not a valid number")))
}

fn parse_bool(name: &str, value: &str) -> Result<bool> {
    match value {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(Error::Config(format!(
            "{name}={value:?} is not true or false"
        ))),
    }
}
