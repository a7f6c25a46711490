//! Tiering: the log's older events as Parquet files on an object store.
//!
//! ```text
//!  Arrow buffer (per partition) ──flush: rows below a cut position──► one Parquet file
//!        ▲                                                           per partition
//!        │ released once the manifest naming the files is committed       │
//!        │                                                                ▼
//!  WAL segments wholly below the cut are deleted  ◄── manifest/<version>.json (put-if-absent)
//! ```
//!
//! A flush takes the visible position as its cut, writes each partition's rows
//! below it as one file, then commits a new manifest version with a conditional put.
//! Only after the commit are the rows released from the buffer and WAL segments
//! deleted. A crash before the commit leaves files no manifest names: they are
//! deleted at the next open, and the WAL still holds their events. So a crash loses
//! nothing and duplicates nothing.
//!
//! Reads take one manifest snapshot: offsets below its `next_offsets` come from its
//! files, the rest from the buffer. If the buffer released rows in between (a flush
//! committed), the read starts again with the newer manifest.

pub mod files;
pub mod manifest;
pub mod storage;

use std::collections::HashSet;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{SchemaRef, UInt64Type};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parking_lot::{Mutex, RwLock};
use tokio::runtime::Runtime;

use crate::buffer::columns;
use crate::error::{Error, Result};
use files::{FileReader, ParquetLayout};
use manifest::{DATA_DIR, FileEntry, Manifest};

/// The tiered part of the log: the current manifest and the files it names.
#[derive(Debug)]
pub(crate) struct Tier {
    pub reader: FileReader,
    pub layout: ParquetLayout,
    pub schema: SchemaRef,
    manifest: RwLock<Arc<Manifest>>,
    /// The newest manifest version a commit has tried to write. A commit that failed
    /// may have written its version all the same (the write landed and its answer was
    /// lost, or the manifest's fsync failed after it), so the next commit takes the
    /// version after it rather than trying that one again.
    attempted: AtomicU64,
    /// One flush or compaction at a time.
    pub change_lock: tokio::sync::Mutex<()>,
    /// Each file's positions, for position reads (subscriptions).
    positions: Mutex<PositionCache>,
    /// The table storage's directory when it is local: files and manifests written
    /// there are fsynced before the commit that depends on them.
    local_dir: Option<std::path::PathBuf>,
}

/// The files `next` names that `current` does not.
fn added_files(current: &Manifest, next: &Manifest) -> Vec<FileEntry> {
    let known: HashSet<&str> = current.files.iter().map(|f| f.path.as_str()).collect();
    next.files
        .iter()
        .filter(|f| !known.contains(f.path.as_str()))
        .cloned()
        .collect()
}

impl Tier {
    /// Load the newest manifest (or start empty) and delete files it does not name.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        partitions: u16,
        layout: ParquetLayout,
        schema: SchemaRef,
        local_dir: Option<std::path::PathBuf>,
    ) -> Result<Self> {
        let manifest = match manifest::load_latest(&store).await? {
            Some(m) if m.partitions != partitions => {
                return Err(Error::Config(format!(
                    "the table storage holds a log of {} partitions; this store has {partitions}",
                    m.partitions
                )));
            }
            Some(m) => m,
            None => Manifest::empty(partitions),
        };
        let tier = Self {
            reader: FileReader::new(store),
            layout,
            schema,
            attempted: AtomicU64::new(manifest.version),
            manifest: RwLock::new(Arc::new(manifest)),
            change_lock: tokio::sync::Mutex::new(()),
            positions: Mutex::new(PositionCache::default()),
            local_dir,
        };
        tier.collect_orphans().await?;
        Ok(tier)
    }

    /// The current manifest.
    pub fn manifest(&self) -> Arc<Manifest> {
        Arc::clone(&self.manifest.read())
    }

    /// The version the next commit writes: one after the current manifest's, or after
    /// the version of a commit that failed since, which may have been written.
    pub fn next_version(&self) -> u64 {
        self.manifest()
            .version
            .max(self.attempted.load(Ordering::SeqCst))
            + 1
    }

    /// The object store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        self.reader.store()
    }

    /// Commit `next` (its version must be [`Self::next_version`]) and make it the
    /// current manifest.
    pub async fn commit(&self, next: Manifest) -> Result<Arc<Manifest>> {
        let current = self.manifest();
        if next.version != self.next_version() {
            return Err(Error::Internal(format!(
                "manifest version {} after {} (next is {})",
                next.version,
                current.version,
                self.next_version()
            )));
        }
        // A committed manifest is what lets the WAL drop its events, so the files it
        // adds are durable before it is written, and it is durable before it counts.
        let added = added_files(&current, &next);
        self.sync_local(added.iter().map(|f| f.path.clone()).collect())
            .await?;
        self.attempted.store(next.version, Ordering::SeqCst);
        manifest::commit(self.store(), &next).await?;
        self.sync_local(vec![manifest::manifest_path(next.version).to_string()])
            .await?;
        let next = Arc::new(next);
        *self.manifest.write() = Arc::clone(&next);
        self.load_footers(&added).await;
        Ok(next)
    }

    /// Fsync `paths` (relative to the table storage) when the storage is local.
    async fn sync_local(&self, paths: Vec<String>) -> Result<()> {
        let Some(root) = self.local_dir.clone() else {
            return Ok(());
        };
        if paths.is_empty() {
            return Ok(());
        }
        tokio::task::spawn_blocking(move || storage::sync_files(&root, &paths))
            .await
            .map_err(|e| Error::Internal(format!("the fsync task failed: {e}")))?
    }

    /// Load the footers of newly committed files, so the first read of a new file
    /// does not wait for its footer and page index. Best effort: a failure here only
    /// means the first read loads the footer itself.
    async fn load_footers(&self, added: &[FileEntry]) {
        for file in added {
            if let Err(err) = self.reader.load_footer(file).await {
                tracing::warn!(path = %file.path, error = %err, "loading a new file's footer");
            }
        }
    }

    /// Delete every data file the manifest does not name (uploads whose commit never
    /// happened). Only called while nothing else writes to the storage.
    async fn collect_orphans(&self) -> Result<usize> {
        let manifest = self.manifest();
        let known: HashSet<&str> = manifest
            .files
            .iter()
            .map(|f| f.path.as_str())
            .chain(manifest.retired.iter().map(|r| r.path.as_str()))
            .collect();
        let prefix = Path::from(DATA_DIR);
        let objects: Vec<_> = self
            .store()
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| Error::storage("listing the table files", e))?;
        let mut removed = 0;
        for object in objects {
            if known.contains(object.location.as_ref()) {
                continue;
            }
            tracing::warn!(path = %object.location, "deleting a table file no manifest names (an interrupted flush or compaction)");
            self.store()
                .delete(&object.location)
                .await
                .map_err(|e| Error::storage(format!("deleting {}", object.location), e))?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Rows of `partition` with offsets in `range` (all below the manifest's
    /// `next_offsets`), in offset order.
    pub async fn read_offsets(
        &self,
        manifest: &Manifest,
        partition: u16,
        range: Range<u64>,
    ) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for file in manifest.partition_files(partition) {
            if file.end_offset <= range.start || file.first_offset >= range.end {
                continue;
            }
            let lo = range.start.max(file.first_offset) - file.first_offset;
            let hi = range.end.min(file.end_offset) - file.first_offset;
            out.extend(
                self.reader
                    .read_offset_range(file, lo as usize..hi as usize)
                    .await?,
            );
        }
        Ok(out)
    }

    /// The events of stream (`tenant`, `entity_id`) at `offsets` of its partition
    /// (ascending, all flushed), in offset order.
    pub async fn read_stream(
        &self,
        manifest: &Manifest,
        partition: u16,
        (tenant, entity_id): (&str, &str),
        offsets: &[u64],
    ) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        let mut rest = offsets;
        while let Some(first) = rest.first() {
            let file = manifest.file_for(partition, *first).ok_or_else(|| {
                Error::Internal(format!(
                    "partition {partition} offset {first} is in no file of manifest {}",
                    manifest.version
                ))
            })?;
            let n = rest.partition_point(|o| *o < file.end_offset);
            let rows: Vec<usize> = rest[..n]
                .iter()
                .map(|o| (o - file.first_offset) as usize)
                .collect();
            out.extend(
                self.reader
                    .read_stream_rows(file, tenant, entity_id, &rows)
                    .await?,
            );
            rest = &rest[n..];
        }
        Ok(out)
    }

    /// Rows of `partition` with positions in `range` (all below the manifest's
    /// `flushed_position`), in position order.
    pub async fn read_positions(
        &self,
        manifest: &Manifest,
        partition: u16,
        range: Range<u64>,
    ) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for file in manifest.partition_files(partition) {
            if file.last_position < range.start || file.first_position >= range.end {
                continue;
            }
            let positions = self.positions(file).await?;
            let lo = positions.partition_point(|p| *p < range.start);
            let hi = positions.partition_point(|p| *p < range.end);
            if hi > lo {
                out.extend(self.reader.read_offset_range(file, lo..hi).await?);
            }
        }
        Ok(out)
    }

    /// The position of each event of `file`, in offset order.
    async fn positions(&self, file: &FileEntry) -> Result<Arc<[u64]>> {
        if let Some(p) = self.positions.lock().get(&file.path) {
            return Ok(p);
        }
        let batches = self
            .reader
            .read_columns_in_offset_order(file, &[columns::OFFSET, columns::POSITION])
            .await?;
        let positions: Arc<[u64]> = batches
            .iter()
            .flat_map(|b| b.column(1).as_primitive::<UInt64Type>().values().to_vec())
            .collect();
        self.positions
            .lock()
            .insert(file.path.clone(), Arc::clone(&positions));
        Ok(positions)
    }

    /// Forget what is cached of a deleted file.
    pub fn forget(&self, path: &str) {
        self.reader.forget(path);
        self.positions.lock().remove(path);
    }
}

impl Drop for TierRuntime {
    fn drop(&mut self) {
        // Dropping a runtime waits for its threads, which is not allowed inside
        // another runtime; shutting down in the background is.
        self.shutdown();
    }
}

/// Read the JSON document at `path` in `store`.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
) -> Result<T> {
    let bytes = store
        .get(path)
        .await
        .map_err(|e| Error::storage(format!("reading {path}"), e))?
        .bytes()
        .await
        .map_err(|e| Error::storage(format!("reading {path}"), e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::storage(format!("parsing {path}"), e))
}

/// Cached position columns, dropped wholesale past a size bound.
#[derive(Debug, Default)]
struct PositionCache {
    files: std::collections::HashMap<String, Arc<[u64]>>,
    values: usize,
}

impl PositionCache {
    const MAX_VALUES: usize = 16 << 20;

    fn get(&self, path: &str) -> Option<Arc<[u64]>> {
        self.files.get(path).cloned()
    }

    fn insert(&mut self, path: String, positions: Arc<[u64]>) {
        if self.values + positions.len() > Self::MAX_VALUES {
            self.files.clear();
            self.values = 0;
        }
        self.values += positions.len();
        self.files.insert(path, positions);
    }

    fn remove(&mut self, path: &str) {
        if let Some(p) = self.files.remove(path) {
            self.values -= p.len();
        }
    }
}

/// The store's own async runtime: every object store call runs on it, whoever asks
/// (a synchronous caller, or a task on another runtime), so connections and timers
/// always live on one runtime that outlives them.
#[derive(Debug)]
pub(crate) struct TierRuntime {
    runtime: Mutex<Option<Runtime>>,
    handle: tokio::runtime::Handle,
}

impl TierRuntime {
    /// A runtime whose threads run at nice value `nice` (see
    /// [`StoreConfig::tier_nice`](crate::StoreConfig::tier_nice)).
    pub fn new(nice: i32) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("allsource-tier")
            .on_thread_start(move || lower_priority(nice))
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the tiering runtime", e))?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(runtime)),
        })
    }

    /// Run `future` on the tier runtime and wait for it, blocking this thread.
    pub fn block_on<F>(&self, future: F) -> Result<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        self.handle.spawn(async move {
            let _ = tx.send(future.await);
        });
        rx.recv().map_err(|_| Error::Closed)
    }

    /// Run `future` on the tier runtime and await it.
    pub async fn run<F>(&self, future: F) -> Result<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle
            .spawn(future)
            .await
            .map_err(|e| Error::Internal(format!("a tiering task failed: {e}")))
    }

    /// Start `future` in the background.
    pub fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(future)
    }

    /// Stop the runtime without waiting for its tasks.
    pub fn shutdown(&self) {
        if let Some(runtime) = self.runtime.lock().take() {
            runtime.shutdown_background();
        }
    }
}

/// Give the calling thread nice value `nice` (Linux sets it per thread). A failure
/// only costs the appenders some CPU, so it is logged and the thread goes on.
fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice) {
        tracing::warn!(nice, error = %e, "could not lower the tiering thread's priority");
    }
}
