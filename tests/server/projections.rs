//! Projections and replays through the real server: created over REST and with
//! `CREATE PROJECTION`, read one key at a time over REST and GraphQL, replayed with
//! progress and cancelled; every mistake a clear error.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::Server;
use super::api::{get, post};

async fn send(server: &Server, method: reqwest::Method, path: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .request(method, server.url(path))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn append(server: &Server, entity: &str, kind: &str, payload: Value) {
    let (status, body) = post(
        server,
        "/api/v1/events",
        json!({"entity_id": entity, "event_type": kind, "payload": payload}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// Poll `path` until `done` holds of its answer, or fail after 20 s.
async fn until(server: &Server, path: &str, done: impl Fn(StatusCode, &Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = get(server, path).await;
        if done(status, &body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{path}: {status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const USER_STATISTICS: &str = "CREATE PROJECTION user_statistics AS \
    SELECT entity_id, \
      SUM(CASE event_type WHEN 'order.placed' THEN 1 WHEN 'order.refunded' THEN -1 ELSE 0 END) \
        AS order_count, \
      SUM(CASE event_type WHEN 'order.placed' THEN CAST(payload->>'amount' AS DOUBLE) \
        WHEN 'order.refunded' THEN -CAST(payload->>'amount' AS DOUBLE) ELSE 0 END) AS total_spent \
    FROM events GROUP BY entity_id";

#[tokio::test]
async fn projections_are_read_by_key_over_rest_and_graphql_and_replayed() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(dir.path(), &[], &[]);
    append(&server, "user-123", "user.created", json!({"name": "Ada"})).await;

    // The built-in entity snapshots, created by name.
    let (status, body) = post(
        &server,
        "/api/v1/projections",
        json!({"name": "entity_snapshot"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["kind"], "projection");
    let (status, body) = post(&server, "/api/v1/query", json!({"sql": USER_STATISTICS})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for (kind, amount) in [
        ("order.placed", 30.0),
        ("order.placed", 12.5),
        ("order.refunded", 30.0),
    ] {
        append(&server, "user-123", kind, json!({"amount": amount})).await;
    }
    let state = get(&server, "/api/v1/entities/user-123/state").await.1;
    until(
        &server,
        "/api/v1/projections/entity_snapshot/user-123",
        |s, row| {
            s == StatusCode::OK && row["state"] == state["state"] && row["version"] == json!(4)
        },
    )
    .await;
    let row = until(
        &server,
        "/api/v1/projections/user_statistics/user-123",
        |s, row| s == StatusCode::OK && row["order_count"] == json!(1),
    )
    .await;
    assert_eq!(row["total_spent"], json!(12.5), "{row}");

    // GraphQL reads the same row.
    let (status, body) = post(
        &server,
        "/graphql",
        json!({"query": "{ projection(name: \"user_statistics\", entityId: \"user-123\") \
                          none: projection(name: \"user_statistics\", entityId: \"nobody\") }"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["projection"], row, "{body}");
    assert_eq!(body["data"]["none"], Value::Null, "{body}");
    let (_, body) = post(
        &server,
        "/graphql",
        json!({"query": "{ projection(name: \"missing\", entityId: \"x\") }"}),
    )
    .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{body}"
    );

    // Listed as projections, not as pipelines.
    let (_, listed) = get(&server, "/api/v1/projections").await;
    assert_eq!(listed["count"], 2, "{listed}");
    let (_, pipelines) = get(&server, "/api/v1/pipelines").await;
    assert_eq!(pipelines["count"], 0, "{pipelines}");
    let (status, _) = get(&server, "/api/v1/projections/user_statistics").await;
    assert_eq!(status, StatusCode::OK);

    // Mistakes.
    for (path, expected) in [
        (
            "/api/v1/projections/user_statistics/nobody",
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/v1/projections/missing/user-123",
            StatusCode::NOT_FOUND,
        ),
        ("/api/v1/projections/missing", StatusCode::NOT_FOUND),
        ("/api/v1/replay/no-such-replay", StatusCode::NOT_FOUND),
    ] {
        let (status, body) = get(&server, path).await;
        assert_eq!(status, expected, "{path}: {body}");
        assert!(body["error"]["message"].is_string(), "{path}: {body}");
    }
    for (path, body, expected) in [
        (
            "/api/v1/projections",
            json!({"name": "totals"}),
            "not a built-in",
        ),
        (
            "/api/v1/projections",
            json!({"name": "raw", "sql": "SELECT * FROM events"}),
            "groups by one column",
        ),
        (
            "/api/v1/replay",
            json!({"projection_name": "user_statistics", "from_timestamp": "yesterday"}),
            "RFC 3339",
        ),
        (
            "/api/v1/replay",
            json!({"projection_name": "user_statistics", "from_position": 1,
                   "from_timestamp": "2024-01-01T00:00:00Z"}),
            "not both",
        ),
        (
            "/api/v1/replay",
            json!({"projection_name": "user_statistics", "config": {"batch_size": 0}}),
            "batch_size",
        ),
    ] {
        let (status, answer) = post(&server, path, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(expected), "{body}: {answer}");
    }
    let (status, _) = post(
        &server,
        "/api/v1/replay",
        json!({"projection_name": "missing"}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A replay from the second event on: the creation no longer counts.
    let (status, started) = post(
        &server,
        "/api/v1/replay",
        json!({"projection_name": "entity_snapshot", "from_position": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let id = started["replay_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let done = until(&server, &format!("/api/v1/replay/{id}"), |_, r| {
        r["status"] == "completed"
    })
    .await;
    assert_eq!(
        (done["events"].clone(), done["percent"].clone()),
        (json!(3), json!(100.0))
    );
    let row = until(
        &server,
        "/api/v1/projections/entity_snapshot/user-123",
        |s, row| s == StatusCode::OK && row["state"].get("name").is_none(),
    )
    .await;
    assert_eq!(row["state"], json!({"amount": 30.0}), "{row}");
    let (status, cancelled) = send(
        &server,
        reqwest::Method::POST,
        &format!("/api/v1/replay/{id}/cancel"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        cancelled["status"], "completed",
        "a finished replay stays as it was"
    );
    let (status, _) = send(
        &server,
        reqwest::Method::DELETE,
        &format!("/api/v1/replay/{id}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, replays) = get(&server, "/api/v1/replay").await;
    assert_eq!(replays["count"], 0, "{replays}");

    // Dropped: read no more.
    let (status, _) = send(
        &server,
        reqwest::Method::DELETE,
        "/api/v1/projections/user_statistics",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = get(&server, "/api/v1/projections/user_statistics/user-123").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
