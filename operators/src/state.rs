//! Operator state as Arrow: how the windowed aggregates write their open groups into
//! a checkpoint and read them back.
//!
//! A snapshot is one `RecordBatch`, a row per open group: the group's key columns
//! (as Arrow arrays of their own types, not the row format, which is not stable
//! across versions), the operator's own columns (a session's bounds, say), then each
//! aggregate's state fields (`AggregateFunctionExpr::state_fields`) filled from
//! `Accumulator::state`. Restoring creates fresh accumulators and merges the saved
//! states into them (`Accumulator::merge_batch`): the path DataFusion itself takes to
//! combine partial aggregates, so every aggregate that runs in parallel restores.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, new_empty_array};
use arrow::compute::cast;
use arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use crate::error::{Error, Result};

/// The fields holding the aggregates' states, named `state_{aggregate}_{field}`.
pub(crate) fn state_fields(aggregates: &[Arc<AggregateFunctionExpr>]) -> Result<Vec<Field>> {
    let mut fields = Vec::new();
    for (i, aggregate) in aggregates.iter().enumerate() {
        for (j, field) in aggregate.state_fields()?.iter().enumerate() {
            fields.push(Field::new(
                format!("state_{i}_{j}"),
                field.data_type().clone(),
                true,
            ));
        }
    }
    Ok(fields)
}

/// A snapshot's schema: `leading` fields, then the aggregates' state fields.
pub(crate) fn snapshot_schema(
    leading: Vec<Field>,
    aggregates: &[Arc<AggregateFunctionExpr>],
) -> Result<SchemaRef> {
    let mut fields = leading;
    fields.extend(state_fields(aggregates)?);
    Ok(Arc::new(Schema::new(fields)))
}

/// Builds the state columns of a snapshot, one group's accumulators at a time.
pub(crate) struct StateColumns {
    values: Vec<Vec<ScalarValue>>,
    fields: Vec<Field>,
}

impl StateColumns {
    /// Columns typed as `fields` (from [`state_fields`]).
    pub(crate) fn new(fields: Vec<Field>) -> Self {
        Self {
            values: vec![Vec::new(); fields.len()],
            fields,
        }
    }

    /// Add one group's states.
    pub(crate) fn push(&mut self, accumulators: &mut [Box<dyn Accumulator>]) -> Result<()> {
        let mut column = 0;
        for accumulator in accumulators.iter_mut() {
            for value in accumulator.state()? {
                let slot = self
                    .values
                    .get_mut(column)
                    .ok_or_else(|| Error::Internal("an accumulator grew its state".into()))?;
                slot.push(value);
                column += 1;
            }
        }
        if column != self.fields.len() {
            return Err(Error::Internal("an accumulator shrank its state".into()));
        }
        Ok(())
    }

    /// The columns.
    pub(crate) fn finish(self) -> Result<Vec<ArrayRef>> {
        self.values
            .into_iter()
            .zip(&self.fields)
            .map(|(values, field)| {
                let array = if values.is_empty() {
                    new_empty_array(field.data_type())
                } else {
                    ScalarValue::iter_to_array(values)?
                };
                if array.data_type() == field.data_type() {
                    Ok(array)
                } else {
                    Ok(cast(&array, field.data_type())?)
                }
            })
            .collect()
    }
}

/// Arrays of `rows` (in `converter`'s row format) as columns of `types`; empty
/// columns when there are no rows.
pub(crate) fn key_columns(
    converter: &arrow::row::RowConverter,
    types: &[arrow::datatypes::DataType],
    rows: &[&[u8]],
) -> Result<Vec<ArrayRef>> {
    if rows.is_empty() || types.is_empty() {
        return Ok(types.iter().map(new_empty_array).collect());
    }
    let parser = converter.parser();
    Ok(converter.convert_rows(rows.iter().map(|r| parser.parse(r)))?)
}

/// The fields of key columns of `types`, named `key_{i}`.
pub(crate) fn key_fields(types: &[arrow::datatypes::DataType]) -> Vec<Field> {
    types
        .iter()
        .enumerate()
        .map(|(i, t)| Field::new(format!("key_{i}"), t.clone(), true))
        .collect()
}

/// Fresh accumulators for `aggregates` holding the states saved in row `row` of
/// `columns` (the state columns, in order).
pub(crate) fn restore_accumulators(
    aggregates: &[Arc<AggregateFunctionExpr>],
    columns: &[ArrayRef],
    row: usize,
) -> Result<Vec<Box<dyn Accumulator>>> {
    let mut next = 0;
    let mut out = Vec::with_capacity(aggregates.len());
    for aggregate in aggregates {
        let mut accumulator = aggregate.create_accumulator()?;
        let width = aggregate.state_fields()?.len();
        let state: Vec<ArrayRef> = columns
            .get(next..next + width)
            .ok_or_else(|| Error::Invalid("a checkpoint's state has too few columns".into()))?
            .iter()
            .map(|c| c.slice(row, 1))
            .collect();
        accumulator.merge_batch(&state)?;
        next += width;
        out.push(accumulator);
    }
    Ok(out)
}

/// Check that `batch` has the columns of `schema` (a checkpoint written by the same
/// pipeline), by name and type.
pub(crate) fn check_snapshot(batch: &RecordBatch, schema: &Schema) -> Result<()> {
    if crate::groups::same_columns(&batch.schema(), schema, true) {
        Ok(())
    } else {
        Err(Error::Invalid(
            "a checkpoint's state does not match the pipeline's operators".into(),
        ))
    }
}
