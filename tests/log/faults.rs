//! WAL write and fsync failures, injected under the real segment files: the writer
//! stops for good, nothing is acknowledged after the failure, the store reopens.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use allsource::engine::wal::{SegmentFile, SegmentIo};
use allsource::engine::{Durability, Environment, Error, EventStore, ExpectedVersion, StoreConfig};

use crate::util::{append, event, open};

/// Which operation fails once `armed` is set, and how many of each were attempted.
#[derive(Debug, Default)]
struct Faults {
    armed: AtomicBool,
    fail_writes: bool,
    writes: AtomicU64,
    syncs: AtomicU64,
}

#[derive(Debug)]
struct FaultyIo(Arc<Faults>);

#[derive(Debug)]
struct FaultyFile {
    file: File,
    faults: Arc<Faults>,
}

impl SegmentIo for FaultyIo {
    fn wrap(&self, file: File, _path: &Path) -> Box<dyn SegmentFile> {
        Box::new(FaultyFile {
            file,
            faults: Arc::clone(&self.0),
        })
    }
}

impl SegmentFile for FaultyFile {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.faults.writes.fetch_add(1, Ordering::SeqCst);
        if self.faults.fail_writes && self.faults.armed.load(Ordering::SeqCst) {
            // A short write, then the error, as a full disk produces.
            std::io::Write::write_all(&mut self.file, &bytes[..bytes.len() / 2])?;
            return Err(std::io::Error::other("injected write failure"));
        }
        std::io::Write::write_all(&mut self.file, bytes)
    }

    fn sync_data(&mut self) -> std::io::Result<()> {
        self.faults.syncs.fetch_add(1, Ordering::SeqCst);
        if !self.faults.fail_writes && self.faults.armed.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected fsync failure"));
        }
        self.file.sync_data()
    }
}

async fn fail_and_reopen(fail_writes: bool) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let faults = Arc::new(Faults {
        fail_writes,
        ..Faults::default()
    });
    let store = EventStore::open_with(
        StoreConfig::new(dir.path()).with_durability(Durability::Always),
        Environment {
            segment_io: Arc::new(FaultyIo(Arc::clone(&faults))),
            ..Environment::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..5 {
        append(
            &store,
            "order-1",
            ExpectedVersion::Exact(i),
            vec![event("x", i)],
        )
        .await
        .unwrap_or_else(|e| panic!("append {i} before the fault: {e}"));
    }

    faults.armed.store(true, Ordering::SeqCst);
    let failed = append(
        &store,
        "order-1",
        ExpectedVersion::Exact(5),
        vec![event("x", 5)],
    )
    .await;
    assert!(
        matches!(failed, Err(Error::WalFailed(ref m)) if m.contains("injected")),
        "{failed:?}"
    );
    let (writes, syncs) = (
        faults.writes.load(Ordering::SeqCst),
        faults.syncs.load(Ordering::SeqCst),
    );

    // The writer has stopped: later appends fail at once and touch no file, and
    // the failed event never becomes visible.
    faults.armed.store(false, Ordering::SeqCst);
    for _ in 0..3 {
        let later = append(&store, "order-2", ExpectedVersion::Any, vec![event("y", 0)]).await;
        assert!(matches!(later, Err(Error::WalFailed(_))), "{later:?}");
    }
    assert_eq!(
        faults.writes.load(Ordering::SeqCst),
        writes,
        "no write after the failure"
    );
    assert_eq!(
        faults.syncs.load(Ordering::SeqCst),
        syncs,
        "no fsync retried"
    );
    assert_eq!(store.stream_version("t", "order-1"), Some(5));
    assert_eq!(
        store
            .read_stream("t", "order-1", 1, 100)
            .await
            .map(|e| e.len())
            .ok(),
        Some(5)
    );
    assert!(matches!(store.close(), Err(Error::WalFailed(_))));
    drop(store);

    // Every acknowledged event is there after a reopen. The failed one was never
    // acknowledged: a torn half-record is cut off; a whole one may survive.
    let store = open(dir.path(), Durability::Always);
    let events = store
        .read_stream("t", "order-1", 1, 100)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
    assert!(
        versions == [1, 2, 3, 4, 5] || versions == [1, 2, 3, 4, 5, 6],
        "{versions:?}"
    );
    if fail_writes {
        assert_eq!(versions.len(), 5, "half a record is a torn tail");
    }
    let next = versions.len() as u64;
    append(
        &store,
        "order-1",
        ExpectedVersion::Exact(next),
        vec![event("x", next)],
    )
    .await
    .unwrap_or_else(|e| panic!("append after reopening: {e}"));
    store.close().unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn an_fsync_failure_stops_the_writer_for_good() {
    fail_and_reopen(false).await;
}

#[tokio::test]
async fn a_write_failure_stops_the_writer_and_leaves_a_torn_tail() {
    fail_and_reopen(true).await;
}

/// A sealed segment is fsynced beside the writer (durability `never` here, so no other
/// fsync runs); when that fsync fails, the next rotation fails, and nothing is
/// acknowledged after it. Every event acknowledged before is there after a reopen.
#[tokio::test]
async fn a_failed_fsync_of_a_sealed_segment_stops_the_writer_at_the_next_rotation() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let faults = Arc::new(Faults::default());
    let store = EventStore::open_with(
        StoreConfig::new(dir.path())
            .with_durability(Durability::Never)
            .with_wal_segment_bytes(4096),
        Environment {
            segment_io: Arc::new(FaultyIo(Arc::clone(&faults))),
            ..Environment::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    faults.armed.store(true, Ordering::SeqCst);
    // ~100 WAL bytes per event: a rotation every ~40 events.
    let mut acknowledged = 0;
    let failure = loop {
        assert!(
            acknowledged < 1000,
            "no failure after {acknowledged} events"
        );
        match append(
            &store,
            "order-1",
            ExpectedVersion::Exact(acknowledged),
            vec![event("x", acknowledged)],
        )
        .await
        {
            Ok(_) => acknowledged += 1,
            Err(err) => break err,
        }
    };
    assert!(
        matches!(failure, Error::WalFailed(ref m) if m.contains("injected")),
        "{failure:?}"
    );
    assert!(faults.syncs.load(Ordering::SeqCst) >= 1);
    assert!(
        store.stats().wal.segment_id >= 2,
        "the failure came from a sealed segment"
    );
    let later = append(&store, "order-2", ExpectedVersion::Any, vec![event("y", 0)]).await;
    assert!(matches!(later, Err(Error::WalFailed(_))), "{later:?}");
    assert!(matches!(store.close(), Err(Error::WalFailed(_))));
    drop(store);

    let store = open(dir.path(), Durability::Always);
    let events = store
        .read_stream("t", "order-1", 1, 10_000)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        events.len() as u64 >= acknowledged,
        "{} events after reopening, {acknowledged} acknowledged",
        events.len()
    );
    store.close().unwrap_or_else(|e| panic!("{e}"));
}
