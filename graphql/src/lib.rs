//! allsource-graphql: the GraphQL API. An async-graphql schema over the event store
//! and EventQL, and the axum router the binary mounts:
//!
//! ```text
//! POST /graphql                  queries and mutations (single or batched)
//! GET  /graphql                  GraphiQL, its assets served from the binary
//! GET  /graphql/ws               subscriptions: graphql-transport-ws or legacy graphql-ws
//! ```
//!
//! Every request is checked against [`GraphqlLimits`] before it runs: depth,
//! complexity, aliases and batch size are refused up front with a clear error, and
//! a request that outlives the time limit is cancelled.

mod errors;
mod graphiql;
mod mutation;
mod query;
mod scalars;
mod subscription;
mod types;

use std::str::FromStr;
use std::time::Duration;

use std::sync::Arc;

use allsource_engine::EventStore;
use allsource_operators::Pipelines;
use allsource_sql::EventQl;
use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, WebSocketProtocols, WsMessage};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{BatchRequest, BatchResponse, Request, Response, Schema, ServerError};
use async_graphql_axum::{GraphQLBatchRequest, GraphQLResponse};
use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use futures::{SinkExt, StreamExt};

pub use mutation::MutationRoot;
pub use query::QueryRoot;
pub use subscription::SubscriptionRoot;

/// The schema.
pub type AllSourceSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// What the resolvers reach: the store, EventQL and the tenant requests act for.
#[derive(Clone)]
pub struct Service {
    store: EventStore,
    eventql: EventQl,
    tenant: String,
    /// The pipelines and projections, when the server runs them.
    pipelines: Option<Arc<Pipelines>>,
}

impl Service {
    /// Serve `store` (and queries through `eventql`) for `tenant`.
    pub fn new(store: EventStore, eventql: EventQl, tenant: impl Into<String>) -> Self {
        Self {
            store,
            eventql,
            tenant: tenant.into(),
            pipelines: None,
        }
    }

    /// Serve `pipelines` too: `projection` and `pipelineUpdates`.
    pub fn with_pipelines(mut self, pipelines: Arc<Pipelines>) -> Self {
        self.pipelines = Some(pipelines);
        self
    }

    /// The pipelines, or an error saying there are none.
    fn pipelines(&self) -> async_graphql::Result<&Arc<Pipelines>> {
        self.pipelines
            .as_ref()
            .ok_or_else(|| errors::coded("NOT_FOUND", "this server runs no pipelines"))
    }
}

/// The limits every request is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphqlLimits {
    /// Deepest selection nesting.
    pub max_depth: usize,
    /// Highest complexity: one per field, pages counted once per item they may hold.
    pub max_complexity: usize,
    /// Most aliased fields in one document.
    pub max_aliases: usize,
    /// Most operations in one batched request.
    pub max_batch: usize,
    /// Longest a query or mutation may run before it is cancelled.
    pub timeout: Duration,
    /// Whether the schema can be introspected (GraphiQL's docs and completion need it).
    pub introspection: bool,
}

impl Default for GraphqlLimits {
    fn default() -> Self {
        Self {
            max_depth: 12,
            max_complexity: 50_000,
            max_aliases: 30,
            max_batch: 10,
            timeout: Duration::from_secs(30),
            introspection: true,
        }
    }
}

/// The schema over `service`, under `limits`.
pub fn schema(service: Service, limits: &GraphqlLimits) -> AllSourceSchema {
    let mut builder = Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
        .data(service)
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity);
    if !limits.introspection {
        builder = builder.disable_introspection();
    }
    builder.finish()
}

/// The schema in SDL, as `docs/graphql.md` shows it.
pub fn sdl() -> String {
    Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
        .finish()
        .sdl()
}

/// What the routes share.
#[derive(Clone)]
struct Graphql {
    schema: AllSourceSchema,
    limits: GraphqlLimits,
}

/// The GraphQL routes (see the crate docs), for any outer router state.
pub fn router<S: Clone + Send + Sync + 'static>(
    service: Service,
    limits: GraphqlLimits,
) -> Router<S> {
    let state = Graphql {
        schema: schema(service, &limits),
        limits,
    };
    Router::new()
        .route("/graphql", get(graphiql::page).post(execute))
        .route("/graphql/ws", get(subscribe))
        .route("/graphql/assets/{name}", get(graphiql::asset))
        .with_state(state)
}

/// Run a request (or a batch) once it passes the limits.
async fn execute(State(graphql): State<Graphql>, request: GraphQLBatchRequest) -> GraphQLResponse {
    let batch = request.into_inner();
    if let Err(refused) = check(&batch, &graphql.limits) {
        return BatchResponse::Single(Response::from_errors(vec![refused])).into();
    }
    let timeout = graphql.limits.timeout;
    match tokio::time::timeout(timeout, graphql.schema.execute_batch(batch)).await {
        Ok(response) => response.into(),
        Err(_) => BatchResponse::Single(Response::from_errors(vec![limit_error(format!(
            "the request was cancelled after its time limit of {timeout:?}"
        ))]))
        .into(),
    }
}

/// How much a subscription socket reads at a time. Clients send little (a subscribe,
/// a ping), and the socket library zero-fills this much on every read, which is
/// every time the connection is polled: at the default 128 KiB, that fill was a
/// fifth of the server's time when delivering to a thousand subscribers.
pub const SOCKET_READ_BUFFER: usize = 4096;

/// Upgrade to a subscription socket speaking the protocol the client asks for
/// (the first of its `Sec-WebSocket-Protocol` list that is known).
async fn subscribe(
    State(graphql): State<Graphql>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> axum::response::Response {
    let protocol = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .and_then(|list| {
            list.split(',')
                .find_map(|p| WebSocketProtocols::from_str(p.trim()).ok())
        });
    let Some(protocol) = protocol else {
        return (
            StatusCode::BAD_REQUEST,
            "ask for the graphql-transport-ws or graphql-ws protocol",
        )
            .into_response();
    };
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .read_buffer_size(SOCKET_READ_BUFFER)
        .on_upgrade(move |socket| serve(socket, graphql.schema, protocol))
        .into_response()
}

/// Run one subscription socket until either side ends it. Messages ready together
/// go out in one write: the sink is flushed only when none is waiting, so a commit
/// that concerns several of the socket's subscriptions costs one system call, not
/// one per event.
async fn serve(socket: WebSocket, schema: AllSourceSchema, protocol: WebSocketProtocols) {
    let (mut sink, stream) = socket.split();
    let input = stream
        .take_while(|message| std::future::ready(message.is_ok()))
        .filter_map(|message| {
            std::future::ready(match message {
                Ok(message @ (Message::Text(_) | Message::Binary(_))) => Some(message.into_data()),
                _ => None,
            })
        });
    let mut output = async_graphql::http::WebSocket::new(schema, input, protocol).map(|message| {
        Ok(match message {
            WsMessage::Text(text) => Message::Text(text.into()),
            WsMessage::Close(code, reason) => Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })),
        })
    });
    // Ends when the client goes away (a failed write) or the protocol closes.
    let _ = sink.send_all(&mut output).await;
    let _ = sink.close().await;
}

/// Refuse a batch over the limits that execution does not check itself.
fn check(batch: &BatchRequest, limits: &GraphqlLimits) -> Result<(), ServerError> {
    let requests: Vec<&Request> = match batch {
        BatchRequest::Single(request) => vec![request],
        BatchRequest::Batch(requests) => requests.iter().collect(),
    };
    if requests.len() > limits.max_batch {
        return Err(limit_error(format!(
            "the batch has {} operations; at most {} are allowed",
            requests.len(),
            limits.max_batch
        )));
    }
    for request in requests {
        // A document that does not parse is left for execution to report.
        let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
            continue;
        };
        let aliases = count_aliases(&document);
        if aliases > limits.max_aliases {
            return Err(limit_error(format!(
                "the query has {aliases} aliases; at most {} are allowed",
                limits.max_aliases
            )));
        }
    }
    Ok(())
}

fn limit_error(message: String) -> ServerError {
    let mut error = ServerError::new(message, None);
    let mut extensions = async_graphql::ErrorExtensionValues::default();
    extensions.set("code", "LIMIT_EXCEEDED");
    error.extensions = Some(extensions);
    error
}

/// Aliased fields written in the document (operations and fragments).
fn count_aliases(document: &ExecutableDocument) -> usize {
    fn in_set(set: &SelectionSet) -> usize {
        set.items
            .iter()
            .map(|item| match &item.node {
                Selection::Field(field) => {
                    usize::from(field.node.alias.is_some()) + in_set(&field.node.selection_set.node)
                }
                Selection::InlineFragment(fragment) => in_set(&fragment.node.selection_set.node),
                Selection::FragmentSpread(_) => 0,
            })
            .sum()
    }
    let operations: usize = document
        .operations
        .iter()
        .map(|(_, op)| in_set(&op.node.selection_set.node))
        .sum();
    let fragments: usize = document
        .fragments
        .values()
        .map(|f| in_set(&f.node.selection_set.node))
        .sum();
    operations + fragments
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/graphql.md");
    const BEGIN: &str = "<!-- schema: begin -->\n```graphql\n";
    const END: &str = "```\n<!-- schema: end -->";

    /// `docs/graphql.md` shows the schema exported from the code. Run with
    /// `ALLSOURCE_WRITE_SDL=1` to rewrite it after changing the schema.
    #[test]
    fn the_documented_schema_is_the_schema() {
        let doc = std::fs::read_to_string(DOC).unwrap_or_else(|e| panic!("{DOC}: {e}"));
        let start = doc.find(BEGIN).map(|i| i + BEGIN.len());
        let end = doc.find(END);
        let (Some(start), Some(end)) = (start, end) else {
            panic!("{DOC} has no schema block between the schema markers");
        };
        let sdl = sdl();
        if std::env::var_os("ALLSOURCE_WRITE_SDL").is_some() {
            let updated = format!("{}{sdl}{}", &doc[..start], &doc[end..]);
            std::fs::write(DOC, updated).unwrap_or_else(|e| panic!("{DOC}: {e}"));
            return;
        }
        assert!(
            doc[start..end] == sdl,
            "docs/graphql.md shows another schema than the code's: run \
             `ALLSOURCE_WRITE_SDL=1 cargo test --workspace the_documented_schema` and commit"
        );
    }

    #[test]
    fn aliases_are_counted_in_operations_and_fragments() {
        let count = |query: &str| {
            count_aliases(
                &async_graphql::parser::parse_query(query).unwrap_or_else(|e| panic!("{e}")),
            )
        };
        assert_eq!(count("{ stats { events } }"), 0);
        assert_eq!(count("{ a: stats { n: events } b: stats { events } }"), 3);
        assert_eq!(
            count(
                "query { ...F ... on QueryRoot { c: stats { events } } } fragment F on QueryRoot { d: stats { events } }"
            ),
            2
        );
    }
}
