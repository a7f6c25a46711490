//! `SessionAggregate`: a `GROUP BY` over session windows, merging windows as events
//! arrive and emitting each session once the watermark passes its end.
//!
//! Input: the rows of the pipeline's query below its `GROUP BY`, each carrying its
//! event's own window `window_start = time`, `window_end = time + gap` (from
//! `SESSION` in a pipeline), batch by batch. The other group keys are the session's
//! partition. Within a partition, windows that overlap are one session: merged, a
//! session runs from its first event's time to its last event's time plus the gap,
//! exactly the batch `SESSION` view's window. Merging two sessions merges their
//! accumulators' states (DataFusion's `Accumulator::state` / `merge_batch`).
//!
//! Sessions are formed over every on-time event of the source, before the query's
//! `WHERE` ([`SessionAggregate::observe`]), as the batch view forms them over the whole
//! table: an event a filter drops still joins two sessions it lies between. A session
//! none of whose rows passed the filter yields no row.
//!
//! Output: on [`SessionAggregate::emit`], one row per session that ended at or before
//! the watermark — the group keys in their query order, then each aggregate's value,
//! the schema of DataFusion's `AggregateExec` for the same query — ordered by window
//! end, then by partition. An emitted session is dropped. An on-time event is never
//! older than the watermark, so it cannot reach back into an emitted session.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Int64Array, RecordBatch, TimestampMicrosecondArray, UInt64Array,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, SchemaRef, TimeUnit};
use arrow::row::RowConverter;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use hashbrown::HashMap;

use crate::error::{Error, Result};
use crate::{groups, state};

/// One open session of a partition.
struct Session {
    end: i64,
    /// Rows aggregated (events observed but filtered out count for the window only).
    rows: u64,
    accumulators: Vec<Box<dyn Accumulator>>,
}

/// Open sessions and their accumulators.
pub struct SessionAggregate {
    keys: Vec<Arc<dyn PhysicalExpr>>,
    window_start: usize,
    window_end: usize,
    /// Positions in `keys` of the partition keys (all but the window's).
    partition: Vec<usize>,
    /// The source's columns for the partition keys, in key order.
    partition_columns: Vec<String>,
    /// The source's time column.
    time_column: String,
    /// The inactivity gap, in microseconds.
    gap: i64,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// Converts the partition keys to and from the row format.
    converter: RowConverter,
    /// The partition keys' types.
    key_types: Vec<DataType>,
    /// Open sessions by partition, then by start.
    sessions: HashMap<Box<[u8]>, BTreeMap<i64, Session>>,
    /// `(end, partition, start)` of every open session, for emission.
    ends: BTreeSet<(i64, Box<[u8]>, i64)>,
    schema: SchemaRef,
}

impl std::fmt::Debug for SessionAggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionAggregate")
            .field("sessions", &self.ends.len())
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl SessionAggregate {
    /// Group by `keys` (evaluated on the input; `window_start` and `window_end` among
    /// them, the rest the partition, which are the source's `partition_columns` in
    /// key order) and compute `aggregates`; results have `schema`. Sessions close
    /// after `gap` microseconds of the source's `time_column` without an event.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        keys: Vec<Arc<dyn PhysicalExpr>>,
        window_start: usize,
        window_end: usize,
        partition_columns: Vec<String>,
        time_column: &str,
        gap: i64,
        aggregates: Vec<Arc<AggregateFunctionExpr>>,
        input: &arrow::datatypes::Schema,
        schema: SchemaRef,
    ) -> Result<Self> {
        let partition: Vec<usize> = (0..keys.len())
            .filter(|i| *i != window_start && *i != window_end)
            .collect();
        if partition.len() != partition_columns.len() {
            return Err(Error::Internal(
                "session partition keys and columns differ".into(),
            ));
        }
        let (key_types, converter) =
            groups::key_converter(partition.iter().map(|i| &keys[*i]), input)?;
        Ok(Self {
            keys,
            window_start,
            window_end,
            partition,
            partition_columns,
            time_column: time_column.into(),
            gap,
            aggregates,
            converter,
            key_types,
            sessions: HashMap::new(),
            ends: BTreeSet::new(),
            schema,
        })
    }

    /// The number of open sessions.
    pub fn open_groups(&self) -> usize {
        self.ends.len()
    }

    /// Take the source's on-time `events` (all of them, before the query's filters):
    /// each opens or extends its partition's session, with nothing aggregated yet.
    pub fn observe(&mut self, events: &RecordBatch) -> Result<()> {
        let rows_in = events.num_rows();
        if rows_in == 0 {
            return Ok(());
        }
        let column = |name: &str| {
            events
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| Error::Invalid(format!("the source has no column {name}")))
        };
        let partition = self
            .partition_columns
            .iter()
            .map(|name| column(name))
            .collect::<Result<Vec<_>>>()?;
        let times = micros(&column(&self.time_column)?, &self.time_column)?;
        let rows = self.partition_rows(&partition)?;
        let mut members: HashMap<&[u8], Vec<i64>> = HashMap::new();
        for (i, time) in times.iter().enumerate() {
            members.entry(key_of(&rows, i)).or_default().push(*time);
        }
        for (key, mut times) in members {
            times.sort_unstable();
            let mut run: Option<(i64, i64)> = None;
            for time in times {
                let end = time.saturating_add(self.gap);
                run = match run {
                    Some((start, run_end)) if time < run_end => Some((start, end)),
                    Some((start, run_end)) => {
                        self.open(key, start, run_end)?;
                        Some((time, end))
                    }
                    None => Some((time, end)),
                };
            }
            if let Some((start, end)) = run {
                self.open(key, start, end)?;
            }
        }
        Ok(())
    }

    /// The partition keys in the row format; `None` when sessions are not
    /// partitioned (every row's key is empty).
    fn partition_rows(&self, partition: &[ArrayRef]) -> Result<Option<arrow::row::Rows>> {
        if partition.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.converter.convert_columns(partition)?))
    }

    /// Open an empty session `[start, end)` of partition `key`.
    fn open(&mut self, key: &[u8], start: i64, end: i64) -> Result<()> {
        let accumulators = groups::accumulators(&self.aggregates)?;
        self.insert(key, start, end, 0, accumulators)
    }

    /// Add the rows of `batch` to their sessions, merging sessions they join.
    pub fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        let rows_in = batch.num_rows();
        if rows_in == 0 {
            return Ok(());
        }
        let keys = groups::evaluate(&self.keys, batch)?;
        let starts = micros(&keys[self.window_start], "window_start")?;
        let ends = micros(&keys[self.window_end], "window_end")?;
        let partition: Vec<ArrayRef> = self
            .partition
            .iter()
            .map(|i| Arc::clone(&keys[*i]))
            .collect();
        let rows = self.partition_rows(&partition)?;
        let mut members: HashMap<&[u8], Vec<u32>> = HashMap::new();
        for i in 0..rows_in {
            members.entry(key_of(&rows, i)).or_default().push(i as u32);
        }
        let arguments = groups::arguments(&self.aggregates, batch)?;
        for (key, mut indices) in members {
            // This batch's rows of the partition, merged among themselves first.
            indices.sort_unstable_by_key(|i| starts[*i as usize]);
            let mut run: Vec<u32> = Vec::new();
            let (mut run_start, mut run_end) = (0, 0);
            for i in indices {
                let (start, end) = (starts[i as usize], ends[i as usize]);
                if !run.is_empty() && start < run_end {
                    run_end = run_end.max(end);
                } else {
                    if !run.is_empty() {
                        let taken = std::mem::take(&mut run);
                        self.add(key, run_start, run_end, &taken, &arguments)?;
                    }
                    (run_start, run_end) = (start, end);
                }
                run.push(i);
            }
            if !run.is_empty() {
                self.add(key, run_start, run_end, &run, &arguments)?;
            }
        }
        Ok(())
    }

    /// Add the rows `indices` (one window `[start, end)`) to partition `key`.
    fn add(
        &mut self,
        key: &[u8],
        start: i64,
        end: i64,
        indices: &[u32],
        arguments: &[Vec<ArrayRef>],
    ) -> Result<()> {
        let mut accumulators = groups::accumulators(&self.aggregates)?;
        groups::fold(&mut accumulators, arguments, indices)?;
        self.insert(key, start, end, indices.len() as u64, accumulators)
    }

    /// Open the session `[start, end)` of partition `key`, merged with every open
    /// session it overlaps.
    fn insert(
        &mut self,
        key: &[u8],
        mut start: i64,
        mut end: i64,
        mut rows: u64,
        mut accumulators: Vec<Box<dyn Accumulator>>,
    ) -> Result<()> {
        let sessions = match self.sessions.get_mut(key) {
            Some(sessions) => sessions,
            None => self.sessions.entry(key.into()).or_default(),
        };
        // Sessions of a partition are disjoint, so the ones overlapping
        // `[start, end)` are the last ones starting before `end`.
        let overlapping: Vec<i64> = sessions
            .range(..end)
            .rev()
            .take_while(|(_, s)| s.end > start)
            .map(|(s, _)| *s)
            .collect();
        for old_start in overlapping {
            let Some(mut old) = sessions.remove(&old_start) else {
                continue;
            };
            self.ends.remove(&(old.end, Box::from(key), old_start));
            if old.rows > 0 {
                merge(&mut accumulators, &mut old.accumulators)?;
            }
            rows += old.rows;
            start = start.min(old_start);
            end = end.max(old.end);
        }
        sessions.insert(
            start,
            Session {
                end,
                rows,
                accumulators,
            },
        );
        self.ends.insert((end, key.into(), start));
        Ok(())
    }

    /// The snapshot's schema: the partition keys, the session's bounds and row
    /// count, then the aggregates' states.
    fn snapshot_schema(&self) -> Result<SchemaRef> {
        let mut leading = state::key_fields(&self.key_types);
        leading.push(Field::new("session_start", DataType::Int64, false));
        leading.push(Field::new("session_end", DataType::Int64, false));
        leading.push(Field::new("session_rows", DataType::UInt64, false));
        state::snapshot_schema(leading, &self.aggregates)
    }

    /// The open sessions, a row each, for a checkpoint ([`crate::state`]).
    pub fn snapshot(&mut self) -> Result<RecordBatch> {
        let schema = self.snapshot_schema()?;
        let open: Vec<(i64, &[u8], i64)> = self
            .ends
            .iter()
            .map(|(end, key, start)| (*end, &key[..], *start))
            .collect();
        let keys: Vec<&[u8]> = open.iter().map(|(_, key, _)| *key).collect();
        let mut columns = state::key_columns(&self.converter, &self.key_types, &keys)?;
        let mut states = state::StateColumns::new(state::state_fields(&self.aggregates)?);
        let mut rows = Vec::with_capacity(open.len());
        for (_, key, start) in &open {
            let session = self
                .sessions
                .get_mut(*key)
                .and_then(|s| s.get_mut(start))
                .ok_or_else(|| Error::Internal("an open session is missing".into()))?;
            rows.push(session.rows);
            states.push(&mut session.accumulators)?;
        }
        columns.push(Arc::new(Int64Array::from_iter_values(
            open.iter().map(|(_, _, start)| *start),
        )));
        columns.push(Arc::new(Int64Array::from_iter_values(
            open.iter().map(|(end, _, _)| *end),
        )));
        columns.push(Arc::new(UInt64Array::from(rows)));
        columns.extend(states.finish()?);
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(open.len()));
        Ok(RecordBatch::try_new_with_options(
            schema, columns, &options,
        )?)
    }

    /// Reopen the sessions of `snapshot` (from [`SessionAggregate::snapshot`] of the
    /// same query), replacing any open ones.
    pub fn restore(&mut self, snapshot: &RecordBatch) -> Result<()> {
        state::check_snapshot(snapshot, &*self.snapshot_schema()?)?;
        self.sessions.clear();
        self.ends.clear();
        let width = self.key_types.len();
        let columns = snapshot.columns();
        let number = |i: usize| -> Result<&Int64Array> {
            columns[width + i]
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| Error::Invalid("a checkpoint's session bounds are not Int64".into()))
        };
        let (starts, ends) = (number(0)?, number(1)?);
        let counts = columns[width + 2]
            .as_any()
            .downcast_ref::<UInt64Array>()
            .ok_or_else(|| Error::Invalid("a checkpoint's session rows are not UInt64".into()))?;
        let states = &columns[width + 3..];
        let rows = self.partition_rows(&columns[..width])?;
        for row in 0..snapshot.num_rows() {
            let key = key_of(&rows, row);
            let (start, end) = (starts.value(row), ends.value(row));
            let accumulators = state::restore_accumulators(&self.aggregates, states, row)?;
            self.sessions.entry(key.into()).or_default().insert(
                start,
                Session {
                    end,
                    rows: counts.value(row),
                    accumulators,
                },
            );
            self.ends.insert((end, key.into(), start));
        }
        Ok(())
    }

    /// The results of every session ending at or before `watermark` (all open
    /// sessions when `None`), which are then closed. `None` when none closes.
    pub fn emit(&mut self, watermark: Option<i64>) -> Result<Option<RecordBatch>> {
        let mut closed: Vec<(i64, Box<[u8]>, i64)> = match watermark {
            None => std::mem::take(&mut self.ends).into_iter().collect(),
            Some(w) => {
                let mut closed = Vec::new();
                while let Some(first) = self.ends.first() {
                    if first.0 > w {
                        break;
                    }
                    closed.extend(self.ends.pop_first());
                }
                closed
            }
        };
        let mut values: Vec<Vec<ScalarValue>> =
            vec![Vec::with_capacity(closed.len()); self.aggregates.len()];
        let mut kept = vec![true; closed.len()];
        for ((_, key, start), kept) in closed.iter().zip(kept.iter_mut()) {
            let sessions = self
                .sessions
                .get_mut(key)
                .ok_or_else(|| Error::Internal("a closed session's partition is missing".into()))?;
            let mut session = sessions
                .remove(start)
                .ok_or_else(|| Error::Internal("a closed session is missing".into()))?;
            if sessions.is_empty() {
                self.sessions.remove(key);
            }
            if session.rows == 0 {
                *kept = false;
                continue;
            }
            for (column, accumulator) in values.iter_mut().zip(session.accumulators.iter_mut()) {
                column.push(accumulator.evaluate()?);
            }
        }
        let mut kept = kept.into_iter();
        closed.retain(|_| kept.next().unwrap_or(false));
        if closed.is_empty() {
            return Ok(None);
        }
        let mut partition = if self.partition.is_empty() {
            Vec::new().into_iter()
        } else {
            let parser = self.converter.parser();
            self.converter
                .convert_rows(closed.iter().map(|(_, key, _)| parser.parse(key)))?
                .into_iter()
        };
        let starts: ArrayRef = Arc::new(TimestampMicrosecondArray::from_iter_values(
            closed.iter().map(|(_, _, start)| *start),
        ));
        let ends: ArrayRef = Arc::new(TimestampMicrosecondArray::from_iter_values(
            closed.iter().map(|(end, _, _)| *end),
        ));
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for i in 0..self.keys.len() {
            if i == self.window_start {
                columns.push(Arc::clone(&starts));
            } else if i == self.window_end {
                columns.push(Arc::clone(&ends));
            } else {
                columns.push(
                    partition
                        .next()
                        .ok_or_else(|| Error::Internal("a partition key is missing".into()))?,
                );
            }
        }
        let rows = closed.len();
        groups::result_rows(columns, values, &self.schema, rows).map(Some)
    }
}

/// Row `i`'s partition key.
fn key_of(rows: &Option<arrow::row::Rows>, i: usize) -> &[u8] {
    rows.as_ref().map_or(&[], |r| r.row(i).data())
}

/// Fold the states of `from` into `into`, accumulator by accumulator.
pub(crate) fn merge(
    into: &mut [Box<dyn Accumulator>],
    from: &mut [Box<dyn Accumulator>],
) -> Result<()> {
    for (into, from) in into.iter_mut().zip(from.iter_mut()) {
        let state = from
            .state()?
            .iter()
            .map(ScalarValue::to_array)
            .collect::<datafusion::common::Result<Vec<_>>>()?;
        into.merge_batch(&state)?;
    }
    Ok(())
}

/// The microseconds of a window bound column, which has no nulls.
fn micros(column: &ArrayRef, name: &str) -> Result<Vec<i64>> {
    let column = cast(column, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
    let column = column
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .ok_or_else(|| Error::Invalid(format!("{name} is not a timestamp")))?;
    if column.null_count() > 0 {
        return Err(Error::Invalid("a row without a window".into()));
    }
    Ok(column.values().to_vec())
}
