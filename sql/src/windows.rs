//! Window table functions: `TUMBLE`, `HOP` over the events table.
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
//!
//! The same views feed pipelines, so a windowed pipeline and the batch query over
//! the same events assign every event to the same windows.

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Column, DataFusionError, Result, ScalarValue, plan_err};
use datafusion::datasource::{ViewTable, provider_as_source};
use datafusion::functions::datetime::expr_fn::date_bin;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, cast, lit};

/// The table the window functions read: the only one they accept as first argument.
const SOURCE: &str = "events";
/// Most windows one event may fall in (`size / slide` of a `HOP`).
pub const MAX_WINDOWS_PER_EVENT: i64 = 1000;
/// The window table functions, by the name they are called with.
pub const NAMES: [&str; 2] = ["tumble", "hop"];

/// Which windows a window table function assigns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// `TUMBLE(events, time, size)`.
    Tumble,
    /// `HOP(events, time, slide, size)`.
    Hop,
}

/// A window table function over one `events` table provider.
#[derive(Debug)]
pub struct WindowFunction {
    kind: WindowKind,
    events: Arc<dyn TableProvider>,
}

impl WindowFunction {
    /// The `kind` function over `events`.
    pub fn new(kind: WindowKind, events: Arc<dyn TableProvider>) -> Self {
        Self { kind, events }
    }
}

impl TableFunctionImpl for WindowFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let (name, expected) = match self.kind {
            WindowKind::Tumble => ("TUMBLE", "TUMBLE(events, time_column, size)"),
            WindowKind::Hop => ("HOP", "HOP(events, time_column, slide, size)"),
        };
        let exprs = args.exprs();
        let arity = if self.kind == WindowKind::Tumble {
            3
        } else {
            4
        };
        if exprs.len() != arity {
            return plan_err!("{name} takes {arity} arguments: {expected}");
        }
        match &exprs[0] {
            Expr::Column(c) if c.name.eq_ignore_ascii_case(SOURCE) => {}
            other => return plan_err!("{name} reads the table events, not {other}"),
        }
        let time = match &exprs[1] {
            Expr::Column(c) => c.name.clone(),
            other => return plan_err!("{name}'s second argument is a time column, not {other}"),
        };
        let (slide, size) = match self.kind {
            WindowKind::Tumble => {
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
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}

impl WindowFunction {
    /// `events` with `window_start` and `window_end`, once per window holding each
    /// event.
    fn plan(&self, time: &str, slide: i64, size: i64) -> Result<LogicalPlan> {
        let scan =
            || LogicalPlanBuilder::scan(SOURCE, provider_as_source(Arc::clone(&self.events)), None);
        let columns: Vec<Expr> = self
            .events
            .schema()
            .fields()
            .iter()
            .map(|f| Expr::Column(Column::new(Some(SOURCE), f.name())))
            .collect();
        let schema = self.events.schema();
        let Ok(field) = schema.field_with_name(time) else {
            return plan_err!("events has no column {time}");
        };
        if !matches!(field.data_type(), DataType::Timestamp(..)) {
            return plan_err!("{time} is not a timestamp column");
        }
        let time_type = field.data_type().clone();
        let time = Expr::Column(Column::new(Some(SOURCE), time));
        let origin = lit(ScalarValue::TimestampMicrosecond(
            Some(0),
            Some("UTC".into()),
        ));
        let latest_start = date_bin(lit(micros_interval(slide)), time, origin);
        let mut plan: Option<LogicalPlanBuilder> = None;
        for back in 0..size / slide {
            let start = latest_start.clone() - lit(micros_interval(back * slide));
            let end = start.clone() + lit(micros_interval(size));
            let (start, end) = (cast(start, time_type.clone()), cast(end, time_type.clone()));
            let mut projection = columns.clone();
            projection.push(start.alias("window_start"));
            projection.push(end.alias("window_end"));
            let windows = scan()?.project(projection)?;
            plan = Some(match plan {
                None => windows,
                Some(earlier) => earlier.union(windows.build()?)?,
            });
        }
        plan.ok_or_else(|| DataFusionError::Plan("a window needs a size".into()))?
            .build()
    }
}

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
