//! The design notes' example query, run verbatim, returns the rows DuckDB returns for
//! the equivalent query over the same events (read from the store's Parquet files).

use std::collections::BTreeMap;
use std::process::Command;

use allsource::engine::{
    AppendRequest, Durability, EventData, EventStore, ExpectedVersion, StoreConfig,
};
use allsource::sql::EventQl;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType};

/// The example query from the design notes, verbatim.
const EXAMPLE: &str = include_str!("design_example.sql");

const DUCKDB: &str = r#"
import duckdb, json, sys
con = duckdb.connect()
con.execute("SET TimeZone='UTC'")
rows = con.execute("""
SELECT entity_id, COUNT(*) AS order_count,
       SUM(CAST(json_extract_string(payload, '$.amount') AS DOUBLE)) AS total_spent,
       epoch_us(DATE_TRUNC('day', timestamp)) AS day
FROM read_parquet(?)
WHERE tenant = 'acme' AND event_type = 'order.placed' AND timestamp >= NOW() - INTERVAL '30 days'
GROUP BY entity_id, DATE_TRUNC('day', timestamp)
HAVING COUNT(*) > 5
ORDER BY total_spent DESC
LIMIT 100
""", [sys.argv[1]]).fetchall()
print(json.dumps([[r[0], r[1], r[2], r[3]] for r in rows]))
"#;

/// (entity_id, day in µs) -> (order count, total spent).
type Rows = BTreeMap<(String, i64), (i64, f64)>;

const DAY: i64 = 86_400_000_000;

/// Orders for 12 customers over the last 60 days (none within two hours of the
/// 30-day boundary, so both engines' NOW() agree), plus other event types and another
/// tenant's orders, which the example must not count.
fn requests(now: i64) -> Vec<AppendRequest> {
    let mut out = Vec::new();
    let mut seed = 7u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for customer in 0..12u64 {
        for day in 1..60i64 {
            if (29..=30).contains(&day) {
                continue;
            }
            let orders = 3 + next() % 7;
            let mut events = Vec::new();
            for k in 0..orders {
                let at = now - day * DAY + (k as i64) * 60_000_000 + 3_600_000_000;
                let amount = 10 + next() % 490;
                let cents = next() % 100;
                events.push(
                    EventData::new(
                        "order.placed",
                        format!(
                            r#"{{"amount": {amount}.{cents:02}, "customer": {{"tier": "gold"}}}}"#
                        ),
                    )
                    .with_timestamp_micros(at),
                );
                if k % 3 == 0 {
                    events.push(
                        EventData::new("order.paid", r#"{"amount": 1}"#).with_timestamp_micros(at),
                    );
                }
            }
            out.push(AppendRequest::new("acme").stream(
                format!("customer-{customer}"),
                ExpectedVersion::Any,
                events,
            ));
            if customer < 2 {
                out.push(
                    AppendRequest::new("other").stream(
                        format!("customer-{customer}"),
                        ExpectedVersion::Any,
                        (0..8)
                            .map(|_| {
                                EventData::new("order.placed", r#"{"amount": 1000}"#)
                                    .with_timestamp_micros(now - day * DAY + 3_600_000_000)
                            })
                            .collect(),
                    ),
                );
            }
        }
    }
    out
}

fn ours(batches: &[RecordBatch]) -> (Rows, Vec<f64>) {
    let mut rows = Rows::new();
    let mut order = Vec::new();
    for batch in batches {
        let entity = batch.column(0).as_string::<i32>();
        let count = arrow::compute::cast(batch.column(1), &DataType::Int64)
            .unwrap_or_else(|e| panic!("{e}"));
        let total = arrow::compute::cast(batch.column(2), &DataType::Float64)
            .unwrap_or_else(|e| panic!("{e}"));
        let day = arrow::compute::cast(
            batch.column(3),
            &DataType::Timestamp(TimeUnit::Microsecond, None),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let (count, total, day) = (
            count.as_primitive::<Int64Type>(),
            total.as_primitive::<Float64Type>(),
            day.as_primitive::<TimestampMicrosecondType>(),
        );
        for row in 0..batch.num_rows() {
            assert!(!total.is_null(row));
            order.push(total.value(row));
            rows.insert(
                (entity.value(row).to_string(), day.value(row)),
                (count.value(row), total.value(row)),
            );
        }
    }
    (rows, order)
}

fn duckdb(parquet_glob: &str) -> Rows {
    let output = Command::new("python3")
        .args(["-c", DUCKDB, parquet_glob])
        .output()
        .unwrap_or_else(|e| panic!("running python3 with duckdb (pip install duckdb): {e}"));
    assert!(
        output.status.success(),
        "duckdb: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: Vec<(String, i64, f64, i64)> =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}"));
    rows.into_iter()
        .map(|(e, c, t, d)| ((e, d), (c, t)))
        .collect()
}

fn assert_same(mode: &str, ours: &Rows, theirs: &Rows) {
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>(),
        "{mode}: groups differ"
    );
    for (key, (count, total)) in ours {
        let (their_count, their_total) = theirs[key];
        assert_eq!(*count, their_count, "{mode}: count of {key:?}");
        assert!(
            (total - their_total).abs() < 1e-6 * their_total.abs().max(1.0),
            "{mode}: total of {key:?}: {total} vs {their_total}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_query_matches_duckdb_from_buffer_parquet_and_both() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = EventStore::open(
        StoreConfig::new(dir.path())
            .with_durability(Durability::Never)
            .with_flush_interval_ms(0),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    let requests = requests(now);
    let half = requests.len() / 2;
    let eventql = EventQl::new(store.clone());
    let mut results = Vec::new();
    let mut requests = requests.into_iter();
    for request in requests.by_ref().take(half) {
        store
            .append(request)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    store.flush().await.unwrap_or_else(|e| panic!("{e}"));
    for request in requests {
        store
            .append(request)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // Split: half in Parquet, half in the buffer.
    results.push((
        "split",
        eventql
            .query("acme", EXAMPLE)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    ));
    store.flush().await.unwrap_or_else(|e| panic!("{e}"));
    results.push((
        "parquet",
        eventql
            .query("acme", EXAMPLE)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    ));
    store.close().unwrap_or_else(|e| panic!("{e}"));

    // All in the buffer: the same events in a store that never flushes.
    let buffered_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let buffered = EventStore::open(
        StoreConfig::new(buffered_dir.path())
            .with_durability(Durability::Never)
            .with_flush_interval_ms(0),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for request in self::requests(now) {
        buffered
            .append(request)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    results.push((
        "buffer",
        EventQl::new(buffered.clone())
            .query("acme", EXAMPLE)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    ));

    let glob = format!("{}/tables/data/*/*.parquet", dir.path().display());
    let theirs = duckdb(&glob);
    assert!(
        theirs.len() > 50,
        "the example selects enough groups: {}",
        theirs.len()
    );
    for (mode, batches) in &results {
        let schema = batches[0].schema();
        assert!(
            schema
                .fields()
                .iter()
                .all(|f| !matches!(f.data_type(), DataType::Union(..))),
            "{mode}: {schema:?}"
        );
        let (rows, order) = ours(batches);
        assert!(
            order.windows(2).all(|w| w[0] >= w[1]),
            "{mode}: ordered by total_spent desc"
        );
        assert_same(mode, &rows, &theirs);
    }
}
