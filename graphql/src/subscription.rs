//! `Subscription`: events as they are appended, after the history from a position.
//!
//! A subscription follows a store [`allsource_engine::Subscription`], which pulls
//! from the log by position, so history and live events come through one cursor:
//! nothing is missed or repeated where one ends and the other begins. A client that
//! reconnects with `fromPosition` = the last position it saw + 1 resumes exactly.

use allsource_engine::SubscriptionFilter;
use allsource_operators::projection::rows_json;
use async_graphql::{Context, Json, Result, Subscription};
use futures::Stream;
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use crate::types::{Event, LiveFilter};
use crate::{Service, errors};

/// The root of every subscription.
pub struct SubscriptionRoot;

#[Subscription]
impl SubscriptionRoot {
    /// Events matching `filter` from `fromPosition` (left out: only events appended
    /// from now on), in position order, forever.
    async fn events(
        &self,
        ctx: &Context<'_>,
        filter: Option<LiveFilter>,
        from_position: Option<u64>,
    ) -> Result<impl Stream<Item = Result<Event>>> {
        let service = ctx.data::<Service>()?;
        let filter = filter.unwrap_or_default();
        let store_filter = SubscriptionFilter {
            entity_id: filter.entity_id,
            event_types: filter
                .event_type
                .into_iter()
                .chain(filter.event_types.unwrap_or_default())
                .collect(),
        };
        let from = from_position.unwrap_or_else(|| service.store.stats().visible_position);
        let subscription = service.store.subscribe(&service.tenant, from, store_filter);
        let batches = futures::stream::unfold(Some(subscription), |state| async move {
            let mut subscription = state?;
            match subscription.next_batch().await {
                Ok(events) => Some((Ok(events), Some(subscription))),
                // The error ends the stream: the client resumes from its last position.
                Err(err) => Some((Err(errors::store(err)), None)),
            }
        });
        Ok(futures::StreamExt::flat_map(batches, |batch| {
            let items: Vec<Result<Event>> = match batch {
                Ok(events) => events.into_iter().map(|e| Ok(Event(e))).collect(),
                Err(err) => vec![Err(err)],
            };
            futures::stream::iter(items)
        }))
    }

    /// The result rows of the pipeline (or projection) `name` as they are emitted
    /// from now on, each a JSON object of its columns: a window's row once the
    /// watermark passes its end; for totals, a key's row each time it changes. A
    /// subscriber that falls more than 1024 result batches behind gets an error and
    /// the stream ends; the table holds every row.
    async fn pipeline_updates(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> Result<impl Stream<Item = Result<Json<Value>>>> {
        let service = ctx.data::<Service>()?;
        let (schema, receiver) = service
            .pipelines()?
            .updates(&service.tenant, &name)
            .ok_or_else(|| errors::coded("NOT_FOUND", format!("no pipeline named {name}")))?;
        let batches = futures::stream::unfold(Some(receiver), |state| async move {
            let mut receiver = state?;
            match receiver.recv().await {
                Ok(batch) => Some((Ok(batch), Some(receiver))),
                Err(RecvError::Lagged(missed)) => Some((
                    Err(errors::coded(
                        "LAGGED",
                        format!(
                            "this subscriber fell {missed} result batches behind; read the \
                             table and subscribe again"
                        ),
                    )),
                    None,
                )),
                // The pipeline was dropped, reset or replaced.
                Err(RecvError::Closed) => None,
            }
        });
        Ok(futures::StreamExt::flat_map(batches, move |batch| {
            let items: Vec<Result<Json<Value>>> = match batch {
                Ok(batch) => match rows_json(&schema, &[batch]) {
                    Ok(rows) => rows
                        .into_iter()
                        .map(|row| Ok(Json(Value::Object(row))))
                        .collect(),
                    Err(err) => vec![Err(errors::pipeline(err))],
                },
                Err(err) => vec![Err(err)],
            };
            futures::stream::iter(items)
        }))
    }
}
