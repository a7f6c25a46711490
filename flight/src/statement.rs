//! Statement handles: what a ticket or a prepared statement handle carries.
//!
//! Handles are self-contained (the EventQL text and, once bound, the parameter row
//! as Arrow IPC), so the server keeps no per-statement state: nothing to leak when
//! a client never closes a statement, and any server can answer any ticket. The
//! tenant is never in a handle; it comes from each call's credentials.

use std::io::Cursor;

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use bytes::Bytes;
use datafusion::common::ScalarValue;

use crate::error::FlightError;

/// The first bytes of every handle, so a foreign one is recognised as such.
const MAGIC: &[u8; 4] = b"ASQ1";

/// An EventQL statement and its bound parameters.
#[derive(Debug, Clone)]
pub struct Statement {
    /// The EventQL text.
    pub sql: String,
    /// The bound parameter row (`$1`, `$2`... by column), if any.
    pub params: Option<RecordBatch>,
}

impl Statement {
    /// A statement without parameters.
    pub fn new(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            params: None,
        }
    }

    /// The handle: magic, SQL length (u32 LE), SQL, then the parameter row as an
    /// Arrow IPC stream when bound.
    pub fn encode(&self) -> Result<Bytes, FlightError> {
        let sql_len = u32::try_from(self.sql.len())
            .map_err(|_| FlightError::invalid("the statement is longer than 4 GiB"))?;
        let mut out = Vec::with_capacity(8 + self.sql.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&sql_len.to_le_bytes());
        out.extend_from_slice(self.sql.as_bytes());
        if let Some(params) = &self.params {
            let mut writer = StreamWriter::try_new(&mut out, &params.schema())?;
            writer.write(params)?;
            writer.finish()?;
        }
        Ok(out.into())
    }

    /// Read a handle made by [`encode`](Self::encode).
    pub fn decode(handle: &[u8]) -> Result<Self, FlightError> {
        let foreign = || FlightError::invalid("not a statement handle of this server");
        let rest = handle.strip_prefix(MAGIC.as_slice()).ok_or_else(foreign)?;
        let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(foreign)?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err(foreign());
        }
        let (sql, rest) = rest.split_at(len);
        let sql = std::str::from_utf8(sql).map_err(|_| foreign())?.to_owned();
        let params = if rest.is_empty() {
            None
        } else {
            let mut reader = StreamReader::try_new(Cursor::new(rest), None)?;
            reader.next().transpose()?
        };
        Ok(Self { sql, params })
    }

    /// The bound values, `$1` first.
    pub fn param_values(&self) -> Result<Vec<ScalarValue>, FlightError> {
        let Some(params) = &self.params else {
            return Ok(Vec::new());
        };
        params
            .columns()
            .iter()
            .map(|column| ScalarValue::try_from_array(column, 0))
            .collect::<Result<_, _>>()
            .map_err(|e| FlightError::invalid(format!("reading the parameters: {e}")))
    }
}

/// Check a parameter batch a client bound: exactly one row.
pub fn one_row(params: RecordBatch) -> Result<RecordBatch, FlightError> {
    match params.num_rows() {
        1 => Ok(params),
        n => Err(FlightError::invalid(format!(
            "a query binds one row of parameters, not {n}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn handles_round_trip_and_foreign_ones_are_refused() {
        let plain = Statement::new("SELECT 1");
        let decoded = Statement::decode(&plain.encode().unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(decoded.sql, "SELECT 1");
        assert!(decoded.params.is_none());

        let schema = Arc::new(Schema::new(vec![
            Field::new("$1", DataType::Utf8, true),
            Field::new("$2", DataType::Int64, true),
        ]));
        let params = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["order-1"])),
                Arc::new(Int64Array::from(vec![7])),
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let bound = Statement {
            sql: "SELECT * FROM events WHERE entity_id = $1 AND version > $2".into(),
            params: Some(params),
        };
        let decoded = Statement::decode(&bound.encode().unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(decoded.sql, bound.sql);
        assert_eq!(
            decoded.param_values().unwrap_or_else(|e| panic!("{e}")),
            vec![ScalarValue::from("order-1"), ScalarValue::Int64(Some(7))]
        );

        for foreign in [&b""[..], b"SELECT 1", b"ASQ1\xff\xff\xff\xffx"] {
            assert!(Statement::decode(foreign).is_err());
        }
    }
}
