//! Byte layout of segment headers and record frames.

use std::path::{Path, PathBuf};

/// Magic bytes opening every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"ALLSWAL1";
/// Size of a segment header.
pub const SEGMENT_HEADER_BYTES: usize = 32;
/// Magic bytes opening every record.
pub const RECORD_MAGIC: [u8; 4] = *b"ASr1";
/// Size of a record header.
pub const RECORD_HEADER_BYTES: usize = 28;

/// The header of a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The segment's id, also its file name.
    pub segment_id: u64,
    /// Sequence of its first record.
    pub first_sequence: u64,
}

impl SegmentHeader {
    /// The 32 header bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut bytes = [0u8; SEGMENT_HEADER_BYTES];
        bytes[0..8].copy_from_slice(&SEGMENT_MAGIC);
        bytes[8..16].copy_from_slice(&self.segment_id.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.first_sequence.to_le_bytes());
        let crc = crc32fast::hash(&bytes[0..28]);
        bytes[28..32].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Parse and check a header.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < SEGMENT_HEADER_BYTES {
            return Err(format!(
                "segment header is {} bytes, expected 32",
                bytes.len()
            ));
        }
        if bytes[0..8] != SEGMENT_MAGIC {
            return Err("not an AllSource WAL segment (bad magic)".into());
        }
        if crc32fast::hash(&bytes[0..28]) != le_u32(bytes, 28) {
            return Err("segment header checksum mismatch".into());
        }
        Ok(Self {
            segment_id: le_u64(bytes, 8),
            first_sequence: le_u64(bytes, 16),
        })
    }
}

/// The path of segment `id` in `wal_dir`.
pub fn segment_path(wal_dir: &Path, id: u64) -> PathBuf {
    wal_dir.join(format!("{id:020}.wal"))
}

/// The segment id named by a file name, if it is a segment file.
pub fn segment_id_of(file_name: &str) -> Option<u64> {
    let stem = file_name.strip_suffix(".wal")?;
    (stem.len() == 20).then(|| stem.parse().ok()).flatten()
}

/// Start a record at the end of `buf`; returns its start for [`finish_record`].
/// The segment id and checksum are filled in by [`seal_record`] when it is written.
pub fn begin_record(buf: &mut Vec<u8>, sequence: u64) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&RECORD_MAGIC);
    buf.extend_from_slice(&[0u8; 16]);
    buf.extend_from_slice(&sequence.to_le_bytes());
    start
}

/// Write the body length of the record that starts at `start`.
pub fn finish_record(buf: &mut [u8], start: usize) -> Result<(), String> {
    let body_len = buf.len() - start - RECORD_HEADER_BYTES;
    let len = u32::try_from(body_len)
        .ok()
        .filter(|len| *len as usize <= super::MAX_RECORD_BODY_BYTES)
        .ok_or_else(|| format!("record body of {body_len} bytes is too large"))?;
    buf[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Stamp the segment id into a finished record and compute its checksum.
pub fn seal_record(record: &mut [u8], segment_id: u64) {
    record[12..20].copy_from_slice(&segment_id.to_le_bytes());
    let crc = record_crc(record);
    record[8..12].copy_from_slice(&crc.to_le_bytes());
}

/// Sequence number of a finished record.
pub fn record_sequence(record: &[u8]) -> u64 {
    le_u64(record, 20)
}

fn record_crc(record: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&record[0..8]);
    hasher.update(&record[12..]);
    hasher.finalize()
}

/// A record read back from a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// Segment id stamped in the record.
    pub segment_id: u64,
    /// Its sequence.
    pub sequence: u64,
    /// Its body.
    pub body: &'a [u8],
}

/// Why bytes at some offset are not a whole, valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The bytes end before the record does.
    Truncated,
    /// The bytes are there but wrong.
    Invalid(String),
}

/// Parse the record at the start of `bytes`, returning it and its total length.
pub fn decode_record(bytes: &[u8]) -> Result<(RecordView<'_>, usize), FrameError> {
    if bytes.len() < RECORD_HEADER_BYTES {
        return Err(if RECORD_MAGIC.starts_with(&bytes[..bytes.len().min(4)]) {
            FrameError::Truncated
        } else {
            FrameError::Invalid("bad record magic".into())
        });
    }
    if bytes[0..4] != RECORD_MAGIC {
        return Err(FrameError::Invalid("bad record magic".into()));
    }
    let body_len = le_u32(bytes, 4) as usize;
    if body_len > super::MAX_RECORD_BODY_BYTES {
        return Err(FrameError::Invalid(format!(
            "record length {body_len} is implausible"
        )));
    }
    let total = RECORD_HEADER_BYTES + body_len;
    if bytes.len() < total {
        return Err(FrameError::Truncated);
    }
    let record = &bytes[..total];
    if record_crc(record) != le_u32(record, 8) {
        return Err(FrameError::Invalid("record checksum mismatch".into()));
    }
    let view = RecordView {
        segment_id: le_u64(record, 12),
        sequence: le_u64(record, 20),
        body: &record[RECORD_HEADER_BYTES..],
    };
    Ok((view, total))
}

pub(crate) fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

pub(crate) fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sequence: u64, body: &[u8], segment_id: u64) -> Vec<u8> {
        let mut buf = Vec::new();
        let start = begin_record(&mut buf, sequence);
        buf.extend_from_slice(body);
        assert_eq!(finish_record(&mut buf, start), Ok(()));
        seal_record(&mut buf[start..], segment_id);
        buf
    }

    #[test]
    fn record_round_trips() {
        let buf = record(7, b"hello", 3);
        let (view, len) = decode_record(&buf)
            .map_err(|e| format!("{e:?}"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (view.segment_id, view.sequence, view.body, len),
            (3, 7, &b"hello"[..], buf.len())
        );
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        let buf = record(1, b"some body bytes", 1);
        for bit in 0..buf.len() * 8 {
            let mut damaged = buf.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_record(&damaged).is_err(), "bit {bit} not caught");
        }
    }

    #[test]
    fn every_cut_is_truncated_or_invalid() {
        let buf = record(1, b"abc", 1);
        for cut in 0..buf.len() {
            assert!(decode_record(&buf[..cut]).is_err());
        }
    }

    #[test]
    fn segment_header_round_trips_and_rejects_damage() {
        let header = SegmentHeader {
            segment_id: 9,
            first_sequence: 100,
        };
        let bytes = header.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
        let mut damaged = bytes;
        damaged[17] ^= 4;
        assert!(SegmentHeader::decode(&damaged).is_err());
        assert_eq!(segment_id_of("00000000000000000009.wal"), Some(9));
        assert_eq!(segment_id_of("9.wal"), None);
    }
}
