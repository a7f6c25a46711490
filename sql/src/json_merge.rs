//! `json_merge_agg(payload)`: the JSON merge (RFC 7396) of a group's payloads, in the
//! order its rows arrive: an entity's state when the rows are its events in version
//! order.
//!
//! In a pipeline or projection the rows arrive in log order, which for one entity is
//! version order, so `json_merge_agg(payload) … GROUP BY entity_id` is each entity's
//! state as `entity_state(entity_id)` computes it. A batch query reads its rows in no
//! promised order; there, `entity_state` is the function to use. A payload that is
//! not JSON is an error; `NULL` payloads are skipped; a group of none merges to `NULL`.

use std::sync::Arc;

use allsource_engine::patch::merge_patch;
use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};
use serde_json::Value;

/// The field metadata (key, value) that marks a text column as JSON text.
pub const JSON_TEXT: (&str, &str) = ("allsource.content", "json");

/// The `json_merge_agg` aggregate.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JsonMergeAgg {
    signature: Signature,
}

impl JsonMergeAgg {
    /// The aggregate.
    pub fn new() -> Self {
        Self {
            signature: Signature::uniform(
                1,
                vec![DataType::Utf8, DataType::LargeUtf8, DataType::Utf8View],
                Volatility::Immutable,
            ),
        }
    }
}

impl Default for JsonMergeAgg {
    fn default() -> Self {
        Self::new()
    }
}

impl AggregateUDFImpl for JsonMergeAgg {
    fn name(&self) -> &str {
        "json_merge_agg"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    /// Text marked as JSON ([`JSON_TEXT`]), so that clients can show it as JSON.
    fn return_field(&self, _arg_fields: &[FieldRef]) -> Result<FieldRef> {
        let metadata = [(JSON_TEXT.0.to_string(), JSON_TEXT.1.to_string())].into();
        Ok(Arc::new(
            Field::new(self.name(), DataType::Utf8, true).with_metadata(metadata),
        ))
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(JsonMerge { state: None }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[merged]", args.name),
            DataType::Utf8,
            true,
        ))])
    }
}

/// A group's merged payloads so far; `None` before the first.
#[derive(Debug)]
struct JsonMerge {
    state: Option<Value>,
}

impl JsonMerge {
    /// Merge every non-null text of `texts` in order.
    fn merge_texts(&mut self, texts: &ArrayRef) -> Result<()> {
        let texts = cast(texts, &DataType::Utf8)?;
        for text in texts.as_string::<i32>().iter().flatten() {
            let patch: Value = match serde_json::from_str(text) {
                Ok(patch) => patch,
                Err(e) => return exec_err!("json_merge_agg: a payload is not JSON: {e}"),
            };
            let state = self.state.get_or_insert(Value::Null);
            merge_patch(state, &patch);
        }
        Ok(())
    }

    fn text(&self) -> ScalarValue {
        ScalarValue::Utf8(self.state.as_ref().map(Value::to_string))
    }
}

impl Accumulator for JsonMerge {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        match values.first() {
            Some(texts) => self.merge_texts(texts),
            None => exec_err!("json_merge_agg takes one argument"),
        }
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(self.text())
    }

    fn size(&self) -> usize {
        // The text is a fair measure of the tree.
        std::mem::size_of_val(self) + self.state.as_ref().map_or(0, |v| v.to_string().len())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.text()])
    }

    /// Merge other states in, in order. A merged state drops the `null` members that
    /// removed keys, so merging two partial states equals merging their events only
    /// when the first is empty: the case of restoring a checkpointed state.
    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        match states.first() {
            Some(texts) if texts.null_count() < texts.len() => self.merge_texts(texts),
            Some(_) => Ok(()),
            None => exec_err!("json_merge_agg: a state without its column"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;

    fn merged(batches: &[&[Option<&str>]]) -> Result<ScalarValue> {
        let mut merge = JsonMerge { state: None };
        for texts in batches {
            let array: ArrayRef = Arc::new(StringArray::from(texts.to_vec()));
            merge.update_batch(&[array])?;
        }
        merge.evaluate()
    }

    #[test]
    fn merges_in_order_and_removes_null_members() -> Result<()> {
        let value = merged(&[
            &[Some(r#"{"a":1,"b":{"c":2}}"#), None],
            &[Some(r#"{"b":{"d":3},"a":null}"#)],
        ])?;
        assert_eq!(
            value,
            ScalarValue::Utf8(Some(r#"{"b":{"c":2,"d":3}}"#.into()))
        );
        assert_eq!(merged(&[&[None]])?, ScalarValue::Utf8(None));
        assert!(merged(&[&[Some("{oops")]]).is_err());
        Ok(())
    }

    #[test]
    fn a_restored_state_goes_on_where_it_was() -> Result<()> {
        let mut first = JsonMerge { state: None };
        let events: ArrayRef = Arc::new(StringArray::from(vec![r#"{"n":1,"x":true}"#]));
        first.update_batch(&[events])?;
        let saved = first.state()?[0].to_array()?;
        let mut restored = JsonMerge { state: None };
        restored.merge_batch(&[saved])?;
        let more: ArrayRef = Arc::new(StringArray::from(vec![r#"{"n":2,"x":null}"#]));
        restored.update_batch(&[more])?;
        assert_eq!(
            restored.evaluate()?,
            ScalarValue::Utf8(Some(r#"{"n":2}"#.into()))
        );
        Ok(())
    }
}
