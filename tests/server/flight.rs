//! The Flight SQL service of `allsource serve`, driven by the Rust Flight clients
//! over a real socket: DoPut ingest, statements, prepared statements, the catalog.

use std::sync::Arc;

use allsource::flight::sql::EVENTS_TABLE;
use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::sql::CommandGetTables;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::{FlightClient, FlightDescriptor, FlightInfo};
use futures::TryStreamExt;
use tonic::transport::Channel;

use super::Server;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn channel(server: &Server) -> Channel {
    Channel::from_shared(format!("http://{}", server.flight))
        .unwrap_or_else(|e| panic!("{e}"))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn events(first: usize, count: usize, payload: impl Fn(usize) -> String) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("entity_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("payload", DataType::Utf8, false),
    ]));
    let rows = first..first + count;
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.clone().map(|i| format!("order-{}", i % 10)),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.clone().map(|_| "order.placed"),
            )),
            Arc::new(StringArray::from_iter_values(rows.map(payload))),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// DoPut `batches` to the `events` path; the acknowledgements, or the error.
async fn put(server: &Server, batches: Vec<RecordBatch>) -> Result<Vec<serde_json::Value>, String> {
    let mut client = FlightClient::new(channel(server).await);
    let data = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(FlightDescriptor::new_path(vec![EVENTS_TABLE.into()])))
        .build(futures::stream::iter(batches.into_iter().map(Ok)));
    let results = client.do_put(data).await.map_err(|e| e.to_string())?;
    results
        .map_err(|e| e.to_string())
        .and_then(
            |r| async move { serde_json::from_slice(&r.app_metadata).map_err(|e| e.to_string()) },
        )
        .try_collect()
        .await
}

async fn fetch(client: &mut FlightSqlServiceClient<Channel>, info: FlightInfo) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.unwrap_or_else(|| panic!("no ticket"));
        let stream = client
            .do_get(ticket)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        out.extend(
            stream
                .try_collect::<Vec<_>>()
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    out
}

async fn count(client: &mut FlightSqlServiceClient<Channel>) -> i64 {
    let info = client
        .execute("SELECT COUNT(*) AS n FROM events".into(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let batches = fetch(client, info).await;
    batches[0].column(0).as_primitive::<Int64Type>().value(0)
}

#[test]
fn ingest_query_prepare_and_browse_over_flight_sql() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(dir.path(), &[], &[]);
    runtime().block_on(async {
        let acks = put(
            &server,
            vec![
                events(0, 600, |i| format!(r#"{{"amount": {i}}}"#)),
                events(600, 400, |i| format!(r#"{{"amount": {i}}}"#)),
            ],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(acks.len(), 2, "one acknowledgement per batch: {acks:?}");
        assert_eq!(acks[0]["count"], 600);
        assert_eq!(acks[0]["first_position"], 0);
        assert_eq!(acks[1]["last_position"], 999);

        let mut client = FlightSqlServiceClient::new(channel(&server).await);
        assert_eq!(count(&mut client).await, 1000);

        // A batch with one bad JSON payload is refused whole.
        let bad = put(
            &server,
            vec![events(1000, 10, |i| if i == 1005 { "{oops".into() } else { "{}".into() })],
        )
        .await;
        let message = bad.err().unwrap_or_else(|| panic!("a bad batch was accepted"));
        assert!(message.contains("payload"), "{message}");
        // So is one missing a column.
        let schema = Arc::new(Schema::new(vec![Field::new("entity_id", DataType::Utf8, false)]));
        let missing = RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec!["x"]))])
            .unwrap_or_else(|e| panic!("{e}"));
        let message = put(&server, vec![missing]).await.err().unwrap_or_else(|| panic!("accepted"));
        assert!(message.contains("no `event_type` column"), "{message}");
        assert_eq!(count(&mut client).await, 1000, "rejected batches wrote nothing");

        // Batches sent back to back (appends pipelined), the third one bad: the two
        // before it are acknowledged and written, nothing from it on.
        let ok = |first| events(first, 10, |i| format!(r#"{{"n": {i}}}"#));
        let bad = events(1020, 10, |i| if i == 1025 { "[".into() } else { "{}".into() });
        let mut flight = FlightClient::new(channel(&server).await);
        let data = FlightDataEncoderBuilder::new()
            .with_flight_descriptor(Some(FlightDescriptor::new_path(vec![EVENTS_TABLE.into()])))
            .build(futures::stream::iter([ok(1000), ok(1010), bad, ok(1030)].map(Ok)));
        let mut results = flight.do_put(data).await.unwrap_or_else(|e| panic!("{e}"));
        let mut acked = Vec::new();
        let error = loop {
            match results.try_next().await {
                Ok(Some(ack)) => acked.push(ack),
                Ok(None) => panic!("the bad batch was accepted"),
                Err(e) => break e.to_string(),
            }
        };
        assert_eq!(acked.len(), 2, "{error}");
        assert!(error.contains("payload"), "{error}");
        assert_eq!(count(&mut client).await, 1020);

        // The announced schema is the schema of the data.
        let info = client
            .execute("SELECT entity_id, payload->>'amount' AS amount FROM events ORDER BY position LIMIT 3".into(), None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let announced = info.clone().try_decode_schema().unwrap_or_else(|e| panic!("{e}"));
        let batches = fetch(&mut client, info).await;
        assert_eq!(batches[0].schema().as_ref(), &announced);
        assert_eq!(batches[0].column(0).as_string::<i32>().value(2), "order-2");

        // A prepared statement with $1.
        let mut prepared = client
            .prepare("SELECT COUNT(*) AS n FROM events WHERE entity_id = $1".into(), None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let params = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("$1", DataType::Utf8, true)])),
            vec![Arc::new(StringArray::from(vec!["order-3"]))],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        prepared.set_parameters(params).unwrap_or_else(|e| panic!("{e}"));
        let info = prepared.execute().await.unwrap_or_else(|e| panic!("{e}"));
        let batches = fetch(&mut client, info).await;
        assert_eq!(batches[0].column(0).as_primitive::<Int64Type>().value(0), 102);

        // The catalog lists the events table with its schema.
        let info = client
            .get_tables(CommandGetTables {
                include_schema: true,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let batches = fetch(&mut client, info).await;
        let names: Vec<String> = batches
            .iter()
            .flat_map(|b| {
                let names = b.column_by_name("table_name").unwrap_or_else(|| panic!("no table_name"));
                let names = names.as_string::<i32>().clone();
                (0..names.len()).map(move |i| names.value(i).to_string())
            })
            .collect();
        assert!(names.contains(&"events".to_string()), "{names:?}");

        // A statement that writes is refused.
        let refused = client.execute("DELETE FROM events".into(), None).await;
        assert!(refused.is_err());
    });
    let (status, log) = server.stop("-TERM");
    assert!(status.success(), "{log}");
}

/// DoPut with `authorization: Bearer <token>`.
async fn put_as(server: &Server, token: &str, batches: Vec<RecordBatch>) -> Result<usize, String> {
    let mut client = FlightClient::new(channel(server).await);
    client
        .add_header("authorization", &format!("Bearer {token}"))
        .map_err(|e| e.to_string())?;
    let data = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(FlightDescriptor::new_path(vec![EVENTS_TABLE.into()])))
        .build(futures::stream::iter(batches.into_iter().map(Ok)));
    let results = client.do_put(data).await.map_err(|e| e.to_string())?;
    let acks: Vec<_> = results.try_collect().await.map_err(|e| e.to_string())?;
    Ok(acks.len())
}

/// The error of running `sql` to the end, if it fails.
async fn failure(client: &mut FlightSqlServiceClient<Channel>, sql: &str) -> Option<tonic::Status> {
    let info = match client.execute(sql.into(), None).await {
        Ok(info) => info,
        Err(e) => return Some(tonic::Status::unknown(e.to_string())),
    };
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket?;
        let mut stream = match client.do_get(ticket).await {
            Ok(stream) => stream,
            Err(e) => return Some(tonic::Status::unknown(e.to_string())),
        };
        loop {
            match stream.try_next().await {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return Some(tonic::Status::unknown(e.to_string())),
            }
        }
    }
    None
}

#[test]
fn tokens_pick_the_tenant_and_query_limits_apply_over_flight() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(
        dir.path(),
        &[],
        &[
            ("ALLSOURCE_FLIGHT_TOKENS", "s3cret=acme"),
            ("ALLSOURCE_QUERY_MEMORY_BYTES", "4194304"),
            ("ALLSOURCE_QUERY_TIMEOUT_MS", "1500"),
        ],
    );
    runtime().block_on(async {
        let batch = events(0, 3000, |i| format!(r#"{{"amount": {i}}}"#));
        assert_eq!(put_as(&server, "s3cret", vec![batch.clone()]).await, Ok(1));
        let refused = put_as(&server, "guess", vec![batch]).await;
        assert!(
            refused.as_ref().is_err_and(|e| e.contains("unknown token")),
            "{refused:?}"
        );

        let mut anonymous = FlightSqlServiceClient::new(channel(&server).await);
        let refused = anonymous.execute("SELECT 1".into(), None).await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.to_string().contains("Bearer")),
            "{refused:?}"
        );

        let mut client = FlightSqlServiceClient::new(channel(&server).await);
        let token = client
            .handshake("user", "s3cret")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&token[..], b"s3cret");
        client.set_token("s3cret".into());
        assert_eq!(
            count(&mut client).await,
            3000,
            "the token's tenant sees its events"
        );

        // A sort of 9M joined rows needs far more than 4 MiB.
        let error = failure(
            &mut client,
            "SELECT a.payload, b.payload FROM events a, events b ORDER BY 1, 2",
        )
        .await
        .unwrap_or_else(|| panic!("the memory limit did not apply"));
        assert!(error.message().contains("memory"), "{error}");
        // 27 billion joined rows cannot be counted in 1.5 s.
        let error = failure(
            &mut client,
            "SELECT COUNT(*) FROM events a, events b, events c",
        )
        .await
        .unwrap_or_else(|| panic!("the time limit did not apply"));
        assert!(error.message().contains("time limit"), "{error}");
        // The server goes on serving.
        assert_eq!(count(&mut client).await, 3000);
    });
    let (status, log) = server.stop("-TERM");
    assert!(status.success(), "{log}");
}

/// `allsource_queries_running` from `/metrics`.
async fn queries_running(server: &Server) -> f64 {
    let page = reqwest::get(server.url("/metrics"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    page.lines()
        .find_map(|l| {
            l.strip_prefix("allsource_queries_running ")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no allsource_queries_running in\n{page}"))
}

#[test]
fn dropping_a_result_stream_cancels_its_query() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(dir.path(), &[], &[]);
    runtime().block_on(async {
        put(
            &server,
            vec![events(0, 5000, |i| format!(r#"{{"n": {i}}}"#))],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let mut client = FlightSqlServiceClient::new(channel(&server).await);
        // 25M rows: far more than a reader that stops after one batch takes.
        let info = client
            .execute(
                "SELECT a.position, b.position FROM events a, events b".into(),
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let ticket = info.endpoint[0]
            .ticket
            .clone()
            .unwrap_or_else(|| panic!("no ticket"));
        let mut stream = client
            .do_get(ticket)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let first = stream.try_next().await.unwrap_or_else(|e| panic!("{e}"));
        assert!(first.is_some_and(|b| b.num_rows() > 0));
        assert_eq!(
            queries_running(&server).await,
            1.0,
            "the query waits for its reader"
        );
        drop(stream);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while queries_running(&server).await > 0.0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the query kept running"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
    let (status, log) = server.stop("-TERM");
    assert!(status.success(), "{log}");
}
