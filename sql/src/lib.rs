//! EventQL: AllSource's query language, compiled into DataFusion plans.
//!
//! EventQL is DataFusion SQL with a PostgreSQL flavour plus what event data needs:
//!
//! - `payload->'k'` (JSON), `payload->>'k'` (text), nested paths
//!   (`payload->'customer'->>'tier'`), usable as numbers in comparisons, arithmetic
//!   and aggregates without a cast ([`json_numbers`]);
//! - `DATE_TRUNC`, `DATE_BIN`, `NOW()`, `INTERVAL`;
//! - `FROM events AS OF TIMESTAMP '…'` for time travel ([`as_of`]);
//! - `entity_state(entity_id [, as_of])` ([`entity_state`]);
//! - window table functions `TUMBLE(events, timestamp, size)`,
//!   `HOP(events, timestamp, slide, size)` and
//!   `SESSION(events, timestamp, gap [, partition_column ...])` ([`windows`]).
//!
//! Each query runs for one tenant: the `events` table it sees is scoped to that
//! tenant inside the scan. Tables: `events`, `streams` (one row per stream),
//! `partitions` and `files` (the tiered Parquet files).
//!
//! Queries are read-only ([`guard`]): anything but `SELECT` / `WITH` / `EXPLAIN` is
//! rejected before planning, as are table functions other than the window functions,
//! and file or URL tables. Each
//! query has a memory limit (a DataFusion memory pool) and a time limit; exceeding
//! either is a [`QueryError`], and the store keeps serving.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use allsource_engine::{AppendRequest, EventData, EventStore, ExpectedVersion, StoreConfig};
//! use allsource_sql::EventQl;
//! # let dir = tempfile::tempdir()?;
//! let store = EventStore::open(StoreConfig::new(dir.path()))?;
//! store
//!     .append(AppendRequest::new("acme").stream(
//!         "order-1",
//!         ExpectedVersion::Any,
//!         vec![EventData::new("order.placed", r#"{"amount": 42}"#)],
//!     ))
//!     .await?;
//! let eventql = EventQl::new(store.clone());
//! let batches = eventql
//!     .query("acme", "SELECT SUM(payload->>'amount') AS total FROM events")
//!     .await?;
//! let text = arrow::util::pretty::pretty_format_batches(&batches)?.to_string();
//! assert!(text.contains("42.0"));
//! # Ok(()) }
//! ```

pub mod as_of;
pub mod entity_state;
mod error;
mod find;
pub mod guard;
pub mod json_merge;
pub mod json_numbers;
mod sessions;
mod utc_date_trunc;
pub mod windows;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use allsource_engine::{EventStore, EventsTable};
use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::TaskContext;
use datafusion::execution::cache::cache_manager::{CacheManagerConfig, FileMetadataCache};
use datafusion::execution::cache::default_cache::DefaultCache;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF, col};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use futures::StreamExt;

pub use error::QueryError;
pub use find::{After, EventFilter, EventOrder};

/// Where a query's session finds the store's Parquet files.
const STORAGE_URL: &str = "allsource://tables/";

/// The catalog the tables are in (`allsource.public.events` names `events`).
pub const CATALOG: &str = "allsource";
/// The schema the tables are in.
pub const SCHEMA: &str = "public";
/// The tables a query can read.
pub const TABLES: [&str; 4] = ["events", "streams", "partitions", "files"];

/// Tables a query can read besides the store's own (a pipeline's results), by name.
/// Names of the store's tables ([`TABLES`]) are never replaced.
pub trait ExtraTables: std::fmt::Debug + Send + Sync {
    /// The tables `tenant` can read, with their names.
    fn tables(&self, tenant: &str) -> Vec<(String, Arc<dyn TableProvider>)>;
}

/// Per-query limits.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    /// Memory a query may hold for sorts, joins and aggregates (default 512 MiB).
    pub memory_bytes: usize,
    /// Time after which a query is cancelled (default 60 s).
    pub timeout: Duration,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 512 * 1024 * 1024,
            timeout: Duration::from_secs(60),
        }
    }
}

/// Runs EventQL queries against one store.
///
/// Queries execute on the instance's own runtime (one worker per core), so a query
/// busy computing never holds up the caller's runtime: the caller's time limit
/// fires on time, and cancelling the query stops it at its next batch.
#[derive(Debug, Clone)]
pub struct EventQl {
    store: EventStore,
    /// Tables defined outside the store (pipelines' results), looked up per query.
    extra: Option<Arc<dyn ExtraTables>>,
    limits: QueryLimits,
    runtime: Arc<QueryRuntime>,
    running: Arc<AtomicUsize>,
    /// Parquet footers and page indexes, kept from one query to the next: a file
    /// never changes once written, so only the first query to read it loads them.
    footers: Arc<FileMetadataCache>,
}

/// Memory the kept Parquet footers may take (about 2.5 MB per million events).
const FOOTER_CACHE_BYTES: usize = 256 << 20;

/// Counts one query as running until dropped (when its task ends, however it ends).
struct Running(Arc<AtomicUsize>);

impl Running {
    fn start(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(count))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct QueryRuntime(Option<tokio::runtime::Runtime>);

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl EventQl {
    /// EventQL over `store`, with the default limits.
    ///
    /// # Panics
    /// If the operating system refuses to start the query threads.
    pub fn new(store: EventStore) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("allsource-query")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("starting the query runtime: {e}"));
        Self {
            store,
            extra: None,
            limits: QueryLimits::default(),
            runtime: Arc::new(QueryRuntime(Some(runtime))),
            running: Arc::new(AtomicUsize::new(0)),
            footers: Arc::new(
                DefaultCache::new(FOOTER_CACHE_BYTES).with_name("allsource-parquet-footers"),
            ),
        }
    }

    /// The per-query limits in force.
    pub fn limits(&self) -> QueryLimits {
        self.limits
    }

    /// How many queries are computing now. A streamed query counts until it ends,
    /// fails, times out or its reader goes away.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// Let queries also read the tables `extra` has for their tenant.
    pub fn with_extra_tables(mut self, extra: Arc<dyn ExtraTables>) -> Self {
        self.extra = Some(extra);
        self
    }

    /// Replace the per-query limits.
    pub fn with_limits(mut self, limits: QueryLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Run `sql` for `tenant` and collect the result.
    pub async fn query(&self, tenant: &str, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
        let frame = self.plan(tenant, sql).await?;
        self.collect(frame).await
    }

    /// Run a planned query on the query runtime under the limits and collect it.
    async fn collect(&self, frame: DataFrame) -> Result<Vec<RecordBatch>, QueryError> {
        let limit = self.limits.memory_bytes;
        let runtime = self
            .runtime
            .0
            .as_ref()
            .ok_or_else(|| QueryError::Plan("the query runtime has stopped".into()))?;
        let guard = Running::start(&self.running);
        let mut running = runtime.spawn(async move {
            let _guard = guard;
            frame.collect().await
        });
        match tokio::time::timeout(self.limits.timeout, &mut running).await {
            Ok(Ok(result)) => result.map_err(|e| QueryError::from_datafusion(e, limit)),
            Ok(Err(e)) => Err(QueryError::Plan(format!("the query failed: {e}"))),
            Err(_) => {
                running.abort();
                Err(QueryError::Timeout(self.limits.timeout))
            }
        }
    }

    /// Run `sql` for `tenant`, handing out the result batch by batch as it is
    /// computed (a few batches ahead of the reader at most). The time limit covers
    /// the whole run; dropping the stream cancels the query.
    pub async fn query_stream(&self, tenant: &str, sql: &str) -> Result<QueryStream, QueryError> {
        self.query_stream_with(tenant, sql, Vec::new()).await
    }

    /// [`query_stream`](Self::query_stream) with values for the statement's `$1`,
    /// `$2`... parameters, in order.
    pub async fn query_stream_with(
        &self,
        tenant: &str,
        sql: &str,
        params: Vec<ScalarValue>,
    ) -> Result<QueryStream, QueryError> {
        let limit = self.limits.memory_bytes;
        let (plan, task) = self.physical_plan(tenant, sql, params).await?;
        let schema = plan.schema();
        let timeout = self.limits.timeout;
        let runtime = self
            .runtime
            .0
            .as_ref()
            .ok_or_else(|| QueryError::Plan("the query runtime has stopped".into()))?;
        let (sender, batches) = tokio::sync::mpsc::channel(QueryStream::AHEAD_BATCHES);
        let result_schema = Arc::clone(&schema);
        let guard = Running::start(&self.running);
        runtime.spawn(async move {
            let _guard = guard;
            let run = async {
                let mut stream = datafusion::physical_plan::execute_stream(plan, task)
                    .map_err(|e| QueryError::from_datafusion(e, limit))?;
                while let Some(batch) = stream.next().await {
                    let batch = batch.map_err(|e| QueryError::from_datafusion(e, limit))?;
                    // Batches carry exactly the schema announced to the reader.
                    let batch =
                        RecordBatch::try_new(Arc::clone(&result_schema), batch.columns().to_vec())
                            .map_err(|e| {
                                QueryError::Plan(format!(
                                    "a result batch does not match the result schema: {e}"
                                ))
                            })?;
                    if sender.send(Ok(batch)).await.is_err() {
                        // The reader went away: stop computing.
                        return Ok(());
                    }
                }
                Ok(())
            };
            let failure = match tokio::time::timeout(timeout, run).await {
                Ok(Ok(())) => return,
                Ok(Err(e)) => e,
                Err(_) => QueryError::Timeout(timeout),
            };
            let _ = sender.send(Err(failure)).await;
        });
        Ok(QueryStream { schema, batches })
    }

    /// What `sql` would return for `tenant` (the exact schema its batches carry) and
    /// the types of its `$n` parameters, in order (`None` where the statement does
    /// not pin one down), without running it.
    pub async fn describe(
        &self,
        tenant: &str,
        sql: &str,
    ) -> Result<(SchemaRef, Vec<Option<DataType>>), QueryError> {
        let limit = self.limits.memory_bytes;
        let frame = self.plan(tenant, sql).await?;
        let mut types: Vec<(usize, Option<DataType>)> = frame
            .logical_plan()
            .get_parameter_types()
            .map_err(|e| QueryError::from_datafusion(e, limit))?
            .into_iter()
            .map(|(name, data_type)| {
                name.trim_start_matches('$')
                    .parse::<usize>()
                    .map(|n| (n, data_type))
                    .map_err(|_| {
                        QueryError::Plan(format!(
                            "parameter {name}: only positional parameters ($1, $2...) are supported"
                        ))
                    })
            })
            .collect::<Result<_, _>>()?;
        types.sort_by_key(|(n, _)| *n);
        if let Some((i, (n, _))) = types.iter().enumerate().find(|(i, (n, _))| *n != i + 1) {
            return Err(QueryError::Plan(format!(
                "parameter ${} is missing (parameters are numbered from $1 without gaps; found ${n})",
                i + 1
            )));
        }
        let params: Vec<ScalarValue> = types
            .iter()
            .map(|(_, t)| match t {
                Some(t) => ScalarValue::try_from(t).unwrap_or(ScalarValue::Null),
                None => ScalarValue::Null,
            })
            .collect();
        let (plan, _) = self.physical_plan(tenant, sql, params).await?;
        Ok((plan.schema(), types.into_iter().map(|(_, t)| t).collect()))
    }

    /// Every table a query of `tenant` can read, with its schema, by name.
    pub async fn tables(&self, tenant: &str) -> Result<Vec<(String, SchemaRef)>, QueryError> {
        let limit = self.limits.memory_bytes;
        let ctx = self
            .context(tenant, &[])
            .await
            .map_err(|e| QueryError::from_datafusion(e, limit))?;
        let mut tables = Vec::new();
        for name in TABLES {
            let provider = ctx
                .table_provider(name)
                .await
                .map_err(|e| QueryError::from_datafusion(e, limit))?;
            tables.push((name.to_string(), provider.schema()));
        }
        Ok(tables)
    }

    /// Plan `sql` with `params` bound down to an executable plan.
    async fn physical_plan(
        &self,
        tenant: &str,
        sql: &str,
        params: Vec<ScalarValue>,
    ) -> Result<(Arc<dyn ExecutionPlan>, Arc<TaskContext>), QueryError> {
        let limit = self.limits.memory_bytes;
        let df_err = |e| QueryError::from_datafusion(e, limit);
        let mut frame = self.plan(tenant, sql).await?;
        if !params.is_empty() {
            frame = frame.with_param_values(params).map_err(df_err)?;
        }
        let task = Arc::new(frame.task_ctx());
        let plan = frame.create_physical_plan().await.map_err(df_err)?;
        Ok((plan, task))
    }

    /// Check and plan `sql` for `tenant`, without running it. JSON values come out
    /// as text (never as Arrow union columns, which many clients cannot read).
    pub async fn plan(&self, tenant: &str, sql: &str) -> Result<DataFrame, QueryError> {
        if tenant.is_empty() {
            return Err(QueryError::Plan("a query needs a tenant".into()));
        }
        let (sql, cutoffs) = as_of::rewrite(sql)?;
        guard::check(&sql)?;
        let limit = self.limits.memory_bytes;
        let df_err = |e| QueryError::from_datafusion(e, limit);
        let ctx = self.context(tenant, &cutoffs).await.map_err(df_err)?;
        let frame = ctx.sql(&sql).await.map_err(df_err)?;
        text_for_json(frame).map_err(df_err)
    }

    /// Compile `predicate`, an EventQL condition over rows of `schema` (a pipeline's
    /// results, say), into an expression to evaluate batch by batch.
    pub async fn predicate(
        &self,
        tenant: &str,
        predicate: &str,
        schema: &SchemaRef,
    ) -> Result<Arc<dyn datafusion::physical_expr::PhysicalExpr>, QueryError> {
        let limit = self.limits.memory_bytes;
        let df_err = |e| QueryError::from_datafusion(e, limit);
        let ctx = self.context(tenant, &[]).await.map_err(df_err)?;
        let columns =
            datafusion::common::DFSchema::try_from(schema.as_ref().clone()).map_err(df_err)?;
        let expr = ctx.parse_sql_expr(predicate, &columns).map_err(df_err)?;
        let compiled = ctx.create_physical_expr(expr, &columns).map_err(df_err)?;
        let kind = compiled.data_type(schema).map_err(df_err)?;
        if kind != DataType::Boolean && kind != DataType::Null {
            return Err(QueryError::Plan(format!(
                "{predicate:?} is not a condition: it is of type {kind}"
            )));
        }
        Ok(compiled)
    }

    /// Check and plan the query `sql` of a pipeline for `tenant`: the same language,
    /// but `events` (and the window functions over it) is `events`, a table that
    /// yields the pipeline's current input, and the plan runs on one partition.
    ///
    /// Returns the plan and the window function calls it holds.
    pub async fn plan_pipeline(
        &self,
        tenant: &str,
        sql: &str,
        events: Arc<dyn TableProvider>,
    ) -> Result<(DataFrame, Vec<windows::WindowCall>), QueryError> {
        if tenant.is_empty() {
            return Err(QueryError::Plan("a pipeline needs a tenant".into()));
        }
        guard::check(sql)?;
        let limit = self.limits.memory_bytes;
        let df_err = |e| QueryError::from_datafusion(e, limit);
        let calls = windows::WindowCalls::default();
        let ctx = self
            .context_over(tenant, &[], events, 1, Some(&calls))
            .await
            .map_err(df_err)?;
        let frame = ctx.sql(sql).await.map_err(df_err)?;
        let frame = text_for_json(frame).map_err(df_err)?;
        Ok((frame, calls.calls()))
    }

    async fn context(
        &self,
        tenant: &str,
        cutoffs: &[i64],
    ) -> datafusion::error::Result<SessionContext> {
        let url = ObjectStoreUrl::parse(STORAGE_URL)?;
        let events = Arc::new(EventsTable::new(self.store.clone(), tenant, url));
        let partitions = SessionConfig::new().target_partitions();
        self.context_over(tenant, cutoffs, events, partitions, None)
            .await
    }

    async fn context_over(
        &self,
        tenant: &str,
        cutoffs: &[i64],
        events: Arc<dyn TableProvider>,
        target_partitions: usize,
        pipeline: Option<&windows::WindowCalls>,
    ) -> datafusion::error::Result<SessionContext> {
        let config = SessionConfig::new()
            .with_target_partitions(target_partitions)
            .with_default_catalog_and_schema(CATALOG, SCHEMA)
            .set_str("datafusion.sql_parser.dialect", "PostgreSQL")
            .with_information_schema(false);
        // No spilling to disk: a query that needs more than its memory limit fails
        // with a clear error instead of filling the disk.
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(self.limits.memory_bytes)))
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .with_cache_manager(
                CacheManagerConfig::default()
                    .with_file_metadata_cache(Some(Arc::clone(&self.footers)))
                    .with_metadata_cache_limit(FOOTER_CACHE_BYTES),
            )
            .build_arc()?;
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .build();
        let mut ctx = SessionContext::new_with_state(state);
        datafusion_functions_json::register_all(&mut ctx)?;
        datafusion::execution::FunctionRegistry::register_expr_planner(
            &mut ctx,
            Arc::new(json_numbers::JsonNumbers),
        )?;
        let url = ObjectStoreUrl::parse(STORAGE_URL)?;
        ctx.runtime_env()
            .register_object_store(url.as_ref(), self.store.table_storage());
        ctx.register_table("events", Arc::clone(&events))?;
        register_windows(&ctx, &events, pipeline);
        for (i, cutoff) in cutoffs.iter().enumerate() {
            let table = EventsTable::new(self.store.clone(), tenant, url.clone()).as_of(*cutoff);
            ctx.register_table(format!("{}{i}", as_of::AS_OF_TABLE_PREFIX), Arc::new(table))?;
        }
        ctx.register_udf(ScalarUDF::new_from_impl(utc_date_trunc::UtcDateTrunc::new()));
        ctx.register_udaf(AggregateUDF::new_from_impl(json_merge::JsonMergeAgg::new()));
        ctx.register_udf(ScalarUDF::new_from_impl(entity_state::EntityState::new(
            self.store.clone(),
            tenant,
        )));
        self.register_system_tables(&ctx).await?;
        if let Some(extra) = &self.extra {
            for (name, table) in extra.tables(tenant) {
                if TABLES.contains(&name.as_str()) {
                    continue;
                }
                ctx.register_table(name.as_str(), table)?;
            }
        }
        Ok(ctx)
    }

    async fn register_system_tables(&self, ctx: &SessionContext) -> datafusion::error::Result<()> {
        let streams = ctx
            .sql(
                "SELECT entity_id, MAX(version) AS version, MIN(timestamp) AS first_timestamp, \
                 MAX(timestamp) AS last_timestamp, COUNT(*) AS event_count \
                 FROM events GROUP BY entity_id",
            )
            .await?;
        ctx.register_table("streams", streams.into_view())?;
        let stats = self.store.stats();
        let manifest = self.store.manifest();
        let partitions = system_table(
            &[
                ("partition", DataType::UInt16),
                ("events", DataType::UInt64),
                ("buffered_events", DataType::UInt64),
                ("buffer_bytes", DataType::UInt64),
                ("flushed_offset", DataType::UInt64),
                ("files", DataType::UInt64),
            ],
            stats
                .partition_stats
                .iter()
                .map(|p| {
                    let flushed = manifest.next_offsets[usize::from(p.partition)];
                    let files = manifest.partition_files(p.partition).len() as u64;
                    vec![
                        u64::from(p.partition).to_string(),
                        p.events.to_string(),
                        p.buffered_events.to_string(),
                        p.buffer_bytes.to_string(),
                        flushed.to_string(),
                        files.to_string(),
                    ]
                })
                .collect(),
        )?;
        ctx.register_table("partitions", partitions)?;
        let files = system_table(
            &[
                ("path", DataType::Utf8),
                ("partition", DataType::UInt16),
                ("first_offset", DataType::UInt64),
                ("end_offset", DataType::UInt64),
                ("first_position", DataType::UInt64),
                ("last_position", DataType::UInt64),
                ("rows", DataType::UInt64),
                ("bytes", DataType::UInt64),
            ],
            manifest
                .files
                .iter()
                .map(|f| {
                    vec![
                        f.path.clone(),
                        f.partition.to_string(),
                        f.first_offset.to_string(),
                        f.end_offset.to_string(),
                        f.first_position.to_string(),
                        f.last_position.to_string(),
                        f.rows().to_string(),
                        f.bytes.to_string(),
                    ]
                })
                .collect(),
        )?;
        ctx.register_table("files", files)?;
        Ok(())
    }
}

/// The window table functions (`TUMBLE`, `HOP`, `SESSION`) over `events`; for a
/// pipeline's query when `pipeline` is given.
pub fn register_windows(
    ctx: &SessionContext,
    events: &Arc<dyn TableProvider>,
    pipeline: Option<&windows::WindowCalls>,
) {
    for kind in windows::WindowKind::ALL {
        let function = Arc::new(match pipeline {
            None => windows::WindowFunction::new(kind, Arc::clone(events)),
            Some(calls) => {
                windows::WindowFunction::for_pipeline(kind, Arc::clone(events), calls.clone())
            }
        });
        // Table function names are looked up as written.
        ctx.register_udtf(kind.name(), Arc::clone(&function) as _);
        ctx.register_udtf(&kind.name().to_uppercase(), function);
    }
}

/// A small in-memory table from text cells, each column cast to its type.
fn system_table(
    columns: &[(&str, DataType)],
    rows: Vec<Vec<String>>,
) -> datafusion::error::Result<Arc<MemTable>> {
    use arrow::array::{ArrayRef, StringArray};
    use arrow::datatypes::{Field, Schema};
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, kind)| Field::new(*name, kind.clone(), false))
            .collect::<Vec<_>>(),
    ));
    let arrays = columns
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| {
            let text: ArrayRef = Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r[i].as_str()),
            ));
            arrow::compute::cast(&text, kind)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let batch = RecordBatch::try_new(Arc::clone(&schema), arrays)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// Turn JSON union columns of the result into JSON text.
fn text_for_json(frame: DataFrame) -> datafusion::error::Result<DataFrame> {
    let fields = frame.schema().fields().clone();
    if !fields
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Union(..)))
    {
        return Ok(frame);
    }
    let to_text = datafusion_functions_json::udfs::json_union_to_text_udf();
    let columns = frame
        .schema()
        .columns()
        .into_iter()
        .zip(fields.iter())
        .map(|(column, field)| match field.data_type() {
            DataType::Union(..) => to_text.call(vec![col(column.clone())]).alias(field.name()),
            _ => col(column),
        })
        .collect::<Vec<_>>();
    frame.select(columns)
}

/// The result of [`EventQl::query_stream`]: its schema, then its batches as they are
/// computed. An error ends the stream.
#[derive(Debug)]
pub struct QueryStream {
    schema: arrow::datatypes::SchemaRef,
    batches: tokio::sync::mpsc::Receiver<Result<RecordBatch, QueryError>>,
}

impl QueryStream {
    /// Batches computed ahead of the reader.
    const AHEAD_BATCHES: usize = 4;

    /// The result's schema.
    pub fn schema(&self) -> &arrow::datatypes::SchemaRef {
        &self.schema
    }

    /// The next batch; `None` at the end.
    pub async fn next(&mut self) -> Option<Result<RecordBatch, QueryError>> {
        self.batches.recv().await
    }
}
