//! The pipelines' source plan: a tenant's log from a position, history from Parquet
//! then live from the buffer, as an unbounded stream with no gap or duplicate.

use std::sync::Arc;
use std::time::Duration;

use allsource::engine::{AppendRequest, Durability, EventData, EventStore, ExpectedVersion};
use allsource::operators::source::LogSourceExec;
use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::UInt64Type;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::execution_plan::Boundedness;
use futures::StreamExt;

use crate::util;

async fn append(store: &EventStore, tenant: &str, n: u64) {
    store
        .append(AppendRequest::new(tenant).stream(
            format!("s{}", n % 7),
            ExpectedVersion::Any,
            vec![EventData::new("tick", format!(r#"{{"n":{n}}}"#))],
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

fn column(batch: &RecordBatch, name: &str) -> Vec<u64> {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no {name}"))
        .as_primitive::<UInt64Type>()
        .values()
        .to_vec()
}

/// `n` of each event's payload.
fn numbers(batch: &RecordBatch) -> Vec<u64> {
    let payloads = batch
        .column_by_name("payload")
        .unwrap_or_else(|| panic!("no payload"))
        .as_string::<i32>();
    payloads
        .iter()
        .map(|p| {
            let value: serde_json::Value =
                serde_json::from_str(p.unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
            value["n"].as_u64().unwrap_or_else(|| panic!("{value}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_reads_history_then_live_events_across_flushes_exactly_once() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = util::open(dir.path(), Durability::Never);
    for n in 0..300 {
        append(&store, "t", n).await;
        if n % 10 == 0 {
            append(&store, "other", n).await;
        }
    }
    store.flush().await.unwrap_or_else(|e| panic!("{e}"));

    let source = LogSourceExec::new(store.clone(), "t", 0);
    assert!(matches!(
        source.properties().boundedness,
        Boundedness::Unbounded { .. }
    ));
    let mut stream = source
        .execute(0, Arc::new(TaskContext::default()))
        .unwrap_or_else(|e| panic!("{e}"));
    let progress = source.progress().unwrap_or_else(|| panic!("running"));

    // Appends go on while the stream is read, with a flush in the middle: events
    // move from the buffer to Parquet under the reader's feet.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for n in 300..600 {
                append(&store, "t", n).await;
                if n == 450 {
                    store.flush().await.unwrap_or_else(|e| panic!("{e}"));
                }
            }
        })
    };
    let mut positions = Vec::new();
    let mut seen = Vec::new();
    while seen.len() < 600 {
        let batch = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .unwrap_or_else(|_| panic!("stalled after {} events", seen.len()))
            .unwrap_or_else(|| panic!("ended early"))
            .unwrap_or_else(|e| panic!("{e}"));
        let tenants = batch
            .column_by_name("tenant")
            .unwrap_or_else(|| panic!("no tenant"))
            .as_string::<i32>();
        assert!(
            tenants.iter().all(|t| t == Some("t")),
            "another tenant's event"
        );
        positions.extend(column(&batch, "position"));
        seen.extend(numbers(&batch));
    }
    writer.await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "not in log order"
    );
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..600).collect::<Vec<u64>>(),
        "a gap or a duplicate"
    );
    assert_eq!(seen, sorted, "out of order");
    let last = positions.last().copied().unwrap_or_default();
    assert!(progress.position() > last);
    assert_eq!(progress.lag(), 0);

    // From a position in the middle: exactly the events from there on.
    let middle = positions[250];
    let source = LogSourceExec::new(store.clone(), "t", middle);
    let mut stream = source
        .execute(0, Arc::new(TaskContext::default()))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut from_middle = Vec::new();
    while from_middle.len() < 350 {
        let batch = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .unwrap_or_else(|_| panic!("stalled"))
            .unwrap_or_else(|| panic!("ended early"))
            .unwrap_or_else(|e| panic!("{e}"));
        from_middle.extend(column(&batch, "position"));
    }
    assert_eq!(from_middle, positions[250..].to_vec());

    // Unbounded: it waits for more, and ends when the store closes.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), stream.next())
            .await
            .is_err(),
        "yielded with nothing new"
    );
    store.close().unwrap_or_else(|e| panic!("{e}"));
    let end = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .unwrap_or_else(|_| panic!("did not end when the store closed"));
    assert!(end.is_none(), "{end:?}");
}
