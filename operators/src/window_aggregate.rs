//! `WindowAggregate`: a windowed `GROUP BY` kept open until the watermark passes each
//! window's end.
//!
//! Input: the rows of the pipeline's query below its `GROUP BY`, each carrying the
//! `window_start` and `window_end` of one window (from `TUMBLE` or `HOP`), batch by
//! batch. Output: on [`WindowAggregate::emit`], one row per group of every window
//! that ended at or before the watermark — the group's keys, then each aggregate's
//! value, exactly the schema of DataFusion's `AggregateExec` for the same query —
//! ordered by window end, then by key. An emitted window's groups are dropped.
//!
//! Keys and aggregates are DataFusion's: the key expressions and the
//! `AggregateFunctionExpr`s of the planned `AggregateExec`, one accumulator per
//! aggregate per group.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{SchemaRef, TimestampMicrosecondType};
use arrow::row::RowConverter;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use hashbrown::HashMap;

use crate::error::{Error, Result};
use crate::{groups, state};

/// Open windows' groups and their accumulators.
pub struct WindowAggregate {
    keys: Vec<Arc<dyn PhysicalExpr>>,
    /// Which key is `window_end`.
    window_end: usize,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    converter: RowConverter,
    /// The key columns' types.
    key_types: Vec<arrow::datatypes::DataType>,
    /// Groups by their keys in the row format.
    groups: HashMap<Box<[u8]>, Vec<Box<dyn Accumulator>>>,
    /// Keys of the open groups by window end.
    ends: BTreeMap<i64, Vec<Box<[u8]>>>,
    schema: SchemaRef,
}

impl std::fmt::Debug for WindowAggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowAggregate")
            .field("groups", &self.groups.len())
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl WindowAggregate {
    /// Group by `keys` (evaluated on the input, `window_end` among them) and compute
    /// `aggregates`; results have `schema`.
    pub fn new(
        keys: Vec<Arc<dyn PhysicalExpr>>,
        window_end: usize,
        aggregates: Vec<Arc<AggregateFunctionExpr>>,
        input: &arrow::datatypes::Schema,
        schema: SchemaRef,
    ) -> Result<Self> {
        let (key_types, converter) = groups::key_converter(keys.iter(), input)?;
        Ok(Self {
            keys,
            window_end,
            aggregates,
            converter,
            key_types,
            groups: HashMap::new(),
            ends: BTreeMap::new(),
            schema,
        })
    }

    /// The number of open groups.
    pub fn open_groups(&self) -> usize {
        self.groups.len()
    }

    /// Add the rows of `batch` to their groups.
    pub fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        let rows_in = batch.num_rows();
        if rows_in == 0 {
            return Ok(());
        }
        let keys = groups::evaluate(&self.keys, batch)?;
        let ends = keys[self.window_end]
            .as_any()
            .downcast_ref::<arrow::array::PrimitiveArray<TimestampMicrosecondType>>()
            .ok_or_else(|| Error::Invalid("window_end is not a timestamp".into()))?;
        if ends.null_count() > 0 {
            return Err(Error::Invalid("a row without a window".into()));
        }
        let rows = self.converter.convert_columns(&keys)?;
        let mut members: HashMap<&[u8], Vec<u32>> = HashMap::new();
        for i in 0..rows_in {
            members
                .entry(rows.row(i).data())
                .or_default()
                .push(i as u32);
        }
        let arguments = groups::arguments(&self.aggregates, batch)?;
        for (key, indices) in members {
            if !self.groups.contains_key(key) {
                let accumulators = groups::accumulators(&self.aggregates)?;
                self.groups.insert(key.into(), accumulators);
                let end = ends.value(indices[0] as usize);
                self.ends.entry(end).or_default().push(key.into());
            }
            let accumulators = self
                .groups
                .get_mut(key)
                .ok_or_else(|| Error::Internal("a group vanished".into()))?;
            groups::fold(accumulators, &arguments, &indices)?;
        }
        Ok(())
    }

    /// The snapshot's schema: the key columns, then the aggregates' states.
    fn snapshot_schema(&self) -> Result<SchemaRef> {
        state::snapshot_schema(state::key_fields(&self.key_types), &self.aggregates)
    }

    /// The open groups, a row each, for a checkpoint ([`crate::state`]).
    pub fn snapshot(&mut self) -> Result<RecordBatch> {
        let schema = self.snapshot_schema()?;
        let keys: Vec<&[u8]> = self.ends.values().flatten().map(|k| &k[..]).collect();
        let mut columns = state::key_columns(&self.converter, &self.key_types, &keys)?;
        let mut states = state::StateColumns::new(state::state_fields(&self.aggregates)?);
        for key in &keys {
            let accumulators = self
                .groups
                .get_mut(*key)
                .ok_or_else(|| Error::Internal("an open window's group is missing".into()))?;
            states.push(accumulators)?;
        }
        columns.extend(states.finish()?);
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(keys.len()));
        Ok(RecordBatch::try_new_with_options(
            schema, columns, &options,
        )?)
    }

    /// Reopen the groups of `snapshot` (from [`WindowAggregate::snapshot`] of the same
    /// query), replacing any open ones.
    pub fn restore(&mut self, snapshot: &RecordBatch) -> Result<()> {
        state::check_snapshot(snapshot, &*self.snapshot_schema()?)?;
        self.groups.clear();
        self.ends.clear();
        let width = self.key_types.len();
        let keys = &snapshot.columns()[..width];
        let states = &snapshot.columns()[width..];
        let ends = cast(
            &keys[self.window_end],
            &arrow::datatypes::DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
        )?;
        let ends = ends
            .as_any()
            .downcast_ref::<arrow::array::PrimitiveArray<TimestampMicrosecondType>>()
            .ok_or_else(|| Error::Invalid("a checkpoint's window_end is not a timestamp".into()))?;
        let rows = self.converter.convert_columns(keys)?;
        for row in 0..snapshot.num_rows() {
            let key: Box<[u8]> = rows.row(row).data().into();
            let accumulators = state::restore_accumulators(&self.aggregates, states, row)?;
            self.ends
                .entry(ends.value(row))
                .or_default()
                .push(key.clone());
            self.groups.insert(key, accumulators);
        }
        Ok(())
    }

    /// The results of every window ending at or before `watermark` (all open windows
    /// when `None`), which are then closed. `None` when no window closes.
    pub fn emit(&mut self, watermark: Option<i64>) -> Result<Option<RecordBatch>> {
        let closed = match watermark {
            None => std::mem::take(&mut self.ends),
            Some(w) => {
                let open = self.ends.split_off(&w.saturating_add(1));
                std::mem::replace(&mut self.ends, open)
            }
        };
        let mut keys: Vec<Box<[u8]>> = Vec::new();
        for (_, mut window) in closed {
            window.sort_unstable();
            keys.extend(window);
        }
        if keys.is_empty() {
            return Ok(None);
        }
        let parser = self.converter.parser();
        let columns: Vec<ArrayRef> = self
            .converter
            .convert_rows(keys.iter().map(|k| parser.parse(k)))?;
        let mut values: Vec<Vec<ScalarValue>> =
            vec![Vec::with_capacity(keys.len()); self.aggregates.len()];
        for key in &keys {
            let mut accumulators = self
                .groups
                .remove(key)
                .ok_or_else(|| Error::Internal("a closed window's group is missing".into()))?;
            for (column, accumulator) in values.iter_mut().zip(accumulators.iter_mut()) {
                column.push(accumulator.evaluate()?);
            }
        }
        let rows = keys.len();
        groups::result_rows(columns, values, &self.schema, rows).map(Some)
    }
}
