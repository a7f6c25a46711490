//! Enrich (a pipeline joining another pipeline's table, read as it is when each input
//! batch is processed) and branch (result rows routed to a table per condition).

use std::time::{Duration, Instant};

use allsource::operators::operator_list::OperatorPipeline;
use allsource::operators::{Error, PipelineSpec, PipelineState, Pipelines};
use allsource::sql::EventQl;
use serde_json::json;

use super::projections::{TENANT, append_one, caught_up, execute, fixture, open, rows};

/// Poll until `sql` gives `expected` (sorted lines, cells joined by ` | `).
async fn becomes(eventql: &EventQl, sql: &str, expected: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = rows(eventql, sql).await;
        if got == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sql}: {got:#?}\nexpected {expected:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const TIERS: &str = "CREATE PROJECTION tiers AS SELECT entity_id, MAX(payload->>'tier') AS tier \
    FROM events WHERE event_type = 'customer.tier' GROUP BY entity_id";

const ORDERS_WITH_TIER: &str = "CREATE PIPELINE orders_with_tier AS \
    SELECT e.payload->>'order' AS order_id, t.tier \
    FROM events AS e LEFT JOIN tiers AS t ON e.payload->>'customer' = t.entity_id \
    WHERE e.event_type = 'order.placed'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_joins_a_projection_as_it_is_when_each_event_arrives() {
    let f = fixture().await;
    execute(&f.pipelines, TIERS)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    append_one(&f.store, "c1", "customer.tier", json!({"tier": "gold"})).await;
    append_one(&f.store, "c2", "customer.tier", json!({"tier": "silver"})).await;
    caught_up(&f, "tiers").await;
    execute(&f.pipelines, ORDERS_WITH_TIER)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    append_one(
        &f.store,
        "o1",
        "order.placed",
        json!({"order": "o1", "customer": "c1", "amount": 10}),
    )
    .await;
    append_one(
        &f.store,
        "o2",
        "order.placed",
        json!({"order": "o2", "customer": "c9", "amount": 7}),
    )
    .await;
    let sql = "SELECT order_id, tier FROM orders_with_tier";
    becomes(&f.eventql, sql, &["o1 | gold", "o2 | "]).await;

    // A customer that appears after the pipeline was planned is found: the join
    // reads the projection's table as it is now.
    append_one(&f.store, "c3", "customer.tier", json!({"tier": "bronze"})).await;
    caught_up(&f, "tiers").await;
    append_one(
        &f.store,
        "o3",
        "order.placed",
        json!({"order": "o3", "customer": "c3", "amount": 5}),
    )
    .await;
    becomes(&f.eventql, sql, &["o1 | gold", "o2 | ", "o3 | bronze"]).await;

    // The same through the operator-list format: totals of gold customers' orders.
    let listed: OperatorPipeline = serde_json::from_value(json!({
        "name": "gold_spend",
        "source_event_types": ["order.placed"],
        "operators": [
            {"type": "enrich", "table": "tiers", "on": "customer", "fields": ["tier"]},
            {"type": "filter", "field": "tier", "value": "gold"},
            {"type": "reduce", "field": "amount", "function": "sum", "group_by": "customer"}
        ]
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    let spec = PipelineSpec {
        tenant: TENANT.into(),
        name: listed.name.clone(),
        sql: listed.to_sql().unwrap_or_else(|e| panic!("{e}")),
        ..PipelineSpec::default()
    };
    f.pipelines
        .create(spec)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    append_one(
        &f.store,
        "o4",
        "order.placed",
        json!({"order": "o4", "customer": "c1", "amount": 32}),
    )
    .await;
    becomes(&f.eventql, "SELECT * FROM gold_spend", &["c1 | 42.0"]).await;

    // The joined table cannot be dropped while a pipeline reads it.
    let refused = execute(&f.pipelines, "DROP PROJECTION tiers").await;
    match refused {
        Err(Error::Conflict(why)) => assert!(why.contains("drop it first"), "{why}"),
        other => panic!("dropping a joined table: {other:?}"),
    }

    // Restarted: the pipeline reading `tiers` is started after it, whatever the
    // order of their names, and goes on joining.
    f.pipelines.stop().await;
    let (pipelines, eventql) = open(&f.store).await;
    for name in ["tiers", "orders_with_tier", "gold_spend"] {
        let state = pipelines.get(TENANT, name).map(|p| p.state);
        assert_eq!(state, Some(PipelineState::Running), "{name}");
    }
    append_one(
        &f.store,
        "o5",
        "order.placed",
        json!({"order": "o5", "customer": "c1", "amount": 1}),
    )
    .await;
    becomes(
        &eventql,
        sql,
        &[
            "o1 | gold",
            "o2 | ",
            "o3 | bronze",
            "o4 | gold",
            "o5 | gold",
        ],
    )
    .await;
    becomes(&eventql, "SELECT * FROM gold_spend", &["c1 | 43.0"]).await;

    // The joined projection reset under the reader: the reader keeps running and
    // joins with the recomputed table.
    pipelines
        .reset(TENANT, "tiers")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let head = f.store.head_position();
    let deadline = Instant::now() + Duration::from_secs(20);
    while pipelines
        .get(TENANT, "tiers")
        .is_none_or(|p| p.position < head)
    {
        assert!(
            Instant::now() < deadline,
            "tiers did not catch up after its reset"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    append_one(
        &f.store,
        "o6",
        "order.placed",
        json!({"order": "o6", "customer": "c2", "amount": 1}),
    )
    .await;
    becomes(
        &eventql,
        sql,
        &[
            "o1 | gold",
            "o2 | ",
            "o3 | bronze",
            "o4 | gold",
            "o5 | gold",
            "o6 | silver",
        ],
    )
    .await;
    let state = pipelines.get(TENANT, "orders_with_tier").map(|p| p.state);
    assert_eq!(state, Some(PipelineState::Running));
}

const PER_COUNTRY: &str = "CREATE PIPELINE per_country \
    WITH (branch_us = 'country = ''US''', branch_big = 'n >= 3', branch_rest = 'true') \
    AS SELECT payload->>'country' AS country, COUNT(*) AS n FROM events \
    GROUP BY payload->>'country'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branches_route_each_row_to_the_first_table_whose_condition_holds() {
    let f = fixture().await;
    execute(&f.pipelines, PER_COUNTRY)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (schema, mut rest) = f
        .pipelines
        .updates(TENANT, "per_country_rest")
        .unwrap_or_else(|| panic!("a branch can be followed"));
    for (country, n) in [("US", 5), ("DE", 3), ("FR", 1)] {
        for i in 0..n {
            append_one(
                &f.store,
                &format!("{country}{i}"),
                "visit",
                json!({"country": country}),
            )
            .await;
        }
    }
    becomes(
        &f.eventql,
        "SELECT * FROM per_country",
        &["DE | 3", "FR | 1", "US | 5"],
    )
    .await;
    becomes(&f.eventql, "SELECT * FROM per_country_us", &["US | 5"]).await;
    becomes(&f.eventql, "SELECT * FROM per_country_big", &["DE | 3"]).await;
    becomes(&f.eventql, "SELECT * FROM per_country_rest", &["FR | 1"]).await;

    // The branch's subscribers see its rows alone: never a US row, which the
    // first branch takes.
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|r: &serde_json::Map<String, serde_json::Value>| r["country"] == json!("FR"))
    {
        let batch = tokio::time::timeout(Duration::from_secs(20), rest.recv())
            .await
            .unwrap_or_else(|_| panic!("no update after {seen:?}"))
            .unwrap_or_else(|e| panic!("{e}"));
        seen.extend(
            allsource::operators::projection::rows_json(&schema, &[batch])
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    assert!(seen.iter().all(|r| r["country"] != json!("US")), "{seen:?}");

    // A pipeline may not take a branch's table name; conditions are checked.
    let clash = execute(
        &f.pipelines,
        "CREATE PIPELINE per_country_us AS SELECT * FROM events",
    )
    .await;
    match clash {
        Err(Error::Conflict(why)) => assert!(why.contains("per_country"), "{why}"),
        other => panic!("a pipeline named like a branch's table: {other:?}"),
    }
    for (options, says) in [
        ("branch_x = 'nope = 1'", "branch x"),
        ("branch_x = 'n + 1'", "not a condition"),
        ("branch_ = 'true'", "lowercase"),
        ("branch_x = 'true', branch_x = 'false'", "twice"),
    ] {
        let sql = format!(
            "CREATE PIPELINE other WITH ({options}) AS \
             SELECT entity_id, COUNT(*) AS n FROM events GROUP BY entity_id"
        );
        match execute(&f.pipelines, &sql).await {
            Err(e) => assert!(e.to_string().contains(says), "{options}: {e}"),
            Ok(()) => panic!("{options}: accepted"),
        }
    }
    assert!(f.pipelines.get(TENANT, "other").is_none());

    // After a restart the branches route the restored rows the same way.
    f.pipelines.stop().await;
    let (pipelines, eventql) = open(&f.store).await;
    append_one(&f.store, "FR9", "visit", json!({"country": "FR"})).await;
    becomes(&eventql, "SELECT * FROM per_country_rest", &["FR | 2"]).await;
    becomes(&eventql, "SELECT * FROM per_country_us", &["US | 5"]).await;
    drop_all(&pipelines).await;
}

async fn drop_all(pipelines: &Pipelines) {
    for info in pipelines.list(TENANT) {
        pipelines
            .drop_pipeline(TENANT, info.spec.kind, &info.spec.name)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(pipelines.list(TENANT).is_empty());
}
