//! Parquet files of the log: how they are written, and point and range reads.
//!
//! A file holds a contiguous offset range of one partition, in offset order, so
//! row `i` of a file is offset `first_offset + i`. A stream read becomes a row
//! selection: the reader fetches and decodes only the pages holding the selected
//! rows (pages are small, `parquet_page_rows` rows, and the offset index tells where
//! each one is). zstd; page statistics on every column (so DataFusion can prune by
//! time, offset and position); bloom filters on `entity_id` and `event_type`.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{SchemaRef, TimestampMicrosecondType, UInt64Type};
use bytes::Bytes;
use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions as ReaderOptions;
use datafusion::parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, RowSelection,
};
use datafusion::parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use datafusion::parquet::arrow::{ArrowWriter, ProjectionMask};
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::metadata::{
    PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader,
};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::schema::types::ColumnPath;
use futures::FutureExt;
use futures::TryStreamExt;
use futures::future::BoxFuture;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parking_lot::Mutex;

use super::manifest::{DATA_DIR, FileEntry};
use crate::buffer::columns;
use crate::error::{Error, Result};

/// How the Parquet files are laid out.
#[derive(Debug, Clone, Copy)]
pub struct ParquetLayout {
    /// Rows per data page: the unit a point read decodes.
    pub page_rows: usize,
    /// Rows per row group.
    pub row_group_rows: usize,
}

fn writer_properties(layout: ParquetLayout) -> Result<WriterProperties> {
    let zstd = ZstdLevel::try_new(3).map_err(|e| Error::Internal(format!("zstd level: {e}")))?;
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(zstd))
        .set_max_row_group_row_count(Some(layout.row_group_rows.max(1)))
        .set_data_page_row_count_limit(layout.page_rows.max(1))
        .set_write_batch_size(layout.page_rows.max(1))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_column_bloom_filter_enabled(ColumnPath::from("entity_id"), true)
        .set_column_bloom_filter_enabled(ColumnPath::from("event_type"), true)
        .set_column_dictionary_enabled(ColumnPath::from("event_id"), false)
        .set_column_dictionary_enabled(ColumnPath::from("payload"), false)
        .build())
}

/// The path of a new file holding `partition`'s offsets `range`, written for manifest
/// `version` (a later attempt at the same version overwrites an orphan, never a
/// committed file).
pub fn file_path(partition: u16, range: &Range<u64>, version: u64) -> Path {
    Path::from(format!(
        "{DATA_DIR}/p{partition:05}/{:020}-{:020}-v{version:020}.parquet",
        range.start, range.end
    ))
}

/// Encode `batches` (one partition, consecutive offsets) as a Parquet file and
/// upload it to `path`. Returns its manifest entry.
pub async fn write_file(
    store: &Arc<dyn ObjectStore>,
    schema: &SchemaRef,
    path: Path,
    batches: &[RecordBatch],
    layout: ParquetLayout,
) -> Result<FileEntry> {
    let entry = describe(path.to_string(), batches)?;
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(
        &mut bytes,
        Arc::clone(schema),
        Some(writer_properties(layout)?),
    )
    .map_err(|e| Error::storage(format!("encoding {path}"), e))?;
    for batch in batches {
        writer
            .write(batch)
            .map_err(|e| Error::storage(format!("encoding {path}"), e))?;
    }
    writer
        .close()
        .map_err(|e| Error::storage(format!("encoding {path}"), e))?;
    let size = bytes.len() as u64;
    store
        .put(&path, PutPayload::from(bytes))
        .await
        .map_err(|e| Error::storage(format!("uploading {path}"), e))?;
    Ok(FileEntry {
        bytes: size,
        ..entry
    })
}

/// The manifest entry for `batches`, checking they are consecutive offsets of one
/// partition.
fn describe(path: String, batches: &[RecordBatch]) -> Result<FileEntry> {
    let mut entry: Option<FileEntry> = None;
    for batch in batches.iter().filter(|b| b.num_rows() > 0) {
        let partitions = batch
            .column(columns::PARTITION)
            .as_primitive::<arrow::datatypes::UInt16Type>();
        let offsets = batch.column(columns::OFFSET).as_primitive::<UInt64Type>();
        let positions = batch.column(columns::POSITION).as_primitive::<UInt64Type>();
        let times = batch
            .column(columns::TIMESTAMP)
            .as_primitive::<TimestampMicrosecondType>();
        let (min_ts, max_ts) = times
            .values()
            .iter()
            .fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(*t), hi.max(*t)));
        let n = batch.num_rows();
        let e = entry.get_or_insert_with(|| FileEntry {
            path: path.clone(),
            partition: partitions.value(0),
            first_offset: offsets.value(0),
            end_offset: offsets.value(0),
            first_position: positions.value(0),
            last_position: positions.value(0),
            min_timestamp_micros: i64::MAX,
            max_timestamp_micros: i64::MIN,
            bytes: 0,
        });
        let consecutive = offsets
            .values()
            .iter()
            .enumerate()
            .all(|(i, o)| *o == e.end_offset + i as u64);
        if !consecutive || partitions.values().iter().any(|p| *p != e.partition) {
            return Err(Error::Internal(format!(
                "{path}: rows are not consecutive offsets of partition {}",
                e.partition
            )));
        }
        e.end_offset += n as u64;
        e.last_position = positions.value(n - 1);
        e.min_timestamp_micros = e.min_timestamp_micros.min(min_ts);
        e.max_timestamp_micros = e.max_timestamp_micros.max(max_ts);
    }
    entry.ok_or_else(|| Error::Internal(format!("{path}: no rows to write")))
}

/// Reads rows of the log's Parquet files, keeping each file's footer (schema, row
/// groups, page locations) after the first read.
#[derive(Debug)]
pub struct FileReader {
    store: Arc<dyn ObjectStore>,
    footers: Mutex<HashMap<String, ArrowReaderMetadata>>,
}

impl FileReader {
    /// A reader over `store`.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            footers: Mutex::new(HashMap::new()),
        }
    }

    /// The object store the files live in.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    fn object(&self, file: &FileEntry) -> ObjectFile {
        ObjectFile {
            store: Arc::clone(&self.store),
            path: Path::from(file.path.as_str()),
            size: file.bytes,
        }
    }

    async fn footer(&self, file: &FileEntry) -> Result<ArrowReaderMetadata> {
        if let Some(footer) = self.footers.lock().get(&file.path) {
            return Ok(footer.clone());
        }
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
        let footer = ArrowReaderMetadata::load_async(&mut self.object(file), options)
            .await
            .map_err(|e| Error::storage(format!("reading the footer of {}", file.path), e))?;
        self.footers
            .lock()
            .insert(file.path.clone(), footer.clone());
        Ok(footer)
    }

    /// Forget a file's footer (after the file is deleted).
    pub fn forget(&self, path: &str) {
        self.footers.lock().remove(path);
    }

    /// The rows of `file` at `rows` (ascending, each `< file.rows()`), in order.
    pub async fn read_rows(&self, file: &FileEntry, rows: &[usize]) -> Result<Vec<RecordBatch>> {
        let ranges = consecutive_ranges(rows);
        self.read_ranges(file, ranges).await
    }

    /// The rows of `file` in `range`, in order.
    pub async fn read_range(
        &self,
        file: &FileEntry,
        range: Range<usize>,
    ) -> Result<Vec<RecordBatch>> {
        self.read_ranges(file, Vec::from([range])).await
    }

    /// The rows of `file` in `ranges` (ascending, disjoint), in order.
    pub async fn read_ranges(
        &self,
        file: &FileEntry,
        ranges: Vec<Range<usize>>,
    ) -> Result<Vec<RecordBatch>> {
        if ranges.is_empty() {
            return Ok(Vec::new());
        }
        let footer = self.footer(file).await?;
        let total = file.rows() as usize;
        let selection = RowSelection::from_consecutive_ranges(ranges.into_iter(), total);
        let builder = ParquetRecordBatchStreamBuilder::new_with_metadata(self.object(file), footer)
            .with_row_selection(selection)
            .with_batch_size(8192);
        collect(file, builder).await
    }
}

impl FileReader {
    /// Every row of `file`, only the given columns (by index in the event schema).
    pub async fn read_columns(
        &self,
        file: &FileEntry,
        columns: &[usize],
    ) -> Result<Vec<RecordBatch>> {
        let footer = self.footer(file).await?;
        let mask = ProjectionMask::roots(
            footer.metadata().file_metadata().schema_descr(),
            columns.iter().copied(),
        );
        let builder = ParquetRecordBatchStreamBuilder::new_with_metadata(self.object(file), footer)
            .with_projection(mask)
            .with_batch_size(65_536);
        collect(file, builder).await
    }

    /// Every row of `file`, one column.
    pub async fn read_column(&self, file: &FileEntry, column: usize) -> Result<Vec<RecordBatch>> {
        self.read_columns(file, &[column]).await
    }
}

/// Run a configured read of `file` to the end.
async fn collect(
    file: &FileEntry,
    builder: ParquetRecordBatchStreamBuilder<ObjectFile>,
) -> Result<Vec<RecordBatch>> {
    let reading = || format!("reading {}", file.path);
    builder
        .build()
        .map_err(|e| Error::storage(reading(), e))?
        .try_collect()
        .await
        .map_err(|e| Error::storage(reading(), e))
}

/// A Parquet file in the object store, read by byte ranges.
#[derive(Debug)]
struct ObjectFile {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectFile {
    fn get_bytes(
        &mut self,
        range: Range<u64>,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(external)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(external)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ReaderOptions>,
    ) -> BoxFuture<'a, datafusion::parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let mut reader = ParquetMetaDataReader::new();
            if let Some(options) = options {
                reader = reader
                    .with_column_index_policy(options.column_index_policy())
                    .with_offset_index_policy(options.offset_index_policy());
            }
            let size = self.size;
            Ok(Arc::new(reader.load_and_finish(self, size).await?))
        }
        .boxed()
    }
}

/// Ascending row numbers as ranges of consecutive rows.
fn consecutive_ranges(rows: &[usize]) -> Vec<Range<usize>> {
    let mut ranges: Vec<Range<usize>> = Vec::new();
    for row in rows {
        match ranges.last_mut() {
            Some(last) if last.end == *row => last.end += 1,
            _ => ranges.push(*row..*row + 1),
        }
    }
    ranges
}

/// The batches' rows whose `column` (u64) lies in `range`, for batches sorted by it.
pub fn slice_by(batches: &[RecordBatch], column: usize, range: Range<u64>) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for batch in batches {
        let values = batch.column(column).as_primitive::<UInt64Type>();
        let values = values.values();
        let lo = values.partition_point(|v| *v < range.start);
        let hi = values.partition_point(|v| *v < range.end);
        if hi > lo {
            out.push(batch.slice(lo, hi - lo));
        }
    }
    out
}

/// Total rows of `batches`.
pub fn rows_of(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}
