//! The in-memory Arrow buffer: each partition's events as sealed `RecordBatch`es.
//!
//! ```text
//! partition 3:  [offsets 0..8192) [8192..16384) [16384..16400) [16400..16402) ...
//!                 merged batches                 group-commit batches (small)
//! ```
//!
//! A batch is appended whole under a short write lock, so a reader that takes the
//! batch list sees a consistent prefix of the partition and never a torn batch.
//! Group commits produce small batches; once `MERGE_FANIN` batches of one size class
//! trail a partition they are concatenated into one, like a base-16 counter, so every
//! row is copied at most a few times on its way to `buffer_batch_rows`.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, StringArray, TimestampMicrosecondArray, UInt16Array,
    UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, UInt16Type, UInt64Type};
use parking_lot::RwLock;

use crate::error::{Error, Result};
use crate::event::RecordedEvent;

/// How many trailing batches of one size class are merged into one.
const MERGE_FANIN: usize = 16;

/// Column order of the event schema.
pub mod columns {
    /// `tenant`
    pub const TENANT: usize = 0;
    /// `entity_id`
    pub const ENTITY_ID: usize = 1;
    /// `event_type`
    pub const EVENT_TYPE: usize = 2;
    /// `version`
    pub const VERSION: usize = 3;
    /// `partition`
    pub const PARTITION: usize = 4;
    /// `offset`
    pub const OFFSET: usize = 5;
    /// `position`
    pub const POSITION: usize = 6;
    /// `event_id`
    pub const EVENT_ID: usize = 7;
    /// `timestamp`
    pub const TIMESTAMP: usize = 8;
    /// `ingested_at`
    pub const INGESTED_AT: usize = 9;
    /// `payload`
    pub const PAYLOAD: usize = 10;
    /// `metadata`
    pub const METADATA: usize = 11;
}

/// The Arrow schema of the event log.
pub fn event_schema() -> SchemaRef {
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("tenant", DataType::Utf8, false),
        Field::new("entity_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("version", DataType::UInt64, false),
        Field::new("partition", DataType::UInt16, false),
        Field::new("offset", DataType::UInt64, false),
        Field::new("position", DataType::UInt64, false),
        Field::new("event_id", DataType::Utf8, false),
        Field::new("timestamp", ts(), false),
        Field::new("ingested_at", ts(), false),
        Field::new("payload", DataType::Utf8, false),
        Field::new("metadata", DataType::Utf8, true),
    ]))
}

/// Build a batch from events (all of one partition, in offset order).
pub fn events_to_batch(schema: &SchemaRef, events: &[&RecordedEvent]) -> Result<RecordBatch> {
    let strings = |f: fn(&RecordedEvent) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(events.iter().map(|e| f(e))))
    };
    let u64s = |f: fn(&RecordedEvent) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from_iter_values(events.iter().map(|e| f(e))))
    };
    let times = |f: fn(&RecordedEvent) -> i64| -> ArrayRef {
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(events.iter().map(|e| f(e)))
                .with_timezone("UTC"),
        )
    };
    let columns = vec![
        strings(|e| &e.tenant),
        strings(|e| &e.entity_id),
        strings(|e| &e.event_type),
        u64s(|e| e.version),
        Arc::new(UInt16Array::from_iter_values(
            events.iter().map(|e| e.partition),
        )) as ArrayRef,
        u64s(|e| e.offset),
        u64s(|e| e.position),
        strings(|e| &e.event_id),
        times(|e| e.timestamp_micros),
        times(|e| e.ingested_at_micros),
        strings(|e| &e.payload),
        Arc::new(StringArray::from_iter(
            events.iter().map(|e| e.metadata.as_deref()),
        )),
    ];
    RecordBatch::try_new(Arc::clone(schema), columns)
        .map_err(|e| Error::Internal(format!("building an event batch: {e}")))
}

/// Decode row `row` of an event batch.
pub fn event_at(batch: &RecordBatch, row: usize) -> RecordedEvent {
    let text = |c: usize| batch.column(c).as_string::<i32>().value(row).to_string();
    let u64_at = |c: usize| batch.column(c).as_primitive::<UInt64Type>().value(row);
    let micros = |c: usize| {
        batch
            .column(c)
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
            .value(row)
    };
    let metadata = batch.column(columns::METADATA).as_string::<i32>();
    RecordedEvent {
        tenant: text(columns::TENANT),
        entity_id: text(columns::ENTITY_ID),
        event_type: text(columns::EVENT_TYPE),
        version: u64_at(columns::VERSION),
        partition: batch
            .column(columns::PARTITION)
            .as_primitive::<UInt16Type>()
            .value(row),
        offset: u64_at(columns::OFFSET),
        position: u64_at(columns::POSITION),
        event_id: text(columns::EVENT_ID),
        timestamp_micros: micros(columns::TIMESTAMP),
        ingested_at_micros: micros(columns::INGESTED_AT),
        payload: text(columns::PAYLOAD),
        metadata: metadata
            .is_valid(row)
            .then(|| metadata.value(row).to_string()),
    }
}

/// A sealed batch and the offsets and positions it covers.
#[derive(Debug, Clone)]
struct Sealed {
    first_offset: u64,
    first_position: u64,
    last_position: u64,
    batch: RecordBatch,
}

/// One partition's batches.
#[derive(Debug, Default)]
struct PartitionBuffer {
    batches: RwLock<Vec<Sealed>>,
}

/// Every partition's buffer.
#[derive(Debug)]
pub struct LogBuffer {
    schema: SchemaRef,
    partitions: Vec<PartitionBuffer>,
    target_rows: usize,
}

impl LogBuffer {
    /// An empty buffer for `partitions` partitions.
    pub fn new(partitions: u16, target_rows: usize) -> Self {
        Self {
            schema: event_schema(),
            partitions: (0..partitions)
                .map(|_| PartitionBuffer::default())
                .collect(),
            target_rows,
        }
    }

    /// Publish events (in position order, offsets continuing each partition).
    pub fn publish(&self, events: &[RecordedEvent]) -> Result<()> {
        let mut by_partition: Vec<Vec<&RecordedEvent>> = vec![Vec::new(); self.partitions.len()];
        for event in events {
            by_partition[usize::from(event.partition)].push(event);
        }
        for (partition, events) in by_partition.iter().enumerate() {
            let (Some(first), Some(last)) = (events.first(), events.last()) else {
                continue;
            };
            let sealed = Sealed {
                first_offset: first.offset,
                first_position: first.position,
                last_position: last.position,
                batch: events_to_batch(&self.schema, events)?,
            };
            let mut batches = self.partitions[partition].batches.write();
            batches.push(sealed);
            self.merge_tail(&mut batches)?;
        }
        Ok(())
    }

    fn merge_tail(&self, batches: &mut Vec<Sealed>) -> Result<()> {
        loop {
            let n = batches.len();
            if n < MERGE_FANIN {
                return Ok(());
            }
            let tail = &batches[n - MERGE_FANIN..];
            let class = size_class(tail[0].batch.num_rows());
            let mergeable = tail.iter().all(|s| {
                s.batch.num_rows() < self.target_rows && size_class(s.batch.num_rows()) == class
            });
            if !mergeable {
                return Ok(());
            }
            let merged =
                arrow::compute::concat_batches(&self.schema, tail.iter().map(|s| &s.batch))
                    .map_err(|e| Error::Internal(format!("merging buffer batches: {e}")))?;
            let sealed = Sealed {
                first_offset: tail[0].first_offset,
                first_position: tail[0].first_position,
                last_position: tail[MERGE_FANIN - 1].last_position,
                batch: merged,
            };
            batches.truncate(n - MERGE_FANIN);
            batches.push(sealed);
        }
    }

    /// Rows of `partition` with offsets in `from..to`, as zero-copy batch slices.
    pub fn read_offsets(&self, partition: u16, from: u64, to: u64) -> Vec<RecordBatch> {
        let batches = self.partitions[usize::from(partition)].batches.read();
        let start = batches.partition_point(|s| s.first_offset + s.batch.num_rows() as u64 <= from);
        let mut out = Vec::new();
        for sealed in &batches[start..] {
            if sealed.first_offset >= to {
                break;
            }
            let lo = from.saturating_sub(sealed.first_offset) as usize;
            let hi = (to - sealed.first_offset).min(sealed.batch.num_rows() as u64) as usize;
            out.push(sealed.batch.slice(lo, hi - lo));
        }
        out
    }

    /// Rows of `partition` with positions in `from..to`, as zero-copy batch slices.
    pub fn read_positions(&self, partition: u16, from: u64, to: u64) -> Vec<RecordBatch> {
        let batches = self.partitions[usize::from(partition)].batches.read();
        let start = batches.partition_point(|s| s.last_position < from);
        let mut out = Vec::new();
        for sealed in &batches[start..] {
            if sealed.first_position >= to {
                break;
            }
            let positions = sealed
                .batch
                .column(columns::POSITION)
                .as_primitive::<UInt64Type>();
            let values = positions.values();
            let lo = values.partition_point(|p| *p < from);
            let hi = values.partition_point(|p| *p < to);
            if hi > lo {
                out.push(sealed.batch.slice(lo, hi - lo));
            }
        }
        out
    }

    /// Events of `partition` at the given ascending offsets; stops at the first offset
    /// not yet visible, so the result is always a prefix.
    pub fn events_at(&self, partition: u16, offsets: &[u64]) -> Vec<RecordedEvent> {
        let batches = self.partitions[usize::from(partition)].batches.read();
        let mut out = Vec::with_capacity(offsets.len());
        let mut at = 0;
        for offset in offsets {
            at += batches[at..]
                .partition_point(|s| s.first_offset + s.batch.num_rows() as u64 <= *offset);
            match batches.get(at) {
                Some(sealed) if sealed.first_offset <= *offset => {
                    out.push(event_at(
                        &sealed.batch,
                        (offset - sealed.first_offset) as usize,
                    ));
                }
                _ => break,
            }
        }
        out
    }

    /// The first offset of `partition` not yet visible.
    pub fn next_offset(&self, partition: u16) -> u64 {
        let batches = self.partitions[usize::from(partition)].batches.read();
        batches
            .last()
            .map_or(0, |s| s.first_offset + s.batch.num_rows() as u64)
    }

    /// Number of events buffered in `partition`, and of batches holding them.
    pub fn partition_size(&self, partition: u16) -> (u64, usize, usize) {
        let batches = self.partitions[usize::from(partition)].batches.read();
        let rows = batches.iter().map(|s| s.batch.num_rows() as u64).sum();
        let bytes = batches
            .iter()
            .map(|s| s.batch.get_array_memory_size())
            .sum();
        (rows, batches.len(), bytes)
    }
}

/// Size class of a batch: floor(log16(rows)).
fn size_class(rows: usize) -> u32 {
    rows.max(1).ilog2() / MERGE_FANIN.ilog2()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(partition: u16, offset: u64, position: u64) -> RecordedEvent {
        RecordedEvent {
            tenant: "t".into(),
            entity_id: format!("e{offset}"),
            event_type: "x".into(),
            version: 1,
            partition,
            offset,
            position,
            event_id: format!("id{position}"),
            timestamp_micros: 1,
            ingested_at_micros: 2,
            payload: "{}".into(),
            metadata: (position % 2 == 0).then(|| "{}".to_string()),
        }
    }

    #[test]
    fn small_batches_merge_and_reads_stay_exact() {
        let buffer = LogBuffer::new(2, 8192);
        let mut expected = Vec::new();
        for i in 0..1000u64 {
            let e = event(1, i, i * 2 + 1);
            buffer
                .publish(std::slice::from_ref(&e))
                .unwrap_or_else(|err| panic!("{err}"));
            expected.push(e);
        }
        let (rows, batches, _) = buffer.partition_size(1);
        assert_eq!(rows, 1000);
        assert!(batches < 64, "{batches} batches were not merged");
        let read: Vec<_> = buffer
            .read_offsets(1, 10, 900)
            .iter()
            .flat_map(|b| {
                (0..b.num_rows())
                    .map(|r| event_at(b, r))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(read, expected[10..900]);
        let by_position: Vec<_> = buffer
            .read_positions(1, 21, 41)
            .iter()
            .flat_map(|b| {
                (0..b.num_rows())
                    .map(|r| event_at(b, r))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(by_position, expected[10..20]);
        assert!(buffer.read_offsets(0, 0, 10).is_empty());
    }
}
