//! Live tails: a DoGet ticket that streams a tenant's events from a position on,
//! forever.
//!
//! The ticket is JSON text:
//!
//! ```text
//! {"tail": {"from": 0, "event_type": ["order.placed"], "entity_id": "order-7"}}
//! ```
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
use arrow::array::RecordBatch;
use futures::Stream;
use serde::Deserialize;

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TailTicket {
    tail: TailRequest,
}

/// The tail a ticket asks for, `None` when the ticket is not a tail ticket (it does
/// not start with `{`).
pub fn parse_ticket(ticket: &[u8]) -> Option<Result<TailRequest, FlightError>> {
    if ticket.first() != Some(&b'{') {
        return None;
    }
    Some(
        serde_json::from_slice::<TailTicket>(ticket)
            .map(|t| t.tail)
            .map_err(|e| FlightError::invalid(format!("a tail ticket is {{\"tail\": {{\"from\", \"event_type\", \"entity_id\"}}}}: {e}"))),
    )
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
        let request = parse_ticket(br#"{"tail": {"from": 7, "event_type": "a"}}"#)
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("not parsed"));
        assert_eq!(request.from, Some(7));
        assert!(matches!(request.event_type, OneOrMany::One(ref t) if t == "a"));
        let bad = parse_ticket(br#"{"tail": {"form": 7}}"#).unwrap_or_else(|| panic!("not a tail"));
        assert!(bad.is_err());
    }
}
