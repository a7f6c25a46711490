//! `LogSourceExec`: one tenant's events from a log position onwards, as an unbounded
//! DataFusion stream. The source every pipeline reads.
//!
//! Input: none (a leaf). Output: one partition of `events`-schema batches in log
//! position order, never ending while the store is open: history first, then each
//! commit as it becomes visible. Each batch covers a range of positions; it is
//! assembled partition by partition (rows of each log partition from its Parquet
//! files below the flushed position and from the Arrow buffer above it, read by the
//! same position cursor, so there is no gap or duplicate at the seam) and sorted into
//! log order. The stream ends when the store closes; a WAL failure is an error.
//!
//! The log's total order is what a pipeline's watermark and checkpoints are defined
//! over (one position says where it is), which is why the log's partitions are merged
//! into one output partition rather than exposed as several.
//!
//! [`LogSourceExec::progress`] tells the stream's position (every event before it
//! has been yielded) and lag, for checkpoints and catch-up, while the stream is being
//! read elsewhere.

use std::fmt;
use std::sync::Arc;

use allsource_engine::{
    Error as StoreError, EventStore, SubscriptionFilter, SubscriptionProgress, event_schema,
    events_to_batch,
};
use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use parking_lot::Mutex;

/// The log of `tenant` from `from`, as an unbounded plan leaf.
pub struct LogSourceExec {
    store: EventStore,
    tenant: String,
    from: u64,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    /// Set once the plan runs.
    progress: Mutex<Option<SubscriptionProgress>>,
}

impl fmt::Debug for LogSourceExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogSourceExec")
            .field("tenant", &self.tenant)
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl LogSourceExec {
    /// The events of `tenant` in `store`, from log position `from`.
    pub fn new(store: EventStore, tenant: &str, from: u64) -> Self {
        let schema = event_schema();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Unbounded {
                requires_infinite_memory: false,
            },
        );
        Self {
            store,
            tenant: tenant.to_string(),
            from,
            schema,
            properties: Arc::new(properties),
            progress: Mutex::new(None),
        }
    }

    /// Where the running stream is: its position and lag. `None` before the plan
    /// runs.
    pub fn progress(&self) -> Option<SubscriptionProgress> {
        self.progress.lock().clone()
    }
}

impl DisplayAs for LogSourceExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "LogSourceExec: tenant={}, from={}",
            self.tenant, self.from
        )
    }
}

impl ExecutionPlan for LogSourceExec {
    fn name(&self) -> &'static str {
        "LogSourceExec"
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
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "LogSourceExec has one partition, not {partition}"
            )));
        }
        let subscription = self
            .store
            .subscribe(&self.tenant, self.from, SubscriptionFilter::all());
        *self.progress.lock() = Some(subscription.progress());
        let schema = Arc::clone(&self.schema);
        let batches = futures::stream::unfold(Some(subscription), move |state| {
            let schema = Arc::clone(&schema);
            async move {
                let mut subscription = state?;
                match subscription.next_batch().await {
                    Ok(events) => {
                        let refs: Vec<_> = events.iter().collect();
                        let batch = events_to_batch(&schema, &refs)
                            .map_err(|e| DataFusionError::External(Box::new(e)));
                        Some((batch, Some(subscription)))
                    }
                    Err(StoreError::Closed) => None,
                    Err(e) => Some((Err(DataFusionError::External(Box::new(e))), None)),
                }
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            batches,
        )))
    }
}
