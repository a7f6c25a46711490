//! `FeedExec`: a leaf whose every run reads its rows anew from a [`RowSource`].
//!
//! A pipeline's plans read their input this way, from a [`Feed`]: the physical plan
//! is built once and run once per input batch: the pipeline puts the batch in the
//! feed, runs the plan to its end, and reads every output of that batch before the
//! watermark moves. So the rows of a batch and the watermark after it never cross,
//! whatever operators the plan holds.
//!
//! Pipeline results are read the same way ([`crate::registry`]): a query planned
//! once, such as a pipeline joining another pipeline's table, sees that table as it
//! is when each run starts, not as it was when the query was planned.

use std::fmt;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, project_schema};
use datafusion::datasource::TableType;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use parking_lot::Mutex;

/// Where a [`FeedExec`] takes its rows from, each time it runs.
pub trait RowSource: fmt::Debug + Send + Sync {
    /// The rows now.
    fn rows(&self) -> Result<Vec<RecordBatch>>;

    /// The pipeline table it reads, if it reads one. Such rows change between two
    /// runs of a plan by more than the plan's own pipeline's doing: a plan reading
    /// them is reset before each run, so that operators that keep what they read (a
    /// join's build side) read it again.
    fn table(&self) -> Option<&str> {
        None
    }
}

/// The batches the next run of a plan reads.
#[derive(Debug, Default)]
pub struct Feed {
    batches: Mutex<Vec<RecordBatch>>,
}

impl Feed {
    /// Make `batches` the input of the next run.
    pub fn set(&self, batches: Vec<RecordBatch>) {
        *self.batches.lock() = batches;
    }
}

impl RowSource for Feed {
    fn rows(&self) -> Result<Vec<RecordBatch>> {
        Ok(self.batches.lock().clone())
    }
}

/// A table whose every scan reads a [`RowSource`]: how `events` looks to a
/// pipeline's query (reading its [`Feed`]), and how pipeline results look to queries.
#[derive(Debug)]
pub struct FeedTable {
    schema: SchemaRef,
    source: Arc<dyn RowSource>,
}

impl FeedTable {
    /// A table of `schema` reading `source`.
    pub fn new(schema: SchemaRef, source: Arc<dyn RowSource>) -> Self {
        Self { schema, source }
    }
}

#[async_trait]
impl TableProvider for FeedTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = project_schema(&self.schema, projection)?;
        Ok(Arc::new(FeedExec::new(
            schema,
            projection.cloned(),
            Arc::clone(&self.source),
        )))
    }
}

/// Yields its source's batches (their `projection` columns) in one partition.
#[derive(Debug)]
pub struct FeedExec {
    schema: SchemaRef,
    projection: Option<Vec<usize>>,
    source: Arc<dyn RowSource>,
    properties: Arc<PlanProperties>,
}

impl FeedExec {
    /// A leaf reading `source`, with output `schema` (the source's batches projected
    /// to `projection`).
    pub fn new(
        schema: SchemaRef,
        projection: Option<Vec<usize>>,
        source: Arc<dyn RowSource>,
    ) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            schema,
            projection,
            source,
            properties: Arc::new(properties),
        }
    }

    /// The pipeline table it reads, if any ([`RowSource::table`]).
    pub fn table(&self) -> Option<&str> {
        self.source.table()
    }

    /// Whether it reads `source`.
    pub fn reads(&self, source: &Arc<dyn RowSource>) -> bool {
        Arc::ptr_eq(&self.source, source)
    }
}

impl DisplayAs for FeedExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "FeedExec")
    }
}

impl ExecutionPlan for FeedExec {
    fn name(&self) -> &'static str {
        "FeedExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let rows = self.source.rows()?;
        let batches = match &self.projection {
            None => rows,
            Some(columns) => rows
                .iter()
                .map(|b| b.project(columns))
                .collect::<Result<_, _>>()?,
        };
        Ok(Box::pin(MemoryStream::try_new(
            batches,
            Arc::clone(&self.schema),
            None,
        )?))
    }
}
