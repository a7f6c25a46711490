//! Who is waiting for which events: a commit wakes only the subscriptions it has
//! events for.
//!
//! A subscription pulls from the log by position (see [`crate::subscription`]); it
//! needs a wake-up only when something it could deliver has become visible. With a
//! thousand subscriptions each following one stream, waking all of them on every
//! commit would make every commit cost a thousand reads, nearly all of them empty.
//! So each waiting subscription registers its filter here under the most selective
//! key it has — its stream, else its event types, else its whole tenant — and the
//! WAL writer, as it publishes a group, collects the subscriptions whose keys the
//! group's events hit, then wakes those once the group is visible.
//!
//! A wake is a hint, never data: the woken subscription reads the log from its own
//! position and filters exactly, so a spurious wake costs one read and a missed one
//! cannot happen: each subscription has its own [`Notify`], whose permit is kept
//! when it is notified while not waiting.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::event::EventRow;

/// The registry of waiting subscriptions, shared by the store.
#[derive(Debug, Default)]
pub(crate) struct Watchers {
    registry: Mutex<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    next_id: u64,
    tenants: HashMap<String, Tenant>,
}

/// One tenant's watchers, by key.
#[derive(Debug, Default)]
struct Tenant {
    all: Vec<Watcher>,
    streams: HashMap<String, Vec<Watcher>>,
    types: HashMap<String, Vec<Watcher>>,
}

impl Tenant {
    fn is_empty(&self) -> bool {
        self.all.is_empty() && self.streams.is_empty() && self.types.is_empty()
    }
}

#[derive(Debug, Clone)]
struct Watcher {
    id: u64,
    notify: Arc<Notify>,
}

/// What a subscription waits for: its key in the registry.
#[derive(Debug, Clone)]
pub(crate) enum Interest {
    /// Every event of the tenant.
    All,
    /// Events of this stream.
    Stream(String),
    /// Events of these types.
    Types(Vec<String>),
}

/// A subscription's place in the registry; removed when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    watchers: Arc<Watchers>,
    id: u64,
    tenant: String,
    interest: Interest,
    notify: Arc<Notify>,
}

impl Registration {
    /// Resolves once a commit may have events for this subscription (or the store
    /// stopped). A notification sent before this is awaited is not lost.
    pub async fn notified(&self) {
        self.notify.notified().await;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.watchers.remove(self);
    }
}

impl Watchers {
    /// Register a subscription of `tenant` waiting for `interest`.
    pub fn register(self: &Arc<Self>, tenant: &str, interest: Interest) -> Registration {
        let notify = Arc::new(Notify::new());
        let mut registry = self.registry.lock();
        let id = registry.next_id;
        registry.next_id += 1;
        let watcher = Watcher {
            id,
            notify: Arc::clone(&notify),
        };
        let entry = registry.tenants.entry(tenant.to_string()).or_default();
        match &interest {
            Interest::All => entry.all.push(watcher),
            Interest::Stream(stream) => entry
                .streams
                .entry(stream.clone())
                .or_default()
                .push(watcher),
            Interest::Types(types) => {
                for kind in types {
                    entry
                        .types
                        .entry(kind.clone())
                        .or_default()
                        .push(watcher.clone());
                }
            }
        }
        Registration {
            watchers: Arc::clone(self),
            id,
            tenant: tenant.to_string(),
            interest,
            notify,
        }
    }

    fn remove(&self, registration: &Registration) {
        let mut registry = self.registry.lock();
        let Some(tenant) = registry.tenants.get_mut(&registration.tenant) else {
            return;
        };
        let id = registration.id;
        let drop_from = |list: &mut Vec<Watcher>| list.retain(|w| w.id != id);
        match &registration.interest {
            Interest::All => drop_from(&mut tenant.all),
            Interest::Stream(stream) => {
                if let Some(list) = tenant.streams.get_mut(stream) {
                    drop_from(list);
                    if list.is_empty() {
                        tenant.streams.remove(stream);
                    }
                }
            }
            Interest::Types(types) => {
                for kind in types {
                    if let Some(list) = tenant.types.get_mut(kind) {
                        drop_from(list);
                        if list.is_empty() {
                            tenant.types.remove(kind);
                        }
                    }
                }
            }
        }
        if tenant.is_empty() {
            registry.tenants.remove(&registration.tenant);
        }
    }

    /// A collector for one group's events. It holds the registry's lock until
    /// [`Collector::finish`], and the writer moves the visible position before
    /// finishing: a subscription registering meanwhile waits for the lock and then
    /// reads the new position, so no commit can slip between its registration and its
    /// first look at the log. (Skipping the lock when nobody was registered let a
    /// subscription register, read the old position and wait for a wake that never
    /// came.)
    pub fn collector(&self) -> Collector<'_> {
        let registry = self.registry.lock();
        Collector {
            idle: registry.tenants.is_empty(),
            registry,
            woken: Vec::new(),
            last_tenant: None,
        }
    }

    /// Wake every registered subscription (the store closed or failed).
    pub fn wake_all(&self) {
        let registry = self.registry.lock();
        for tenant in registry.tenants.values() {
            let lists = tenant
                .streams
                .values()
                .chain(tenant.types.values())
                .chain(std::iter::once(&tenant.all));
            for watcher in lists.flatten() {
                watcher.notify.notify_one();
            }
        }
    }
}

/// Gathers, under the registry's lock, whom one group's events concern.
pub(crate) struct Collector<'a> {
    registry: parking_lot::MutexGuard<'a, Registry>,
    /// Nobody is registered: rows need no lookups.
    idle: bool,
    woken: Vec<Watcher>,
    /// The tenant of the previous row: its whole-tenant watchers are already in
    /// `woken` (rows of one group mostly share a tenant).
    last_tenant: Option<String>,
}

impl Collector<'_> {
    /// Note one published row.
    pub fn see(&mut self, row: &EventRow<'_>) {
        let Collector {
            registry,
            idle,
            woken,
            last_tenant,
        } = self;
        if *idle {
            return;
        }
        let Some(tenant) = registry.tenants.get(row.tenant) else {
            return;
        };
        if last_tenant.as_deref() != Some(row.tenant) {
            woken.extend(tenant.all.iter().cloned());
            *last_tenant = Some(row.tenant.to_string());
        }
        if !tenant.streams.is_empty()
            && let Some(list) = tenant.streams.get(row.entity_id)
        {
            woken.extend(list.iter().cloned());
        }
        if !tenant.types.is_empty()
            && let Some(list) = tenant.types.get(row.event_type)
        {
            woken.extend(list.iter().cloned());
        }
    }

    /// The subscriptions to wake, each once. Call [`Woken::wake`] after the group
    /// has become visible.
    pub fn finish(self) -> Woken {
        let mut woken = self.woken;
        woken.sort_unstable_by_key(|w| w.id);
        woken.dedup_by_key(|w| w.id);
        Woken(woken)
    }
}

/// Subscriptions a published group concerns.
pub(crate) struct Woken(Vec<Watcher>);

impl Woken {
    pub fn wake(self) {
        for watcher in self.0 {
            watcher.notify.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row<'a>(tenant: &'a str, entity_id: &'a str, event_type: &'a str) -> EventRow<'a> {
        EventRow {
            tenant,
            entity_id,
            event_type,
            version: 1,
            partition: 0,
            offset: 0,
            position: 0,
            event_id: "",
            event_uuid: None,
            timestamp_micros: 0,
            ingested_at_micros: 0,
            payload: "{}",
            metadata: None,
        }
    }

    /// Which registrations a group of `rows` wakes: their ids.
    fn woken(watchers: &Watchers, rows: &[EventRow<'_>]) -> Vec<u64> {
        let mut collector = watchers.collector();
        for r in rows {
            collector.see(r);
        }
        collector.finish().0.iter().map(|w| w.id).collect()
    }

    #[test]
    fn a_group_wakes_only_the_subscriptions_it_has_events_for() {
        let watchers = Arc::new(Watchers::default());
        assert!(watchers.collector().idle, "nobody waits: no lookups");
        let all = watchers.register("acme", Interest::All);
        let stream = watchers.register("acme", Interest::Stream("order-1".into()));
        let types = watchers.register(
            "acme",
            Interest::Types(vec!["paid".into(), "shipped".into()]),
        );
        let other = watchers.register("globex", Interest::All);
        assert_eq!(
            woken(&watchers, &[row("acme", "order-2", "placed")]),
            vec![all.id]
        );
        assert_eq!(
            woken(
                &watchers,
                &[
                    row("acme", "order-1", "placed"),
                    row("acme", "order-1", "paid"),
                    row("acme", "order-3", "shipped"),
                ]
            ),
            vec![all.id, stream.id, types.id]
        );
        assert_eq!(
            woken(&watchers, &[row("globex", "order-1", "paid")]),
            vec![other.id]
        );
        assert!(woken(&watchers, &[row("initech", "x", "paid")]).is_empty());
        drop((all, stream, types));
        assert_eq!(
            woken(&watchers, &[row("acme", "order-1", "paid")]),
            Vec::<u64>::new()
        );
        drop(other);
        assert!(watchers.collector().idle);
        assert!(watchers.registry.lock().tenants.is_empty());
    }

    #[tokio::test]
    async fn a_wake_before_the_wait_is_kept() {
        let watchers = Arc::new(Watchers::default());
        let registration = watchers.register("acme", Interest::Stream("s".into()));
        let mut collector = watchers.collector();
        collector.see(&row("acme", "s", "t"));
        collector.finish().wake();
        tokio::time::timeout(std::time::Duration::from_secs(5), registration.notified())
            .await
            .unwrap_or_else(|_| panic!("the wake was lost"));
    }
}
