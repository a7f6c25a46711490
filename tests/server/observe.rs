//! `GET /metrics`, request ids and JSON logs, against the real binary.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::Server;

/// The value of the sample `name` (with its labels, exactly as rendered).
fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_appends_and_store_figures() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(dir.path(), &["--partitions", "4"], &[]);
    let client = reqwest::Client::new();
    let batch = json!({"events": [
        {"event_type": "t", "entity_id": "a", "payload": {"x": 1}},
        {"event_type": "t", "entity_id": "b", "payload": {"x": 2}},
        {"event_type": "t", "entity_id": "c", "payload": {"x": 3}},
    ]});
    let response = client
        .post(server.url("/api/v1/events"))
        .json(&batch)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = client
        .post(server.url("/api/v1/query"))
        .json(&json!({"sql": "SELECT count(*) AS n FROM events"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::OK);
    let response = client
        .get(server.url("/api/v1/entities/nobody/state"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    let response = client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let page = response.text().await.unwrap_or_else(|e| panic!("{e}"));
    let expect = |name: &str, value: f64| {
        assert_eq!(sample(&page, name), Some(value), "{name} in\n{page}");
    };
    expect(
        r#"allsource_http_requests_total{method="POST",route="/api/v1/events",status="201"}"#,
        1.0,
    );
    expect(
        r#"allsource_http_requests_total{method="GET",route="/api/v1/entities/{entity_id}/state",status="404"}"#,
        1.0,
    );
    expect(r#"allsource_queries_total{outcome="ok"}"#, 1.0);
    expect("allsource_appended_events_total", 3.0);
    expect("allsource_events", 3.0);
    expect("allsource_append_duration_seconds_count", 1.0);
    expect(
        r#"allsource_http_request_duration_seconds_count{method="POST",route="/api/v1/query"}"#,
        1.0,
    );
    let per_partition: f64 = (0..4)
        .filter_map(|p| {
            sample(
                &page,
                &format!(r#"allsource_partition_events{{partition="{p}"}}"#),
            )
        })
        .sum();
    assert_eq!(per_partition, 3.0, "{page}");
    let bytes: f64 = (0..4)
        .filter_map(|p| {
            sample(
                &page,
                &format!(r#"allsource_appended_bytes_total{{partition="{p}"}}"#),
            )
        })
        .sum();
    assert_eq!(bytes, 3.0 * r#"{"x":1}"#.len() as f64, "{page}");
    assert!(
        sample(&page, "allsource_wal_records_total").is_some_and(|v| v >= 1.0),
        "{page}"
    );
    assert!(
        page.contains("allsource_http_request_duration_seconds_bucket{"),
        "{page}"
    );
    for name in [
        "allsource_flushes_total",
        "allsource_compactions_total",
        "allsource_wal_fsyncs_total",
    ] {
        assert!(sample(&page, name).is_some(), "{name} in\n{page}");
    }
}

#[tokio::test]
async fn json_logs_carry_the_request_id() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(
        dir.path(),
        &["--log-format", "json"],
        &[("RUST_LOG", "allsource=debug,info")],
    );
    let client = reqwest::Client::new();
    let event = json!({"event_type": "t", "entity_id": "s", "payload": {}, "expected_version": 5});
    let response = client
        .post(server.url("/api/v1/events"))
        .header("x-request-id", "req-conflict-1")
        .json(&event)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(
        response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("req-conflict-1")
    );
    let response = client
        .get(server.url("/health"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let generated = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(!generated.is_empty());

    let (status, log) = server.stop("-TERM");
    assert!(status.success(), "{log}");
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l}")))
        .collect();
    let of_request =
        |id: &str| -> Vec<&Value> { lines.iter().filter(|l| l["span"]["id"] == id).collect() };
    let conflict = of_request("req-conflict-1");
    assert!(
        conflict
            .iter()
            .any(|l| l["level"] == "WARN" && l["fields"]["code"] == "conflict"),
        "{conflict:?}"
    );
    assert!(
        conflict.iter().any(|l| l["level"] == "DEBUG"
            && l["fields"]["status"] == 409
            && l["fields"]["path"] == "/api/v1/events"),
        "{conflict:?}"
    );
    assert!(
        of_request(&generated)
            .iter()
            .any(|l| l["fields"]["status"] == 200),
        "{log}"
    );
}
