//! HTTP quickstart: start the server on a temporary store and a free port, then
//! ingest, query by entity and by type, read entity state, travel in time, run
//! EventQL and follow live events over the WebSocket — as any HTTP client would.
//!
//! Run: `cargo run --example http_quickstart`.

use std::time::Duration;

use allsource::engine::{EventStore, StoreConfig};
use allsource::server::{self, AppState};
use futures::StreamExt;
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = EventStore::open(StoreConfig::new(dir.path()))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(server::serve(
        listener,
        AppState::new(store.clone(), 64 << 20),
        async move {
            let _ = stopped.await;
        },
    ));
    println!("serving on {base}");
    let client = reqwest::Client::new();

    // Follow user events live from the start of the log.
    let ws_url = format!(
        "ws{}/api/v1/events/stream?event_type=user.created,user.renamed&from=0",
        base.trim_start_matches("http")
    );
    let (mut live, _) = tokio_tungstenite::connect_async(ws_url).await?;

    let created: Value = client
        .post(format!("{base}/api/v1/events"))
        .json(
            &json!({"event_type": "user.created", "entity_id": "user-123",
                      "payload": {"name": "Alice", "email": "alice@example.com"}}),
        )
        .send()
        .await?
        .json()
        .await?;
    println!("ingested: {created}");
    let between = chrono::Utc::now().to_rfc3339();
    tokio::time::sleep(Duration::from_millis(5)).await;

    // Optimistic concurrency: the rename applies only to version 1.
    let renamed = client
        .post(format!("{base}/api/v1/events"))
        .json(
            &json!({"event_type": "user.renamed", "entity_id": "user-123",
                      "payload": {"name": "Alicia"}, "expected_version": 1}),
        )
        .send()
        .await?;
    println!("renamed: {}", renamed.status());
    let stale = client
        .post(format!("{base}/api/v1/events"))
        .json(
            &json!({"event_type": "user.renamed", "entity_id": "user-123",
                      "payload": {"name": "Al"}, "expected_version": 1}),
        )
        .send()
        .await?;
    println!("a stale writer: {} {}", stale.status(), stale.text().await?);

    for path in [
        "/api/v1/events/query?entity_id=user-123".to_string(),
        "/api/v1/events/query?event_type=user.created&limit=10".to_string(),
        "/api/v1/entities/user-123/state".to_string(),
        format!(
            "/api/v1/entities/user-123/state?as_of={}",
            urlencode(&between)
        ),
    ] {
        let answer: Value = client
            .get(format!("{base}{path}"))
            .send()
            .await?
            .json()
            .await?;
        println!("GET {path}\n  {answer}");
    }
    let result: Value = client
        .post(format!("{base}/api/v1/query"))
        .json(
            &json!({"sql": "SELECT event_type, payload->>'name' AS name, version \
                              FROM events ORDER BY position"}),
        )
        .send()
        .await?
        .json()
        .await?;
    println!("EventQL: {}", result["rows"]);

    for _ in 0..2 {
        if let Some(frame) = live.next().await {
            println!("live: {}", frame?.to_text()?);
        }
    }

    let _ = stop.send(());
    http.await??;
    store.flush().await?;
    store.close()?;
    Ok(())
}

/// Percent-encode the characters of an RFC 3339 time that a query string cannot hold.
fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}
