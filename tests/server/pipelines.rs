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
            "CREATE PIPELINE p AS SELECT COUNT(*) FROM events".into(),
            400,
            "invalid_pipeline",
        ),
        ("DROP PIPELINE nothing".into(), 404, "not_found"),
    ] {
        let (got, body) = query(&server, &sql).await;
        assert_eq!(got.as_u16(), status, "{sql}: {body}");
        assert_eq!(body["error"]["code"], code, "{sql}: {body}");
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

    // Restarted: both pipelines are back and recompute their results from the log.
    let (status, log) = server.stop("-TERM");
    assert!(status.success(), "{log}");
    let server = Server::start(dir.path(), &[], &[]);
    let (_, listed) = get(&server, "/api/v1/pipelines").await;
    assert_eq!(listed["count"], 2, "{listed}");
    rows_become(&server, from_pipeline, &batch["rows"]).await;

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
