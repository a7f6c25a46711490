//! EventQL features one by one: JSON operators, time travel, entity state, system
//! tables, tenant scoping and pruning in EXPLAIN, rejected statements, limits.

use std::sync::Arc;
use std::time::Duration;

use allsource::engine::{
    AppendRequest, Durability, Environment, EventData, EventStore, ExpectedVersion, ManualClock,
    StoreConfig,
};
use allsource::sql::{EventQl, QueryError, QueryLimits};
use arrow::array::RecordBatch;

fn text(batches: &[RecordBatch]) -> String {
    arrow::util::pretty::pretty_format_batches(batches)
        .map(|t| t.to_string())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The single value of a one-row, one-column result, as text.
async fn value(eventql: &EventQl, sql: &str) -> String {
    let batches = eventql
        .query("acme", sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 1, "{sql}: {}", text(&batches));
    let batch = batches
        .iter()
        .find(|b| b.num_rows() == 1)
        .unwrap_or_else(|| panic!("no row"));
    arrow::util::display::array_value_to_string(batch.column(0), 0)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A store whose clock the test moves: events of `order-1` at t = 1000 s and 2000 s,
/// `order-2` at 1500 s; the first half flushed to Parquet. Another tenant's event too.
async fn store(dir: &std::path::Path) -> (EventStore, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(1_000_000_000));
    let store = EventStore::open_with(
        StoreConfig::new(dir)
            .with_durability(Durability::Never)
            .with_flush_interval_ms(0),
        Environment {
            clock: Arc::clone(&clock) as Arc<dyn allsource::engine::Clock>,
            ..Environment::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let append = |entity: &str, payloads: &[&str]| {
        AppendRequest::new("acme").stream(
            entity,
            ExpectedVersion::Any,
            payloads
                .iter()
                .map(|p| EventData::new("order.updated", *p))
                .collect(),
        )
    };
    store
        .append(append(
            "order-1",
            &[
                r#"{"status":"placed","amount":120.5,"qty":3,"customer":{"tier":"gold","id":"c-1"},"note":"fragile"}"#,
                r#"{"status":"paid"}"#,
            ],
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store.flush().await.unwrap_or_else(|e| panic!("{e}"));
    clock.set(1_500_000_000);
    store
        .append(append(
            "order-2",
            &[r#"{"status":"placed","amount":80,"qty":1,"customer":{"tier":"silver"}}"#],
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    clock.set(2_000_000_000);
    store
        .append(append(
            "order-1",
            &[r#"{"status":"shipped","note":null,"customer":{"id":"c-9"}}"#],
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .append(AppendRequest::new("other").stream(
            "order-1",
            ExpectedVersion::Any,
            vec![EventData::new(
                "order.updated",
                r#"{"status":"secret","amount":1e9}"#,
            )],
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (store, clock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_operators_time_travel_and_entity_state() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (store, _clock) = store(dir.path()).await;
    let eventql = EventQl::new(store.clone());

    // Tenant scoping: the other tenant's event is invisible.
    assert_eq!(value(&eventql, "SELECT COUNT(*) FROM events").await, "4");
    // ->> is text; numbers where numbers are meant, without casts.
    assert_eq!(
        value(
            &eventql,
            "SELECT payload->>'status' FROM events WHERE entity_id = 'order-2'"
        )
        .await,
        "placed"
    );
    assert_eq!(
        value(&eventql, "SELECT SUM(payload->>'amount') FROM events").await,
        "200.5"
    );
    assert_eq!(
        value(
            &eventql,
            "SELECT COUNT(*) FROM events WHERE payload->>'amount' > 100"
        )
        .await,
        "1"
    );
    assert_eq!(
        value(&eventql, "SELECT MAX((payload->>'qty') * 2) FROM events").await,
        "6.0"
    );
    assert_eq!(
        value(
            &eventql,
            "SELECT (payload->>'qty')::int + 1 FROM events WHERE entity_id = 'order-2'"
        )
        .await,
        "2"
    );
    // Nested paths, and -> handed out as JSON text (never a union column).
    assert_eq!(
        value(
            &eventql,
            "SELECT payload->'customer'->>'tier' FROM events WHERE entity_id = 'order-2'"
        )
        .await,
        "silver"
    );
    let customer = eventql
        .query(
            "acme",
            "SELECT payload->'customer' AS c FROM events WHERE entity_id = 'order-2'",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        customer[0].schema().field(0).data_type(),
        arrow::datatypes::DataType::Utf8 | arrow::datatypes::DataType::Utf8View
    ));
    assert!(
        text(&customer).contains(r#"{"tier":"silver"}"#),
        "{}",
        text(&customer)
    );
    // Time functions.
    assert_eq!(
        value(
            &eventql,
            "SELECT COUNT(DISTINCT DATE_BIN(INTERVAL '1 hour', ingested_at)) FROM events"
        )
        .await,
        "1"
    );
    assert_eq!(
        value(
            &eventql,
            "SELECT COUNT(*) FROM events WHERE timestamp < NOW() - INTERVAL '1 day'"
        )
        .await,
        "4"
    );

    // Time travel over ingestion time, across Parquet and buffer.
    assert_eq!(
        value(
            &eventql,
            "SELECT COUNT(*) FROM events AS OF TIMESTAMP '1970-01-01T00:16:40Z'"
        )
        .await,
        "2"
    );
    assert_eq!(
        value(&eventql, "SELECT COUNT(*) FROM events AS OF TIMESTAMP '1970-01-01 00:25:00' WHERE events.entity_id = 'order-2'").await,
        "1"
    );

    // The same time travel through the Rust API.
    for (as_of, versions) in [
        (999_999_999, vec![]),
        (1_500_000_000, vec![1, 2]),
        (2_000_000_000, vec![1, 2, 3]),
    ] {
        let events = store
            .read_stream_as_of("acme", "order-1", as_of)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            events.iter().map(|e| e.version).collect::<Vec<_>>(),
            versions,
            "as of {as_of}"
        );
    }

    // Entity state: the JSON merge of the payloads in version order.
    assert_eq!(
        value(&eventql, "SELECT entity_state('order-1')").await,
        r#"{"amount":120.5,"customer":{"id":"c-9","tier":"gold"},"qty":3,"status":"shipped"}"#
    );
    assert_eq!(
        value(
            &eventql,
            "SELECT entity_state('order-1', TIMESTAMP '1970-01-01T00:20:00Z')"
        )
        .await,
        r#"{"amount":120.5,"customer":{"id":"c-1","tier":"gold"},"note":"fragile","qty":3,"status":"paid"}"#
    );
    assert_eq!(value(&eventql, "SELECT entity_state('nobody')").await, "");

    // System tables.
    let streams = eventql
        .query(
            "acme",
            "SELECT entity_id, version, event_count FROM streams ORDER BY entity_id",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let streams = text(&streams);
    assert!(
        streams.contains("| order-1   | 3       | 3           |"),
        "{streams}"
    );
    assert!(
        streams.contains("| order-2   | 1       | 1           |"),
        "{streams}"
    );
    assert_eq!(value(&eventql, "SELECT COUNT(*) FROM files").await, "1");
    assert_eq!(
        value(&eventql, "SELECT SUM(events) FROM partitions").await,
        "5"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_the_tenant_scope_and_the_pruning() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = EventStore::open(
        StoreConfig::new(dir.path())
            .with_durability(Durability::Never)
            .with_flush_interval_ms(0),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..64 {
        store
            .append(AppendRequest::new("acme").stream(
                format!("e-{i}"),
                ExpectedVersion::Any,
                vec![EventData::new("x", r#"{"a":1}"#)],
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    store.flush().await.unwrap_or_else(|e| panic!("{e}"));
    let files = store.manifest().files.len();
    assert!(files > 16, "{files} files");
    let eventql = EventQl::new(store.clone());
    let plan = text(
        &eventql
            .query("acme", "EXPLAIN SELECT payload FROM events WHERE entity_id = 'e-7' AND timestamp > NOW() - INTERVAL '1 hour'")
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    );
    assert!(
        plan.contains("tenant@") && plan.contains("= acme"),
        "{plan}"
    );
    let parquet_files = plan.matches(".parquet").count();
    assert_eq!(parquet_files, 1, "one partition's file: {plan}");
    assert!(plan.contains("pruning_predicate"), "{plan}");
    assert!(
        plan.contains("entity_id_bloom_filter") || plan.contains("entity_id@"),
        "{plan}"
    );
}

#[tokio::test]
async fn statements_that_write_or_read_files_are_rejected_before_planning() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = EventStore::open(StoreConfig::new(dir.path()).with_flush_interval_ms(0))
        .unwrap_or_else(|e| panic!("{e}"));
    let eventql = EventQl::new(store);
    for sql in [
        "INSERT INTO events VALUES (1)",
        "DELETE FROM events",
        "UPDATE events SET payload = '{}'",
        "CREATE TABLE t (a INT)",
        "DROP TABLE events",
        "COPY (SELECT 1) TO '/tmp/x.csv'",
        "SET datafusion.execution.batch_size = 1",
        "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
        "SELECT * FROM read_parquet('/tmp/x.parquet')",
        "SELECT * FROM generate_series(1, 10)",
        "SELECT * FROM '/etc/passwd.csv'",
        "SELECT 1 INTO t",
    ] {
        match eventql.query("acme", sql).await {
            Err(QueryError::ReadOnly(what)) => {
                assert!(!what.is_empty(), "{sql}");
                let message = QueryError::ReadOnly(what).to_string();
                assert!(message.contains("read-only"), "{message}");
            }
            other => panic!("{sql}: expected a read-only rejection, got {other:?}"),
        }
    }
    assert!(matches!(
        eventql.query("acme", "SELEC 1").await,
        Err(QueryError::Syntax(_))
    ));
    assert!(matches!(
        eventql.query("acme", "SELECT 1; SELECT 2").await,
        Err(QueryError::Syntax(_))
    ));
    assert!(matches!(
        eventql.query("acme", "SELECT nope FROM events").await,
        Err(QueryError::Plan(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_and_time_limits_stop_a_query_and_the_store_keeps_serving() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = EventStore::open(
        StoreConfig::new(dir.path())
            .with_durability(Durability::Never)
            .with_flush_interval_ms(0),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let events = (0..2000)
        .map(|i| EventData::new("x", format!(r#"{{"i":{i},"pad":"{}"}}"#, "p".repeat(200))))
        .collect();
    store
        .append(AppendRequest::new("acme").stream("big", ExpectedVersion::Any, events))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let tight = EventQl::new(store.clone()).with_limits(QueryLimits {
        memory_bytes: 64 * 1024,
        timeout: Duration::from_secs(60),
    });
    let sorted = tight
        .query("acme", "SELECT payload FROM events ORDER BY payload DESC")
        .await;
    assert!(
        matches!(sorted, Err(QueryError::MemoryLimit { .. })),
        "{sorted:?}"
    );
    let quick = EventQl::new(store.clone()).with_limits(QueryLimits {
        memory_bytes: 1 << 30,
        timeout: Duration::from_millis(50),
    });
    let slow = quick
        .query(
            "acme",
            "SELECT COUNT(*) FROM events a, events b, events c WHERE a.version + b.version + c.version = 7",
        )
        .await;
    assert!(matches!(slow, Err(QueryError::Timeout(_))), "{slow:?}");
    assert_eq!(
        value(&EventQl::new(store), "SELECT COUNT(*) FROM events").await,
        "2000"
    );
}
