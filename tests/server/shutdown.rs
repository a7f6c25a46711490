//! SIGTERM while clients append: every acknowledged event is there after a restart,
//! and the restart replays nothing (the shutdown flushed everything).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::Server;

const CLIENTS: usize = 16;
/// Acknowledged events before SIGTERM is sent.
const LOAD_BEFORE_SIGNAL: usize = 300;

/// Append until the server stops answering; returns the (entity, version) pairs
/// acknowledged with a 2xx.
async fn append_until_refused(
    base: String,
    client_id: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
) -> Vec<(String, u64)> {
    let client = reqwest::Client::new();
    let mut acknowledged = Vec::new();
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let entity = format!("c{client_id}-{}", round % 7);
        let body = if round.is_multiple_of(2) {
            json!({"event_type": "load", "entity_id": entity, "payload": {"round": round}})
        } else {
            let events: Vec<Value> = (0..10)
                .map(|i| json!({"event_type": "load", "entity_id": format!("{entity}-{i}"), "payload": {"round": round}}))
                .collect();
            json!({"events": events})
        };
        let response = client
            .post(format!("{base}/api/v1/events"))
            .json(&body)
            .send()
            .await;
        let Ok(response) = response else {
            break; // the server has stopped listening
        };
        if response.status() != StatusCode::CREATED {
            continue; // refused (shutting down): nothing of it was acknowledged
        }
        let Ok(ack) = response.json::<Value>().await else {
            continue; // the answer was cut off: not an acknowledgement
        };
        let acks = match ack.get("results") {
            Some(Value::Array(results)) => results.clone(),
            _ => vec![ack],
        };
        for ack in acks {
            if let (Some(entity), Some(version)) =
                (ack["entity_id"].as_str(), ack["version"].as_u64())
            {
                acknowledged.push((entity.to_string(), version));
                acked.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    acknowledged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_keeps_every_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(dir.path(), &["--durability", "always"], &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            tokio::spawn(append_until_refused(
                server.base.clone(),
                id,
                Arc::clone(&stop),
                Arc::clone(&acked),
            ))
        })
        .collect();
    // Signal once the load is well under way, however slow the machine is.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while acked.load(Ordering::Relaxed) < LOAD_BEFORE_SIGNAL
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, log) = tokio::task::spawn_blocking(move || server.stop("-TERM"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = HashSet::new();
    for client in clients {
        acknowledged.extend(client.await.unwrap_or_else(|e| panic!("{e}")));
    }
    assert!(status.success(), "{log}");
    assert!(log.contains("store closed cleanly"), "{log}");
    assert!(
        acknowledged.len() >= LOAD_BEFORE_SIGNAL,
        "too little load: {} events",
        acknowledged.len()
    );

    let server = Server::start(dir.path(), &[], &[]);
    let opened = server.log();
    let open_line = opened
        .lines()
        .find(|l| l.contains("event store open"))
        .unwrap_or_else(|| panic!("{opened}"));
    let field = |name: &str| {
        open_line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in {open_line}"))
    };
    assert_eq!(
        field("events"),
        field("flushed"),
        "the restart replayed WAL events: {open_line}"
    );

    let response = reqwest::Client::new()
        .post(server.url("/api/v1/query"))
        .json(&json!({"sql": "SELECT entity_id, version FROM events"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::OK);
    let result: Value = response.json().await.unwrap_or_else(|e| panic!("{e}"));
    let stored: HashSet<(String, u64)> = result["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("{result}"))
        .iter()
        .filter_map(|r| Some((r["entity_id"].as_str()?.to_string(), r["version"].as_u64()?)))
        .collect();
    let missing: Vec<_> = acknowledged.difference(&stored).take(5).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but lost after restart: {missing:?}"
    );
}
