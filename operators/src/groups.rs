//! What the grouping operators ([`crate::window_aggregate`],
//! [`crate::session_aggregate`], [`crate::running_aggregate`]) share: evaluating keys
//! and aggregate arguments on a batch, fresh accumulators, folding rows into them, and
//! result rows in the schema of the aggregate they stand for.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, UInt32Array, new_empty_array};
use arrow::compute::{cast, take};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use crate::error::Result;

/// The types of the key expressions `keys` over `input`, and a converter of those
/// keys to and from Arrow's row format.
pub(crate) fn key_converter<'a>(
    keys: impl Iterator<Item = &'a Arc<dyn PhysicalExpr>>,
    input: &Schema,
) -> Result<(Vec<DataType>, RowConverter)> {
    let types = keys
        .map(|k| Ok(k.data_type(input)?))
        .collect::<Result<Vec<_>>>()?;
    let converter = RowConverter::new(types.iter().cloned().map(SortField::new).collect())?;
    Ok((types, converter))
}

/// `exprs` evaluated on every row of `batch`.
pub(crate) fn evaluate(
    exprs: &[Arc<dyn PhysicalExpr>],
    batch: &RecordBatch,
) -> Result<Vec<ArrayRef>> {
    Ok(exprs
        .iter()
        .map(|e| e.evaluate(batch)?.into_array(batch.num_rows()))
        .collect::<datafusion::common::Result<Vec<_>>>()?)
}

/// Each aggregate's arguments evaluated on `batch`.
pub(crate) fn arguments(
    aggregates: &[Arc<AggregateFunctionExpr>],
    batch: &RecordBatch,
) -> Result<Vec<Vec<ArrayRef>>> {
    aggregates
        .iter()
        .map(|a| evaluate(&a.expressions(), batch))
        .collect()
}

/// A fresh accumulator per aggregate.
pub(crate) fn accumulators(
    aggregates: &[Arc<AggregateFunctionExpr>],
) -> Result<Vec<Box<dyn Accumulator>>> {
    Ok(aggregates
        .iter()
        .map(|a| a.create_accumulator())
        .collect::<datafusion::common::Result<Vec<_>>>()?)
}

/// Fold the rows `indices` of `arguments` (from [`arguments`]) into `accumulators`.
pub(crate) fn fold(
    accumulators: &mut [Box<dyn Accumulator>],
    arguments: &[Vec<ArrayRef>],
    indices: &[u32],
) -> Result<()> {
    let indices = UInt32Array::from(indices.to_vec());
    for (accumulator, values) in accumulators.iter_mut().zip(arguments) {
        let values = values
            .iter()
            .map(|v| take(v, &indices, None))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        accumulator.update_batch(&values)?;
    }
    Ok(())
}

/// `rows` result rows: the key `columns`, then a column per aggregate from `values`
/// (one value per row), each cast to its field of `schema`.
pub(crate) fn result_rows(
    mut columns: Vec<ArrayRef>,
    values: Vec<Vec<ScalarValue>>,
    schema: &SchemaRef,
    rows: usize,
) -> Result<RecordBatch> {
    let keys = columns.len();
    for (column, field) in values.into_iter().zip(schema.fields().iter().skip(keys)) {
        columns.push(if column.is_empty() {
            new_empty_array(field.data_type())
        } else {
            ScalarValue::iter_to_array(column)?
        });
    }
    let columns = columns
        .into_iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column)
            } else {
                cast(&column, field.data_type())
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &options,
    )?)
}

/// Whether `found` has the columns of `expected`, by type (and by name when `names`).
pub(crate) fn same_columns(found: &Schema, expected: &Schema, names: bool) -> bool {
    found.fields().len() == expected.fields().len()
        && found
            .fields()
            .iter()
            .zip(expected.fields())
            .all(|(a, b)| a.data_type() == b.data_type() && (!names || a.name() == b.name()))
}
