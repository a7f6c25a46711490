//! The write-ahead log: one log per store, shared by all partitions.
//!
//! Every append request becomes exactly one record, so a request is durable whole or
//! not at all. Records live in segment files `wal/<segment id, 20 digits>.wal`:
//!
//! ```text
//! segment  := segment header (32 bytes) record*
//! header   := magic "ALLSWAL1" | segment id u64 | first sequence u64 | 0u32 | crc32 u32
//! record   := magic "ASr1" | body length u32 | crc32 u32 | segment id u64 | sequence u64 | body
//!             crc32 covers every byte of the record but itself (header and body)
//! ```
//!
//! All integers are little-endian. The sequence is store-wide and gapless; with the
//! segment id it catches a stale or misdirected record that happens to have a valid
//! checksum. Segments are created by writing a temporary file, fsyncing it, renaming
//! it into place and fsyncing the directory, so a segment header is never torn.
//!
//! Recovery ([`scan`]) reads segments in order. A damaged record with nothing valid
//! after it in the last segment is a torn final write: it is truncated with a warning.
//! A damaged record followed by any valid record, or damage in an earlier segment, is
//! corruption: the store refuses to open and names the file and byte offset.

pub(crate) mod codec;
pub(crate) mod frame;
pub mod scan;
pub(crate) mod writer;

pub use scan::{SegmentReport, SegmentStatus, VerifyReport, verify};
pub use writer::{OsSegmentIo, SegmentFile, SegmentIo};

/// Largest record body accepted, in bytes.
pub const MAX_RECORD_BODY_BYTES: usize = 1 << 30;

/// Directory of the WAL inside the data directory.
pub const WAL_DIR: &str = "wal";
