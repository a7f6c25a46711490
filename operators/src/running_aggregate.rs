//! `RunningAggregate`: a `GROUP BY` without windows, kept up to date as events arrive.
//!
//! Input: the rows of the pipeline's query below its `GROUP BY`, batch by batch.
//! Groups never close, so no event is late and the watermark plays no part. Output:
//! [`RunningAggregate::update`] returns the current row of every group the batch
//! touched (the changes, for subscribers); [`RunningAggregate::current`] the current
//! row of every group (the pipeline's table, which equals the batch `GROUP BY` over
//! the same events). Rows have the schema of DataFusion's `AggregateExec` for the
//! same query: the keys, then each aggregate's value, ordered by key.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::row::RowConverter;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use hashbrown::HashMap;

use crate::error::{Error, Result};
use crate::{groups, state};

/// Groups and their accumulators, for ever.
pub struct RunningAggregate {
    keys: Vec<Arc<dyn PhysicalExpr>>,
    key_types: Vec<DataType>,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    converter: RowConverter,
    /// Groups by their keys in the row format, in key order.
    groups: BTreeMap<Box<[u8]>, Vec<Box<dyn Accumulator>>>,
    schema: SchemaRef,
}

impl std::fmt::Debug for RunningAggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningAggregate")
            .field("groups", &self.groups.len())
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl RunningAggregate {
    /// Group by `keys` (evaluated on the input) and compute `aggregates`; results
    /// have `schema`.
    pub fn new(
        keys: Vec<Arc<dyn PhysicalExpr>>,
        aggregates: Vec<Arc<AggregateFunctionExpr>>,
        input: &arrow::datatypes::Schema,
        schema: SchemaRef,
    ) -> Result<Self> {
        let (key_types, converter) = groups::key_converter(keys.iter(), input)?;
        Ok(Self {
            keys,
            key_types,
            aggregates,
            converter,
            groups: BTreeMap::new(),
            schema,
        })
    }

    /// The number of groups.
    pub fn open_groups(&self) -> usize {
        self.groups.len()
    }

    /// Add the rows of `batch` to their groups; the touched groups' current rows.
    pub fn update(&mut self, batch: &RecordBatch) -> Result<Option<RecordBatch>> {
        let rows_in = batch.num_rows();
        if rows_in == 0 {
            return Ok(None);
        }
        let keys = groups::evaluate(&self.keys, batch)?;
        let rows = (!keys.is_empty())
            .then(|| self.converter.convert_columns(&keys))
            .transpose()?;
        let mut members: HashMap<&[u8], Vec<u32>> = HashMap::new();
        for i in 0..rows_in {
            let key = rows.as_ref().map_or(&[][..], |r| r.row(i).data());
            members.entry(key).or_default().push(i as u32);
        }
        let arguments = groups::arguments(&self.aggregates, batch)?;
        let mut touched: Vec<Box<[u8]>> = Vec::with_capacity(members.len());
        for (key, indices) in members {
            if !self.groups.contains_key(key) {
                let accumulators = groups::accumulators(&self.aggregates)?;
                self.groups.insert(key.into(), accumulators);
            }
            let accumulators = self
                .groups
                .get_mut(key)
                .ok_or_else(|| Error::Internal("a group vanished".into()))?;
            groups::fold(accumulators, &arguments, &indices)?;
            touched.push(key.into());
        }
        touched.sort_unstable();
        self.rows(&touched).map(Some)
    }

    /// Every group's current row.
    pub fn current(&mut self) -> Result<RecordBatch> {
        let keys: Vec<Box<[u8]>> = self.groups.keys().cloned().collect();
        self.rows(&keys)
    }

    /// The current row of the group whose one key reads as `key` (text cast to
    /// the key's type), if there is such a group.
    pub fn row_of(&mut self, key: &str) -> Result<Option<RecordBatch>> {
        let [key_type] = self.key_types.as_slice() else {
            return Err(Error::Invalid(
                "the totals are not grouped by one key".into(),
            ));
        };
        let text: arrow::array::ArrayRef = Arc::new(arrow::array::StringArray::from(vec![key]));
        let Ok(value) = arrow::compute::cast(&text, key_type) else {
            return Ok(None);
        };
        if value.is_null(0) {
            return Ok(None);
        }
        let rows = self.converter.convert_columns(&[value])?;
        let key: Box<[u8]> = rows.row(0).data().into();
        if !self.groups.contains_key(&key) {
            return Ok(None);
        }
        self.rows(&[key]).map(Some)
    }

    /// The current rows of the groups `keys`.
    fn rows(&mut self, keys: &[Box<[u8]>]) -> Result<RecordBatch> {
        let borrowed: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
        let columns = state::key_columns(&self.converter, &self.key_types, &borrowed)?;
        let mut values: Vec<Vec<ScalarValue>> =
            vec![Vec::with_capacity(keys.len()); self.aggregates.len()];
        for key in keys {
            let accumulators = self
                .groups
                .get_mut(key)
                .ok_or_else(|| Error::Internal("a group is missing".into()))?;
            for (column, accumulator) in values.iter_mut().zip(accumulators.iter_mut()) {
                column.push(accumulator.evaluate()?);
            }
        }
        groups::result_rows(columns, values, &self.schema, keys.len())
    }

    fn snapshot_schema(&self) -> Result<SchemaRef> {
        state::snapshot_schema(state::key_fields(&self.key_types), &self.aggregates)
    }

    /// Every group, a row each, for a checkpoint ([`crate::state`]).
    pub fn snapshot(&mut self) -> Result<RecordBatch> {
        let schema = self.snapshot_schema()?;
        let keys: Vec<&[u8]> = self.groups.keys().map(|k| &k[..]).collect();
        let mut columns = state::key_columns(&self.converter, &self.key_types, &keys)?;
        let count = keys.len();
        let mut states = state::StateColumns::new(state::state_fields(&self.aggregates)?);
        for accumulators in self.groups.values_mut() {
            states.push(accumulators)?;
        }
        columns.extend(states.finish()?);
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(count));
        Ok(RecordBatch::try_new_with_options(
            schema, columns, &options,
        )?)
    }

    /// The groups of `snapshot` (from [`RunningAggregate::snapshot`] of the same
    /// query), replacing any.
    pub fn restore(&mut self, snapshot: &RecordBatch) -> Result<()> {
        state::check_snapshot(snapshot, &*self.snapshot_schema()?)?;
        self.groups.clear();
        let width = self.key_types.len();
        let keys = &snapshot.columns()[..width];
        let states = &snapshot.columns()[width..];
        let rows = (!keys.is_empty())
            .then(|| self.converter.convert_columns(keys))
            .transpose()?;
        for row in 0..snapshot.num_rows() {
            let key: Box<[u8]> = rows.as_ref().map_or(&[][..], |r| r.row(row).data()).into();
            let accumulators = state::restore_accumulators(&self.aggregates, states, row)?;
            self.groups.insert(key, accumulators);
        }
        Ok(())
    }
}
