//! The active segment: sealing records, writing groups, rotation, fsync.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::frame::{self, SEGMENT_HEADER_BYTES, SegmentHeader};
use crate::error::{Error, IoContext, Result};
use crate::meta::sync_dir;

/// The two operations the WAL writer performs on its active segment. The store uses
/// the operating system's files; tests wrap them to inject write and fsync failures.
pub trait SegmentFile: Send + std::fmt::Debug {
    /// Append all of `bytes`.
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    /// Make the data written so far durable (`fdatasync`).
    fn sync_data(&mut self) -> std::io::Result<()>;
}

impl SegmentFile for File {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        Write::write_all(self, bytes)
    }

    fn sync_data(&mut self) -> std::io::Result<()> {
        File::sync_data(self)
    }
}

/// How the WAL writer gets a [`SegmentFile`] for each segment file it opens or
/// creates.
pub trait SegmentIo: Send + Sync + std::fmt::Debug {
    /// Wrap the segment file at `path`, opened for appending.
    fn wrap(&self, file: File, path: &Path) -> Box<dyn SegmentFile>;
}

/// The operating system's files, unwrapped: what a store uses unless told otherwise.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsSegmentIo;

impl SegmentIo for OsSegmentIo {
    fn wrap(&self, file: File, _path: &Path) -> Box<dyn SegmentFile> {
        Box::new(file)
    }
}

/// Appends groups of records to the newest segment, rotating when it is full.
#[derive(Debug)]
pub(crate) struct SegmentWriter {
    wal_dir: PathBuf,
    io: Arc<dyn SegmentIo>,
    file: Box<dyn SegmentFile>,
    segment_id: u64,
    len: u64,
    max_bytes: u64,
    /// The fsync of the segment sealed by the last rotation, running beside the
    /// writer; waited for before the next fsync or rotation, which fail if it failed.
    sealing: Option<JoinHandle<Result<()>>>,
}

/// Where recovery left the newest segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tail {
    /// The newest segment's id.
    pub segment_id: u64,
    /// Bytes up to the end of its last valid record.
    pub valid_bytes: u64,
    /// Its size on disk (larger than `valid_bytes` after a torn write, or when the file
    /// was reused and still holds old records after the last valid one).
    pub file_bytes: u64,
}

impl SegmentWriter {
    /// Continue the newest segment (cutting off a torn tail, or a reused file's old
    /// records), or create the first one.
    pub fn open(
        wal_dir: &Path,
        tail: Option<Tail>,
        next_sequence: u64,
        max_bytes: u64,
        io: Arc<dyn SegmentIo>,
    ) -> Result<Self> {
        let Some(tail) = tail else {
            let path = frame::segment_path(wal_dir, 1);
            let file = io.wrap(create_segment(wal_dir, 1, next_sequence)?, &path);
            return Ok(Self {
                wal_dir: wal_dir.to_path_buf(),
                io,
                file,
                segment_id: 1,
                len: SEGMENT_HEADER_BYTES as u64,
                max_bytes,
                sealing: None,
            });
        };
        let path = frame::segment_path(wal_dir, tail.segment_id);
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .context(|| format!("opening {}", path.display()))?;
        if tail.file_bytes > tail.valid_bytes {
            file.set_len(tail.valid_bytes)
                .and_then(|()| file.sync_all())
                .context(|| format!("truncating the torn tail of {}", path.display()))?;
        }
        Ok(Self {
            wal_dir: wal_dir.to_path_buf(),
            file: io.wrap(file, &path),
            io,
            segment_id: tail.segment_id,
            len: tail.valid_bytes,
            max_bytes,
            sealing: None,
        })
    }

    /// Seal and write a group of finished records; `records` holds each record's
    /// start in `buf`. Rotates first when the segment is full, so a record never
    /// spans two segments.
    pub fn write_group(&mut self, buf: &mut [u8], records: &[usize]) -> Result<()> {
        let Some(&first) = records.first() else {
            return Ok(());
        };
        if self.len >= self.max_bytes {
            self.rotate(frame::record_sequence(&buf[first..]))?;
        }
        for (i, start) in records.iter().enumerate() {
            let end = records.get(i + 1).copied().unwrap_or(buf.len());
            frame::seal_record(&mut buf[*start..end], self.segment_id);
        }
        let path = self.path();
        self.file
            .write_all(buf)
            .context(|| format!("writing to {}", path.display()))?;
        self.len += buf.len() as u64;
        Ok(())
    }

    /// Make everything written so far durable.
    pub fn sync(&mut self) -> Result<()> {
        self.wait_sealed()?;
        let path = self.path();
        self.file
            .sync_data()
            .context(|| format!("fsync of {}", path.display()))
    }

    /// The active segment's id and size.
    pub fn position(&self) -> (u64, u64) {
        (self.segment_id, self.len)
    }

    /// Seal the active segment and start the next. The sealed segment is fsynced on
    /// a thread of its own: without an fsync per group (`never`, `interval`) it can
    /// hold tens of megabytes the disk has not taken yet, and appends go on into the
    /// new segment meanwhile. Every later fsync waits for it first, so what a later
    /// fsync makes durable includes the whole sealed segment.
    fn rotate(&mut self, first_sequence: u64) -> Result<()> {
        self.wait_sealed()?;
        let sealed_path = self.path();
        let next = self.segment_id + 1;
        let file = create_segment(&self.wal_dir, next, first_sequence)?;
        let next_file = self
            .io
            .wrap(file, &frame::segment_path(&self.wal_dir, next));
        let mut sealed = std::mem::replace(&mut self.file, next_file);
        self.segment_id = next;
        self.len = SEGMENT_HEADER_BYTES as u64;
        let sealing = std::thread::Builder::new()
            .name("allsource-wal-seal".into())
            .spawn(move || {
                sealed
                    .sync_data()
                    .context(|| format!("fsync of {}", sealed_path.display()))
            })
            .context(|| "starting the segment fsync thread".to_string())?;
        self.sealing = Some(sealing);
        Ok(())
    }

    /// Wait for the sealed segment's fsync, if one is running, and return its error.
    fn wait_sealed(&mut self) -> Result<()> {
        match self.sealing.take() {
            Some(sealing) => sealing
                .join()
                .map_err(|_| Error::Internal("the segment fsync thread panicked".into()))?,
            None => Ok(()),
        }
    }

    fn path(&self) -> PathBuf {
        frame::segment_path(&self.wal_dir, self.segment_id)
    }
}

/// Most spare segment files kept for reuse (see [`drop_segments`]).
pub(crate) const MAX_SPARE_SEGMENTS: usize = 2;

/// The file name a dropped segment `id` is kept under until it is reused. Not a
/// segment name, so recovery and `verify` never read it.
fn spare_path(wal_dir: &Path, id: u64) -> PathBuf {
    wal_dir.join(format!("spare-{id:020}.wal"))
}

/// The spare segment files in `wal_dir`, oldest first.
pub(crate) fn spares(wal_dir: &Path) -> Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(wal_dir).context(|| format!("listing {}", wal_dir.display()))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.context(|| format!("listing {}", wal_dir.display()))?;
        let name = entry.file_name();
        let is_spare = name
            .to_str()
            .and_then(|n| n.strip_prefix("spare-"))
            .and_then(frame::segment_id_of)
            .is_some();
        if is_spare {
            found.push(entry.path());
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// Drop the segments `ids` (ascending), whose events are all in Parquet: the newest
/// are kept as spare files for later segments while fewer than
/// [`MAX_SPARE_SEGMENTS`] are kept, the others deleted. `dropped` is called with each
/// id once its file is gone. The caller fsyncs the directory.
///
/// Oldest first, so that if this stops partway (an error, or the process killed),
/// the segments left are still consecutive: recovery reads them as one run of records
/// and would report a segment missing from the middle as lost records.
///
/// A reused file is overwritten in place: its pages are still in the page cache (a
/// write into a cached page costs a fraction of one into a page the kernel must find
/// and clear), and its blocks are allocated, so an fsync flushes data without also
/// committing a larger file size. The newest dropped segments are the likeliest to
/// still be cached.
pub(crate) fn drop_segments(
    wal_dir: &Path,
    ids: &[u64],
    mut dropped: impl FnMut(u64),
) -> Result<()> {
    let room = MAX_SPARE_SEGMENTS.saturating_sub(spares(wal_dir)?.len());
    let first_kept = ids.len().saturating_sub(room);
    for (i, id) in ids.iter().enumerate() {
        let path = frame::segment_path(wal_dir, *id);
        if i >= first_kept {
            let spare = spare_path(wal_dir, *id);
            std::fs::rename(&path, &spare)
                .context(|| format!("keeping {} as {}", path.display(), spare.display()))?;
        } else {
            std::fs::remove_file(&path).context(|| format!("deleting {}", path.display()))?;
        }
        dropped(*id);
    }
    Ok(())
}

/// Create segment `id`, reusing a spare file when there is one. Either way the new
/// segment appears under its name only with its header durable.
fn create_segment(wal_dir: &Path, id: u64, first_sequence: u64) -> Result<File> {
    let header = SegmentHeader {
        segment_id: id,
        first_sequence,
    }
    .encode();
    match spares(wal_dir)?.first() {
        Some(spare) => reuse_segment(wal_dir, spare, id, &header),
        None => new_segment(wal_dir, id, &header),
    }
}

/// Turn a spare file into segment `id`: new header over the old one, fsync, rename
/// into place, fsync the directory. The records after the header are the old
/// segment's, until overwritten; recovery tells them by their segment id. Returns the
/// file, positioned after the header.
fn reuse_segment(
    wal_dir: &Path,
    spare: &Path,
    id: u64,
    header: &[u8; SEGMENT_HEADER_BYTES],
) -> Result<File> {
    let path = frame::segment_path(wal_dir, id);
    let mut file = OpenOptions::new()
        .write(true)
        .open(spare)
        .context(|| format!("opening the spare segment {}", spare.display()))?;
    file.write_all_at(header, 0)
        .and_then(|()| file.sync_data())
        .context(|| format!("writing the header of {}", spare.display()))?;
    std::fs::rename(spare, &path)
        .context(|| format!("renaming {} to {}", spare.display(), path.display()))?;
    sync_dir(wal_dir)?;
    file.seek(SeekFrom::Start(SEGMENT_HEADER_BYTES as u64))
        .context(|| format!("positioning in {}", path.display()))?;
    Ok(file)
}

/// Create segment `id` atomically: header into a temporary file, fsync, rename into
/// place, fsync the directory. Returns the file, positioned after the header.
fn new_segment(wal_dir: &Path, id: u64, header: &[u8; SEGMENT_HEADER_BYTES]) -> Result<File> {
    let path = frame::segment_path(wal_dir, id);
    let tmp = path.with_extension("wal.tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .context(|| format!("creating {}", tmp.display()))?;
    Write::write_all(&mut file, header)
        .and_then(|()| file.sync_all())
        .context(|| format!("writing the header of {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).context(|| format!("renaming {} into place", tmp.display()))?;
    sync_dir(wal_dir)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make_segments(wal_dir: &Path, ids: impl IntoIterator<Item = u64>) {
        for id in ids {
            let header = SegmentHeader {
                segment_id: id,
                first_sequence: id * 10,
            }
            .encode();
            std::fs::write(frame::segment_path(wal_dir, id), header)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }

    fn present(wal_dir: &Path) -> (Vec<u64>, Vec<PathBuf>) {
        let segments = super::super::scan::list_segments(wal_dir).unwrap_or_else(|e| panic!("{e}"));
        let spares = spares(wal_dir).unwrap_or_else(|e| panic!("{e}"));
        (segments, spares)
    }

    #[test]
    fn the_newest_dropped_segments_become_spares_and_the_rest_are_deleted() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let wal_dir = dir.path();
        make_segments(wal_dir, 1..=6);
        let mut dropped = Vec::new();
        drop_segments(wal_dir, &[1, 2, 3, 4], |id| dropped.push(id))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(dropped, [1, 2, 3, 4]);
        let (segments, kept) = present(wal_dir);
        assert_eq!(segments, [5, 6]);
        assert_eq!(kept, [spare_path(wal_dir, 3), spare_path(wal_dir, 4)]);
        // With the spares full, dropped segments are deleted.
        drop_segments(wal_dir, &[5], |_| {}).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(present(wal_dir), (vec![6], kept));
    }

    /// A drop that stops partway must leave the remaining segments consecutive, or
    /// recovery would find a segment missing from the middle of the log.
    #[test]
    fn a_drop_stopped_partway_leaves_consecutive_segments() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let wal_dir = dir.path();
        // Segment 3's file is missing, so dropping it fails, as if the process had
        // stopped there.
        make_segments(wal_dir, [1, 2, 4, 5]);
        let mut dropped = Vec::new();
        let result = drop_segments(wal_dir, &[1, 2, 3, 4], |id| dropped.push(id));
        assert!(result.is_err(), "dropping a missing segment succeeded");
        assert_eq!(dropped, [1, 2]);
        let (segments, _) = present(wal_dir);
        assert_eq!(segments, [4, 5]);
    }
}
