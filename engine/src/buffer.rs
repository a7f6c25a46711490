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
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, StringBuilder, TimestampMicrosecondArray, UInt16Array,
    UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, UInt16Type, UInt64Type};
use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::error::{Error, Result};
use crate::event::{EventRow, JsonText, RecordedEvent};
use crate::event_id::EventId;

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
    let mut builder = BatchBuilder::with_capacity(events.len());
    for event in events {
        event.with_row(|row| builder.push(row));
    }
    builder.finish(schema).map(|sealed| sealed.batch)
}

/// One partition's rows being gathered into a batch, column by column: a group
/// commit's share of the partition, or a chunk of recovery.
#[derive(Debug, Default)]
pub(crate) struct BatchBuilder {
    partition: u16,
    first_offset: u64,
    first_position: u64,
    last_position: u64,
    tenant: StringBuilder,
    entity_id: StringBuilder,
    event_type: StringBuilder,
    version: Vec<u64>,
    offset: Vec<u64>,
    position: Vec<u64>,
    event_id: StringBuilder,
    /// Each row's [`EventRow::event_uuid`], 0 when not known.
    event_uuid: Vec<u128>,
    timestamp: Vec<i64>,
    ingested_at: Vec<i64>,
    payload: StringBuilder,
    metadata: StringBuilder,
}

impl BatchBuilder {
    /// Room for `rows` rows of ~200-byte payloads.
    pub fn with_capacity(rows: usize) -> Self {
        let strings =
            |bytes_per_row: usize| StringBuilder::with_capacity(rows, rows * bytes_per_row);
        Self {
            tenant: strings(8),
            entity_id: strings(16),
            event_type: strings(16),
            version: Vec::with_capacity(rows),
            offset: Vec::with_capacity(rows),
            position: Vec::with_capacity(rows),
            event_id: strings(36),
            event_uuid: Vec::with_capacity(rows),
            timestamp: Vec::with_capacity(rows),
            ingested_at: Vec::with_capacity(rows),
            payload: strings(256),
            metadata: StringBuilder::with_capacity(rows, 0),
            ..Self::default()
        }
    }

    /// Add a row; rows come in offset order.
    pub fn push(&mut self, row: &EventRow<'_>) {
        if self.version.is_empty() {
            self.partition = row.partition;
            self.first_offset = row.offset;
            self.first_position = row.position;
        }
        self.last_position = row.position;
        self.tenant.append_value(row.tenant);
        self.entity_id.append_value(row.entity_id);
        self.event_type.append_value(row.event_type);
        self.version.push(row.version);
        self.offset.push(row.offset);
        self.position.push(row.position);
        self.event_id.append_value(row.event_id);
        self.event_uuid.push(row.event_uuid.unwrap_or(0));
        self.timestamp.push(row.timestamp_micros);
        self.ingested_at.push(row.ingested_at_micros);
        self.payload.append_value(row.payload);
        self.metadata.append_option(row.metadata);
    }

    /// Rows added so far.
    pub fn len(&self) -> usize {
        self.version.len()
    }

    fn finish(mut self, schema: &SchemaRef) -> Result<Sealed> {
        let times = |values: Vec<i64>| -> ArrayRef {
            Arc::new(TimestampMicrosecondArray::from(values).with_timezone("UTC"))
        };
        // A tail is sized for a full batch up front; one sealed early (a read reached
        // it) gives the room it did not use back.
        let text = |builder: &mut StringBuilder| -> ArrayRef {
            let mut array = builder.finish();
            array.shrink_to_fit();
            Arc::new(array)
        };
        let numbers = |mut values: Vec<u64>| -> ArrayRef {
            values.shrink_to_fit();
            Arc::new(UInt64Array::from(values))
        };
        for values in [&mut self.timestamp, &mut self.ingested_at] {
            values.shrink_to_fit();
        }
        self.event_uuid.shrink_to_fit();
        let rows = self.len();
        let columns: Vec<ArrayRef> = vec![
            text(&mut self.tenant),
            text(&mut self.entity_id),
            text(&mut self.event_type),
            numbers(self.version),
            Arc::new(UInt16Array::from(vec![self.partition; rows])),
            numbers(self.offset),
            numbers(self.position),
            text(&mut self.event_id),
            times(self.timestamp),
            times(self.ingested_at),
            text(&mut self.payload),
            text(&mut self.metadata),
        ];
        let batch = RecordBatch::try_new(Arc::clone(schema), columns)
            .map_err(|e| Error::Internal(format!("building an event batch: {e}")))?;
        Ok(Sealed {
            first_offset: self.first_offset,
            first_position: self.first_position,
            last_position: self.last_position,
            batch,
            event_uuids: self.event_uuid,
        })
    }
}

/// Decode row `row` of an event batch.
pub fn event_at(batch: &RecordBatch, row: usize) -> RecordedEvent {
    EventColumns::new(batch).event(row, &mut SharedText::default())
}

/// The most event types one read keeps shared copies of.
const SHARED_EVENT_TYPES: usize = 16;

/// Text shared by the events of one read: a tenant, stream or event type met again is
/// a reference count, not an allocation.
#[derive(Debug, Default)]
pub(crate) struct SharedText {
    tenant: Option<Arc<str>>,
    entity_id: Option<Arc<str>>,
    /// Set when every row decoded belongs to this stream: its columns are not read.
    stream: Option<(Arc<str>, Arc<str>)>,
    event_types: Vec<Arc<str>>,
}

impl SharedText {
    /// For decoding rows that all belong to the stream `(tenant, entity_id)`.
    pub fn of_stream(tenant: &str, entity_id: &str) -> Self {
        Self {
            stream: Some((Arc::from(tenant), Arc::from(entity_id))),
            ..Self::default()
        }
    }

    fn tenant(&mut self, text: &str) -> Arc<str> {
        share_last(&mut self.tenant, text)
    }

    fn entity_id(&mut self, text: &str) -> Arc<str> {
        share_last(&mut self.entity_id, text)
    }

    fn event_type(&mut self, text: &str) -> Arc<str> {
        if let Some(known) = self.event_types.iter().find(|t| ***t == *text) {
            return Arc::clone(known);
        }
        let fresh: Arc<str> = Arc::from(text);
        if self.event_types.len() < SHARED_EVENT_TYPES {
            self.event_types.push(Arc::clone(&fresh));
        }
        fresh
    }
}

/// `text`, sharing the previous value when it is the same.
fn share_last(last: &mut Option<Arc<str>>, text: &str) -> Arc<str> {
    match last {
        Some(known) if **known == *text => Arc::clone(known),
        _ => Arc::clone(last.insert(Arc::from(text))),
    }
}

/// An event batch's columns, downcast once, for decoding many rows.
pub(crate) struct EventColumns<'a> {
    tenant: &'a arrow::array::StringArray,
    entity_id: &'a arrow::array::StringArray,
    event_type: &'a arrow::array::StringArray,
    version: &'a UInt64Array,
    partition: &'a UInt16Array,
    offset: &'a UInt64Array,
    position: &'a UInt64Array,
    event_id: &'a arrow::array::StringArray,
    /// Each row's event id as a UUID value (0: not one), when the buffer kept them;
    /// empty otherwise.
    event_uuids: &'a [u128],
    timestamp: &'a TimestampMicrosecondArray,
    ingested_at: &'a TimestampMicrosecondArray,
    /// Shared by the events decoded from it (see [`JsonText`]).
    payload: Arc<arrow::array::StringArray>,
    metadata: &'a arrow::array::StringArray,
}

impl<'a> EventColumns<'a> {
    pub fn new(batch: &'a RecordBatch) -> Self {
        let text = |c: usize| batch.column(c).as_string::<i32>();
        let u64s = |c: usize| batch.column(c).as_primitive::<UInt64Type>();
        let micros = |c: usize| {
            batch
                .column(c)
                .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
        };
        Self {
            tenant: text(columns::TENANT),
            entity_id: text(columns::ENTITY_ID),
            event_type: text(columns::EVENT_TYPE),
            version: u64s(columns::VERSION),
            partition: batch
                .column(columns::PARTITION)
                .as_primitive::<UInt16Type>(),
            offset: u64s(columns::OFFSET),
            position: u64s(columns::POSITION),
            event_id: text(columns::EVENT_ID),
            event_uuids: &[],
            timestamp: micros(columns::TIMESTAMP),
            ingested_at: micros(columns::INGESTED_AT),
            payload: Arc::new(text(columns::PAYLOAD).clone()),
            metadata: text(columns::METADATA),
        }
    }

    /// With the rows' event ids as UUID values (see [`Sealed::event_uuids`]).
    pub fn with_event_uuids(mut self, event_uuids: &'a [u128]) -> Self {
        self.event_uuids = event_uuids;
        self
    }

    /// Row `row` as an owned event, its repeated text taken from `shared`.
    pub fn event(&self, row: usize, shared: &mut SharedText) -> RecordedEvent {
        let (tenant, entity_id) = match &shared.stream {
            Some((tenant, entity_id)) => (Arc::clone(tenant), Arc::clone(entity_id)),
            None => (
                shared.tenant(self.tenant.value(row)),
                shared.entity_id(self.entity_id.value(row)),
            ),
        };
        let event_id = match self.event_uuids.get(row) {
            Some(uuid) if *uuid != 0 => EventId::from_uuid(*uuid),
            _ => EventId::from(self.event_id.value(row)),
        };
        RecordedEvent {
            tenant,
            entity_id,
            event_type: shared.event_type(self.event_type.value(row)),
            version: self.version.value(row),
            partition: self.partition.value(row),
            offset: self.offset.value(row),
            position: self.position.value(row),
            event_id,
            timestamp_micros: self.timestamp.value(row),
            ingested_at_micros: self.ingested_at.value(row),
            payload: JsonText::new(Arc::clone(&self.payload), row),
            metadata: self
                .metadata
                .is_valid(row)
                .then(|| self.metadata.value(row).to_string()),
        }
    }
}

/// A sealed batch and the offsets and positions it covers.
#[derive(Debug, Clone)]
struct Sealed {
    first_offset: u64,
    first_position: u64,
    last_position: u64,
    batch: RecordBatch,
    /// Each row's event id as a UUID value, 0 when it is not one: a stream read
    /// takes the id from here instead of parsing the text column.
    event_uuids: Vec<u128>,
}

/// One partition: sealed batches, then the open tail that publishing appends to.
#[derive(Debug, Default)]
pub(crate) struct PartitionState {
    sealed: Vec<Sealed>,
    tail: BatchBuilder,
    /// The first offset held: rows below it were flushed to Parquet and released.
    base_offset: u64,
    /// The first offset not yet published.
    end_offset: u64,
}

impl PartitionState {
    /// First position held by the tail, if it holds any row.
    fn tail_first_position(&self) -> Option<u64> {
        (self.tail.len() > 0).then_some(self.tail.first_position)
    }

    fn tail_first_offset(&self) -> u64 {
        self.end_offset - self.tail.len() as u64
    }
}

/// Every partition's buffer.
#[derive(Debug)]
pub struct LogBuffer {
    schema: SchemaRef,
    partitions: Vec<RwLock<PartitionState>>,
    target_rows: usize,
    /// Every row at a position below this has been released (it is in Parquet).
    released_position: AtomicU64,
}

/// Publishes rows: holds the write lock of each partition it has touched until it is
/// dropped, so readers see each partition's rows of one group commit all at once.
pub(crate) struct Publisher<'a> {
    buffer: &'a LogBuffer,
    guards: Vec<Option<RwLockWriteGuard<'a, PartitionState>>>,
}

impl Publisher<'_> {
    /// Append a row to its partition (rows come in offset order).
    pub fn push(&mut self, row: &EventRow<'_>) -> Result<()> {
        let partition = usize::from(row.partition);
        let slot = self.guards.get_mut(partition).ok_or_else(|| {
            Error::Internal(format!(
                "row for partition {partition}, which does not exist"
            ))
        })?;
        let state = slot.get_or_insert_with(|| self.buffer.partitions[partition].write());
        if state.tail.len() == 0 {
            // Room for a whole batch now, rather than regrowing it row by row.
            state.tail = BatchBuilder::with_capacity(self.buffer.target_rows);
        }
        if row.offset != state.end_offset {
            return Err(Error::Internal(format!(
                "partition {partition}: row at offset {}, expected {}",
                row.offset, state.end_offset
            )));
        }
        state.tail.push(row);
        state.end_offset += 1;
        if state.tail.len() >= self.buffer.target_rows {
            self.buffer.seal_tail(state)?;
        }
        Ok(())
    }
}

impl LogBuffer {
    /// An empty buffer for `partitions` partitions.
    pub fn new(partitions: u16, target_rows: usize) -> Self {
        Self {
            schema: event_schema(),
            partitions: (0..partitions).map(|_| RwLock::default()).collect(),
            target_rows,
            released_position: AtomicU64::new(0),
        }
    }

    /// A publisher; the rows it pushes become visible as it releases each partition.
    pub fn publisher(&self) -> Publisher<'_> {
        Publisher {
            buffer: self,
            guards: (0..self.partitions.len()).map(|_| None).collect(),
        }
    }

    /// Turn the tail into a sealed batch, merging small sealed batches behind it.
    fn seal_tail(&self, state: &mut PartitionState) -> Result<()> {
        if state.tail.len() == 0 {
            return Ok(());
        }
        let sealed = std::mem::take(&mut state.tail).finish(&self.schema)?;
        state.sealed.push(sealed);
        self.merge_sealed(&mut state.sealed)
    }

    /// The partition for reading, with its tail sealed first if `reads_tail` says the
    /// read reaches into it.
    fn read_state(
        &self,
        partition: u16,
        reads_tail: impl Fn(&PartitionState) -> bool,
    ) -> Result<RwLockReadGuard<'_, PartitionState>> {
        let lock = &self.partitions[usize::from(partition)];
        let state = lock.read();
        if state.tail.len() == 0 || !reads_tail(&state) {
            return Ok(state);
        }
        drop(state);
        let mut state = lock.write();
        self.seal_tail(&mut state)?;
        Ok(RwLockWriteGuard::downgrade(state))
    }

    fn merge_sealed(&self, batches: &mut Vec<Sealed>) -> Result<()> {
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
                event_uuids: tail.iter().flat_map(|s| &s.event_uuids).copied().collect(),
            };
            batches.truncate(n - MERGE_FANIN);
            batches.push(sealed);
        }
    }

    /// Rows of `partition` with offsets in `from..to`, as zero-copy batch slices;
    /// `None` when rows from `from` on have been released.
    pub fn read_offsets(
        &self,
        partition: u16,
        from: u64,
        to: u64,
    ) -> Result<Option<Vec<RecordBatch>>> {
        let state = self.read_state(partition, |s| to > s.tail_first_offset())?;
        if from < state.base_offset {
            return Ok(None);
        }
        let batches = &state.sealed;
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
        Ok(Some(out))
    }

    /// Rows of `partition` with positions in `from..to`, as zero-copy batch slices;
    /// `None` when rows from `from` on may have been released.
    pub fn read_positions(
        &self,
        partition: u16,
        from: u64,
        to: u64,
    ) -> Result<Option<Vec<RecordBatch>>> {
        let mut out = Vec::new();
        let whole = self.visit_positions(partition, from, to, |batch, _, rows| {
            out.push(batch.slice(rows.start, rows.len()));
        })?;
        Ok(whole.then_some(out))
    }

    /// Visit the visible rows of `partition` with positions in `from..to`, in
    /// position order: `visit(batch, event_uuids, rows)` for each buffered batch
    /// holding some, with the batch's event ids as UUID values and the range of its
    /// rows. Nothing is copied or sliced, so reading a few new rows for many readers
    /// stays cheap. `false` when some of the positions have been released.
    pub fn visit_positions(
        &self,
        partition: u16,
        from: u64,
        to: u64,
        mut visit: impl FnMut(&RecordBatch, &[u128], std::ops::Range<usize>),
    ) -> Result<bool> {
        let state = self.read_state(partition, |s| {
            s.tail_first_position().is_some_and(|first| to > first)
        })?;
        if from < self.released_position.load(Ordering::Acquire) {
            return Ok(false);
        }
        let batches = &state.sealed;
        let start = batches.partition_point(|s| s.last_position < from);
        for sealed in &batches[start..] {
            if sealed.first_position >= to {
                break;
            }
            let positions = sealed
                .batch
                .column(columns::POSITION)
                .as_primitive::<UInt64Type>()
                .values();
            let lo = positions.partition_point(|p| *p < from);
            let hi = positions.partition_point(|p| *p < to);
            if hi > lo {
                visit(&sealed.batch, &sealed.event_uuids, lo..hi);
            }
        }
        Ok(true)
    }

    /// Events of the stream `(tenant, entity_id)` in `partition` at the given
    /// ascending offsets (all of them the stream's); stops at the first offset not yet
    /// visible, so the result is always a prefix. `None` when some of the offsets
    /// have been released.
    pub fn events_at(
        &self,
        partition: u16,
        (tenant, entity_id): (&str, &str),
        offsets: &[u64],
    ) -> Result<Option<Vec<RecordedEvent>>> {
        let last = offsets.last().copied().unwrap_or(0);
        let state = self.read_state(partition, |s| last >= s.tail_first_offset())?;
        if offsets
            .first()
            .is_some_and(|first| *first < state.base_offset)
        {
            return Ok(None);
        }
        let batches = &state.sealed;
        let mut out = Vec::with_capacity(offsets.len());
        let mut at = 0;
        let mut columns: Option<(usize, EventColumns<'_>)> = None;
        let mut shared = SharedText::of_stream(tenant, entity_id);
        for offset in offsets {
            at += batches[at..]
                .partition_point(|s| s.first_offset + s.batch.num_rows() as u64 <= *offset);
            let Some(sealed) = batches.get(at).filter(|s| s.first_offset <= *offset) else {
                break;
            };
            if columns.as_ref().is_none_or(|(i, _)| *i != at) {
                columns = Some((
                    at,
                    EventColumns::new(&sealed.batch).with_event_uuids(&sealed.event_uuids),
                ));
            }
            if let Some((_, decoded)) = &columns {
                out.push(decoded.event((offset - sealed.first_offset) as usize, &mut shared));
            }
        }
        Ok(Some(out))
    }

    /// Start an empty partition at `offset` (the first offset not in Parquet).
    pub fn start_at(&self, partition: u16, offset: u64) {
        let mut state = self.partitions[usize::from(partition)].write();
        debug_assert!(state.end_offset == state.base_offset);
        state.base_offset = offset;
        state.end_offset = offset;
    }

    /// Drop the rows of `partition` below `offset`: they are in Parquet now.
    pub fn release(&self, partition: u16, offset: u64) -> Result<()> {
        let mut state = self.partitions[usize::from(partition)].write();
        if offset <= state.base_offset {
            return Ok(());
        }
        if offset > state.end_offset {
            return Err(Error::Internal(format!(
                "partition {partition}: releasing up to offset {offset}, past the end {}",
                state.end_offset
            )));
        }
        if state.tail.len() > 0 && state.tail_first_offset() < offset {
            self.seal_tail(&mut state)?;
        }
        let keep = state
            .sealed
            .partition_point(|s| s.first_offset + s.batch.num_rows() as u64 <= offset);
        state.sealed.drain(..keep);
        if let Some(first) = state.sealed.first_mut().filter(|s| s.first_offset < offset) {
            let cut = (offset - first.first_offset) as usize;
            first.batch = first.batch.slice(cut, first.batch.num_rows() - cut);
            first.event_uuids.drain(..cut);
            first.first_offset = offset;
            first.first_position = first
                .batch
                .column(columns::POSITION)
                .as_primitive::<UInt64Type>()
                .value(0);
        }
        state.base_offset = offset;
        Ok(())
    }

    /// Record that every row below `position` has been released (call before the
    /// partitions' [`LogBuffer::release`]).
    pub fn set_released_position(&self, position: u64) {
        self.released_position.fetch_max(position, Ordering::AcqRel);
    }

    /// Every row below this position has been released.
    pub fn released_position(&self) -> u64 {
        self.released_position.load(Ordering::Acquire)
    }

    /// The first offset of `partition` not yet visible.
    pub fn next_offset(&self, partition: u16) -> u64 {
        self.partitions[usize::from(partition)].read().end_offset
    }

    /// The partition's next offset, the events it holds, the sealed batches holding
    /// them (plus the open tail), and the memory the sealed batches take.
    pub fn partition_size(&self, partition: u16) -> (u64, u64, usize, usize) {
        let state = self.partitions[usize::from(partition)].read();
        let bytes = state
            .sealed
            .iter()
            .map(|s| s.batch.get_array_memory_size())
            .sum();
        let batches = state.sealed.len() + usize::from(state.tail.len() > 0);
        (
            state.end_offset,
            state.end_offset - state.base_offset,
            batches,
            bytes,
        )
    }
}

/// Size class of a batch: floor(log16(rows)).
fn size_class(rows: usize) -> u32 {
    rows.max(1).ilog2() / MERGE_FANIN.ilog2()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event of the stream ("t", "s"); every third id is a UUID.
    fn event(partition: u16, offset: u64, position: u64) -> RecordedEvent {
        let event_id = if position.is_multiple_of(3) {
            EventId::from_uuid(u128::from(position) << 64 | 0x7000)
        } else {
            format!("id{position}").into()
        };
        RecordedEvent {
            tenant: "t".into(),
            entity_id: "s".into(),
            event_type: "x".into(),
            version: 1,
            partition,
            offset,
            position,
            event_id,
            timestamp_micros: 1,
            ingested_at_micros: 2,
            payload: "{}".into(),
            metadata: position.is_multiple_of(2).then(|| "{}".to_string()),
        }
    }

    #[test]
    fn small_batches_merge_and_reads_stay_exact() {
        let buffer = LogBuffer::new(2, 8192);
        let mut expected = Vec::new();
        for i in 0..1000u64 {
            let e = event(1, i, i * 2 + 1);
            let mut publisher = buffer.publisher();
            e.with_row(|row| publisher.push(row))
                .unwrap_or_else(|err| panic!("{err}"));
            drop(publisher);
            if i % 3 == 0 {
                // A read seals the tail, as a subscriber following the log would.
                buffer
                    .read_offsets(1, i, i + 1)
                    .unwrap_or_else(|err| panic!("{err}"));
            }
            expected.push(e);
        }
        let (rows, buffered, batches, _) = buffer.partition_size(1);
        assert_eq!((rows, buffered), (1000, 1000));
        assert!(batches < 64, "{batches} batches were not merged");
        let read = |batches: Result<Option<Vec<RecordBatch>>>| -> Vec<RecordedEvent> {
            let batches = batches
                .unwrap_or_else(|err| panic!("{err}"))
                .unwrap_or_else(|| panic!("rows released"));
            batches
                .iter()
                .flat_map(|b| (0..b.num_rows()).map(|r| event_at(b, r)))
                .collect()
        };
        assert_eq!(read(buffer.read_offsets(1, 10, 900)), expected[10..900]);
        assert_eq!(read(buffer.read_positions(1, 21, 41)), expected[10..20]);
        assert!(read(buffer.read_offsets(0, 0, 10)).is_empty());
        // Stream reads take ids from the kept UUID values, which merge with their rows.
        let offsets: Vec<u64> = (5..1000).step_by(4).collect();
        let got = buffer
            .events_at(1, ("t", "s"), &offsets)
            .unwrap_or_else(|err| panic!("{err}"))
            .unwrap_or_default();
        let want: Vec<_> = offsets
            .iter()
            .map(|o| expected[*o as usize].clone())
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn the_tail_seals_at_the_target_size_and_on_reads_that_reach_it() {
        let buffer = LogBuffer::new(1, 100);
        let events: Vec<_> = (0..250u64).map(|i| event(0, i, i)).collect();
        let mut publisher = buffer.publisher();
        for e in &events {
            e.with_row(|row| publisher.push(row))
                .unwrap_or_else(|err| panic!("{err}"));
        }
        drop(publisher);
        // Two full batches sealed by size, 50 rows still open.
        assert_eq!(buffer.partition_size(0).2, 3);
        assert_eq!(buffer.next_offset(0), 250);
        let offsets: Vec<u64> = (190..250).step_by(7).collect();
        let got = buffer
            .events_at(0, ("t", "s"), &offsets)
            .unwrap_or_else(|err| panic!("{err}"))
            .unwrap_or_default();
        let want: Vec<_> = offsets
            .iter()
            .map(|o| events[*o as usize].clone())
            .collect();
        assert_eq!(got, want);
        // Releasing rows (they went to Parquet) drops and slices batches; reads
        // below the release point say so instead of returning fewer rows.
        buffer.set_released_position(130);
        buffer.release(0, 130).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(buffer.partition_size(0).1, 120);
        assert!(matches!(buffer.read_offsets(0, 129, 140), Ok(None)));
        assert!(matches!(buffer.events_at(0, ("t", "s"), &[10]), Ok(None)));
        assert!(matches!(buffer.read_positions(0, 100, 200), Ok(None)));
        let kept = buffer
            .events_at(0, ("t", "s"), &[130, 249])
            .unwrap_or_else(|err| panic!("{err}"))
            .unwrap_or_default();
        assert_eq!(kept, vec![events[130].clone(), events[249].clone()]);
        let skipped = event(0, 251, 251);
        let mut publisher = buffer.publisher();
        assert!(matches!(
            skipped.with_row(|row| publisher.push(row)),
            Err(Error::Internal(_))
        ));
    }
}
