//! The sequencer: stream versions, optimistic concurrency, idempotency, and the
//! assignment of versions, partition offsets and log positions.
//!
//! It runs under the store's state lock. A request is checked completely (every
//! stream's expected version, every event id) before anything is assigned, so a
//! rejected request changes nothing. Assigned events are encoded into the pending
//! [`Group`] as one WAL record; the WAL writer makes the group durable and visible.

use std::sync::Arc;

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashMap, HashSet};
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::event::{
    AppendResult, AppendSource, EventAck, EventRow, ExpectedVersion, RecordedEvent,
};
use crate::event_id::{EventId, IdGenerator};
use crate::partition::partition_for;
use crate::wal::codec::{self, PartHead, RecordHead};
use crate::wal::frame;

/// A stream's identity. The tenant's text is shared by all its streams, so a lookup
/// compares it in memory that is already in cache; the entity id is shared with the
/// acknowledgements of the stream's appends.
#[derive(Debug)]
struct StreamKey {
    tenant: Arc<str>,
    entity_id: Arc<str>,
}

/// A borrowed stream identity, to look streams up without allocating.
#[derive(Debug, Clone, Copy, Hash)]
struct StreamRef<'a> {
    tenant: &'a str,
    entity_id: &'a str,
}

impl<'a> From<&'a StreamKey> for StreamRef<'a> {
    fn from(key: &'a StreamKey) -> Self {
        StreamRef {
            tenant: &key.tenant,
            entity_id: &key.entity_id,
        }
    }
}

/// One version of a stream: where it is and its event id key (kept as two words, so
/// a version takes 24 bytes rather than a `u128`'s aligned 32).
#[derive(Debug, Clone, Copy)]
struct Version {
    offset: u64,
    id: [u64; 2],
}

impl Version {
    fn id_key(&self) -> u128 {
        (u128::from(self.id[0]) << 64) | u128::from(self.id[1])
    }
}

/// What the log knows of one stream.
#[derive(Debug, Default)]
struct StreamState {
    partition: u16,
    /// Each version's partition offset and event id key: `versions[v - 1]`. One
    /// vector, so an append to the stream touches one place in memory.
    versions: Vec<Version>,
    /// Event id key -> version, built from `versions` the first time a request names
    /// event ids for this stream and kept up to date from then on. Streams whose events
    /// all get generated ids never need it, and their appends do not pay for it.
    by_id: Option<Box<HashMap<u128, u64>>>,
}

impl StreamState {
    /// Record the next version at `offset`, with event id key `key`; returns the version.
    fn push(&mut self, offset: u64, key: u128) -> u64 {
        self.versions.push(Version {
            offset,
            id: [(key >> 64) as u64, key as u64],
        });
        let version = self.versions.len() as u64;
        if let Some(by_id) = &mut self.by_id {
            by_id.insert(key, version);
        }
        version
    }

    /// The stream's current version (0 when it has none).
    fn version(&self) -> u64 {
        self.versions.len() as u64
    }

    /// The partition offset of `version` (from 1).
    fn offset_of(&self, version: u64) -> u64 {
        self.versions[(version - 1) as usize].offset
    }

    /// Build the id index if the stream does not have it yet.
    fn index_ids(&mut self) {
        if self.by_id.is_none() {
            let by_id = (1u64..)
                .zip(&self.versions)
                .map(|(v, version)| (version.id_key(), v))
                .collect();
            self.by_id = Some(Box::new(by_id));
        }
    }

    /// The version of the event whose id key is `key`, once the index is built.
    fn version_of(&self, key: u128) -> Option<u64> {
        self.by_id.as_ref()?.get(&key).copied()
    }
}

/// Where a stream's events are: its partition and the offsets of its versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamLocation {
    pub partition: u16,
    pub offsets: Vec<u64>,
}

/// Appends assigned but not yet written: one WAL record per request. Once the group
/// is written, the writer publishes the records' events to the Arrow buffer.
#[derive(Debug, Default)]
pub(crate) struct Group {
    pub buf: Vec<u8>,
    /// Where each record starts in `buf`.
    pub records: Vec<usize>,
    /// The position after the group's last event, once it has one.
    pub end_position: Option<u64>,
    pub waiters: Vec<oneshot::Sender<Result<()>>>,
}

/// The largest buffer a written group hands on to the next one; a larger one (left by
/// a burst of big requests) is freed rather than held for good.
const MAX_KEPT_GROUP_BYTES: usize = 16 << 20;

impl Group {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Move `staged` (the records of one request, being handed over) to the end of
    /// this group, leaving it empty. Into an empty group this is a swap, so the staged
    /// bytes are not copied and `staged` keeps this group's memory for the next one.
    pub fn absorb(&mut self, staged: &mut Group) {
        if self.is_empty() && self.waiters.is_empty() {
            std::mem::swap(self, staged);
            staged.clear();
            return;
        }
        let shift = self.buf.len();
        self.buf.extend_from_slice(&staged.buf);
        self.records
            .extend(staged.records.iter().map(|start| start + shift));
        if staged.end_position.is_some() {
            self.end_position = staged.end_position;
        }
        self.waiters.append(&mut staged.waiters);
        if staged.buf.capacity() > MAX_KEPT_GROUP_BYTES {
            *staged = Group::default();
        } else {
            staged.clear();
        }
    }

    /// Empty the group, keeping its memory.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.records.clear();
        self.end_position = None;
        self.waiters.clear();
    }

    /// This group, written and acknowledged, emptied for reuse: the appends of a later
    /// group are encoded into memory already in place instead of a buffer grown anew
    /// (page faults and copies on every doubling) each time.
    pub fn recycled(mut self) -> Group {
        if self.buf.capacity() > MAX_KEPT_GROUP_BYTES {
            return Group::default();
        }
        self.clear();
        self
    }
}

/// What an accepted request turned out to be.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// New events, now in the pending group.
    Appended(AppendResult),
    /// A retry: every event is already in the log at these (partition, offset)s.
    Retry(Vec<(u16, u64)>),
}

/// Stream versions, partition offsets and the log position.
#[derive(Debug)]
pub(crate) struct Sequencer {
    partitions: u16,
    streams: Streams,
    next_offsets: Vec<u64>,
    events: u64,
    ids: IdGenerator,
    /// Position the next event gets.
    pub next_position: u64,
    /// Sequence the next WAL record gets.
    pub next_sequence: u64,
}

impl Sequencer {
    pub fn new(partitions: u16) -> Self {
        Self {
            partitions,
            streams: Streams::default(),
            next_offsets: vec![0; usize::from(partitions)],
            events: 0,
            ids: IdGenerator::new(),
            next_position: 0,
            next_sequence: 0,
        }
    }

    /// Check `request` and, when it is new, assign its events and encode it into
    /// `group` as one WAL record. Nothing changes when an error is returned.
    pub fn append<R: AppendSource + ?Sized>(
        &mut self,
        request: &R,
        now_micros: i64,
        group: &mut Group,
    ) -> Result<Outcome> {
        let parts = request.part_count();
        if self.index_named_ids(request)
            && let Some(retry) = self.find_retry(request)?
        {
            return Ok(Outcome::Retry(retry));
        }
        if (0..parts).any(|i| request.part(i).expected_version != ExpectedVersion::Any) {
            self.check_expected_versions(request)?;
        }
        let tenant = request.tenant();
        let start = frame::begin_record(&mut group.buf, self.next_sequence);
        codec::begin_append(
            &mut group.buf,
            &RecordHead {
                tenant,
                ingested_at_micros: now_micros,
                first_position: self.next_position,
                part_count: parts,
            },
        );
        let mut acks = Vec::with_capacity((0..parts).map(|i| request.part(i).len).sum());
        let partitions = self.partitions;
        let mut warmed = [Warmed::default(); WARM_AHEAD];
        for i in 0..parts {
            if i % WARM_AHEAD == 0 {
                self.streams
                    .warm(request, i..parts.min(i + WARM_AHEAD), &mut warmed);
            }
            let part = request.part(i);
            let hash = warmed[i % WARM_AHEAD].hash;
            let (entity_id, stream) =
                self.streams
                    .get_or_create(hash, tenant, part.entity_id, || {
                        partition_for(tenant, part.entity_id, partitions)
                    });
            let partition = stream.partition;
            let next_offset = &mut self.next_offsets[usize::from(partition)];
            codec::begin_part(
                &mut group.buf,
                &PartHead {
                    entity_id: part.entity_id,
                    partition,
                    first_version: stream.version() + 1,
                    first_offset: *next_offset,
                    event_count: part.len,
                },
            );
            for j in 0..part.len {
                let data = request.event(i, j);
                let (event_id, key, id) = match data.event_id {
                    Some(text) => {
                        let event_id = EventId::from(text);
                        let key = event_id.uuid_value().unwrap_or_else(|| id_key(text));
                        (event_id, key, text)
                    }
                    None => {
                        let value = self.ids.next(now_micros);
                        // The WAL keeps a UUID id by value (`encode_event` below):
                        // its text is only made when the record is decoded.
                        (EventId::from_uuid(value), value, "")
                    }
                };
                let offset = *next_offset;
                *next_offset += 1;
                let version = stream.push(offset, key);
                let row = EventRow {
                    tenant,
                    entity_id: part.entity_id,
                    event_type: data.event_type,
                    version,
                    partition,
                    offset,
                    position: self.next_position,
                    event_id: id,
                    event_uuid: event_id.uuid_value(),
                    timestamp_micros: data.timestamp_micros.unwrap_or(now_micros),
                    ingested_at_micros: now_micros,
                    payload: data.payload,
                    metadata: data.metadata,
                };
                codec::encode_event(&mut group.buf, &row, event_id.uuid_value());
                acks.push(EventAck {
                    event_id,
                    entity_id: Arc::clone(entity_id),
                    version,
                    partition,
                    offset,
                    position: self.next_position,
                });
                self.next_position += 1;
            }
        }
        self.events += acks.len() as u64;
        frame::finish_record(&mut group.buf, start).map_err(Error::Internal)?;
        group.records.push(start);
        group.end_position = Some(self.next_position);
        self.next_sequence += 1;
        Ok(Outcome::Appended(AppendResult {
            events: acks,
            deduplicated: false,
        }))
    }

    /// Make sure every existing stream to which `request` gives event ids has its id
    /// index, so that [`Self::find_retry`] can look the ids up. Returns whether the
    /// request names any event id at all.
    fn index_named_ids<R: AppendSource + ?Sized>(&mut self, request: &R) -> bool {
        let mut names_ids = false;
        for i in 0..request.part_count() {
            if names_event_ids(request, i) {
                names_ids = true;
                let key = StreamRef {
                    tenant: request.tenant(),
                    entity_id: request.part(i).entity_id,
                };
                if let Some(stream) = self.streams.get_mut(key) {
                    stream.index_ids();
                }
            }
        }
        names_ids
    }

    /// A request whose every event id is already in its stream is a retry; one where
    /// only some are is a conflict; one with none is new.
    fn find_retry<R: AppendSource + ?Sized>(&self, request: &R) -> Result<Option<Vec<(u16, u64)>>> {
        let mut found = Vec::new();
        let mut seen = HashSet::new();
        let mut index = 0usize;
        let mut first_dup: Option<(&str, &str)> = None;
        for i in 0..request.part_count() {
            let part = request.part(i);
            let stream = self.stream(request.tenant(), part.entity_id);
            for j in 0..part.len {
                if let Some(id) = request.event(i, j).event_id {
                    let key = id_key(id);
                    if !seen.insert((part.entity_id, key)) {
                        return Err(Error::InvalidEvent {
                            index,
                            reason: format!("event id {id:?} appears twice in the request"),
                        });
                    }
                    if let Some(v) = stream.and_then(|s| s.version_of(key).map(|v| (s, v))) {
                        found.push((v.0.partition, v.0.offset_of(v.1)));
                        first_dup.get_or_insert((part.entity_id, id));
                    }
                }
                index += 1;
            }
        }
        match first_dup {
            None => Ok(None),
            Some(_) if found.len() == index => Ok(Some(found)),
            Some((entity_id, event_id)) => Err(Error::DuplicateEventId {
                entity_id: entity_id.to_string(),
                event_id: event_id.to_string(),
            }),
        }
    }

    /// Check each part's expected version against the stream as the earlier parts of
    /// the same request leave it.
    fn check_expected_versions<R: AppendSource + ?Sized>(&self, request: &R) -> Result<()> {
        let mut overlay: HashMap<&str, u64> = HashMap::new();
        for i in 0..request.part_count() {
            let part = request.part(i);
            let stored = || {
                self.stream(request.tenant(), part.entity_id)
                    .map_or(0, StreamState::version)
            };
            let version = overlay.get(part.entity_id).copied().unwrap_or_else(stored);
            let current = (version > 0).then_some(version);
            if !part.expected_version.is_satisfied_by(current) {
                return Err(Error::WrongExpectedVersion {
                    entity_id: part.entity_id.to_string(),
                    expected: part.expected_version,
                    current,
                });
            }
            overlay.insert(part.entity_id, version + part.len as u64);
        }
        Ok(())
    }

    /// Re-apply an event read from the WAL on recovery, checking that versions,
    /// offsets and positions continue without gaps.
    pub fn replay(&mut self, event: &EventRow<'_>) -> std::result::Result<(), String> {
        if event.position != self.next_position {
            return Err(format!(
                "event at position {}, expected {}",
                event.position, self.next_position
            ));
        }
        self.apply(event)?;
        self.next_position += 1;
        Ok(())
    }

    /// Re-apply an event read from a Parquet file on open. Files are read partition
    /// by partition, so positions are not checked here; offsets and versions are.
    pub fn restore(&mut self, event: &EventRow<'_>) -> std::result::Result<(), String> {
        self.apply(event)
    }

    fn apply(&mut self, event: &EventRow<'_>) -> std::result::Result<(), String> {
        let expected_partition = partition_for(event.tenant, event.entity_id, self.partitions);
        if event.partition != expected_partition {
            return Err(format!(
                "stream {:?} recorded in partition {}, but routes to {expected_partition}",
                event.entity_id, event.partition
            ));
        }
        let next_offset = &mut self.next_offsets[usize::from(event.partition)];
        if event.offset != *next_offset {
            return Err(format!(
                "partition {} offset {}, expected {}",
                event.partition, event.offset, next_offset
            ));
        }
        *next_offset += 1;
        let hash = self.streams.hash(StreamRef {
            tenant: event.tenant,
            entity_id: event.entity_id,
        });
        let (_, stream) = self
            .streams
            .get_or_create(hash, event.tenant, event.entity_id, || event.partition);
        if event.version != stream.version() + 1 {
            return Err(format!(
                "stream {:?} version {}, expected {}",
                event.entity_id,
                event.version,
                stream.version() + 1
            ));
        }
        let key = event.event_uuid.unwrap_or_else(|| id_key(event.event_id));
        stream.push(event.offset, key);
        self.events += 1;
        Ok(())
    }

    /// Where the stream's versions `from_version..` live (all, durable or not).
    pub fn locate(
        &self,
        tenant: &str,
        entity_id: &str,
        from_version: u64,
        max: usize,
    ) -> Option<StreamLocation> {
        let stream = self.stream(tenant, entity_id)?;
        let skip = from_version.saturating_sub(1).min(stream.version()) as usize;
        let end = skip.saturating_add(max).min(stream.versions.len());
        Some(StreamLocation {
            partition: stream.partition,
            offsets: stream.versions[skip..end]
                .iter()
                .map(|v| v.offset)
                .collect(),
        })
    }

    /// The stream's partition, and how many of its versions have offsets below
    /// `visible(partition)` (its versions are in offset order).
    pub fn versions_below(
        &self,
        tenant: &str,
        entity_id: &str,
        visible: impl FnOnce(u16) -> u64,
    ) -> Option<u64> {
        let stream = self.stream(tenant, entity_id)?;
        let visible = visible(stream.partition);
        Some(stream.versions.partition_point(|v| v.offset < visible) as u64)
    }

    /// (streams, events) assigned so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.streams.len() as u64, self.events)
    }

    fn stream(&self, tenant: &str, entity_id: &str) -> Option<&StreamState> {
        self.streams.get(StreamRef { tenant, entity_id })
    }
}

/// Every stream's state, found by its identity.
///
/// Open addressing with linear probing over an array of slots, one `u64` each: 0 when
/// empty, else a tag from the key's hash (the high [`TAG_BITS`] bits) and the stream's
/// index in `entries` plus one. The slots are small and apart from the streams, so
/// that [`Streams::warm`] can touch a run of parts' slots, then their streams, then
/// their entity ids and last versions: each step a run of cache misses independent
/// of each other, which the processor overlaps, where one lookup after the other would
/// wait for three or four misses in turn. (A general table finds the stream in one
/// step, its misses chained.)
#[derive(Debug)]
struct Streams {
    /// A power of two in length, at most half full.
    slots: Vec<u64>,
    entries: Vec<(StreamKey, StreamState)>,
    hasher: DefaultHashBuilder,
    /// Each tenant's name, shared by the keys of its streams.
    tenants: HashSet<Arc<str>>,
}

/// How many parts of a request [`Streams::warm`] looks up ahead of the appending loop.
const WARM_AHEAD: usize = 32;

/// Bits of a slot that hold the hash tag; the others hold the stream's index + 1.
const TAG_BITS: u32 = 24;
const INDEX_MASK: u64 = (1 << (64 - TAG_BITS)) - 1;

/// A key's hash, and where the warming steps found its stream (if they did).
#[derive(Debug, Clone, Copy, Default)]
struct Warmed {
    hash: u64,
    candidate: Option<usize>,
}

impl Default for Streams {
    fn default() -> Self {
        Self {
            slots: vec![0; 16],
            entries: Vec::new(),
            hasher: DefaultHashBuilder::default(),
            tenants: HashSet::new(),
        }
    }
}

impl Streams {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn hash(&self, key: StreamRef<'_>) -> u64 {
        self.hasher.hash_one(key)
    }

    fn home(&self, hash: u64) -> usize {
        // Only the low bits are used, so truncating on 32-bit targets is fine.
        (hash as usize) & (self.slots.len() - 1)
    }

    fn tag(hash: u64) -> u64 {
        hash >> (64 - TAG_BITS)
    }

    /// Walk `hash`'s probe path: the index of the first stream whose slot carries
    /// `hash`'s tag and which `is_it` accepts, or else the empty slot the path ends at.
    fn probe(
        &self,
        hash: u64,
        mut is_it: impl FnMut(usize) -> bool,
    ) -> std::result::Result<usize, usize> {
        let mask = self.slots.len() - 1;
        let mut at = self.home(hash);
        loop {
            let slot = self.slots[at];
            if slot == 0 {
                return Err(at);
            }
            if slot >> (64 - TAG_BITS) == Self::tag(hash) && is_it(index_of(slot)) {
                return Ok(index_of(slot));
            }
            at = (at + 1) & mask;
        }
    }

    /// The first stream on `hash`'s probe path whose slot carries its tag, without
    /// comparing keys (the warming passes' guess).
    fn first_tagged(&self, hash: u64) -> Option<usize> {
        self.probe(hash, |_| true).ok()
    }

    /// The index of stream `key`, whose hash is `hash`, or else the empty slot where
    /// it would go.
    fn find(&self, hash: u64, key: StreamRef<'_>) -> std::result::Result<usize, usize> {
        self.probe(hash, |index| {
            let (found, _) = &self.entries[index];
            *found.tenant == *key.tenant && *found.entity_id == *key.entity_id
        })
    }

    /// Hash the parts `parts` of `request` into `warmed` and bring their slots,
    /// streams, entity ids and last versions into the cache, changing nothing. Each
    /// of the three passes reads memory the one before located, for every part, so
    /// the misses of a pass overlap; the appending loop that follows (whose reference
    /// count updates would make it wait for each miss in turn) finds them in cache.
    fn warm<R: AppendSource + ?Sized>(
        &self,
        request: &R,
        parts: std::ops::Range<usize>,
        warmed: &mut [Warmed; WARM_AHEAD],
    ) {
        let tenant = request.tenant();
        let warmed = &mut warmed[..parts.len()];
        let mut touched = 0u64;
        for (w, i) in warmed.iter_mut().zip(parts) {
            let hash = self.hash(StreamRef {
                tenant,
                entity_id: request.part(i).entity_id,
            });
            *w = Warmed {
                hash,
                candidate: None,
            };
            touched ^= self.slots[self.home(hash)];
        }
        for w in warmed.iter_mut() {
            w.candidate = self.first_tagged(w.hash);
            if let Some((key, state)) = w.candidate.map(|c| &self.entries[c]) {
                touched ^= key.entity_id.len() as u64 ^ state.versions.len() as u64;
            }
        }
        for w in warmed.iter() {
            if let Some((key, state)) = w.candidate.map(|c| &self.entries[c]) {
                let first = key.entity_id.as_bytes().first().copied().unwrap_or(0);
                let last = state.versions.last().map_or(0, |v| v.offset);
                touched ^= u64::from(first) ^ last;
            }
        }
        std::hint::black_box(touched);
    }

    fn get(&self, key: StreamRef<'_>) -> Option<&StreamState> {
        let index = self.find(self.hash(key), key).ok()?;
        Some(&self.entries[index].1)
    }

    fn get_mut(&mut self, key: StreamRef<'_>) -> Option<&mut StreamState> {
        let index = self.find(self.hash(key), key).ok()?;
        Some(&mut self.entries[index].1)
    }

    /// The stream's entity id and state, created in partition `partition()` if it is
    /// new; `hash` is the hash of (`tenant`, `entity_id`).
    fn get_or_create(
        &mut self,
        hash: u64,
        tenant: &str,
        entity_id: &str,
        partition: impl FnOnce() -> u16,
    ) -> (&Arc<str>, &mut StreamState) {
        let key = StreamRef { tenant, entity_id };
        let index = match self.find(hash, key) {
            Ok(index) => index,
            Err(slot) => {
                let slot = if (self.entries.len() + 1) * 2 > self.slots.len() {
                    self.grow();
                    empty_slot(&self.slots, hash)
                } else {
                    slot
                };
                let tenant = match self.tenants.get(tenant) {
                    Some(shared) => Arc::clone(shared),
                    None => {
                        let shared: Arc<str> = Arc::from(tenant);
                        self.tenants.insert(Arc::clone(&shared));
                        shared
                    }
                };
                let index = self.entries.len();
                self.entries.push((
                    StreamKey {
                        tenant,
                        entity_id: Arc::from(entity_id),
                    },
                    StreamState {
                        partition: partition(),
                        ..Default::default()
                    },
                ));
                self.slots[slot] = slot_of(hash, index);
                index
            }
        };
        let (key, state) = &mut self.entries[index];
        (&key.entity_id, state)
    }

    /// Double the slots and place every stream again.
    fn grow(&mut self) {
        let mut slots = vec![0u64; self.slots.len() * 2];
        for (index, (key, _)) in self.entries.iter().enumerate() {
            let hash = self.hasher.hash_one(StreamRef::from(key));
            let at = empty_slot(&slots, hash);
            slots[at] = slot_of(hash, index);
        }
        self.slots = slots;
    }
}

/// The slot naming stream `index`, whose key's hash is `hash`.
fn slot_of(hash: u64, index: usize) -> u64 {
    (Streams::tag(hash) << (64 - TAG_BITS)) | (index as u64 + 1)
}

/// The stream a (non-empty) slot names.
fn index_of(slot: u64) -> usize {
    ((slot & INDEX_MASK) - 1) as usize
}

/// The first empty slot on `hash`'s probe path.
fn empty_slot(slots: &[u64], hash: u64) -> usize {
    let mask = slots.len() - 1;
    let mut at = (hash as usize) & mask;
    while slots[at] != 0 {
        at = (at + 1) & mask;
    }
    at
}

/// Whether part `part` of `request` gives any of its events an id.
fn names_event_ids<R: AppendSource + ?Sized>(request: &R, part: usize) -> bool {
    (0..request.part(part).len).any(|j| request.event(part, j).event_id.is_some())
}

/// The 128-bit key of an event id: the UUID itself when the id is one, else a
/// 128-bit hash of the text (two independent 64-bit hashes).
fn id_key(id: &str) -> u128 {
    if let Ok(uuid) = uuid::Uuid::try_parse(id) {
        return uuid.as_u128();
    }
    let high = crate::partition::stable_hash("event-id", id);
    let low = crate::partition::stable_hash(id, "event-id");
    (u128::from(high) << 64) | u128::from(low)
}

/// Acks for a retried request, built from the events already in the log.
pub(crate) fn retry_acks(events: &[RecordedEvent]) -> AppendResult {
    AppendResult {
        events: events
            .iter()
            .map(RecordedEvent::ack)
            .collect::<Vec<EventAck>>(),
        deduplicated: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged(bytes: &[u8], end_position: u64) -> (Group, oneshot::Receiver<Result<()>>) {
        let (tx, rx) = oneshot::channel();
        let group = Group {
            buf: bytes.to_vec(),
            records: vec![0],
            end_position: Some(end_position),
            waiters: vec![tx],
        };
        (group, rx)
    }

    #[test]
    fn streams_are_found_by_tenant_and_entity_through_growth() {
        let mut streams = Streams::default();
        let key = |n: usize| (["a", "b", "c"][n % 3], format!("entity-{}", n / 3));
        let count = 100_000;
        for n in 0..count {
            let (tenant, entity_id) = key(n);
            let hash = streams.hash(StreamRef {
                tenant,
                entity_id: &entity_id,
            });
            let (id, state) = streams.get_or_create(hash, tenant, &entity_id, || (n % 7) as u16);
            assert_eq!(&**id, entity_id);
            assert_eq!(
                state.version(),
                0,
                "stream {n} existed before it was created"
            );
            state.push(n as u64, n as u128);
        }
        assert_eq!(streams.len(), count);
        for n in 0..count {
            let (tenant, entity_id) = key(n);
            let found = streams.get(StreamRef {
                tenant,
                entity_id: &entity_id,
            });
            let found = found.unwrap_or_else(|| panic!("stream {n} not found"));
            assert_eq!(found.partition, (n % 7) as u16);
            assert_eq!(found.offset_of(1), n as u64);
        }
        // Looking up again finds the stream rather than making a second one.
        let hash = streams.hash(StreamRef {
            tenant: "b",
            entity_id: "entity-0",
        });
        let (_, state) = streams.get_or_create(hash, "b", "entity-0", || 0);
        assert_eq!(state.offset_of(1), 1);
        assert_eq!(streams.len(), count);
        let missing = ["d", "a"].map(|tenant| StreamRef {
            tenant,
            entity_id: "entity-99999",
        });
        assert!(missing.iter().all(|key| streams.get(*key).is_none()));
        assert!(
            streams
                .get(StreamRef {
                    tenant: "a",
                    entity_id: "entity-3"
                })
                .is_some()
        );
    }

    #[test]
    fn absorbed_requests_keep_their_order_and_record_starts() {
        let mut pending = Group::default();
        let (mut first, mut first_ack) = staged(b"abc", 3);
        pending.absorb(&mut first);
        assert!(first.is_empty() && first.buf.is_empty() && first.waiters.is_empty());
        let (mut second, mut second_ack) = staged(b"defgh", 5);
        pending.absorb(&mut second);
        assert!(second.is_empty() && second.buf.is_empty() && second.waiters.is_empty());
        assert_eq!(pending.buf, b"abcdefgh");
        assert_eq!(pending.records, vec![0, 3]);
        assert_eq!(pending.end_position, Some(5));
        // The waiters are answered in request order.
        assert_eq!(pending.waiters.len(), 2);
        for (i, waiter) in pending.waiters.drain(..).enumerate() {
            let _ = waiter.send(if i == 0 { Ok(()) } else { Err(Error::Closed) });
        }
        assert!(matches!(first_ack.try_recv(), Ok(Ok(()))));
        assert!(matches!(second_ack.try_recv(), Ok(Err(Error::Closed))));
    }
}
