//! Live tails: a DoGet ticket that streams a tenant's events from a position on, or a
//! pipeline's result rows as they are emitted, forever.
//!
//! The ticket is JSON text:
//!
//! ```text
//! {"tail": {"from": 0, "event_type": ["order.placed"], "entity_id": "order-7"}}
//! {"pipeline": {"name": "hourly_orders"}}
//! ```
//!
//! A pipeline tail carries the pipeline's result columns: each window's rows once
//! the watermark passes its end, and for totals (projections) each key's row every
//! time it changes, from the moment the tail starts. The rows before that are in the
//! pipeline's table. A tail that falls more than 1024 result batches behind ends
//! with `RESOURCE_EXHAUSTED`; the client reads the table and tails again.
//!
//! Every field of `tail` is optional: without `from` the tail starts at the newest
//! event; `event_type` is one type or a list. Batches carry the columns of
//! [`allsource_engine::event_schema`], in position order. The tail follows a store
//! [`Subscription`](allsource_engine::Subscription) and reads the next batch only
//! when the client has taken the last one, so a slow client slows its own tail and
//! the server holds at most one batch for it.

use allsource_engine::{
    EventStore, RecordedEvent, SubscriptionFilter, event_schema, events_to_batch,
};
use allsource_operators::Pipelines;
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use crate::error::FlightError;

/// A tail ticket's body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailRequest {
    /// The first position to deliver (default: the newest event's next position).
    pub from: Option<u64>,
    /// Only these event types.
    #[serde(default)]
    pub event_type: OneOrMany,
    /// Only this stream.
    pub entity_id: Option<String>,
}

/// One string or a list of them.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// None given.
    #[default]
    None,
    /// One.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// A pipeline tail ticket's body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineTail {
    /// The pipeline (or projection) whose results to follow.
    pub name: String,
}

/// What a JSON ticket asks for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Tail {
    /// `{"tail": {…}}`: events.
    #[serde(rename = "tail")]
    Events(TailRequest),
    /// `{"pipeline": {"name"}}`: a pipeline's results.
    Pipeline(PipelineTail),
}

/// The tail a ticket asks for, `None` when the ticket is not a tail ticket (it does
/// not start with `{`).
pub fn parse_ticket(ticket: &[u8]) -> Option<Result<Tail, FlightError>> {
    if ticket.first() != Some(&b'{') {
        return None;
    }
    Some(serde_json::from_slice::<Tail>(ticket).map_err(|e| {
        FlightError::invalid(format!(
            "a tail ticket is {{\"tail\": {{\"from\", \"event_type\", \"entity_id\"}}}} or \
             {{\"pipeline\": {{\"name\"}}}}: {e}"
        ))
    }))
}

/// The result rows of the pipeline `request` names, from now on, and their schema.
pub fn follow_pipeline(
    pipelines: &Pipelines,
    tenant: &str,
    request: &PipelineTail,
) -> Result<
    (
        SchemaRef,
        impl Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static,
    ),
    FlightError,
> {
    let (schema, receiver) = pipelines
        .updates(tenant, &request.name)
        .ok_or_else(|| FlightError::not_found(format!("no pipeline named {}", request.name)))?;
    let rows = futures::stream::unfold(Some(receiver), |receiver| async move {
        let mut receiver = receiver?;
        match receiver.recv().await {
            Ok(batch) => Some((Ok(batch), Some(receiver))),
            Err(RecvError::Lagged(missed)) => Some((
                Err(FlightError::exhausted(format!(
                    "this tail fell {missed} result batches behind; read the table and tail again"
                ))),
                None,
            )),
            // The pipeline was dropped, reset or replaced.
            Err(RecvError::Closed) => None,
        }
    });
    Ok((schema, rows))
}

/// The batches of `tenant`'s events matching `request`, forever.
pub fn follow(
    store: &EventStore,
    tenant: &str,
    request: TailRequest,
) -> impl Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static {
    let filter = SubscriptionFilter {
        entity_id: request.entity_id,
        event_types: match request.event_type {
            OneOrMany::None => Vec::new(),
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(ts) => ts,
        },
    };
    let from = request
        .from
        .unwrap_or_else(|| store.stats().visible_position);
    let subscription = store.subscribe(tenant, from, filter);
    let schema = event_schema();
    futures::stream::unfold(Some(subscription), move |subscription| {
        let schema = std::sync::Arc::clone(&schema);
        async move {
            let mut subscription = subscription?;
            let batch = match subscription.next_batch().await {
                Ok(events) => to_batch(&schema, &events),
                Err(e) => return Some((Err(FlightError::from(e)), None)),
            };
            let next = batch.is_ok().then_some(subscription);
            Some((batch, next))
        }
    })
}

fn to_batch(
    schema: &arrow::datatypes::SchemaRef,
    events: &[RecordedEvent],
) -> Result<RecordBatch, FlightError> {
    let refs: Vec<&RecordedEvent> = events.iter().collect();
    events_to_batch(schema, &refs).map_err(FlightError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_parse_and_other_tickets_pass_through() {
        assert!(parse_ticket(b"\x0a\x05hello").is_none());
        let parsed = parse_ticket(br#"{"tail": {"from": 7, "event_type": "a"}}"#)
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("not parsed"));
        let Tail::Events(request) = parsed else {
            panic!("not an events tail: {parsed:?}");
        };
        assert_eq!(request.from, Some(7));
        assert!(matches!(request.event_type, OneOrMany::One(ref t) if t == "a"));
        let parsed = parse_ticket(br#"{"pipeline": {"name": "hourly"}}"#).and_then(Result::ok);
        assert!(matches!(parsed, Some(Tail::Pipeline(ref p)) if p.name == "hourly"));
        let bad = parse_ticket(br#"{"tail": {"form": 7}}"#).unwrap_or_else(|| panic!("not a tail"));
        assert!(bad.is_err());
    }
}
