//! Pipelines joining their events with their events: each matching pair comes out
//! once, whichever side arrives first, and the whole output equals the same query
//! run as a batch query.

use std::time::{Duration, Instant};

use allsource::engine::{AppendRequest, EventData, ExpectedVersion};
use allsource::operators::{Error, PipelineState};
use allsource::sql::EventQl;
use serde_json::{Value, json};

use super::projections::{TENANT, append_one, caught_up, execute, fixture, open, rows};

const SELECT_SOLD_BY: &str = "SELECT a.entity_id AS auction, p.payload->>'name' AS seller \
    FROM events AS a JOIN events AS p ON a.payload->>'seller' = p.entity_id \
    WHERE a.event_type = 'auction' AND p.event_type = 'person'";

const SELECT_TOP_BID: &str = "SELECT a.entity_id AS auction, \
    MAX(CAST(b.payload->>'price' AS BIGINT)) AS top, COUNT(*) AS bids \
    FROM events AS a JOIN events AS b ON b.payload->>'auction' = a.entity_id \
    WHERE a.event_type = 'auction' AND b.event_type = 'bid' \
    AND CAST(b.payload->>'price' AS BIGINT) >= CAST(a.payload->>'reserve' AS BIGINT) \
    GROUP BY a.entity_id";

/// Poll until the table `name` holds exactly the rows of `batch_sql` run over the
/// whole log, and they are `expected`.
async fn equals_batch(eventql: &EventQl, name: &str, batch_sql: &str, expected: &[&str]) {
    let batch = rows(eventql, batch_sql).await;
    assert_eq!(batch, expected, "the batch query itself");
    let sql = format!("SELECT * FROM {name}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = rows(eventql, &sql).await;
        if got == batch {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: {got:#?}\nexpected {batch:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn append_together(store: &allsource::engine::EventStore, events: &[(&str, &str, Value)]) {
    let mut request = AppendRequest::new(TENANT);
    for (entity, kind, payload) in events {
        request = request.stream(
            *entity,
            ExpectedVersion::Any,
            vec![EventData::new(*kind, payload.to_string())],
        );
    }
    store
        .append(request)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_join_pairs_events_whichever_side_comes_first() {
    let f = fixture().await;
    // Before the pipeline: both sides are read from the log's start.
    append_one(&f.store, "p1", "person", json!({"name": "Ann"})).await;
    append_one(&f.store, "a1", "auction", json!({"seller": "p1"})).await;
    execute(
        &f.pipelines,
        &format!("CREATE PIPELINE sold_by AS {SELECT_SOLD_BY}"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // The auction before its seller, then both in one request, then a second
    // auction of an earlier seller; an event of neither side changes nothing.
    append_one(&f.store, "a2", "auction", json!({"seller": "p2"})).await;
    caught_up(&f, "sold_by").await;
    append_one(&f.store, "p2", "person", json!({"name": "Bob"})).await;
    append_together(
        &f.store,
        &[
            ("a3", "auction", json!({"seller": "p3"})),
            ("p3", "person", json!({"name": "Cy"})),
        ],
    )
    .await;
    append_one(&f.store, "a4", "auction", json!({"seller": "p1"})).await;
    append_one(&f.store, "x1", "note", json!({"seller": "p1"})).await;
    let expected = ["a1 | Ann", "a2 | Bob", "a3 | Cy", "a4 | Ann"];
    equals_batch(&f.eventql, "sold_by", SELECT_SOLD_BY, &expected).await;
    let info = f
        .pipelines
        .get(TENANT, "sold_by")
        .unwrap_or_else(|| panic!("sold_by"));
    assert_eq!(info.stats.rows_out, 4, "each pair once");
    assert_eq!(info.stats.join_rows, 7, "4 auctions and 3 persons kept");

    // Restarted from its checkpoint: the rows each side kept are back, so a new
    // auction of an earlier seller still finds them, and no pair comes out twice.
    let head = f.store.head_position();
    let deadline = Instant::now() + Duration::from_secs(20);
    while f
        .pipelines
        .get(TENANT, "sold_by")
        .and_then(|p| p.checkpoint)
        .is_none_or(|c| c.position < head)
    {
        assert!(Instant::now() < deadline, "no checkpoint at the head");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f.pipelines.stop().await;
    let (pipelines, eventql) = open(&f.store).await;
    let info = pipelines
        .get(TENANT, "sold_by")
        .unwrap_or_else(|| panic!("sold_by"));
    assert_eq!(info.state, PipelineState::Running);
    assert_eq!(info.stats.join_rows, 7, "the join's rows restored");
    append_one(&f.store, "a5", "auction", json!({"seller": "p2"})).await;
    let expected = ["a1 | Ann", "a2 | Bob", "a3 | Cy", "a4 | Ann", "a5 | Bob"];
    equals_batch(&eventql, "sold_by", SELECT_SOLD_BY, &expected).await;
    pipelines.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totals_over_a_self_join_count_each_pair_once() {
    let f = fixture().await;
    execute(
        &f.pipelines,
        &format!("CREATE PIPELINE top_bid AS {SELECT_TOP_BID}"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // A bid before its auction counts once the auction arrives; a bid under the
    // reserve (the join's residual condition) never does.
    append_one(
        &f.store,
        "b1",
        "bid",
        json!({"auction": "a1", "price": 120}),
    )
    .await;
    append_one(&f.store, "a1", "auction", json!({"reserve": 100})).await;
    append_one(&f.store, "b2", "bid", json!({"auction": "a1", "price": 90})).await;
    append_one(
        &f.store,
        "b3",
        "bid",
        json!({"auction": "a1", "price": 150}),
    )
    .await;
    append_together(
        &f.store,
        &[
            ("a2", "auction", json!({"reserve": 10})),
            ("b4", "bid", json!({"auction": "a2", "price": 11})),
            ("b5", "bid", json!({"auction": "a2", "price": 12})),
        ],
    )
    .await;
    equals_batch(
        &f.eventql,
        "top_bid",
        SELECT_TOP_BID,
        &["a1 | 150 | 2", "a2 | 12 | 2"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outer_self_join_is_refused() {
    let f = fixture().await;
    let refused = execute(
        &f.pipelines,
        "CREATE PIPELINE unsold AS SELECT a.entity_id, p.entity_id AS seller \
         FROM events AS a LEFT JOIN events AS p ON a.payload->>'seller' = p.entity_id",
    )
    .await;
    match refused {
        Err(Error::Invalid(why)) => assert!(why.contains("inner join"), "{why}"),
        other => panic!("an outer self-join: {other:?}"),
    }
    assert!(f.pipelines.get(TENANT, "unsold").is_none());
    // Totals per batch joined with totals per batch would be partial: refused too.
    let refused = execute(
        &f.pipelines,
        "CREATE PIPELINE busy AS SELECT a.entity_id, a.n, b.n AS other FROM \
         (SELECT entity_id, COUNT(*) AS n FROM events GROUP BY entity_id) AS a JOIN \
         (SELECT entity_id, COUNT(*) AS n FROM events GROUP BY entity_id) AS b \
         ON a.entity_id = b.entity_id",
    )
    .await;
    match refused {
        Err(Error::Invalid(why)) => assert!(why.contains("not with totals"), "{why}"),
        other => panic!("a self-join of totals: {other:?}"),
    }
}
