//! Replays: a pipeline or projection computed again in the background, from a log
//! position or an ingestion time, then put in place of the running one.
//!
//! ```text
//!  POST /replay ─► Pending ─► Running: a fresh copy of the definition reads the log
//!                    │          from the start point to the head as it was when
//!                    │          the replay began (progress: events/s, percent)
//!                    │             │ caught up
//!                    │             ▼
//!                    │        checkpoint written under a new id, definition saved
//!                    │        with that id and the start point, the copy takes
//!                    │        over from the running one ─► Completed
//!                    └─ cancel ─► Cancelled (the running one is untouched)
//! ```
//!
//! The running pipeline keeps serving its table until the replayed copy takes over.
//! A replay that starts from a point after the beginning of the log computes the
//! results of the events from that point on only: the definition remembers the
//! point, so a restart without a checkpoint recomputes the same results. Replays are
//! kept in memory: a replay under way when the server stops is lost, and the running
//! pipeline stays as it was.

use std::sync::Arc;
use std::time::{Duration, Instant};

use allsource_engine::{
    Error as StoreError, EventStore, RecordedEvent, SubscriptionFilter, event_schema,
    events_to_batch,
};
use arrow::array::RecordBatch;
use parking_lot::Mutex;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::pipeline::Pipeline;

/// Where a replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFrom {
    /// At this log position.
    Position(u64),
    /// At the first event ingested at or after this time (microseconds since the
    /// epoch), and every event after it in the log.
    IngestedAt(i64),
}

/// Where a replay is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayStatus {
    /// Accepted, not started.
    Pending,
    /// Reading the log.
    Running,
    /// Caught up and put in place of the running pipeline.
    Completed,
    /// Stopped by an error, which it names.
    Failed,
    /// Stopped on request; the running pipeline is unchanged.
    Cancelled,
}

impl ReplayStatus {
    /// Whether the replay has ended.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// A replay and its progress.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayInfo {
    /// Its id.
    pub id: String,
    /// The pipeline or projection it computes again.
    pub name: String,
    /// Where it is.
    pub status: ReplayStatus,
    /// What stopped it, when it failed.
    pub error: Option<String>,
    /// The log position it started from (for a start by time: once found).
    pub from_position: Option<u64>,
    /// The log's head when it began: it has caught up once it reaches it.
    pub to_position: u64,
    /// The log position it has read up to.
    pub position: u64,
    /// Events it has computed over.
    pub events: u64,
    /// Events per second since it started.
    pub events_per_second: f64,
    /// How much of the log between its start point and `to_position` it has read.
    pub percent: f64,
    /// When it began, microseconds since the epoch.
    pub started_at_micros: i64,
    /// When it ended.
    pub finished_at_micros: Option<i64>,
}

/// A replay as the registry keeps it.
pub(crate) struct Replay {
    pub(crate) tenant: String,
    pub(crate) info: Arc<Mutex<ReplayInfo>>,
    pub(crate) cancel: tokio::sync::watch::Sender<bool>,
    pub(crate) task: Option<tokio::task::JoinHandle<()>>,
}

/// What a replay computed, ready to take over.
pub(crate) struct Replayed {
    pub(crate) pipeline: Pipeline,
    /// Every event before it is reflected.
    pub(crate) position: u64,
    /// The start point.
    pub(crate) from_position: u64,
    /// The results emitted (none for totals, whose table is their state).
    pub(crate) results: Vec<RecordBatch>,
    pub(crate) late: Vec<RecordBatch>,
}

/// How a replay reads.
pub(crate) struct Plan {
    pub(crate) tenant: String,
    pub(crate) from: ReplayFrom,
    /// The most events per batch fed to the pipeline.
    pub(crate) batch_size: usize,
    /// Whether progress is logged (every second).
    pub(crate) log_progress: bool,
}

/// Feed `pipeline` (freshly compiled) the log from `plan.from` up to the head as it
/// is now, keeping `info` up to date; `None` when cancelled.
pub(crate) async fn compute(
    store: &EventStore,
    mut pipeline: Pipeline,
    plan: &Plan,
    info: &Mutex<ReplayInfo>,
    cancel: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<Option<Replayed>> {
    let target = store.head_position();
    let scan_from = match plan.from {
        ReplayFrom::Position(p) => p,
        ReplayFrom::IngestedAt(_) => 0,
    };
    let mut from_position = match plan.from {
        ReplayFrom::Position(p) => Some(p),
        ReplayFrom::IngestedAt(_) => None,
    };
    {
        let mut info = info.lock();
        info.status = ReplayStatus::Running;
        info.to_position = target;
        info.position = scan_from;
        info.from_position = from_position;
    }
    let schema = event_schema();
    let started = Instant::now();
    let mut logged = Instant::now();
    let mut subscription = store.subscribe(&plan.tenant, scan_from, SubscriptionFilter::all());
    let (mut results, mut late) = (Vec::new(), Vec::new());
    let mut events_in = 0u64;
    while subscription.position() < target {
        if *cancel.borrow() {
            return Ok(None);
        }
        let next = tokio::select! {
            biased;
            _ = cancel.changed() => continue,
            next = tokio::time::timeout(Duration::from_millis(200), subscription.next_batch()) => next,
        };
        let mut events: Vec<RecordedEvent> = match next {
            // Nothing new: the tenant has no events between here and the target.
            Err(_) => continue,
            Ok(Ok(events)) => events,
            Ok(Err(StoreError::Closed)) => {
                return Err(Error::Conflict("the store closed during the replay".into()));
            }
            Ok(Err(e)) => return Err(Error::Internal(format!("reading the log: {e}"))),
        };
        if let ReplayFrom::IngestedAt(time) = plan.from
            && from_position.is_none()
        {
            let first = events.iter().position(|e| e.ingested_at_micros >= time);
            match first {
                Some(first) => {
                    from_position = Some(events[first].position);
                    events.drain(..first);
                }
                None => events.clear(),
            }
        }
        for chunk in events.chunks(plan.batch_size.max(1)) {
            let refs: Vec<_> = chunk.iter().collect();
            let batch = events_to_batch(&schema, &refs)
                .map_err(|e| Error::Internal(format!("building a batch: {e}")))?;
            let out = pipeline.process(&batch).await?;
            if !pipeline.is_running() {
                results.extend(out);
            }
            late.extend(pipeline.take_late_events());
            events_in += chunk.len() as u64;
        }
        let position = subscription.position();
        let mut info = info.lock();
        info.position = position;
        info.from_position = from_position;
        info.events = events_in;
        info.events_per_second = events_in as f64 / started.elapsed().as_secs_f64().max(1e-6);
        let span = target.saturating_sub(scan_from).max(1);
        info.percent = (position.saturating_sub(scan_from) as f64 / span as f64 * 100.0).min(100.0);
        if plan.log_progress && logged.elapsed() >= Duration::from_secs(1) {
            logged = Instant::now();
            tracing::info!(
                replay = info.id,
                name = info.name,
                percent = format!("{:.1}", info.percent),
                events_per_second = info.events_per_second as u64,
                "replaying"
            );
        }
    }
    let position = subscription.position();
    {
        let mut info = info.lock();
        info.position = position;
        info.percent = 100.0;
    }
    Ok(Some(Replayed {
        pipeline,
        position,
        // Started by time with no event since: it starts at the head.
        from_position: from_position.unwrap_or(position),
        results,
        late,
    }))
}

/// Microseconds since the epoch, now.
pub(crate) fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}
