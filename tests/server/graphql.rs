//! `/graphql` over real sockets: queries and pagination, the mutation with and
//! without a conflict, limits, subscriptions in both WebSocket protocols, and the
//! GraphiQL page with its assets.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::Server;

/// POST a GraphQL request; the response body.
async fn graphql(server: &Server, query: &str, variables: Value) -> Value {
    request(server, json!({"query": query, "variables": variables})).await
}

async fn request(server: &Server, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(server.url("/graphql"))
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    response.json().await.unwrap_or_else(|e| panic!("{e}"))
}

/// The `data` of a response that must have no errors.
fn data(response: Value) -> Value {
    assert!(response.get("errors").is_none(), "errors: {response}");
    response["data"].clone()
}

/// The code of the first error.
fn error_code(response: &Value) -> String {
    response["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {response}"))
        .to_string()
}

const APPEND: &str = "mutation($id: String!, $v: Int, $events: [EventInput!]!) {
  appendEvents(entityId: $id, expectedVersion: $v, events: $events) {
    eventId entityId eventType version position timestamp payload
  }
}";

async fn append(server: &Server, id: &str, expected: Option<i64>, events: Value) -> Value {
    graphql(
        server,
        APPEND,
        json!({"id": id, "v": expected, "events": events}),
    )
    .await
}

fn start() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(dir.path(), &[], &[]);
    (dir, server)
}

#[tokio::test]
async fn the_mutation_appends_atomically_and_reports_conflicts() {
    let (_dir, server) = start();
    let events = json!([
        {"eventType": "user.created", "payload": {"name": "Ada"}, "eventId": "create-1"},
        {"eventType": "user.renamed", "payload": {"name": "Ada L."}, "metadata": {"by": "ops"}, "eventId": "rename-1"}
    ]);
    let appended = data(append(&server, "user-1", Some(0), events.clone()).await);
    let list = appended["appendEvents"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(list.len(), 2, "{appended}");
    assert_eq!(list[0]["version"], 1);
    assert_eq!(list[1]["version"], 2);
    assert_eq!(list[0]["eventId"], "create-1");
    assert_eq!(list[1]["payload"], json!({"name": "Ada L."}));

    // The stream exists now: expecting no stream, or version 1, is a conflict that
    // carries the current version, and appends nothing.
    for expected in [0, 1] {
        let refused = append(
            &server,
            "user-1",
            Some(expected),
            json!([{"eventType": "x", "payload": {}}]),
        )
        .await;
        assert_eq!(error_code(&refused), "WRONG_EXPECTED_VERSION", "{refused}");
        assert_eq!(
            refused["errors"][0]["extensions"]["currentVersion"], 2,
            "{refused}"
        );
    }
    // The right version appends.
    let third = data(
        append(
            &server,
            "user-1",
            Some(2),
            json!([{"eventType": "user.seen", "payload": {"at": 3}}]),
        )
        .await,
    );
    assert_eq!(third["appendEvents"][0]["version"], 3);
    // A retry of the first request returns its events and appends nothing.
    let retry = data(append(&server, "user-1", None, events).await);
    assert_eq!(retry["appendEvents"][0]["version"], 1, "{retry}");
    // Bad input is refused with a code and changes nothing.
    let negative = append(
        &server,
        "user-1",
        Some(-4),
        json!([{"eventType": "x", "payload": {}}]),
    )
    .await;
    assert_eq!(error_code(&negative), "BAD_USER_INPUT");
    let empty_type = append(
        &server,
        "user-1",
        None,
        json!([{"eventType": "", "payload": {}}]),
    )
    .await;
    assert_eq!(error_code(&empty_type), "BAD_USER_INPUT", "{empty_type}");
    let entity = data(
        graphql(
            &server,
            "{ entity(id: \"user-1\") { version state } }",
            json!({}),
        )
        .await,
    );
    assert_eq!(entity["entity"]["version"], 3);
    assert_eq!(
        entity["entity"]["state"],
        json!({"name": "Ada L.", "at": 3})
    );
    let missing = data(graphql(&server, "{ entity(id: \"nobody\") { version } }", json!({})).await);
    assert_eq!(missing["entity"], Value::Null);
    let schema = data(graphql(&server, "{ __schema { queryType { name } } }", json!({})).await);
    assert_eq!(schema["__schema"]["queryType"]["name"], "QueryRoot");
}

#[tokio::test]
async fn events_page_through_every_order_and_filter() {
    let (_dir, server) = start();
    // 30 events over three streams, event times going backwards so time order is
    // the reverse of log order.
    for i in 0..30i64 {
        let time = format!("2025-01-{:02}T00:00:00Z", 30 - i);
        let kind = if i % 3 == 0 {
            "order.placed"
        } else {
            "cart.updated"
        };
        data(append(&server, &format!("c-{}", i % 3), None, json!([{"eventType": kind, "payload": {"i": i, "customer": {"tier": "gold"}}, "timestamp": time}])).await);
    }
    let query = "query($first: Int, $after: String, $order: EventOrderBy, $filter: EventFilter) {
      events(first: $first, after: $after, orderBy: $order, filter: $filter) {
        edges { cursor node { position timestamp entityId eventType tier: field(path: \"customer.tier\") } }
        pageInfo { hasNextPage hasPreviousPage endCursor }
      }
    }";
    let all = |order: &'static str, filter: Value| {
        let server = &server;
        async move {
            let mut positions = Vec::new();
            let mut after = Value::Null;
            loop {
                let page = data(
                    graphql(
                        server,
                        query,
                        json!({"first": 7, "after": after, "order": order, "filter": filter}),
                    )
                    .await,
                );
                let events = &page["events"];
                for edge in events["edges"].as_array().cloned().unwrap_or_default() {
                    assert_eq!(edge["node"]["tier"], "gold");
                    positions.push(edge["node"]["position"].as_u64().unwrap_or(u64::MAX));
                }
                assert_eq!(events["pageInfo"]["hasPreviousPage"], !after.is_null());
                if events["pageInfo"]["hasNextPage"] != true {
                    return positions;
                }
                after = events["pageInfo"]["endCursor"].clone();
            }
        }
    };
    let ascending: Vec<u64> = (0..30).collect();
    let descending: Vec<u64> = (0..30).rev().collect();
    assert_eq!(all("POSITION_ASC", json!({})).await, ascending);
    assert_eq!(all("POSITION_DESC", json!({})).await, descending);
    assert_eq!(all("TIMESTAMP_ASC", json!({})).await, descending);
    assert_eq!(all("TIMESTAMP_DESC", json!({})).await, ascending);
    let placed: Vec<u64> = (0..30).step_by(3).collect();
    assert_eq!(
        all("POSITION_ASC", json!({"eventType": "order.placed"})).await,
        placed
    );
    assert_eq!(
        all("POSITION_ASC", json!({"entityId": "c-0"})).await,
        placed
    );
    // Event times from Jan 21 (i = 9) up to, not including, Jan 26 (i = 4).
    let range = json!({"timestamp": {"gte": "2025-01-21", "lt": "2025-01-26T00:00:00Z"}});
    assert_eq!(all("POSITION_ASC", range).await, vec![5, 6, 7, 8, 9]);

    // A cursor from one order is refused in another; a made-up one too.
    let page = data(graphql(&server, query, json!({"first": 2})).await);
    let cursor = page["events"]["pageInfo"]["endCursor"].clone();
    let wrong = graphql(
        &server,
        query,
        json!({"after": cursor, "order": "TIMESTAMP_ASC"}),
    )
    .await;
    assert_eq!(error_code(&wrong), "BAD_USER_INPUT", "{wrong}");
    let forged = graphql(&server, query, json!({"after": "nonsense"})).await;
    assert_eq!(error_code(&forged), "BAD_USER_INPUT");
    let too_many = graphql(&server, query, json!({"first": 5000})).await;
    assert_eq!(error_code(&too_many), "BAD_USER_INPUT");

    // An entity's events page by version.
    let entity_query =
        "query($after: String) { entity(id: \"c-1\") { version events(first: 4, after: $after) {
        edges { cursor node { version } } pageInfo { hasNextPage endCursor } } } }";
    let mut versions = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = data(graphql(&server, entity_query, json!({"after": after})).await);
        let events = &page["entity"]["events"];
        for edge in events["edges"].as_array().cloned().unwrap_or_default() {
            versions.push(edge["node"]["version"].as_u64().unwrap_or(0));
        }
        if events["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = events["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(versions, (1..=10).collect::<Vec<u64>>());

    // Streams, event types, stats and EventQL.
    let overview = data(graphql(&server, "{
        streams(first: 2) { entityId version eventCount firstTimestamp lastTimestamp }
        more: streams(first: 5, after: \"c-1\") { entityId }
        eventTypes { eventType count }
        stats { events streams partitions visiblePosition durability }
        eventql(query: \"SELECT entity_id, COUNT(*) AS n FROM events GROUP BY entity_id ORDER BY entity_id\") { columns rows rowCount }
    }", json!({})).await);
    assert_eq!(overview["streams"][0]["entityId"], "c-0");
    assert_eq!(overview["streams"][0]["version"], 10);
    assert_eq!(overview["streams"][0]["eventCount"], 10);
    assert_eq!(
        overview["streams"][0]["firstTimestamp"],
        "2025-01-03T00:00:00.000000Z"
    );
    assert_eq!(
        overview["streams"][0]["lastTimestamp"],
        "2025-01-30T00:00:00.000000Z"
    );
    assert_eq!(overview["streams"].as_array().map(Vec::len), Some(2));
    assert_eq!(overview["more"], json!([{"entityId": "c-2"}]));
    assert_eq!(
        overview["eventTypes"],
        json!([
            {"eventType": "cart.updated", "count": 20},
            {"eventType": "order.placed", "count": 10}
        ])
    );
    assert_eq!(overview["stats"]["events"], 30);
    assert_eq!(overview["stats"]["streams"], 3);
    assert_eq!(overview["stats"]["visiblePosition"], 30);
    assert_eq!(overview["eventql"]["columns"], json!(["entity_id", "n"]));
    assert_eq!(overview["eventql"]["rowCount"], 3);
    assert_eq!(
        overview["eventql"]["rows"][2],
        json!({"entity_id": "c-2", "n": 10})
    );
    let bad_sql = graphql(
        &server,
        "{ eventql(query: \"SELEC 1\") { rowCount } }",
        json!({}),
    )
    .await;
    assert_eq!(error_code(&bad_sql), "BAD_USER_INPUT", "{bad_sql}");
    let write = graphql(
        &server,
        "{ eventql(query: \"DROP TABLE events\") { rowCount } }",
        json!({}),
    )
    .await;
    assert_eq!(error_code(&write), "BAD_USER_INPUT", "{write}");
}

#[tokio::test]
async fn limits_refuse_requests_before_they_run() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(
        dir.path(),
        &[],
        &[
            ("ALLSOURCE_GRAPHQL_MAX_DEPTH", "4"),
            ("ALLSOURCE_GRAPHQL_MAX_COMPLEXITY", "500"),
            ("ALLSOURCE_GRAPHQL_MAX_ALIASES", "3"),
            ("ALLSOURCE_GRAPHQL_MAX_BATCH", "2"),
            ("ALLSOURCE_GRAPHQL_INTROSPECTION", "false"),
        ],
    );
    // Within the limits.
    data(
        graphql(
            &server,
            "{ events(first: 10) { edges { cursor } } }",
            json!({}),
        )
        .await,
    );
    // Too deep: entity > events > edges > node > position is five levels.
    let deep = graphql(
        &server,
        "{ entity(id: \"a\") { events { edges { node { position } } } } }",
        json!({}),
    )
    .await;
    assert!(
        deep["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("nested too deep"),
        "{deep}"
    );
    // Too complex: 1000 events of two fields each.
    let complex = graphql(
        &server,
        "{ events(first: 1000) { edges { cursor } } }",
        json!({}),
    )
    .await;
    assert!(
        complex["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("too complex"),
        "{complex}"
    );
    // Too many aliases.
    let aliases = graphql(
        &server,
        "{ a: stats { events } b: stats { events } c: stats { events } d: stats { events } }",
        json!({}),
    )
    .await;
    assert_eq!(error_code(&aliases), "LIMIT_EXCEEDED", "{aliases}");
    // Too big a batch; a batch within the limit runs.
    let one = json!({"query": "{ stats { events } }"});
    let batch = request(&server, json!([one, one, one])).await;
    assert_eq!(error_code(&batch), "LIMIT_EXCEEDED", "{batch}");
    let fine = request(&server, json!([one, one])).await;
    assert_eq!(fine.as_array().map(Vec::len), Some(2), "{fine}");
    // Introspection is off: the schema reads as null (it is on by default, see below).
    let schema = graphql(&server, "{ __schema { queryType { name } } }", json!({})).await;
    assert_eq!(schema["data"]["__schema"], Value::Null, "{schema}");
    // None of it appended anything.
    assert_eq!(
        data(graphql(&server, "{ stats { events } }", json!({})).await)["stats"]["events"],
        0
    );
}

#[tokio::test]
async fn a_slow_request_is_cancelled_at_the_time_limit() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(dir.path(), &[], &[("ALLSOURCE_GRAPHQL_TIMEOUT_MS", "50")]);
    // Appended over REST: the 50 ms limit is for GraphQL requests only, and a
    // first append on a slow machine can take longer than that.
    let events: Vec<Value> = (0..300)
        .map(|i| json!({"event_type": "t", "entity_id": "s", "payload": {"i": i}}))
        .collect();
    let appended = reqwest::Client::new()
        .post(server.url("/api/v1/events"))
        .json(&json!({ "events": events }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(appended.status(), reqwest::StatusCode::CREATED);
    let slow = "{ eventql(query: \"SELECT COUNT(*) FROM events a, events b, events c WHERE a.version + b.version + c.version > 0\") { rows } }";
    let started = std::time::Instant::now();
    let response = graphql(&server, slow, json!({})).await;
    assert_eq!(error_code(&response), "LIMIT_EXCEEDED", "{response}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// A subscription socket speaking `protocol`.
async fn socket(
    server: &Server,
    protocol: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut request = server
        .ws_url("/graphql/ws")
        .into_client_request()
        .unwrap_or_else(|e| panic!("{e}"));
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        protocol.parse().unwrap_or_else(|e| panic!("{e}")),
    );
    let (mut socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some(protocol)
    );
    send(
        &mut socket,
        json!({"type": "connection_init", "payload": {}}),
    )
    .await;
    assert_eq!(next(&mut socket).await["type"], "connection_ack");
    socket
}

async fn send<S: SinkExt<Message> + Unpin>(socket: &mut S, message: Value)
where
    S::Error: std::fmt::Debug,
{
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
}

/// The next protocol message (keep-alives skipped), within five seconds.
async fn next<
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
>(
    socket: &mut S,
) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .unwrap_or_else(|_| panic!("nothing within 5 s"))
            .unwrap_or_else(|| panic!("the socket closed"))
            .unwrap_or_else(|e| panic!("{e}"));
        if let Message::Text(text) = frame {
            let message: Value =
                serde_json::from_str(text.as_str()).unwrap_or_else(|e| panic!("{e}"));
            if message["type"] != "ka" && message["type"] != "ping" {
                return message;
            }
        }
    }
}

const SUBSCRIBE: &str = "subscription($from: Int, $filter: LiveFilter) {
  events(fromPosition: $from, filter: $filter) { position entityId eventType payload }
}";

/// The positions of the events a mutation response holds.
fn positions(response: &Value) -> Vec<u64> {
    response["appendEvents"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| e["position"].as_u64().unwrap_or(u64::MAX))
        .collect()
}

#[tokio::test]
async fn subscriptions_catch_up_then_follow_in_both_protocols() {
    let (_dir, server) = start();
    for (protocol, start, data_type) in [
        ("graphql-transport-ws", "subscribe", "next"),
        ("graphql-ws", "start", "data"),
    ] {
        // History: three events of the stream, one of another.
        let tick = json!([{"eventType": "tick", "payload": {}}]);
        let mut want = Vec::new();
        for _ in 0..3 {
            want.extend(positions(&data(
                append(&server, protocol, None, tick.clone()).await,
            )));
        }
        data(append(&server, "elsewhere", None, tick.clone()).await);
        let mut ws = socket(&server, protocol).await;
        let variables = json!({"from": 0, "filter": {"entityId": protocol}});
        send(&mut ws, json!({"id": "1", "type": start, "payload": {"query": SUBSCRIBE, "variables": variables}})).await;
        let mut seen = Vec::new();
        let receive = async |ws: &mut _, seen: &mut Vec<u64>| {
            let message = next(ws).await;
            assert_eq!(message["type"], data_type, "{message}");
            assert_eq!(message["id"], "1");
            seen.push(
                message["payload"]["data"]["events"]["position"]
                    .as_u64()
                    .unwrap_or(u64::MAX),
            );
        };
        for _ in 0..3 {
            receive(&mut ws, &mut seen).await;
        }
        // Live: two more of the stream, one of another; only the stream's arrive.
        let two =
            json!([{"eventType": "tick", "payload": {}}, {"eventType": "tock", "payload": {}}]);
        want.extend(positions(&data(append(&server, protocol, None, two).await)));
        data(append(&server, "elsewhere", None, tick.clone()).await);
        for _ in 0..2 {
            receive(&mut ws, &mut seen).await;
        }
        assert_eq!(seen, want, "{protocol}");
        let _ = ws.close(None).await;
    }
}

#[tokio::test]
async fn graphiql_and_its_assets_are_served_by_the_server() {
    let (_dir, server) = start();
    let client = reqwest::Client::builder()
        .no_gzip()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let page = client
        .get(server.url("/graphql"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(page.contains("/graphql/assets/graphiql.min.js"), "{page}");
    assert!(
        !page.contains("https://"),
        "the page loads something from outside"
    );
    for asset in [
        "graphiql.min.js",
        "graphiql.min.css",
        "react.production.min.js",
        "react-dom.production.min.js",
        "graphql-ws.min.js",
    ] {
        let gzipped = client
            .get(server.url(&format!("/graphql/assets/{asset}")))
            .header("Accept-Encoding", "gzip, deflate")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(gzipped.status(), 200, "{asset}");
        assert_eq!(
            gzipped
                .headers()
                .get("content-encoding")
                .and_then(|v| v.to_str().ok()),
            Some("gzip")
        );
        let plain = client
            .get(server.url(&format!("/graphql/assets/{asset}")))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(plain.headers().get("content-encoding").is_none());
        let body = plain.bytes().await.unwrap_or_else(|e| panic!("{e}"));
        assert!(body.len() > 1000, "{asset}: {} bytes", body.len());
    }
    let missing = client
        .get(server.url("/graphql/assets/nothing.js"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(missing.status(), 404);
}
