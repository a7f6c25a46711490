//! [`EventStore`]: open (with recovery), append, read, subscribe, stats, close.

use std::fs::{self, File};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use arrow::array::RecordBatch;
use parking_lot::{Condvar, Mutex};
use tokio::sync::{oneshot, watch};

use crate::buffer::{LogBuffer, event_at};
use crate::clock::{Clock, SystemClock};
use crate::config::{Durability, StoreConfig};
use crate::error::{Error, IoContext, Result};
use crate::event::{AppendRequest, AppendResult, Limits, RecordedEvent, validate_request};
use crate::meta::{self, StoreMeta};
use crate::sequencer::{Group, Outcome, Sequencer, retry_acks};
use crate::subscription::{Subscription, SubscriptionFilter};
use crate::wal::WAL_DIR;
use crate::wal::scan::{SegmentStatus, scan_dir};
use crate::wal::writer::{OsSegmentIo, SegmentIo, SegmentWriter, Tail};

/// Name of the lock file that keeps a second process out of the data directory.
const LOCK_FILE: &str = "LOCK";

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
/// let events = store.read_stream("acme", "order-1", 1, 100)?;
/// assert_eq!(events[0].event_type, "order.placed");
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
    /// Wakes the writer thread when a group is pending or the store closes.
    pub wake: Condvar,
    pub buffer: LogBuffer,
    /// The first position not yet visible to readers.
    pub head: watch::Sender<u64>,
    pub counters: WalCounters,
    /// The data directory's lock, released when the store closes.
    lock: Mutex<Option<File>>,
}

/// What the state lock guards.
#[derive(Debug)]
pub(crate) struct LogState {
    pub seq: Sequencer,
    pub pending: Group,
    pub failure: Option<String>,
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

/// One partition's figures.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionStats {
    /// The partition.
    pub partition: u16,
    /// Events buffered.
    pub events: u64,
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
        Self::open_with(config, clock, Arc::new(OsSegmentIo))
    }

    /// [`EventStore::open`] with an injected clock and WAL segment I/O (tests use it
    /// to make writes or fsyncs fail).
    pub fn open_with(
        config: StoreConfig,
        clock: Arc<dyn Clock>,
        segment_io: Arc<dyn SegmentIo>,
    ) -> Result<Self> {
        config.validate()?;
        let dir = config.data_dir.clone();
        fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
        let lock = lock_dir(&dir)?;
        let meta = meta::load_or_create(&dir, config.partitions, clock.now_micros())?;
        let wal_dir = dir.join(WAL_DIR);
        fs::create_dir_all(&wal_dir).context(|| format!("creating {}", wal_dir.display()))?;
        remove_temp_files(&wal_dir)?;

        let buffer = LogBuffer::new(meta.partitions, config.buffer_batch_rows);
        let (seq, tail) = recover(&wal_dir, meta.partitions, &buffer)?;
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
            durability = %config.durability,
            "event store open"
        );
        let shared = Arc::new(Shared {
            config,
            meta,
            clock,
            state: Mutex::new(LogState {
                seq,
                pending: Group::default(),
                failure: None,
                closing: false,
            }),
            wake: Condvar::new(),
            buffer,
            head,
            counters: WalCounters::default(),
            lock: Mutex::new(Some(lock)),
        });
        let writer_shared = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("allsource-wal".into())
            .spawn(move || crate::commit::run(writer_shared, wal))
            .context(|| "starting the WAL writer thread".to_string())?;
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
        let shared = &self.inner.shared;
        let limits = Limits {
            max_payload_bytes: shared.config.max_payload_bytes,
            max_request_bytes: shared.config.max_request_bytes,
        };
        validate_request(&request, limits)?;
        let now = shared.clock.now_micros();
        let (outcome, ack, assigned_up_to) = {
            let mut guard = shared.state.lock();
            guard.check_open()?;
            let state = &mut *guard;
            let outcome = state.seq.append(&request, now, &mut state.pending)?;
            let ack = matches!(outcome, Outcome::Appended(_)).then(|| {
                let (tx, rx) = oneshot::channel();
                state.pending.waiters.push(tx);
                shared.wake.notify_one();
                rx
            });
            (outcome, ack, state.seq.next_position)
        };
        match outcome {
            Outcome::Appended(result) => {
                let ack = ack.ok_or_else(|| Error::Internal("append without a waiter".into()))?;
                ack.await.map_err(|_| Error::Closed)??;
                Ok(result)
            }
            Outcome::Retry(locations) => {
                self.wait_visible(assigned_up_to).await?;
                let events = locations
                    .iter()
                    .map(|(partition, offset)| self.event_at_offset(*partition, *offset))
                    .collect::<Result<Vec<_>>>()?;
                Ok(retry_acks(&events))
            }
        }
    }

    /// Up to `max_count` events of a stream, from version `from_version` (1 = the
    /// start), in version order. An unknown stream reads as empty.
    pub fn read_stream(
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
        self.inner
            .shared
            .buffer
            .events_at(location.partition, &location.offsets)
    }

    /// The stream's current version, counting only visible events; `None` when the
    /// stream has none.
    pub fn stream_version(&self, tenant: &str, entity_id: &str) -> Option<u64> {
        let state = self.inner.shared.state.lock();
        let (partition, offsets) = state.seq.stream_offsets(tenant, entity_id)?;
        let visible = self.inner.shared.buffer.next_offset(partition);
        let version = offsets.partition_point(|o| *o < visible) as u64;
        (version > 0).then_some(version)
    }

    /// Up to `max_count` events of a partition from `from_offset`, as Arrow batches
    /// (all tenants: this is a store-level read for flushers and pipelines).
    pub fn read_partition(
        &self,
        partition: u16,
        from_offset: u64,
        max_count: usize,
    ) -> Result<Vec<RecordBatch>> {
        let count = self.inner.shared.meta.partitions;
        if partition >= count {
            return Err(Error::PartitionOutOfRange { partition, count });
        }
        let to = from_offset.saturating_add(max_count as u64);
        self.inner
            .shared
            .buffer
            .read_offsets(partition, from_offset, to)
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
        let partition_stats = (0..shared.meta.partitions)
            .map(|partition| {
                let (events, batches, buffer_bytes) = shared.buffer.partition_size(partition);
                PartitionStats {
                    partition,
                    events,
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

    fn event_at_offset(&self, partition: u16, offset: u64) -> Result<RecordedEvent> {
        let batches = self
            .inner
            .shared
            .buffer
            .read_offsets(partition, offset, offset + 1)?;
        batches
            .first()
            .filter(|b| b.num_rows() == 1)
            .map(|b| event_at(b, 0))
            .ok_or_else(|| {
                Error::Internal(format!(
                    "event at partition {partition} offset {offset} is not visible"
                ))
            })
    }
}

impl Inner {
    fn close(&self) -> Result<()> {
        {
            let mut state = self.shared.state.lock();
            state.closing = true;
            self.shared.wake.notify_one();
        }
        if let Some(writer) = self.writer.lock().take() {
            writer
                .join()
                .map_err(|_| Error::Internal("the WAL writer thread panicked".into()))?;
        }
        // The writer has stopped: nothing touches the directory any more.
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

/// Replay the WAL into a sequencer and the buffer. Returns where the writer goes on.
fn recover(
    wal_dir: &Path,
    partitions: u16,
    buffer: &LogBuffer,
) -> Result<(Sequencer, Option<Tail>)> {
    let mut seq = Sequencer::new(partitions);
    let mut publisher = buffer.publisher();
    let mut reports = Vec::new();
    let next_sequence = scan_dir(
        wal_dir,
        |report| reports.push(report),
        |event| {
            seq.replay(event)?;
            publisher.push(event).map_err(|e| e.to_string())
        },
    )?;
    drop(publisher);
    seq.next_sequence = next_sequence;
    let Some(last) = reports.last() else {
        return Ok((seq, None));
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
            "truncating a torn final WAL record left by an interrupted write"
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
    ))
}
