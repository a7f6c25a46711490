//! Every REST endpoint and error code, against the real binary.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::Server;

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

pub(super) async fn post(server: &Server, path: &str, body: Value) -> (StatusCode, Value) {
    let response = client()
        .post(server.url(path))
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub(super) async fn get(server: &Server, path: &str) -> (StatusCode, Value) {
    let response = client()
        .get(server.url(path))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// The seed example: ingest, query by entity and by type, time travel, state.
#[tokio::test]
async fn ingest_query_time_travel_and_state() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(dir.path(), &[], &[]);
    let (status, ack) = post(
        &server,
        "/api/v1/events",
        json!({"event_type": "user.created", "entity_id": "user-123",
               "payload": {"name": "Alice", "email": "alice@example.com"}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{ack}");
    assert_eq!(ack["entity_id"], "user-123");
    assert_eq!(ack["version"], 1);
    assert!(
        ack["event_id"].as_str().is_some_and(|id| id.len() == 36),
        "{ack}"
    );
    assert!(ack["partition"].is_u64() && ack["offset"].is_u64(), "{ack}");

    let (status, update) = post(
        &server,
        "/api/v1/events",
        json!({"event_type": "user.renamed", "entity_id": "user-123",
               "payload": {"name": "Alicia"}, "expected_version": 1,
               "timestamp": "2024-01-15T10:00:00Z", "metadata": {"by": "test"}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{update}");
    assert_eq!(update["version"], 2);

    let (status, found) = get(&server, "/api/v1/events/query?entity_id=user-123").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found["count"], 2);
    assert_eq!(found["events"][0]["payload"]["name"], "Alice");
    assert_eq!(
        found["events"][1]["timestamp"],
        "2024-01-15T10:00:00.000000Z"
    );
    assert_eq!(found["events"][1]["metadata"]["by"], "test");
    assert_eq!(found["next_cursor"], Value::Null);

    let (_, by_type) = get(
        &server,
        "/api/v1/events/query?event_type=user.created&limit=10",
    )
    .await;
    assert_eq!(by_type["count"], 1, "{by_type}");
    assert_eq!(by_type["events"][0]["event_type"], "user.created");

    // Time travel is by ingestion time: before anything was ingested, nothing.
    let (_, past) = get(
        &server,
        "/api/v1/events/query?entity_id=user-123&as_of=2024-01-15T10:00:00Z",
    )
    .await;
    assert_eq!(past["count"], 0, "{past}");
    let first_ingested = found["events"][0]["ingested_at"].as_str().unwrap_or("");
    let (_, then) = get(
        &server,
        &format!("/api/v1/events/query?entity_id=user-123&as_of={first_ingested}"),
    )
    .await;
    assert_eq!(then["count"], 1, "{then}");

    let (status, state) = get(&server, "/api/v1/entities/user-123/state").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(state["version"], 2);
    assert_eq!(
        state["state"],
        json!({"name": "Alicia", "email": "alice@example.com"})
    );
    let (_, old) = get(
        &server,
        &format!("/api/v1/entities/user-123/state?as_of={first_ingested}"),
    )
    .await;
    assert_eq!(old["state"]["name"], "Alice", "{old}");
    let (status, missing) = get(&server, "/api/v1/entities/nobody/state").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&missing), "not_found");

    // Event-time window (since/until) through EventQL.
    let (_, window) = get(
        &server,
        "/api/v1/events/query?since=2024-01-15T00:00:00Z&until=2024-01-16T00:00:00Z&limit=100",
    )
    .await;
    assert_eq!(window["count"], 1, "{window}");
    assert_eq!(window["events"][0]["event_type"], "user.renamed");
}

/// A batch is atomic; conflicts say the current version; bad input writes nothing.
#[tokio::test]
async fn batches_conflicts_and_errors() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(
        dir.path(),
        &[],
        &[
            ("ALLSOURCE_MAX_PAYLOAD_BYTES", "2000"),
            ("ALLSOURCE_MAX_BODY_BYTES", "100000"),
        ],
    );
    let event =
        |entity: &str, n: u64| json!({"event_type": "x", "entity_id": entity, "payload": {"n": n}});
    let (status, batch) = post(
        &server,
        "/api/v1/events",
        json!({"events": [event("a", 1), event("b", 2), event("a", 3)]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{batch}");
    let results = batch["results"].as_array().cloned().unwrap_or_default();
    assert_eq!(results.len(), 3);
    assert_eq!(
        (results[0]["version"].clone(), results[2]["version"].clone()),
        (json!(1), json!(2))
    );

    let count = |server: &Server| {
        let url = server.url("/api/v1/events/query?limit=10000&since=1970-01-01T00:00:00Z");
        async move {
            let body: Value = client()
                .get(url)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .json()
                .await
                .unwrap_or(Value::Null);
            body["count"].as_u64().unwrap_or(u64::MAX)
        }
    };
    assert_eq!(count(&server).await, 3);

    // One bad event: the whole batch is refused, nothing is written.
    let (status, refused) = post(
        &server,
        "/api/v1/events",
        json!({"events": [event("c", 1), {"event_type": "", "entity_id": "c", "payload": {}}]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(error_code(&refused), "invalid_event");
    assert_eq!(refused["error"]["details"]["index"], 1);
    assert_eq!(count(&server).await, 3);

    // Optimistic concurrency: the conflict carries the current version.
    let mut stale = event("a", 9);
    stale["expected_version"] = json!(1);
    let (status, conflict) = post(&server, "/api/v1/events", stale).await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert_eq!(error_code(&conflict), "conflict");
    assert_eq!(conflict["error"]["details"]["current_version"], 2);
    let mut fresh = event("new", 1);
    fresh["expected_version"] = json!("no_stream");
    assert_eq!(
        post(&server, "/api/v1/events", fresh.clone()).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        post(&server, "/api/v1/events", fresh).await.0,
        StatusCode::CONFLICT
    );

    // Malformed JSON: 400 with where it broke.
    let response = client()
        .post(server.url("/api/v1/events"))
        .header("content-type", "application/json")
        .body("{\"event_type\": \"x\",\n \"entity_id\": }")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(error_code(&body), "malformed_json", "{body}");
    assert_eq!(body["error"]["details"]["line"], 2);

    // A field of the wrong type or a missing one: 400 too.
    let (status, body) = post(&server, "/api/v1/events", json!({"event_type": "x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Payload over its limit, body over its limit: 413.
    let big = "y".repeat(3000);
    let (status, body) = post(
        &server,
        "/api/v1/events",
        json!({"event_type": "x", "entity_id": "a", "payload": {"big": big}}),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["details"]["field"], "payload");
    let huge: Vec<Value> = (0..200).map(|i| json!({"event_type": "x", "entity_id": "z", "payload": {"pad": "p".repeat(1000), "i": i}})).collect();
    let (status, body) = post(&server, "/api/v1/events", json!({"events": huge})).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(error_code(&body), "too_large");
    // Bad parameters and unknown paths.
    let (status, body) = get(&server, "/api/v1/events/query?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = get(&server, "/api/v1/events/query?since=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = get(&server, "/api/v1/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "not_found");
    assert_eq!(
        count(&server).await,
        4,
        "only the accepted events are stored"
    );
}

/// Pages follow the cursor without loss or repeat.
#[tokio::test]
async fn pages_follow_the_cursor() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(dir.path(), &[], &[]);
    let events: Vec<Value> = (0..25)
        .map(|i| json!({"event_type": "tick", "entity_id": format!("e{}", i % 3), "payload": {"i": i}}))
        .collect();
    assert_eq!(
        post(&server, "/api/v1/events", json!({"events": events}))
            .await
            .0,
        StatusCode::CREATED
    );
    for filter in ["event_type=tick", "entity_id=e1"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/events/query?{filter}&limit=4&cursor={c}"),
                None => format!("/api/v1/events/query?{filter}&limit=4"),
            };
            let (status, page) = get(&server, &path).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            for event in page["events"].as_array().into_iter().flatten() {
                seen.push(event["payload"]["i"].as_u64().unwrap_or(u64::MAX));
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
        }
        let expected: Vec<u64> = match filter {
            "entity_id=e1" => (0..25).filter(|i| i % 3 == 1).collect(),
            _ => (0..25).collect(),
        };
        assert_eq!(seen, expected, "{filter}");
    }
}

/// EventQL over HTTP: JSON, Arrow IPC and CSV; errors before any row get a status.
#[tokio::test]
async fn eventql_in_three_formats() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(dir.path(), &[], &[]);
    let events: Vec<Value> = (0..50)
        .map(|i| {
            json!({"event_type": if i % 2 == 0 { "order.placed" } else { "cart.updated" },
                        "entity_id": format!("c{}", i % 5), "payload": {"amount": i}})
        })
        .collect();
    assert_eq!(
        post(&server, "/api/v1/events", json!({"events": events}))
            .await
            .0,
        StatusCode::CREATED
    );
    let sql = "SELECT entity_id, SUM(payload->>'amount') AS total FROM events \
               WHERE event_type = 'order.placed' GROUP BY entity_id ORDER BY entity_id";
    let (status, result) = post(&server, "/api/v1/query", json!({"sql": sql})).await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["row_count"], 5);
    assert_eq!(result["columns"][0]["name"], "entity_id");
    assert_eq!(result["rows"][0]["entity_id"], "c0");
    // c0 holds i = 0, 10, 20, 30, 40 (all even).
    assert_eq!(result["rows"][0]["total"], 100.0);

    let arrow = client()
        .post(server.url("/api/v1/query"))
        .header("accept", "application/vnd.apache.arrow.stream")
        .json(&json!({"sql": "SELECT position FROM events ORDER BY position"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(arrow.status(), StatusCode::OK);
    let bytes = arrow.bytes().await.unwrap_or_default();
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes.to_vec()), None)
            .unwrap_or_else(|e| panic!("{e}"));
    let rows: usize = reader.map(|b| b.map(|b| b.num_rows()).unwrap_or(0)).sum();
    assert_eq!(rows, 50);

    let csv = client()
        .post(server.url("/api/v1/query"))
        .header("accept", "text/csv")
        .json(&json!({"sql": "SELECT entity_id, COUNT(*) AS n FROM events GROUP BY entity_id ORDER BY entity_id"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(csv.status(), StatusCode::OK);
    let text = csv.text().await.unwrap_or_default();
    assert_eq!(text.lines().next(), Some("entity_id,n"));
    assert_eq!(text.lines().nth(1), Some("c0,10"));

    let (status, body) = post(&server, "/api/v1/query", json!({"sql": "SELEC 1"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "syntax_error", "{body}");
    let (status, body) = post(
        &server,
        "/api/v1/query",
        json!({"sql": "DROP TABLE events"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "read_only", "{body}");
    let (status, body) = post(
        &server,
        "/api/v1/query",
        json!({"sql": "SELECT nope FROM events"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "invalid_query", "{body}");
}

/// Snapshots, stats, compaction and health.
#[tokio::test]
async fn snapshots_stats_compaction_and_health() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(dir.path(), &[], &[]);
    for n in 0..3 {
        let (status, _) = post(
            &server,
            "/api/v1/events",
            json!({"event_type": "set", "entity_id": "acct-1", "payload": {"n": n}}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, _) = get(&server, "/api/v1/snapshots/acct-1/latest").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, created) =
        post(&server, "/api/v1/snapshots", json!({"entity_id": "acct-1"})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["version"], 3);
    assert_eq!(created["state"], json!({"n": 2}));
    let (_, list) = get(&server, "/api/v1/snapshots?entity_id=acct-1").await;
    assert_eq!(list["snapshots"], json!([{"version": 3}]));
    for path in [
        "/api/v1/snapshots/acct-1/latest",
        "/api/v1/entities/acct-1/snapshot",
    ] {
        let (status, latest) = get(&server, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(latest["version"], 3, "{path}");
    }
    let (status, body) = get(&server, "/api/v1/snapshots").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = post(&server, "/api/v1/snapshots", json!({"entity_id": "nobody"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let (status, stats) = get(&server, "/api/v1/stats").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stats["events"], 3);
    assert_eq!(stats["streams"], 1);
    let (status, report) = post(&server, "/api/v1/compaction/trigger", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert!(report["manifest_version"].is_u64(), "{report}");
    let (status, compaction) = get(&server, "/api/v1/compaction/stats").await;
    assert_eq!(status, StatusCode::OK);
    assert!(compaction["files"].is_u64(), "{compaction}");
    let (status, health) = get(&server, "/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["store"]["events"], 3);

    // A clean stop flushes; the next start finds every event.
    let (status, log) = server.stop("-TERM");
    assert!(status.success(), "{log}");
    assert!(log.contains("store closed cleanly"), "{log}");
    let server = Server::start(dir.path(), &[], &[]);
    let (_, state) = get(&server, "/api/v1/entities/acct-1/state").await;
    assert_eq!(state["version"], 3, "{state}");
}
