//! The `events` table: a DataFusion `TableProvider` over one tenant's events, the
//! Parquet files and the buffer read at one consistent position.
//!
//! ```text
//!        FilterExec: tenant = '<tenant>'   (part of the scan: no query can lift it)
//!                 │
//!             UnionExec
//!            ╱        ╲
//!  DataSourceExec      DataSourceExec
//!  (Parquet files of    (buffer batches, positions
//!   the manifest:        flushed..head)
//!   positions < flushed)
//! ```
//!
//! Pruning: a filter `entity_id = 'x'` (or `IN (...)`) limits the scan to the
//! partitions those streams route to; every filter, with the tenant's, is pushed
//! into the Parquet scan by DataFusion's physical optimizer and becomes its
//! predicate, which prunes row groups by statistics (timestamp, offsets), by bloom
//! filter (`entity_id`, `event_type`) and pages by the page index, then filters rows.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown, col, lit};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::FilterExecBuilder;
use datafusion::physical_plan::union::UnionExec;

use crate::buffer::{columns, event_schema};
use crate::partition::partition_for;
use crate::store::EventStore;

/// One tenant's events as a table; see the module documentation.
#[derive(Debug)]
pub struct EventsTable {
    store: EventStore,
    tenant: String,
    storage_url: ObjectStoreUrl,
    schema: SchemaRef,
    /// Only events ingested at or before this time (microseconds), for time travel.
    as_of: Option<i64>,
}

impl EventsTable {
    /// The events of `tenant`. The store's table storage must be registered with the
    /// session's runtime under `storage_url` (see [`EventStore::table_storage`]).
    pub fn new(store: EventStore, tenant: impl Into<String>, storage_url: ObjectStoreUrl) -> Self {
        Self {
            store,
            tenant: tenant.into(),
            storage_url,
            schema: event_schema(),
            as_of: None,
        }
    }

    /// The table as it was at `micros` (microseconds since the Unix epoch): only the
    /// events ingested by then.
    pub fn as_of(mut self, micros: i64) -> Self {
        self.as_of = Some(micros);
        self
    }

    /// The partitions a scan must read: those of the streams named by an
    /// `entity_id = '…'` or `entity_id IN (…)` filter, else all.
    fn partitions(&self, filters: &[Expr]) -> BTreeSet<u16> {
        let count = self.store.partitions();
        let mut wanted: Option<BTreeSet<u16>> = None;
        for filter in filters {
            if let Some(entities) = entity_ids(filter) {
                let set = entities
                    .iter()
                    .map(|e| partition_for(&self.tenant, e, count))
                    .collect();
                wanted = Some(match wanted {
                    Some(w) => w.intersection(&set).copied().collect(),
                    None => set,
                });
            }
        }
        wanted.unwrap_or_else(|| (0..count).collect())
    }
}

/// The entity ids a filter restricts `entity_id` to, if it does.
fn entity_ids(filter: &Expr) -> Option<Vec<String>> {
    let is_entity = |e: &Expr| matches!(e, Expr::Column(c) if c.name == "entity_id");
    let text = |e: &Expr| match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
            _,
        ) => Some(s.clone()),
        _ => None,
    };
    match filter {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => {
            if is_entity(left) {
                text(right).map(|s| vec![s])
            } else if is_entity(right) {
                text(left).map(|s| vec![s])
            } else {
                None
            }
        }
        Expr::InList(list) if !list.negated && is_entity(&list.expr) => {
            list.list.iter().map(text).collect()
        }
        _ => None,
    }
}

#[async_trait]
impl TableProvider for EventsTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Used for pruning; DataFusion still applies each filter to the rows.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let partitions = self.partitions(filters);
        let snapshot = self
            .store
            .table_snapshot(&partitions)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;

        // Scan the requested columns plus the tenant (and the ingestion time for a
        // table as of a time), filter on them, then drop them again if they were not
        // asked for.
        let mut columns_read: Vec<usize> = projection
            .cloned()
            .unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        let kept = columns_read.len();
        let mut needed = vec![columns::TENANT];
        if self.as_of.is_some() {
            needed.push(columns::INGESTED_AT);
        }
        for needed in needed {
            if !columns_read.contains(&needed) {
                columns_read.push(needed);
            }
        }

        let mut scope = vec![col("tenant").eq(lit(self.tenant.clone()))];
        if let Some(micros) = self.as_of {
            scope.push(
                col("ingested_at").lt_eq(lit(ScalarValue::TimestampMicrosecond(
                    Some(micros),
                    Some("UTC".into()),
                ))),
            );
        }
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        let files: Vec<PartitionedFile> = snapshot
            .manifest
            .files
            .iter()
            .filter(|f| partitions.contains(&f.partition))
            .map(|f| PartitionedFile::new(f.path.clone(), f.bytes))
            .collect();
        if !files.is_empty() {
            // Filtered rows are skipped, not decoded and dropped: a selective filter
            // (an event type, a stream) leaves scattered rows in clustered files,
            // where decoding every payload only to drop most cost a fifth of a scan.
            let mut options = datafusion::config::TableParquetOptions::default();
            options.global.force_filter_selections = true;
            let mut source = ParquetSource::new(Arc::clone(&self.schema))
                .with_table_parquet_options(options)
                .with_bloom_filter_on_read(true)
                .with_enable_page_index(true)
                .with_pushdown_filters(true);
            // No predicate of our own: DataFusion pushes the tenant filter below and
            // the query's filters above into this scan (as its Parquet predicate),
            // and a predicate set here as well made every conjunct run twice.
            // Footers and page indexes come from the session's metadata cache, kept
            // across queries by whoever built the session.
            let footers = state.runtime_env().cache_manager.get_file_metadata_cache();
            let store = state.runtime_env().object_store(&self.storage_url)?;
            source = source.with_parquet_file_reader_factory(Arc::new(
                CachedParquetFileReaderFactory::new(store, footers),
            ));
            let groups = split_groups(files, state.config().target_partitions());
            let config = FileScanConfigBuilder::new(self.storage_url.clone(), Arc::new(source))
                .with_file_groups(groups)
                .with_projection_indices(Some(columns_read.clone()))?
                .build();
            inputs.push(DataSourceExec::from_data_source(config));
        }
        if !snapshot.buffered.is_empty() || inputs.is_empty() {
            let memory = MemorySourceConfig::try_new_exec(
                &[snapshot.buffered],
                Arc::clone(&self.schema),
                Some(columns_read.clone()),
            )?;
            inputs.push(memory);
        }
        let union = UnionExec::try_new(inputs)?;
        let scanned = union.schema();
        let scanned_df = DFSchema::try_from(Arc::clone(&scanned))?;
        let in_scope = conjunction(scope)
            .map(|e| state.create_physical_expr(e, &scanned_df))
            .transpose()?
            .ok_or_else(|| DataFusionError::Internal("no tenant scope".into()))?;
        let keep: Vec<usize> = (0..kept).collect();
        let filter = FilterExecBuilder::new(in_scope, union)
            .apply_projection(Some(keep))?
            .build()?;
        Ok(Arc::new(filter))
    }
}

/// Spread files over up to `n` groups (read in parallel), keeping sizes even.
fn split_groups(files: Vec<PartitionedFile>, n: usize) -> Vec<FileGroup> {
    let n = n.max(1).min(files.len().max(1));
    let mut groups: Vec<Vec<PartitionedFile>> = (0..n).map(|_| Vec::new()).collect();
    let mut sizes = vec![0u64; n];
    let mut files = files;
    files.sort_by_key(|f| std::cmp::Reverse(f.object_meta.size));
    for file in files {
        let (smallest, _) = sizes
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| **s)
            .unwrap_or((0, &0));
        sizes[smallest] += file.object_meta.size;
        groups[smallest].push(file);
    }
    groups
        .into_iter()
        .filter(|g| !g.is_empty())
        .map(FileGroup::new)
        .collect()
}
