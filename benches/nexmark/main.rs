//! Nexmark: the online-auction streaming benchmark, as AllSource pipelines.
//!
//! Events come from the seeded generator ([`generator`]) at 1,000 events per
//! second of event time, as the store keeps them (`person`, `auction` and `bid`
//! events, their fields in the payload). Each query is an EventQL pipeline:
//!
//! - **Throughput**: the events, built up front as batches of 1,024 (the size a
//!   pipeline's source hands it), fed to the compiled pipeline and timed from the
//!   first batch to the end of the input (open windows emitted): events/s on one core,
//!   in order, and out of order (each event's time up to 2 s back, 2 s of allowed
//!   lateness, so none is late). Each query runs several times (3 with `--quick`, 5
//!   in a full run); the table gives the median and the spread.
//! - **Correctness**: a smaller run of the same events appended to a store; each
//!   pipeline's whole output must equal the same query run as batch EventQL over the
//!   store, and that batch output must equal DuckDB's, running the benchmark's own
//!   SQL (joins, windows and sessions written out) over the store's Parquet files.
//!   q3 and q4 join the events with themselves (the pipeline's stream join);
//!   q4's answer is a query over its pipeline's table of closing prices, checked
//!   against the whole query as one batch query.
//!
//! Run: `cargo bench --bench nexmark` (`-- --quick` for a short run). Under
//! `cargo test` it runs the correctness checks on a small input, without timing.

#[path = "../common/mod.rs"]
mod common;
mod generator;

use std::time::Instant;

use allsource::engine::{
    AppendRequest, Durability, EventData, EventStore, ExpectedVersion, RecordedEvent, StoreConfig,
    event_schema, events_to_batch,
};
use allsource::operators::{Pipeline, PipelineOptions};
use allsource::sql::EventQl;
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use common::Size;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use generator::{Config, Generated, Generator};
use std::sync::Arc;

const TENANT: &str = "nexmark";
const RATE: u64 = 1_000;
const BATCH: usize = 1024;
const DISORDER_MICROS: i64 = 2_000_000;

/// A Nexmark query: its name, what it asks, and its EventQL.
struct Query {
    name: &'static str,
    what: &'static str,
    sql: &'static str,
    /// For a query whose pipeline keeps totals per key (a table updated as events
    /// arrive): the query over that table (`result`) that gives the answer. The
    /// batch form of the whole query is then `batch`.
    over_table: Option<OverTable>,
}

struct OverTable {
    outer: &'static str,
    batch: &'static str,
}

const QUERIES: &[Query] = &[
    Query {
        name: "q0",
        what: "pass-through of bids",
        sql: "SELECT payload->>'auction' AS auction, payload->>'bidder' AS bidder, \
              payload->>'price' AS price, timestamp AS date_time, payload->>'url' AS url \
              FROM events WHERE event_type = 'bid'",
        over_table: None,
    },
    Query {
        name: "q1",
        what: "bid prices in euros",
        sql: "SELECT payload->>'auction' AS auction, payload->>'bidder' AS bidder, \
              CAST(payload->>'price' AS BIGINT) * 0.908 AS price, timestamp AS date_time \
              FROM events WHERE event_type = 'bid'",
        over_table: None,
    },
    Query {
        name: "q2",
        what: "bids on auctions whose id is a multiple of 123",
        sql: "SELECT payload->>'auction' AS auction, payload->>'price' AS price \
              FROM events \
              WHERE event_type = 'bid' AND CAST(payload->>'auction' AS BIGINT) % 123 = 0",
        over_table: None,
    },
    Query {
        name: "q3",
        what: "auctions of category 10 by sellers in OR, ID or CA (incremental join)",
        sql: "SELECT p.payload->>'name' AS name, p.payload->>'city' AS city, \
                p.payload->>'state' AS state, a.payload->>'id' AS auction \
              FROM events AS a JOIN events AS p ON a.payload->>'seller' = p.payload->>'id' \
              WHERE a.event_type = 'auction' AND p.event_type = 'person' \
                AND CAST(a.payload->>'category' AS BIGINT) = 10 \
                AND p.payload->>'state' IN ('OR', 'ID', 'CA')",
        over_table: None,
    },
    Query {
        name: "q4",
        what: "average closing price per category (join, then totals per auction)",
        sql: "SELECT a.payload->>'id' AS auction, \
                CAST(a.payload->>'category' AS BIGINT) AS category, \
                MAX(CAST(b.payload->>'price' AS BIGINT)) AS final \
              FROM events AS a JOIN events AS b ON a.payload->>'id' = b.payload->>'auction' \
              WHERE a.event_type = 'auction' AND b.event_type = 'bid' \
                AND CAST(b.payload->>'date_time' AS BIGINT) \
                  BETWEEN CAST(a.payload->>'date_time' AS BIGINT) \
                  AND CAST(a.payload->>'expires' AS BIGINT) \
              GROUP BY a.payload->>'id', CAST(a.payload->>'category' AS BIGINT)",
        over_table: Some(OverTable {
            outer: "SELECT category, AVG(final) AS average FROM result GROUP BY category",
            batch: "SELECT category, AVG(final) AS average FROM ( \
                      SELECT CAST(a.payload->>'category' AS BIGINT) AS category, \
                        MAX(CAST(b.payload->>'price' AS BIGINT)) AS final \
                      FROM events AS a JOIN events AS b \
                        ON a.payload->>'id' = b.payload->>'auction' \
                      WHERE a.event_type = 'auction' AND b.event_type = 'bid' \
                        AND CAST(b.payload->>'date_time' AS BIGINT) \
                          BETWEEN CAST(a.payload->>'date_time' AS BIGINT) \
                          AND CAST(a.payload->>'expires' AS BIGINT) \
                      GROUP BY a.payload->>'id', CAST(a.payload->>'category' AS BIGINT)) \
                    GROUP BY category",
        }),
    },
    Query {
        name: "q5",
        what: "hot items: the most-bid auctions per 10 s window every 2 s",
        sql: "SELECT window_start, window_end, auction, bids FROM ( \
                SELECT window_start, window_end, payload->>'auction' AS auction, \
                  COUNT(*) AS bids, \
                  RANK() OVER (PARTITION BY window_start ORDER BY COUNT(*) DESC) AS place \
                FROM HOP(events, timestamp, INTERVAL '2' SECOND, INTERVAL '10' SECOND) \
                WHERE event_type = 'bid' \
                GROUP BY window_start, window_end, payload->>'auction') \
              WHERE place = 1",
        over_table: None,
    },
    Query {
        name: "q7",
        what: "the highest bid per 10 s window",
        sql: "SELECT window_start, window_end, MAX(CAST(payload->>'price' AS BIGINT)) AS price, \
                COUNT(*) AS bids \
              FROM TUMBLE(events, timestamp, INTERVAL '10' SECOND) \
              WHERE event_type = 'bid' GROUP BY window_start, window_end",
        over_table: None,
    },
    Query {
        name: "q11",
        what: "bids per bidder session (10 s gap)",
        sql: "SELECT window_start, window_end, entity_id AS bidder, COUNT(*) AS bids \
              FROM SESSION(events, timestamp, INTERVAL '10' SECOND, entity_id) \
              WHERE event_type = 'bid' GROUP BY window_start, window_end, entity_id",
        over_table: None,
    },
    Query {
        name: "q8",
        what: "new persons who opened an auction in the same 10 s window (window join)",
        sql: "SELECT window_start, window_end, \
                CASE WHEN event_type = 'person' THEN payload->>'id' \
                  ELSE payload->>'seller' END AS person, \
                MAX(CASE WHEN event_type = 'person' THEN payload->>'name' END) AS name \
              FROM TUMBLE(events, timestamp, INTERVAL '10' SECOND) \
              WHERE event_type IN ('person', 'auction') \
              GROUP BY window_start, window_end, \
                CASE WHEN event_type = 'person' THEN payload->>'id' \
                  ELSE payload->>'seller' END \
              HAVING SUM(CASE WHEN event_type = 'person' THEN 1 ELSE 0 END) > 0 \
                AND SUM(CASE WHEN event_type = 'auction' THEN 1 ELSE 0 END) > 0",
        over_table: None,
    },
];

fn events(count: usize, disorder_micros: i64) -> Vec<Generated> {
    let config = Config {
        rate: RATE,
        disorder_micros,
        seed: 42,
    };
    Generator::new(config).take(count).collect()
}

/// The events as a pipeline's source hands them over: batches in log order.
fn batches(events: &[Generated]) -> Vec<RecordBatch> {
    let schema = event_schema();
    let recorded: Vec<RecordedEvent> = events
        .iter()
        .map(|g| {
            let (kind, entity, payload) = g.to_event();
            RecordedEvent {
                tenant: TENANT.into(),
                entity_id: entity.into(),
                event_type: kind.into(),
                version: 1,
                partition: 0,
                offset: g.number,
                position: g.number,
                event_id: format!("{:032}", g.number).into(),
                timestamp_micros: g.time_micros,
                ingested_at_micros: g.time_micros,
                payload: payload.to_string().into(),
                metadata: None,
            }
        })
        .collect();
    recorded
        .chunks(BATCH)
        .map(|chunk| {
            let refs: Vec<&RecordedEvent> = chunk.iter().collect();
            events_to_batch(&schema, &refs).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect()
}

fn options(disorder_micros: i64) -> PipelineOptions {
    PipelineOptions {
        allowed_lateness_micros: disorder_micros,
        ..PipelineOptions::default()
    }
}

/// Run `query`'s pipeline over `input` to its end: its rows (for a query over the
/// pipeline's table, that query's rows at the end), and events/s.
async fn run(
    eventql: &EventQl,
    query: &Query,
    input: &[RecordBatch],
    disorder_micros: i64,
) -> (Vec<RecordBatch>, f64) {
    let sql = query.sql;
    let mut pipeline = Pipeline::compile(eventql, TENANT, sql, options(disorder_micros))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let count: usize = input.iter().map(RecordBatch::num_rows).sum();
    let started = Instant::now();
    let mut out = Vec::new();
    for batch in input {
        out.extend(
            pipeline
                .process(batch)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
        );
    }
    out.extend(
        pipeline
            .finish()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}")),
    );
    if let Some(over) = &query.over_table {
        let table = pipeline
            .current()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        out = over_rows(pipeline.schema(), table, over.outer).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    if query.over_table.is_none() {
        // A running pipeline counts every event, late or not.
        assert_eq!(pipeline.stats().late_events, 0, "{sql}: late events");
    }
    (out, count as f64 / seconds)
}

/// `sql` over `rows` as the table `result`.
async fn over_rows(schema: SchemaRef, rows: Vec<RecordBatch>, sql: &str) -> Vec<RecordBatch> {
    let ctx = SessionContext::new();
    let table = MemTable::try_new(schema, vec![rows]).unwrap_or_else(|e| panic!("{e}"));
    ctx.register_table("result", Arc::new(table))
        .unwrap_or_else(|e| panic!("{e}"));
    ctx.sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Rows as sorted text lines.
fn lines(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = batch
                .columns()
                .iter()
                .map(|c| {
                    arrow::util::display::array_value_to_string(c, row)
                        .unwrap_or_else(|e| panic!("{e}"))
                })
                .collect();
            out.push(cells.join(" | "));
        }
    }
    out.sort();
    out
}

/// The benchmark's queries in their textbook SQL, in DuckDB over the store's Parquet
/// files (the glob is the first argument): typed views of persons, auctions and bids,
/// then each query with the joins, windows and sessions written out. Prints each
/// query's rows as JSON, timestamps as µs since the epoch.
const DUCKDB: &str = r#"
import duckdb, json, sys
con = duckdb.connect()
con.execute("SET TimeZone='UTC'")
con.execute("CREATE VIEW ev AS SELECT * FROM read_parquet(?) WHERE tenant = 'nexmark'".replace("?", "'" + sys.argv[1] + "'"))
def field(name, kind='BIGINT'):
    return f"CAST(json_extract_string(payload, '$.{name}') AS {kind}) AS {name}"
con.execute(f"""CREATE VIEW person AS SELECT {field('id')}, {field('name', 'VARCHAR')},
  {field('city', 'VARCHAR')}, {field('state', 'VARCHAR')}, timestamp AS date_time
  FROM ev WHERE event_type = 'person'""")
con.execute(f"""CREATE VIEW auction AS SELECT {field('id')}, {field('seller')}, {field('category')},
  {field('expires')}, CAST(json_extract_string(payload, '$.date_time') AS BIGINT) AS opened,
  timestamp AS date_time FROM ev WHERE event_type = 'auction'""")
con.execute(f"""CREATE VIEW bid AS SELECT entity_id, {field('auction')}, {field('bidder')}, {field('price')},
  {field('url', 'VARCHAR')}, CAST(json_extract_string(payload, '$.date_time') AS BIGINT) AS at,
  timestamp AS date_time FROM ev WHERE event_type = 'bid'""")
queries = {
  "q0": "SELECT auction, bidder, price, epoch_us(date_time), url FROM bid",
  "q1": "SELECT auction, bidder, price * CAST(0.908 AS DOUBLE), epoch_us(date_time) FROM bid",
  "q2": "SELECT auction, price FROM bid WHERE auction % 123 = 0",
  "q3": """SELECT P.name, P.city, P.state, A.id FROM auction A JOIN person P ON A.seller = P.id
           WHERE A.category = 10 AND P.state IN ('OR', 'ID', 'CA')""",
  "q4": """SELECT category, AVG(final) FROM (
             SELECT A.category, MAX(B.price) AS final FROM auction A JOIN bid B ON A.id = B.auction
             WHERE B.at BETWEEN A.opened AND A.expires GROUP BY A.id, A.category)
           GROUP BY category""",
  "q5": """WITH w AS (SELECT time_bucket(INTERVAL 2 SECOND, date_time) - to_seconds(2 * k) AS ws, auction
                      FROM bid, range(0, 5) t(k)),
                c AS (SELECT ws, auction, COUNT(*) AS n FROM w GROUP BY ws, auction),
                r AS (SELECT *, RANK() OVER (PARTITION BY ws ORDER BY n DESC) AS place FROM c)
           SELECT epoch_us(ws), epoch_us(ws + INTERVAL 10 SECOND), auction, n FROM r WHERE place = 1""",
  "q7": """SELECT epoch_us(time_bucket(INTERVAL 10 SECOND, date_time)),
                  epoch_us(time_bucket(INTERVAL 10 SECOND, date_time)) + 10000000, MAX(price), COUNT(*)
           FROM bid GROUP BY time_bucket(INTERVAL 10 SECOND, date_time)""",
  "q11": """WITH o AS (SELECT entity_id, epoch_us(date_time) AS t FROM bid),
                 d AS (SELECT *, t - LAG(t) OVER (PARTITION BY entity_id ORDER BY t) AS since FROM o),
                 s AS (SELECT *, SUM(CASE WHEN since IS NULL OR since >= 10000000 THEN 1 ELSE 0 END)
                         OVER (PARTITION BY entity_id ORDER BY t ROWS UNBOUNDED PRECEDING) AS session FROM d)
            SELECT MIN(t), MAX(t) + 10000000, entity_id, COUNT(*) FROM s GROUP BY entity_id, session""",
  "q8": """SELECT epoch_us(P.ws), epoch_us(P.ws) + 10000000, P.id, P.name
           FROM (SELECT id, name, time_bucket(INTERVAL 10 SECOND, date_time) AS ws FROM person) P
           JOIN (SELECT DISTINCT seller, time_bucket(INTERVAL 10 SECOND, date_time) AS ws FROM auction) A
           ON P.id = A.seller AND P.ws = A.ws""",
}
print(json.dumps({name: [list(row) for row in con.execute(sql).fetchall()] for name, sql in queries.items()}))
"#;

/// Every query in DuckDB over the Parquet files of `glob`: its rows as canonical lines
/// ([`canonical`]), by query name.
fn duckdb(glob: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    let output = std::process::Command::new("python3")
        .args(["-c", DUCKDB, glob])
        .output()
        .unwrap_or_else(|e| panic!("running python3 with duckdb (pip install duckdb): {e}"));
    assert!(
        output.status.success(),
        "duckdb: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let by_query: std::collections::BTreeMap<String, Vec<Vec<serde_json::Value>>> =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}"));
    by_query
        .into_iter()
        .map(|(name, rows)| {
            let mut lines: Vec<String> = rows
                .iter()
                .map(|row| {
                    let cells: Vec<String> = row
                        .iter()
                        .map(|cell| match cell {
                            serde_json::Value::Null => "null".to_string(),
                            serde_json::Value::Number(n) => match n.as_i64() {
                                Some(i) => i.to_string(),
                                None => float_text(n.as_f64().unwrap_or(f64::NAN)),
                            },
                            serde_json::Value::String(s) => text_cell(s),
                            other => other.to_string(),
                        })
                        .collect();
                    cells.join(" | ")
                })
                .collect();
            lines.sort();
            (name, lines)
        })
        .collect()
}

fn float_text(value: f64) -> String {
    format!("{value:.4}")
}

/// A text cell as the two engines can agree on it: a number's digits as that number.
fn text_cell(text: &str) -> String {
    text.parse::<i64>()
        .map_or_else(|_| text.to_string(), |i| i.to_string())
}

/// Rows as sorted lines in the form both engines' rows are compared in: timestamps
/// as µs since the epoch, integers as integers (also when a JSON operator returned
/// them as text), floats to four decimals.
fn canonical(batches: &[RecordBatch]) -> Vec<String> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Float64Type, Int64Type};
    let mut lines = Vec::new();
    for batch in batches {
        let columns: Vec<Vec<String>> = batch
            .columns()
            .iter()
            .map(|column| {
                let cast = |to: &DataType| {
                    arrow::compute::cast(column, to).unwrap_or_else(|e| panic!("{e}"))
                };
                let cells = |array: &dyn Array, text: &dyn Fn(usize) -> String| {
                    (0..array.len())
                        .map(|i| {
                            if array.is_null(i) {
                                "null".to_string()
                            } else {
                                text(i)
                            }
                        })
                        .collect::<Vec<_>>()
                };
                match column.data_type() {
                    DataType::Timestamp(..)
                    | DataType::Int8
                    | DataType::Int16
                    | DataType::Int32
                    | DataType::Int64
                    | DataType::UInt8
                    | DataType::UInt16
                    | DataType::UInt32
                    | DataType::UInt64 => {
                        let ints = cast(&DataType::Int64);
                        let ints = ints.as_primitive::<Int64Type>();
                        cells(ints, &|i| ints.value(i).to_string())
                    }
                    DataType::Float16
                    | DataType::Float32
                    | DataType::Float64
                    | DataType::Decimal128(..) => {
                        let floats = cast(&DataType::Float64);
                        let floats = floats.as_primitive::<Float64Type>();
                        cells(floats, &|i| float_text(floats.value(i)))
                    }
                    _ => {
                        let texts = cast(&DataType::Utf8);
                        let texts = texts.as_string::<i32>();
                        cells(texts, &|i| text_cell(texts.value(i)))
                    }
                }
            })
            .collect();
        for row in 0..batch.num_rows() {
            let cells: Vec<&str> = columns.iter().map(|c| c[row].as_str()).collect();
            lines.push(cells.join(" | "));
        }
    }
    lines.sort();
    lines
}

/// Append `events` to `store`, a request per 1,000 events.
async fn append(store: &EventStore, events: &[Generated]) {
    for chunk in events.chunks(1_000) {
        let mut request = AppendRequest::new(TENANT);
        for g in chunk {
            let (kind, entity, payload) = g.to_event();
            let event =
                EventData::new(kind, payload.to_string()).with_timestamp_micros(g.time_micros);
            request = request.stream(entity, ExpectedVersion::Any, vec![event]);
        }
        store
            .append(request)
            .await
            .unwrap_or_else(|e| panic!("appending: {e}"));
    }
}

/// Every query's pipeline output against batch EventQL over the same events, in
/// order and out of order. Returns the rows each query gave, in order.
async fn check(dir: &std::path::Path, count: usize) -> Vec<usize> {
    let mut rows = Vec::new();
    for (label, disorder) in [("in-order", 0), ("out-of-order", DISORDER_MICROS)] {
        let path = dir.join(label);
        let _ = std::fs::remove_dir_all(&path);
        let store = EventStore::open(StoreConfig::new(&path).with_durability(Durability::Never))
            .unwrap_or_else(|e| panic!("{e}"));
        let generated = events(count, disorder);
        append(&store, &generated).await;
        let eventql = EventQl::new(store.clone());
        let input = batches(&generated);
        // DuckDB reads the same events from the store's Parquet files.
        store.flush().await.unwrap_or_else(|e| panic!("{e}"));
        let glob = format!("{}/tables/data/*/*.parquet", path.display());
        let theirs = duckdb(&glob);
        for query in QUERIES {
            let (out, _) = run(&eventql, query, &input, disorder).await;
            let batch_sql = query.over_table.as_ref().map_or(query.sql, |o| o.batch);
            let batch = eventql
                .query(TENANT, batch_sql)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", query.name));
            let (streamed, expected) = (lines(&out), lines(&batch));
            assert!(!expected.is_empty(), "{}: no rows to compare", query.name);
            assert_eq!(
                streamed.len(),
                expected.len(),
                "{} ({label}): the pipeline's row count differs from the batch query's",
                query.name
            );
            if let Some(i) = (0..expected.len()).find(|&i| streamed[i] != expected[i]) {
                panic!(
                    "{} ({label}): row {i} differs: pipeline {:?}, batch {:?}",
                    query.name, streamed[i], expected[i]
                );
            }
            let ours = canonical(&batch);
            let duck = &theirs[query.name];
            assert_eq!(
                ours.len(),
                duck.len(),
                "{} ({label}): EventQL and DuckDB give different row counts",
                query.name
            );
            if let Some(i) = (0..ours.len()).find(|&i| ours[i] != duck[i]) {
                panic!(
                    "{} ({label}): row {i} differs: EventQL {:?}, DuckDB {:?}",
                    query.name, ours[i], duck[i]
                );
            }
            if disorder == 0 {
                rows.push(expected.len());
            }
        }
        store.close().unwrap_or_else(|e| panic!("{e}"));
        drop(store);
        let _ = std::fs::remove_dir_all(&path);
    }
    rows
}

/// The median of `values` (sorted in place).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// `min–max` of sorted `values`.
fn spread(values: &[f64]) -> String {
    format!("{}–{}", rate(values[0]), rate(values[values.len() - 1]))
}

/// Events/s, in thousands or millions.
fn rate(per_second: f64) -> String {
    if per_second >= 1e6 {
        format!("{:.2}M", per_second / 1e6)
    } else {
        format!("{:.0}K", per_second / 1e3)
    }
}

fn main() {
    let size = Size::from_args();
    let runtime = common::runtime();
    runtime.block_on(async {
        generator::check_definition();
        let dir = common::data_dir().join("nexmark");
        let checked = size.pick(20_000, 100_000, 100_000);
        let started = Instant::now();
        let rows = check(&dir, checked).await;
        println!(
            "Nexmark: every query's pipeline output equals batch EventQL, and EventQL's \
             equals DuckDB's over the same Parquet files, over {checked} events, in order \
             and out of order ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
        if size == Size::Smoke {
            return;
        }
        let count = size.pick(0, 500_000, 2_000_000);
        // The planner needs a store; the pipelines are fed batches directly.
        let path = dir.join("throughput");
        let _ = std::fs::remove_dir_all(&path);
        let store = EventStore::open(StoreConfig::new(&path).with_durability(Durability::Never))
            .unwrap_or_else(|e| panic!("{e}"));
        let eventql = EventQl::new(store.clone());
        let in_order = batches(&events(count, 0));
        let out_of_order = batches(&events(count, DISORDER_MICROS));
        println!();
        println!(
            "Nexmark throughput ({count} events, {RATE} events/s of event time, batches of \
             {BATCH}, one core)"
        );
        println!();
        let runs = size.pick(1, 3, 5);
        println!("Medians of {runs} runs each (min–max), runs of one query back to back.");
        println!();
        println!(
            "| query | what | in order (events/s) | min–max | out of order (events/s) | \
             min–max | rows ({checked} events) |"
        );
        println!("|---|---|---:|---|---:|---|---:|");
        for (query, checked_rows) in QUERIES.iter().zip(&rows) {
            let mut ordered = Vec::with_capacity(runs);
            let mut shuffled = Vec::with_capacity(runs);
            for _ in 0..runs {
                ordered.push(run(&eventql, query, &in_order, 0).await.1);
                shuffled.push(run(&eventql, query, &out_of_order, DISORDER_MICROS).await.1);
            }
            println!(
                "| {} | {} | {} | {} | {} | {} | {} |",
                query.name,
                query.what,
                rate(median(&mut ordered)),
                spread(&ordered),
                rate(median(&mut shuffled)),
                spread(&shuffled),
                checked_rows
            );
        }
        store.close().unwrap_or_else(|e| panic!("{e}"));
        let _ = std::fs::remove_dir_all(&path);
    });
}
