//! Macro benchmark of the HTTP server, printed as a Markdown table.
//!
//! The real `allsource serve` binary runs on a free loopback port; the clients are in
//! this process (reqwest, one keep-alive connection per client), so on a small
//! machine clients and server share the cores, and the figures include both sides.
//!
//! Scenarios:
//! - 64 connections sending single-event `POST /api/v1/events`, durability `always`;
//! - 64 connections sending 1000-event batches, durability `always`;
//! - `POST /api/v1/query` returning 1M rows as an Arrow IPC stream, read and decoded
//!   by the client (a separate server with durability `never` is loaded first).
//!
//! Request bodies are serialized before the clock starts (~150-byte payloads).
//!
//! Run: `cargo bench --bench http` (`-- --quick` for a short run). Under `cargo test`
//! it runs a tiny smoke version. Stores go to `ALLSOURCE_BENCH_DIR` (default
//! `target/bench-data`).

mod common;
mod server;

use common::{Size, percentile};
use server::Server;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};

struct Row {
    scenario: String,
    items: u64,
    unit: &'static str,
    seconds: f64,
    latencies: Vec<Duration>,
}

fn event(entity: u64, n: u64) -> Value {
    json!({
        "event_type": "order.placed",
        "entity_id": format!("order-{entity}"),
        "payload": {"order": n, "customer": format!("customer-{}", n % 997),
                    "amount_cents": n % 10_000, "currency": "EUR",
                    "items": [{"sku": format!("sku-{}", n % 311), "qty": 1 + n % 4}]},
    })
}

/// `clients` connections each sending `requests` bodies of `batch` events.
async fn appends(dir: &Path, clients: u64, requests: u64, batch: u64) -> Row {
    let server = Server::start(dir, "always");
    let base = format!("http://{}", server.addr);
    let bodies: Vec<Vec<Bytes>> = (0..clients)
        .map(|c| {
            (0..requests)
                .map(|r| {
                    let n = (c * requests + r) * batch;
                    let body = if batch == 1 {
                        event(n % 10_000, n)
                    } else {
                        let events: Vec<Value> =
                            (n..n + batch).map(|i| event(i % 10_000, i)).collect();
                        json!({"events": events})
                    };
                    Bytes::from(body.to_string())
                })
                .collect()
        })
        .collect();
    let (latencies, seconds) = server::post_all(&base, bodies).await;
    let scenario = if batch == 1 {
        format!("{clients} connections, single-event requests, durability always")
    } else {
        format!("{clients} connections, batches of {batch}, durability always")
    };
    Row {
        scenario,
        items: clients * requests * batch,
        unit: "events",
        seconds,
        latencies,
    }
}

/// Load `rows` events, then read them back through `POST /query` as Arrow IPC,
/// `runs` times.
async fn query(dir: &Path, rows: u64, runs: usize) -> Row {
    let server = Server::start(dir, "never");
    let base = format!("http://{}", server.addr);
    let batch = 5_000.min(rows);
    let bodies: Vec<Vec<Bytes>> = (0..2)
        .map(|c| {
            (0..rows / batch / 2)
                .map(|r| {
                    let n = (c * rows / 2) + r * batch;
                    let events: Vec<Value> = (n..n + batch).map(|i| event(i % 10_000, i)).collect();
                    Bytes::from(json!({"events": events}).to_string())
                })
                .collect()
        })
        .collect();
    server::post_all(&base, bodies).await;
    let client = reqwest::Client::new();
    let sql = "SELECT entity_id, event_type, version, position, timestamp, payload FROM events";
    let mut latencies = Vec::new();
    let mut read = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let body = client
            .post(format!("{base}/api/v1/query"))
            .header("accept", "application/vnd.apache.arrow.stream")
            .json(&json!({ "sql": sql }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)
            .unwrap_or_else(|e| panic!("{e}"));
        read = reader
            .map(|b| b.unwrap_or_else(|e| panic!("{e}")).num_rows() as u64)
            .sum::<u64>();
        latencies.push(started.elapsed());
    }
    assert_eq!(read, rows, "the query returned {read} rows, not {rows}");
    let mut sorted = latencies.clone();
    sorted.sort();
    Row {
        scenario: format!("POST /query, {rows} rows as Arrow IPC (median of {runs} runs)"),
        items: rows,
        unit: "rows",
        seconds: sorted[sorted.len() / 2].as_secs_f64(),
        latencies,
    }
}

fn print_table(rows: &mut [Row]) {
    println!("| scenario | items | per second | request p50 (ms) | request p99 (ms) |");
    println!("|---|---:|---:|---:|---:|");
    for row in rows.iter_mut() {
        row.latencies.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "| {} | {} {} | {:.0} {}/s | {:.2} | {:.2} |",
            row.scenario,
            row.items,
            row.unit,
            row.items as f64 / row.seconds,
            row.unit,
            ms(percentile(&row.latencies, 0.5)),
            ms(percentile(&row.latencies, 0.99)),
        );
    }
}

fn main() {
    let (single_requests, batch_requests, query_rows, runs) = Size::from_args().pick(
        (2, 1, 10_000, 1),
        (100, 2, 200_000, 3),
        (500, 8, 1_000_000, 5),
    );
    let base = common::data_dir().join("http");
    let runtime = common::runtime();
    let mut rows = runtime.block_on(async {
        vec![
            appends(&base.join("single"), 64, single_requests, 1).await,
            appends(&base.join("batches"), 64, batch_requests, 1000).await,
            query(&base.join("query"), query_rows, runs).await,
        ]
    });
    print_table(&mut rows);
    let _ = std::fs::remove_dir_all(&base);
}
