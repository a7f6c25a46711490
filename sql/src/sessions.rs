//! The batch form of `SESSION` windows: each event's session bounds in one pass over
//! the events ordered by partition columns and time.
//!
//! A window function partitioned by the `SESSION` partition columns costs DataFusion
//! a few microseconds per partition value (slicing, a new evaluator); over a stream
//! per entity that was most of a query (4 of 5 seconds on 5M events in 500K
//! streams). Here the window's partitions are instead a fixed number of hash
//! buckets of those columns ([`SessionBucket`]), ordered by the columns and then
//! time, and [`SessionBound`] walks a bucket once: a run of equal partition values
//! is one partition, and within it an event more than `gap` after the previous one
//! starts a new session.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, UInt64Array};
use arrow::compute::partition;
use arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::hash_utils::{RandomState, create_hashes};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{
    ColumnarValue, PartitionEvaluator, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
    WindowUDFImpl,
};

/// Buckets the events are spread over: enough to keep both cores busy after a
/// hash repartition, few enough that their per-partition cost is nothing.
pub const BUCKETS: u64 = 64;

/// `__session_bucket(column, …)`: a hash of the partition columns, in `0..BUCKETS`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SessionBucket {
    signature: Signature,
}

impl SessionBucket {
    pub fn new() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl Default for SessionBucket {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for SessionBucket {
    fn name(&self) -> &str {
        "__session_bucket"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::UInt64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let columns = ColumnarValue::values_to_arrays(&args.args)?;
        let mut hashes = vec![0u64; args.number_rows];
        create_hashes(&columns, &RandomState::with_seed(0), &mut hashes)?;
        let buckets: UInt64Array = hashes.into_iter().map(|h| h % BUCKETS).collect();
        Ok(ColumnarValue::Array(Arc::new(buckets)))
    }
}

/// Which bound of its session [`SessionBound`] gives for each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bound {
    /// The time of the session's first event, µs.
    Start,
    /// The time of the session's last event plus the gap, µs.
    End,
}

/// `__session_start(time_µs, column, …)` / `__session_end(…)`: over rows ordered by
/// the partition columns and then time, each row's session bound (null for a null
/// time). Every row of a partition value must be in the same window partition.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SessionBound {
    bound: Bound,
    gap_micros: i64,
    signature: Signature,
}

impl SessionBound {
    pub fn new(bound: Bound, gap_micros: i64) -> Self {
        Self {
            bound,
            gap_micros,
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl WindowUDFImpl for SessionBound {
    fn name(&self) -> &str {
        match self.bound {
            Bound::Start => "__session_start",
            Bound::End => "__session_end",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn partition_evaluator(
        &self,
        _args: PartitionEvaluatorArgs,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        Ok(Box::new(BoundEvaluator {
            bound: self.bound,
            gap_micros: self.gap_micros,
        }))
    }

    fn field(&self, field_args: WindowUDFFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(Field::new(
            field_args.name(),
            DataType::Int64,
            true,
        )))
    }
}

#[derive(Debug)]
struct BoundEvaluator {
    bound: Bound,
    gap_micros: i64,
}

impl PartitionEvaluator for BoundEvaluator {
    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        let Some((times, columns)) = values.split_first() else {
            return exec_err!("session bounds need the event time");
        };
        let Some(times) = times.as_primitive_opt::<Int64Type>() else {
            return exec_err!(
                "session bounds need the event time in µs, not {}",
                times.data_type()
            );
        };
        let runs: Vec<Range<usize>> = if columns.is_empty() {
            std::iter::once(0..num_rows).collect()
        } else {
            partition(columns)?.ranges()
        };
        let mut bounds = Vec::with_capacity(num_rows);
        for run in runs {
            self.sessions(times, run, &mut bounds);
        }
        Ok(Arc::new(Int64Array::from(bounds)))
    }
}

impl BoundEvaluator {
    /// The bounds of the rows `run` (one partition value, in time order, null times
    /// last), appended to `bounds`.
    fn sessions(&self, times: &Int64Array, run: Range<usize>, bounds: &mut Vec<Option<i64>>) {
        let mut i = run.start;
        while i < run.end {
            if times.is_null(i) {
                bounds.push(None);
                i += 1;
                continue;
            }
            let first = times.value(i);
            let mut last = first;
            let mut next = i + 1;
            while next < run.end
                && !times.is_null(next)
                && times.value(next) - last < self.gap_micros
            {
                last = times.value(next);
                next += 1;
            }
            let bound = match self.bound {
                Bound::Start => first,
                Bound::End => last + self.gap_micros,
            };
            bounds.extend(std::iter::repeat_n(Some(bound), next - i));
            i = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;

    fn bounds(bound: Bound, times: Vec<Option<i64>>, keys: Vec<&str>) -> Vec<Option<i64>> {
        let mut evaluator = BoundEvaluator {
            bound,
            gap_micros: 10,
        };
        let rows = times.len();
        let values: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(times)),
            Arc::new(StringArray::from(keys)),
        ];
        let out = evaluator
            .evaluate_all(&values, rows)
            .unwrap_or_else(|e| panic!("{e}"));
        out.as_primitive::<Int64Type>().iter().collect()
    }

    #[test]
    fn a_gap_of_at_least_the_gap_or_another_key_starts_a_session() {
        let times = vec![
            Some(0),
            Some(5),
            Some(14),
            Some(24),
            Some(25),
            Some(26),
            None,
        ];
        let keys = vec!["a", "a", "a", "a", "b", "b", "b"];
        assert_eq!(
            bounds(Bound::Start, times.clone(), keys.clone()),
            [
                Some(0),
                Some(0),
                Some(0),
                Some(24),
                Some(25),
                Some(25),
                None
            ]
        );
        assert_eq!(
            bounds(Bound::End, times, keys),
            [
                Some(24),
                Some(24),
                Some(24),
                Some(34),
                Some(36),
                Some(36),
                None
            ]
        );
    }

    #[test]
    fn buckets_are_in_range_and_follow_the_values() {
        let keys: ArrayRef = Arc::new(StringArray::from(vec!["a", "b", "a", "c"]));
        let args = ScalarFunctionArgs {
            args: vec![ColumnarValue::Array(keys)],
            arg_fields: vec![Arc::new(Field::new("k", DataType::Utf8, false))],
            number_rows: 4,
            return_field: Arc::new(Field::new("b", DataType::UInt64, false)),
            config_options: Arc::default(),
        };
        let ColumnarValue::Array(out) = SessionBucket::new()
            .invoke_with_args(args)
            .unwrap_or_else(|e| panic!("{e}"))
        else {
            panic!("an array of buckets")
        };
        let out = out.as_primitive::<arrow::datatypes::UInt64Type>();
        assert!(out.values().iter().all(|b| *b < BUCKETS));
        assert_eq!(out.value(0), out.value(2));
    }
}
