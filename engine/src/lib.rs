//! AllSource's event log: the spine every other part is built on.
//!
//! Events are appended to streams (per `(tenant, entity_id)`, with gapless versions and
//! optimistic concurrency) and land in an append-only log split into partitions:
//!
//! ```text
//!  append(request) ─► validate ─► sequencer ─► WAL (one record per request,
//!                                  │           group commit + fsync)
//!                                  │                   │
//!                                  │                   ▼
//!                                  │        Arrow buffer, per partition ─► readers,
//!                                  │        sealed RecordBatches             subscriptions
//!                                  ▼
//!             versions, partition offsets, log positions, event-id index
//! ```
//!
//! Lifecycle of an event: it is checked (sizes, JSON) before the store's lock is
//! taken; under the lock the sequencer checks expected versions and event ids for the
//! whole request, assigns versions, per-partition offsets and a store-wide position,
//! and encodes the request as one WAL record into the pending group. The WAL writer
//! thread writes the group, fsyncs it (per [`Durability`]), publishes the events to the
//! partitions' Arrow buffers and only then acknowledges. On open the WAL is replayed
//! into the sequencer and the buffer; a torn final record is cut off, and damage
//! anywhere else stops the open with the file and byte offset.
//!
//! See [`EventStore`] for the API.

mod buffer;
mod clock;
mod commit;
mod config;
mod error;
mod event;
mod event_id;
mod flush;
pub mod json;
mod meta;
mod partition;
pub mod patch;
mod sequencer;
pub mod snapshot;
mod store;
mod subscription;
mod table;
pub mod tier;
pub mod wal;
mod watchers;

pub use buffer::{event_at, event_schema, events_to_batch};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Durability, S3Settings, SETTINGS, StoreConfig};
pub use error::{Error, ErrorKind, Result};
pub use event::{
    AppendRequest, AppendResult, AppendSource, EventAck, EventData, EventView, ExpectedVersion,
    JsonText, MAX_NAME_BYTES, PartView, RecordedEvent, StreamAppend,
};
pub use event_id::EventId;
pub use flush::{CompactionReport, FlushReport};
pub use meta::{META_FILE, StoreMeta};
pub use partition::{partition_for, stable_hash};
pub use snapshot::EntityState;
pub use store::{
    Checked, Environment, EventStore, PartitionStats, PendingAppend, StoreStats, TableSnapshot,
    TierStats, WalStats,
};
pub use subscription::{Subscription, SubscriptionFilter, SubscriptionProgress};
pub use table::EventsTable;
