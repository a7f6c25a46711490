//! `entity_state(entity_id [, as_of])`: an entity's state, the JSON merge of its
//! events' payloads in version order, as [`EventStore::entity_state`] computes it
//! (from the newest snapshot on). With `as_of`, only events ingested at or before
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
        let state = self
            .store
            .entity_state_blocking(&self.tenant, entity_id, as_of)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(state.map(|s| s.state.to_string()))
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
