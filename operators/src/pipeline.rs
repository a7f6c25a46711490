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
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::{replace_children_if_necessary, reset_plan_states};
use datafusion::physical_plan::{ExecutionPlan, collect};

use allsource_sql::windows::WindowCall;

use crate::admission::{self, SourceKey};
use crate::branch::BranchSpec;
use crate::dedupe::Dedupe;
use crate::error::{Error, Result};
use crate::feed::{Feed, FeedExec, FeedTable, RowSource};
use crate::running_aggregate::RunningAggregate;
use crate::session_aggregate::SessionAggregate;
use crate::stream_join::StreamJoin;
use crate::throttle::Throttle;
use crate::watermark::Watermark;
use crate::window_aggregate::WindowAggregate;

/// How a pipeline treats event time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// How often a running pipeline writes a checkpoint, in microseconds. Default
    /// one second; 0 checkpoints after every input batch.
    pub checkpoint_interval_micros: i64,
    /// Drop repeated source events ([`crate::dedupe`]).
    pub dedupe: Option<DedupeOptions>,
    /// Let at most so many source events per key through per interval
    /// ([`crate::throttle`]).
    pub throttle: Option<ThrottleOptions>,
    /// Tables the result rows are routed to by condition ([`crate::branch`]).
    pub branches: Vec<BranchSpec>,
}

/// `WITH (dedupe_on = 'order_id', dedupe_within = '10m')`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DedupeOptions {
    /// The key: a column of `events` or a payload field.
    pub on: String,
    /// The bound, in microseconds of event time.
    pub within_micros: i64,
}

/// `WITH (throttle_on = 'entity_id', throttle = '100/1s')`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ThrottleOptions {
    /// The key: a column of `events` or a payload field.
    pub on: String,
    /// Most events per key and interval.
    pub limit: u64,
    /// The interval, in microseconds of event time.
    pub per_micros: i64,
}

impl Default for ThrottleOptions {
    fn default() -> Self {
        Self {
            on: "entity_id".into(),
            limit: 0,
            per_micros: 0,
        }
    }
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
            checkpoint_interval_micros: 1_000_000,
            dedupe: None,
            throttle: None,
            branches: Vec::new(),
        }
    }
}

/// Counters of one pipeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PipelineStats {
    /// Source events taken in.
    pub events_in: u64,
    /// Source events dropped as late.
    pub late_events: u64,
    /// Result rows emitted.
    pub rows_out: u64,
    /// Groups (window and keys) open, waiting for the watermark.
    pub open_groups: u64,
    /// Source events dropped as repeats.
    pub deduplicated: u64,
    /// Source events dropped by the throttle.
    pub throttled: u64,
    /// Rows the two sides of a join of the events with themselves keep.
    pub join_rows: u64,
}

/// A compiled pipeline and its running state.
pub struct Pipeline {
    time_column: String,
    feed: Arc<Feed>,
    pre: Plan,
    windows: Option<Windows>,
    task: Arc<TaskContext>,
    watermark: Watermark,
    stats: PipelineStats,
    late_data: LateData,
    late: Vec<RecordBatch>,
    /// The column a running pipeline groups by, when it groups by one column.
    key_name: Option<String>,
    dedupe: Option<Dedupe>,
    throttle: Option<Throttle>,
}

/// The grouped part of a windowed pipeline.
struct Windows {
    aggregate: Grouping,
    feed: Arc<Feed>,
    post: Plan,
}

/// A physical plan run once per input batch.
struct Plan {
    exec: Arc<dyn ExecutionPlan>,
    /// The pipeline tables it reads. Their rows change on their own, so a plan
    /// reading one is reset before each run: a join then reads that table as it is
    /// now, not as it was at the first run.
    tables: Vec<String>,
    /// A join of the events with the events, run before `exec` (which reads its new
    /// rows where the join was).
    join: Option<StreamJoin>,
}

impl Plan {
    /// `exec` as a plan; `events`, the pipeline's input when the plan reads it, so
    /// that a join of the events with themselves runs incrementally.
    fn new(exec: Arc<dyn ExecutionPlan>, events: Option<&Arc<dyn RowSource>>) -> Result<Self> {
        let mut tables = Vec::new();
        let mut pending = vec![Arc::clone(&exec)];
        while let Some(node) = pending.pop() {
            if let Some(table) = node.downcast_ref::<FeedExec>().and_then(FeedExec::table) {
                tables.push(table.to_string());
            }
            pending.extend(node.children().into_iter().cloned());
        }
        let found = match events {
            Some(events) => StreamJoin::find(&exec, events)?,
            None => None,
        };
        let (exec, join) = match found {
            Some((join, target)) => (replace(&exec, target, &join.leaf)?, Some(join)),
            None => (exec, None),
        };
        Ok(Self { exec, tables, join })
    }

    /// Run it to its end.
    async fn run(&mut self, task: &Arc<TaskContext>) -> Result<Vec<RecordBatch>> {
        if let Some(join) = &mut self.join {
            join.step(task).await?;
        }
        if !self.tables.is_empty() {
            self.exec = reset_plan_states(Arc::clone(&self.exec))?;
        }
        Ok(collect(Arc::clone(&self.exec), Arc::clone(task)).await?)
    }
}

/// The aggregate operator of a windowed pipeline.
enum Grouping {
    /// `TUMBLE` or `HOP` windows.
    Fixed(WindowAggregate),
    /// `SESSION` windows.
    Session(SessionAggregate),
    /// No windows: totals per key, updated as events arrive.
    Running(RunningAggregate),
}

/// A pipeline's state between two input batches: what a checkpoint keeps of it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Event-time progress.
    pub watermark: Watermark,
    /// Counters.
    pub stats: PipelineStats,
    /// The open windows' groups, a row each ([`crate::state`]); `None` for a
    /// pipeline without `GROUP BY`.
    pub groups: Option<RecordBatch>,
    /// The source operators' state ([`crate::admission`]), when it has them.
    pub admission: Option<RecordBatch>,
    /// The rows the two sides of a join of the events with themselves keep
    /// ([`crate::stream_join`]), left then right.
    pub join: Option<[RecordBatch; 2]>,
}

impl Grouping {
    fn snapshot(&mut self) -> Result<RecordBatch> {
        match self {
            Grouping::Fixed(a) => a.snapshot(),
            Grouping::Session(a) => a.snapshot(),
            Grouping::Running(a) => a.snapshot(),
        }
    }

    fn restore(&mut self, snapshot: &RecordBatch) -> Result<()> {
        match self {
            Grouping::Fixed(a) => a.restore(snapshot),
            Grouping::Session(a) => a.restore(snapshot),
            Grouping::Running(a) => a.restore(snapshot),
        }
    }

    /// Add rows; the rows that changed, for a running aggregate.
    fn update(&mut self, batch: &RecordBatch) -> Result<Option<RecordBatch>> {
        match self {
            Grouping::Fixed(a) => a.update(batch).map(|()| None),
            Grouping::Session(a) => a.update(batch).map(|()| None),
            Grouping::Running(a) => a.update(batch),
        }
    }

    fn emit(&mut self, watermark: Option<i64>) -> Result<Option<RecordBatch>> {
        match self {
            Grouping::Fixed(a) => a.emit(watermark),
            Grouping::Session(a) => a.emit(watermark),
            Grouping::Running(_) => Ok(None),
        }
    }

    fn open_groups(&self) -> usize {
        match self {
            Grouping::Fixed(a) => a.open_groups(),
            Grouping::Session(a) => a.open_groups(),
            Grouping::Running(a) => a.open_groups(),
        }
    }
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
        let events = Arc::clone(&feed) as Arc<dyn RowSource>;
        let source = Arc::new(FeedTable::new(event_schema(), Arc::clone(&events)));
        let (frame, calls) = eventql.plan_pipeline(tenant, sql, source).await?;
        let time_column = time_column(&calls)?;
        let session = session_partition(&calls)?;
        let written = frame.logical_plan().clone();
        let task = frame.task_ctx();
        let plan = frame.create_physical_plan().await?;
        let watermark = Watermark::new(
            options.allowed_lateness_micros,
            options.max_future_skew_micros,
        );
        let (dedupe, throttle) = source_operators(&options)?;
        let mut pipeline = Self {
            time_column: time_column.clone(),
            pre: Plan::new(Arc::clone(&plan), Some(&events))?,
            feed,
            windows: None,
            task: Arc::new(task),
            watermark,
            stats: PipelineStats::default(),
            late_data: options.late_data,
            late: Vec::new(),
            key_name: None,
            dedupe,
            throttle,
        };
        let Some(top) = topmost_aggregate(&plan) else {
            if session.is_some() {
                return Err(Error::Invalid(
                    "a pipeline over SESSION must GROUP BY window_start, window_end and the \
                     session's partition columns"
                        .into(),
                ));
            }
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
        let windowed = (named("window_start"), named("window_end"));
        if calls.is_empty() && windowed == (None, None) {
            // No window function: totals per key, kept up to date.
            let key_name = match keys.as_slice() {
                [key] => key
                    .downcast_ref::<Column>()
                    .map(|c| input_schema.field(c.index()).name().clone()),
                _ => None,
            };
            pipeline.key_name = key_name;
            let aggregate = Grouping::Running(RunningAggregate::new(
                keys,
                grouped.aggr_expr().to_vec(),
                &input_schema,
                top.schema(),
            )?);
            return pipeline.with_grouping(&plan, top, grouped, aggregate);
        }
        let (Some(window_start), Some(window_end)) = windowed else {
            return Err(Error::Invalid(
                "a pipeline's GROUP BY must include window_start and window_end, from \
                 TUMBLE(events, timestamp, size), HOP(events, timestamp, slide, size) or \
                 SESSION(events, timestamp, gap [, partition_column ...])"
                    .into(),
            ));
        };
        let aggregate = match session {
            None => Grouping::Fixed(WindowAggregate::new(
                keys,
                window_end,
                grouped.aggr_expr().to_vec(),
                &input_schema,
                top.schema(),
            )?),
            Some((gap, partition)) => {
                let mut grouped_by: Vec<String> = Vec::new();
                for (i, key) in keys.iter().enumerate() {
                    if i == window_start || i == window_end {
                        continue;
                    }
                    match key.downcast_ref::<Column>() {
                        Some(c) => grouped_by.push(input_schema.field(c.index()).name().clone()),
                        None => grouped_by.push(key.to_string()),
                    }
                }
                let (mut want, mut have) = (partition.clone(), grouped_by.clone());
                want.sort_unstable();
                have.sort_unstable();
                if want != have {
                    return Err(Error::Invalid(format!(
                        "a pipeline over SESSION groups by window_start, window_end and \
                         exactly the session's partition columns ({}), not {}",
                        list(&partition),
                        list(&grouped_by)
                    )));
                }
                let source = event_schema();
                for (name, key) in grouped_by.iter().zip(
                    keys.iter()
                        .enumerate()
                        .filter(|(i, _)| *i != window_start && *i != window_end),
                ) {
                    let Ok(field) = source.field_with_name(name) else {
                        return Err(Error::Invalid(format!(
                            "a SESSION partition column must be a column of events, not {name}"
                        )));
                    };
                    if &key.1.data_type(&input_schema)? != field.data_type() {
                        return Err(Error::Invalid(format!(
                            "the pipeline groups by {name} changed from the events column"
                        )));
                    }
                }
                if let Some(column) = filtered_window(&written, false) {
                    return Err(Error::Invalid(format!(
                        "a pipeline over SESSION cannot filter on {column} before its \
                         GROUP BY, where each event is still in a window of its own; \
                         filter sessions in HAVING"
                    )));
                }
                Grouping::Session(SessionAggregate::new(
                    keys,
                    window_start,
                    window_end,
                    grouped_by,
                    &time_column,
                    gap,
                    grouped.aggr_expr().to_vec(),
                    &input_schema,
                    top.schema(),
                )?)
            }
        };
        pipeline.with_grouping(&plan, top, grouped, aggregate)
    }

    /// This pipeline cut at `top` (the topmost aggregate of `plan`; `grouped` the
    /// one that groups its input): `aggregate` in place of both, the plan below
    /// `grouped` before it, the plan above `top` after it.
    fn with_grouping(
        mut self,
        plan: &Arc<dyn ExecutionPlan>,
        top: &AggregateExec,
        grouped: &AggregateExec,
        aggregate: Grouping,
    ) -> Result<Self> {
        let post_feed = Arc::new(Feed::default());
        let replacement: Arc<dyn ExecutionPlan> = Arc::new(FeedExec::new(
            top.schema(),
            None,
            Arc::clone(&post_feed) as _,
        ));
        let post = Plan::new(
            replace(plan, std::ptr::from_ref(top).cast(), &replacement)?,
            None,
        )?;
        let events = Arc::clone(&self.feed) as Arc<dyn RowSource>;
        self.pre = Plan::new(Arc::clone(grouped.input()), Some(&events))?;
        self.windows = Some(Windows {
            aggregate,
            feed: post_feed,
            post,
        });
        Ok(self)
    }

    /// The schema of the pipeline's results.
    pub fn schema(&self) -> arrow::datatypes::SchemaRef {
        match &self.windows {
            Some(windows) => windows.post.exec.schema(),
            None => self.pre.exec.schema(),
        }
    }

    /// The pipeline tables its query reads (joins with other pipelines' results).
    pub fn reads(&self) -> Vec<String> {
        let mut tables = self.pre.tables.clone();
        if let Some(windows) = &self.windows {
            tables.extend(windows.post.tables.iter().cloned());
        }
        tables.sort_unstable();
        tables.dedup();
        tables
    }

    /// The watermark: every window ending at or before it has been emitted.
    pub fn watermark(&self) -> Option<i64> {
        self.watermark.current()
    }

    /// The pipeline's counters.
    pub fn stats(&self) -> PipelineStats {
        PipelineStats {
            open_groups: self
                .windows
                .as_ref()
                .map_or(0, |w| w.aggregate.open_groups() as u64),
            join_rows: self.pre.join.as_ref().map_or(0, |j| j.rows_kept() as u64),
            ..self.stats
        }
    }

    /// Take the next source events (the pipeline's tenant's events, in log order)
    /// and return the results they complete.
    pub async fn process(&mut self, events: &RecordBatch) -> Result<Vec<RecordBatch>> {
        let on_time = self.watermark.observe(events, &self.time_column)?;
        self.stats.events_in += events.num_rows() as u64;
        if self.is_running() {
            // Totals never close: every event counts, however late.
            let events = self.admit(events.clone())?;
            return self.process_running(&events).await;
        }
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
        let events = self.admit(events)?;
        if let Some(Windows {
            aggregate: Grouping::Session(sessions),
            ..
        }) = &mut self.windows
        {
            sessions.observe(&events)?;
        }
        self.feed.set(vec![events]);
        let rows = self.pre.run(&self.task).await?;
        let out = match &mut self.windows {
            None => {
                self.stats.rows_out += rows.iter().map(|b| b.num_rows() as u64).sum::<u64>();
                rows
            }
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

    /// The events of `events` the source operators (dedupe, then throttle) let
    /// through.
    fn admit(&mut self, mut events: RecordBatch) -> Result<RecordBatch> {
        if events.num_rows() == 0 {
            return Ok(events);
        }
        let watermark = self.watermark.current();
        if let Some(dedupe) = &mut self.dedupe {
            let (passed, dropped) = admission::pass(dedupe, &events, &self.time_column, watermark)?;
            self.stats.deduplicated += dropped;
            events = passed;
        }
        if let Some(throttle) = &mut self.throttle {
            let (passed, dropped) =
                admission::pass(throttle, &events, &self.time_column, watermark)?;
            self.stats.throttled += dropped;
            events = passed;
        }
        Ok(events)
    }

    /// Whether the pipeline keeps totals per key without windows: its results are then
    /// the current row of each key ([`Pipeline::current`]), replaced as events
    /// arrive, and [`Pipeline::process`] returns the rows that changed.
    pub fn is_running(&self) -> bool {
        matches!(
            self.windows,
            Some(Windows {
                aggregate: Grouping::Running(_),
                ..
            })
        )
    }

    async fn process_running(&mut self, events: &RecordBatch) -> Result<Vec<RecordBatch>> {
        self.feed.set(vec![events.clone()]);
        let rows = self.pre.run(&self.task).await?;
        let Some(windows) = &mut self.windows else {
            return Ok(Vec::new());
        };
        let mut changed = Vec::new();
        for batch in &rows {
            changed.extend(windows.aggregate.update(batch)?);
        }
        if changed.is_empty() {
            return Ok(Vec::new());
        }
        windows.feed.set(changed);
        let out = windows.post.run(&self.task).await?;
        self.stats.rows_out += out.iter().map(|b| b.num_rows() as u64).sum::<u64>();
        Ok(out)
    }

    /// A running pipeline's whole table now: the current row of every key (empty for
    /// other pipelines).
    pub async fn current(&mut self) -> Result<Vec<RecordBatch>> {
        let Some(Windows {
            aggregate: Grouping::Running(totals),
            feed,
            post,
        }) = &mut self.windows
        else {
            return Ok(Vec::new());
        };
        feed.set(vec![totals.current()?]);
        post.run(&self.task).await
    }

    /// The result column that keys a running pipeline's rows: the one column it
    /// groups by, when its results return it under its name. Such a pipeline can be
    /// read one key at a time ([`Pipeline::lookup`]).
    pub fn key_column(&self) -> Option<usize> {
        let name = self.key_name.as_ref()?;
        self.schema().index_of(name).ok()
    }

    /// The current result row of the key whose value reads as `key`, if there is
    /// one: for a pipeline with a [key column](Pipeline::key_column).
    pub async fn lookup(&mut self, key: &str) -> Result<Option<RecordBatch>> {
        let Some(column) = self.key_column() else {
            return Err(Error::Invalid(
                "only totals grouped by one column they return can be read by key".into(),
            ));
        };
        let Some(Windows {
            aggregate: Grouping::Running(totals),
            feed,
            post,
        }) = &mut self.windows
        else {
            return Ok(None);
        };
        let Some(row) = totals.row_of(key)? else {
            return Ok(None);
        };
        feed.set(vec![row]);
        let out = post.run(&self.task).await?;
        // HAVING may leave the key out; anything else returns its one row.
        let rows = arrow::compute::concat_batches(&self.schema(), &out)?;
        let found = rows.num_rows() > 0 && rows.column(column).is_valid(0);
        Ok(found.then(|| rows.slice(0, 1)))
    }

    /// The pipeline's state now, between two input batches.
    pub fn snapshot(&mut self) -> Result<Snapshot> {
        let groups = match &mut self.windows {
            Some(windows) => Some(windows.aggregate.snapshot()?),
            None => None,
        };
        let mut states = Vec::new();
        if let Some(dedupe) = &self.dedupe {
            states.push(dedupe.snapshot()?);
        }
        if let Some(throttle) = &self.throttle {
            states.push(throttle.snapshot()?);
        }
        let admission = (!states.is_empty())
            .then(|| arrow::compute::concat_batches(&admission::state_schema(), &states))
            .transpose()?;
        let join = self
            .pre
            .join
            .as_ref()
            .map(StreamJoin::snapshot)
            .transpose()?;
        Ok(Snapshot {
            watermark: self.watermark,
            stats: self.stats,
            groups,
            admission,
            join,
        })
    }

    /// Go back to `snapshot`, taken of a pipeline compiled from the same query and
    /// options. The input then goes on from where it was when the snapshot was taken.
    pub fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        match (&mut self.windows, &snapshot.groups) {
            (Some(windows), Some(groups)) => windows.aggregate.restore(groups)?,
            (None, None) => {}
            _ => {
                return Err(Error::Invalid(
                    "a checkpoint's state does not match the pipeline's operators".into(),
                ));
            }
        }
        match (&mut self.pre.join, &snapshot.join) {
            (Some(join), Some(sides)) => join.restore(sides)?,
            (None, None) => {}
            _ => {
                return Err(Error::Invalid(
                    "a checkpoint's join state does not match the pipeline's query".into(),
                ));
            }
        }
        if let Some(state) = &snapshot.admission {
            if let Some(dedupe) = &mut self.dedupe {
                dedupe.restore(state)?;
            }
            if let Some(throttle) = &mut self.throttle {
                throttle.restore(state)?;
            }
        }
        self.watermark = snapshot.watermark;
        self.stats = snapshot.stats;
        self.late.clear();
        Ok(())
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
        let out = windows.post.run(&self.task).await?;
        self.stats.rows_out += out.iter().map(|b| b.num_rows() as u64).sum::<u64>();
        Ok(out)
    }
}

/// The source operators `options` ask for, checked.
fn source_operators(options: &PipelineOptions) -> Result<(Option<Dedupe>, Option<Throttle>)> {
    let dedupe = match &options.dedupe {
        None => None,
        Some(d) if d.on.is_empty() || d.within_micros <= 0 => {
            return Err(Error::Invalid(
                "dedupe takes both dedupe_on (a key such as 'event_id' or 'order_id') and \
                 dedupe_within (a duration such as '10m')"
                    .into(),
            ));
        }
        Some(d) => Some(Dedupe::new(SourceKey::parse(&d.on)?, d.within_micros)),
    };
    let throttle = match &options.throttle {
        None => None,
        Some(t) if t.limit == 0 || t.per_micros <= 0 => {
            return Err(Error::Invalid(
                "throttle is a limit per interval such as '100/1s' (with throttle_on,                  entity_id by default)"
                    .into(),
            ));
        }
        Some(t) => Some(Throttle::new(
            SourceKey::parse(&t.on)?,
            t.limit,
            t.per_micros,
        )),
    };
    Ok((dedupe, throttle))
}

/// The event time column of the pipeline's windows (`timestamp` when it has none):
/// the watermark follows it.
fn time_column(calls: &[WindowCall]) -> Result<String> {
    let mut columns = calls.iter().map(|c| match c {
        WindowCall::Fixed { time_column, .. } | WindowCall::Session { time_column, .. } => {
            time_column
        }
    });
    let Some(first) = columns.next() else {
        return Ok("timestamp".into());
    };
    if columns.any(|c| c != first) {
        return Err(Error::Invalid(
            "a pipeline's window functions all run over one time column".into(),
        ));
    }
    Ok(first.clone())
}

/// The gap and partition columns of the pipeline's `SESSION`, if it reads one; a
/// `SESSION` must be its only window function.
fn session_partition(calls: &[WindowCall]) -> Result<Option<(i64, Vec<String>)>> {
    let sessions: Vec<(i64, &Vec<String>)> = calls
        .iter()
        .filter_map(|c| match c {
            WindowCall::Session {
                gap_micros,
                partition,
                ..
            } => Some((*gap_micros, partition)),
            WindowCall::Fixed { .. } => None,
        })
        .collect();
    match sessions.as_slice() {
        [] => Ok(None),
        [(gap, partition)] if calls.len() == 1 => Ok(Some((*gap, (*partition).clone()))),
        _ => Err(Error::Invalid(
            "a pipeline over SESSION reads no other window function".into(),
        )),
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// A window column (`window_start`, `window_end`) that a filter below the first
/// aggregate of `plan` reads. Checked on the plan as written: once optimized, such a
/// filter is rewritten over the time column.
fn filtered_window(plan: &LogicalPlan, below_aggregate: bool) -> Option<String> {
    if let LogicalPlan::Filter(filter) = plan
        && below_aggregate
    {
        for column in filter.predicate.column_refs() {
            if column.name == "window_start" || column.name == "window_end" {
                return Some(column.name.clone());
            }
        }
    }
    let below = below_aggregate || matches!(plan, LogicalPlan::Aggregate(_));
    plan.inputs()
        .into_iter()
        .find_map(|input| filtered_window(input, below))
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
