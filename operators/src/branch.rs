//! `Branches`: route a pipeline's result rows to several tables by predicate.
//!
//! ```sql
//! CREATE PIPELINE orders_by_region
//!   WITH (branch_us = 'country = ''US''', branch_eu = 'region = ''EU''', branch_rest = 'true')
//!   AS SELECT …
//! ```
//!
//! Input: the pipeline's result rows. Output: for each branch, in the order written,
//! the rows its condition holds for and no earlier branch's did (a condition that is
//! null counts as false), so each row goes to at most one branch; `'true'` as the last
//! condition takes every row the others left. Each branch is a table named
//! `<pipeline>_<branch>`, read like the pipeline's own table, and a stream of updates
//! for subscribers. The pipeline's own table keeps every row.
//!
//! Routing is a pure function of a row, so a branch's table is its pipeline's table
//! routed: it holds exactly the rows of that table the branch takes, after a restart
//! as before it, and needs no state or checkpoint of its own.

use std::sync::Arc;

use arrow::array::{Array, BooleanArray, RecordBatch};
use arrow::compute::{and_not, filter_record_batch, or};
use datafusion::physical_expr::PhysicalExpr;

use crate::error::{Error, Result};

/// One branch, as written: its name and its condition over the result columns.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BranchSpec {
    /// The branch's name: its table is `<pipeline>_<name>`.
    pub name: String,
    /// An EventQL condition over the pipeline's result columns.
    pub when: String,
}

/// A pipeline's branches, compiled against its result schema.
#[derive(Debug, Default)]
pub struct Branches {
    names: Vec<String>,
    conditions: Vec<Arc<dyn PhysicalExpr>>,
}

impl Branches {
    /// Branches of these names and compiled conditions, in routing order.
    pub fn new(branches: Vec<(String, Arc<dyn PhysicalExpr>)>) -> Self {
        let (names, conditions) = branches.into_iter().unzip();
        Self { names, conditions }
    }

    /// The branches' names, in routing order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The index of the branch called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// The rows of `batch` that go to branch `index`.
    pub fn route(&self, batch: &RecordBatch, index: usize) -> Result<RecordBatch> {
        let mut taken: Option<BooleanArray> = None;
        for (i, condition) in self.conditions.iter().enumerate().take(index + 1) {
            let holds = holds(condition, batch)?;
            if i == index {
                let mine = match &taken {
                    None => holds,
                    Some(taken) => and_not(&holds, taken)?,
                };
                return Ok(filter_record_batch(batch, &mine)?);
            }
            taken = Some(match taken {
                None => holds,
                Some(taken) => or(&taken, &holds)?,
            });
        }
        Err(Error::Internal(format!("no branch {index}")))
    }
}

/// Where `condition` holds on `batch`'s rows (null: it does not).
fn holds(condition: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<BooleanArray> {
    let value = condition.evaluate(batch)?.into_array(batch.num_rows())?;
    let Some(flags) = value.as_any().downcast_ref::<BooleanArray>() else {
        if value.null_count() == value.len() {
            return Ok(BooleanArray::from(vec![false; value.len()]));
        }
        return Err(Error::Internal(format!(
            "a branch condition gave {} values",
            value.data_type()
        )));
    };
    if flags.null_count() == 0 {
        return Ok(flags.clone());
    }
    Ok(flags.iter().map(|f| Some(f == Some(true))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
    use datafusion::scalar::ScalarValue;

    fn above(limit: i64) -> Arc<dyn PhysicalExpr> {
        Arc::new(BinaryExpr::new(
            Arc::new(Column::new("n", 0)),
            Operator::Gt,
            Arc::new(Literal::new(ScalarValue::Int64(Some(limit)))),
        ))
    }

    fn values(batch: &RecordBatch) -> Vec<Option<i64>> {
        batch
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .iter()
            .collect()
    }

    #[test]
    fn each_row_goes_to_the_first_branch_that_takes_it() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let n = Int64Array::from(vec![Some(1), Some(5), Some(20), None, Some(11)]);
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(n)]).unwrap_or_else(|e| panic!("{e}"));
        let everything: Arc<dyn PhysicalExpr> =
            Arc::new(Literal::new(ScalarValue::Boolean(Some(true))));
        let branches = Branches::new(vec![
            ("big".into(), above(10)),
            ("middle".into(), above(3)),
            ("rest".into(), everything),
        ]);
        let routed: Vec<Vec<Option<i64>>> = (0..3)
            .map(|i| values(&branches.route(&batch, i).unwrap_or_else(|e| panic!("{e}"))))
            .collect();
        assert_eq!(routed[0], vec![Some(20), Some(11)]);
        assert_eq!(routed[1], vec![Some(5)]);
        // A null condition is false: the null row falls through to the last branch.
        assert_eq!(routed[2], vec![Some(1), None]);
        assert_eq!(branches.index_of("middle"), Some(1));
    }
}
