//! The EventQL sqllogictest suite (`tests/eventql/slt/*.slt`). Every file runs three
//! times over the same fixture events: all in the buffer, all in Parquet, and split
//! across both. The expected results are the same in every mode.
//!
//! The fixture (tenant `acme`, plus tenant `other` that no query may see):
//! `order-1` placed/paid/shipped at ingest times 1000/2000/3000 s, `order-2` placed at
//! 1500 s, `order-3` placed and cancelled at 2500 s; `cart-9` one event at 3000 s.

use std::sync::Arc;

use allsource::engine::{
    AppendRequest, Clock, Durability, Environment, EventData, EventStore, ExpectedVersion,
    ManualClock, StoreConfig,
};
use allsource::sql::{EventQl, QueryError};
use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use sqllogictest::{DBOutput, DefaultColumnType};

#[derive(Debug, Clone, Copy)]
enum Mode {
    Buffer,
    Parquet,
    Split,
}

/// `(ingest time in seconds, tenant, entity, event type, payload)`.
const FIXTURE: [(i64, &str, &str, &str, &str); 8] = [
    (
        1000,
        "acme",
        "order-1",
        "order.placed",
        r#"{"status":"placed","amount":120.5,"qty":3,"customer":{"id":"c-1","tier":"gold"}}"#,
    ),
    (
        1500,
        "acme",
        "order-2",
        "order.placed",
        r#"{"status":"placed","amount":80,"qty":1,"customer":{"id":"c-2","tier":"silver"}}"#,
    ),
    (
        1500,
        "other",
        "order-1",
        "order.placed",
        r#"{"status":"secret","amount":1000000}"#,
    ),
    (
        2000,
        "acme",
        "order-1",
        "order.paid",
        r#"{"status":"paid","paid_with":"card"}"#,
    ),
    (
        2500,
        "acme",
        "order-3",
        "order.placed",
        r#"{"status":"placed","amount":15.25,"qty":5,"customer":{"id":"c-1","tier":"gold"}}"#,
    ),
    (
        2500,
        "acme",
        "order-3",
        "order.cancelled",
        r#"{"status":"cancelled","amount":null}"#,
    ),
    (
        3000,
        "acme",
        "order-1",
        "order.shipped",
        r#"{"status":"shipped","paid_with":null}"#,
    ),
    (
        3000,
        "acme",
        "cart-9",
        "cart.opened",
        r#"{"items":[1,2,3]}"#,
    ),
];

struct Db {
    eventql: EventQl,
    _store: EventStore,
    _dir: tempfile::TempDir,
}

#[derive(Debug)]
struct SltError(String);

impl std::fmt::Display for SltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SltError {}

impl From<QueryError> for SltError {
    fn from(e: QueryError) -> Self {
        SltError(e.to_string())
    }
}

async fn load(mode: Mode) -> Db {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let clock = Arc::new(ManualClock::new(0));
    let store = EventStore::open_with(
        StoreConfig::new(dir.path())
            .with_durability(Durability::Never)
            .with_flush_interval_ms(0),
        Environment {
            clock: Arc::clone(&clock) as Arc<dyn Clock>,
            ..Environment::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for (i, (at, tenant, entity, kind, payload)) in FIXTURE.iter().enumerate() {
        if matches!(mode, Mode::Split) && i == FIXTURE.len() / 2 {
            store.flush().await.unwrap_or_else(|e| panic!("{e}"));
        }
        clock.set(at * 1_000_000);
        store
            .append(AppendRequest::new(*tenant).stream(
                *entity,
                ExpectedVersion::Any,
                vec![EventData::new(*kind, *payload)],
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    if matches!(mode, Mode::Parquet) {
        store.flush().await.unwrap_or_else(|e| panic!("{e}"));
    }
    let expected_buffered = match mode {
        Mode::Buffer => FIXTURE.len() as u64,
        Mode::Parquet => 0,
        Mode::Split => (FIXTURE.len() - FIXTURE.len() / 2) as u64,
    };
    let buffered: u64 = store
        .stats()
        .partition_stats
        .iter()
        .map(|p| p.buffered_events)
        .sum();
    assert_eq!(buffered, expected_buffered, "{mode:?}");
    Db {
        eventql: EventQl::new(store.clone()),
        _store: store,
        _dir: dir,
    }
}

fn cells(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, SltError> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SltError(e.to_string()))?;
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| {
                        let text = f.value(row).to_string();
                        if text.is_empty() {
                            "(empty)".to_string()
                        } else {
                            text
                        }
                    })
                    .collect(),
            );
        }
    }
    Ok(rows)
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for Db {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let batches = self.eventql.query("acme", sql).await?;
        let columns = batches.first().map_or(0, |b| b.num_columns());
        let rows = cells(&batches)?;
        if columns == 0 {
            return Ok(DBOutput::StatementComplete(0));
        }
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; columns],
            rows,
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "allsource"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventql_sqllogictests_in_buffer_parquet_and_split_modes() {
    let mut files: Vec<_> = std::fs::read_dir("tests/eventql/slt")
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    for mode in [Mode::Buffer, Mode::Parquet, Mode::Split] {
        for file in &files {
            let mut runner = sqllogictest::Runner::new(move || async move { Ok(load(mode).await) });
            runner
                .run_file_async(file)
                .await
                .unwrap_or_else(|e| panic!("{mode:?} {}: {e}", file.display()));
        }
    }
}
