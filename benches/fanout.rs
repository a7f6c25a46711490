//! Macro benchmark of GraphQL subscription fan-out, printed as a Markdown table.
//!
//! The real `allsource serve` binary (durability `always`) runs on a free loopback
//! port. This process opens the subscribers, one WebSocket each
//! (`graphql-transport-ws`), and an open-loop appender: every 10 ms it sends one
//! `POST /api/v1/events` batch, without waiting for the previous one, so the append
//! rate holds whatever the latency.
//!
//! Every event's payload carries the wall clock (ns) when its request was sent. A
//! subscriber checks that its events come in position order and that each stream's
//! versions come 1, 2, 3, … with no gap or repeat, counts them against what was
//! appended for its filter, and records now − sent for each: the delivery latency,
//! from the append's request to the subscriber reading the event, through the
//! durable commit.
//!
//! Scenarios (1,000 subscribers, 10,000 events/s over 1,000 streams):
//! - **one stream each**: subscriber *i* follows `entityId: "order-i"`, so every event
//!   goes to exactly one subscriber (10,000 deliveries/s);
//! - **ten per event type**: 100 event types, ten subscribers on each, so every event
//!   goes to ten subscribers (100,000 deliveries/s).
//!
//! Clients and server share the machine's cores; the server's CPU time is read from
//! `/proc` and shown as cores busy.
//!
//! Run: `cargo bench --bench fanout` (`-- --quick` for a short run). Under `cargo test`
//! it runs a tiny smoke version. Stores go to `ALLSOURCE_BENCH_DIR` (default
//! `target/bench-data`).

mod common;
mod server;

use common::{Size, percentile};
use server::Server;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// How the subscribers split the events.
#[derive(Clone, Copy)]
enum Split {
    /// Subscriber i follows stream i.
    OneStreamEach,
    /// `types` event types; the subscribers are spread evenly over them.
    PerType { types: u64 },
}

struct Load {
    subscribers: u64,
    streams: u64,
    rate: u64,
    seconds: u64,
    split: Split,
}

impl Load {
    /// The event type of the `n`th event of the run.
    fn event_type(&self, n: u64) -> String {
        match self.split {
            Split::OneStreamEach => "order.placed".to_string(),
            Split::PerType { types } => format!("type-{}", n % types),
        }
    }

    /// The subscription of subscriber `i`.
    fn filter(&self, i: u64) -> Value {
        match self.split {
            Split::OneStreamEach => json!({"entityId": format!("order-{i}")}),
            Split::PerType { types } => json!({"eventType": format!("type-{}", i % types)}),
        }
    }

    /// How many events of the run subscriber `i` should receive.
    fn expected(&self, i: u64, total: u64) -> u64 {
        let share = |of: u64, k: u64| total / of + u64::from(k < total % of);
        match self.split {
            Split::OneStreamEach => share(self.streams, i),
            Split::PerType { types } => share(types, i % types),
        }
    }

    fn name(&self) -> String {
        match self.split {
            Split::OneStreamEach => "one stream each".to_string(),
            Split::PerType { types } => format!(
                "{} per event type ({types} types)",
                self.subscribers / types
            ),
        }
    }
}

/// What one subscriber saw.
#[derive(Default)]
struct Seen {
    latencies: Vec<Duration>,
    received: u64,
    /// Events out of order, repeated, or after a gap in a stream's sequence.
    disorder: u64,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// One subscriber: subscribe from position 0, read `expected` events, check them.
async fn subscriber(addr: String, filter: Value, expected: u64, ready: Arc<AtomicU64>) -> Seen {
    let mut request = format!("ws://{addr}/graphql/ws")
        .into_client_request()
        .unwrap_or_else(|e| panic!("{e}"));
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws"
            .parse()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    // The client reads in small pieces too: the library zero-fills its whole read
    // buffer on every poll, and the clients share the server's cores.
    let config =
        tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096);
    let (mut socket, _) =
        tokio_tungstenite::connect_async_with_config(request, Some(config), false)
            .await
            .unwrap_or_else(|e| panic!("connecting a subscriber: {e}"));
    let send = |value: Value| Message::Text(value.to_string().into());
    socket
        .send(send(json!({"type": "connection_init", "payload": {}})))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let query = "subscription($f: LiveFilter) { events(filter: $f, fromPosition: 0) { position entityId version payload } }";
    socket
        .send(send(json!({"id": "1", "type": "subscribe",
            "payload": {"query": query, "variables": {"f": filter}}})))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut seen = Seen::default();
    let mut acked = false;
    let mut last_position: Option<u64> = None;
    let mut last_version: HashMap<String, u64> = HashMap::new();
    while seen.received < expected {
        // Quiet for this long: the missing events are not coming; count them missed.
        let message = match tokio::time::timeout(Duration::from_secs(30), socket.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(e))) => panic!("subscriber socket: {e}"),
            Ok(None) => panic!("the server closed a subscriber's socket"),
            Err(_) => break,
        };
        let Message::Text(text) = message else {
            continue;
        };
        let arrived = now_ns();
        let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        match value["type"].as_str() {
            Some("connection_ack") => {
                acked = true;
                ready.fetch_add(1, Ordering::SeqCst);
            }
            Some("next") => {
                let event = &value["payload"]["data"]["events"];
                let position = event["position"].as_u64().unwrap_or(0);
                let sent = event["payload"]["sent"].as_u64().unwrap_or(0);
                let stream = event["entityId"].as_str().unwrap_or("").to_string();
                let version = event["version"].as_u64().unwrap_or(0);
                // Positions rise; each stream's versions come 1, 2, 3, … with no gap.
                let in_order = last_position.is_none_or(|p| position > p)
                    && version == last_version.get(&stream).copied().unwrap_or(0) + 1;
                if !in_order {
                    seen.disorder += 1;
                }
                last_position = Some(position);
                last_version.insert(stream, version);
                seen.received += 1;
                seen.latencies
                    .push(Duration::from_nanos(arrived.saturating_sub(sent)));
            }
            Some("ping") => {
                let _ = socket.send(send(json!({"type": "pong"}))).await;
            }
            other => panic!("unexpected message {other:?}: {text}"),
        }
    }
    assert!(acked);
    let _ = socket.close(None).await;
    seen
}

struct Row {
    load: Load,
    appended: u64,
    append_seconds: f64,
    server_cpu: f64,
    seen: Vec<Seen>,
}

async fn run(dir: &Path, load: Load) -> Row {
    let server = Server::start(dir, "always");
    let ready = Arc::new(AtomicU64::new(0));
    let total = load.rate * load.seconds;
    let subscribers: Vec<_> = (0..load.subscribers)
        .map(|i| {
            tokio::spawn(subscriber(
                server.addr.clone(),
                load.filter(i),
                load.expected(i, total),
                Arc::clone(&ready),
            ))
        })
        .collect();
    while ready.load(Ordering::SeqCst) < load.subscribers {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let the subscriptions start before the clock does.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let client = reqwest::Client::new();
    let url = format!("http://{}/api/v1/events", server.addr);
    let tick = Duration::from_millis(10);
    let per_tick = load.rate / 100;
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let cpu_before = server.cpu();
    let started = Instant::now();
    let mut requests = Vec::new();
    let mut n = 0;
    while n < total {
        interval.tick().await;
        let sent = now_ns();
        let events: Vec<Value> = (n..(n + per_tick).min(total))
            .map(|i| {
                json!({"event_type": load.event_type(i),
                       "entity_id": format!("order-{}", i % load.streams),
                       "payload": {"n": i, "sent": sent}})
            })
            .collect();
        n += events.len() as u64;
        let request = client.post(&url).json(&json!({ "events": events }));
        requests.push(tokio::spawn(async move {
            let response = request.send().await.unwrap_or_else(|e| panic!("{e}"));
            assert!(
                response.status().is_success(),
                "append answered {}",
                response.status()
            );
        }));
    }
    for request in requests {
        request.await.unwrap_or_else(|e| panic!("{e}"));
    }
    let append_seconds = started.elapsed().as_secs_f64();
    let mut seen = Vec::new();
    for subscriber in subscribers {
        seen.push(subscriber.await.unwrap_or_else(|e| panic!("{e}")));
    }
    let server_cpu = (server.cpu() - cpu_before).as_secs_f64() / started.elapsed().as_secs_f64();
    Row {
        load,
        appended: total,
        append_seconds,
        server_cpu,
        seen,
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "| subscribers | split | events appended | append rate | deliveries | missed | out of order | latency p50 (ms) | p99 (ms) | max (ms) | server cores busy |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let expected: u64 = (0..row.load.subscribers)
            .map(|i| row.load.expected(i, row.appended))
            .sum();
        let received: u64 = row.seen.iter().map(|s| s.received).sum();
        let disorder: u64 = row.seen.iter().map(|s| s.disorder).sum();
        let mut latencies: Vec<Duration> = row
            .seen
            .iter()
            .flat_map(|s| s.latencies.iter().copied())
            .collect();
        latencies.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "| {} | {} | {} | {:.0}/s | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.2} |",
            row.load.subscribers,
            row.load.name(),
            row.appended,
            row.appended as f64 / row.append_seconds,
            received,
            expected - received.min(expected),
            disorder,
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99)),
            ms(latencies.last().copied().unwrap_or_default()),
            row.server_cpu,
        );
    }
}

fn main() {
    let size = Size::from_args();
    let (subscribers, rate, seconds) =
        size.pick((20, 1_000, 1), (1_000, 10_000, 5), (1_000, 10_000, 30));
    let base = common::data_dir().join("fanout");
    let runtime = common::runtime();
    let rows = runtime.block_on(async {
        let mut rows = Vec::new();
        for split in [
            Split::OneStreamEach,
            Split::PerType {
                types: subscribers / 10,
            },
        ] {
            let load = Load {
                subscribers,
                streams: subscribers,
                rate,
                seconds,
                split,
            };
            eprintln!("fan-out: {} subscribers, {}", subscribers, load.name());
            rows.push(run(&base.join("store"), load).await);
        }
        rows
    });
    print_table(&rows);
    for row in &rows {
        let received: u64 = row.seen.iter().map(|s| s.received).sum();
        let expected: u64 = (0..row.load.subscribers)
            .map(|i| row.load.expected(i, row.appended))
            .sum();
        assert_eq!(received, expected, "events were missed");
        assert_eq!(row.seen.iter().map(|s| s.disorder).sum::<u64>(), 0);
    }
    let _ = std::fs::remove_dir_all(&base);
}
