//! A client of a running `allsource serve`, for the commands that work through it
//! (`query`, `import`, `export`): the store belongs to the server process, so these
//! never open the data directory themselves.

use std::io::BufReader;
use std::time::Duration;

use anyhow::{Context, bail};
use arrow::ipc::reader::StreamReader;
use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};

/// The media type of an Arrow IPC stream.
const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// A server at a base URL such as `http://127.0.0.1:8080`.
#[derive(Debug, Clone)]
pub struct Remote {
    base: String,
    client: Client,
}

/// A query result as it arrives: Arrow record batches read from the response body.
pub type ResultStream = StreamReader<BufReader<Response>>;

impl Remote {
    /// A client of the server at `base`.
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let client = Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // Results stream for as long as the query runs.
            .timeout(None)
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            client,
        })
    }

    /// Run an EventQL query; the result streams as Arrow batches.
    pub fn query(&self, sql: &str) -> anyhow::Result<ResultStream> {
        let response = self.post("/api/v1/query", &json!({"sql": sql}), Some(ARROW_STREAM))?;
        StreamReader::try_new(BufReader::new(response), None)
            .context("reading the result as an Arrow IPC stream")
    }

    /// Append `events` as one atomic batch.
    pub fn append(&self, events: &[Value]) -> anyhow::Result<()> {
        self.post("/api/v1/events", &json!({"events": events}), None)?;
        Ok(())
    }

    fn post(&self, path: &str, body: &Value, accept: Option<&str>) -> anyhow::Result<Response> {
        let url = format!("{}{path}", self.base);
        let mut request = self.client.post(&url).json(body);
        if let Some(accept) = accept {
            request = request.header(reqwest::header::ACCEPT, accept);
        }
        let response = request.send().map_err(|e| {
            if e.is_connect() {
                anyhow::anyhow!(
                    "no server answers at {} (start one with `allsource serve`, or pass --server)",
                    self.base
                )
            } else {
                anyhow::Error::new(e).context(format!("POST {url}"))
            }
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().unwrap_or_default();
        match serde_json::from_str::<Value>(&text) {
            Ok(body) if body["error"]["code"].is_string() => {
                let error = &body["error"];
                let details = match &error["details"] {
                    Value::Null => String::new(),
                    details => format!(" {details}"),
                };
                bail!(
                    "the server refused ({status}, {}): {}{details}",
                    error["code"].as_str().unwrap_or_default(),
                    error["message"].as_str().unwrap_or_default()
                )
            }
            _ => bail!("the server answered {status}: {text}"),
        }
    }
}
