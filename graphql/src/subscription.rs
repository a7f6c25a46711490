//! `Subscription`: events as they are appended, after the history from a position.
//!
//! A subscription follows a store [`allsource_engine::Subscription`], which pulls
//! from the log by position, so history and live events come through one cursor:
//! nothing is missed or repeated where one ends and the other begins. A client that
//! reconnects with `fromPosition` = the last position it saw + 1 resumes exactly.

use allsource_engine::SubscriptionFilter;
use async_graphql::{Context, Result, Subscription};
use futures::Stream;

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
}
