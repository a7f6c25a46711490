//! `entity_state(entity_id [, as_of])`: an entity's state, the JSON merge of its
//! events' payloads in version order.
//!
//! Each payload is applied to the state so far as a JSON merge patch (RFC 7396):
//! objects merge key by key, recursively; a `null` value removes the key; any other
//! value replaces what was there. With `as_of`, only events ingested at or before
//! that time count (the same notion of time as `AS OF TIMESTAMP`). A stream with no
//! such events has the state `NULL`.

use std::sync::Arc;

use allsource_engine::EventStore;
use arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use datafusion::common::{Result, exec_err};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use serde_json::Value;

/// The `entity_state` function of one tenant's queries.
#[derive(Debug)]
pub struct EntityState {
    store: EventStore,
    tenant: String,
    signature: Signature,
}

impl EntityState {
    /// `entity_state` over `tenant`'s streams.
    pub fn new(store: EventStore, tenant: impl Into<String>) -> Self {
        Self {
            store,
            tenant: tenant.into(),
            signature: Signature::variadic_any(Volatility::Stable),
        }
    }

    fn state_of(&self, entity_id: &str, as_of: Option<i64>) -> Result<Option<String>> {
        let events = self
            .store
            .read_stream_blocking(&self.tenant, entity_id, 1, usize::MAX)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let mut state: Option<Value> = None;
        for event in events
            .iter()
            .filter(|e| as_of.is_none_or(|t| e.ingested_at_micros <= t))
        {
            let patch: Value = serde_json::from_str(&event.payload).map_err(|e| {
                DataFusionError::Execution(format!(
                    "payload of {entity_id} v{}: {e}",
                    event.version
                ))
            })?;
            merge_patch(state.get_or_insert(Value::Null), &patch);
        }
        Ok(state.map(|s| s.to_string()))
    }
}

// Two instances are the same function when they serve the same tenant (a session
// holds one store).
impl PartialEq for EntityState {
    fn eq(&self, other: &Self) -> bool {
        self.tenant == other.tenant
    }
}

impl Eq for EntityState {}

impl std::hash::Hash for EntityState {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.tenant.hash(state);
    }
}

/// Apply `patch` to `target` as an RFC 7396 merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(entries) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(map) = target {
        for (key, value) in entries {
            if value.is_null() {
                map.remove(key);
            } else {
                merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

impl ScalarUDFImpl for EntityState {
    fn name(&self) -> &str {
        "entity_state"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        if args.is_empty() || args.len() > 2 {
            return exec_err!("entity_state(entity_id [, as_of]) takes one or two arguments");
        }
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let entity = arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
        let entity = entity.as_string::<i32>();
        let as_of: Option<ArrayRef> = match arrays.get(1) {
            Some(a) => Some(arrow::compute::cast(
                a,
                &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            )?),
            None => None,
        };
        let as_of = as_of
            .as_ref()
            .map(|a| a.as_primitive::<TimestampMicrosecondType>());
        let mut out = StringBuilder::new();
        for row in 0..rows.min(entity.len()) {
            if entity.is_null(row) {
                out.append_null();
                continue;
            }
            let cutoff = match as_of {
                Some(a) if a.is_null(row) => {
                    out.append_null();
                    continue;
                }
                Some(a) => Some(a.value(row)),
                None => None,
            };
            out.append_option(self.state_of(entity.value(row), cutoff)?);
        }
        let array: ArrayRef = Arc::new(out.finish());
        Ok(ColumnarValue::Array(array))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut state = Value::Null;
        for patch in [
            r#"{"status":"placed","items":{"a":1,"b":2},"note":"x"}"#,
            r#"{"status":"paid","items":{"b":null,"c":3},"note":null}"#,
        ] {
            let patch: Value = serde_json::from_str(patch).unwrap_or_default();
            merge_patch(&mut state, &patch);
        }
        assert_eq!(
            state,
            serde_json::json!({"status":"paid","items":{"a":1,"c":3}})
        );
        merge_patch(&mut state, &serde_json::json!([1, 2]));
        assert_eq!(state, serde_json::json!([1, 2]));
    }
}
