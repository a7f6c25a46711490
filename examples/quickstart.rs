//! Quickstart: open a store, append with optimistic concurrency, read a stream back,
//! and follow the log with a subscription.
//!
//! Run: `cargo run --example quickstart` (uses a temporary directory).

use allsource::engine::{
    AppendRequest, Error, EventData, EventStore, ExpectedVersion, StoreConfig, SubscriptionFilter,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = EventStore::open(StoreConfig::new(dir.path()))?;

    let placed = AppendRequest::new("acme").stream(
        "order-1",
        ExpectedVersion::NoStream,
        vec![EventData::new("order.placed", r#"{"amount": 42}"#)],
    );
    let result = store.append(placed).await?;
    println!("appended: {:?}", result.events[0]);

    // A writer that read version 0 and did not see the placement loses the race.
    let stale = AppendRequest::new("acme").stream(
        "order-1",
        ExpectedVersion::Exact(0),
        vec![EventData::new("order.cancelled", "{}")],
    );
    match store.append(stale).await {
        Err(Error::WrongExpectedVersion { current, .. }) => {
            println!("conflict: current version is {current:?}")
        }
        other => println!("unexpected: {other:?}"),
    }

    let paid = AppendRequest::new("acme").stream(
        "order-1",
        ExpectedVersion::Exact(1),
        vec![EventData::new("order.paid", r#"{"method": "card"}"#)],
    );
    store.append(paid).await?;

    for event in store.read_stream("acme", "order-1", 1, 100).await? {
        println!("v{} {} {}", event.version, event.event_type, event.payload);
    }

    let mut subscription = store.subscribe("acme", 0, SubscriptionFilter::all());
    let batch = subscription.next_batch().await?;
    println!(
        "subscription delivered {} events, resume from position {}",
        batch.len(),
        subscription.position()
    );
    store.close()?;
    Ok(())
}
