//! Parquet files of the log: how they are written, and point and range reads.
//!
//! A file holds a contiguous offset range of one partition. Its row groups hold
//! consecutive offset ranges, in offset order, and within a row group the rows are
//! clustered: sorted by (entity_id, tenant, offset) ([`RowOrder::Clustered`]). So a
//! stream's events in a row group are adjacent, and a stream read finds them from the
//! page index of `entity_id` (each page's smallest and largest value) and decodes one
//! or two pages per column per row group, where offset order would cost one page per
//! event. Reads by offset or position sort a row group back into offset order (and
//! keep a few such row groups, for readers going through the log in small steps).
//!
//! zstd; page statistics on every column (so DataFusion can prune by time, offset and
//! position); bloom filters on `entity_id` and `event_type`.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::compute::{
    SortColumn, concat_batches, filter_record_batch, lexsort_to_indices, sort_to_indices,
    take_record_batch,
};
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
use datafusion::parquet::file::page_index::column_index::ColumnIndexMetaData;
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::schema::types::ColumnPath;
use futures::FutureExt;
use futures::TryStreamExt;
use futures::future::BoxFuture;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parking_lot::Mutex;

use super::manifest::{DATA_DIR, FileEntry, RowOrder};
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

/// Columns whose values are (nearly) all distinct: a dictionary would not shrink
/// them, and a point read would pay for decoding it (up to a megabyte per column
/// chunk) before the one page it wants.
const NO_DICTIONARY: [&str; 8] = [
    "version",
    "offset",
    "position",
    "event_id",
    "timestamp",
    "ingested_at",
    "payload",
    "metadata",
];

/// zstd level 1: on pages of 256 rows it compresses the log's columns as well as
/// level 3 did (17.8 against 17.9 bytes per event in `benches/tier.rs`) and the
/// flusher, which shares the cores with the appenders, spends less on it.
const ZSTD_LEVEL: i32 = 1;

fn writer_properties(layout: ParquetLayout) -> Result<WriterProperties> {
    let zstd =
        ZstdLevel::try_new(ZSTD_LEVEL).map_err(|e| Error::Internal(format!("zstd level: {e}")))?;
    let mut properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(zstd))
        .set_max_row_group_row_count(Some(layout.row_group_rows.max(1)))
        .set_data_page_row_count_limit(layout.page_rows.max(1))
        .set_write_batch_size(layout.page_rows.max(1))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_column_bloom_filter_enabled(ColumnPath::from("entity_id"), true)
        .set_column_bloom_filter_enabled(ColumnPath::from("event_type"), true);
    // A row group holds at most `row_group_rows` distinct values: size the filters
    // for that rather than the library's million, which allocated and folded a 1 MiB
    // bitset per column for every row group.
    let ndv = layout.row_group_rows.max(1) as u64;
    for column in ["entity_id", "event_type"] {
        properties = properties.set_column_bloom_filter_max_ndv(ColumnPath::from(column), ndv);
    }
    for column in NO_DICTIONARY {
        properties = properties.set_column_dictionary_enabled(ColumnPath::from(column), false);
    }
    Ok(properties.build())
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

/// Encode `batches` (one partition, consecutive offsets, in offset order) as a
/// clustered Parquet file and upload it to `path`: row groups of
/// `layout.row_group_rows` consecutive offsets, each sorted by (entity_id, tenant,
/// offset). Returns its manifest entry.
pub async fn write_file(
    store: &Arc<dyn ObjectStore>,
    schema: &SchemaRef,
    path: Path,
    batches: &[RecordBatch],
    layout: ParquetLayout,
) -> Result<FileEntry> {
    let entry = describe(path.to_string(), batches)?;
    let encoding = |e: &dyn std::fmt::Display| Error::storage(format!("encoding {path}"), e);
    let rows = concat_batches(schema, batches).map_err(|e| encoding(&e))?;
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(
        &mut bytes,
        Arc::clone(schema),
        Some(writer_properties(layout)?),
    )
    .map_err(|e| encoding(&e))?;
    let group_rows = layout.row_group_rows.max(1);
    let mut start = 0;
    while start < rows.num_rows() {
        let len = group_rows.min(rows.num_rows() - start);
        let group = cluster(&rows.slice(start, len)).map_err(|e| encoding(&e))?;
        writer.write(&group).map_err(|e| encoding(&e))?;
        writer.flush().map_err(|e| encoding(&e))?;
        start += len;
    }
    writer.close().map_err(|e| encoding(&e))?;
    let size = bytes.len() as u64;
    store
        .put(&path, PutPayload::from(bytes))
        .await
        .map_err(|e| Error::storage(format!("uploading {path}"), e))?;
    Ok(FileEntry {
        bytes: size,
        order: RowOrder::Clustered,
        ..entry
    })
}

/// `rows` (in offset order) sorted by (entity_id, tenant, offset).
///
/// Each row's sort key holds the first 16 bytes of its entity id as a big-endian
/// integer (so integer order is byte order) and the id's length: most comparisons end
/// on the integer, without following an offset into the string data, and two ids of
/// at most 16 bytes with equal integers and lengths are equal. Only longer ids that
/// share their first 16 bytes are compared whole. The sort is stable, so rows of one
/// stream stay in offset order. Columns of another type take the generic
/// `lexsort_to_indices` path.
fn cluster(rows: &RecordBatch) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    let entity = rows.column(columns::ENTITY_ID).as_string_opt::<i32>();
    let tenant = rows.column(columns::TENANT).as_string_opt::<i32>();
    let (Some(entity), Some(tenant)) = (entity, tenant) else {
        let keys = [columns::ENTITY_ID, columns::TENANT, columns::OFFSET].map(|c| SortColumn {
            values: Arc::clone(rows.column(c)),
            options: None,
        });
        let order = lexsort_to_indices(&keys, None)?;
        return take_record_batch(rows, &order);
    };
    let rows_len = u32::try_from(rows.num_rows()).map_err(|_| {
        arrow::error::ArrowError::InvalidArgumentError("a row group over u32::MAX rows".into())
    })?;
    let mut keys: Vec<SortKey> = (0..rows_len)
        .map(|row| SortKey::new(entity.value(row as usize), row))
        .collect();
    keys.sort_by(|a, b| {
        a.prefix
            .cmp(&b.prefix)
            .then_with(|| {
                if a.len <= 16 && b.len <= 16 {
                    a.len.cmp(&b.len)
                } else {
                    entity
                        .value(a.row as usize)
                        .cmp(entity.value(b.row as usize))
                }
            })
            .then_with(|| {
                tenant
                    .value(a.row as usize)
                    .cmp(tenant.value(b.row as usize))
            })
    });
    let order = arrow::array::UInt32Array::from_iter_values(keys.iter().map(|k| k.row));
    take_record_batch(rows, &order)
}

/// A row's place in [`cluster`]'s order, as far as its entity id's first 16 bytes
/// decide it.
struct SortKey {
    prefix: u128,
    len: u32,
    row: u32,
}

impl SortKey {
    fn new(entity_id: &str, row: u32) -> Self {
        let bytes = entity_id.as_bytes();
        let mut prefix = [0u8; 16];
        let head = bytes.len().min(16);
        prefix[..head].copy_from_slice(&bytes[..head]);
        Self {
            prefix: u128::from_be_bytes(prefix),
            len: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
            row,
        }
    }
}

/// `rows` (from one row group) sorted by the u64 column at `offset_column`.
fn in_offset_order(
    rows: &RecordBatch,
    offset_column: usize,
) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    let order = sort_to_indices(rows.column(offset_column), None, None)?;
    take_record_batch(rows, &order)
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
            order: RowOrder::Offset,
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
/// groups, page locations) after the first read, and the last few row groups read
/// in offset order.
#[derive(Debug)]
pub struct FileReader {
    store: Arc<dyn ObjectStore>,
    footers: Mutex<HashMap<String, ArrowReaderMetadata>>,
    groups: Mutex<GroupCache>,
}

impl FileReader {
    /// A reader over `store`.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            footers: Mutex::new(HashMap::new()),
            groups: Mutex::new(GroupCache::default()),
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

    /// How many files' footers are held in memory.
    pub fn footers_cached(&self) -> usize {
        self.footers.lock().len()
    }

    /// Read `file`'s footer and page index into the cache, if not there yet.
    pub async fn load_footer(&self, file: &FileEntry) -> Result<()> {
        self.footer(file).await.map(|_| ())
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

    /// Forget what is cached of a file (after the file is deleted).
    pub fn forget(&self, path: &str) {
        self.footers.lock().remove(path);
        self.groups.lock().remove_file(path);
    }

    /// The rows of `file` at offsets `first_offset + range`, in offset order.
    pub async fn read_offset_range(
        &self,
        file: &FileEntry,
        range: Range<usize>,
    ) -> Result<Vec<RecordBatch>> {
        if file.order == RowOrder::Offset {
            return self.read_range(file, range).await;
        }
        let footer = self.footer(file).await?;
        let mut out = Vec::new();
        for (group, rows) in row_groups(footer.metadata()).enumerate() {
            if rows.end <= range.start || rows.start >= range.end {
                continue;
            }
            let key = (file.path.clone(), group);
            let cached = self.groups.lock().get(&key);
            let sorted = match cached {
                Some(sorted) => sorted,
                None => {
                    let sorted = self.read_group_in_offset_order(file, group, None).await?;
                    self.groups.lock().insert(key, sorted.clone());
                    sorted
                }
            };
            let lo = range.start.max(rows.start) - rows.start;
            let hi = range.end.min(rows.end) - rows.start;
            out.push(sorted.slice(lo, hi - lo));
        }
        Ok(out)
    }

    /// Every row of `file`, in offset order, without keeping anything (compaction).
    pub async fn read_all(&self, file: &FileEntry) -> Result<Vec<RecordBatch>> {
        if file.order == RowOrder::Offset {
            return self.read_range(file, 0..file.rows() as usize).await;
        }
        let footer = self.footer(file).await?;
        let mut out = Vec::new();
        for group in 0..footer.metadata().num_row_groups() {
            out.push(self.read_group_in_offset_order(file, group, None).await?);
        }
        Ok(out)
    }

    /// Every row of `file`, only the given columns (by index in the event schema,
    /// ascending, including `offset`), in offset order.
    pub async fn read_columns_in_offset_order(
        &self,
        file: &FileEntry,
        columns: &[usize],
    ) -> Result<Vec<RecordBatch>> {
        if file.order == RowOrder::Offset {
            return self.read_columns(file, columns).await;
        }
        let footer = self.footer(file).await?;
        let mut out = Vec::new();
        for group in 0..footer.metadata().num_row_groups() {
            out.push(
                self.read_group_in_offset_order(file, group, Some(columns))
                    .await?,
            );
        }
        Ok(out)
    }

    /// Row group `group` of a clustered file, sorted back into offset order; only
    /// `columns` (ascending, including `offset`) when given.
    async fn read_group_in_offset_order(
        &self,
        file: &FileEntry,
        group: usize,
        columns: Option<&[usize]>,
    ) -> Result<RecordBatch> {
        let footer = self.footer(file).await?;
        let mut builder =
            ParquetRecordBatchStreamBuilder::new_with_metadata(self.object(file), footer.clone())
                .with_row_groups(vec![group])
                .with_batch_size(65_536);
        let mut offset_column = columns::OFFSET;
        if let Some(columns) = columns {
            offset_column = columns
                .iter()
                .position(|c| *c == columns::OFFSET)
                .ok_or_else(|| Error::Internal("offset order needs the offset column".into()))?;
            builder = builder.with_projection(ProjectionMask::roots(
                footer.metadata().file_metadata().schema_descr(),
                columns.iter().copied(),
            ));
        }
        let sorting =
            |e: arrow::error::ArrowError| Error::storage(format!("reading {}", file.path), e);
        let schema = match columns {
            Some(columns) => Arc::new(builder.schema().project(columns).map_err(sorting)?),
            None => Arc::clone(builder.schema()),
        };
        let batches = collect(file, builder).await?;
        let rows = concat_batches(&schema, &batches).map_err(sorting)?;
        in_offset_order(&rows, offset_column).map_err(sorting)
    }

    /// The events of stream (`tenant`, `entity_id`) in `file` at offsets
    /// `first_offset + rows` (ascending), in offset order.
    pub async fn read_stream_rows(
        &self,
        file: &FileEntry,
        tenant: &str,
        entity_id: &str,
        rows: &[usize],
    ) -> Result<Vec<RecordBatch>> {
        if file.order == RowOrder::Offset {
            return self.read_rows(file, rows).await;
        }
        let footer = self.footer(file).await?;
        let metadata = footer.metadata();
        let mut ranges: Vec<Range<usize>> = Vec::new();
        for (group, group_rows) in row_groups(metadata).enumerate() {
            let first = rows.partition_point(|r| *r < group_rows.start);
            if rows.get(first).is_none_or(|r| *r >= group_rows.end) {
                continue;
            }
            for page in pages_holding(metadata, group, entity_id.as_bytes()) {
                let page = group_rows.start + page.start..group_rows.start + page.end;
                match ranges.last_mut() {
                    Some(last) if last.end == page.start => last.end = page.end,
                    _ => ranges.push(page),
                }
            }
        }
        let wanted: Vec<u64> = rows.iter().map(|r| file.first_offset + *r as u64).collect();
        let batches = self.read_ranges(file, ranges).await?;
        batches
            .iter()
            .map(|batch| {
                let tenants = batch.column(columns::TENANT).as_string::<i32>();
                let entities = batch.column(columns::ENTITY_ID).as_string::<i32>();
                let offsets = batch.column(columns::OFFSET).as_primitive::<UInt64Type>();
                let keep: BooleanArray = (0..batch.num_rows())
                    .map(|row| {
                        Some(
                            entities.value(row) == entity_id
                                && tenants.value(row) == tenant
                                && wanted.binary_search(&offsets.value(row)).is_ok(),
                        )
                    })
                    .collect();
                filter_record_batch(batch, &keep)
                    .map_err(|e| Error::storage(format!("reading {}", file.path), e))
            })
            .collect()
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

/// The row range of each row group.
fn row_groups(metadata: &ParquetMetaData) -> impl Iterator<Item = Range<usize>> + '_ {
    metadata.row_groups().iter().scan(0usize, |start, group| {
        let rows = *start..*start + group.num_rows() as usize;
        *start = rows.end;
        Some(rows)
    })
}

/// The row ranges (within row group `group`) of the pages whose `entity_id` values
/// may include `key`, from the page index; the whole group when it has none.
fn pages_holding(metadata: &ParquetMetaData, group: usize, key: &[u8]) -> Vec<Range<usize>> {
    let group_rows = metadata.row_group(group).num_rows() as usize;
    let locations = metadata
        .offset_index()
        .and_then(|index| index.get(group))
        .and_then(|columns| columns.get(columns::ENTITY_ID))
        .map(|column| column.page_locations());
    let bounds = metadata
        .column_index()
        .and_then(|index| index.get(group))
        .and_then(|columns| columns.get(columns::ENTITY_ID));
    let (Some(locations), Some(ColumnIndexMetaData::BYTE_ARRAY(bounds))) = (locations, bounds)
    else {
        let whole: Range<usize> = 0..group_rows;
        return vec![whole];
    };
    let mut pages: Vec<Range<usize>> = Vec::new();
    for (page, location) in locations.iter().enumerate() {
        let below = bounds.max_value(page).is_some_and(|max| max < key);
        let above = bounds.min_value(page).is_some_and(|min| min > key);
        if below || above {
            continue;
        }
        let start = location.first_row_index as usize;
        let end = locations
            .get(page + 1)
            .map_or(group_rows, |next| next.first_row_index as usize);
        match pages.last_mut() {
            Some(last) if last.end == start => last.end = end,
            _ => pages.push(start..end),
        }
    }
    pages
}

/// Row groups recently read in offset order, dropped oldest first past a size bound.
#[derive(Debug, Default)]
struct GroupCache {
    groups: VecDeque<((String, usize), RecordBatch)>,
    bytes: usize,
}

impl GroupCache {
    const MAX_BYTES: usize = 64 << 20;

    fn get(&self, key: &(String, usize)) -> Option<RecordBatch> {
        self.groups
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, rows)| rows.clone())
    }

    fn insert(&mut self, key: (String, usize), rows: RecordBatch) {
        let size = rows.get_array_memory_size();
        if size > Self::MAX_BYTES {
            return;
        }
        while self.bytes + size > Self::MAX_BYTES {
            match self.groups.pop_front() {
                Some((_, old)) => self.bytes -= old.get_array_memory_size(),
                None => break,
            }
        }
        self.bytes += size;
        self.groups.push_back((key, rows));
    }

    fn remove_file(&mut self, path: &str) {
        let mut bytes = self.bytes;
        self.groups.retain(|((p, _), rows)| {
            let keep = p != path;
            if !keep {
                bytes -= rows.get_array_memory_size();
            }
            keep
        });
        self.bytes = bytes;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::{event_schema, events_to_batch};
    use crate::event::RecordedEvent;

    /// Rows of interleaved streams of two tenants, some entity ids shared between
    /// them, in no particular order. The ids are prefixes of one another ("e1",
    /// "e10", one ending in a zero byte), or 16 bytes long, or longer and alike in
    /// their first 16 bytes, or not ASCII.
    fn rows() -> RecordBatch {
        let mut ids: Vec<String> = (0..13).map(|n| format!("e{n}")).collect();
        ids.extend(
            [
                "e1\0",
                "customer-0000001",
                "customer-0000001\0",
                "customer-00000010",
                "customer-00000011",
                "customer-000000100",
                "customer-0000000",
                "é",
                "",
            ]
            .map(String::from),
        );
        let events: Vec<RecordedEvent> = (0..500u64)
            .map(|offset| {
                let n = (offset * 7919) % 37;
                RecordedEvent {
                    tenant: if n % 3 == 0 { "b" } else { "a" }.into(),
                    entity_id: ids[(n as usize * 5 + offset as usize) % ids.len()]
                        .as_str()
                        .into(),
                    event_type: "x".into(),
                    version: offset + 1,
                    partition: 0,
                    offset,
                    position: offset,
                    event_id: format!("id{offset}").into(),
                    timestamp_micros: 1,
                    ingested_at_micros: 2,
                    payload: "{}".into(),
                    metadata: None,
                }
            })
            .collect();
        let refs: Vec<&RecordedEvent> = events.iter().collect();
        events_to_batch(&event_schema(), &refs).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn clustering_orders_rows_as_the_generic_sort_does() {
        let rows = rows();
        let keys = [columns::ENTITY_ID, columns::TENANT, columns::OFFSET].map(|c| SortColumn {
            values: Arc::clone(rows.column(c)),
            options: None,
        });
        let order = lexsort_to_indices(&keys, None).unwrap_or_else(|e| panic!("{e}"));
        let expected = take_record_batch(&rows, &order).unwrap_or_else(|e| panic!("{e}"));
        let clustered = cluster(&rows).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(clustered, expected);
        // Not the identity: the input really was out of order.
        assert_ne!(clustered, rows);
    }
}
