//! Window table functions: `TUMBLE`, `HOP` and `SESSION` over the events table.
//!
//! Each is a view of `events` with two more columns, `window_start` and `window_end`
//! (timestamps, end exclusive), so windowed aggregates are plain `GROUP BY`s:
//!
//! ```sql
//! SELECT window_start, window_end, event_type, COUNT(*)
//! FROM TUMBLE(events, timestamp, INTERVAL '1' HOUR)
//! GROUP BY window_start, window_end, event_type
//! ```
//!
//! - `TUMBLE(events, time_column, size)`: each event in the one window of `size`
//!   holding it, windows aligned on the Unix epoch.
//! - `HOP(events, time_column, slide, size)`: windows of `size` starting every
//!   `slide` (`size` a multiple of `slide`); each event appears once per window
//!   holding it, `size / slide` times.
//! - `SESSION(events, time_column, gap [, partition_column ...])`: per value of the
//!   partition columns, events closer than `gap` to the previous one are in the same
//!   session; a session's window runs from its first event's time to its last
//!   event's time plus `gap`. Sessions of one partition never overlap. A query
//!   grouping sessions groups by `window_start`, `window_end` and the partition
//!   columns.
//!
//! The same views feed pipelines, so a windowed pipeline and the batch query over
//! the same events assign every event to the same windows. For `SESSION`, a pipeline
//! sees each event in its own window `[time, time + gap)` and merges the windows of
//! one partition that overlap as events arrive ([`WindowCall`]); merged, they are the
//! sessions of the batch view.

use std::sync::{Arc, Mutex};

use arrow::datatypes::{DataType, TimeUnit};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Column, Result, ScalarValue, plan_err};
use datafusion::datasource::{ViewTable, provider_as_source};
use datafusion::functions::datetime::expr_fn::date_bin;
use datafusion::logical_expr::expr::WindowFunction as WindowExpr;
use datafusion::logical_expr::{
    Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, ScalarUDF, SortExpr, WindowUDF, cast,
    col, lit,
};

use crate::sessions::{Bound, SessionBound, SessionBucket};

/// The table the window functions read: the only one they accept as first argument.
const SOURCE: &str = "events";
/// Most windows one event may fall in (`size / slide` of a `HOP`).
pub const MAX_WINDOWS_PER_EVENT: i64 = 1000;
/// The window table functions, by the name they are called with.
pub const NAMES: [&str; 3] = ["tumble", "hop", "session"];

/// Which windows a window table function assigns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// `TUMBLE(events, time, size)`.
    Tumble,
    /// `HOP(events, time, slide, size)`.
    Hop,
    /// `SESSION(events, time, gap [, partition_column ...])`.
    Session,
}

impl WindowKind {
    /// Every kind.
    pub const ALL: [WindowKind; 3] = [WindowKind::Tumble, WindowKind::Hop, WindowKind::Session];

    /// The name the function is called by (lower case).
    pub fn name(self) -> &'static str {
        match self {
            WindowKind::Tumble => "tumble",
            WindowKind::Hop => "hop",
            WindowKind::Session => "session",
        }
    }
}

/// A window function call in a pipeline's query, as the pipeline must know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowCall {
    /// `TUMBLE` or `HOP`: each event's windows are fixed by its time alone.
    Fixed {
        /// The event time column the windows are over.
        time_column: String,
        /// Microseconds between window starts.
        slide_micros: i64,
        /// Window length in microseconds.
        size_micros: i64,
    },
    /// `SESSION`: each event comes in its own window `[time, time + gap)`; the
    /// pipeline merges overlapping windows of one partition.
    Session {
        /// The event time column the sessions are over.
        time_column: String,
        /// The inactivity gap closing a session, in microseconds.
        gap_micros: i64,
        /// The partition columns, as named in the call.
        partition: Vec<String>,
    },
}

/// The window function calls seen while planning a pipeline's query.
#[derive(Debug, Clone, Default)]
pub struct WindowCalls(Arc<Mutex<Vec<WindowCall>>>);

impl WindowCalls {
    /// The calls recorded so far.
    pub fn calls(&self) -> Vec<WindowCall> {
        self.0.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn record(&self, call: WindowCall) {
        if let Ok(mut calls) = self.0.lock() {
            calls.push(call);
        }
    }
}

/// A window table function over one `events` table provider.
#[derive(Debug)]
pub struct WindowFunction {
    kind: WindowKind,
    events: Arc<dyn TableProvider>,
    /// Set when planning a pipeline: calls are recorded, and `SESSION` leaves the
    /// merging of windows to the pipeline.
    pipeline: Option<WindowCalls>,
}

impl WindowFunction {
    /// The `kind` function over `events`, for batch queries.
    pub fn new(kind: WindowKind, events: Arc<dyn TableProvider>) -> Self {
        Self {
            kind,
            events,
            pipeline: None,
        }
    }

    /// The `kind` function over `events`, for a pipeline's query: each call is
    /// recorded in `calls`.
    pub fn for_pipeline(
        kind: WindowKind,
        events: Arc<dyn TableProvider>,
        calls: WindowCalls,
    ) -> Self {
        Self {
            kind,
            events,
            pipeline: Some(calls),
        }
    }
}

impl TableFunctionImpl for WindowFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let (name, expected) = match self.kind {
            WindowKind::Tumble => ("TUMBLE", "TUMBLE(events, time_column, size)"),
            WindowKind::Hop => ("HOP", "HOP(events, time_column, slide, size)"),
            WindowKind::Session => (
                "SESSION",
                "SESSION(events, time_column, gap [, partition_column ...])",
            ),
        };
        let exprs = args.exprs();
        match self.kind {
            WindowKind::Tumble if exprs.len() != 3 => {
                return plan_err!("{name} takes 3 arguments: {expected}");
            }
            WindowKind::Hop if exprs.len() != 4 => {
                return plan_err!("{name} takes 4 arguments: {expected}");
            }
            WindowKind::Session if exprs.len() < 3 => {
                return plan_err!("{name} takes at least 3 arguments: {expected}");
            }
            _ => {}
        }
        match &exprs[0] {
            Expr::Column(c) if c.name.eq_ignore_ascii_case(SOURCE) => {}
            other => return plan_err!("{name} reads the table events, not {other}"),
        }
        let time = match &exprs[1] {
            Expr::Column(c) => c.name.clone(),
            other => return plan_err!("{name}'s second argument is a time column, not {other}"),
        };
        if self.kind == WindowKind::Session {
            let gap = interval_micros(name, "gap", &exprs[2])?;
            let partition = exprs[3..]
                .iter()
                .map(|e| match e {
                    Expr::Column(c) => Ok(c.name.clone()),
                    other => plan_err!("{name} partitions by columns of events, not {other}"),
                })
                .collect::<Result<Vec<_>>>()?;
            let plan = match &self.pipeline {
                Some(calls) => {
                    let plan = self.event_windows(&time, gap)?;
                    calls.record(WindowCall::Session {
                        time_column: time.clone(),
                        gap_micros: gap,
                        partition,
                    });
                    plan
                }
                None => self.sessions(&time, gap, &partition)?,
            };
            return Ok(Arc::new(ViewTable::new(plan, None)));
        }
        let (slide, size) = match self.kind {
            WindowKind::Tumble | WindowKind::Session => {
                let size = interval_micros(name, "size", &exprs[2])?;
                (size, size)
            }
            WindowKind::Hop => (
                interval_micros(name, "slide", &exprs[2])?,
                interval_micros(name, "size", &exprs[3])?,
            ),
        };
        if size % slide != 0 {
            return plan_err!("{name}'s size must be a whole multiple of its slide");
        }
        if size / slide > MAX_WINDOWS_PER_EVENT {
            return plan_err!(
                "{name} would put each event in {} windows; at most {MAX_WINDOWS_PER_EVENT}",
                size / slide
            );
        }
        let plan = self.plan(&time, slide, size)?;
        if let Some(calls) = &self.pipeline {
            calls.record(WindowCall::Fixed {
                time_column: time,
                slide_micros: slide,
                size_micros: size,
            });
        }
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}

impl WindowFunction {
    /// The events table's columns, and the type of its time column `time`.
    fn columns(&self, time: &str) -> Result<(Vec<Expr>, DataType)> {
        let schema = self.events.schema();
        let Ok(field) = schema.field_with_name(time) else {
            return plan_err!("events has no column {time}");
        };
        if !matches!(field.data_type(), DataType::Timestamp(..)) {
            return plan_err!("{time} is not a timestamp column");
        }
        let columns = schema
            .fields()
            .iter()
            .map(|f| Expr::Column(Column::new(Some(SOURCE), f.name())))
            .collect();
        Ok((columns, field.data_type().clone()))
    }

    fn scan(&self) -> Result<LogicalPlanBuilder> {
        LogicalPlanBuilder::scan(SOURCE, provider_as_source(Arc::clone(&self.events)), None)
    }

    /// `events` with each event in its own window `[time, time + gap)`: the input of
    /// a pipeline's session merging.
    fn event_windows(&self, time: &str, gap: i64) -> Result<LogicalPlan> {
        let (mut columns, time_type) = self.columns(time)?;
        let time = Expr::Column(Column::new(Some(SOURCE), time));
        let end = cast(time.clone() + lit(micros_interval(gap)), time_type.clone());
        columns.push(cast(time, time_type).alias("window_start"));
        columns.push(end.alias("window_end"));
        self.scan()?.project(columns)?.build()
    }

    /// `events` with the `window_start` and `window_end` of each event's session:
    /// per partition, in time order, a session starts at an event `gap` or more
    /// after the previous one.
    ///
    /// The events are spread over hash buckets of the partition columns and ordered
    /// by the columns and time within each; one pass over a bucket gives every
    /// event its session's first time and last time plus `gap` (see
    /// [`crate::sessions`]). Events at the same time never split: the later of two
    /// peers is never `gap` after the earlier.
    fn sessions(&self, time: &str, gap: i64, partition: &[String]) -> Result<LogicalPlan> {
        let (mut columns, time_type) = self.columns(time)?;
        let schema = self.events.schema();
        for column in partition {
            if schema.field_with_name(column).is_err() {
                return plan_err!("SESSION partitions by {column}, which events does not have");
            }
        }
        let keys: Vec<Expr> = partition.iter().map(col).collect();
        let time = Expr::Column(Column::new(Some(SOURCE), time));
        let mut order: Vec<SortExpr> = keys.iter().map(|k| k.clone().sort(true, false)).collect();
        order.push(time.clone().sort(true, false));
        let buckets = if keys.is_empty() {
            Vec::new()
        } else {
            vec![ScalarUDF::from(SessionBucket::new()).call(keys.clone())]
        };
        let mut arguments = vec![cast(time, DataType::Int64)];
        arguments.extend(keys);
        let bound = |bound: Bound, name: &str| {
            let function = Arc::new(WindowUDF::from(SessionBound::new(bound, gap)));
            Expr::from(WindowExpr::new(function, arguments.clone()))
                .partition_by(buckets.clone())
                .order_by(order.clone())
                .build()
                .map(|e| e.alias(name))
        };
        let first = bound(Bound::Start, "__first")?;
        let end = bound(Bound::End, "__end")?;
        let micros_type = in_micros(&time_type);
        let in_type = |micros: Expr| cast(cast(micros, micros_type.clone()), time_type.clone());
        columns.push(in_type(col("__first")).alias("window_start"));
        columns.push(in_type(col("__end")).alias("window_end"));
        self.scan()?
            .window(vec![first, end])?
            .project(columns)?
            .build()
    }

    /// `events` with `window_start` and `window_end`, once per window holding each
    /// event. A tumbling window is a projection of the scan. A hopping one crosses
    /// the scan with the offsets `0 .. size / slide` (a small `VALUES` on the build
    /// side), so the events are read once and each batch is repeated per window,
    /// sharing its columns, rather than scanning the log once per offset.
    fn plan(&self, time: &str, slide: i64, size: i64) -> Result<LogicalPlan> {
        let (mut columns, time_type) = self.columns(time)?;
        let time = Expr::Column(Column::new(Some(SOURCE), time));
        let origin = lit(ScalarValue::TimestampMicrosecond(
            Some(0),
            Some("UTC".into()),
        ));
        let latest_start = date_bin(lit(micros_interval(slide)), time, origin);
        let count = size / slide;
        if count == 1 {
            let end = latest_start.clone() + lit(micros_interval(size));
            columns.push(cast(latest_start, time_type.clone()).alias("window_start"));
            columns.push(cast(end, time_type).alias("window_end"));
            return self.scan()?.project(columns)?.build();
        }
        let offsets: Vec<Vec<Expr>> = (0..count).map(|back| vec![lit(back * slide)]).collect();
        let offsets = LogicalPlanBuilder::values(offsets)?
            .project(vec![col("column1").alias(OFFSET)])?
            .build()?;
        // µs arithmetic, since an interval cannot be scaled by a column (and
        // `date_bin` answers in ns), then back to the time column's type.
        let micros_type = in_micros(&time_type);
        let start_micros =
            cast(cast(latest_start, micros_type.clone()), DataType::Int64) - col(OFFSET);
        let in_type = |micros: Expr| cast(cast(micros, micros_type.clone()), time_type.clone());
        let start = in_type(start_micros.clone());
        let end = in_type(start_micros + lit(size));
        columns.push(start.alias("window_start"));
        columns.push(end.alias("window_end"));
        LogicalPlanBuilder::from(offsets)
            .cross_join(self.scan()?.build()?)?
            .project(columns)?
            .build()
    }
}

/// A time column's type with µs as its unit, for arithmetic on its values as µs.
fn in_micros(time_type: &DataType) -> DataType {
    match time_type {
        DataType::Timestamp(_, zone) => DataType::Timestamp(TimeUnit::Microsecond, zone.clone()),
        other => other.clone(),
    }
}

/// The column of a hopping window's offset (µs back from the latest window start).
const OFFSET: &str = "__window_offset";

fn micros_interval(micros: i64) -> ScalarValue {
    ScalarValue::new_interval_mdn(0, 0, micros * 1000)
}

/// A window length given as an `INTERVAL` literal, in microseconds.
pub fn interval_micros(function: &str, what: &str, expr: &Expr) -> Result<i64> {
    let micros = match expr {
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _) if v.months == 0 => {
            i64::from(v.days) * 86_400_000_000 + v.nanoseconds / 1000
        }
        Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _) => {
            i64::from(v.days) * 86_400_000_000 + i64::from(v.milliseconds) * 1000
        }
        other => {
            return plan_err!(
                "{function}'s {what} is an interval of days or less, like INTERVAL '1' HOUR, \
                 not {other}"
            );
        }
    };
    if micros <= 0 {
        return plan_err!("{function}'s {what} must be positive");
    }
    Ok(micros)
}
