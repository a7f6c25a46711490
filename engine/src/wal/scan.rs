//! Reading segments back: recovery on open, and the `verify` report.

use std::fs;
use std::path::{Path, PathBuf};

use super::frame::{self, FrameError, RECORD_MAGIC, SEGMENT_HEADER_BYTES, SegmentHeader};
use crate::error::{Error, IoContext, Result};
use crate::event::EventRow;

/// What a segment's bytes turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentStatus {
    /// Every record is valid. Bytes after the last one, if any, are the old contents
    /// of a reused segment file (`valid_bytes` < `file_bytes`).
    Ok,
    /// The final record is incomplete or damaged and nothing valid follows it: an
    /// interrupted write. Recovery truncates the segment at `offset`.
    TornTail {
        /// Byte offset where the torn record starts.
        offset: u64,
        /// What was wrong with it.
        reason: String,
    },
    /// Damage that cannot be an interrupted write.
    Corrupt {
        /// Byte offset of the first damaged record.
        offset: u64,
        /// What check failed.
        reason: String,
    },
}

/// One segment's part of a [`VerifyReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentReport {
    /// The segment file.
    pub path: PathBuf,
    /// Its id.
    pub segment_id: u64,
    /// Sequence of its first record (from the header).
    pub first_sequence: u64,
    /// Valid records read.
    pub records: u64,
    /// Events in those records.
    pub events: u64,
    /// Bytes up to the end of the last valid record.
    pub valid_bytes: u64,
    /// The file's size.
    pub file_bytes: u64,
    /// Whether the segment is whole, torn at the tail, or corrupt.
    pub status: SegmentStatus,
}

/// The result of checking every WAL segment of a store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// One entry per segment, in order.
    pub segments: Vec<SegmentReport>,
}

impl VerifyReport {
    /// The first corruption found, as the error opening the store would report.
    pub fn corruption(&self) -> Option<Error> {
        self.segments.iter().find_map(|s| match &s.status {
            SegmentStatus::Corrupt { offset, reason } => Some(Error::Corrupt {
                file: s.path.clone(),
                offset: *offset,
                reason: reason.clone(),
            }),
            _ => None,
        })
    }

    /// Total valid records.
    pub fn records(&self) -> u64 {
        self.segments.iter().map(|s| s.records).sum()
    }

    /// Total events in valid records.
    pub fn events(&self) -> u64 {
        self.segments.iter().map(|s| s.events).sum()
    }
}

/// Check every WAL segment under `data_dir`, decoding every record, without opening
/// the store or changing any file.
pub fn verify(data_dir: &Path) -> Result<VerifyReport> {
    let wal_dir = data_dir.join(super::WAL_DIR);
    if !wal_dir.is_dir() {
        return Err(Error::Config(format!(
            "{} has no WAL directory: is it an AllSource data directory?",
            data_dir.display()
        )));
    }
    let mut report = VerifyReport::default();
    scan_dir(
        &wal_dir,
        |segment| report.segments.push(segment),
        |_| Ok(()),
    )?;
    Ok(report)
}

/// Read every segment in `wal_dir` in order, calling `on_event` for each event of each
/// valid record, and `on_segment` with each segment's report. An error from
/// `on_event` marks that record as corrupt. Scanning stops at the first
/// corrupt segment. Returns the sequence the next record should have.
pub(crate) fn scan_dir(
    wal_dir: &Path,
    mut on_segment: impl FnMut(SegmentReport),
    mut on_event: impl FnMut(&EventRow<'_>) -> std::result::Result<(), String>,
) -> Result<u64> {
    let ids = list_segments(wal_dir)?;
    let mut next_sequence: Option<u64> = None;
    for (i, id) in ids.iter().enumerate() {
        let path = frame::segment_path(wal_dir, *id);
        let bytes = fs::read(&path).context(|| format!("reading {}", path.display()))?;
        let next = match ids.get(i + 1) {
            Some(next) => Next::Segment(first_sequence_of(&frame::segment_path(wal_dir, *next))),
            None => Next::None,
        };
        let report = scan_segment(&path, *id, &bytes, next, next_sequence, &mut on_event);
        let corrupt = matches!(report.status, SegmentStatus::Corrupt { .. });
        next_sequence = Some(report.first_sequence + report.records);
        on_segment(report);
        if corrupt {
            break;
        }
    }
    Ok(next_sequence.unwrap_or(0))
}

/// What follows a segment being scanned.
#[derive(Debug, Clone, Copy)]
enum Next {
    /// Nothing: it is the newest segment, whose end may be torn.
    None,
    /// Another segment, whose header says it starts at this sequence (`None` when the
    /// header cannot be read).
    Segment(Option<u64>),
}

/// The first sequence a segment's header names, if the header can be read.
fn first_sequence_of(path: &Path) -> Option<u64> {
    use std::io::Read;
    let mut header = [0u8; SEGMENT_HEADER_BYTES];
    fs::File::open(path).ok()?.read_exact(&mut header).ok()?;
    SegmentHeader::decode(&header)
        .ok()
        .map(|h| h.first_sequence)
}

/// Segment ids present in `wal_dir`, ascending.
pub(crate) fn list_segments(wal_dir: &Path) -> Result<Vec<u64>> {
    let entries = fs::read_dir(wal_dir).context(|| format!("listing {}", wal_dir.display()))?;
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.context(|| format!("listing {}", wal_dir.display()))?;
        if let Some(id) = entry.file_name().to_str().and_then(frame::segment_id_of) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Scan one segment. Its records end at the end of the file, or where something other
/// than a record of this segment begins: a segment file can be reused (see
/// `writer::drop_segments`), so what follows its last record may be records of the
/// segment it used to be, whole or cut anywhere. What ends a segment early is an
/// interrupted write in the newest segment, and the old contents of a reused file in
/// any segment; in a sealed segment it is only accepted when the next segment
/// continues exactly where the records stopped, so no record can go missing
/// unnoticed.
fn scan_segment(
    path: &Path,
    id: u64,
    bytes: &[u8],
    next: Next,
    expected_first: Option<u64>,
    on_event: &mut impl FnMut(&EventRow<'_>) -> std::result::Result<(), String>,
) -> SegmentReport {
    let mut report = SegmentReport {
        path: path.to_path_buf(),
        segment_id: id,
        first_sequence: expected_first.unwrap_or(0),
        records: 0,
        events: 0,
        valid_bytes: 0,
        file_bytes: bytes.len() as u64,
        status: SegmentStatus::Ok,
    };
    let corrupt = |offset: usize, reason: String| SegmentStatus::Corrupt {
        offset: offset as u64,
        reason,
    };
    let header = match SegmentHeader::decode(bytes) {
        Ok(header) => header,
        Err(reason) => {
            report.status = corrupt(0, reason);
            return report;
        }
    };
    report.first_sequence = header.first_sequence;
    if header.segment_id != id {
        report.status = corrupt(0, format!("header names segment {}", header.segment_id));
        return report;
    }
    if let Some(expected) = expected_first.filter(|e| *e != header.first_sequence) {
        report.status = corrupt(
            0,
            format!(
                "segment starts at sequence {}, expected {expected}",
                header.first_sequence
            ),
        );
        return report;
    }
    let mut at = SEGMENT_HEADER_BYTES;
    report.valid_bytes = at as u64;
    let mut expected_sequence = header.first_sequence;
    // Where the records end before the end of the file: the sealed segment is whole
    // if the next one continues the sequence; the newest one is truncated there on
    // open, after a warning unless what follows is a whole record of an older segment
    // (a reused file's old contents, not an interrupted write).
    let ended_early = |at: usize, reason: String, expected: u64, old_record: bool| match next {
        Next::Segment(Some(first)) if first == expected => SegmentStatus::Ok,
        Next::Segment(Some(first)) => corrupt(
            at,
            format!(
                "{reason}, and the next segment starts at sequence {first}, not {expected}: \
                 records are missing"
            ),
        ),
        Next::Segment(None) => corrupt(at, format!("{reason} in a segment that is not the last")),
        Next::None if old_record => SegmentStatus::Ok,
        Next::None => SegmentStatus::TornTail {
            offset: at as u64,
            reason,
        },
    };
    while at < bytes.len() {
        let (view, len) = match frame::decode_record(&bytes[at..]) {
            Ok(found) => found,
            Err(err) => {
                let reason = match err {
                    FrameError::Truncated => "record extends past the end of the file".to_string(),
                    FrameError::Invalid(reason) => reason,
                };
                report.status = match valid_record_after(bytes, at + 1, id) {
                    Some(next) => corrupt(
                        at,
                        format!("{reason}, yet a valid record follows at byte offset {next}"),
                    ),
                    None => ended_early(at, reason, expected_sequence, false),
                };
                return report;
            }
        };
        if view.segment_id < id {
            // A whole record of the segment this file used to be: the records end here.
            report.status = match valid_record_after(bytes, at + len, id) {
                Some(next) => corrupt(
                    at,
                    format!(
                        "record of segment {} inside segment {id}, yet a record of segment \
                         {id} follows at byte offset {next}",
                        view.segment_id
                    ),
                ),
                None => ended_early(
                    at,
                    format!(
                        "old contents of a reused file (segment {})",
                        view.segment_id
                    ),
                    expected_sequence,
                    true,
                ),
            };
            return report;
        }
        let checked = check_record(view, id, expected_sequence)
            .and_then(|()| super::codec::decode_append(view.body, &mut *on_event));
        match checked {
            Ok(count) => report.events += count,
            Err(reason) => {
                report.status = corrupt(at, reason);
                return report;
            }
        }
        report.records += 1;
        expected_sequence += 1;
        at += len;
        report.valid_bytes = at as u64;
    }
    report
}

fn check_record(
    view: frame::RecordView<'_>,
    segment_id: u64,
    expected_sequence: u64,
) -> std::result::Result<(), String> {
    if view.segment_id != segment_id {
        return Err(format!(
            "record belongs to segment {}, found in segment {segment_id}",
            view.segment_id
        ));
    }
    if view.sequence != expected_sequence {
        return Err(format!(
            "record has sequence {}, expected {expected_sequence}",
            view.sequence
        ));
    }
    Ok(())
}

/// The offset of the first whole, valid record of segment `id` at or after `from`, if
/// any. (Records of older segments may follow the end of a reused file's records.)
fn valid_record_after(bytes: &[u8], from: usize, id: u64) -> Option<usize> {
    let mut at = from;
    while at + frame::RECORD_HEADER_BYTES <= bytes.len() {
        let found = bytes[at..].windows(4).position(|w| w == RECORD_MAGIC)?;
        at += found;
        if let Ok((view, _)) = frame::decode_record(&bytes[at..])
            && view.segment_id == id
        {
            return Some(at);
        }
        at += 1;
    }
    None
}
