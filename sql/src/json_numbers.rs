//! `payload->>'k'` as a number where a number is meant, without a cast.
//!
//! `->>` returns text (as in PostgreSQL), so `SUM(payload->>'amount')` or
//! `payload->>'qty' * 2` or `payload->>'total' > 100` would sum text, fail to
//! multiply, or compare as text. This planner sees such uses as they are planned and
//! reads the value as a float instead (`json_get_float`, which reads integers too):
//! arguments of numeric aggregates (sum, avg, stddev, var, …), operands of
//! arithmetic, and operands compared with a numeric literal. An explicit cast
//! (`(payload->>'k')::int`) is left as written.

use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{
    ExprPlanner, PlannerResult, RawAggregateExpr, RawBinaryExpr,
};
use datafusion::sql::sqlparser::ast::BinaryOperator;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct JsonNumbers;

const NUMERIC_AGGREGATES: [&str; 9] = [
    "sum",
    "avg",
    "mean",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "var",
    "var_pop",
    "var_samp",
];

/// The JSON access functions `->` and `->>` plan to.
fn json_access(expr: &Expr) -> Option<&ScalarFunction> {
    match expr {
        Expr::Alias(alias) => json_access(&alias.expr),
        Expr::ScalarFunction(f)
            if matches!(f.func.name(), "json_as_text" | "json_get" | "json_get_str") =>
        {
            Some(f)
        }
        _ => None,
    }
}

/// `expr` read as a float, if it is a JSON access.
fn as_number(expr: Expr) -> Expr {
    match json_access(&expr) {
        Some(f) => Expr::ScalarFunction(ScalarFunction {
            func: datafusion_functions_json::udfs::json_get_float_udf(),
            args: f.args.clone(),
        }),
        None => expr,
    }
}

fn is_numeric_literal(expr: &Expr) -> bool {
    match expr {
        Expr::Literal(value, _) => matches!(
            value,
            ScalarValue::Int8(_)
                | ScalarValue::Int16(_)
                | ScalarValue::Int32(_)
                | ScalarValue::Int64(_)
                | ScalarValue::UInt8(_)
                | ScalarValue::UInt16(_)
                | ScalarValue::UInt32(_)
                | ScalarValue::UInt64(_)
                | ScalarValue::Float32(_)
                | ScalarValue::Float64(_)
                | ScalarValue::Decimal128(..)
        ),
        Expr::Negative(inner) => is_numeric_literal(inner),
        _ => false,
    }
}

impl ExprPlanner for JsonNumbers {
    fn plan_binary_op(
        &self,
        mut expr: RawBinaryExpr,
        _schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        let arithmetic = matches!(
            expr.op,
            BinaryOperator::Plus
                | BinaryOperator::Minus
                | BinaryOperator::Multiply
                | BinaryOperator::Divide
                | BinaryOperator::Modulo
        );
        let comparison = matches!(
            expr.op,
            BinaryOperator::Eq
                | BinaryOperator::NotEq
                | BinaryOperator::Lt
                | BinaryOperator::LtEq
                | BinaryOperator::Gt
                | BinaryOperator::GtEq
        );
        let numeric_other_side = |e: &Expr| arithmetic || (comparison && is_numeric_literal(e));
        if json_access(&expr.left).is_some() && numeric_other_side(&expr.right) {
            expr.left = as_number(expr.left);
        }
        if json_access(&expr.right).is_some() && numeric_other_side(&expr.left) {
            expr.right = as_number(expr.right);
        }
        Ok(PlannerResult::Original(expr))
    }

    fn plan_aggregate(
        &self,
        mut expr: RawAggregateExpr,
    ) -> Result<PlannerResult<RawAggregateExpr>> {
        if NUMERIC_AGGREGATES.contains(&expr.func.name()) {
            expr.args = expr.args.into_iter().map(as_number).collect();
        }
        Ok(PlannerResult::Original(expr))
    }
}
