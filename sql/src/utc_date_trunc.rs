//! `date_trunc` on UTC timestamps by plain arithmetic.
//!
//! Event times are timestamps in UTC. The built-in `date_trunc` truncates a value
//! with a time zone through a calendar conversion per row, UTC included, where a day
//! or a month boundary needs no zone rules at all. On `GROUP BY DATE_TRUNC('day',
//! timestamp)` over 10M events that conversion was most of the query. This function
//! replaces `date_trunc`: it hands a UTC timestamp to the built-in function as the
//! same instant without a zone (truncated by arithmetic there), then labels the
//! result UTC again. Any other input goes to the built-in function unchanged.

use std::sync::Arc;

use arrow::array::make_array;
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};

/// `date_trunc`, with UTC timestamps truncated as zone-less ones.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct UtcDateTrunc {
    builtin: Arc<ScalarUDF>,
}

impl UtcDateTrunc {
    /// The function, wrapping the built-in `date_trunc`.
    pub fn new() -> Self {
        Self {
            builtin: datafusion::functions::datetime::date_trunc(),
        }
    }
}

impl Default for UtcDateTrunc {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for UtcDateTrunc {
    fn name(&self) -> &str {
        self.builtin.name()
    }

    fn aliases(&self) -> &[String] {
        self.builtin.aliases()
    }

    fn signature(&self) -> &Signature {
        self.builtin.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.builtin.inner().return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.builtin.return_field_from_args(args)
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let zone = match args.args.get(1).map(ColumnarValue::data_type) {
            Some(DataType::Timestamp(_, Some(zone))) if is_utc(&zone) => zone,
            _ => return self.builtin.invoke_with_args(args),
        };
        let value = std::mem::replace(&mut args.args[1], ColumnarValue::Scalar(ScalarValue::Null));
        args.args[1] = with_zone(value, None)?;
        if let Some(field) = args.arg_fields.get_mut(1) {
            *field = without_zone(field);
        }
        args.return_field = without_zone(&args.return_field);
        with_zone(self.builtin.invoke_with_args(args)?, Some(zone))
    }

    fn output_ordering(&self, input: &[ExprProperties]) -> Result<SortProperties> {
        self.builtin.output_ordering(input)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.builtin.documentation()
    }
}

/// A zone that is UTC under another name or none.
fn is_utc(zone: &str) -> bool {
    let zone = zone.trim();
    ["UTC", "Etc/UTC", "Z", "+00:00", "+0000", "+00"]
        .iter()
        .any(|utc| zone.eq_ignore_ascii_case(utc))
}

fn without_zone(field: &FieldRef) -> FieldRef {
    match field.data_type() {
        DataType::Timestamp(unit, Some(_)) => Arc::new(
            Field::new(
                field.name(),
                DataType::Timestamp(*unit, None),
                field.is_nullable(),
            )
            .with_metadata(field.metadata().clone()),
        ),
        _ => Arc::clone(field),
    }
}

/// `value`, a timestamp, labelled with `zone`: the same instants, no values change.
fn with_zone(value: ColumnarValue, zone: Option<Arc<str>>) -> Result<ColumnarValue> {
    Ok(match value {
        ColumnarValue::Array(array) => match array.data_type() {
            DataType::Timestamp(unit, _) => {
                let data = array
                    .to_data()
                    .into_builder()
                    .data_type(DataType::Timestamp(*unit, zone))
                    .build()?;
                ColumnarValue::Array(make_array(data))
            }
            _ => ColumnarValue::Array(array),
        },
        ColumnarValue::Scalar(scalar) => ColumnarValue::Scalar(match scalar {
            ScalarValue::TimestampSecond(v, _) => ScalarValue::TimestampSecond(v, zone),
            ScalarValue::TimestampMillisecond(v, _) => ScalarValue::TimestampMillisecond(v, zone),
            ScalarValue::TimestampMicrosecond(v, _) => ScalarValue::TimestampMicrosecond(v, zone),
            ScalarValue::TimestampNanosecond(v, _) => ScalarValue::TimestampNanosecond(v, zone),
            other => other,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, TimestampMicrosecondArray};
    use arrow::datatypes::{TimeUnit, TimestampMicrosecondType};
    use datafusion::config::ConfigOptions;

    const DAY: i64 = 86_400_000_000;

    fn truncate(function: &dyn ScalarUDFImpl, unit: &str, values: &[i64], zone: &str) -> Vec<i64> {
        let array = TimestampMicrosecondArray::from(values.to_vec()).with_timezone(zone);
        let field = Arc::new(Field::new("t", array.data_type().clone(), false));
        let args = ScalarFunctionArgs {
            args: vec![
                ColumnarValue::Scalar(ScalarValue::Utf8(Some(unit.into()))),
                ColumnarValue::Array(Arc::new(array)),
            ],
            arg_fields: vec![
                Arc::new(Field::new("u", DataType::Utf8, false)),
                Arc::clone(&field),
            ],
            number_rows: values.len(),
            return_field: field,
            config_options: Arc::new(ConfigOptions::default()),
        };
        let ColumnarValue::Array(out) = function
            .invoke_with_args(args)
            .unwrap_or_else(|e| panic!("{e}"))
        else {
            panic!("an array in, an array out");
        };
        assert_eq!(
            out.data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some(zone.into())),
            "the zone is kept"
        );
        out.as_primitive::<TimestampMicrosecondType>()
            .values()
            .to_vec()
    }

    /// The same results as the built-in function, for UTC and for other zones,
    /// across granularities and around the epoch.
    #[test]
    fn matches_the_builtin_function() {
        let values = [
            0,
            1,
            -1,
            DAY - 1,
            19_000 * DAY + 12_345_678_901,
            -400 * DAY - 7,
            20_000 * DAY + DAY / 2,
        ];
        let ours = UtcDateTrunc::new();
        let builtin = datafusion::functions::datetime::date_trunc();
        for zone in ["UTC", "+00:00", "Europe/Paris"] {
            for unit in [
                "second", "minute", "hour", "day", "week", "month", "quarter", "year",
            ] {
                assert_eq!(
                    truncate(&ours, unit, &values, zone),
                    truncate(builtin.inner().as_ref(), unit, &values, zone),
                    "{unit} in {zone}"
                );
            }
        }
        assert_eq!(truncate(&ours, "day", &[DAY + 5], "UTC"), vec![DAY]);
    }
}
