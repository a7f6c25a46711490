//! The Flight SQL side: statements, prepared statements, catalog metadata and
//! ingest, as [`FlightSqlService`] calls.

use std::pin::Pin;
use std::sync::{Arc, LazyLock};

use allsource_engine::{Checked, EventStore};
use allsource_sql::{CATALOG, EventQl, SCHEMA};
use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementIngest, CommandStatementQuery, DoPutPreparedStatementResult, ProstMessageExt,
    SqlInfo, TableExistsOption, TicketStatementQuery,
};
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage,
    PutResult, SchemaAsIpc, Ticket, flight_descriptor::DescriptorType,
};
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::Auth;
use crate::error::FlightError;
use crate::ingest::{BatchAck, EventBatch, batch_events};
use crate::statement::{Statement, one_row};

/// Batches of one DoPut being made durable at once (see [`SqlService::ingest`]).
const APPENDS_IN_FLIGHT: usize = 4;
/// How many decoded and checked batches of a DoPut may wait to be sequenced.
const BATCHES_AHEAD: usize = 2;

/// The table DoPut and bulk ingest append to.
pub const EVENTS_TABLE: &str = "events";

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The Flight SQL service over one store.
#[derive(Debug, Clone)]
pub struct SqlService {
    store: EventStore,
    eventql: EventQl,
    auth: Auth,
}

/// What the server says of itself to `GetSqlInfo`.
static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let mut info = SqlInfoDataBuilder::new();
    info.append(SqlInfo::FlightSqlServerName, "AllSource");
    info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    info.append(SqlInfo::FlightSqlServerArrowVersion, "59");
    info.append(SqlInfo::FlightSqlServerReadOnly, false);
    info.append(SqlInfo::FlightSqlServerSql, true);
    info.append(SqlInfo::FlightSqlServerSubstrait, false);
    info.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    info.append(SqlInfo::FlightSqlServerCancel, false);
    info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    info.append(SqlInfo::SqlDdlCatalog, false);
    info.append(SqlInfo::SqlDdlSchema, false);
    info.append(SqlInfo::SqlDdlTable, false);
    // Built from constant values of the types the builder accepts: cannot fail.
    info.build()
        .unwrap_or_else(|e| panic!("building the server's SqlInfo: {e}"))
});

impl SqlService {
    /// Serve `store` through `eventql`, authenticating with `auth`.
    pub fn new(store: EventStore, eventql: EventQl, auth: Auth) -> Self {
        Self {
            store,
            eventql,
            auth,
        }
    }

    /// The store served.
    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// The tenant a call acts for.
    pub fn tenant<T>(&self, request: &Request<T>) -> Result<String, Status> {
        Ok(self.auth.tenant(request.metadata())?)
    }

    /// A FlightInfo for a statement: its exact result schema and one ticket.
    async fn statement_info(
        &self,
        tenant: &str,
        statement: &Statement,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, FlightError> {
        let (schema, _) = self.eventql.describe(tenant, &statement.sql).await?;
        let ticket = TicketStatementQuery {
            statement_handle: statement.encode()?,
        };
        Ok(FlightInfo::new()
            .try_with_schema(&schema)?
            .with_endpoint(
                FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec())),
            )
            .with_descriptor(descriptor)
            .with_total_records(-1)
            .with_ordered(true))
    }

    /// Run a statement and stream its batches, the schema first.
    async fn run(
        &self,
        tenant: &str,
        statement: &Statement,
    ) -> Result<BoxStream<arrow_flight::FlightData>, FlightError> {
        let params = statement.param_values()?;
        let stream = self
            .eventql
            .query_stream_with(tenant, &statement.sql, params)
            .await?;
        let schema = Arc::clone(stream.schema());
        let batches = futures::stream::unfold(stream, async |mut stream| {
            stream.next().await.map(|batch| (batch, stream))
        });
        Ok(encode(
            schema,
            batches.map(|b| b.map_err(FlightError::from)),
        ))
    }

    /// A FlightInfo for a metadata command answered by DoGet with the command.
    fn command_info(
        command: &impl ProstMessageExt,
        schema: &Schema,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, FlightError> {
        Ok(FlightInfo::new()
            .try_with_schema(schema)?
            .with_endpoint(
                FlightEndpoint::new().with_ticket(Ticket::new(command.as_any().encode_to_vec())),
            )
            .with_descriptor(descriptor)
            .with_total_records(-1))
    }

    /// Append the batches of a DoPut, one atomic append per batch; each durable
    /// batch's acknowledgement goes to `acks` when given (a slow reader holds up the
    /// next append; a reader that has gone leaves the appends standing). Returns the
    /// number of events appended.
    ///
    /// Batches are pipelined. A reader task decodes each batch and checks its events
    /// (names, JSON, sizes) as soon as it arrives, up to [`BATCHES_AHEAD`] batches
    /// ahead, while this task sequences the checked ones in order and keeps up to
    /// [`APPENDS_IN_FLIGHT`] of them being made durable: decoding, checking, sequencing
    /// and WAL writes overlap, on both cores, and appends share fsyncs.
    /// Acknowledgements still go out in batch order. The first batch that fails stops
    /// the DoPut: the batches before it are acknowledged, nothing of it or after it is
    /// written.
    async fn ingest(
        &self,
        tenant: &str,
        stream: PeekableFlightDataStream,
        acks: Option<&tokio::sync::mpsc::Sender<Result<PutResult, Status>>>,
    ) -> Result<i64, FlightError> {
        let (checked_tx, mut checked) = tokio::sync::mpsc::channel(BATCHES_AHEAD);
        let reader = tokio::spawn(check_batches(
            self.store.clone(),
            tenant.to_string(),
            stream,
            checked_tx,
        ));
        // Stop reading (and checking) when this DoPut ends, whichever way it ends.
        let _reader = AbortOnDrop(reader);
        let mut in_flight = futures::stream::FuturesOrdered::new();
        let mut total = 0i64;
        let mut input_open = true;
        let mut failure = None;
        loop {
            tokio::select! {
                biased;
                Some(appended) = in_flight.next(), if !in_flight.is_empty() => {
                    let result: allsource_engine::AppendResult = appended?;
                    let Some(ack) = BatchAck::of(&result) else { continue };
                    total += ack.count as i64;
                    if let Some(acks) = acks {
                        let message = serde_json::to_vec(&ack).unwrap_or_default();
                        let _ = acks
                            .send(Ok(PutResult {
                                app_metadata: message.into(),
                            }))
                            .await;
                    }
                }
                next = checked.recv(), if input_open && failure.is_none() && in_flight.len() < APPENDS_IN_FLIGHT => {
                    let Some(next) = next else {
                        input_open = false;
                        continue;
                    };
                    if let Err(e) = self.store.wait_for_room().await {
                        failure = Some(e.into());
                        continue;
                    }
                    let submitted = next.and_then(|events: Checked<EventBatch>| {
                        Ok(self.store.submit_checked(&events)?)
                    });
                    match submitted {
                        Ok(pending) => in_flight.push_back(pending.durable()),
                        Err(e) => failure = Some(e),
                    }
                }
                else => break,
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(total),
        }
    }

    /// A plain DoPut to the `events` path: one result message per batch.
    fn put_events(&self, tenant: String, stream: PeekableFlightDataStream) -> BoxStream<PutResult> {
        let service = self.clone();
        let (sender, results) = tokio::sync::mpsc::channel::<Result<PutResult, Status>>(16);
        tokio::spawn(async move {
            let outcome = service.ingest(&tenant, stream, Some(&sender)).await;
            if let Err(e) = outcome {
                let _ = sender.send(Err(Status::from(e))).await;
            }
        });
        Box::pin(tokio_stream::wrappers::ReceiverStream::new(results))
    }
}

/// Decode the batches of a DoPut and check their events, in order, sending each
/// checked batch (or the first failure, after which it stops) to `checked`. Empty
/// batches are skipped.
async fn check_batches(
    store: EventStore,
    tenant: String,
    stream: PeekableFlightDataStream,
    checked: tokio::sync::mpsc::Sender<Result<Checked<EventBatch>, FlightError>>,
) {
    let mut batches = FlightRecordBatchStream::new_from_flight_data(
        stream.map_err(|s| arrow_flight::error::FlightError::Tonic(Box::new(s))),
    );
    while let Some(batch) = batches.next().await {
        let next = batch
            .map_err(|e| FlightError::invalid(format!("reading the batch stream: {e}")))
            .and_then(|batch| {
                if batch.num_rows() == 0 {
                    return Ok(None);
                }
                let events = batch_events(&tenant, &batch)?;
                Ok(Some(store.check(events)?))
            });
        let Some(next) = next.transpose() else {
            continue;
        };
        let failed = next.is_err();
        if checked.send(next).await.is_err() || failed {
            return;
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Encode record batches as Flight data, announcing `schema` first.
pub(crate) fn encode(
    schema: SchemaRef,
    batches: impl Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static,
) -> BoxStream<arrow_flight::FlightData> {
    let batches =
        batches.map_err(|e| arrow_flight::error::FlightError::Tonic(Box::new(Status::from(e))));
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(batches)
        .map_err(Status::from);
    Box::pin(stream)
}

/// One batch as a Flight data stream.
fn encode_one(batch: RecordBatch) -> BoxStream<arrow_flight::FlightData> {
    encode(
        batch.schema(),
        futures::stream::once(async move { Ok(batch) }),
    )
}

/// A schema as the IPC bytes a prepared statement result carries.
fn schema_bytes(schema: &Schema) -> Result<bytes::Bytes, FlightError> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default()).try_into()?;
    Ok(bytes)
}

#[tonic::async_trait]
impl FlightSqlService for SqlService {
    type FlightService = SqlService;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<BoxStream<HandshakeResponse>>, Status> {
        let headers = request.metadata().clone();
        let mut messages = request.into_inner();
        let payload = match messages.next().await {
            Some(message) => message?.payload,
            None => bytes::Bytes::new(),
        };
        let token = self.auth.handshake(&headers, &payload)?;
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        };
        let mut response: Response<BoxStream<HandshakeResponse>> =
            Response::new(Box::pin(futures::stream::once(async move { Ok(reply) })));
        if !token.is_empty() {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| Status::invalid_argument("the token is not a valid header value"))?;
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let tenant = self.tenant(&request)?;
        let statement = Statement::new(query.query);
        let info = self
            .statement_info(&tenant, &statement, request.into_inner())
            .await?;
        Ok(Response::new(info))
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let tenant = self.tenant(&request)?;
        let statement = Statement::decode(&query.prepared_statement_handle)?;
        let info = self
            .statement_info(&tenant, &statement, request.into_inner())
            .await?;
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let tenant = self.tenant(&request)?;
        let statement = Statement::decode(&ticket.statement_handle)?;
        Ok(Response::new(self.run(&tenant, &statement).await?))
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let tenant = self.tenant(&request)?;
        let statement = Statement::decode(&query.prepared_statement_handle)?;
        Ok(Response::new(self.run(&tenant, &statement).await?))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let tenant = self.tenant(&request)?;
        let (dataset, parameters) = self
            .eventql
            .describe(&tenant, &query.query)
            .await
            .map_err(FlightError::from)?;
        let parameter_schema = Schema::new(
            parameters
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    Field::new(
                        format!("${}", i + 1),
                        t.clone().unwrap_or(DataType::Null),
                        true,
                    )
                })
                .collect::<Vec<_>>(),
        );
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: Statement::new(query.query).encode()?,
            dataset_schema: schema_bytes(&dataset)?,
            parameter_schema: schema_bytes(&parameter_schema)?,
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        self.tenant(&request)?;
        let mut statement = Statement::decode(&query.prepared_statement_handle)?;
        let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(
            request
                .into_inner()
                .map_err(|s| arrow_flight::error::FlightError::Tonic(Box::new(s))),
        )
        .try_collect()
        .await
        .map_err(|e| FlightError::invalid(format!("reading the parameters: {e}")))?;
        let rows: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
        statement.params = match rows.as_slice() {
            [] => None,
            [one] => Some(one_row(one.clone())?),
            _ => return Err(FlightError::invalid("a query binds one row of parameters").into()),
        };
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(statement.encode()?),
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        // Handles hold everything; there is nothing to release.
        self.tenant(&request)?;
        Ok(())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.tenant(&request)?;
        let schema = query.into_builder().schema();
        Ok(Response::new(Self::command_info(
            &query,
            &schema,
            request.into_inner(),
        )?))
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.tenant(&request)?;
        let mut builder = query.into_builder();
        builder.append(CATALOG);
        Ok(Response::new(encode_one(
            builder.build().map_err(FlightError::from)?,
        )))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.tenant(&request)?;
        let schema = query.clone().into_builder().schema();
        Ok(Response::new(Self::command_info(
            &query,
            &schema,
            request.into_inner(),
        )?))
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.tenant(&request)?;
        let mut builder = query.into_builder();
        builder.append(CATALOG, SCHEMA);
        Ok(Response::new(encode_one(
            builder.build().map_err(FlightError::from)?,
        )))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.tenant(&request)?;
        let schema = query.clone().into_builder().schema();
        Ok(Response::new(Self::command_info(
            &query,
            &schema,
            request.into_inner(),
        )?))
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let tenant = self.tenant(&request)?;
        let tables = self
            .eventql
            .tables(&tenant)
            .await
            .map_err(FlightError::from)?;
        let mut builder = query.into_builder();
        for (name, schema) in tables {
            builder
                .append(CATALOG, SCHEMA, &name, table_type(&name), &schema)
                .map_err(FlightError::from)?;
        }
        Ok(Response::new(encode_one(
            builder.build().map_err(FlightError::from)?,
        )))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.tenant(&request)?;
        let schema = query.into_builder().schema();
        Ok(Response::new(Self::command_info(
            &query,
            &schema,
            request.into_inner(),
        )?))
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.tenant(&request)?;
        let mut builder = query.into_builder();
        for kind in TABLE_TYPES {
            builder.append(kind);
        }
        Ok(Response::new(encode_one(
            builder.build().map_err(FlightError::from)?,
        )))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.tenant(&request)?;
        let schema = query.clone().into_builder(&SQL_INFO).schema();
        Ok(Response::new(Self::command_info(
            &query,
            &schema,
            request.into_inner(),
        )?))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.tenant(&request)?;
        let batch = query
            .into_builder(&SQL_INFO)
            .build()
            .map_err(FlightError::from)?;
        Ok(Response::new(encode_one(batch)))
    }

    async fn do_put_statement_ingest(
        &self,
        command: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let tenant = self.tenant(&request)?;
        check_ingest_target(&command)?;
        Ok(self.ingest(&tenant, request.into_inner(), None).await?)
    }

    async fn do_put_fallback(
        &self,
        mut request: Request<PeekableFlightDataStream>,
        _message: Any,
    ) -> Result<Response<<Self as FlightService>::DoPutStream>, Status> {
        let tenant = self.tenant(&request)?;
        let descriptor = match request.get_mut().peek().await {
            Some(Ok(first)) => first.flight_descriptor.clone(),
            _ => None,
        };
        let is_events_path = descriptor
            .is_some_and(|d| d.r#type == DescriptorType::Path as i32 && d.path == [EVENTS_TABLE]);
        if !is_events_path {
            return Err(FlightError::unsupported(
                "DoPut takes the path descriptor [\"events\"] or a Flight SQL ingest command",
            )
            .into());
        }
        Ok(Response::new(self.put_events(tenant, request.into_inner())))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// The table types `GetTableTypes` lists, and which table has which.
const TABLE_TYPES: [&str; 3] = ["TABLE", "VIEW", "SYSTEM TABLE"];

fn table_type(name: &str) -> &'static str {
    match name {
        EVENTS_TABLE => "TABLE",
        "streams" => "VIEW",
        _ => "SYSTEM TABLE",
    }
}

/// Bulk ingest appends to `events` and nothing else.
fn check_ingest_target(command: &CommandStatementIngest) -> Result<(), FlightError> {
    if command.table != EVENTS_TABLE {
        return Err(FlightError::invalid(format!(
            "ingest appends to the table `events`, not `{}`",
            command.table
        )));
    }
    if command.catalog.as_deref().is_some_and(|c| c != CATALOG)
        || command.schema.as_deref().is_some_and(|s| s != SCHEMA)
    {
        return Err(FlightError::invalid(format!(
            "the events table is {CATALOG}.{SCHEMA}.events"
        )));
    }
    if command.temporary || command.transaction_id.is_some() {
        return Err(FlightError::invalid(
            "ingest into a temporary table or within a transaction is not supported",
        ));
    }
    if let Some(options) = command.table_definition_options {
        let exists = TableExistsOption::try_from(options.if_exists)
            .unwrap_or(TableExistsOption::Unspecified);
        if matches!(exists, TableExistsOption::Fail | TableExistsOption::Replace) {
            return Err(FlightError::invalid(
                "the events table exists and is append-only: ingest with mode=\"append\"",
            ));
        }
    }
    Ok(())
}
