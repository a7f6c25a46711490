//! Pipelines through the real server: `CREATE PIPELINE` / `SHOW PIPELINES` /
//! `DROP PIPELINE` in `POST /api/v1/query`, the REST resources, results read as a
//! table, and pipelines that survive a restart.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::Server;
use super::api::{get, post};

async fn query(server: &Server, sql: &str) -> (StatusCode, Value) {
    post(server, "/api/v1/query", json!({ "sql": sql })).await
}

/// Clicks of three pages, one per second from 2024-01-01T00:00:00Z, `from..to`.
async fn clicks(server: &Server, from: u32, to: u32) {
    for i in from..to {
        let (status, body) = post(
            server,
            "/api/v1/events",
            json!({
                "event_type": "page.clicked",
                "entity_id": format!("page-{}", i % 3),
                "payload": {"n": i},
                "timestamp": format!("2024-01-01T00:{:02}:{:02}Z", i / 60, i % 60),
            }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
}

/// Poll `sql` until its rows equal `expected`, or fail after 20 s.
async fn rows_become(server: &Server, sql: &str, expected: &Value) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = query(server, sql).await;
        if status == StatusCode::OK && &body["rows"] == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sql}: {status} {body}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const PER_PAGE: &str = "SELECT window_start, entity_id, COUNT(*) AS clicks \
    FROM TUMBLE(events, timestamp, INTERVAL '10' SECOND) \
    GROUP BY window_start, window_end, entity_id";

#[tokio::test]
async fn pipelines_are_created_queried_shown_dropped_and_restarted() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(dir.path(), &[], &[]);
    clicks(&server, 0, 12).await;
    let (status, body) = query(
        &server,
        &format!("CREATE PIPELINE per_page WITH (allowed_lateness = '2s') AS {PER_PAGE}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["rows"],
        json!([{"pipeline": "per_page", "status": "created"}])
    );
    clicks(&server, 12, 25).await;

    // Event time reached 24 s, the watermark 22 s: windows [0, 10) and [10, 20) are
    // complete, and equal the batch query's.
    let from_pipeline = "SELECT * FROM per_page ORDER BY window_start, entity_id";
    let (status, batch) = query(
        &server,
        &format!(
            "SELECT * FROM ({PER_PAGE}) WHERE window_start < TIMESTAMP '2024-01-01T00:00:20Z' \
             ORDER BY window_start, entity_id"
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert_eq!(batch["rows"].as_array().map(Vec::len), Some(6), "{batch}");
    rows_become(&server, from_pipeline, &batch["rows"]).await;

    let (status, shown) = query(&server, "SHOW PIPELINES").await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["rows"][0]["pipeline"], "per_page");
    assert_eq!(shown["rows"][0]["state"], "running");
    assert_eq!(shown["rows"][0]["events_in"], 25);
    let (status, one) = get(&server, "/api/v1/pipelines/per_page").await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["watermark"], "2024-01-01T00:00:22.000000Z");
    assert_eq!(one["options"]["allowed_lateness_micros"], 2_000_000);

    // Refused definitions, each with its own code; nothing is stored.
    for (sql, status, code) in [
        (
            format!("CREATE PIPELINE per_page AS {PER_PAGE}"),
            409,
            "pipeline_exists",
        ),
        (
            "CREATE PIPELINE p WITH (late_data = 'x') AS SELECT 1".into(),
            400,
            "invalid_pipeline",
        ),
        (
            "CREATE PIPELINE p AS SELECT nope FROM events".into(),
            400,
            "invalid_query",
        ),
        (
            "CREATE PIPELINE p AS SELECT COUNT(*) FROM HOP(events, timestamp, \
             INTERVAL '1' MINUTE, INTERVAL '2' MINUTE)"
                .into(),
            400,
            "invalid_pipeline",
        ),
        ("DROP PIPELINE nothing".into(), 404, "not_found"),
    ] {
        let (got, body) = query(&server, &sql).await;
        assert_eq!(got.as_u16(), status, "{sql}: {body}");
        assert_eq!(body["error"]["code"], code, "{sql}: {body}");
    }
    for (body, code, says) in [
        (
            json!({"name": "x", "operators": [{"type": "enrich", "table": "y"}]}),
            "invalid_pipeline",
            "fields",
        ),
        (
            json!({"name": "x", "operators": [], "nope": 1}),
            "invalid_body",
            "nope",
        ),
    ] {
        let (status, answer) = post(&server, "/api/v1/pipelines", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{body}: {answer}");
        assert!(answer.to_string().contains(says), "{body}: {answer}");
    }
    let (status, created) = post(
        &server,
        "/api/v1/pipelines",
        json!({"name": "all_clicks", "sql": "SELECT entity_id, payload->>'n' AS n FROM events"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (_, listed) = get(&server, "/api/v1/pipelines").await;
    assert_eq!(listed["count"], 2, "{listed}");
    rows_become(
        &server,
        "SELECT COUNT(*) AS n FROM all_clicks",
        &json!([{"n": 25}]),
    )
    .await;

    // Created disabled, it runs once enabled, and stops when disabled again.
    let (status, created) = post(
        &server,
        "/api/v1/pipelines",
        json!({"name": "paused", "source_event_types": ["page.clicked"],
               "operators": [{"type": "filter", "field": "n", "op": "gte", "value": 0}],
               "enabled": false}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["state"], "disabled", "{created}");
    rows_become(
        &server,
        "SELECT COUNT(*) AS n FROM paused",
        &json!([{"n": 0}]),
    )
    .await;
    let (status, enabled) = post(&server, "/api/v1/pipelines/paused/enable", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{enabled}");
    assert_eq!(enabled["state"], "running", "{enabled}");
    rows_become(
        &server,
        "SELECT COUNT(*) AS n FROM paused",
        &json!([{"n": 25}]),
    )
    .await;

    // Branches: each key's row in the table of the first branch that takes it.
    let (status, created) = post(
        &server,
        "/api/v1/pipelines",
        json!({"name": "page_totals", "source_event_types": ["page.clicked"],
               "operators": [
                 {"type": "reduce", "field": "n", "function": "count", "group_by": "entity_id"},
                 {"type": "branch", "branches": [
                   {"name": "busy", "field": "count", "op": "gte", "value": 9},
                   {"name": "quiet"}]}]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    rows_become(
        &server,
        "SELECT * FROM page_totals_busy",
        &json!([{"entity_id": "page-0", "count": 9}]),
    )
    .await;
    rows_become(
        &server,
        "SELECT * FROM page_totals_quiet ORDER BY entity_id",
        &json!([{"entity_id": "page-1", "count": 8}, {"entity_id": "page-2", "count": 8}]),
    )
    .await;
    let (status, body) = query(&server, "DROP PIPELINE page_totals").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (_, disabled) = post(&server, "/api/v1/pipelines/paused/disable", json!({})).await;
    assert_eq!(disabled["state"], "disabled", "{disabled}");
    let (status, _) = post(&server, "/api/v1/pipelines/nothing/enable", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = reqwest::Client::new()
        .delete(server.url("/api/v1/pipelines/paused"))
        .send()
        .await
        .map(|r| (r.status(), ()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, StatusCode::OK);

    // Restarted: both pipelines are back and recompute their results from the log.
    let (status, log) = server.stop("-TERM");
    assert!(status.success(), "{log}");
    let server = Server::start(dir.path(), &[], &[]);
    let (_, listed) = get(&server, "/api/v1/pipelines").await;
    assert_eq!(listed["count"], 2, "{listed}");
    rows_become(&server, from_pipeline, &batch["rows"]).await;

    // Figures: per pipeline, all of them, and in /metrics.
    let (status, stats) = get(&server, "/api/v1/pipelines/per_page/stats").await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(stats["events_in"], 25, "{stats}");
    assert_eq!(stats["late_events"], 0, "{stats}");
    assert_eq!(stats["rows_out"], 6, "{stats}");
    assert_eq!(stats["lag_events"], 0, "{stats}");
    assert!(
        stats["open_groups"].as_u64().is_some_and(|n| n > 0),
        "{stats}"
    );
    assert!(
        stats["checkpoint"]["resumed_from"]
            .as_u64()
            .is_some_and(|p| p > 0),
        "{stats}"
    );
    let (status, all) = get(&server, "/api/v1/pipelines/stats").await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(all["count"], 2, "{all}");
    assert_eq!(all["running"], 2, "{all}");
    assert_eq!(all["events_in"], 50, "{all}");
    let (status, _) = get(&server, "/api/v1/pipelines/nothing/stats").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for line in [
        "allsource_pipeline_events_in_total{pipeline=\"per_page\"} 25",
        "allsource_pipeline_rows_out_total{pipeline=\"per_page\"} 6",
        "allsource_pipeline_lag_events{pipeline=\"all_clicks\"} 0",
        "allsource_pipeline_running{pipeline=\"per_page\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    assert!(metrics.contains("allsource_pipeline_watermark_lag_seconds{pipeline=\"per_page\"}"));
    assert!(metrics.contains("allsource_pipeline_checkpoint_duration_seconds{pipeline="));

    // Reset: results and checkpoints discarded, computed again from the start.
    let response = reqwest::Client::new()
        .put(server.url("/api/v1/pipelines/per_page/reset"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::OK);
    rows_become(&server, from_pipeline, &batch["rows"]).await;
    let (_, stats) = get(&server, "/api/v1/pipelines/per_page/stats").await;
    assert_eq!(stats["events_in"], 25, "{stats}");
    assert_eq!(
        stats["checkpoint"]["resumed_from"].as_u64().unwrap_or(0),
        0,
        "{stats}"
    );
    let response = reqwest::Client::new()
        .put(server.url("/api/v1/pipelines/nothing/reset"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    let (status, body) = query(&server, "DROP PIPELINE per_page").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = reqwest::Client::new()
        .delete(server.url("/api/v1/pipelines/all_clicks"))
        .send()
        .await
        .map(|r| r.status())
        .map(|s| (s, ()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let (_, listed) = get(&server, "/api/v1/pipelines").await;
    assert_eq!(listed["count"], 0, "{listed}");
    let (status, body) = query(&server, from_pipeline).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = query(&server, "DROP PIPELINE IF EXISTS per_page").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rows"][0]["status"], "not found");
}

const TOTALS: &str = "SELECT window_start, window_end, entity_id, COUNT(*) AS clicks, \
    SUM(payload->>'n') AS total \
    FROM TUMBLE(events, timestamp, INTERVAL '10' SECOND) \
    GROUP BY window_start, window_end, entity_id";

/// Appends batches of 20 clicks, 10 ms apart in event time, until the server stops
/// answering; the events acknowledged.
async fn load(base: String, first: u64) -> u64 {
    let client = reqwest::Client::new();
    let mut acknowledged = 0;
    let mut n = first;
    loop {
        let events: Vec<Value> = (n..n + 20)
            .map(|i| {
                json!({
                    "event_type": "page.clicked",
                    "entity_id": format!("page-{}", i % 5),
                    "payload": {"n": i},
                    "timestamp": format!(
                        "2024-01-01T00:{:02}:{:02}.{:03}Z",
                        i / 6_000,
                        i / 100 % 60,
                        i % 100 * 10
                    ),
                })
            })
            .collect();
        let sent = client
            .post(format!("{base}/api/v1/events"))
            .json(&json!({ "events": events }))
            .send()
            .await;
        match sent {
            Ok(response) if response.status() == StatusCode::CREATED => {
                acknowledged += 20;
                n += 20;
            }
            Ok(response) => panic!("append refused: {}", response.status()),
            Err(_) => return acknowledged,
        }
    }
}

/// SIGKILL the server several times while events pour in and a pipeline checkpoints
/// every 50 ms: after the last restart, the pipeline's table equals the batch query
/// over every event in the log: nothing counted twice, nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_survives_sigkill_under_load() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut server = Server::start(dir.path(), &[], &[]);
    let (status, body) = post(
        &server,
        "/api/v1/pipelines",
        json!({"name": "totals", "sql": TOTALS, "options": {"checkpoint_interval": "50ms"}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut acknowledged = 0;
    let mut next = 0;
    let mut resumed = Vec::new();
    for round in 0..3 {
        let writer = tokio::spawn(load(server.base.clone(), next));
        tokio::time::sleep(Duration::from_millis(700 + 300 * round)).await;
        let (_, log) = server.stop("-KILL");
        let acked = writer.await.unwrap_or_else(|e| panic!("{e}"));
        assert!(acked > 0, "round {round}: nothing appended\n{log}");
        acknowledged += acked;
        // Numbers of unacknowledged batches are skipped: they may or may not be in
        // the log, and the batch query below counts whatever is.
        next += acked + 1_000;
        server = Server::start(dir.path(), &[], &[]);
        let (_, info) = get(&server, "/api/v1/pipelines/totals").await;
        assert_eq!(info["state"], "running", "{info}");
        resumed.push(info["checkpoint"]["resumed_from"].as_u64().unwrap_or(0));
    }
    // The pipeline resumed from checkpoints, not from the start of the log.
    assert!(resumed.iter().all(|p| *p > 0), "resumed from {resumed:?}");

    // One last event an hour later closes every window before it.
    let (status, body) = post(
        &server,
        "/api/v1/events",
        json!({
            "event_type": "page.clicked",
            "entity_id": "page-0",
            "payload": {"n": 0},
            "timestamp": "2024-01-01T01:00:00Z",
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, count) = query(&server, "SELECT COUNT(*) AS n FROM events").await;
    assert_eq!(status, StatusCode::OK, "{count}");
    let stored = count["rows"][0]["n"].as_u64().unwrap_or(0);
    assert!(
        stored > acknowledged,
        "{stored} events stored, {acknowledged} acknowledged"
    );
    let (status, batch) = query(
        &server,
        &format!(
            "SELECT * FROM ({TOTALS}) WHERE window_end <= TIMESTAMP '2024-01-01T01:00:00Z' \
             ORDER BY window_start, entity_id"
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert!(
        batch["rows"].as_array().is_some_and(|r| r.len() > 10),
        "{batch}"
    );
    rows_become(
        &server,
        "SELECT * FROM totals ORDER BY window_start, entity_id",
        &batch["rows"],
    )
    .await;
}
