//! Subscriptions: catch up from a position, then follow the log live.
//!
//! A subscription does not buffer events pushed to it; it pulls from the log. It keeps
//! one number, the next position to read, and reads at most
//! `subscription_chunk_events` positions per step, so a subscriber that falls behind
//! costs the store no memory and can never be skipped ahead: it simply reads older
//! events next, and [`Subscription::lag`] tells it how far behind it is. Because
//! history and live events are read by the same position cursor, there is no seam
//! where an event could be missed or delivered twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{AsArray, RecordBatch};
use tokio::sync::watch;

use crate::buffer::{EventColumns, SharedText, columns};
use crate::error::{Error, Result};
use crate::event::RecordedEvent;
use crate::partition::partition_for;
use crate::store::Shared;
use crate::watchers::{Interest, Registration};

/// Which events a subscription delivers (always within one tenant).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionFilter {
    /// Only this stream, when set.
    pub entity_id: Option<String>,
    /// Only these event types, when not empty.
    pub event_types: Vec<String>,
}

impl SubscriptionFilter {
    /// Every event of the tenant.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only events of one stream.
    pub fn stream(entity_id: impl Into<String>) -> Self {
        Self {
            entity_id: Some(entity_id.into()),
            event_types: Vec::new(),
        }
    }

    /// Only events of the given types.
    pub fn event_types(types: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            entity_id: None,
            event_types: types.into_iter().map(Into::into).collect(),
        }
    }
}

/// Where a [`Subscription`] is, read from outside it.
#[derive(Debug, Clone)]
pub struct SubscriptionProgress {
    position: Arc<AtomicU64>,
    head: watch::Receiver<u64>,
}

impl SubscriptionProgress {
    /// [`Subscription::position`].
    pub fn position(&self) -> u64 {
        self.position.load(Ordering::Acquire)
    }

    /// [`Subscription::lag`].
    pub fn lag(&self) -> u64 {
        self.head.borrow().saturating_sub(self.position())
    }
}

/// A cursor over the log, from a position onwards. Created by
/// [`EventStore::subscribe`](crate::EventStore::subscribe).
#[derive(Debug)]
pub struct Subscription {
    shared: Arc<Shared>,
    tenant: String,
    filter: SubscriptionFilter,
    next_position: u64,
    /// `next_position`, for [`SubscriptionProgress`] readers elsewhere.
    shared_position: Arc<AtomicU64>,
    head: watch::Receiver<u64>,
    /// Woken by the commits that have events this subscription may deliver.
    registration: Registration,
}

impl Subscription {
    pub(crate) fn new(
        shared: Arc<Shared>,
        tenant: String,
        from_position: u64,
        filter: SubscriptionFilter,
    ) -> Self {
        let head = shared.head.subscribe();
        // Registered under its most selective key: the stream, else the types.
        let interest = match (&filter.entity_id, filter.event_types.is_empty()) {
            (Some(stream), _) => Interest::Stream(stream.clone()),
            (None, false) => Interest::Types(filter.event_types.clone()),
            (None, true) => Interest::All,
        };
        let registration = shared.watchers.register(&tenant, interest);
        Self {
            shared,
            tenant,
            filter,
            next_position: from_position,
            shared_position: Arc::new(AtomicU64::new(from_position)),
            head,
            registration,
        }
    }

    /// The next matching events, in position order, waiting until there is at least
    /// one. Fails with [`Error::Closed`] once the store closes and the subscription
    /// has delivered everything, or [`Error::WalFailed`] if the WAL failed.
    pub async fn next_batch(&mut self) -> Result<Vec<RecordedEvent>> {
        let chunk = self.shared.config.subscription_chunk_events as u64;
        loop {
            let head = *self.head.borrow_and_update();
            if self.next_position < head {
                let to = head.min(self.next_position.saturating_add(chunk));
                let events = self.read(self.next_position, to).await?;
                self.next_position = to;
                self.shared_position.store(to, Ordering::Release);
                if !events.is_empty() {
                    return Ok(events);
                }
                continue;
            }
            self.shared.state.lock().check_open()?;
            // Only a commit with events for this subscription wakes it, so the
            // positions before the head may hold none of its events: it reads them
            // when woken, and its position stays where it last read.
            self.registration.notified().await;
        }
    }

    /// The position to resume from: every event before it has been delivered or
    /// filtered out.
    pub fn position(&self) -> u64 {
        self.next_position
    }

    /// How many positions the subscription is behind the newest visible event.
    pub fn lag(&self) -> u64 {
        self.head.borrow().saturating_sub(self.next_position)
    }

    /// Its position and lag, readable by whoever holds the handle while the
    /// subscription itself is owned by a stream.
    pub fn progress(&self) -> SubscriptionProgress {
        SubscriptionProgress {
            position: Arc::clone(&self.shared_position),
            head: self.head.clone(),
        }
    }

    async fn read(&self, from: u64, to: u64) -> Result<Vec<RecordedEvent>> {
        let partitions: Vec<u16> = match &self.filter.entity_id {
            Some(entity_id) => vec![partition_for(
                &self.tenant,
                entity_id,
                self.shared.meta.partitions,
            )],
            None => (0..self.shared.meta.partitions).collect(),
        };
        let mut shared = SharedText::default();
        let mut events = Vec::new();
        loop {
            events.clear();
            // Rows still in the buffer are read from it even when they are in
            // Parquet too: the released position, read before the manifest, is at
            // or below its flushed position.
            let split = self.shared.buffer.released_position();
            let manifest = self.shared.tier.manifest();
            if from < split {
                let shared_state = Arc::clone(&self.shared);
                let wanted = partitions.clone();
                let range = from..to.min(split);
                let batches = self
                    .shared
                    .runtime
                    .run(async move {
                        let mut out = Vec::new();
                        for partition in wanted {
                            out.extend(
                                shared_state
                                    .tier
                                    .read_positions(&manifest, partition, range.clone())
                                    .await?,
                            );
                        }
                        Ok::<_, Error>(out)
                    })
                    .await??;
                for batch in &batches {
                    self.collect(batch, &[], 0..batch.num_rows(), &mut shared, &mut events);
                }
            }
            if to > split {
                let mut released = false;
                for partition in &partitions {
                    let whole = self.shared.buffer.visit_positions(
                        *partition,
                        from.max(split),
                        to,
                        |batch, event_uuids, rows| {
                            self.collect(batch, event_uuids, rows, &mut shared, &mut events);
                        },
                    )?;
                    if !whole {
                        released = true;
                        break;
                    }
                }
                // Flushed and released meanwhile: read again, from Parquet.
                if released {
                    continue;
                }
            }
            break;
        }
        events.sort_unstable_by_key(|e| e.position);
        Ok(events)
    }

    /// The events among `rows` of `batch` that the subscription delivers, decoded
    /// into `out`. The filter reads the key columns alone; the other columns are
    /// taken up only when a row matches.
    fn collect(
        &self,
        batch: &RecordBatch,
        event_uuids: &[u128],
        rows: std::ops::Range<usize>,
        shared: &mut SharedText,
        out: &mut Vec<RecordedEvent>,
    ) {
        let tenant = batch.column(columns::TENANT).as_string::<i32>();
        let entity = batch.column(columns::ENTITY_ID).as_string::<i32>();
        let kind = batch.column(columns::EVENT_TYPE).as_string::<i32>();
        let mut decoded: Option<EventColumns<'_>> = None;
        for row in rows {
            // The most selective test first: the tenant nearly always matches.
            let wanted = self
                .filter
                .entity_id
                .as_deref()
                .is_none_or(|e| entity.value(row) == e)
                && (self.filter.event_types.is_empty()
                    || self.filter.event_types.iter().any(|t| kind.value(row) == t))
                && tenant.value(row) == self.tenant;
            if wanted {
                let columns = decoded
                    .get_or_insert_with(|| EventColumns::new(batch).with_event_uuids(event_uuids));
                out.push(columns.event(row, shared));
            }
        }
    }
}
