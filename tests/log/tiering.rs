//! Tiering to Parquet: flushed events read back from the files (after a reopen too),
//! WAL segments deleted once their events are committed, and crashes around the
//! manifest commit losing and duplicating nothing.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use allsource::engine::tier::manifest::RowOrder;
use allsource::engine::{
    AppendRequest, Durability, Environment, EventData, EventStore, ExpectedVersion, RecordedEvent,
    StoreConfig, SubscriptionFilter,
};
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use crate::util::{append, event, wal_spares};

fn config(dir: &Path) -> StoreConfig {
    StoreConfig::new(dir)
        .with_durability(Durability::Always)
        .with_wal_segment_bytes(4096)
        .with_flush_interval_ms(0)
}

fn wal_segments(dir: &Path) -> usize {
    crate::util::wal_segments(dir).len()
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|x| x == "parquet") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dir.join("tables").join("data"), &mut out);
    out.sort();
    out
}

async fn all_streams(store: &EventStore, streams: u64) -> Vec<Vec<RecordedEvent>> {
    let mut out = Vec::new();
    for s in 0..streams {
        out.push(
            store
                .read_stream("t", &format!("s{s}"), 1, usize::MAX)
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    out
}

async fn subscribe_all(store: &EventStore, from: u64) -> Vec<RecordedEvent> {
    let mut subscription = store.subscribe("t", from, SubscriptionFilter::all());
    let mut events = Vec::new();
    while subscription.position() < store.head_position() {
        events.extend(
            subscription
                .next_batch()
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    events
}

/// Events flushed to Parquet read back the same through every read path, before
/// and after a reopen, mixed with events still in the buffer; the WAL shrinks.
#[tokio::test]
async fn flushed_events_read_back_the_same_from_parquet() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = EventStore::open(config(dir.path())).unwrap_or_else(|e| panic!("{e}"));
    for i in 0..300u64 {
        let events = (0..1 + i % 3).map(|k| event("x", i * 10 + k)).collect();
        append(&store, &format!("s{}", i % 7), ExpectedVersion::Any, events)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let streams_before = all_streams(&store, 7).await;
    let log_before = subscribe_all(&store, 0).await;
    let segments_before = wal_segments(dir.path());
    assert!(segments_before > 3, "{segments_before} WAL segments");

    let report = store.flush().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.events, 600);
    assert_eq!(report.flushed_position, 600);
    assert!(report.files >= 1 && report.files <= 32, "{report:?}");
    assert!(report.wal_segments_deleted >= 1, "{report:?}");
    assert_eq!(
        wal_segments(dir.path()),
        segments_before - report.wal_segments_deleted as usize
    );
    assert_eq!(parquet_files(dir.path()).len() as u64, report.files);
    let stats = store.stats();
    assert_eq!(stats.tier.flushed_position, 600);
    // The flush loaded the new files' footers: the first reads need not.
    assert_eq!(stats.tier.footers_cached, report.files);
    assert_eq!(
        stats
            .partition_stats
            .iter()
            .map(|p| p.buffered_events)
            .sum::<u64>(),
        0
    );
    // Nothing is left in the buffer: every read below comes from Parquet.
    assert_eq!(all_streams(&store, 7).await, streams_before);
    assert_eq!(subscribe_all(&store, 0).await, log_before);
    let p = log_before[0].partition;
    let from_parquet = store
        .read_partition(p, 0, usize::MAX)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let rows: usize = from_parquet.iter().map(|b| b.num_rows()).sum();
    assert_eq!(
        rows as u64,
        store.stats().partition_stats[usize::from(p)].events
    );

    // More events stay in the buffer; reads cross the boundary.
    append(&store, "s0", ExpectedVersion::Any, vec![event("y", 9999)])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let s0 = store
        .read_stream("t", "s0", 1, usize::MAX)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s0.len(), streams_before[0].len() + 1);
    assert_eq!(&s0[..streams_before[0].len()], &streams_before[0][..]);
    assert_eq!(s0.last().map(|e| &*e.event_type), Some("y"));
    store.close().unwrap_or_else(|e| panic!("{e}"));

    // After a reopen: versions, offsets and positions continue; nothing is doubled.
    let store = EventStore::open(config(dir.path())).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.stats().events, 601);
    assert_eq!(
        store
            .read_stream("t", "s0", 1, usize::MAX)
            .await
            .unwrap_or_default(),
        s0
    );
    let mut log = subscribe_all(&store, 0).await;
    assert_eq!(log.len(), 601);
    log.pop();
    assert_eq!(log, log_before);
    let next = append(
        &store,
        "s0",
        ExpectedVersion::Exact(s0.len() as u64),
        vec![event("z", 1)],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(next.events[0].position, 601);
    store.flush().await.unwrap_or_else(|e| panic!("{e}"));
    store.close().unwrap_or_else(|e| panic!("{e}"));
    let store = EventStore::open(config(dir.path())).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(subscribe_all(&store, 0).await.len(), 602);
    assert_eq!(store.stats().tier.manifest_version, 2);
}

/// A retry of a request whose events are already in Parquet returns the original
/// acknowledgements and appends nothing.
/// Segments dropped by a flush are kept as spare files and reused by the next
/// rotations: the reused files hold their old records after the new ones, and a
/// reopen (recovery reads every segment) and `verify` tell the two apart and keep
/// exactly the new events.
#[tokio::test]
async fn dropped_wal_segments_are_reused_and_their_old_records_ignored() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = EventStore::open(config(dir.path())).unwrap_or_else(|e| panic!("{e}"));
    // Events of ~3 KB first, so the segments that become spares are larger than what
    // the small events after them fill: each reused file keeps old bytes at its end.
    let fill = |from: u64, to: u64, pad: usize| {
        let store = store.clone();
        async move {
            for i in from..to {
                let payload = format!(r#"{{"n":{i},"pad":"{}"}}"#, "x".repeat(pad));
                let events = vec![EventData::new("x", payload)];
                append(&store, &format!("s{}", i % 7), ExpectedVersion::Any, events)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
    };
    fill(0, 300, 3000).await;
    let report = store.flush().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(report.wal_segments_deleted >= 3, "{report:?}");
    assert_eq!(
        wal_spares(dir.path()),
        2,
        "two dropped segments kept as spares"
    );

    // The next rotations take the spares: new segment ids over old files.
    fill(300, 600, 40).await;
    assert_eq!(wal_spares(dir.path()), 0, "both spares reused");
    store.close().unwrap_or_else(|e| panic!("{e}"));
    let verified = allsource::engine::wal::verify(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        verified
            .segments
            .iter()
            .all(|s| s.status == allsource::engine::wal::SegmentStatus::Ok),
        "{verified:?}"
    );
    let with_old_bytes = verified
        .segments
        .iter()
        .filter(|s| s.valid_bytes < s.file_bytes)
        .count();
    assert_eq!(
        with_old_bytes, 2,
        "the two reused files end in old records: {verified:?}"
    );
    assert!(
        (300..600).contains(&verified.events()),
        "the WAL holds the events after the flush (and a few before, in the segment that was active): {}",
        verified.events()
    );

    let store = EventStore::open(config(dir.path())).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.stats().events, 600);
    for s in 0..7u64 {
        let ns: Vec<u64> = store
            .read_stream("t", &format!("s{s}"), 1, usize::MAX)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .map(|e| super::recovery_n(&e.payload))
            .collect();
        let expected: Vec<u64> = (0..600).filter(|i| i % 7 == s).collect();
        assert_eq!(ns, expected, "stream s{s}");
    }
    let next = append(&store, "s0", ExpectedVersion::Any, vec![event("x", 600)])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(next.events[0].position, 600);
}

#[tokio::test]
async fn a_retry_of_flushed_events_is_recognised() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = EventStore::open(config(dir.path())).unwrap_or_else(|e| panic!("{e}"));
    let request = || {
        AppendRequest::new("t").stream(
            "order-1",
            ExpectedVersion::Any,
            vec![
                EventData::new("placed", r#"{"a":1}"#).with_event_id("id-1"),
                EventData::new("paid", r#"{"a":2}"#).with_event_id("id-2"),
            ],
        )
    };
    let first = store
        .append(request())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store.flush().await.unwrap_or_else(|e| panic!("{e}"));
    store.close().unwrap_or_else(|e| panic!("{e}"));
    let store = EventStore::open(config(dir.path())).unwrap_or_else(|e| panic!("{e}"));
    let retry = store
        .append(request())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(retry.deduplicated);
    assert_eq!(retry.events, first.events);
    assert_eq!(store.stats().events, 2);
}

const CHILD_DIR: &str = "ALLSOURCE_TIER_CHILD_DIR";
const CHILD_PAUSE: &str = "ALLSOURCE_TIER_CHILD_PAUSE";

/// A local table storage that does `at` to the first manifest commit after `pass`
/// commits have gone through.
#[derive(Debug)]
struct AtCommit {
    inner: LocalFileSystem,
    at: CommitFault,
    pass: std::sync::atomic::AtomicU64,
    done: std::sync::atomic::AtomicBool,
}

/// What [`AtCommit`] does.
#[derive(Debug, Clone, Copy, PartialEq)]
enum CommitFault {
    /// Stop the process dead before the manifest is written.
    StopBefore,
    /// Stop the process dead once it is written.
    StopAfter,
    /// Write it, then answer with an error (a lost answer).
    LoseAnswer,
    /// Take this long over every manifest commit (a slow store).
    Slow(std::time::Duration),
}

impl AtCommit {
    fn new(inner: LocalFileSystem, at: CommitFault, pass: u64) -> Self {
        Self {
            inner,
            at,
            pass: std::sync::atomic::AtomicU64::new(pass),
            done: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// Open a store whose table storage (`tables/` in its data directory) is an
/// [`AtCommit`].
fn open_at_commit(config: StoreConfig, at: CommitFault, pass: u64) -> EventStore {
    let tables = config.data_dir.join("tables");
    std::fs::create_dir_all(&tables).unwrap_or_else(|e| panic!("{e}"));
    let inner = LocalFileSystem::new_with_prefix(&tables).unwrap_or_else(|e| panic!("{e}"));
    EventStore::open_with(
        config,
        Environment {
            object_store: Some(Arc::new(AtCommit::new(inner, at, pass))),
            ..Environment::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

impl std::fmt::Display for AtCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AtCommit({})", self.inner)
    }
}

fn stop_here(line: &str) -> ! {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    loop {
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}

#[async_trait::async_trait]
impl ObjectStore for AtCommit {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        use std::sync::atomic::Ordering;
        let mut manifest = location.as_ref().starts_with("manifest/");
        if let CommitFault::Slow(pause) = self.at {
            if manifest {
                tokio::time::sleep(pause).await;
            }
            return self.inner.put_opts(location, payload, opts).await;
        }
        if manifest {
            let left = self.pass.load(Ordering::SeqCst);
            if left > 0 {
                self.pass.store(left - 1, Ordering::SeqCst);
                manifest = false;
            }
        }
        let fault = manifest && !self.done.swap(true, Ordering::SeqCst);
        if fault && self.at == CommitFault::StopBefore {
            stop_here("UPLOADED");
        }
        let result = self.inner.put_opts(location, payload, opts).await;
        match (fault, self.at) {
            (true, CommitFault::StopAfter) => stop_here("COMMITTED"),
            (true, CommitFault::LoseAnswer) => {
                result?;
                Err(object_store::Error::Generic {
                    store: "AtCommit",
                    source: "the connection dropped before the answer came".into(),
                })
            }
            _ => result,
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjectPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// How the child is stopped.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    /// In a flush, after the upload, before the manifest commit.
    BeforeCommit,
    /// In a flush, right after the manifest commit.
    AfterCommit,
    /// In a compaction (after three flushes), after the upload of the merged files,
    /// before the manifest commit.
    InCompaction,
}

/// The child: append 400 events in 200 requests (three times, flushing each time,
/// before a compaction), print how many, then flush or compact and be stopped.
fn run_child(dir: &Path, stop: Stop) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    runtime.block_on(async move {
        let rounds = if stop == Stop::InCompaction { 3 } else { 1 };
        let at = match stop {
            Stop::AfterCommit => CommitFault::StopAfter,
            Stop::BeforeCommit | Stop::InCompaction => CommitFault::StopBefore,
        };
        let mut config = config(dir);
        config.compaction_min_files = 2;
        let store = open_at_commit(config, at, if rounds > 1 { rounds } else { 0 });
        for round in 0..rounds {
            let already = store.stats().events;
            for i in 0..200u64 {
                let n = already + 2 * i;
                append(
                    &store,
                    &format!("s{}", i % 5),
                    ExpectedVersion::Any,
                    vec![event("x", n), event("x", n + 1)],
                )
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            }
            if rounds > 1 {
                store
                    .flush()
                    .await
                    .unwrap_or_else(|e| panic!("round {round}: {e}"));
            }
        }
        println!("APPENDED {}", store.stats().events);
        if stop == Stop::InCompaction {
            let _ = store.compact().await;
        } else {
            let _ = store.flush().await;
        }
        panic!("the child was not stopped at the commit");
    });
}

/// Run the child until it stops at the commit, then kill it with SIGKILL.
fn crash_at_commit(dir: &Path, stop: Stop) -> u64 {
    let mut child = Command::new(std::env::current_exe().unwrap_or_else(|e| panic!("{e}")))
        .args([
            "--exact",
            "log::tiering::a_crash_around_the_manifest_commit_loses_and_duplicates_nothing",
            "--nocapture",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_PAUSE, format!("{stop:?}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut appended = 0;
    let mut stopped = false;
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if let Some(n) = line.strip_prefix("APPENDED ") {
            appended = n.trim().parse().unwrap_or(0);
        }
        if line == "UPLOADED" || line == "COMMITTED" {
            stopped = true;
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(stopped, "the child never reached the manifest commit");
    appended
}

async fn check_exactly_once(dir: &Path, total: u64) {
    let store = EventStore::open(config(dir)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.stats().events, total);
    let mut seen: HashMap<u64, u64> = HashMap::new();
    for events in all_streams(&store, 5).await {
        let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
        assert_eq!(versions, (1..=events.len() as u64).collect::<Vec<_>>());
        for e in events {
            let value: serde_json::Value =
                serde_json::from_str(&e.payload).unwrap_or_else(|err| panic!("{err}"));
            *seen
                .entry(value["n"].as_u64().unwrap_or(u64::MAX))
                .or_default() += 1;
        }
    }
    assert_eq!(seen.len() as u64, total, "every event once");
    assert!(seen.values().all(|c| *c == 1), "no event twice");
    assert_eq!(subscribe_all(&store, 0).await.len() as u64, total);
    store.close().unwrap_or_else(|e| panic!("{e}"));
}

/// Kill the process after the Parquet upload and before the manifest commit, then
/// right after the commit (before the buffer and WAL are trimmed), then in a
/// compaction between the upload of the merged files and the commit: each time the
/// store reopens with every acknowledged event exactly once, orphaned uploads are
/// deleted, and flushing and compacting work again.
#[test]
fn a_crash_around_the_manifest_commit_loses_and_duplicates_nothing() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        let stop = match std::env::var(CHILD_PAUSE).as_deref() {
            Ok("AfterCommit") => Stop::AfterCommit,
            Ok("InCompaction") => Stop::InCompaction,
            _ => Stop::BeforeCommit,
        };
        return run_child(Path::new(&dir), stop);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));

    let appended = crash_at_commit(dir.path(), Stop::BeforeCommit);
    assert_eq!(appended, 400);
    let orphans = parquet_files(dir.path());
    assert!(!orphans.is_empty(), "the upload happened before the crash");
    runtime.block_on(check_exactly_once(dir.path(), 400));
    assert!(
        parquet_files(dir.path()).is_empty(),
        "orphans are deleted on open"
    );

    let appended = crash_at_commit(dir.path(), Stop::AfterCommit);
    assert_eq!(appended, 800);
    runtime.block_on(check_exactly_once(dir.path(), 800));

    runtime.block_on(async {
        let store = EventStore::open(config(dir.path())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.stats().tier.flushed_position, 800);
        let report = store.flush().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report.events, 0);
        store.close().unwrap_or_else(|e| panic!("{e}"));
        check_exactly_once(dir.path(), 800).await;
    });

    // A compaction killed between its upload and its commit.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let appended = crash_at_commit(dir.path(), Stop::InCompaction);
    assert_eq!(appended, 1200);
    let on_disk = parquet_files(dir.path()).len();
    runtime.block_on(check_exactly_once(dir.path(), 1200));
    runtime.block_on(async {
        let mut config = config(dir.path());
        config.compaction_min_files = 2;
        let store = EventStore::open(config).unwrap_or_else(|e| panic!("{e}"));
        let manifest = store.manifest();
        assert_eq!(manifest.version, 3, "the compaction never committed");
        assert_eq!(parquet_files(dir.path()).len(), manifest.files.len());
        assert!(
            on_disk > manifest.files.len(),
            "merged files were uploaded, then collected"
        );
        let report = store.compact().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report.files_merged as usize, manifest.files.len());
        store.close().unwrap_or_else(|e| panic!("{e}"));
        check_exactly_once(dir.path(), 1200).await;
    });
}

/// Small files of a partition merge into one; the replaced files stay until their
/// grace period is over; reads are the same before, during and after.
#[tokio::test]
async fn compaction_merges_small_files_and_retires_the_old_ones() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut config = config(dir.path()).with_partitions(2);
    config.compaction_min_files = 3;
    config.retired_file_grace_ms = 0;
    let store = EventStore::open(config.clone()).unwrap_or_else(|e| panic!("{e}"));
    for round in 0..4u64 {
        for i in 0..25u64 {
            append(
                &store,
                &format!("s{}", i % 5),
                ExpectedVersion::Any,
                vec![event("x", round * 100 + i)],
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        }
        store.flush().await.unwrap_or_else(|e| panic!("{e}"));
    }
    let before = all_streams(&store, 5).await;
    let files_before = store.manifest().files.len();
    assert_eq!(files_before, 8, "4 flushes x 2 partitions");
    let report = store.compact().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (report.files_merged, report.files_written),
        (8, 2),
        "{report:?}"
    );
    let manifest = store.manifest();
    assert_eq!(manifest.files.len(), 2);
    assert_eq!(manifest.retired.len(), 8);
    assert_eq!(
        parquet_files(dir.path()).len(),
        10,
        "replaced files are kept for now"
    );
    assert_eq!(all_streams(&store, 5).await, before);
    assert_eq!(subscribe_all(&store, 0).await.len(), 100);

    // The next pass deletes the replaced files (grace period 0).
    let report = store.compact().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((report.files_merged, report.files_deleted), (0, 8));
    assert_eq!(parquet_files(dir.path()).len(), 2);
    store.close().unwrap_or_else(|e| panic!("{e}"));
    let store = EventStore::open(config).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all_streams(&store, 5).await, before);
    let stats = store.stats();
    assert_eq!((stats.tier.files, stats.tier.retired_files), (2, 0));
}

/// Entity state starts from the newest snapshot at or before the time asked for;
/// snapshots are taken on demand, and by a state read that had to merge at least
/// `snapshot_every_events` events past the newest snapshot (never by appends).
#[tokio::test]
async fn entity_state_starts_from_the_newest_snapshot() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut config = config(dir.path());
    config.snapshot_every_events = 4;
    let store = EventStore::open(config).unwrap_or_else(|e| panic!("{e}"));
    let patch = |k: u64| EventData::new("x", format!(r#"{{"k{k}":{k},"last":{k}}}"#));
    append(
        &store,
        "order-1",
        ExpectedVersion::Any,
        (1..=3).map(patch).collect(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // Three events merged: under the threshold, so the read stores nothing.
    let early = store
        .entity_state("t", "order-1", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no state"));
    assert_eq!(early.version, 3);
    let taken = store
        .create_snapshot("t", "order-1")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no state"));
    assert_eq!(
        store.snapshots("t", "order-1").await.unwrap_or_default(),
        vec![3]
    );
    assert_eq!(taken.version, 3);
    assert_eq!(
        taken.state,
        serde_json::json!({"k1":1,"k2":2,"k3":3,"last":3})
    );
    store.flush().await.unwrap_or_else(|e| panic!("{e}"));
    append(
        &store,
        "order-1",
        ExpectedVersion::Any,
        (4..=7).map(patch).collect(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // Appends store no snapshot, however many versions they add.
    assert_eq!(
        store.snapshots("t", "order-1").await.unwrap_or_default(),
        vec![3]
    );
    // A read merging versions 4..=7 (four events past the snapshot) stores the state
    // it computed, in the background.
    let seven = store
        .entity_state("t", "order-1", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no state"));
    assert_eq!((seven.version, seven.state["last"].as_u64()), (7, Some(7)));
    let started = std::time::Instant::now();
    while store.snapshots("t", "order-1").await.unwrap_or_default() != vec![3, 7] {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "no snapshot stored by the read"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let stored = store
        .latest_snapshot("t", "order-1")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no snapshot"));
    assert_eq!(stored, seven);

    // The state is computed from the snapshot, not from the events: a snapshot
    // written with a marker shows up in the result.
    let mut marked = taken.clone();
    marked.state["marker"] = serde_json::json!(true);
    let path = object_store::path::Path::from_iter(["snapshots", "t", "order-1"])
        .join(format!("{:020}.json", 3));
    object_store::ObjectStoreExt::put(
        store.table_storage().as_ref(),
        &path,
        serde_json::to_vec(&marked).unwrap_or_default().into(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let as_of_3 = store
        .entity_state("t", "order-1", Some(taken.ingested_at_micros))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no state"));
    assert_eq!(as_of_3.state["marker"], serde_json::json!(true));
    assert_eq!(as_of_3.version, 3);
    assert!(
        store
            .entity_state("t", "nobody", None)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
    );
    store.close().unwrap_or_else(|e| panic!("{e}"));
}

/// Every stream of every tenant, read from `from_version` 1 and from the middle.
async fn streams_of(store: &EventStore, tenants: &[&str], streams: u64) -> Vec<Vec<RecordedEvent>> {
    let mut out = Vec::new();
    for tenant in tenants {
        for s in 0..streams {
            let entity_id = format!("e{s}");
            for from in [1, 3] {
                out.push(
                    store
                        .read_stream(tenant, &entity_id, from, 5)
                        .await
                        .unwrap_or_else(|e| panic!("{e}")),
                );
            }
            out.push(
                store
                    .read_stream(tenant, &entity_id, 1, usize::MAX)
                    .await
                    .unwrap_or_else(|e| panic!("{e}")),
            );
        }
    }
    out
}

/// Each partition read in small steps, as a consumer going through the log would.
async fn partitions_in_steps(store: &EventStore, partitions: u16) -> Vec<(u16, u64, String)> {
    let mut out = Vec::new();
    for p in 0..partitions {
        let mut from = 0;
        loop {
            let batches = store
                .read_partition(p, from, 7)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            if rows == 0 {
                break;
            }
            for batch in &batches {
                for row in 0..batch.num_rows() {
                    let event = allsource::engine::event_at(batch, row);
                    out.push((p, event.offset, event.event_id.to_string()));
                }
            }
            from += rows as u64;
        }
    }
    out
}

/// Files are clustered by stream within each row group: with tiny pages and row
/// groups, many interleaved streams and the same entity ids in two tenants, every
/// read path (stream reads from any version, partition reads in small steps,
/// subscriptions, reopen) returns what it returned from the buffer.
#[tokio::test]
async fn clustered_files_read_back_the_same_through_every_path() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut config = config(dir.path()).with_partitions(2);
    config.parquet_page_rows = 4;
    config.parquet_row_group_rows = 37;
    config.compaction_min_files = 2;
    config.retired_file_grace_ms = 0;
    let tenants = ["t", "u"];
    let store = EventStore::open(config.clone()).unwrap_or_else(|e| panic!("{e}"));
    for i in 0..480u64 {
        let tenant = tenants[(i % 2) as usize];
        let entity_id = format!("e{}", (i * 7) % 23);
        store
            .append(AppendRequest::new(tenant).stream(
                &entity_id,
                ExpectedVersion::Any,
                vec![event("x", i)],
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if i == 200 {
            store.flush().await.unwrap_or_else(|e| panic!("{e}"));
        }
    }
    let streams = streams_of(&store, &tenants, 23).await;
    let steps = partitions_in_steps(&store, 2).await;
    let mut log = Vec::new();
    for tenant in tenants {
        let mut subscription = store.subscribe(tenant, 0, SubscriptionFilter::all());
        while subscription.position() < store.head_position() {
            log.extend(
                subscription
                    .next_batch()
                    .await
                    .unwrap_or_else(|e| panic!("{e}")),
            );
        }
    }
    assert_eq!(steps.len(), 480);

    store.flush().await.unwrap_or_else(|e| panic!("{e}"));
    let manifest = store.manifest();
    assert!(
        manifest
            .files
            .iter()
            .all(|f| f.order == RowOrder::Clustered)
    );
    assert_eq!(streams_of(&store, &tenants, 23).await, streams);
    assert_eq!(partitions_in_steps(&store, 2).await, steps);
    let report = store.compact().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.files_written, 2, "{report:?}");
    assert!(store.manifest().files.iter().all(|f| f.rows() > 37 * 3));
    assert_eq!(streams_of(&store, &tenants, 23).await, streams);
    assert_eq!(partitions_in_steps(&store, 2).await, steps);
    store.close().unwrap_or_else(|e| panic!("{e}"));

    let store = EventStore::open(config).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(streams_of(&store, &tenants, 23).await, streams);
    assert_eq!(partitions_in_steps(&store, 2).await, steps);
    let mut after = Vec::new();
    for tenant in tenants {
        let mut subscription = store.subscribe(tenant, 0, SubscriptionFilter::all());
        while subscription.position() < store.head_position() {
            after.extend(
                subscription
                    .next_batch()
                    .await
                    .unwrap_or_else(|e| panic!("{e}")),
            );
        }
    }
    assert_eq!(after, log);
    // Versions continue where they were.
    let next = store
        .append(AppendRequest::new("u").stream("e1", ExpectedVersion::Any, vec![event("y", 1)]))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let before = streams_of(&store, &["u"], 23).await;
    assert_eq!(
        next.events[0].version,
        before[5].len() as u64,
        "stream u/e1 (the third read of e1) gained one version"
    );
}

/// A manifest commit whose write landed but whose answer was lost fails that flush;
/// the next flush commits the version after it, and every event is there after a
/// reopen. (Trying the same version again would fail for good: it exists.)
#[tokio::test]
async fn a_flush_after_a_lost_commit_answer_goes_on() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = open_at_commit(config(dir.path()), CommitFault::LoseAnswer, 1);
    let mut appended = 0u64;
    for round in 0..3u64 {
        for i in 0..50u64 {
            append(
                &store,
                &format!("s{}", i % 5),
                ExpectedVersion::Any,
                vec![event("x", appended)],
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
            appended += 1;
        }
        let flushed = store.flush().await;
        if round == 1 {
            let Err(err) = flushed else {
                panic!("the flush whose commit answer was lost succeeded");
            };
            assert!(err.to_string().contains("answer"), "{err}");
            // The events stay readable from the WAL and the buffer.
            assert_eq!(store.stats().events, appended);
            let report = store.flush().await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(report.flushed_position, appended);
            assert_eq!(report.manifest_version, 3, "version 2 was the lost commit");
        } else {
            flushed.unwrap_or_else(|e| panic!("{e}"));
        }
    }
    assert_eq!(store.manifest().flushed_position, appended);
    store.close().unwrap_or_else(|e| panic!("{e}"));
    let store = EventStore::open(config(dir.path())).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.manifest().version, 4);
    assert_eq!(store.stats().events, appended);
    for s in 0..5 {
        let events = store
            .read_stream("t", &format!("s{s}"), 1, usize::MAX)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
        assert_eq!(versions, (1..=30).collect::<Vec<u64>>(), "stream s{s}");
    }
}

/// With the flusher slower than the appends, appends wait once
/// `max_unflushed_events` are waiting, and the events waiting stay bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_wait_while_the_flusher_is_behind() {
    const LIMIT: u64 = 1000;
    const PER_REQUEST: u64 = 100;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // Appends without fsyncs, and a flush that takes 300 ms: far faster appends than
    // flushes, whatever the disk.
    let mut config = config(dir.path())
        .with_flush_interval_ms(60_000)
        .with_durability(Durability::Never);
    config.flush_min_events = PER_REQUEST;
    config.max_unflushed_events = LIMIT;
    let slow = CommitFault::Slow(std::time::Duration::from_millis(300));
    let store = open_at_commit(config, slow, 0);
    let mut most_waiting = 0;
    for i in 0..40 {
        let events = (0..PER_REQUEST)
            .map(|n| event("x", i * PER_REQUEST + n))
            .collect();
        append(&store, &format!("s{}", i % 4), ExpectedVersion::Any, events)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let waiting = store.stats().events - store.manifest().flushed_position;
        most_waiting = most_waiting.max(waiting);
    }
    assert_eq!(store.stats().events, 40 * PER_REQUEST);
    assert!(
        most_waiting < LIMIT + PER_REQUEST,
        "{most_waiting} events waited to be flushed, the limit is {LIMIT}"
    );
    assert!(
        most_waiting >= LIMIT / 2,
        "the flusher kept up ({most_waiting} waiting at most): the test shows nothing"
    );
}
