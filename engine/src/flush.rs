//! Moving the log from the buffer to Parquet: flushes, the background flusher, WAL
//! truncation, and rebuilding the sequencer from the files on open.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{UInt16Type, UInt64Type};

use crate::buffer::columns;
use crate::error::{Error, Result};
use crate::event::EventRow;
use crate::meta::sync_dir;
use crate::sequencer::Sequencer;
use crate::store::Shared;
use crate::tier::Tier;
use crate::tier::files::{file_path, rows_of, write_file};
use crate::tier::manifest::{FileEntry, Manifest, RetiredFile};
use crate::wal::{self, WAL_DIR};

/// What one flush did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FlushReport {
    /// Events written to Parquet.
    pub events: u64,
    /// Files written (one per partition that had events).
    pub files: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// Every event below this position is now in Parquet.
    pub flushed_position: u64,
    /// The manifest version committed (unchanged when there was nothing to flush).
    pub manifest_version: u64,
    /// WAL segments dropped because all their events are in Parquet (deleted, or kept
    /// as spare files for later segments to reuse).
    pub wal_segments_deleted: u64,
}

/// Which buffered rows a flush lets go of once its files are committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Release {
    /// Every row it flushed (an explicit flush: the buffer is emptied).
    Flushed,
    /// Only the rows of the flush before it (the background flusher). The newest
    /// flushed rows stay readable from memory until the next flush, so the
    /// subscriptions just behind the head, which read by position, do not all turn
    /// to the new Parquet files at once when a flush commits.
    Previous,
}

/// Write every visible event not yet in Parquet to one file per partition, commit
/// the manifest, then release rows from the buffer (see [`Release`]) and delete the
/// WAL segments wholly below the flushed position.
pub(crate) async fn flush(shared: &Shared, release: Release) -> Result<FlushReport> {
    let tier = &shared.tier;
    let _change = tier.change_lock.lock().await;
    let current = tier.manifest();
    let cut = *shared.head.borrow();
    let mut report = FlushReport {
        flushed_position: current.flushed_position,
        manifest_version: current.version,
        ..FlushReport::default()
    };
    if cut <= current.flushed_position {
        return Ok(report);
    }
    let started = Instant::now();
    let mut next = Manifest::clone(&current);
    next.version = tier.next_version();
    for partition in 0..shared.meta.partitions {
        let batches = shared
            .buffer
            .read_positions(partition, current.flushed_position, cut)?
            .ok_or_else(|| Error::Internal("rows to flush were released".into()))?;
        let rows = rows_of(&batches) as u64;
        if rows == 0 {
            continue;
        }
        let from = current.next_offsets[usize::from(partition)];
        let path = file_path(partition, &(from..from + rows), next.version);
        let entry = write_file(tier.store(), &tier.schema, path, &batches, tier.layout).await?;
        if entry.first_offset != from {
            return Err(Error::Internal(format!(
                "partition {partition}: flushing from offset {}, expected {from}",
                entry.first_offset
            )));
        }
        next.next_offsets[usize::from(partition)] = entry.end_offset;
        report.events += rows;
        report.files += 1;
        report.bytes += entry.bytes;
        next.files.push(entry);
    }
    next.files.sort_by_key(|f| (f.partition, f.first_offset));
    next.flushed_position = cut;
    let committed = tier.commit(next).await?;
    let (released, offsets) = match release {
        Release::Flushed => (cut, &committed.next_offsets),
        Release::Previous => (current.flushed_position, &current.next_offsets),
    };
    shared.buffer.set_released_position(released);
    for partition in 0..shared.meta.partitions {
        shared
            .buffer
            .release(partition, offsets[usize::from(partition)])?;
    }
    shared.flushed.notify_waiters();
    report.flushed_position = cut;
    report.manifest_version = committed.version;
    report.wal_segments_deleted = truncate_wal(shared, cut)?;
    let counters = &shared.tier_counters;
    counters.flushes.fetch_add(1, Ordering::Relaxed);
    counters
        .files_written
        .fetch_add(report.files, Ordering::Relaxed);
    counters
        .bytes_written
        .fetch_add(report.bytes, Ordering::Relaxed);
    tracing::info!(
        events = report.events,
        files = report.files,
        bytes = report.bytes,
        position = cut,
        manifest = committed.version,
        wal_segments_deleted = report.wal_segments_deleted,
        millis = started.elapsed().as_millis() as u64,
        "flushed to Parquet"
    );
    Ok(report)
}

/// Drop the WAL segments, oldest first, whose events all lie below `position` (never
/// the active one): the newest of them are kept as spares for later segments, the
/// others deleted. Returns how many were dropped.
pub(crate) fn truncate_wal(shared: &Shared, position: u64) -> Result<u64> {
    let wal_dir = shared.config.data_dir.join(WAL_DIR);
    let active = shared.counters.segment_id.load(Ordering::Acquire);
    let mut segments = shared.segments.lock();
    let doomed: Vec<u64> = segments
        .iter()
        .take_while(|(id, end)| **id < active && **end <= position)
        .map(|(id, _)| *id)
        .collect();
    wal::writer::drop_segments(&wal_dir, &doomed, |id| {
        segments.remove(&id);
    })?;
    if !doomed.is_empty() {
        sync_dir(&wal_dir)?;
    }
    Ok(doomed.len() as u64)
}

/// The background flusher: flushes every `flush_interval_ms` when there is anything
/// to flush, and as soon as `flush_min_events` are waiting. Errors are logged and
/// retried on the next round; the WAL keeps every event meanwhile.
pub(crate) async fn run_flusher(shared: Arc<Shared>) {
    let interval = Duration::from_millis(shared.config.flush_interval_ms);
    let mut last = Instant::now();
    loop {
        let wait = interval.saturating_sub(last.elapsed());
        let _ = tokio::time::timeout(wait, shared.flush_wake.notified()).await;
        if shared.state.lock().closing {
            return;
        }
        let waiting = shared
            .head
            .borrow()
            .saturating_sub(shared.tier.manifest().flushed_position);
        let due = last.elapsed() >= interval;
        let limit = shared.config.max_unflushed_events;
        let appends_wait = limit > 0 && waiting >= limit;
        if waiting == 0 || (!due && !appends_wait && waiting < shared.config.flush_min_events) {
            if due {
                last = Instant::now();
            }
            continue;
        }
        last = Instant::now();
        let result = match flush(&shared, Release::Previous).await {
            Ok(_) => compact(&shared).await.map(|_| ()),
            Err(err) => Err(err),
        };
        match result {
            Ok(()) => *shared.tier_counters.last_error.lock() = None,
            Err(err) => {
                tracing::error!(error = %err, "flushing to Parquet failed; the WAL keeps the events, retrying later");
                *shared.tier_counters.last_error.lock() = Some(err.to_string());
            }
        }
    }
}

/// Rebuild stream versions, partition offsets and event ids from the manifest's
/// files (reading only the columns that carry them).
pub(crate) async fn restore_sequencer(
    tier: &Tier,
    manifest: &Manifest,
    mut seq: Sequencer,
) -> Result<Sequencer> {
    const COLUMNS: [usize; 7] = [
        columns::TENANT,
        columns::ENTITY_ID,
        columns::VERSION,
        columns::PARTITION,
        columns::OFFSET,
        columns::POSITION,
        columns::EVENT_ID,
    ];
    for file in &manifest.files {
        let batches = tier
            .reader
            .read_columns_in_offset_order(file, &COLUMNS)
            .await?;
        for batch in &batches {
            restore_batch(&mut seq, batch).map_err(|reason| {
                Error::storage(format!("restoring the log from {}", file.path), reason)
            })?;
        }
    }
    seq.next_position = manifest.flushed_position;
    Ok(seq)
}

fn restore_batch(seq: &mut Sequencer, batch: &RecordBatch) -> std::result::Result<(), String> {
    // Projected columns come in schema order.
    let tenant = batch.column(0).as_string::<i32>();
    let entity = batch.column(1).as_string::<i32>();
    let version = batch.column(2).as_primitive::<UInt64Type>();
    let partition = batch.column(3).as_primitive::<UInt16Type>();
    let offset = batch.column(4).as_primitive::<UInt64Type>();
    let position = batch.column(5).as_primitive::<UInt64Type>();
    let event_id = batch.column(6).as_string::<i32>();
    for row in 0..batch.num_rows() {
        seq.restore(&EventRow {
            tenant: tenant.value(row),
            entity_id: entity.value(row),
            event_type: "",
            version: version.value(row),
            partition: partition.value(row),
            offset: offset.value(row),
            position: position.value(row),
            event_id: event_id.value(row),
            event_uuid: None,
            timestamp_micros: 0,
            ingested_at_micros: 0,
            payload: "",
            metadata: None,
        })?;
    }
    Ok(())
}

/// What one compaction pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CompactionReport {
    /// Files merged away.
    pub files_merged: u64,
    /// Files written in their place.
    pub files_written: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Replaced files deleted now that their grace period is over.
    pub files_deleted: u64,
    /// The manifest version committed (unchanged when there was nothing to do).
    pub manifest_version: u64,
}

/// Merge runs of adjacent small files of a partition, and delete replaced files
/// whose grace period is over, in one manifest commit.
///
/// A run is a sequence of adjacent files each below `compaction_target_bytes`; it is
/// merged once it has `compaction_min_files` files, into files that stay below the
/// target. The replaced files stay readable for `retired_file_grace_ms`, for reads
/// that took the older manifest.
pub(crate) async fn compact(shared: &Shared) -> Result<CompactionReport> {
    let tier = &shared.tier;
    let _change = tier.change_lock.lock().await;
    let current = tier.manifest();
    let now = shared.clock.now_micros();
    let grace = i64::try_from(shared.config.retired_file_grace_ms)
        .unwrap_or(i64::MAX)
        .saturating_mul(1000);
    let target = shared.config.compaction_target_bytes;
    let mut report = CompactionReport {
        manifest_version: current.version,
        ..CompactionReport::default()
    };
    let mut next = Manifest::clone(&current);
    next.version = tier.next_version();
    let (expired, kept): (Vec<_>, Vec<_>) = next
        .retired
        .drain(..)
        .partition(|r| now.saturating_sub(r.retired_at_micros) >= grace);
    next.retired = kept;
    let mut files = Vec::with_capacity(current.files.len());
    for partition in 0..shared.meta.partitions {
        let mut run: Vec<FileEntry> = Vec::new();
        let mut run_bytes = 0u64;
        let pending = current.partition_files(partition);
        for (i, file) in pending.iter().enumerate() {
            let small = file.bytes < target;
            if small && run_bytes + file.bytes < target {
                run_bytes += file.bytes;
                run.push(file.clone());
            } else if small {
                merge_or_keep(
                    shared,
                    &mut next,
                    &mut files,
                    &mut report,
                    std::mem::take(&mut run),
                    now,
                )
                .await?;
                run_bytes = file.bytes;
                run.push(file.clone());
            } else {
                merge_or_keep(
                    shared,
                    &mut next,
                    &mut files,
                    &mut report,
                    std::mem::take(&mut run),
                    now,
                )
                .await?;
                run_bytes = 0;
                files.push(file.clone());
            }
            if i + 1 == pending.len() {
                merge_or_keep(
                    shared,
                    &mut next,
                    &mut files,
                    &mut report,
                    std::mem::take(&mut run),
                    now,
                )
                .await?;
            }
        }
    }
    if report.files_merged == 0 && expired.is_empty() {
        return Ok(report);
    }
    next.files = files;
    let committed = tier.commit(next).await?;
    report.manifest_version = committed.version;
    for retired in &expired {
        let path = object_store::path::Path::from(retired.path.as_str());
        if let Err(e) = object_store::ObjectStoreExt::delete(tier.store().as_ref(), &path).await {
            tracing::warn!(path = %path, error = %e, "deleting a replaced table file failed; it is collected on the next open");
        }
        tier.forget(&retired.path);
        report.files_deleted += 1;
    }
    shared
        .tier_counters
        .compactions
        .fetch_add(1, Ordering::Relaxed);
    shared
        .tier_counters
        .files_compacted
        .fetch_add(report.files_merged, Ordering::Relaxed);
    tracing::info!(
        merged = report.files_merged,
        written = report.files_written,
        deleted = report.files_deleted,
        manifest = committed.version,
        "compacted the table files"
    );
    Ok(report)
}

/// Where the files worth merging start in `run` (adjacent small files of one
/// partition, oldest first): the newest file, and each older one while it is at most
/// twice the size of the newer ones taken so far.
///
/// Without the size rule, a file that had grown by merging was merged again with every
/// few new small files until it reached the target size, so each event was rewritten
/// once per few flushes (tens of times on its way to 128 MiB). With it, a file is only
/// merged into one about as large as itself or larger, and each event is rewritten a
/// logarithmic number of times.
fn size_ratio_start(run: &[FileEntry]) -> usize {
    let mut newer_bytes = 0u64;
    let mut start = run.len();
    for (i, file) in run.iter().enumerate().rev() {
        if start < run.len() && file.bytes > newer_bytes.saturating_mul(2) {
            break;
        }
        newer_bytes += file.bytes;
        start = i;
    }
    start
}

/// Merge the newest files of `run` (see [`size_ratio_start`]) into one file when there
/// are enough of them; keep the others as they are.
async fn merge_or_keep(
    shared: &Shared,
    next: &mut Manifest,
    files: &mut Vec<FileEntry>,
    report: &mut CompactionReport,
    run: Vec<FileEntry>,
    now: i64,
) -> Result<()> {
    let merged_from = size_ratio_start(&run);
    if run.len() - merged_from < shared.config.compaction_min_files {
        files.extend(run);
        return Ok(());
    }
    let mut run = run;
    let newest = run.split_off(merged_from);
    // The older files of the run stay as they are, before the merged one.
    files.extend(run);
    let run = newest;
    let tier = &shared.tier;
    let (Some(first), Some(last)) = (run.first(), run.last()) else {
        return Ok(());
    };
    let mut batches = Vec::new();
    for file in &run {
        batches.extend(tier.reader.read_all(file).await?);
    }
    let range = first.first_offset..last.end_offset;
    let path = file_path(first.partition, &range, next.version);
    let merged = write_file(tier.store(), &tier.schema, path, &batches, tier.layout).await?;
    if (merged.first_offset, merged.end_offset) != (range.start, range.end) {
        return Err(Error::Internal(format!(
            "compaction of partition {} wrote offsets {}..{}, expected {range:?}",
            first.partition, merged.first_offset, merged.end_offset
        )));
    }
    report.files_merged += run.len() as u64;
    report.files_written += 1;
    report.bytes_written += merged.bytes;
    next.retired.extend(run.into_iter().map(|f| RetiredFile {
        path: f.path,
        retired_at_micros: now,
    }));
    files.push(merged);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(sizes: &[u64]) -> Vec<FileEntry> {
        sizes
            .iter()
            .map(|bytes| FileEntry {
                path: String::new(),
                partition: 0,
                first_offset: 0,
                end_offset: 0,
                first_position: 0,
                last_position: 0,
                min_timestamp_micros: 0,
                max_timestamp_micros: 0,
                bytes: *bytes,
                order: Default::default(),
            })
            .collect()
    }

    #[test]
    fn only_newer_files_of_like_size_are_taken() {
        assert_eq!(size_ratio_start(&files(&[])), 0);
        assert_eq!(size_ratio_start(&files(&[5])), 0);
        // Equal flush files: all of them.
        assert_eq!(size_ratio_start(&files(&[10; 8])), 0);
        // A merged file twice the size of the new ones is taken; a larger one is not.
        assert_eq!(
            size_ratio_start(&files(&[160, 10, 10, 10, 10, 10, 10, 10, 10])),
            0
        );
        assert_eq!(
            size_ratio_start(&files(&[170, 10, 10, 10, 10, 10, 10, 10, 10])),
            1
        );
        // The walk stops at the first file too large, even if older ones are small.
        assert_eq!(size_ratio_start(&files(&[1, 1000, 10, 10])), 2);
    }

    /// Flush files of one size and compaction after each flush, as the background
    /// flusher does: with the size rule each byte is rewritten a few times; merging
    /// whole runs rewrote the growing file again every few flushes.
    #[test]
    fn sustained_flushes_rewrite_each_byte_a_logarithmic_number_of_times() {
        const MIN_FILES: usize = 8;
        const TARGET: u64 = 4096;
        let rewritten = |whole_runs: bool| {
            let (mut sizes, mut written) = (Vec::<u64>::new(), 0u64);
            for _ in 0..2000 {
                sizes.push(1);
                // The run: the newest files under the target, as `compact` gathers it.
                let mut start = sizes.len();
                let mut bytes = 0;
                while start > 0 && bytes + sizes[start - 1] < TARGET {
                    start -= 1;
                    bytes += sizes[start];
                }
                let from = if whole_runs {
                    start
                } else {
                    start + size_ratio_start(&files(&sizes[start..]))
                };
                if sizes.len() - from >= MIN_FILES {
                    let merged: u64 = sizes.drain(from..).sum();
                    written += merged;
                    sizes.push(merged);
                }
            }
            written as f64 / 2000.0
        };
        let (by_size, whole) = (rewritten(false), rewritten(true));
        assert!(by_size < 8.0, "each byte rewritten {by_size} times");
        assert!(whole > 3.0 * by_size, "{whole} against {by_size}");
    }
}
