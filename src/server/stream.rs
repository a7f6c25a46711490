//! `WS /api/v1/events/stream`: events as they are appended, one JSON text frame per
//! event, resumable from a position.
//!
//! ```text
//! GET /api/v1/events/stream?event_type=order.placed&entity_id=order-7&from=1200
//!   -> {"position":1200,"event_type":"order.placed",...}   one frame per event
//!   -> {"position":1375,...}                                 in position order
//! reconnect with from = last position + 1: nothing is missed, nothing repeats
//! ```
//!
//! The socket follows a store [`Subscription`], which pulls from the log by
//! position: history and live events come through the same cursor, and a slow
//! client only falls behind, it is never skipped ahead. Without `from` the stream
//! starts at the newest event, so it carries only what is appended after it opens.

use allsource_engine::{Subscription, SubscriptionFilter};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Query, State};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;

use super::error::ApiError;
use super::events::event_json;
use super::{AppState, TENANT};

/// The parameters of the stream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamParams {
    /// Only this event type; several may be given separated by commas.
    event_type: Option<String>,
    /// Only this stream.
    entity_id: Option<String>,
    /// The first position to deliver (default: only events appended from now on).
    from: Option<u64>,
}

/// Upgrade to a WebSocket that carries the matching events.
pub(crate) async fn stream(
    State(app): State<AppState>,
    params: Result<Query<StreamParams>, axum::extract::rejection::QueryRejection>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_parameter(e.body_text()))?;
    let upgrade = upgrade.map_err(|e| {
        ApiError::bad_parameter(format!("this endpoint speaks WebSocket: {}", e.body_text()))
    })?;
    let filter = SubscriptionFilter {
        entity_id: params.entity_id,
        event_types: params
            .event_type
            .iter()
            .flat_map(|types| types.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
    };
    let from = params
        .from
        .unwrap_or_else(|| app.store.stats().visible_position);
    let subscription = app.store.subscribe(TENANT, from, filter);
    // A small read buffer: the socket library zero-fills it on every poll of the
    // connection (see `allsource_graphql::SOCKET_READ_BUFFER`).
    Ok(upgrade
        .read_buffer_size(allsource_graphql::SOCKET_READ_BUFFER)
        .on_upgrade(move |socket| follow(app, subscription, socket)))
}

/// Send events until the client leaves, the server shuts down or the store fails.
async fn follow(app: AppState, mut subscription: Subscription, socket: WebSocket) {
    let (mut sender, mut receiver) = socket.split();
    let closing = until_closing(app.closing.subscribe());
    tokio::pin!(closing);
    let close = loop {
        tokio::select! {
            batch = subscription.next_batch() => match batch {
                Ok(events) => {
                    for event in &events {
                        let frame = Message::Text(event_json(event).to_string().into());
                        if sender.send(frame).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "event stream ended by the store");
                    break (close_code::ERROR, e.to_string());
                }
            },
            incoming = receiver.next() => match incoming {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            () = &mut closing => {
                break (close_code::AWAY, "the server is shutting down".to_string());
            }
        }
    };
    let (code, reason) = close;
    let _ = sender
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

/// Resolves once the server starts shutting down.
async fn until_closing(mut closing: tokio::sync::watch::Receiver<bool>) {
    loop {
        if *closing.borrow_and_update() {
            return;
        }
        if closing.changed().await.is_err() {
            // The server is gone without a shutdown: nothing will ever close it.
            std::future::pending::<()>().await;
        }
    }
}
