//! Macro benchmark of Arrow Flight: DoPut ingest and DoGet of a large result, over a
//! real gRPC connection on loopback to the Flight service, with DuckDB reading the
//! same Parquet files into Arrow in the same run. Prints Markdown tables.
//!
//! - DoPut: `N` events (10M by default) in batches of 10,000 rows, durability
//!   `always` (each batch acknowledged once fsynced), ~120-byte JSON payloads.
//! - DoGet: the whole log is flushed to Parquet and compacted (so no tiering work runs
//!   while either reader is timed), then `SELECT <columns> FROM events`
//!   streams every row to the client, which decodes the batches. DuckDB runs the same
//!   projection over `read_parquet([the files the manifest names])` and hands out Arrow record
//!   batches (`to_arrow_reader`), also decoded in full.
//!
//! Run: `cargo bench --bench flight` (`-- --quick` for 1M events). Needs `python3`
//! with `duckdb` and `pyarrow` for the comparison. Under `cargo test` it runs a tiny
//! smoke version without DuckDB. `ALLSOURCE_BENCH_DIR` puts the store on another disk
//! (default: `target/bench-data`); other `ALLSOURCE_*` settings apply.

mod common;

use common::Size;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use allsource::engine::{Durability, EventStore, StoreConfig};
use allsource::flight::Auth;
use allsource::flight::sql::EVENTS_TABLE;
use allsource::sql::EventQl;
use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::{FlightClient, FlightDescriptor};
use futures::{StreamExt, TryStreamExt};
use tonic::transport::Channel;

const BATCH_ROWS: usize = 10_000;

/// The columns read back, the same for EventQL and DuckDB.
const COLUMNS: &str = "position, entity_id, event_type, version, timestamp, payload";

const DUCKDB: &str = r#"
import duckdb, json, sys, time
files, columns = json.loads(sys.argv[1]), sys.argv[2]
con = duckdb.connect()
con.execute("SET enable_progress_bar=false")
times = []
for _ in range(3):
    t = time.perf_counter()
    reader = con.execute(f"SELECT {columns} FROM read_parquet(?)", [files]).to_arrow_reader(65536)
    rows = 0
    size = 0
    for batch in reader:
        rows += batch.num_rows
        size += batch.nbytes
    times.append(time.perf_counter() - t)
times.sort()
print(json.dumps({"seconds": times[1], "rows": rows, "bytes": size}))
"#;

fn main() {
    let size = Size::from_args();
    let events: usize = size.pick(30_000, 1_000_000, 10_000_000);
    common::runtime().block_on(run(&common::data_dir(), events, size != Size::Smoke));
}

/// Batch `i` of the load: 10,000 events of 1,000 entities.
fn batch(i: usize) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("entity_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("payload", DataType::Utf8, false),
    ]));
    let first = i * BATCH_ROWS;
    let rows = first..first + BATCH_ROWS;
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.clone().map(|n| format!("customer-{}", n % 100_000)),
            )),
            Arc::new(StringArray::from_iter_values(rows.clone().map(|n| {
                if n % 20 == 0 { "order.paid" } else { "order.placed" }
            }))),
            Arc::new(StringArray::from_iter_values(rows.map(|n| {
                format!(
                    r#"{{"order_id": "o-{n}", "amount": {}.{:02}, "currency": "EUR", "items": {}, "channel": "web"}}"#,
                    n % 500,
                    n % 100,
                    n % 7 + 1
                )
            }))),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

async fn run(base: &Path, events: usize, with_duckdb: bool) {
    let dir = tempfile::tempdir_in(base).unwrap_or_else(|e| panic!("{e}"));
    let config = StoreConfig::from_env(dir.path())
        .unwrap_or_else(|e| panic!("{e}"))
        .with_durability(Durability::Always);
    let store = EventStore::open(config).unwrap_or_else(|e| panic!("{e}"));
    let eventql = EventQl::new(store.clone());
    let files_query = eventql.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(allsource::flight::serve(
        listener,
        store.clone(),
        eventql,
        Auth::none(),
        None,
        async move {
            let _ = stopped.await;
        },
    ));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap_or_else(|e| panic!("{e}"))
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(8 << 20))
        .tcp_nodelay(true)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // The batches exist before the clock starts: 100 distinct ones, sent in turn.
    let distinct: Vec<RecordBatch> = (0..100.min(events / BATCH_ROWS).max(1))
        .map(batch)
        .collect();
    let sent_batches = events / BATCH_ROWS;
    let wire_batches: Vec<RecordBatch> = (0..sent_batches)
        .map(|i| distinct[i % distinct.len()].clone())
        .collect();
    let mut client = FlightClient::new(channel.clone());
    let started = Instant::now();
    let data = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(FlightDescriptor::new_path(vec![EVENTS_TABLE.into()])))
        .build(futures::stream::iter(wire_batches.into_iter().map(Ok)));
    let acks: Vec<_> = client
        .do_put(data)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let put_time = started.elapsed();
    assert_eq!(acks.len(), sent_batches, "one acknowledgement per batch");
    let appended = store.stats().events;
    assert_eq!(appended as usize, sent_batches * BATCH_ROWS);
    let wal = store.stats().wal;

    let started = Instant::now();
    let report = store.flush().await.unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "flushed {} events to {} Parquet files ({} MB) in {:.1}s",
        report.events,
        report.files,
        report.bytes / 1_000_000,
        started.elapsed().as_secs_f64()
    );
    // A compaction pass waits for one the background flusher may be running and
    // leaves nothing to merge, so neither reader below competes with tiering work.
    let started = Instant::now();
    let compaction = store.compact().await.unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "compacted: {} files merged into {} in {:.1}s; {} files in the manifest",
        compaction.files_merged,
        compaction.files_written,
        started.elapsed().as_secs_f64(),
        store.manifest().files.len()
    );

    let mut gets = Vec::new();
    let mut result = (0usize, 0usize);
    for _ in 0..3 {
        let started = Instant::now();
        result = do_get(channel.clone(), &format!("SELECT {COLUMNS} FROM events")).await;
        gets.push(started.elapsed());
    }
    gets.sort_unstable();
    let get_time = gets[1];
    assert_eq!(result.0, appended as usize, "DoGet returns every row");

    println!("\n## Flight: DoPut and DoGet ({appended} events)\n");
    println!(
        "DoPut: {sent_batches} batches of {BATCH_ROWS} rows, durability `always`, one connection; \
         {} WAL fsyncs taking {:.1} s in all, {} WAL bytes ({:.0} per event).\n",
        wal.fsyncs,
        wal.fsync_micros as f64 / 1e6,
        wal.bytes_written,
        wal.bytes_written as f64 / appended.max(1) as f64
    );
    println!("| operation | rows | seconds | rows/s | MB/s (Arrow IPC) |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| DoPut ingest, `always` | {appended} | {:.2} | {:.0} | |",
        put_time.as_secs_f64(),
        appended as f64 / put_time.as_secs_f64()
    );
    println!(
        "| DoGet `SELECT {COLUMNS}` (median of 3) | {} | {:.2} | {:.0} | {:.0} |",
        result.0,
        get_time.as_secs_f64(),
        result.0 as f64 / get_time.as_secs_f64(),
        result.1 as f64 / 1e6 / get_time.as_secs_f64()
    );
    if with_duckdb {
        // The files the manifest names now (not those compaction has replaced and
        // not yet deleted).
        let batches = files_query
            .query("default", "SELECT path FROM files")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let tables = dir.path().join("tables");
        let files: Vec<String> = batches
            .iter()
            .flat_map(|b| {
                let paths = b.column(0).as_string::<i32>().clone();
                (0..paths.len()).map(move |i| paths.value(i).to_string())
            })
            .map(|p| tables.join(p).display().to_string())
            .collect();
        let theirs = duckdb(&files);
        println!(
            "| DuckDB `read_parquet` to Arrow, same columns (median of 3) | {} | {:.2} | {:.0} | {:.0} (Arrow buffers) |",
            theirs.1,
            theirs.0,
            theirs.1 as f64 / theirs.0,
            theirs.2 as f64 / 1e6 / theirs.0
        );
        println!(
            "\nDoGet time / DuckDB time: **{:.2}×**",
            get_time.as_secs_f64() / theirs.0
        );
    }
    let _ = stop.send(());
    let _ = server.await;
    store.close().unwrap_or_else(|e| panic!("{e}"));
}

/// Run `sql` over Flight SQL and decode every batch; (rows, IPC bytes received).
async fn do_get(channel: Channel, sql: &str) -> (usize, usize) {
    let mut sql_client = FlightSqlServiceClient::new(channel.clone());
    let info = sql_client
        .execute(sql.into(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ticket = info.endpoint[0]
        .ticket
        .clone()
        .unwrap_or_else(|| panic!("no ticket"));
    let mut raw = FlightServiceClient::new(channel);
    let data = raw
        .do_get(ticket)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let bytes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&bytes);
    let data = data
        .inspect_ok(move |d| {
            counted.fetch_add(
                d.data_body.len() + d.data_header.len(),
                std::sync::atomic::Ordering::Relaxed,
            );
        })
        .map_err(|s| arrow_flight::error::FlightError::Tonic(Box::new(s)));
    let mut batches = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(data);
    let mut rows = 0;
    while let Some(batch) = batches.next().await {
        rows += batch.unwrap_or_else(|e| panic!("{e}")).num_rows();
    }
    (rows, bytes.load(std::sync::atomic::Ordering::Relaxed))
}

/// DuckDB's (seconds, rows, bytes) for the same projection over the same files.
fn duckdb(files: &[String]) -> (f64, usize, usize) {
    let files = serde_json::to_string(files).unwrap_or_else(|e| panic!("{e}"));
    let output = Command::new("python3")
        .args(["-c", DUCKDB])
        .arg(files)
        .arg(COLUMNS)
        .output()
        .unwrap_or_else(|e| {
            panic!("running python3 with duckdb (pip install duckdb pyarrow): {e}")
        });
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)));
    let field = |name: &str| out[name].as_f64().unwrap_or_else(|| panic!("no {name}"));
    (
        field("seconds"),
        field("rows") as usize,
        field("bytes") as usize,
    )
}
