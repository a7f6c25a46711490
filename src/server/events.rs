//! `POST /api/v1/events` (one event or an atomic batch) and
//! `GET /api/v1/events/query` (by entity, type and time, with time travel and a
//! cursor).

use std::time::Instant;

use allsource_engine::{AppendRequest, EventAck, EventData, ExpectedVersion, RecordedEvent};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::error::ApiError;
use super::observe;
use super::{AppState, TENANT, body_json, parse_time, render_time};

/// One event as clients send it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventIn {
    event_type: String,
    entity_id: String,
    payload: Box<RawValue>,
    #[serde(default)]
    metadata: Option<Box<RawValue>>,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    event_id: Option<String>,
    #[serde(default)]
    expected_version: Option<Value>,
}

impl EventIn {
    /// The JSON bytes the event carries (payload and metadata).
    fn bytes(&self) -> u64 {
        let metadata = self.metadata.as_ref().map_or(0, |m| m.get().len());
        (self.payload.get().len() + metadata) as u64
    }
}

/// A batch: `{"events": [...]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchIn {
    events: Vec<EventIn>,
}

/// Append one event, or a batch atomically (all or none).
pub(crate) async fn append(
    State(state): State<AppState>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = body.map_err(|_| ApiError::body_too_large(state.max_body_bytes))?;
    let is_batch = starts_with_events_key(&body);
    let events = if is_batch {
        body_json::<BatchIn>(&body)?.events
    } else {
        Vec::from([body_json::<EventIn>(&body)?])
    };
    let sizes: Vec<u64> = events.iter().map(EventIn::bytes).collect();
    let request = to_request(events)?;
    let started = Instant::now();
    let result = state.store.append(request).await?;
    let acks: Vec<Value> = result.events.iter().map(ack_json).collect();
    let status = if result.deduplicated {
        StatusCode::OK
    } else {
        let mut by_partition: Vec<(u16, u64)> = Vec::new();
        for (ack, bytes) in result.events.iter().zip(sizes) {
            match by_partition.iter_mut().find(|(p, _)| *p == ack.partition) {
                Some((_, total)) => *total += bytes,
                None => by_partition.push((ack.partition, bytes)),
            }
        }
        observe::appended(
            result.events.len(),
            &by_partition,
            started.elapsed().as_secs_f64(),
        );
        StatusCode::CREATED
    };
    if is_batch {
        Ok((status, Json(json!({"results": acks}))))
    } else {
        Ok((status, Json(acks.into_iter().next().unwrap_or(Value::Null))))
    }
}

/// Whether the body is a batch: an object whose first key is `"events"` (a batch has
/// no other key, and a single event may not have that one). Deciding from the first
/// bytes lets the body be parsed once, straight into its type.
fn starts_with_events_key(body: &[u8]) -> bool {
    let mut rest = body.trim_ascii_start();
    let Some(after_brace) = rest.strip_prefix(b"{") else {
        return false;
    };
    rest = after_brace.trim_ascii_start();
    rest.starts_with(b"\"events\"")
}

/// The events as one append request: consecutive events of one stream form one
/// part (a later `expected_version` starts a new part).
fn to_request(events: Vec<EventIn>) -> Result<AppendRequest, ApiError> {
    if events.is_empty() {
        return Err(ApiError::invalid_event(0, "the batch has no events"));
    }
    let mut request = AppendRequest::new(TENANT);
    let mut part: Option<(String, ExpectedVersion, Vec<EventData>)> = None;
    for (index, event) in events.into_iter().enumerate() {
        let expected = match &event.expected_version {
            None => None,
            Some(v) => Some(expected_version(v).map_err(|m| ApiError::invalid_event(index, m))?),
        };
        let mut data = EventData::new(event.event_type, event.payload.get());
        data.metadata = event.metadata.map(|m| m.get().to_string());
        data.event_id = event.event_id;
        data.timestamp_micros = match event.timestamp {
            Some(t) => Some(
                parse_time(&t)
                    .map_err(|m| ApiError::invalid_event(index, format!("timestamp: {m}")))?,
            ),
            None => None,
        };
        match &mut part {
            Some((entity, _, events)) if *entity == event.entity_id && expected.is_none() => {
                events.push(data);
            }
            _ => {
                if let Some((entity, expected, events)) = part.take() {
                    request = request.stream(entity, expected, events);
                }
                part = Some((
                    event.entity_id,
                    expected.unwrap_or(ExpectedVersion::Any),
                    vec![data],
                ));
            }
        }
    }
    if let Some((entity, expected, events)) = part {
        request = request.stream(entity, expected, events);
    }
    Ok(request)
}

/// `expected_version` as a number or one of the words the engine knows.
fn expected_version(value: &Value) -> Result<ExpectedVersion, String> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => {
            return Err(format!(
                "expected_version {other} is not a number or a word"
            ));
        }
    };
    text.parse()
        .map_err(|e: allsource_engine::Error| e.to_string())
}

fn ack_json(ack: &EventAck) -> Value {
    json!({
        "event_id": ack.event_id.to_string(),
        "entity_id": ack.entity_id.as_ref(),
        "version": ack.version,
        "partition": ack.partition,
        "offset": ack.offset,
        "position": ack.position,
    })
}

/// The parameters of `GET /events/query`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventQuery {
    entity_id: Option<String>,
    event_type: Option<String>,
    since: Option<String>,
    until: Option<String>,
    as_of: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// Most events one page returns.
const MAX_LIMIT: usize = 10_000;
/// Events per page when no limit is given.
const DEFAULT_LIMIT: usize = 1_000;

/// Events in log order (position), filtered; a page at a time.
pub(crate) async fn query(
    State(state): State<AppState>,
    params: Result<Query<EventQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_parameter(e.body_text()))?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_parameter(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let time = |name: &str, value: &Option<String>| -> Result<Option<i64>, ApiError> {
        value
            .as_deref()
            .map(|v| parse_time(v).map_err(|m| ApiError::bad_parameter(format!("{name}: {m}"))))
            .transpose()
    };
    let filter = allsource_sql::EventFilter {
        entity_id: params.entity_id.clone(),
        event_type: params.event_type.clone(),
        since_micros: time("since", &params.since)?,
        until_micros: time("until", &params.until)?,
        as_of_micros: time("as_of", &params.as_of)?,
        after_position: params
            .cursor
            .as_deref()
            .map(|c| {
                c.parse::<u64>().map_err(|_| {
                    ApiError::bad_parameter(format!("cursor {c:?} is not one this server gave out"))
                })
            })
            .transpose()?,
        limit: limit + 1,
        ..Default::default()
    };
    let mut events = find(&state, &filter).await?;
    let more = events.len() > limit;
    events.truncate(limit);
    let next_cursor = more
        .then(|| events.last().map(|e| e.position.to_string()))
        .flatten();
    let rendered: Vec<Value> = events.iter().map(event_json).collect();
    Ok(Json(json!({
        "events": rendered,
        "count": rendered.len(),
        "next_cursor": next_cursor,
    })))
}

/// A stream read through the Rust API when only the entity (and time travel) is
/// asked for; EventQL otherwise.
async fn find(
    state: &AppState,
    filter: &allsource_sql::EventFilter,
) -> Result<Vec<RecordedEvent>, ApiError> {
    let only_entity = filter.event_type.is_none()
        && filter.since_micros.is_none()
        && filter.until_micros.is_none();
    if let (Some(entity_id), true) = (&filter.entity_id, only_entity) {
        let mut events = match filter.as_of_micros {
            Some(as_of) => {
                state
                    .store
                    .read_stream_as_of(TENANT, entity_id, as_of)
                    .await?
            }
            None => {
                state
                    .store
                    .read_stream(TENANT, entity_id, 1, usize::MAX)
                    .await?
            }
        };
        if let Some(after) = filter.after_position {
            events.retain(|e| e.position > after);
        }
        events.truncate(filter.limit);
        return Ok(events);
    }
    Ok(state.eventql.find_events(TENANT, filter).await?)
}

/// An event as clients read it.
pub(crate) fn event_json(event: &RecordedEvent) -> Value {
    let json_text = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    json!({
        "event_id": event.event_id,
        "event_type": event.event_type,
        "entity_id": event.entity_id,
        "tenant": event.tenant,
        "version": event.version,
        "partition": event.partition,
        "offset": event.offset,
        "position": event.position,
        "timestamp": render_time(event.timestamp_micros),
        "ingested_at": render_time(event.ingested_at_micros),
        "payload": json_text(&event.payload),
        "metadata": event.metadata.as_deref().map(json_text),
    })
}

#[cfg(test)]
mod tests {
    use super::starts_with_events_key;

    #[test]
    fn a_batch_is_told_by_its_first_key() {
        assert!(starts_with_events_key(br#" { "events": []}"#));
        assert!(starts_with_events_key(b"{\n\t\"events\":[]}"));
        assert!(!starts_with_events_key(
            br#"{"event_type": "t", "events": []}"#
        ));
        assert!(!starts_with_events_key(br#"{"event_type": "t"}"#));
        assert!(!starts_with_events_key(br#"{"eventsx": []}"#));
        assert!(!starts_with_events_key(b"[]"));
        assert!(!starts_with_events_key(b""));
    }
}
