//! The WAL writer thread: group commit.
//!
//! ```text
//! appenders ──(state lock: check, assign, encode; queue lock: hand over)──► pending group
//!                                                        │ take whole group
//!                                                        ▼
//!                  writer thread: write ─► fsync (per durability) ─► decode the
//!                  records into the partitions' Arrow tails ─► advance the visible
//!                  position ─► ack all
//! ```
//!
//! While one group is being written and fsynced, new appends collect in the next
//! group, so concurrent appenders share one write and one fsync. A failed write or
//! fsync stops the writer for good: the group's appenders, and every later one, get
//! [`Error::WalFailed`]; nothing is retried as if it had succeeded.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::config::Durability;
use crate::error::{Error, Result};
use crate::sequencer::Group;
use crate::store::Shared;
use crate::wal::codec;
use crate::wal::frame::RECORD_HEADER_BYTES;
use crate::wal::writer::SegmentWriter;
use crate::watchers::Collector;

/// The writer thread's body; returns when the store closes or the WAL fails.
pub(crate) fn run(shared: Arc<Shared>, mut wal: SegmentWriter) {
    let durability = shared.config.durability;
    let interval = Duration::from_millis(shared.config.wal_fsync_interval_ms);
    let mut unsynced = false;
    let mut last_sync = Instant::now();
    let mut spare = Group::default();
    loop {
        let (mut group, closing) = next_group(
            &shared,
            (durability, interval),
            (unsynced, last_sync),
            std::mem::take(&mut spare),
        );
        let result = commit(
            &shared,
            &mut wal,
            &mut group,
            &mut unsynced,
            &mut last_sync,
            closing,
        );
        match result {
            Ok(()) => {
                for waiter in group.waiters.drain(..) {
                    let _ = waiter.send(Ok(()));
                }
                spare = group.recycled();
            }
            Err(err) => {
                fail(&shared, group, &err);
                return;
            }
        }
        if closing {
            shared.head.send_modify(|_| {});
            shared.watchers.wake_all();
            return;
        }
    }
}

/// Wait for appends (or, with `interval`, for the next fsync deadline) and take them,
/// leaving `spare` (an emptied group whose buffer keeps its memory) to collect the
/// next ones.
fn next_group(
    shared: &Shared,
    (durability, interval): (Durability, Duration),
    (unsynced, last_sync): (bool, Instant),
    spare: Group,
) -> (Group, bool) {
    let mut queue = shared.queue.lock();
    while queue.pending.is_empty() && !queue.closing {
        if durability == Durability::Interval && unsynced {
            let left = interval.saturating_sub(last_sync.elapsed());
            if left.is_zero() {
                break;
            }
            shared.wake.wait_for(&mut queue, left);
        } else {
            shared.wake.wait(&mut queue);
        }
    }
    let closing = queue.closing && queue.pending.is_empty();
    (std::mem::replace(&mut queue.pending, spare), closing)
}

fn commit(
    shared: &Shared,
    wal: &mut SegmentWriter,
    group: &mut Group,
    unsynced: &mut bool,
    last_sync: &mut Instant,
    closing: bool,
) -> Result<()> {
    if !group.is_empty() {
        wal.write_group(&mut group.buf, &group.records)?;
        *unsynced = true;
        shared
            .counters
            .records
            .fetch_add(group.records.len() as u64, Ordering::Relaxed);
        shared
            .counters
            .bytes
            .fetch_add(group.buf.len() as u64, Ordering::Relaxed);
        shared.counters.groups.fetch_add(1, Ordering::Relaxed);
    }
    let interval = Duration::from_millis(shared.config.wal_fsync_interval_ms);
    let sync_now = *unsynced
        && (closing
            || match shared.config.durability {
                Durability::Always => true,
                Durability::Interval => last_sync.elapsed() >= interval,
                Durability::Never => false,
            });
    if sync_now {
        let started = Instant::now();
        wal.sync()?;
        *unsynced = false;
        *last_sync = Instant::now();
        shared.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        shared
            .counters
            .fsync_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    }
    let (segment_id, segment_bytes) = wal.position();
    shared
        .counters
        .segment_id
        .store(segment_id, Ordering::Relaxed);
    shared
        .counters
        .segment_bytes
        .store(segment_bytes, Ordering::Relaxed);
    if let Some(end) = group.end_position {
        shared.segments.lock().insert(segment_id, end);
        let collector = publish(shared, group)?;
        shared.head.send_replace(end);
        // Only now, with the head moved: a subscription woken before could find
        // nothing new and wait again, its wake spent; and one that registers once
        // the collector lets go of the registry sees the new head.
        collector.finish().wake();
        let waiting = end.saturating_sub(shared.tier.manifest().flushed_position);
        if waiting >= shared.config.flush_min_events {
            shared.flush_wake.notify_one();
        }
    }
    Ok(())
}

/// Decode the group's records, now written, into the partitions' Arrow buffers;
/// gathers the subscriptions the group's events concern, to wake once they are
/// visible (the collector holds the registry until then).
fn publish<'a>(shared: &'a Shared, group: &Group) -> Result<Collector<'a>> {
    let mut publisher = shared.buffer.publisher();
    let mut collector = shared.watchers.collector();
    let mut bodies = group.records.iter().peekable();
    while let Some(start) = bodies.next() {
        let end = bodies.peek().map_or(group.buf.len(), |next| **next);
        let body = &group.buf[start + RECORD_HEADER_BYTES..end];
        let mut failure = None;
        codec::decode_append(body, |row| {
            collector.see(row);
            publisher.push(row).map_err(|err| {
                let reason = err.to_string();
                failure = Some(err);
                reason
            })
        })
        .map_err(|reason| {
            failure.unwrap_or_else(|| {
                Error::Internal(format!("decoding a record just written: {reason}"))
            })
        })?;
    }
    Ok(collector)
}

/// Stop accepting writes after a WAL failure and tell every waiting appender.
fn fail(shared: &Shared, group: Group, err: &Error) {
    let message = err.to_string();
    tracing::error!(error = %message, "the WAL writer failed; the store accepts no more appends");
    // Appenders hand records to the queue while holding the state lock: once the
    // failure is set under it, nothing more joins the queue, and taking the queue
    // afterwards answers every appender that got in before.
    shared.state.lock().failure = Some(message.clone());
    let pending = std::mem::take(&mut shared.queue.lock().pending);
    for waiter in group.waiters.into_iter().chain(pending.waiters) {
        let _ = waiter.send(Err(Error::WalFailed(message.clone())));
    }
    shared.head.send_modify(|_| {});
    shared.watchers.wake_all();
}
