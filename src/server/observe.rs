//! What the server tells operators: a request id, one debug line and the latency
//! histogram of every request, and `GET /metrics` in the Prometheus text format.
//!
//! Request figures are recorded as they happen. Store figures (events, WAL, flush,
//! compaction, per partition) are read from [`allsource_engine::StoreStats`] when
//! the page is scraped, so they cost the write path nothing.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::Instrument;

use super::AppState;

/// The header carrying a request's id, taken from the client when it sends one.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Latency buckets in seconds: 50 µs to 10 s.
const LATENCY_BUCKETS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

/// The process's metrics recorder, installed on first use.
fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = || {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new())
        };
        // Only one recorder can be global; a second server in the same process
        // renders a page of store figures without request figures.
        builder()
            .install_recorder()
            .unwrap_or_else(|_| builder().build_recorder().handle())
    })
}

/// Make sure the recorder exists before the first request is counted.
pub(crate) fn install() {
    recorder();
}

/// Give each request an id and a span, log it at debug, count it and time it.
pub(crate) async fn track(request: Request, next: Next) -> Response {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| format!("{:x}", NEXT_ID.fetch_add(1, Ordering::Relaxed)));
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let path = request.uri().path().to_string();
    let span = tracing::info_span!("request", id = %id);
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status();
    span.in_scope(|| {
        tracing::debug!(
            method = %method,
            path = %path,
            status = status.as_u16(),
            micros = elapsed.as_micros() as u64,
            "request"
        );
    });
    let labels = [
        ("method", method.to_string()),
        ("route", route),
        ("status", status.as_u16().to_string()),
    ];
    counter!("allsource_http_requests_total", &labels).increment(1);
    histogram!("allsource_http_request_duration_seconds", &labels[..2])
        .record(elapsed.as_secs_f64());
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// Count an append that the store acknowledged.
pub(crate) fn appended(events: usize, bytes_by_partition: &[(u16, u64)], elapsed_secs: f64) {
    counter!("allsource_appended_events_total").increment(events as u64);
    histogram!("allsource_append_duration_seconds").record(elapsed_secs);
    for (partition, bytes) in bytes_by_partition {
        counter!("allsource_appended_bytes_total", "partition" => partition.to_string())
            .increment(*bytes);
    }
}

/// Time an EventQL query until its first batch is ready.
pub(crate) fn queried(elapsed_secs: f64, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    counter!("allsource_queries_total", "outcome" => outcome).increment(1);
    histogram!("allsource_query_duration_seconds").record(elapsed_secs);
}

/// `GET /metrics`: Prometheus text.
pub(crate) async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let stats = app.store.stats();
    gauge!("allsource_events").set(stats.events as f64);
    gauge!("allsource_streams").set(stats.streams as f64);
    gauge!("allsource_visible_position").set(stats.visible_position as f64);
    gauge!("allsource_uptime_seconds").set(app.started.elapsed().as_secs_f64());
    gauge!("allsource_queries_running").set(app.eventql.running() as f64);
    for p in &stats.partition_stats {
        let label = [("partition", p.partition.to_string())];
        gauge!("allsource_partition_events", &label).set(p.events as f64);
        gauge!("allsource_partition_buffered_events", &label).set(p.buffered_events as f64);
        gauge!("allsource_partition_buffer_bytes", &label).set(p.buffer_bytes as f64);
    }
    let wal = &stats.wal;
    gauge!("allsource_wal_segment_id").set(wal.segment_id as f64);
    gauge!("allsource_wal_segment_bytes").set(wal.segment_bytes as f64);
    counter!("allsource_wal_group_commits_total").absolute(wal.groups);
    counter!("allsource_wal_records_total").absolute(wal.records);
    counter!("allsource_wal_bytes_written_total").absolute(wal.bytes_written);
    counter!("allsource_wal_fsyncs_total").absolute(wal.fsyncs);
    gauge!("allsource_wal_fsync_seconds_total").set(wal.fsync_micros as f64 / 1e6);
    let tier = &stats.tier;
    gauge!("allsource_flushed_position").set(tier.flushed_position as f64);
    gauge!("allsource_table_files").set(tier.files as f64);
    gauge!("allsource_table_file_bytes").set(tier.file_bytes as f64);
    gauge!("allsource_retired_files").set(tier.retired_files as f64);
    gauge!("allsource_flush_failing").set(if tier.last_error.is_some() { 1.0 } else { 0.0 });
    counter!("allsource_flushes_total").absolute(tier.flushes);
    counter!("allsource_flush_files_written_total").absolute(tier.files_written);
    counter!("allsource_flush_bytes_written_total").absolute(tier.bytes_written);
    counter!("allsource_compactions_total").absolute(tier.compactions);
    counter!("allsource_files_compacted_total").absolute(tier.files_compacted);
    if let Some(pipelines) = &app.pipelines {
        pipeline_metrics(pipelines, stats.visible_position);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        recorder().render(),
    )
}

/// Each pipeline's figures, labelled with its name.
fn pipeline_metrics(pipelines: &allsource_operators::Pipelines, head: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    for info in pipelines.list(super::TENANT) {
        let label = [("pipeline", info.spec.name.clone())];
        let running = matches!(info.state, allsource_operators::PipelineState::Running);
        gauge!("allsource_pipeline_running", &label).set(if running { 1.0 } else { 0.0 });
        counter!("allsource_pipeline_events_in_total", &label).absolute(info.stats.events_in);
        counter!("allsource_pipeline_late_events_total", &label).absolute(info.stats.late_events);
        counter!("allsource_pipeline_rows_out_total", &label).absolute(info.stats.rows_out);
        gauge!("allsource_pipeline_open_groups", &label).set(info.stats.open_groups as f64);
        gauge!("allsource_pipeline_lag_events", &label)
            .set(head.saturating_sub(info.position) as f64);
        if let Some(watermark) = info.watermark_micros {
            let seconds = watermark as f64 / 1e6;
            gauge!("allsource_pipeline_watermark_seconds", &label).set(seconds);
            gauge!("allsource_pipeline_watermark_lag_seconds", &label).set(now - seconds);
        }
        if let Some(checkpoint) = info.checkpoint {
            counter!("allsource_pipeline_checkpoints_total", &label).absolute(checkpoint.sequence);
            counter!("allsource_pipeline_checkpoint_failures_total", &label)
                .absolute(checkpoint.failures);
            gauge!("allsource_pipeline_checkpoint_duration_seconds", &label)
                .set(checkpoint.duration_micros as f64 / 1e6);
        }
    }
}
