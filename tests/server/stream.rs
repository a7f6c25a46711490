//! `WS /api/v1/events/stream` with a real WebSocket client: history from a
//! position, live events, filters, resume without loss or repeats, shutdown.

use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::Server;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn append(server: &Server, entity_id: &str, event_type: &str, n: u64) -> u64 {
    let response = reqwest::Client::new()
        .post(server.url("/api/v1/events"))
        .json(&json!({"event_type": event_type, "entity_id": entity_id, "payload": {"n": n}}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::CREATED);
    let ack: Value = response.json().await.unwrap_or_else(|e| panic!("{e}"));
    ack["position"]
        .as_u64()
        .unwrap_or_else(|| panic!("no position in {ack}"))
}

async fn connect(server: &Server, query: &str) -> Socket {
    let url = server.ws_url(&format!("/api/v1/events/stream{query}"));
    let (socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    socket
}

/// The next event frame, within five seconds.
async fn next_event(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .unwrap_or_else(|_| panic!("no event within 5 s"))
            .unwrap_or_else(|| panic!("the stream ended"))
            .unwrap_or_else(|e| panic!("{e}"));
        match frame {
            Message::Text(text) => {
                return serde_json::from_str(text.as_str()).unwrap_or_else(|e| panic!("{e}"));
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected an event, got {other:?}"),
        }
    }
}

/// Nothing arrives for a moment.
async fn assert_quiet(socket: &mut Socket) {
    let frame = tokio::time::timeout(Duration::from_millis(300), socket.next()).await;
    assert!(frame.is_err(), "unexpected frame {frame:?}");
}

#[tokio::test]
async fn history_live_filters_and_resume() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(dir.path(), &[], &[]);
    let first = append(&server, "order-1", "order.placed", 1).await;
    append(&server, "order-1", "order.paid", 2).await;
    append(&server, "order-2", "order.placed", 3).await;

    // From a position: history first, then live events, only of the asked type.
    let mut placed = connect(&server, &format!("?event_type=order.placed&from={first}")).await;
    assert_eq!(next_event(&mut placed).await["payload"]["n"], 1);
    assert_eq!(next_event(&mut placed).await["payload"]["n"], 3);
    append(&server, "order-3", "order.paid", 4).await;
    append(&server, "order-3", "order.placed", 5).await;
    let live = next_event(&mut placed).await;
    assert_eq!(live["payload"]["n"], 5);
    assert_eq!(live["entity_id"], "order-3");
    assert_eq!(live["event_type"], "order.placed");
    assert_quiet(&mut placed).await;
    let last = live["position"]
        .as_u64()
        .unwrap_or_else(|| panic!("{live}"));
    let _ = placed.close(None).await;

    // Missed while away, delivered on resume from the next position, nothing twice.
    append(&server, "order-4", "order.placed", 6).await;
    append(&server, "order-4", "order.placed", 7).await;
    let mut resumed = connect(
        &server,
        &format!("?event_type=order.placed&from={}", last + 1),
    )
    .await;
    assert_eq!(next_event(&mut resumed).await["payload"]["n"], 6);
    assert_eq!(next_event(&mut resumed).await["payload"]["n"], 7);
    assert_quiet(&mut resumed).await;

    // One stream, several types; without `from` only what is appended from now on.
    let mut one = connect(
        &server,
        "?entity_id=order-1&event_type=order.placed,order.shipped",
    )
    .await;
    assert_quiet(&mut one).await;
    append(&server, "order-2", "order.shipped", 8).await;
    append(&server, "order-1", "order.refunded", 9).await;
    append(&server, "order-1", "order.shipped", 10).await;
    let shipped = next_event(&mut one).await;
    assert_eq!(shipped["payload"]["n"], 10);
    assert_eq!(shipped["version"], 4);
    assert_quiet(&mut one).await;
}

#[tokio::test]
async fn bad_parameters_and_plain_http_are_refused() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(dir.path(), &[], &[]);
    let client = reqwest::Client::new();
    for path in [
        "/api/v1/events/stream?from=soon",
        "/api/v1/events/stream?colour=red",
        "/api/v1/events/stream",
    ] {
        let response = client
            .get(server.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        let body: Value = response.json().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(body["error"]["code"], "bad_parameter", "{path}: {body}");
    }
}

#[tokio::test]
async fn shutdown_closes_streams_as_going_away() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(dir.path(), &[], &[]);
    let mut socket = connect(&server, "?from=0").await;
    append(&server, "a", "t", 1).await;
    assert_eq!(next_event(&mut socket).await["payload"]["n"], 1);
    let stopping = tokio::task::spawn_blocking(move || server.stop("-TERM"));
    let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .unwrap_or_else(|_| panic!("no close frame within 10 s"));
    match frame {
        Some(Ok(Message::Close(Some(close)))) => assert_eq!(close.code, CloseCode::Away),
        other => panic!("expected a close frame, got {other:?}"),
    }
    drop(socket);
    let (status, log) = stopping.await.unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{log}");
    assert!(log.contains("store closed cleanly"), "{log}");
}
