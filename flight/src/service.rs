//! The Flight service as served: the Flight SQL service, plus tail tickets on DoGet.
//!
//! Flight SQL reads every ticket as a protobuf command; a tail ticket is JSON text
//! (it starts with `{`), which no command does, so this layer takes those (tails of
//! events and of pipeline results) and hands
//! every other call to [`SqlService`] unchanged.

use std::pin::Pin;
use std::sync::Arc;

use allsource_operators::Pipelines;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::sql::SqlService;
use crate::tail;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// AllSource's Flight service.
#[derive(Debug, Clone)]
pub struct AllSourceFlight {
    sql: SqlService,
    pipelines: Option<Arc<Pipelines>>,
}

impl AllSourceFlight {
    /// Serve through `sql`.
    pub fn new(sql: SqlService) -> Self {
        Self {
            sql,
            pipelines: None,
        }
    }

    /// Serve the result tails of `pipelines` too.
    pub fn with_pipelines(mut self, pipelines: Arc<Pipelines>) -> Self {
        self.pipelines = Some(pipelines);
        self
    }
}

#[tonic::async_trait]
impl FlightService for AllSourceFlight {
    type HandshakeStream = BoxStream<HandshakeResponse>;
    type ListFlightsStream = BoxStream<FlightInfo>;
    type DoGetStream = BoxStream<FlightData>;
    type DoPutStream = BoxStream<PutResult>;
    type DoExchangeStream = BoxStream<FlightData>;
    type DoActionStream = BoxStream<arrow_flight::Result>;
    type ListActionsStream = BoxStream<ActionType>;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        FlightService::handshake(&self.sql, request).await
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        FlightService::list_flights(&self.sql, request).await
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        FlightService::get_flight_info(&self.sql, request).await
    }

    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        FlightService::poll_flight_info(&self.sql, request).await
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        FlightService::get_schema(&self.sql, request).await
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        match tail::parse_ticket(&request.get_ref().ticket) {
            None => FlightService::do_get(&self.sql, request).await,
            Some(parsed) => {
                let tenant = self.sql.tenant(&request)?;
                match parsed? {
                    tail::Tail::Events(tail_request) => {
                        let events = tail::follow(self.sql.store(), &tenant, tail_request);
                        Ok(Response::new(crate::sql::encode(
                            allsource_engine::event_schema(),
                            events,
                        )))
                    }
                    tail::Tail::Pipeline(results) => {
                        let pipelines = self
                            .pipelines
                            .as_ref()
                            .ok_or_else(|| Status::not_found("this server runs no pipelines"))?;
                        let (schema, rows) = tail::follow_pipeline(pipelines, &tenant, &results)?;
                        Ok(Response::new(crate::sql::encode(schema, rows)))
                    }
                }
            }
        }
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        FlightService::do_put(&self.sql, request).await
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        FlightService::do_exchange(&self.sql, request).await
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        FlightService::do_action(&self.sql, request).await
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        FlightService::list_actions(&self.sql, request).await
    }
}
