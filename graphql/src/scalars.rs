//! The schema's own scalars: `DateTime` (RFC 3339 in UTC, or a plain date) and the
//! opaque page cursors.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};

/// A point in time, microseconds since the Unix epoch. Read as RFC 3339 (`2025-01-15T10:00:00Z`,
/// any offset) or a plain date (`2025-01-15`, midnight UTC); written as RFC 3339 in UTC
/// with microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime(pub i64);

#[Scalar(name = "DateTime")]
impl ScalarType for DateTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(text) => parse_time(text)
                .map(DateTime)
                .map_err(InputValueError::custom),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(render_time(self.0))
    }
}

/// RFC 3339 or `YYYY-MM-DD` as microseconds since the Unix epoch.
pub fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(time.timestamp_micros());
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|midnight| midnight.and_utc().timestamp_micros())
        .ok_or_else(|| {
            format!(
                "{text:?} is not a time: use RFC 3339 (2025-01-15T10:00:00Z) or a date (2025-01-15)"
            )
        })
}

/// Microseconds since the Unix epoch as RFC 3339 in UTC.
pub fn render_time(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_else(|| micros.to_string())
}

/// A page cursor: where the previous page ended. Clients pass it back as `after`
/// and must not read anything into its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// After this log position.
    Position(u64),
    /// After this (event time, position), for the event-time orders.
    Time(i64, u64),
    /// After this stream version.
    Version(u64),
}

impl Cursor {
    /// The cursor's text.
    pub fn encode(self) -> String {
        match self {
            Cursor::Position(p) => format!("p{p}"),
            Cursor::Time(t, p) => format!("t{t}.{p}"),
            Cursor::Version(v) => format!("v{v}"),
        }
    }

    /// A cursor this server gave out.
    pub fn decode(text: &str) -> Result<Cursor, String> {
        let invalid = || format!("cursor {text:?} is not one this server gave out");
        let number = |digits: &str| digits.parse::<u64>().map_err(|_| invalid());
        match text.split_at_checked(1) {
            Some(("p", rest)) => number(rest).map(Cursor::Position),
            Some(("v", rest)) => number(rest).map(Cursor::Version),
            Some(("t", rest)) => {
                let (time, position) = rest.split_once('.').ok_or_else(invalid)?;
                let time = time.parse::<i64>().map_err(|_| invalid())?;
                Ok(Cursor::Time(time, number(position)?))
            }
            _ => Err(invalid()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_read_back_and_foreign_text_is_refused() {
        for cursor in [
            Cursor::Position(0),
            Cursor::Position(u64::MAX),
            Cursor::Time(-5, 7),
            Cursor::Time(1_700_000_000_000_000, 42),
            Cursor::Version(3),
        ] {
            assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
        }
        for bad in ["", "p", "x12", "p-1", "t12", "t1.x", "v1.5", "é"] {
            assert!(Cursor::decode(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn times_read_as_rfc3339_or_a_date() {
        assert_eq!(parse_time("1970-01-02"), Ok(86_400_000_000));
        assert_eq!(parse_time("1970-01-01T01:00:00+01:00"), Ok(0));
        assert_eq!(render_time(1), "1970-01-01T00:00:00.000001Z");
        assert!(parse_time("yesterday").is_err());
    }
}
