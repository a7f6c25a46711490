//! `Pipeline`: a continuous EventQL query, compiled once into DataFusion physical
//! plans and run over the log batch by batch.
//!
//! ```text
//!  source batch (events, log order)
//!      │ Watermark: drop (and count) late events, advance event time
//!      ▼
//!  Feed ─► pre plan: the query below its GROUP BY (window views, filters, JSON
//!      │   operators, projections — DataFusion's own operators)
//!      ▼
//!  WindowAggregate: accumulate per (window, keys); emit windows the watermark passed
//!      │
//!      ▼
//!  Feed ─► post plan: the query above its GROUP BY (HAVING, SELECT list, ORDER BY)
//!      ▼
//!  results
//! ```
//!
//! A query without `GROUP BY` is all pre plan: each batch's rows go straight out. A
//! query with one must group by `window_start` and `window_end` of a window function,
//! so that each result is final once emitted.

use std::sync::Arc;

use allsource_engine::event_schema;
use allsource_sql::EventQl;
use arrow::array::RecordBatch;
use arrow::compute::filter_record_batch;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::{ExecutionPlan, collect};

use crate::error::{Error, Result};
use crate::feed::{Feed, FeedExec, FeedTable};
use crate::watermark::Watermark;
use crate::window_aggregate::WindowAggregate;

/// How a pipeline treats event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PipelineOptions {
    /// How far behind the newest event time an event may arrive and still count
    /// (bounded out-of-orderness), in microseconds. Default 0.
    pub allowed_lateness_micros: i64,
    /// How far past its ingestion time an event's time may move the watermark, in
    /// microseconds. Default one minute.
    pub max_future_skew_micros: i64,
    /// What becomes of late events. Default: dropped and counted.
    pub late_data: LateData,
}

/// What becomes of late events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LateData {
    /// Dropped and counted.
    #[default]
    Drop,
    /// Counted and kept for [`Pipeline::take_late_events`].
    Keep,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            allowed_lateness_micros: 0,
            max_future_skew_micros: 60_000_000,
            late_data: LateData::Drop,
        }
    }
}

/// Counters of one pipeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PipelineStats {
    /// Source events taken in.
    pub events_in: u64,
    /// Source events dropped as late.
    pub late_events: u64,
    /// Result rows emitted.
    pub rows_out: u64,
}

/// A compiled pipeline and its running state.
pub struct Pipeline {
    time_column: String,
    feed: Arc<Feed>,
    pre: Arc<dyn ExecutionPlan>,
    windows: Option<Windows>,
    task: Arc<TaskContext>,
    watermark: Watermark,
    stats: PipelineStats,
    late_data: LateData,
    late: Vec<RecordBatch>,
}

/// The grouped part of a windowed pipeline.
struct Windows {
    aggregate: WindowAggregate,
    feed: Arc<Feed>,
    post: Arc<dyn ExecutionPlan>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("watermark", &self.watermark)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Compile `sql` (a `SELECT` over `events` or a window function of it) for
    /// `tenant`.
    pub async fn compile(
        eventql: &EventQl,
        tenant: &str,
        sql: &str,
        options: PipelineOptions,
    ) -> Result<Self> {
        let feed = Arc::new(Feed::default());
        let source = Arc::new(FeedTable::new(event_schema(), Arc::clone(&feed)));
        let frame = eventql.plan_pipeline(tenant, sql, source).await?;
        let task = frame.task_ctx();
        let plan = frame.create_physical_plan().await?;
        let watermark = Watermark::new(
            options.allowed_lateness_micros,
            options.max_future_skew_micros,
        );
        let mut pipeline = Self {
            time_column: "timestamp".into(),
            feed,
            pre: Arc::clone(&plan),
            windows: None,
            task: Arc::new(task),
            watermark,
            stats: PipelineStats::default(),
            late_data: options.late_data,
            late: Vec::new(),
        };
        let Some(top) = topmost_aggregate(&plan) else {
            return Ok(pipeline);
        };
        let grouped = match top.mode() {
            AggregateMode::Final | AggregateMode::FinalPartitioned => partial_below(top.input())
                .ok_or_else(|| {
                    Error::Internal("a final aggregate without its partial one".into())
                })?,
            _ => top,
        };
        if topmost_aggregate(grouped.input()).is_some() {
            return Err(Error::Invalid(
                "a pipeline may group only once (no GROUP BY or DISTINCT below another)".into(),
            ));
        }
        if grouped.group_expr().has_grouping_set()
            || grouped.filter_expr().iter().any(Option::is_some)
        {
            return Err(Error::Invalid(
                "a pipeline's aggregates take no GROUPING SETS and no FILTER clause".into(),
            ));
        }
        let input_schema = grouped.input().schema();
        let keys: Vec<_> = grouped
            .group_expr()
            .expr()
            .iter()
            .map(|(e, _)| Arc::clone(e))
            .collect();
        let named = |name: &str| {
            keys.iter().position(|k| {
                k.downcast_ref::<Column>()
                    .is_some_and(|c| input_schema.field(c.index()).name() == name)
            })
        };
        let (Some(_), Some(window_end)) = (named("window_start"), named("window_end")) else {
            return Err(Error::Invalid(
                "a pipeline's GROUP BY must include window_start and window_end, from \
                 TUMBLE(events, timestamp, size) or HOP(events, timestamp, slide, size)"
                    .into(),
            ));
        };
        let aggregate = WindowAggregate::new(
            keys,
            window_end,
            grouped.aggr_expr().to_vec(),
            &input_schema,
            top.schema(),
        )?;
        let post_feed = Arc::new(Feed::default());
        let replacement: Arc<dyn ExecutionPlan> =
            Arc::new(FeedExec::new(top.schema(), None, Arc::clone(&post_feed)));
        let post = replace(&plan, std::ptr::from_ref(top).cast(), &replacement)?;
        pipeline.pre = Arc::clone(grouped.input());
        pipeline.windows = Some(Windows {
            aggregate,
            feed: post_feed,
            post,
        });
        Ok(pipeline)
    }

    /// The schema of the pipeline's results.
    pub fn schema(&self) -> arrow::datatypes::SchemaRef {
        match &self.windows {
            Some(windows) => windows.post.schema(),
            None => self.pre.schema(),
        }
    }

    /// The watermark: every window ending at or before it has been emitted.
    pub fn watermark(&self) -> Option<i64> {
        self.watermark.current()
    }

    /// The pipeline's counters.
    pub fn stats(&self) -> PipelineStats {
        self.stats
    }

    /// Take the next source events (the pipeline's tenant's events, in log order)
    /// and return the results they complete.
    pub async fn process(&mut self, events: &RecordBatch) -> Result<Vec<RecordBatch>> {
        let on_time = self.watermark.observe(events, &self.time_column)?;
        self.stats.events_in += events.num_rows() as u64;
        self.stats.late_events += on_time.false_count() as u64;
        let events = if on_time.false_count() == 0 {
            events.clone()
        } else {
            if self.late_data == LateData::Keep {
                let late = arrow::compute::not(&on_time)?;
                self.late.push(filter_record_batch(events, &late)?);
            }
            filter_record_batch(events, &on_time)?
        };
        self.feed.set(vec![events]);
        let rows = collect(Arc::clone(&self.pre), Arc::clone(&self.task)).await?;
        let out = match &mut self.windows {
            None => rows,
            Some(windows) => {
                for batch in &rows {
                    windows.aggregate.update(batch)?;
                }
                let watermark = self.watermark.current();
                match watermark {
                    None => Vec::new(),
                    Some(w) => self.finish_windows(Some(w)).await?,
                }
            }
        };
        Ok(out)
    }

    /// The late events kept since the last call ([`LateData::Keep`]).
    pub fn take_late_events(&mut self) -> Vec<RecordBatch> {
        std::mem::take(&mut self.late)
    }

    /// Emit every open window, as at the end of the input.
    pub async fn finish(&mut self) -> Result<Vec<RecordBatch>> {
        self.finish_windows(None).await
    }

    async fn finish_windows(&mut self, watermark: Option<i64>) -> Result<Vec<RecordBatch>> {
        let Some(windows) = &mut self.windows else {
            return Ok(Vec::new());
        };
        let Some(closed) = windows.aggregate.emit(watermark)? else {
            return Ok(Vec::new());
        };
        windows.feed.set(vec![closed]);
        let out = collect(Arc::clone(&windows.post), Arc::clone(&self.task)).await?;
        self.stats.rows_out += out.iter().map(|b| b.num_rows() as u64).sum::<u64>();
        Ok(out)
    }
}

/// The first aggregate met walking down from `plan`.
fn topmost_aggregate(plan: &Arc<dyn ExecutionPlan>) -> Option<&AggregateExec> {
    if let Some(aggregate) = plan.downcast_ref::<AggregateExec>() {
        return Some(aggregate);
    }
    plan.children().into_iter().find_map(topmost_aggregate)
}

/// The partial aggregate feeding a final one (through exchanges).
fn partial_below(plan: &Arc<dyn ExecutionPlan>) -> Option<&AggregateExec> {
    let aggregate = topmost_aggregate(plan)?;
    matches!(aggregate.mode(), AggregateMode::Partial).then_some(aggregate)
}

/// `plan` with the node at `target` replaced by `replacement`.
fn replace(
    plan: &Arc<dyn ExecutionPlan>,
    target: *const (),
    replacement: &Arc<dyn ExecutionPlan>,
) -> Result<Arc<dyn ExecutionPlan>> {
    if Arc::as_ptr(plan) as *const () == target {
        return Ok(Arc::clone(replacement));
    }
    let children = plan.children();
    if children.is_empty() {
        return Ok(Arc::clone(plan));
    }
    let children = children
        .into_iter()
        .map(|c| replace(c, target, replacement))
        .collect::<Result<Vec<_>>>()?;
    Ok(replace_children_if_necessary(Arc::clone(plan), children)?)
}
