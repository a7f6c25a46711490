//! `FeedExec`: the leaf a pipeline's plans read from, yielding whatever batches the
//! pipeline placed in its [`Feed`] for this run of the plan.
//!
//! A pipeline's physical plan is built once and run once per input batch: the
//! pipeline puts the batch in the feed, runs the plan to its end, and reads every
//! output of that batch before the watermark moves. So the rows of a batch and the
//! watermark after it never cross, whatever operators the plan holds.

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

    fn current(&self) -> Vec<RecordBatch> {
        self.batches.lock().clone()
    }
}

/// A table whose every scan reads the feed: how `events` looks to a pipeline's query.
#[derive(Debug)]
pub struct FeedTable {
    schema: SchemaRef,
    feed: Arc<Feed>,
}

impl FeedTable {
    /// A table of `schema` reading `feed`.
    pub fn new(schema: SchemaRef, feed: Arc<Feed>) -> Self {
        Self { schema, feed }
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
            Arc::clone(&self.feed),
        )))
    }
}

/// Yields the feed's batches (their `projection` columns) in one partition.
#[derive(Debug)]
pub struct FeedExec {
    schema: SchemaRef,
    projection: Option<Vec<usize>>,
    feed: Arc<Feed>,
    properties: Arc<PlanProperties>,
}

impl FeedExec {
    /// A leaf reading `feed`, with output `schema` (the feed's batches projected to
    /// `projection`).
    pub fn new(schema: SchemaRef, projection: Option<Vec<usize>>, feed: Arc<Feed>) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            schema,
            projection,
            feed,
            properties: Arc::new(properties),
        }
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
        let batches = match &self.projection {
            None => self.feed.current(),
            Some(columns) => self
                .feed
                .current()
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
