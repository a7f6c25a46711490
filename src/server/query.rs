//! `POST /api/v1/query` `{"sql": "<EventQL>"}`: the result as JSON (default), an
//! Arrow IPC stream (`Accept: application/vnd.apache.arrow.stream`) or CSV
//! (`Accept: text/csv`), streamed batch by batch as the query computes it.
//!
//! Errors found before the first batch (syntax, planning, the first batch failing)
//! get a proper error status; a failure later can only cut the body short.

use std::time::Instant;

use allsource_sql::{QueryError, QueryStream};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::observe;
use super::{AppState, TENANT, body_json};

/// The body of `POST /query`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryIn {
    sql: String,
}

/// How the result is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Arrow,
    Csv,
}

const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

impl Format {
    fn from_accept(headers: &HeaderMap) -> Self {
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if accept.contains(ARROW_STREAM) {
            Format::Arrow
        } else if accept.contains("text/csv") {
            Format::Csv
        } else {
            Format::Json
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Arrow => ARROW_STREAM,
            Format::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// Run the query and stream its result.
pub(crate) async fn run(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|_| ApiError::body_too_large(app.max_body_bytes))?;
    let request: QueryIn = body_json(&body)?;
    let format = Format::from_accept(&headers);
    if let Some(statement) = allsource_operators::ddl::parse(&request.sql)? {
        let pipelines = super::pipelines::of(&app)?;
        let batch = pipelines.execute(TENANT, statement).await?;
        let mut writer = ResultWriter::new(format, &batch.schema())?;
        let mut body = writer.start(Some(&batch))?.to_vec();
        body.extend_from_slice(&writer.finish()?);
        let mut response = Body::from(body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        );
        return Ok(response);
    }
    let started = Instant::now();
    let first = first_batch(&app, &request.sql).await;
    observe::queried(started.elapsed().as_secs_f64(), first.is_ok());
    let (stream, first) = first?;
    let mut writer = ResultWriter::new(format, stream.schema())?;
    let head = writer.start(first.as_ref())?;
    let chunks = futures::stream::unfold(
        (Some(stream), writer, Some(head)),
        |(stream, mut writer, head)| async move {
            if let Some(head) = head {
                return Some((Ok(head), (stream, writer, None)));
            }
            let mut stream = stream?;
            match stream.next().await {
                Some(Ok(batch)) => match writer.batch(&batch) {
                    Ok(bytes) => Some((Ok(bytes), (Some(stream), writer, None))),
                    Err(e) => Some((Err(e), (None, writer, None))),
                },
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "a query failed while its result was streaming");
                    Some((
                        Err(std::io::Error::other(e.to_string())),
                        (None, writer, None),
                    ))
                }
                None => match writer.finish() {
                    Ok(bytes) => Some((Ok(bytes), (None, writer, None))),
                    Err(e) => Some((Err(e), (None, writer, None))),
                },
            }
        },
    );
    let mut response = Body::from_stream(chunks).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    Ok(response)
}

/// Plan the query and run it to its first batch: the first batch decides the
/// status, since most failures happen before it.
async fn first_batch(
    app: &AppState,
    sql: &str,
) -> Result<(QueryStream, Option<RecordBatch>), ApiError> {
    let mut stream = app.eventql.query_stream(TENANT, sql).await?;
    let first = stream.next().await.transpose()?;
    Ok((stream, first))
}

impl From<std::io::Error> for ApiError {
    fn from(err: std::io::Error) -> Self {
        ApiError::internal(format!("writing the result: {err}"))
    }
}

impl From<arrow::error::ArrowError> for ApiError {
    fn from(err: arrow::error::ArrowError) -> Self {
        ApiError::from(QueryError::Plan(format!("writing the result: {err}")))
    }
}

/// Writes a result in one format, chunk by chunk.
enum ResultWriter {
    Json {
        columns: serde_json::Value,
        rows: usize,
        first: bool,
    },
    Arrow(Box<arrow::ipc::writer::StreamWriter<Vec<u8>>>),
    Csv {
        header: bool,
    },
}

impl ResultWriter {
    fn new(format: Format, schema: &SchemaRef) -> Result<Self, ApiError> {
        Ok(match format {
            Format::Json => ResultWriter::Json {
                columns: schema
                    .fields()
                    .iter()
                    .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
                    .collect(),
                rows: 0,
                first: true,
            },
            Format::Arrow => ResultWriter::Arrow(Box::new(
                arrow::ipc::writer::StreamWriter::try_new(Vec::new(), schema)?,
            )),
            Format::Csv => ResultWriter::Csv { header: true },
        })
    }

    /// The opening bytes, with the first batch if there is one.
    fn start(&mut self, first: Option<&RecordBatch>) -> Result<Bytes, ApiError> {
        let mut out = Vec::new();
        if let ResultWriter::Json { columns, .. } = self {
            out.extend_from_slice(b"{\"columns\":");
            out.extend_from_slice(columns.to_string().as_bytes());
            out.extend_from_slice(b",\"rows\":[");
        }
        if let Some(batch) = first {
            out.extend_from_slice(&self.batch(batch)?);
        }
        Ok(Bytes::from(out))
    }

    fn batch(&mut self, batch: &RecordBatch) -> std::io::Result<Bytes> {
        let to_io = |e: arrow::error::ArrowError| std::io::Error::other(e.to_string());
        match self {
            ResultWriter::Json { rows, first, .. } => {
                let mut lines = arrow::json::LineDelimitedWriter::new(Vec::new());
                lines.write(batch).map_err(to_io)?;
                lines.finish().map_err(to_io)?;
                let lines = lines.into_inner();
                // One JSON object per line; objects never contain a raw newline.
                let mut out = Vec::with_capacity(lines.len() + 1);
                for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    if !*first {
                        out.push(b',');
                    }
                    *first = false;
                    out.extend_from_slice(line);
                }
                *rows += batch.num_rows();
                Ok(Bytes::from(out))
            }
            ResultWriter::Arrow(writer) => {
                writer.write(batch).map_err(to_io)?;
                Ok(Bytes::from(std::mem::take(writer.get_mut())))
            }
            ResultWriter::Csv { header } => {
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(*header)
                    .build(Vec::new());
                *header = false;
                writer.write(batch).map_err(to_io)?;
                Ok(Bytes::from(writer.into_inner()))
            }
        }
    }

    fn finish(&mut self) -> std::io::Result<Bytes> {
        let to_io = |e: arrow::error::ArrowError| std::io::Error::other(e.to_string());
        match self {
            ResultWriter::Json { rows, .. } => Ok(Bytes::from(format!("],\"row_count\":{rows}}}"))),
            ResultWriter::Arrow(writer) => {
                writer.finish().map_err(to_io)?;
                Ok(Bytes::from(std::mem::take(writer.get_mut())))
            }
            ResultWriter::Csv { .. } => Ok(Bytes::new()),
        }
    }
}
