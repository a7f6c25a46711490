//! `Pipelines`: the store's pipelines — their definitions, kept in the table storage,
//! and one task per pipeline running it over the log.
//!
//! Each task subscribes to its tenant's events (catch-up, then live, with no gap or
//! duplicate at the seam: the subscription's guarantee) and feeds them to its
//! [`Pipeline`] in log order. Results are kept in memory, read as a table named after
//! the pipeline, and made durable by periodic [checkpoints](crate::checkpoint) of the
//! pipeline's state, results and log position. A definition is checked (compiled)
//! before it is stored, and stored before its task starts; on open every stored
//! pipeline resumes from its last checkpoint (from position 0 when it has none, or
//! when the checkpoint cannot be read: a pipeline's output depends on the log alone,
//! so computing it again gives the same results).

use std::collections::BTreeMap;
use std::sync::Arc;

use allsource_engine::{
    Error as StoreError, EventStore, SubscriptionFilter, event_schema, events_to_batch,
};
use allsource_sql::{EventQl, ExtraTables, TABLES};
use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoints, Manifest, Rows, Update};
use crate::ddl::Statement;
use crate::error::{Error, Result};
use crate::pipeline::{Pipeline, PipelineOptions, PipelineStats};

/// Where the definitions are kept in the table storage.
const DEFINITIONS: &str = "pipelines/definitions.json";

/// A pipeline as defined by its user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineSpec {
    /// Names its checkpoints; given on creation, unique to each pipeline created.
    #[serde(default)]
    pub id: String,
    /// The tenant whose events it reads.
    pub tenant: String,
    /// Its name, also the name of its results table.
    pub name: String,
    /// Its query.
    pub sql: String,
    /// How it treats event time.
    #[serde(default)]
    pub options: PipelineOptions,
}

/// What a pipeline is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PipelineState {
    /// Reading the log.
    Running,
    /// Stopped by an error, which it names.
    Failed {
        /// What went wrong.
        error: String,
    },
    /// Stopped because the store closed.
    Stopped,
}

/// A pipeline's definition, state and progress.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineInfo {
    /// Its definition.
    pub spec: PipelineSpec,
    /// What it is doing.
    pub state: PipelineState,
    /// Its counters.
    pub stats: PipelineStats,
    /// Its watermark, microseconds since the epoch.
    pub watermark_micros: Option<i64>,
    /// The log position it has read up to.
    pub position: u64,
    /// Its last checkpoint, if it has written or resumed from one.
    pub checkpoint: Option<CheckpointInfo>,
}

/// A pipeline's last checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CheckpointInfo {
    /// Counts the pipeline's checkpoints, from 1.
    pub sequence: u64,
    /// Every event before this log position is reflected in it.
    pub position: u64,
    /// How long writing it took, in microseconds (0 when resumed from it).
    pub duration_micros: u64,
    /// Checkpoints that failed to write since the pipeline started.
    pub failures: u64,
    /// The position the pipeline resumed from when it started.
    pub resumed_from: u64,
}

/// The running side of one pipeline, shared with its task.
#[derive(Debug)]
struct Running {
    schema: SchemaRef,
    results: Mutex<Vec<RecordBatch>>,
    /// Late events, when the pipeline keeps them (`late_data = 'table'`).
    late: Mutex<Vec<RecordBatch>>,
    progress: Mutex<Progress>,
}

#[derive(Debug)]
struct Progress {
    state: PipelineState,
    stats: PipelineStats,
    watermark: Option<i64>,
    position: u64,
    checkpoint: Option<CheckpointInfo>,
}

struct Entry {
    spec: PipelineSpec,
    running: Arc<Running>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Entry {
    /// A pipeline that could not start, with no results.
    fn failed(spec: PipelineSpec, error: &Error) -> Self {
        let running = Running::new(Arc::new(Schema::empty()));
        running.progress.lock().state = PipelineState::Failed {
            error: error.to_string(),
        };
        Self {
            spec,
            running: Arc::new(running),
            task: None,
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Running {
    fn new(schema: SchemaRef) -> Self {
        Self {
            schema,
            results: Mutex::new(Vec::new()),
            late: Mutex::new(Vec::new()),
            progress: Mutex::new(Progress {
                state: PipelineState::Running,
                stats: PipelineStats::default(),
                watermark: None,
                position: 0,
                checkpoint: None,
            }),
        }
    }
}

/// The store's pipelines.
pub struct Pipelines {
    store: EventStore,
    eventql: EventQl,
    entries: Mutex<BTreeMap<(String, String), Entry>>,
    /// Serialises changes to the stored definitions.
    changes: tokio::sync::Mutex<()>,
    /// Set to stop every pipeline after a last checkpoint ([`Pipelines::stop`]).
    stopping: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for Pipelines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipelines")
            .field("count", &self.entries.lock().len())
            .finish_non_exhaustive()
    }
}

impl Pipelines {
    /// The pipelines stored with `store`, each started again. `eventql` plans them.
    pub async fn open(store: EventStore, eventql: EventQl) -> Result<Arc<Self>> {
        let pipelines = Arc::new(Self {
            store,
            eventql,
            entries: Mutex::new(BTreeMap::new()),
            changes: tokio::sync::Mutex::new(()),
            stopping: tokio::sync::watch::Sender::new(false),
        });
        for spec in pipelines.load().await? {
            let key = (spec.tenant.clone(), spec.name.clone());
            // A stored pipeline that no longer compiles is listed as failed; the
            // others start and the store keeps serving.
            let entry = match pipelines.start(spec.clone()).await {
                Ok(entry) => entry,
                Err(e) => {
                    tracing::error!(pipeline = spec.name, error = %e, "a stored pipeline failed to start");
                    Entry::failed(spec, &e)
                }
            };
            pipelines.entries.lock().insert(key, entry);
        }
        Ok(pipelines)
    }

    /// Check, store and start a new pipeline.
    pub async fn create(&self, mut spec: PipelineSpec) -> Result<PipelineInfo> {
        check_name(&spec.name)?;
        if spec.options.checkpoint_interval_micros < 0 {
            return Err(Error::Invalid(
                "checkpoint_interval cannot be negative".into(),
            ));
        }
        spec.id = uuid::Uuid::now_v7().to_string();
        let _change = self.changes.lock().await;
        let key = (spec.tenant.clone(), spec.name.clone());
        if self.entries.lock().contains_key(&key) {
            return Err(Error::Exists(spec.name));
        }
        let entry = self.start(spec).await?;
        let mut specs = self.specs();
        specs.push(entry.spec.clone());
        self.save(&specs).await?;
        let info = info(&entry);
        self.entries.lock().insert(key, entry);
        Ok(info)
    }

    /// Stop and forget a pipeline, and its results.
    pub async fn drop_pipeline(&self, tenant: &str, name: &str) -> Result<()> {
        let _change = self.changes.lock().await;
        let key = (tenant.to_string(), name.to_string());
        if !self.entries.lock().contains_key(&key) {
            return Err(Error::NotFound(name.to_string()));
        }
        let specs: Vec<PipelineSpec> = self
            .specs()
            .into_iter()
            .filter(|s| (s.tenant.as_str(), s.name.as_str()) != (tenant, name))
            .collect();
        self.save(&specs).await?;
        let removed = self.entries.lock().remove(&key);
        if let Some(entry) = removed {
            let checkpoints = Checkpoints::new(self.store.table_storage(), &entry.spec.id());
            drop(entry);
            if let Err(e) = checkpoints.remove().await {
                tracing::warn!(pipeline = name, error = %e, "removing a dropped pipeline's checkpoints");
            }
        }
        Ok(())
    }

    /// Stop every pipeline, each after writing a checkpoint of what it processed
    /// since its last one, so that the next open resumes exactly there. Waits for
    /// them (at most 30 s).
    pub async fn stop(&self) {
        self.stopping.send_replace(true);
        let tasks: Vec<_> = self
            .entries
            .lock()
            .values_mut()
            .filter_map(|e| e.task.take())
            .collect();
        let all = futures::future::join_all(tasks);
        if tokio::time::timeout(std::time::Duration::from_secs(30), all)
            .await
            .is_err()
        {
            tracing::warn!("pipelines did not stop within 30 s");
        }
    }

    /// Start a pipeline again from the beginning of the log: its checkpoints and
    /// results are discarded and computed again.
    pub async fn reset(&self, tenant: &str, name: &str) -> Result<PipelineInfo> {
        let _change = self.changes.lock().await;
        let key = (tenant.to_string(), name.to_string());
        let spec = match self.entries.lock().get(&key) {
            Some(entry) => entry.spec.clone(),
            None => return Err(Error::NotFound(name.to_string())),
        };
        // Stop the task before its checkpoints go, so that it writes no more.
        let old = self.entries.lock().remove(&key);
        if let Some(mut entry) = old
            && let Some(task) = entry.task.take()
        {
            task.abort();
            let _ = task.await;
        }
        // A new id: a write the old task had under way cannot land among the new
        // pipeline's checkpoints.
        let old_checkpoints = Checkpoints::new(self.store.table_storage(), &spec.id());
        let spec = PipelineSpec {
            id: uuid::Uuid::now_v7().to_string(),
            ..spec
        };
        let mut specs = self.specs();
        specs.push(spec.clone());
        if let Err(e) = self.save(&specs).await {
            let entry = Entry::failed(spec, &e);
            self.entries.lock().insert(key, entry);
            return Err(e);
        }
        if let Err(e) = old_checkpoints.remove().await {
            tracing::warn!(pipeline = name, error = %e, "removing a reset pipeline's checkpoints");
        }
        let entry = self
            .start(spec.clone())
            .await
            .unwrap_or_else(|e| Entry::failed(spec, &e));
        let info = info(&entry);
        self.entries.lock().insert(key, entry);
        Ok(info)
    }

    /// How many pipelines there are, of every tenant.
    pub fn count(&self) -> usize {
        self.entries.lock().len()
    }

    /// The tenant's pipelines, by name.
    pub fn list(&self, tenant: &str) -> Vec<PipelineInfo> {
        self.entries
            .lock()
            .values()
            .filter(|e| e.spec.tenant == tenant)
            .map(info)
            .collect()
    }

    /// One pipeline of the tenant.
    pub fn get(&self, tenant: &str, name: &str) -> Option<PipelineInfo> {
        let key = (tenant.to_string(), name.to_string());
        self.entries.lock().get(&key).map(info)
    }

    /// The results so far of one pipeline of the tenant.
    pub fn results(&self, tenant: &str, name: &str) -> Option<(SchemaRef, Vec<RecordBatch>)> {
        let key = (tenant.to_string(), name.to_string());
        let entries = self.entries.lock();
        let running = &entries.get(&key)?.running;
        let batches = running.results.lock().clone();
        Some((Arc::clone(&running.schema), batches))
    }

    /// Run a pipeline statement for `tenant`; its outcome as a small table.
    pub async fn execute(&self, tenant: &str, statement: Statement) -> Result<RecordBatch> {
        let outcome = |name: &str, status: &str| {
            let schema = Schema::new(vec![
                Field::new("pipeline", DataType::Utf8, false),
                Field::new("status", DataType::Utf8, false),
            ]);
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from(vec![name])),
                Arc::new(StringArray::from(vec![status])),
            ];
            Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
        };
        match statement {
            Statement::Create { name, options, sql } => {
                let spec = PipelineSpec {
                    id: String::new(),
                    tenant: tenant.to_string(),
                    name,
                    sql,
                    options,
                };
                let info = self.create(spec).await?;
                outcome(&info.spec.name, "created")
            }
            Statement::Drop { name, if_exists } => match self.drop_pipeline(tenant, &name).await {
                Ok(()) => outcome(&name, "dropped"),
                Err(Error::NotFound(_)) if if_exists => outcome(&name, "not found"),
                Err(e) => Err(e),
            },
            Statement::Show => show(&self.list(tenant)),
        }
    }

    fn specs(&self) -> Vec<PipelineSpec> {
        self.entries
            .lock()
            .values()
            .map(|e| e.spec.clone())
            .collect()
    }

    async fn load(&self) -> Result<Vec<PipelineSpec>> {
        let storage = self.store.table_storage();
        match storage.get(&Path::from(DEFINITIONS)).await {
            Ok(found) => {
                let bytes = found.bytes().await.map_err(storage_error)?;
                serde_json::from_slice(&bytes)
                    .map_err(|e| Error::Internal(format!("reading {DEFINITIONS}: {e}")))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(storage_error(e)),
        }
    }

    async fn save(&self, specs: &[PipelineSpec]) -> Result<()> {
        let json = serde_json::to_vec_pretty(specs)
            .map_err(|e| Error::Internal(format!("encoding {DEFINITIONS}: {e}")))?;
        self.store
            .table_storage()
            .put(&Path::from(DEFINITIONS), PutPayload::from(json))
            .await
            .map_err(storage_error)?;
        Ok(())
    }

    /// Compile `spec`, bring it to its last checkpoint, and start its task.
    async fn start(&self, spec: PipelineSpec) -> Result<Entry> {
        let mut pipeline =
            Pipeline::compile(&self.eventql, &spec.tenant, &spec.sql, spec.options).await?;
        let running = Arc::new(Running::new(pipeline.schema()));
        let checkpoints = Checkpoints::new(self.store.table_storage(), &spec.id());
        let restored = match checkpoints
            .load(&running.schema, &late_events_source_schema())
            .await
        {
            Ok(restored) => restored,
            Err(e) => {
                tracing::warn!(pipeline = spec.name, error = %e, "a checkpoint could not be read; the pipeline starts from the beginning of the log");
                None
            }
        };
        let mut manifest = None;
        if let Some(restored) = restored {
            match pipeline.restore(&restored.snapshot) {
                Ok(()) => {
                    *running.results.lock() = if pipeline.is_running() {
                        pipeline.current().await?
                    } else {
                        restored.results
                    };
                    *running.late.lock() = restored.late;
                    let mut progress = running.progress.lock();
                    progress.stats = pipeline.stats();
                    progress.watermark = pipeline.watermark();
                    progress.position = restored.manifest.position;
                    progress.checkpoint = Some(CheckpointInfo {
                        sequence: restored.manifest.sequence,
                        position: restored.manifest.position,
                        duration_micros: 0,
                        failures: 0,
                        resumed_from: restored.manifest.position,
                    });
                    manifest = Some(restored.manifest);
                }
                Err(e) => {
                    tracing::warn!(pipeline = spec.name, error = %e, "a checkpoint does not fit the pipeline; it starts from the beginning of the log");
                    pipeline =
                        Pipeline::compile(&self.eventql, &spec.tenant, &spec.sql, spec.options)
                            .await?;
                }
            }
        }
        let task = tokio::spawn(run(
            self.store.clone(),
            spec.clone(),
            pipeline,
            Arc::clone(&running),
            checkpoints,
            manifest,
            self.stopping.subscribe(),
        ));
        Ok(Entry {
            spec,
            running,
            task: Some(task),
        })
    }
}

impl PipelineSpec {
    /// The name of the pipeline's checkpoints: its id, or for a definition stored
    /// without one, its tenant and name.
    pub fn id(&self) -> String {
        if self.id.is_empty() {
            format!("{}.{}", self.tenant, self.name)
        } else {
            self.id.clone()
        }
    }
}

impl ExtraTables for Pipelines {
    /// Each pipeline's results, by its name, and `late_events`: the late events of
    /// the pipelines that keep them, with the pipeline's name first.
    fn tables(&self, tenant: &str) -> Vec<(String, Arc<dyn TableProvider>)> {
        let entries = self.entries.lock();
        let mut tables: Vec<(String, Arc<dyn TableProvider>)> = entries
            .values()
            .filter(|e| e.spec.tenant == tenant)
            .filter_map(|e| {
                let batches = e.running.results.lock().clone();
                let table = MemTable::try_new(Arc::clone(&e.running.schema), vec![batches]).ok()?;
                Some((
                    e.spec.name.clone(),
                    Arc::new(table) as Arc<dyn TableProvider>,
                ))
            })
            .collect();
        let schema = late_events_schema();
        let late: Vec<RecordBatch> = entries
            .values()
            .filter(|e| e.spec.tenant == tenant)
            .flat_map(|e| {
                let name = e.spec.name.as_str();
                let batches = e.running.late.lock().clone();
                batches
                    .into_iter()
                    .filter_map(|b| with_pipeline_column(&schema, name, &b).ok())
                    .collect::<Vec<_>>()
            })
            .collect();
        if let Ok(table) = MemTable::try_new(schema, vec![late]) {
            tables.push((LATE_EVENTS.to_string(), Arc::new(table)));
        }
        tables
    }
}

/// The table of late events kept by pipelines.
pub const LATE_EVENTS: &str = "late_events";

fn late_events_schema() -> SchemaRef {
    let mut fields = vec![Arc::new(Field::new("pipeline", DataType::Utf8, false))];
    fields.extend(event_schema().fields().iter().cloned());
    Arc::new(Schema::new(fields))
}

fn with_pipeline_column(
    schema: &SchemaRef,
    name: &str,
    events: &RecordBatch,
) -> Result<RecordBatch> {
    let names: ArrayRef = Arc::new(StringArray::from(vec![name; events.num_rows()]));
    let mut columns = vec![names];
    columns.extend(events.columns().iter().cloned());
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// The columns of late events as a pipeline keeps them (the `late_events` table
/// without its `pipeline` column).
fn late_events_source_schema() -> SchemaRef {
    event_schema()
}

/// A running pipeline's checkpointing: what the last checkpoint holds and what was
/// emitted since.
struct Checkpointer {
    checkpoints: Checkpoints,
    manifest: Option<Manifest>,
    interval: std::time::Duration,
    last: std::time::Instant,
    results: Vec<RecordBatch>,
    late: Vec<RecordBatch>,
    /// Input processed since the last checkpoint.
    dirty: bool,
    failures: u64,
}

impl Checkpointer {
    /// How long until the next checkpoint is due; `None` when nothing changed.
    fn due_in(&self) -> Option<std::time::Duration> {
        self.dirty
            .then(|| self.interval.saturating_sub(self.last.elapsed()))
    }

    /// Write a checkpoint of `pipeline` at `position`. A failure is logged and
    /// counted; the pipeline goes on and the next checkpoint tries again.
    async fn write(&mut self, pipeline: &mut Pipeline, position: u64, running: &Running) {
        let started = std::time::Instant::now();
        self.last = started;
        let outcome = async {
            let snapshot = pipeline.snapshot()?;
            let compact = self
                .manifest
                .as_ref()
                .is_some_and(Checkpoints::wants_compaction);
            let (all_results, all_late);
            let (results, late) = if compact {
                all_results = running.results.lock().clone();
                all_late = running.late.lock().clone();
                (Rows::All(&all_results), Rows::All(&all_late))
            } else {
                (Rows::Since(&self.results), Rows::Since(&self.late))
            };
            let update = Update {
                position,
                snapshot: &snapshot,
                results,
                late,
            };
            self.checkpoints.write(self.manifest.as_ref(), update).await
        }
        .await;
        match outcome {
            Ok(manifest) => {
                self.results.clear();
                self.late.clear();
                self.dirty = false;
                let mut progress = running.progress.lock();
                let resumed_from = progress.checkpoint.map_or(0, |c| c.resumed_from);
                progress.checkpoint = Some(CheckpointInfo {
                    sequence: manifest.sequence,
                    position: manifest.position,
                    duration_micros: started.elapsed().as_micros() as u64,
                    failures: self.failures,
                    resumed_from,
                });
                self.manifest = Some(manifest);
            }
            Err(e) => {
                self.failures += 1;
                tracing::warn!(error = %e, "a pipeline checkpoint failed; retrying at the next one");
                if let Some(checkpoint) = running.progress.lock().checkpoint.as_mut() {
                    checkpoint.failures = self.failures;
                }
            }
        }
    }
}

/// The next events of `subscription`, or `None` once `wait` (when given) passes
/// without any.
async fn next_within(
    subscription: &mut allsource_engine::Subscription,
    wait: Option<std::time::Duration>,
) -> Option<std::result::Result<Vec<allsource_engine::RecordedEvent>, StoreError>> {
    match wait {
        None => Some(subscription.next_batch().await),
        Some(wait) => tokio::time::timeout(wait, subscription.next_batch())
            .await
            .ok(),
    }
}

/// Feed the tenant's log to `pipeline` from the position of its last checkpoint
/// (`manifest`) until the store closes, the pipelines stop (`stopping`) or the
/// pipeline fails, writing checkpoints every `checkpoint_interval` while there is
/// new input, and one when it stops.
async fn run(
    store: EventStore,
    spec: PipelineSpec,
    mut pipeline: Pipeline,
    running: Arc<Running>,
    checkpoints: Checkpoints,
    manifest: Option<Manifest>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let schema = event_schema();
    let from = manifest.as_ref().map_or(0, |m| m.position);
    let mut subscription = store.subscribe(&spec.tenant, from, SubscriptionFilter::all());
    let interval_micros = spec.options.checkpoint_interval_micros.max(0) as u64;
    let mut checkpointer = Checkpointer {
        checkpoints,
        manifest,
        interval: std::time::Duration::from_micros(interval_micros),
        last: std::time::Instant::now(),
        results: Vec::new(),
        late: Vec::new(),
        dirty: false,
        failures: 0,
    };
    let outcome: Result<()> = async {
        loop {
            let wait = checkpointer.due_in();
            let next = tokio::select! {
                biased;
                () = async {
                    // Also once the sender is gone: then nothing is left to run for.
                    let _ = stopping.wait_for(|stop| *stop).await;
                } => {
                    if checkpointer.dirty {
                        let position = subscription.position();
                        checkpointer.write(&mut pipeline, position, &running).await;
                    }
                    return Ok(());
                }
                next = next_within(&mut subscription, wait) => next,
            };
            let Some(next) = next else {
                // Quiet for a checkpoint interval: write what is pending.
                let position = subscription.position();
                checkpointer.write(&mut pipeline, position, &running).await;
                continue;
            };
            let events = match next {
                Ok(events) => events,
                Err(StoreError::Closed) => {
                    if checkpointer.dirty {
                        let position = subscription.position();
                        checkpointer.write(&mut pipeline, position, &running).await;
                    }
                    return Ok(());
                }
                Err(e) => return Err(Error::Internal(format!("reading the log: {e}"))),
            };
            let refs: Vec<_> = events.iter().collect();
            let batch = events_to_batch(&schema, &refs)
                .map_err(|e| Error::Internal(format!("building a batch: {e}")))?;
            let out = pipeline.process(&batch).await?;
            if pipeline.is_running() {
                // Totals per key: the table is their current rows, rebuilt from the
                // checkpointed state after a restart.
                let table = pipeline.current().await?;
                *running.results.lock() = table;
            } else {
                checkpointer.results.extend(out.iter().cloned());
                running.results.lock().extend(out);
            }
            let late = pipeline.take_late_events();
            if !late.is_empty() {
                checkpointer.late.extend(late.iter().cloned());
                running.late.lock().extend(late);
            }
            checkpointer.dirty = true;
            {
                let mut progress = running.progress.lock();
                progress.stats = pipeline.stats();
                progress.watermark = pipeline.watermark();
                progress.position = subscription.position();
            }
            if checkpointer.due_in().is_some_and(|d| d.is_zero()) {
                let position = subscription.position();
                checkpointer.write(&mut pipeline, position, &running).await;
            }
        }
    }
    .await;
    let mut progress = running.progress.lock();
    progress.state = match outcome {
        Ok(()) => PipelineState::Stopped,
        Err(e) => {
            tracing::error!(tenant = spec.tenant, pipeline = spec.name, error = %e, "pipeline stopped");
            PipelineState::Failed {
                error: e.to_string(),
            }
        }
    };
}

fn info(entry: &Entry) -> PipelineInfo {
    let progress = entry.running.progress.lock();
    PipelineInfo {
        spec: entry.spec.clone(),
        state: progress.state.clone(),
        stats: progress.stats,
        watermark_micros: progress.watermark,
        position: progress.position,
        checkpoint: progress.checkpoint,
    }
}

/// A pipeline's name is also its table's: a lowercase identifier, not one of the
/// store's tables.
fn check_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let identifier = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63;
    if !identifier {
        return Err(Error::Invalid(format!(
            "a pipeline's name is a lowercase identifier (letters, digits, _; at most 63), \
             not {name:?}"
        )));
    }
    if name == "stats" {
        return Err(Error::Invalid(
            "stats is reserved (GET /api/v1/pipelines/stats)".into(),
        ));
    }
    if TABLES.contains(&name) || name == LATE_EVENTS {
        return Err(Error::Invalid(format!(
            "{name} is one of the store's tables"
        )));
    }
    Ok(())
}

fn storage_error(e: object_store::Error) -> Error {
    Error::Storage(e.to_string())
}

/// `SHOW PIPELINES`: one row per pipeline.
fn show(pipelines: &[PipelineInfo]) -> Result<RecordBatch> {
    let timestamp = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let schema = Schema::new(vec![
        Field::new("pipeline", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, true),
        Field::new("watermark", timestamp, true),
        Field::new("position", DataType::UInt64, false),
        Field::new("events_in", DataType::UInt64, false),
        Field::new("late_events", DataType::UInt64, false),
        Field::new("rows_out", DataType::UInt64, false),
        Field::new("sql", DataType::Utf8, false),
    ]);
    let texts = |f: fn(&PipelineInfo) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from(
            pipelines.iter().map(f).collect::<Vec<_>>(),
        ))
    };
    let counts = |f: fn(&PipelineInfo) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from(
            pipelines.iter().map(f).collect::<Vec<_>>(),
        ))
    };
    let columns = vec![
        texts(|p| Some(p.spec.name.clone())),
        texts(|p| {
            Some(match &p.state {
                PipelineState::Running => "running".to_string(),
                PipelineState::Failed { .. } => "failed".to_string(),
                PipelineState::Stopped => "stopped".to_string(),
            })
        }),
        texts(|p| match &p.state {
            PipelineState::Failed { error } => Some(error.clone()),
            _ => None,
        }),
        Arc::new(
            TimestampMicrosecondArray::from(
                pipelines
                    .iter()
                    .map(|p| p.watermark_micros)
                    .collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        ),
        counts(|p| p.position),
        counts(|p| p.stats.events_in),
        counts(|p| p.stats.late_events),
        counts(|p| p.stats.rows_out),
        texts(|p| Some(p.spec.sql.clone())),
    ];
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}
