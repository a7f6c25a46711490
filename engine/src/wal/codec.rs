//! Encoding of an append record's body.
//!
//! A record holds one request: its tenant and ingest time once, then each stream's
//! part with the part's first version and first partition offset, then the events.
//! Versions and offsets continue by one within a part and positions by one across
//! the record, so they are not repeated per event.
//!
//! ```text
//! body    := kind u8 (1 = append) | tenant str | ingested_at i64 | first_position u64
//!            | part_count u32 | part*
//! part    := entity_id str | partition u16 | first_version u64 | first_offset u64
//!            | event_count u32 | event*
//! event   := timestamp i64 | event_type str | event_id id | payload str | metadata opt_str
//! id      := 0u8 | 16 bytes (a UUID whose text is the canonical lowercase form)
//!          | 1u8 | str (any other text)
//! str     := length u32 | UTF-8 bytes
//! opt_str := length u32 (0xFFFF_FFFF = absent) | UTF-8 bytes
//! ```

use super::frame::{le_u32, le_u64};
use crate::event::EventRow;
use crate::event_id::CanonicalUuid;

const KIND_APPEND: u8 = 1;
const ABSENT: u32 = u32::MAX;
const ID_UUID: u8 = 0;
const ID_TEXT: u8 = 1;
/// Fewest bytes an event takes (empty strings, UUID id), which bounds a forged count.
const MIN_EVENT_BYTES: usize = 8 + 4 + 17 + 4 + 4;
/// Fewest bytes a part takes.
const MIN_PART_BYTES: usize = 4 + 2 + 8 + 8 + 4;

/// The record-level fields of an append.
#[derive(Debug, Clone, Copy)]
pub struct RecordHead<'a> {
    pub tenant: &'a str,
    pub ingested_at_micros: i64,
    pub first_position: u64,
    pub part_count: usize,
}

/// The part-level fields: one stream's run of events.
#[derive(Debug, Clone, Copy)]
pub struct PartHead<'a> {
    pub entity_id: &'a str,
    pub partition: u16,
    pub first_version: u64,
    pub first_offset: u64,
    pub event_count: usize,
}

/// Write the head of an append record.
pub fn begin_append(buf: &mut Vec<u8>, head: &RecordHead<'_>) {
    buf.push(KIND_APPEND);
    put_str(buf, head.tenant);
    buf.extend_from_slice(&head.ingested_at_micros.to_le_bytes());
    buf.extend_from_slice(&head.first_position.to_le_bytes());
    // Counts are bounded by the request's byte limit, far below u32::MAX.
    buf.extend_from_slice(&(head.part_count as u32).to_le_bytes());
}

/// Write the head of one part.
pub fn begin_part(buf: &mut Vec<u8>, part: &PartHead<'_>) {
    put_str(buf, part.entity_id);
    buf.extend_from_slice(&part.partition.to_le_bytes());
    buf.extend_from_slice(&part.first_version.to_le_bytes());
    buf.extend_from_slice(&part.first_offset.to_le_bytes());
    buf.extend_from_slice(&(part.event_count as u32).to_le_bytes());
}

/// Write one event of the current part. `id_uuid` is the UUID value of the row's
/// event id when that id is a UUID in canonical form.
pub fn encode_event(buf: &mut Vec<u8>, row: &EventRow<'_>, id_uuid: Option<u128>) {
    buf.extend_from_slice(&row.timestamp_micros.to_le_bytes());
    put_str(buf, row.event_type);
    match id_uuid {
        Some(uuid) => {
            buf.push(ID_UUID);
            buf.extend_from_slice(&uuid.to_be_bytes());
        }
        None => {
            buf.push(ID_TEXT);
            put_str(buf, row.event_id);
        }
    }
    put_str(buf, row.payload);
    match row.metadata {
        Some(metadata) => put_str(buf, metadata),
        None => buf.extend_from_slice(&ABSENT.to_le_bytes()),
    }
}

fn put_str(buf: &mut Vec<u8>, text: &str) {
    // Names and payloads are bounded by the request limit, far below u32::MAX.
    buf.extend_from_slice(&(text.len() as u32).to_le_bytes());
    buf.extend_from_slice(text.as_bytes());
}

/// Decode an append record's body, calling `on_event` for each event in order.
/// Returns the number of events.
pub fn decode_append(
    body: &[u8],
    mut on_event: impl FnMut(&EventRow<'_>) -> Result<(), String>,
) -> Result<u64, String> {
    let mut reader = Reader { bytes: body, at: 0 };
    let kind = reader.take(1)?[0];
    if kind != KIND_APPEND {
        return Err(format!("unknown record kind {kind}"));
    }
    let tenant = reader.str()?;
    let ingested_at_micros = reader.u64()? as i64;
    let mut position = reader.u64()?;
    let parts = reader.count(MIN_PART_BYTES)?;
    let mut events = 0u64;
    let mut id_text = CanonicalUuid::default();
    for _ in 0..parts {
        let entity_id = reader.str()?;
        let partition = u16::from_le_bytes([reader.take(1)?[0], reader.take(1)?[0]]);
        let first_version = reader.u64()?;
        let first_offset = reader.u64()?;
        let count = reader.count(MIN_EVENT_BYTES)?;
        for i in 0..count as u64 {
            let timestamp_micros = reader.u64()? as i64;
            let event_type = reader.str()?;
            let (event_id, event_uuid) = match reader.take(1)?[0] {
                ID_UUID => {
                    let bytes = reader.take(16)?;
                    let mut value = [0u8; 16];
                    value.copy_from_slice(bytes);
                    let value = u128::from_be_bytes(value);
                    (id_text.format(value), Some(value))
                }
                ID_TEXT => (reader.str()?, None),
                tag => return Err(format!("unknown event id tag {tag}")),
            };
            let payload = reader.str()?;
            let metadata = reader.opt_str()?;
            on_event(&EventRow {
                tenant,
                entity_id,
                event_type,
                version: first_version + i,
                partition,
                offset: first_offset + i,
                position,
                event_id,
                event_uuid,
                timestamp_micros,
                ingested_at_micros,
                payload,
                metadata,
            })?;
            position += 1;
            events += 1;
        }
    }
    if reader.at != body.len() {
        return Err(format!(
            "{} trailing bytes after the events",
            body.len() - reader.at
        ));
    }
    Ok(events)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len());
        let end = end.ok_or_else(|| format!("body ends inside a field at byte {}", self.at))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(le_u32(self.take(4)?, 0))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(le_u64(self.take(8)?, 0))
    }

    /// A count of items that each take at least `min_bytes`, checked against what is
    /// left of the body so a forged count cannot run away.
    fn count(&mut self, min_bytes: usize) -> Result<usize, String> {
        let count = self.u32()? as usize;
        let left = self.bytes.len() - self.at;
        if count > left / min_bytes {
            return Err(format!(
                "count {count} does not fit the {left} bytes left in the body"
            ));
        }
        Ok(count)
    }

    fn str(&mut self) -> Result<&'a str, String> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map_err(|_| "text field is not UTF-8".to_string())
    }

    fn opt_str(&mut self) -> Result<Option<&'a str>, String> {
        if self.bytes.get(self.at..self.at + 4) == Some(&ABSENT.to_le_bytes()) {
            self.at += 4;
            return Ok(None);
        }
        self.str().map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::RecordedEvent;

    /// Two parts: `order-1` (versions 4, 5 at offsets 10, 11) and `user-7` (version 1).
    fn sample() -> Vec<RecordedEvent> {
        let event = |entity: &str, version, offset, position, id: &str, metadata| RecordedEvent {
            tenant: "acme".into(),
            entity_id: entity.into(),
            event_type: "order.placed".into(),
            version,
            partition: 7,
            offset,
            position,
            event_id: id.into(),
            timestamp_micros: -5,
            ingested_at_micros: 1_700_000_000_000_000,
            payload: r#"{"amount":12.5}"#.into(),
            metadata,
        };
        vec![
            event(
                "order-1",
                4,
                10,
                100,
                "0192f0c1-0000-7000-8000-00000000000a",
                None,
            ),
            event("order-1", 5, 11, 101, "payment-42", Some("{}".into())),
            event(
                "user-7",
                1,
                12,
                102,
                "0192F0C1-0000-7000-8000-00000000000A",
                Some(String::new()),
            ),
        ]
    }

    fn encode(events: &[RecordedEvent]) -> Vec<u8> {
        let mut buf = Vec::new();
        begin_append(
            &mut buf,
            &RecordHead {
                tenant: "acme",
                ingested_at_micros: events[0].ingested_at_micros,
                first_position: events[0].position,
                part_count: 2,
            },
        );
        for part in [&events[0..2], &events[2..3]] {
            begin_part(
                &mut buf,
                &PartHead {
                    entity_id: &part[0].entity_id,
                    partition: part[0].partition,
                    first_version: part[0].version,
                    first_offset: part[0].offset,
                    event_count: part.len(),
                },
            );
            part.iter().for_each(|e| {
                e.with_row(|row| {
                    let id_uuid = crate::event_id::canonical_uuid(row.event_id);
                    encode_event(&mut buf, row, id_uuid);
                });
            });
        }
        buf
    }

    fn decode(body: &[u8]) -> Result<Vec<RecordedEvent>, String> {
        let mut events = Vec::new();
        decode_append(body, |row| {
            events.push(row.to_recorded());
            Ok(())
        })?;
        Ok(events)
    }

    #[test]
    fn events_round_trip_with_exact_id_text() {
        let events = sample();
        assert_eq!(decode(&encode(&events)), Ok(events));
    }

    #[test]
    fn truncated_or_padded_bodies_are_errors_not_panics() {
        let mut buf = encode(&sample());
        for cut in 0..buf.len() {
            assert!(decode(&buf[..cut]).is_err(), "cut at {cut}");
        }
        buf.push(0);
        assert!(decode(&buf).is_err());
    }
}
