//! `Mutation`: `appendEvents`, an atomic append to one stream with optimistic
//! concurrency.

use allsource_engine::{AppendRequest, EventData, ExpectedVersion};
use async_graphql::{Context, Object, Result};

use crate::types::{Event, EventInput};
use crate::{Service, errors};

/// The root of every mutation.
pub struct MutationRoot;

#[Object]
impl MutationRoot {
    /// Append `events` to the stream `entityId`, all or none, and return them as
    /// stored. `expectedVersion`: left out, any version; `0`, the stream must not
    /// exist yet; `n`, the stream must be at version `n`. A mismatch fails with
    /// `extensions.code = "WRONG_EXPECTED_VERSION"` and `extensions.currentVersion`.
    async fn append_events(
        &self,
        ctx: &Context<'_>,
        entity_id: String,
        expected_version: Option<i64>,
        events: Vec<EventInput>,
    ) -> Result<Vec<Event>> {
        let service = ctx.data::<Service>()?;
        let expected = match expected_version {
            None => ExpectedVersion::Any,
            Some(0) => ExpectedVersion::NoStream,
            Some(n) if n > 0 => ExpectedVersion::Exact(n as u64),
            Some(n) => {
                return Err(errors::bad_input(format!(
                    "expectedVersion must be 0 (no stream yet) or a version, not {n}"
                )));
            }
        };
        if events.is_empty() {
            return Err(errors::bad_input(
                "events is empty: append at least one event",
            ));
        }
        let count = events.len();
        let data = events
            .into_iter()
            .map(|event| {
                let mut data = EventData::new(event.event_type, event.payload.0.to_string());
                data.metadata = event.metadata.map(|m| m.0.to_string());
                data.event_id = event.event_id;
                data.timestamp_micros = event.timestamp.map(|t| t.0);
                data
            })
            .collect();
        let request =
            AppendRequest::new(service.tenant.as_str()).stream(entity_id.as_str(), expected, data);
        let result = service.store.append(request).await.map_err(errors::store)?;
        let first_version = result.events.first().map_or(1, |ack| ack.version);
        let stored = service
            .store
            .read_stream(&service.tenant, &entity_id, first_version, count)
            .await
            .map_err(errors::store)?;
        Ok(stored.into_iter().map(Event).collect())
    }
}
