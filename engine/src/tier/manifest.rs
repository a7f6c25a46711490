//! The manifest: which Parquet files hold which part of the log.
//!
//! Every change to the set of files (a flush, a compaction) writes a whole new
//! manifest, `manifest/<version, 20 digits>.json`, with a conditional put that fails
//! if that version already exists. The newest version is the truth; files it does not
//! name are orphans (an upload whose commit never happened) and are deleted at open.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Manifest format version this build reads and writes.
pub const MANIFEST_FORMAT: u32 = 1;

/// Folder of the manifest versions in the table storage.
pub const MANIFEST_DIR: &str = "manifest";

/// Folder of the Parquet files in the table storage.
pub const DATA_DIR: &str = "data";

/// Manifest versions kept besides the newest (older ones are deleted).
const KEPT_VERSIONS: u64 = 8;

/// One version of the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format of this document.
    pub format: u32,
    /// Version, from 1; 0 is the empty manifest of a store that has flushed nothing.
    pub version: u64,
    /// The store's partition count.
    pub partitions: u16,
    /// Every event at a position below this is in the files, and none above it.
    pub flushed_position: u64,
    /// Per partition, the first offset not in the files.
    pub next_offsets: Vec<u64>,
    /// The files, ordered by partition, then offset; each partition's files cover
    /// `0..next_offsets[p]` without gap or overlap.
    pub files: Vec<FileEntry>,
    /// Files replaced by compaction, deleted once their grace period is over.
    pub retired: Vec<RetiredFile>,
}

/// How the rows of a file are ordered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowOrder {
    /// Row `i` is offset `first_offset + i`.
    #[default]
    Offset,
    /// Each row group holds a contiguous offset range (row groups in offset order),
    /// its rows sorted by (entity_id, tenant, offset): a stream's events in a row
    /// group are adjacent, so a stream read decodes one or two pages per column.
    Clustered,
}

/// One Parquet file: a contiguous offset range of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path in the table storage.
    pub path: String,
    /// Its partition.
    pub partition: u16,
    /// First offset it holds.
    pub first_offset: u64,
    /// One past the last offset it holds.
    pub end_offset: u64,
    /// Position of its first event.
    pub first_position: u64,
    /// Position of its last event.
    pub last_position: u64,
    /// Smallest event time, microseconds since the Unix epoch.
    pub min_timestamp_micros: i64,
    /// Largest event time.
    pub max_timestamp_micros: i64,
    /// Size of the file.
    pub bytes: u64,
    /// How its rows are ordered (files written before clustering are in offset order).
    #[serde(default)]
    pub order: RowOrder,
}

impl FileEntry {
    /// Events in the file.
    pub fn rows(&self) -> u64 {
        self.end_offset - self.first_offset
    }
}

/// A file no longer in the log, kept until readers that might still use it are done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredFile {
    /// Path in the table storage.
    pub path: String,
    /// When it was replaced, microseconds since the Unix epoch.
    pub retired_at_micros: i64,
}

impl Manifest {
    /// The manifest of a store that has flushed nothing.
    pub fn empty(partitions: u16) -> Self {
        Self {
            format: MANIFEST_FORMAT,
            version: 0,
            partitions,
            flushed_position: 0,
            next_offsets: vec![0; usize::from(partitions)],
            files: Vec::new(),
            retired: Vec::new(),
        }
    }

    /// The files of `partition`, in offset order.
    pub fn partition_files(&self, partition: u16) -> &[FileEntry] {
        let start = self.files.partition_point(|f| f.partition < partition);
        let end = self.files.partition_point(|f| f.partition <= partition);
        &self.files[start..end]
    }

    /// The file of `partition` holding `offset`, if it is flushed.
    pub fn file_for(&self, partition: u16, offset: u64) -> Option<&FileEntry> {
        let files = self.partition_files(partition);
        let at = files.partition_point(|f| f.end_offset <= offset);
        files.get(at).filter(|f| f.first_offset <= offset)
    }

    /// Check the invariants a reader relies on.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.format != MANIFEST_FORMAT {
            return Err(format!(
                "manifest format {} is not supported (this build reads {MANIFEST_FORMAT})",
                self.format
            ));
        }
        if self.next_offsets.len() != usize::from(self.partitions) {
            return Err(format!(
                "{} partition offsets for {} partitions",
                self.next_offsets.len(),
                self.partitions
            ));
        }
        let mut expected = vec![0u64; usize::from(self.partitions)];
        let mut previous: Option<(u16, u64)> = None;
        for file in &self.files {
            let p = usize::from(file.partition);
            let Some(next) = expected.get_mut(p) else {
                return Err(format!("{} names partition {}", file.path, file.partition));
            };
            if previous.is_some_and(|key| key > (file.partition, file.first_offset)) {
                return Err(format!("{} is out of order", file.path));
            }
            if file.first_offset != *next || file.end_offset <= file.first_offset {
                return Err(format!(
                    "{} holds offsets {}..{}, expected to start at {next}",
                    file.path, file.first_offset, file.end_offset
                ));
            }
            *next = file.end_offset;
            previous = Some((file.partition, file.first_offset));
        }
        if expected != self.next_offsets {
            return Err("the files do not end at the recorded partition offsets".into());
        }
        Ok(())
    }
}

/// The path of manifest `version`.
pub fn manifest_path(version: u64) -> Path {
    Path::from(format!("{MANIFEST_DIR}/{version:020}.json"))
}

fn version_of(path: &Path) -> Option<u64> {
    let name = path.filename()?;
    let stem = name.strip_suffix(".json")?;
    (stem.len() == 20).then(|| stem.parse().ok()).flatten()
}

/// Every manifest version present, ascending.
pub async fn versions(store: &Arc<dyn ObjectStore>) -> Result<Vec<u64>> {
    let prefix = Path::from(MANIFEST_DIR);
    let objects: Vec<_> = store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|e| Error::storage("listing the manifest versions", e))?;
    let mut versions: Vec<u64> = objects
        .iter()
        .filter_map(|o| version_of(&o.location))
        .collect();
    versions.sort_unstable();
    Ok(versions)
}

/// The newest manifest, or `None` when none was ever committed.
pub async fn load_latest(store: &Arc<dyn ObjectStore>) -> Result<Option<Manifest>> {
    let Some(version) = versions(store).await?.last().copied() else {
        return Ok(None);
    };
    let path = manifest_path(version);
    let manifest: Manifest = super::read_json(store, &path).await?;
    if manifest.version != version {
        return Err(Error::storage(
            format!("checking {path}"),
            format!("it says it is version {}", manifest.version),
        ));
    }
    manifest
        .check()
        .map_err(|reason| Error::storage(format!("checking {path}"), reason))?;
    Ok(Some(manifest))
}

/// Write `manifest` as its version, failing if that version exists already; then
/// delete versions older than the few kept.
pub async fn commit(store: &Arc<dyn ObjectStore>, manifest: &Manifest) -> Result<()> {
    manifest
        .check()
        .map_err(|reason| Error::Internal(format!("committing a bad manifest: {reason}")))?;
    let path = manifest_path(manifest.version);
    let json = serde_json::to_vec_pretty(manifest)
        .map_err(|e| Error::Internal(format!("encoding the manifest: {e}")))?;
    let options = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    match store.put_opts(&path, PutPayload::from(json), options).await {
        Ok(_) => {}
        Err(object_store::Error::AlreadyExists { .. }) => {
            return Err(Error::storage(
                format!("committing {path}"),
                "that version exists already: another process is writing to this table storage",
            ));
        }
        Err(e) => return Err(Error::storage(format!("committing {path}"), e)),
    }
    for old in versions(store).await? {
        if old + KEPT_VERSIONS >= manifest.version {
            break;
        }
        let old = manifest_path(old);
        if let Err(e) = store.delete(&old).await {
            tracing::warn!(path = %old, error = %e, "deleting an old manifest version failed");
        }
    }
    Ok(())
}
