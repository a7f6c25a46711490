//! [`EventStore`]: open (with recovery), append, read, subscribe, stats, close.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use arrow::array::RecordBatch;
use parking_lot::{Condvar, Mutex};
use tokio::sync::{oneshot, watch};

use crate::buffer::{EventColumns, LogBuffer, SharedText, event_schema};
use crate::clock::{Clock, SystemClock};
use crate::config::{Durability, StoreConfig};
use crate::error::{Error, IoContext, Result};
use crate::event::{
    AppendRequest, AppendResult, AppendSource, Limits, RecordedEvent, validate_request,
};
use crate::flush::{
    CompactionReport, FlushReport, Release, compact, flush, restore_sequencer, run_flusher,
    truncate_wal,
};
use crate::meta::{self, StoreMeta};
use crate::sequencer::{Group, Outcome, Sequencer, retry_acks};
use crate::snapshot::{self, EntityState};
use crate::subscription::{Subscription, SubscriptionFilter};
use crate::tier::files::ParquetLayout;
use crate::tier::manifest::Manifest;
use crate::tier::{Tier, TierRuntime, storage};
use crate::wal::WAL_DIR;
use crate::wal::scan::{SegmentStatus, scan_dir};
use crate::wal::writer::{OsSegmentIo, SegmentIo, SegmentWriter, Tail};
use crate::watchers::Watchers;

/// Name of the lock file that keeps a second process out of the data directory.
const LOCK_FILE: &str = "LOCK";

/// The log at one position, for table scans; see [`EventStore::table_snapshot`].
#[derive(Debug, Clone)]
pub struct TableSnapshot {
    /// The manifest: its files hold every event below `manifest.flushed_position`.
    pub manifest: Arc<Manifest>,
    /// The buffered events from there up to `head`, of the partitions asked for.
    pub buffered: Vec<RecordBatch>,
    /// The first position not included.
    pub head: u64,
}

/// What a store runs on besides its configuration. Tests replace parts of it.
#[derive(Debug, Clone)]
pub struct Environment {
    /// The clock stamping `ingested_at`.
    pub clock: Arc<dyn Clock>,
    /// How WAL segment files are written.
    pub segment_io: Arc<dyn SegmentIo>,
    /// The table storage; `None` opens the one the configuration names.
    pub object_store: Option<Arc<dyn object_store::ObjectStore>>,
}

impl Default for Environment {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            segment_io: Arc::new(OsSegmentIo),
            object_store: None,
        }
    }
}

/// The event log: a handle that is cheap to clone and safe to share between tasks.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use allsource_engine::{AppendRequest, EventData, EventStore, ExpectedVersion, StoreConfig};
/// # let dir = tempfile::tempdir()?;
/// let store = EventStore::open(StoreConfig::new(dir.path()))?;
/// let request = AppendRequest::new("acme").stream(
///     "order-1",
///     ExpectedVersion::NoStream,
///     vec![EventData::new("order.placed", r#"{"amount": 42}"#)],
/// );
/// let result = store.append(request).await?;
/// assert_eq!(result.events[0].version, 1);
///
/// let events = store.read_stream("acme", "order-1", 1, 100).await?;
/// assert_eq!(&*events[0].event_type, "order.placed");
/// store.close()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct EventStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// State shared by the handles, the WAL writer thread and subscriptions.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: StoreConfig,
    pub meta: StoreMeta,
    pub clock: Arc<dyn Clock>,
    pub state: Mutex<LogState>,
    /// The sequenced records waiting for the WAL writer. Appenders hand their records
    /// over under a short hold of this lock (while still holding the state lock, so
    /// they arrive in sequence order); the writer takes them under it, never waiting
    /// for a request being sequenced.
    pub queue: Mutex<Queue>,
    /// Wakes the writer thread when a group is pending or the store closes.
    pub wake: Condvar,
    pub buffer: LogBuffer,
    /// The first position not yet visible to readers.
    pub head: watch::Sender<u64>,
    pub counters: WalCounters,
    /// Each WAL segment's end: the first position after its last event.
    pub segments: Mutex<BTreeMap<u64, u64>>,
    /// The Parquet files and their manifest.
    pub tier: Tier,
    /// The runtime every object store call runs on.
    pub runtime: TierRuntime,
    /// Wakes the background flusher early.
    pub flush_wake: tokio::sync::Notify,
    /// Wakes the appends waiting for room (see [`EventStore::wait_for_room`]) after
    /// each flush.
    pub flushed: tokio::sync::Notify,
    /// Subscriptions waiting for events, woken by the commits that concern them.
    pub watchers: Arc<Watchers>,
    pub tier_counters: TierCounters,
    /// The data directory's lock, released when the store closes.
    lock: Mutex<Option<File>>,
}

/// Figures the flusher keeps.
#[derive(Debug, Default)]
pub(crate) struct TierCounters {
    pub flushes: AtomicU64,
    pub files_written: AtomicU64,
    pub bytes_written: AtomicU64,
    pub compactions: AtomicU64,
    pub files_compacted: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

/// What the state lock guards.
#[derive(Debug)]
pub(crate) struct LogState {
    pub seq: Sequencer,
    /// Where a request is encoded while it is sequenced, before it joins the queue.
    pub staging: Group,
    pub failure: Option<String>,
    pub closing: bool,
}

/// What the queue lock guards.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    pub pending: Group,
    /// The store is closing: the writer writes what is pending and stops.
    pub closing: bool,
}

impl LogState {
    pub fn check_open(&self) -> Result<()> {
        match (&self.failure, self.closing) {
            (Some(message), _) => Err(Error::WalFailed(message.clone())),
            (None, true) => Err(Error::Closed),
            (None, false) => Ok(()),
        }
    }
}

/// Figures the writer thread keeps.
#[derive(Debug, Default)]
pub(crate) struct WalCounters {
    pub groups: AtomicU64,
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub fsyncs: AtomicU64,
    pub fsync_micros: AtomicU64,
    pub segment_id: AtomicU64,
    pub segment_bytes: AtomicU64,
}

/// A snapshot of the store's figures.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    /// Partition count.
    pub partitions: u16,
    /// Streams.
    pub streams: u64,
    /// Events accepted (visible or about to be).
    pub events: u64,
    /// First position not yet visible to readers: every event below it can be read.
    pub visible_position: u64,
    /// Durability policy in force.
    pub durability: String,
    /// WAL figures since the store was opened.
    pub wal: WalStats,
    /// Parquet tiering figures.
    pub tier: TierStats,
    /// Per-partition figures.
    pub partition_stats: Vec<PartitionStats>,
}

/// WAL figures since the store was opened.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WalStats {
    /// Active segment.
    pub segment_id: u64,
    /// Its size in bytes.
    pub segment_bytes: u64,
    /// Group commits written.
    pub groups: u64,
    /// Records (append requests) written.
    pub records: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Fsyncs issued.
    pub fsyncs: u64,
    /// Time spent in those fsyncs, in microseconds.
    pub fsync_micros: u64,
}

/// Parquet tiering figures.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TierStats {
    /// Current manifest version (0: nothing flushed yet).
    pub manifest_version: u64,
    /// Every event below this position is in Parquet.
    pub flushed_position: u64,
    /// Files in the manifest.
    pub files: u64,
    /// Their total size in bytes.
    pub file_bytes: u64,
    /// Flushes since the store was opened.
    pub flushes: u64,
    /// Files written by those flushes.
    pub files_written: u64,
    /// Bytes written by those flushes.
    pub bytes_written: u64,
    /// Compactions since the store was opened.
    pub compactions: u64,
    /// Files merged away by those compactions.
    pub files_compacted: u64,
    /// Replaced files waiting for their grace period to end.
    pub retired_files: u64,
    /// Files whose footer and page index are held in memory (loaded when a flush
    /// or compaction commits a file, or at its first read).
    pub footers_cached: u64,
    /// The last flush error, if the last flush failed.
    pub last_error: Option<String>,
}

/// One partition's figures.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionStats {
    /// The partition.
    pub partition: u16,
    /// Events in the partition (its next offset).
    pub events: u64,
    /// Events held in the buffer (not yet released to Parquet).
    pub buffered_events: u64,
    /// Arrow batches holding them.
    pub batches: usize,
    /// Memory they take, in bytes.
    pub buffer_bytes: usize,
}

impl EventStore {
    /// Open the store in `config.data_dir`, creating it if needed, and replay its WAL.
    ///
    /// Fails with [`Error::Corrupt`] (naming the file and byte offset) when the WAL is
    /// damaged anywhere but in its final record, and with [`Error::Locked`] when
    /// another process has the store open.
    pub fn open(config: StoreConfig) -> Result<Self> {
        Self::open_with_clock(config, Arc::new(SystemClock))
    }

    /// [`EventStore::open`] with an injected clock.
    pub fn open_with_clock(config: StoreConfig, clock: Arc<dyn Clock>) -> Result<Self> {
        Self::open_with(
            config,
            Environment {
                clock,
                ..Environment::default()
            },
        )
    }

    /// [`EventStore::open`] with parts of its environment replaced (tests use it to
    /// make WAL writes or fsyncs fail, or to watch the table storage).
    pub fn open_with(config: StoreConfig, env: Environment) -> Result<Self> {
        config.validate()?;
        let Environment {
            clock,
            segment_io,
            object_store,
        } = env;
        let dir = config.data_dir.clone();
        fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
        let lock = lock_dir(&dir)?;
        let meta = meta::load_or_create(&dir, config.partitions, clock.now_micros())?;
        let wal_dir = dir.join(WAL_DIR);
        fs::create_dir_all(&wal_dir).context(|| format!("creating {}", wal_dir.display()))?;
        remove_temp_files(&wal_dir)?;

        let (object_store, local_dir) = match object_store {
            Some(store) => (store, None),
            None => (storage::open_storage(&config)?, storage::local_dir(&config)),
        };
        let runtime = TierRuntime::new(config.tier_nice)?;
        let layout = ParquetLayout {
            page_rows: config.parquet_page_rows,
            row_group_rows: config.parquet_row_group_rows,
        };
        let partitions = meta.partitions;
        let tier = runtime.block_on(async move {
            let tier =
                Tier::open(object_store, partitions, layout, event_schema(), local_dir).await?;
            let manifest = tier.manifest();
            let seq = restore_sequencer(&tier, &manifest, Sequencer::new(partitions)).await?;
            Ok::<_, Error>((tier, seq))
        })?;
        let (tier, seq) = tier?;
        let manifest = tier.manifest();

        let buffer = LogBuffer::new(meta.partitions, config.buffer_batch_rows);
        for partition in 0..meta.partitions {
            buffer.start_at(partition, manifest.next_offsets[usize::from(partition)]);
        }
        buffer.set_released_position(manifest.flushed_position);
        let (seq, tail, segments) = recover(&wal_dir, &manifest, seq, &buffer)?;
        let wal = SegmentWriter::open(
            &wal_dir,
            tail,
            seq.next_sequence,
            config.wal_segment_bytes,
            segment_io,
        )?;
        let (head, _) = watch::channel(seq.next_position);
        tracing::info!(
            data_dir = %dir.display(),
            partitions = meta.partitions,
            events = seq.next_position,
            flushed = manifest.flushed_position,
            durability = %config.durability,
            "event store open"
        );
        let counters = WalCounters::default();
        counters
            .segment_id
            .store(wal.position().0, Ordering::Release);
        let shared = Arc::new(Shared {
            config,
            meta,
            clock,
            state: Mutex::new(LogState {
                seq,
                staging: Group::default(),
                failure: None,
                closing: false,
            }),
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            buffer,
            head,
            counters,
            segments: Mutex::new(segments),
            tier,
            runtime,
            flush_wake: tokio::sync::Notify::new(),
            flushed: tokio::sync::Notify::new(),
            watchers: Arc::new(Watchers::default()),
            tier_counters: TierCounters::default(),
            lock: Mutex::new(Some(lock)),
        });
        truncate_wal(&shared, manifest.flushed_position)?;
        let writer_shared = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("allsource-wal".into())
            .spawn(move || crate::commit::run(writer_shared, wal))
            .context(|| "starting the WAL writer thread".to_string())?;
        if shared.config.flush_interval_ms > 0 {
            shared.runtime.spawn(run_flusher(Arc::clone(&shared)));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                writer: Mutex::new(Some(writer)),
            }),
        })
    }

    /// Append atomically: every event of the request, or none.
    ///
    /// Returns once the events are durable as the durability policy defines it and
    /// visible to readers. A request whose event ids are all already in their streams
    /// is a retry: nothing is appended and the original acknowledgements come back
    /// with `deduplicated: true`.
    pub async fn append(&self, request: AppendRequest) -> Result<AppendResult> {
        self.wait_for_room().await?;
        self.submit(request)?.durable().await
    }

    /// Wait while `max_unflushed_events` or more events wait to be flushed to Parquet
    /// (with the background flusher on): the flusher is behind, and appends wait for it
    /// rather than grow the buffer without bound. [`append`](Self::append) does this
    /// itself; a caller of [`submit`](Self::submit) or
    /// [`submit_checked`](Self::submit_checked) awaits it before each request.
    pub async fn wait_for_room(&self) -> Result<()> {
        let shared = &self.inner.shared;
        let limit = shared.config.max_unflushed_events;
        if limit == 0 || shared.config.flush_interval_ms == 0 {
            return Ok(());
        }
        let mut warned = false;
        loop {
            let flushed = shared.flushed.notified();
            tokio::pin!(flushed);
            flushed.as_mut().enable();
            let waiting = shared
                .head
                .borrow()
                .saturating_sub(shared.tier.manifest().flushed_position);
            if waiting < limit {
                return Ok(());
            }
            shared.state.lock().check_open()?;
            if !warned {
                tracing::warn!(
                    waiting,
                    limit,
                    "appends wait for the flusher: too many events wait to be flushed to Parquet"
                );
                warned = true;
            }
            shared.flush_wake.notify_one();
            // Woken by the flush; the timeout only looks again for a closed store.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(100), flushed).await;
        }
    }

    /// The first half of [`append`](Self::append): check and sequence the request now,
    /// without waiting for it to be durable.
    ///
    /// Every error a request can cause on its own (invalid events, a version conflict,
    /// a request too large) is returned here, and then nothing of it is written.
    /// Requests submitted one after the other are sequenced in that order, so a caller
    /// can submit the next request while earlier ones are still being written, and
    /// await each [`PendingAppend`] in turn. A failure afterwards is the store's own
    /// (the WAL could not be written), and the store is then closed to appends.
    pub fn submit(&self, request: AppendRequest) -> Result<PendingAppend> {
        self.submit_source(&request)
    }

    /// [`submit`](Self::submit) for a request held in any form (see [`AppendSource`]):
    /// its events are read in place, checked and encoded into the WAL record without
    /// being copied into an [`AppendRequest`] first.
    pub fn submit_source<R: AppendSource + ?Sized>(&self, request: &R) -> Result<PendingAppend> {
        validate_request(request, self.limits())?;
        self.sequence(request)
    }

    /// Check a request's events (names, JSON, sizes) on their own, before
    /// [`submit_checked`](Self::submit_checked): a caller receiving a stream of
    /// requests can check the next one on another task while the current one is being
    /// sequenced. Expected versions and event ids are checked when it is submitted.
    pub fn check<R: AppendSource>(&self, request: R) -> Result<Checked<R>> {
        validate_request(&request, self.limits())?;
        Ok(Checked(request))
    }

    /// [`submit_source`](Self::submit_source) for a request already checked by
    /// [`check`](Self::check).
    pub fn submit_checked<R: AppendSource>(&self, request: &Checked<R>) -> Result<PendingAppend> {
        self.sequence(&request.0)
    }

    fn limits(&self) -> Limits {
        let config = &self.inner.shared.config;
        Limits {
            max_payload_bytes: config.max_payload_bytes,
            max_request_bytes: config.max_request_bytes,
        }
    }

    /// Sequence a checked request and queue it for the WAL writer.
    fn sequence<R: AppendSource + ?Sized>(&self, request: &R) -> Result<PendingAppend> {
        let shared = &self.inner.shared;
        let now = shared.clock.now_micros();
        let (outcome, ack, assigned_up_to) = {
            let mut guard = shared.state.lock();
            guard.check_open()?;
            let state = &mut *guard;
            let outcome = state.seq.append(request, now, &mut state.staging);
            let outcome = outcome.inspect_err(|_| state.staging.clear())?;
            let ack = matches!(outcome, Outcome::Appended(_)).then(|| {
                let (tx, rx) = oneshot::channel();
                state.staging.waiters.push(tx);
                shared.queue.lock().pending.absorb(&mut state.staging);
                shared.wake.notify_one();
                rx
            });
            (outcome, ack, state.seq.next_position)
        };
        let waiting = match outcome {
            Outcome::Appended(result) => {
                let ack = ack.ok_or_else(|| Error::Internal("append without a waiter".into()))?;
                Waiting::Durable { result, ack }
            }
            Outcome::Retry(locations) => {
                let mut entities = Vec::with_capacity(locations.len());
                for i in 0..request.part_count() {
                    let part = request.part(i);
                    entities.extend((0..part.len).map(|_| part.entity_id.to_string()));
                }
                Waiting::Retry {
                    locations,
                    entities,
                    assigned_up_to,
                }
            }
        };
        Ok(PendingAppend {
            store: self.clone(),
            tenant: request.tenant().to_string(),
            waiting,
        })
    }

    /// Up to `max_count` events of a stream, from version `from_version` (1 = the
    /// start), in version order, from the buffer and the Parquet files alike. An
    /// unknown stream reads as empty.
    pub async fn read_stream(
        &self,
        tenant: &str,
        entity_id: &str,
        from_version: u64,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let location =
            self.inner
                .shared
                .state
                .lock()
                .seq
                .locate(tenant, entity_id, from_version, max_count);
        let Some(location) = location else {
            return Ok(Vec::new());
        };
        read_events_at(
            &self.inner.shared,
            location.partition,
            (tenant, entity_id),
            location.offsets,
        )
        .await
    }

    /// The stream as the store had it at `as_of_micros` (microseconds since the Unix
    /// epoch): its events ingested at or before that time, in version order, from the
    /// buffer and the Parquet files alike.
    pub async fn read_stream_as_of(
        &self,
        tenant: &str,
        entity_id: &str,
        as_of_micros: i64,
    ) -> Result<Vec<RecordedEvent>> {
        let mut events = self.read_stream(tenant, entity_id, 1, usize::MAX).await?;
        events.retain(|e| e.ingested_at_micros <= as_of_micros);
        Ok(events)
    }

    /// The entity's state as of `as_of_micros` (`None`: now): the JSON merge of its
    /// payloads in version order (see [`crate::snapshot`]), starting from its newest
    /// snapshot at or before that time. `None` when the stream had no events then.
    pub async fn entity_state(
        &self,
        tenant: &str,
        entity_id: &str,
        as_of_micros: Option<i64>,
    ) -> Result<Option<EntityState>> {
        let (tenant, entity_id) = (tenant.to_string(), entity_id.to_string());
        self.on_tier(move |store| async move {
            store.compute_state(&tenant, &entity_id, as_of_micros).await
        })
        .await
    }

    /// [`EventStore::entity_state`] for synchronous callers (query functions): blocks
    /// the calling thread until it is computed.
    pub fn entity_state_blocking(
        &self,
        tenant: &str,
        entity_id: &str,
        as_of_micros: Option<i64>,
    ) -> Result<Option<EntityState>> {
        let (store, tenant, entity_id) = (self.clone(), tenant.to_string(), entity_id.to_string());
        self.inner
            .shared
            .runtime
            .block_on(async move { store.compute_state(&tenant, &entity_id, as_of_micros).await })?
    }

    /// Store a snapshot of the entity's current state (returned; `None` when the
    /// stream has no events). Later states start from it.
    pub async fn create_snapshot(
        &self,
        tenant: &str,
        entity_id: &str,
    ) -> Result<Option<EntityState>> {
        let (tenant, entity_id) = (tenant.to_string(), entity_id.to_string());
        self.on_tier(move |store| async move {
            let state = store.compute_state(&tenant, &entity_id, None).await?;
            if let Some(state) = &state {
                snapshot::save(&store.table_storage(), &tenant, &entity_id, state).await?;
            }
            Ok(state)
        })
        .await
    }

    /// The versions of the entity that have a snapshot, ascending.
    pub async fn snapshots(&self, tenant: &str, entity_id: &str) -> Result<Vec<u64>> {
        let (tenant, entity_id) = (tenant.to_string(), entity_id.to_string());
        self.on_tier(move |store| async move {
            snapshot::versions(&store.table_storage(), &tenant, &entity_id).await
        })
        .await
    }

    /// The entity's newest stored snapshot, if it has one.
    pub async fn latest_snapshot(
        &self,
        tenant: &str,
        entity_id: &str,
    ) -> Result<Option<EntityState>> {
        let (tenant, entity_id) = (tenant.to_string(), entity_id.to_string());
        self.on_tier(move |store| async move {
            let storage = store.table_storage();
            let versions = snapshot::versions(&storage, &tenant, &entity_id).await?;
            match versions.last() {
                Some(v) => Ok(Some(
                    snapshot::load(&storage, &tenant, &entity_id, *v).await?,
                )),
                None => Ok(None),
            }
        })
        .await
    }

    /// Run `work` (given a handle to this store) on the tiering runtime, where every
    /// object store call belongs, and await it.
    async fn on_tier<T, F, Fut>(&self, work: F) -> Result<T>
    where
        F: FnOnce(EventStore) -> Fut,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        self.inner.shared.runtime.run(work(self.clone())).await?
    }

    async fn compute_state(
        &self,
        tenant: &str,
        entity_id: &str,
        as_of: Option<i64>,
    ) -> Result<Option<EntityState>> {
        let storage = self.table_storage();
        let mut start = None;
        for version in snapshot::versions(&storage, tenant, entity_id)
            .await?
            .iter()
            .rev()
        {
            let saved = snapshot::load(&storage, tenant, entity_id, *version).await?;
            if as_of.is_none_or(|t| saved.ingested_at_micros <= t) {
                start = Some(saved);
                break;
            }
        }
        let from = start.as_ref().map_or(1, |s| s.version + 1);
        let mut events = self
            .read_stream(tenant, entity_id, from, usize::MAX)
            .await?;
        if let Some(t) = as_of {
            events.retain(|e| e.ingested_at_micros <= t);
        }
        let folded = events.len() as u64;
        let state = snapshot::fold(start, &events)?;
        if let Some(state) = &state {
            self.snapshot_if_due(tenant, entity_id, folded, state);
        }
        Ok(state)
    }

    /// Store `state` as a snapshot, in the background, when computing it took at least
    /// `snapshot_every_events` events past the newest snapshot, so that the next read
    /// of the entity starts from it. Appends never pay for snapshots.
    fn snapshot_if_due(&self, tenant: &str, entity_id: &str, folded: u64, state: &EntityState) {
        let every = self.inner.shared.config.snapshot_every_events;
        if every == 0 || folded < every {
            return;
        }
        let storage = self.table_storage();
        let (tenant, entity_id) = (tenant.to_string(), entity_id.to_string());
        let state = state.clone();
        self.inner.shared.runtime.spawn(async move {
            if let Err(err) = snapshot::save(&storage, &tenant, &entity_id, &state).await {
                tracing::warn!(entity_id, error = %err, "automatic snapshot failed");
            }
        });
    }

    /// [`EventStore::read_stream`] for synchronous callers (query functions running
    /// inside an execution engine): blocks the calling thread until the read is done.
    pub fn read_stream_blocking(
        &self,
        tenant: &str,
        entity_id: &str,
        from_version: u64,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let shared = &self.inner.shared;
        let location = shared
            .state
            .lock()
            .seq
            .locate(tenant, entity_id, from_version, max_count);
        let Some(location) = location else {
            return Ok(Vec::new());
        };
        let task_shared = Arc::clone(shared);
        let stream = (tenant.to_owned(), entity_id.to_owned());
        shared.runtime.block_on(async move {
            read_events_at(
                &task_shared,
                location.partition,
                (&stream.0, &stream.1),
                location.offsets,
            )
            .await
        })?
    }

    /// The stream's current version, counting only visible events; `None` when the
    /// stream has none.
    pub fn stream_version(&self, tenant: &str, entity_id: &str) -> Option<u64> {
        let state = self.inner.shared.state.lock();
        let buffer = &self.inner.shared.buffer;
        let version = state
            .seq
            .versions_below(tenant, entity_id, |partition| buffer.next_offset(partition))?;
        (version > 0).then_some(version)
    }

    /// Up to `max_count` events of a partition from `from_offset`, as Arrow batches
    /// (all tenants: this is a store-level read for flushers and pipelines).
    pub async fn read_partition(
        &self,
        partition: u16,
        from_offset: u64,
        max_count: usize,
    ) -> Result<Vec<RecordBatch>> {
        let shared = &self.inner.shared;
        let count = shared.meta.partitions;
        if partition >= count {
            return Err(Error::PartitionOutOfRange { partition, count });
        }
        let to = from_offset
            .saturating_add(max_count as u64)
            .min(shared.buffer.next_offset(partition));
        loop {
            let manifest = shared.tier.manifest();
            let split = manifest.next_offsets[usize::from(partition)];
            let mut out = Vec::new();
            if from_offset < split {
                let range = from_offset..to.min(split);
                let task_shared = Arc::clone(shared);
                let task_manifest = Arc::clone(&manifest);
                out = shared
                    .runtime
                    .run(async move {
                        task_shared
                            .tier
                            .read_offsets(&task_manifest, partition, range)
                            .await
                    })
                    .await??;
            }
            if to > split {
                match shared
                    .buffer
                    .read_offsets(partition, from_offset.max(split), to)?
                {
                    Some(batches) => out.extend(batches),
                    None => continue,
                }
            }
            return Ok(out);
        }
    }

    /// Write every visible event not yet in Parquet to the table storage now, and
    /// wait until the manifest naming the files is committed. The background flusher
    /// does this on its own every `flush_interval_ms`.
    pub async fn flush(&self) -> Result<FlushReport> {
        self.on_tier(|store| async move { flush(&store.inner.shared, Release::Flushed).await })
            .await
    }

    /// Merge small Parquet files and delete replaced ones whose grace period is over
    /// (see `compaction_min_files`, `compaction_target_bytes`,
    /// `retired_file_grace_ms`). The background flusher runs this after each flush.
    pub async fn compact(&self) -> Result<CompactionReport> {
        self.on_tier(|store| async move { compact(&store.inner.shared).await })
            .await
    }

    /// A consistent view of the log for table scans: the manifest's files hold every
    /// position below its `flushed_position`; `buffered` holds the rest of
    /// `partitions`' visible rows, up to `head`.
    pub fn table_snapshot(&self, partitions: &BTreeSet<u16>) -> Result<TableSnapshot> {
        let shared = &self.inner.shared;
        'retry: loop {
            let manifest = shared.tier.manifest();
            let head = self.head_position();
            let mut buffered = Vec::new();
            for partition in partitions {
                match shared
                    .buffer
                    .read_positions(*partition, manifest.flushed_position, head)?
                {
                    Some(batches) => buffered.extend(batches),
                    None => continue 'retry,
                }
            }
            return Ok(TableSnapshot {
                manifest,
                buffered,
                head,
            });
        }
    }

    /// The object store holding the Parquet files (the paths in the manifest are
    /// relative to it).
    pub fn table_storage(&self) -> Arc<dyn object_store::ObjectStore> {
        Arc::clone(self.inner.shared.tier.store())
    }

    /// The current manifest: which Parquet files hold which part of the log.
    pub fn manifest(&self) -> Arc<Manifest> {
        self.inner.shared.tier.manifest()
    }

    /// Follow the log from `from_position`: first the events already there, then new
    /// ones as they become visible, with no gap or duplicate between the two.
    pub fn subscribe(
        &self,
        tenant: &str,
        from_position: u64,
        filter: SubscriptionFilter,
    ) -> Subscription {
        Subscription::new(
            Arc::clone(&self.inner.shared),
            tenant.to_string(),
            from_position,
            filter,
        )
    }

    /// The first position not yet visible: a subscription from here sees only new events.
    pub fn head_position(&self) -> u64 {
        *self.inner.shared.head.borrow()
    }

    /// The store's partition count.
    pub fn partitions(&self) -> u16 {
        self.inner.shared.meta.partitions
    }

    /// The store's figures.
    pub fn stats(&self) -> StoreStats {
        let shared = &self.inner.shared;
        let (streams, events) = shared.state.lock().seq.counts();
        let c = &shared.counters;
        let t = &shared.tier_counters;
        let manifest = shared.tier.manifest();
        let partition_stats = (0..shared.meta.partitions)
            .map(|partition| {
                let (events, buffered_events, batches, buffer_bytes) =
                    shared.buffer.partition_size(partition);
                PartitionStats {
                    partition,
                    events,
                    buffered_events,
                    batches,
                    buffer_bytes,
                }
            })
            .collect();
        StoreStats {
            partitions: shared.meta.partitions,
            streams,
            events,
            visible_position: self.head_position(),
            durability: shared.config.durability.to_string(),
            wal: WalStats {
                segment_id: c.segment_id.load(Ordering::Relaxed),
                segment_bytes: c.segment_bytes.load(Ordering::Relaxed),
                groups: c.groups.load(Ordering::Relaxed),
                records: c.records.load(Ordering::Relaxed),
                bytes_written: c.bytes.load(Ordering::Relaxed),
                fsyncs: c.fsyncs.load(Ordering::Relaxed),
                fsync_micros: c.fsync_micros.load(Ordering::Relaxed),
            },
            tier: TierStats {
                manifest_version: manifest.version,
                flushed_position: manifest.flushed_position,
                files: manifest.files.len() as u64,
                file_bytes: manifest.files.iter().map(|f| f.bytes).sum(),
                flushes: t.flushes.load(Ordering::Relaxed),
                files_written: t.files_written.load(Ordering::Relaxed),
                bytes_written: t.bytes_written.load(Ordering::Relaxed),
                compactions: t.compactions.load(Ordering::Relaxed),
                files_compacted: t.files_compacted.load(Ordering::Relaxed),
                retired_files: manifest.retired.len() as u64,
                footers_cached: self.inner.shared.tier.reader.footers_cached() as u64,
                last_error: t.last_error.lock().clone(),
            },
            partition_stats,
        }
    }

    /// The durability policy in force.
    pub fn durability(&self) -> Durability {
        self.inner.shared.config.durability
    }

    /// Stop accepting appends, write and fsync what is pending, stop the writer and
    /// release the data directory. Returns the WAL's failure, if it had one.
    /// Idempotent; dropping the last handle closes the store too.
    pub fn close(&self) -> Result<()> {
        self.inner.close()
    }

    async fn wait_visible(&self, position: u64) -> Result<()> {
        let mut head = self.inner.shared.head.subscribe();
        loop {
            if *head.borrow_and_update() >= position {
                return Ok(());
            }
            self.inner.shared.state.lock().check_open()?;
            head.changed().await.map_err(|_| Error::Closed)?;
        }
    }
}

/// The events of stream (`tenant`, `entity_id`) at `offsets` (ascending) of
/// `partition`, from Parquet below the manifest's split and from the buffer above
/// it; a prefix when some are not yet visible.
pub(crate) async fn read_events_at(
    shared: &Arc<Shared>,
    partition: u16,
    stream: (&str, &str),
    offsets: Vec<u64>,
) -> Result<Vec<RecordedEvent>> {
    loop {
        let manifest = shared.tier.manifest();
        let split = manifest.next_offsets[usize::from(partition)];
        let flushed = offsets.partition_point(|o| *o < split);
        let mut events = Vec::new();
        if flushed > 0 {
            events.reserve_exact(offsets.len());
            let task_shared = Arc::clone(shared);
            let task_manifest = Arc::clone(&manifest);
            let wanted = offsets[..flushed].to_vec();
            let (tenant, entity_id) = (stream.0.to_owned(), stream.1.to_owned());
            let batches = shared
                .runtime
                .run(async move {
                    task_shared
                        .tier
                        .read_stream(&task_manifest, partition, (&tenant, &entity_id), &wanted)
                        .await
                })
                .await??;
            let mut shared = SharedText::default();
            for batch in &batches {
                let columns = EventColumns::new(batch);
                events.extend((0..batch.num_rows()).map(|row| columns.event(row, &mut shared)));
            }
        }
        if flushed < offsets.len() {
            match shared
                .buffer
                .events_at(partition, stream, &offsets[flushed..])?
            {
                Some(buffered) if events.is_empty() => return Ok(buffered),
                Some(buffered) => events.extend(buffered),
                None => continue,
            }
        }
        return Ok(events);
    }
}

/// A request whose events [`EventStore::check`] found valid, ready for
/// [`EventStore::submit_checked`].
#[derive(Debug)]
pub struct Checked<R>(R);

impl<R> Checked<R> {
    /// The request.
    pub fn request(&self) -> &R {
        &self.0
    }
}

/// A request that [`EventStore::submit`] has sequenced; awaiting
/// [`durable`](Self::durable) gives what [`EventStore::append`] returns.
#[derive(Debug)]
#[must_use = "an append is acknowledged only once `durable` returns"]
pub struct PendingAppend {
    store: EventStore,
    tenant: String,
    waiting: Waiting,
}

#[derive(Debug)]
enum Waiting {
    /// New events, durable once the WAL writer answers.
    Durable {
        result: AppendResult,
        ack: oneshot::Receiver<Result<()>>,
    },
    /// A retry of events already in the log, at these (partition, offset)s.
    Retry {
        locations: Vec<(u16, u64)>,
        entities: Vec<String>,
        assigned_up_to: u64,
    },
}

impl PendingAppend {
    /// Wait until the events are durable (as the durability policy defines it) and
    /// visible to readers.
    pub async fn durable(self) -> Result<AppendResult> {
        let store = &self.store;
        match self.waiting {
            Waiting::Durable { result, ack } => {
                ack.await.map_err(|_| Error::Closed)??;
                Ok(result)
            }
            Waiting::Retry {
                locations,
                entities,
                assigned_up_to,
            } => {
                store.wait_visible(assigned_up_to).await?;
                let shared = &store.inner.shared;
                let mut events = Vec::with_capacity(locations.len());
                for (entity_id, (partition, offset)) in entities.iter().zip(locations) {
                    let stream = (self.tenant.as_str(), entity_id.as_str());
                    let found = read_events_at(shared, partition, stream, vec![offset]).await?;
                    let event = found.into_iter().next().ok_or_else(|| {
                        Error::Internal(format!(
                            "event at partition {partition} offset {offset} is not visible"
                        ))
                    })?;
                    events.push(event);
                }
                Ok(retry_acks(&events))
            }
        }
    }
}

impl Inner {
    fn close(&self) -> Result<()> {
        {
            let mut state = self.shared.state.lock();
            state.closing = true;
            self.shared.queue.lock().closing = true;
            self.shared.wake.notify_one();
        }
        if let Some(writer) = self.writer.lock().take() {
            writer
                .join()
                .map_err(|_| Error::Internal("the WAL writer thread panicked".into()))?;
        }
        // Let a flush in progress finish (it may be deleting WAL segments), then stop
        // the tiering runtime.
        self.shared.flush_wake.notify_one();
        let shared = Arc::clone(&self.shared);
        let _ = self.shared.runtime.block_on(async move {
            drop(shared.tier.change_lock.lock().await);
        });
        self.shared.runtime.shutdown();
        // The writer and the flusher have stopped: nothing touches the directory any more.
        self.shared.lock.lock().take();
        match &self.shared.state.lock().failure {
            Some(message) => Err(Error::WalFailed(message.clone())),
            None => Ok(()),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(err) = self.close() {
            tracing::error!(error = %err, "closing the event store");
        }
    }
}

/// Take the data directory's lock, so that one process at a time owns it.
///
/// A lock just released can look held for a moment: a child process forked by
/// another thread shares the descriptor until its exec closes it. So a held lock is
/// retried for up to `LOCK_WAIT` before it is reported.
fn lock_dir(dir: &Path) -> Result<File> {
    const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
    let path = dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .context(|| format!("opening {}", path.display()))?;
    let started = std::time::Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(fs::TryLockError::WouldBlock) if started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(fs::TryLockError::WouldBlock) => return Err(Error::Locked(dir.to_path_buf())),
            Err(fs::TryLockError::Error(e)) => {
                return Err(Error::io(format!("locking {}", path.display()), e));
            }
        }
    }
}

/// Remove segment files whose creation was interrupted before the rename.
fn remove_temp_files(wal_dir: &Path) -> Result<()> {
    let entries = fs::read_dir(wal_dir).context(|| format!("listing {}", wal_dir.display()))?;
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().ends_with(".tmp") {
            let path = entry.path();
            fs::remove_file(&path).context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

/// Replay the WAL into the sequencer (already restored from the manifest's files) and
/// the buffer, skipping events the files hold. Returns where the writer goes on, and
/// each segment's end position.
fn recover(
    wal_dir: &Path,
    manifest: &Manifest,
    mut seq: Sequencer,
    buffer: &LogBuffer,
) -> Result<(Sequencer, Option<Tail>, BTreeMap<u64, u64>)> {
    let flushed = manifest.flushed_position;
    let mut publisher = buffer.publisher();
    let mut reports = Vec::new();
    let mut segments = BTreeMap::new();
    let end = std::cell::Cell::new(0u64);
    let next_sequence = scan_dir(
        wal_dir,
        |report| {
            segments.insert(report.segment_id, end.get());
            reports.push(report);
        },
        |event| {
            end.set(end.get().max(event.position + 1));
            if event.position < flushed {
                return Ok(());
            }
            seq.replay(event)?;
            publisher.push(event).map_err(|e| e.to_string())
        },
    )?;
    drop(publisher);
    seq.next_sequence = next_sequence;
    let Some(last) = reports.last() else {
        return Ok((seq, None, segments));
    };
    match &last.status {
        SegmentStatus::Corrupt { offset, reason } => {
            return Err(Error::Corrupt {
                file: last.path.clone(),
                offset: *offset,
                reason: reason.clone(),
            });
        }
        SegmentStatus::TornTail { offset, reason } => tracing::warn!(
            file = %last.path.display(),
            offset,
            reason = %reason,
            "truncating the WAL after its last whole record: an interrupted write, or the old contents of a reused segment file"
        ),
        SegmentStatus::Ok => {}
    }
    Ok((
        seq,
        Some(Tail {
            segment_id: last.segment_id,
            valid_bytes: last.valid_bytes,
            file_bytes: last.file_bytes,
        }),
        segments,
    ))
}
