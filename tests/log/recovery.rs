//! Recovery: torn tails, corruption, reopen, rotation, the data directory's identity.

use std::path::Path;
use std::process::Command;

use allsource::engine::wal::{self, SegmentStatus};
use allsource::engine::{Durability, Error, EventStore, ExpectedVersion, StoreConfig};

use crate::util::{append, event, fill, newest_segment, open};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("wal")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(from.join("store.json"), to.join("store.json")).unwrap_or_else(|e| panic!("{e}"));
    for entry in std::fs::read_dir(from.join("wal"))
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
    {
        std::fs::copy(entry.path(), to.join("wal").join(entry.file_name()))
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Build a store with `n` single-event appends, then one final 3-event append.
/// Returns the segment bytes and the byte range of the final record.
async fn store_with_final_record(dir: &Path, n: u64) -> (Vec<u8>, std::ops::Range<usize>) {
    let store = open(dir, Durability::Never);
    fill(&store, n, "e", 3).await;
    store.close().unwrap_or_else(|e| panic!("{e}"));
    let before = std::fs::metadata(newest_segment(dir))
        .map(|m| m.len())
        .unwrap_or(0) as usize;
    let store = open(dir, Durability::Never);
    append(
        &store,
        "last",
        ExpectedVersion::NoStream,
        vec![event("y", 1), event("y", 2), event("y", 3)],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    store.close().unwrap_or_else(|e| panic!("{e}"));
    let bytes = std::fs::read(newest_segment(dir)).unwrap_or_else(|e| panic!("{e}"));
    let len = bytes.len();
    (bytes, before..len)
}

/// Cut the last segment at every byte of its final record: the store opens, keeps
/// every whole record, drops the torn one, and appends again from there.
#[tokio::test]
async fn torn_tail_at_every_byte_keeps_every_whole_record() {
    let original = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (bytes, last) = store_with_final_record(original.path(), 20).await;
    let segment_name = newest_segment(original.path())
        .file_name()
        .map(|n| n.to_owned())
        .unwrap_or_default();
    for cut in last.start..last.end {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        copy_dir(original.path(), dir.path());
        let segment = dir.path().join("wal").join(&segment_name);
        std::fs::write(&segment, &bytes[..cut]).unwrap_or_else(|e| panic!("{e}"));
        if cut > last.start {
            let report = wal::verify(dir.path()).unwrap_or_else(|e| panic!("{e}"));
            let status = &report.segments.last().map(|s| s.status.clone());
            assert!(
                matches!(status, Some(SegmentStatus::TornTail { offset, .. }) if *offset == last.start as u64),
                "cut {cut}: {status:?}"
            );
        }
        let store =
            EventStore::open(StoreConfig::new(dir.path()).with_durability(Durability::Never))
                .unwrap_or_else(|e| panic!("cut at byte {cut}: open failed: {e}"));
        let stats = store.stats();
        assert_eq!(
            stats.events, 20,
            "cut at byte {cut}: whole records kept, torn one dropped"
        );
        assert!(
            store
                .read_stream("t", "last", 1, 10)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .is_empty()
        );
        let again = append(
            &store,
            "last",
            ExpectedVersion::NoStream,
            vec![event("z", 9)],
        )
        .await
        .unwrap_or_else(|e| panic!("cut {cut}: append after recovery: {e}"));
        assert_eq!(again.events[0].position, 20);
        store.close().unwrap_or_else(|e| panic!("{e}"));
        let reopened = open(dir.path(), Durability::Never);
        assert_eq!(
            reopened.stats().events,
            21,
            "cut {cut}: the new record follows the truncation"
        );
        reopened.close().unwrap_or_else(|e| panic!("{e}"));
    }
    // The untouched store has all 23 events.
    let store = open(original.path(), Durability::Never);
    assert_eq!(store.stats().events, 23);
}

/// A flipped bit in a record with valid records after it is corruption: opening
/// refuses and names the file and offset, and `allsource verify` says the same.
#[tokio::test]
async fn flipped_bit_mid_segment_refuses_to_open_and_verify_reports_it() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (mut bytes, last) = store_with_final_record(dir.path(), 20).await;
    let segment = newest_segment(dir.path());
    let report = wal::verify(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.records(), 21);
    assert!(report.corruption().is_none());
    // Damage the middle of the 10th record of 21.
    let starts = record_starts(&bytes);
    assert_eq!(
        (starts.len(), starts.last().copied()),
        (21, Some(last.start))
    );
    let record_start = starts[9];
    bytes[(starts[9] + starts[10]) / 2] ^= 0x10;
    std::fs::write(&segment, &bytes).unwrap_or_else(|e| panic!("{e}"));

    let err = EventStore::open(StoreConfig::new(dir.path())).err();
    match err {
        Some(Error::Corrupt { file, offset, .. }) => {
            assert_eq!(file, segment);
            assert_eq!(offset, record_start as u64);
        }
        other => panic!("expected a corruption error, got {other:?}"),
    }
    let message = EventStore::open(StoreConfig::new(dir.path()))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        message.contains(&format!("byte offset {record_start}")),
        "{message}"
    );

    let output = Command::new(env!("CARGO_BIN_EXE_allsource"))
        .args(["verify", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !output.status.success(),
        "verify must fail on corruption:\n{text}"
    );
    assert!(
        text.contains(&format!("byte offset {record_start}")),
        "{text}"
    );
    assert!(text.contains(&segment.display().to_string()), "{text}");
}

/// A sealed segment may end in bytes that are not its records (a reused file's old
/// contents), but only if the next segment continues where its records stop: a
/// damaged final record of a sealed segment is corruption, reported in that segment
/// at that record, and old records after the last one are not.
#[tokio::test]
async fn damage_at_the_end_of_a_sealed_segment_is_reported_there() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = StoreConfig::new(dir.path())
        .with_wal_segment_bytes(4096)
        .with_durability(Durability::Always);
    let store = EventStore::open(config.clone()).unwrap_or_else(|e| panic!("{e}"));
    fill(&store, 100, "s", 3).await;
    store.close().unwrap_or_else(|e| panic!("{e}"));
    let segments = crate::util::wal_segments(dir.path());
    assert!(segments.len() >= 3, "{segments:?}");
    let sealed = &segments[1];
    let original = std::fs::read(sealed).unwrap_or_else(|e| panic!("{e}"));

    // Old records of another segment after the last record: still a whole segment.
    let older = std::fs::read(&segments[0]).unwrap_or_else(|e| panic!("{e}"));
    let old_records = &older[32..];
    let mut with_old = original.clone();
    with_old.extend_from_slice(&old_records[..old_records.len() / 2]);
    std::fs::write(sealed, &with_old).unwrap_or_else(|e| panic!("{e}"));
    let report = wal::verify(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.corruption().is_none(), "{report:?}");
    assert_eq!(report.events(), 100);
    let store = EventStore::open(config.clone()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.stats().events, 100);
    store.close().unwrap_or_else(|e| panic!("{e}"));

    // The final record damaged: the next segment starts one record later.
    let mut damaged = original.clone();
    let last = record_starts(&original)
        .last()
        .copied()
        .unwrap_or_else(|| panic!("no records"));
    damaged[last + 30] ^= 0x01;
    std::fs::write(sealed, &damaged).unwrap_or_else(|e| panic!("{e}"));
    match EventStore::open(config).err() {
        Some(Error::Corrupt {
            file,
            offset,
            reason,
        }) => {
            assert_eq!(&file, sealed);
            assert_eq!(offset, last as u64);
            assert!(reason.contains("records are missing"), "{reason}");
        }
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

#[tokio::test]
async fn verify_passes_on_a_healthy_store() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    store_with_final_record(dir.path(), 5).await;
    let output = Command::new(env!("CARGO_BIN_EXE_allsource"))
        .args(["verify", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("1 segments, 6 records, 8 events"),
        "{stdout}"
    );
}

/// Small segments force rotation; everything comes back after reopen, in order.
#[tokio::test]
async fn rotation_and_reopen_keep_every_event_in_order() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = StoreConfig::new(dir.path())
        .with_wal_segment_bytes(4096)
        .with_durability(Durability::Always);
    let store = EventStore::open(config.clone()).unwrap_or_else(|e| panic!("{e}"));
    fill(&store, 300, "s", 7).await;
    store.close().unwrap_or_else(|e| panic!("{e}"));
    let report = wal::verify(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        report.segments.len() > 5,
        "{} segments",
        report.segments.len()
    );
    assert_eq!(report.events(), 300);

    let store = EventStore::open(config).unwrap_or_else(|e| panic!("{e}"));
    for s in 0..7u64 {
        let events = store
            .read_stream("t", &format!("s{s}"), 1, usize::MAX)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let ns: Vec<u64> = events
            .iter()
            .map(|e| super::recovery_n(&e.payload))
            .collect();
        let expected: Vec<u64> = (0..300).filter(|i| i % 7 == s).collect();
        assert_eq!(ns, expected, "stream s{s}");
    }
    let next = append(
        &store,
        "s0",
        ExpectedVersion::Exact(43),
        vec![event("x", 300)],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((next.events[0].version, next.events[0].position), (44, 300));
}

/// Byte offsets where the records of a segment start (walking the frame headers).
fn record_starts(segment: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut at = 32;
    while at + 28 <= segment.len() {
        starts.push(at);
        let body = u32::from_le_bytes([
            segment[at + 4],
            segment[at + 5],
            segment[at + 6],
            segment[at + 7],
        ]);
        at += 28 + body as usize;
    }
    starts
}

#[tokio::test]
async fn partition_count_is_fixed_at_creation_and_the_directory_is_locked() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = EventStore::open(StoreConfig::new(dir.path()).with_partitions(8))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.partitions(), 8);
    assert!(matches!(
        EventStore::open(StoreConfig::new(dir.path())),
        Err(Error::Locked(_))
    ));
    store.close().unwrap_or_else(|e| panic!("{e}"));
    drop(store);
    let reopened = EventStore::open(StoreConfig::new(dir.path())).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        reopened.partitions(),
        8,
        "an existing store keeps its count"
    );
    drop(reopened);
    let err = EventStore::open(StoreConfig::new(dir.path()).with_partitions(32)).err();
    assert!(
        matches!(err, Some(Error::Config(ref m)) if m.contains("8 partitions")),
        "{err:?}"
    );
    let fresh = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = EventStore::open(StoreConfig::new(fresh.path())).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.partitions(), 32, "the default for a new store");
}
