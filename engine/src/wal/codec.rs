//! Encoding of an append record's body.
//!
//! ```text
//! body  := kind u8 (1 = append) | count u32 | event*
//! event := version u64 | partition u16 | offset u64 | position u64
//!          | timestamp i64 | ingested_at i64
//!          | str tenant | str entity_id | str event_type | str event_id | str payload
//!          | opt_str metadata
//! str     := length u32 | UTF-8 bytes
//! opt_str := length u32 (0xFFFF_FFFF = absent) | UTF-8 bytes
//! ```

use super::frame::{le_u32, le_u64};
use crate::event::RecordedEvent;

const KIND_APPEND: u8 = 1;
const ABSENT: u32 = u32::MAX;

/// Write the body prefix of an append record holding `count` events.
pub fn begin_append(buf: &mut Vec<u8>, count: usize) {
    buf.push(KIND_APPEND);
    // A request is limited far below u32::MAX events by its byte size.
    buf.extend_from_slice(&(count as u32).to_le_bytes());
}

/// Append one event's encoding.
pub fn encode_event(buf: &mut Vec<u8>, event: &RecordedEvent) {
    buf.extend_from_slice(&event.version.to_le_bytes());
    buf.extend_from_slice(&event.partition.to_le_bytes());
    buf.extend_from_slice(&event.offset.to_le_bytes());
    buf.extend_from_slice(&event.position.to_le_bytes());
    buf.extend_from_slice(&event.timestamp_micros.to_le_bytes());
    buf.extend_from_slice(&event.ingested_at_micros.to_le_bytes());
    for text in [
        &event.tenant,
        &event.entity_id,
        &event.event_type,
        &event.event_id,
        &event.payload,
    ] {
        put_str(buf, text);
    }
    match &event.metadata {
        Some(metadata) => put_str(buf, metadata),
        None => buf.extend_from_slice(&ABSENT.to_le_bytes()),
    }
}

fn put_str(buf: &mut Vec<u8>, text: &str) {
    // Names and payloads are bounded by the request limit, far below u32::MAX.
    buf.extend_from_slice(&(text.len() as u32).to_le_bytes());
    buf.extend_from_slice(text.as_bytes());
}

/// Decode an append record's body.
pub fn decode_append(body: &[u8]) -> Result<Vec<RecordedEvent>, String> {
    let mut reader = Reader { bytes: body, at: 0 };
    let kind = reader.take(1)?[0];
    if kind != KIND_APPEND {
        return Err(format!("unknown record kind {kind}"));
    }
    let count = reader.u32()? as usize;
    // Every event takes at least 66 bytes, which bounds a forged count.
    if count > body.len() / 66 + 1 {
        return Err(format!(
            "event count {count} does not fit a body of {} bytes",
            body.len()
        ));
    }
    let mut events = Vec::with_capacity(count);
    for _ in 0..count {
        events.push(reader.event()?);
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

    fn string(&mut self) -> Result<String, String> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "text field is not UTF-8".to_string())
    }

    fn opt_string(&mut self) -> Result<Option<String>, String> {
        let len = self.u32()?;
        if len == ABSENT {
            return Ok(None);
        }
        self.at -= 4;
        self.string().map(Some)
    }

    fn event(&mut self) -> Result<RecordedEvent, String> {
        let version = self.u64()?;
        let partition = u16::from_le_bytes([self.take(1)?[0], self.take(1)?[0]]);
        let offset = self.u64()?;
        let position = self.u64()?;
        let timestamp_micros = self.u64()? as i64;
        let ingested_at_micros = self.u64()? as i64;
        Ok(RecordedEvent {
            version,
            partition,
            offset,
            position,
            timestamp_micros,
            ingested_at_micros,
            tenant: self.string()?,
            entity_id: self.string()?,
            event_type: self.string()?,
            event_id: self.string()?,
            payload: self.string()?,
            metadata: self.opt_string()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(position: u64, metadata: Option<&str>) -> RecordedEvent {
        RecordedEvent {
            tenant: "acme".into(),
            entity_id: "order-1".into(),
            event_type: "order.placed".into(),
            version: position + 1,
            partition: 7,
            offset: position,
            position,
            event_id: format!("id-{position}"),
            timestamp_micros: -5,
            ingested_at_micros: 1_700_000_000_000_000,
            payload: r#"{"amount":12.5}"#.into(),
            metadata: metadata.map(str::to_string),
        }
    }

    #[test]
    fn events_round_trip() {
        let events = vec![sample(0, None), sample(1, Some("{}")), sample(2, Some(""))];
        let mut buf = Vec::new();
        begin_append(&mut buf, events.len());
        events.iter().for_each(|e| encode_event(&mut buf, e));
        assert_eq!(decode_append(&buf), Ok(events));
    }

    #[test]
    fn truncated_or_padded_bodies_are_errors_not_panics() {
        let mut buf = Vec::new();
        begin_append(&mut buf, 1);
        encode_event(&mut buf, &sample(0, Some("{}")));
        for cut in 0..buf.len() {
            assert!(decode_append(&buf[..cut]).is_err(), "cut at {cut}");
        }
        buf.push(0);
        assert!(decode_append(&buf).is_err());
    }
}
