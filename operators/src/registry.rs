//! `Pipelines`: the store's pipelines — their definitions, kept in the table storage,
//! and one task per pipeline running it over the log.
//!
//! Each task reads its tenant's events from a [`LogSourceExec`] (catch-up, then
//! live, with no gap or duplicate at the seam) and feeds them to its [`Pipeline`] in
//! log order. Results are kept in memory, read as a table named after
//! the pipeline, and made durable by periodic [checkpoints](crate::checkpoint) of the
//! pipeline's state, results and log position. A definition is checked (compiled)
//! before it is stored, and stored before its task starts; on open every stored
//! pipeline resumes from its last checkpoint (from position 0 when it has none, or
//! when the checkpoint cannot be read: a pipeline's output depends on the log alone,
//! so computing it again gives the same results).

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use allsource_engine::{EventStore, event_schema};
use allsource_sql::{EventQl, ExtraTables, TABLES};
use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::branch::Branches;
use crate::checkpoint::{Checkpoints, Manifest, Rows, Update};
use crate::ddl::Statement;
use crate::error::{Error, Result};
use crate::feed::{FeedTable, RowSource};
use crate::pipeline::{Pipeline, PipelineOptions, PipelineStats};
use crate::projection;
use crate::replay::{self, Replay, Replayed};
pub use crate::replay::{ReplayFrom, ReplayInfo, ReplayStatus};
use crate::source::LogSourceExec;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use futures::StreamExt;

/// Where the definitions are kept in the table storage.
const DEFINITIONS: &str = "pipelines/definitions.json";

/// What a definition is: a pipeline, or a projection (totals per key, read one key at
/// a time: [`crate::projection`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A continuous query.
    #[default]
    Pipeline,
    /// Totals per key, read by key.
    Projection,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Pipeline => "pipeline",
            Kind::Projection => "projection",
        })
    }
}

/// A pipeline as defined by its user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// A pipeline or a projection.
    #[serde(default)]
    pub kind: Kind,
    /// The log position it reads from when it has no checkpoint: 0, or where a
    /// replay started it ([`Pipelines::replay`]).
    #[serde(default)]
    pub from_position: u64,
    /// Stored but not running: its table holds what its last checkpoint holds, and
    /// enabling it resumes from there ([`Pipelines::set_enabled`]).
    #[serde(default)]
    pub disabled: bool,
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
    /// Disabled by its user.
    Disabled,
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
    /// New result rows as they are emitted (for a running pipeline: the rows that
    /// changed), for subscribers.
    updates: tokio::sync::broadcast::Sender<RecordBatch>,
}

/// How many result batches a subscriber may fall behind before it is told so.
const UPDATES_BACKLOG: usize = 1024;

/// What readers ask of a pipeline's task.
enum Request {
    /// The current row of one key of a projection.
    Lookup {
        key: String,
        reply: tokio::sync::oneshot::Sender<Result<Option<RecordBatch>>>,
    },
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
    /// Its branches, compiled ([`crate::branch`]).
    branches: Arc<Branches>,
    /// The pipeline tables its query reads: they cannot be dropped before it.
    reads: Vec<String>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Requests to the task.
    requests: Option<tokio::sync::mpsc::Sender<Request>>,
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
            branches: Arc::new(Branches::default()),
            reads: Vec::new(),
            task: None,
            requests: None,
        }
    }
}

impl Entry {
    /// The names of the tables it fills: its own and its branches'.
    fn tables(&self) -> impl Iterator<Item = String> + '_ {
        std::iter::once(self.spec.name.clone()).chain(
            self.branches
                .names()
                .iter()
                .map(|b| branch_table(&self.spec.name, b)),
        )
    }
}

/// The table of the branch `branch` of the pipeline `pipeline`.
fn branch_table(pipeline: &str, branch: &str) -> String {
    format!("{pipeline}_{branch}")
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
            updates: tokio::sync::broadcast::Sender::new(UPDATES_BACKLOG),
        }
    }
}

/// The store's pipelines.
pub struct Pipelines {
    /// Itself, for the tables it hands out, which read its entries when scanned.
    me: Weak<Pipelines>,
    store: EventStore,
    eventql: EventQl,
    entries: Mutex<BTreeMap<(String, String), Entry>>,
    /// Serialises changes to the stored definitions.
    changes: tokio::sync::Mutex<()>,
    /// Set to stop every pipeline after a last checkpoint ([`Pipelines::stop`]).
    stopping: tokio::sync::watch::Sender<bool>,
    /// Replays under way and done, by id.
    replays: Mutex<BTreeMap<String, Replay>>,
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
        let pipelines = Arc::new_cyclic(|me: &Weak<Self>| Self {
            me: Weak::clone(me),
            store,
            // Pipelines read each other's tables.
            eventql: eventql.with_extra_tables(Arc::new(Tables(Weak::clone(me)))),
            entries: Mutex::new(BTreeMap::new()),
            changes: tokio::sync::Mutex::new(()),
            stopping: tokio::sync::watch::Sender::new(false),
            replays: Mutex::new(BTreeMap::new()),
        });
        // A pipeline reading another's table starts after it: those that fail are
        // tried again while any other starts.
        let mut pending = pipelines.load().await?;
        loop {
            let mut failed = Vec::new();
            let before = pending.len();
            for spec in pending {
                match pipelines.start(spec.clone()).await {
                    Ok(entry) => {
                        let key = (spec.tenant.clone(), spec.name.clone());
                        pipelines.entries.lock().insert(key, entry);
                    }
                    Err(e) => failed.push((spec, e)),
                }
            }
            if failed.is_empty() {
                break;
            }
            if failed.len() == before {
                // A stored pipeline that no longer compiles is listed as failed; the
                // others run and the store keeps serving.
                for (spec, e) in failed {
                    tracing::error!(pipeline = spec.name, error = %e, "a stored pipeline failed to start");
                    let key = (spec.tenant.clone(), spec.name.clone());
                    pipelines
                        .entries
                        .lock()
                        .insert(key, Entry::failed(spec, &e));
                }
                break;
            }
            pending = failed.into_iter().map(|(spec, _)| spec).collect();
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
        for branch in &spec.options.branches {
            check_name(&branch_table(&spec.name, &branch.name))?;
        }
        let _change = self.changes.lock().await;
        let key = (spec.tenant.clone(), spec.name.clone());
        if let Some(existing) = self.entries.lock().get(&key) {
            return Err(Error::Exists {
                kind: existing.spec.kind,
                name: spec.name,
            });
        }
        // Its tables and the existing ones are all different.
        let wanted: Vec<String> = std::iter::once(spec.name.clone())
            .chain(
                spec.options
                    .branches
                    .iter()
                    .map(|b| branch_table(&spec.name, &b.name)),
            )
            .collect();
        for existing in self.entries.lock().values() {
            if existing.spec.tenant != spec.tenant {
                continue;
            }
            if let Some(clash) = existing.tables().find(|t| wanted.contains(t)) {
                return Err(Error::Conflict(format!(
                    "a table named {clash} exists already: the {} {} fills it",
                    existing.spec.kind, existing.spec.name
                )));
            }
        }
        let entry = self.start(spec).await?;
        let mut specs = self.specs();
        specs.push(entry.spec.clone());
        self.save(&specs).await?;
        let info = info(&entry);
        self.entries.lock().insert(key, entry);
        Ok(info)
    }

    /// Stop and forget a pipeline (or projection: `kind`), and its results.
    pub async fn drop_pipeline(&self, tenant: &str, kind: Kind, name: &str) -> Result<()> {
        let _change = self.changes.lock().await;
        let key = (tenant.to_string(), name.to_string());
        match self.entries.lock().get(&key).map(|e| e.spec.kind) {
            None => {
                return Err(Error::NotFound {
                    kind,
                    name: name.to_string(),
                });
            }
            Some(found) if found != kind => {
                return Err(Error::Invalid(format!(
                    "{name} is a {found}: DROP {} {name}",
                    found.to_string().to_uppercase()
                )));
            }
            Some(_) => {}
        }
        {
            let entries = self.entries.lock();
            let dropped: Vec<String> = entries
                .get(&key)
                .map(|e| e.tables().collect())
                .unwrap_or_default();
            if let Some(reader) = entries.values().find(|e| {
                e.spec.tenant == tenant
                    && e.spec.name != name
                    && e.reads.iter().any(|t| dropped.contains(t))
            }) {
                return Err(Error::Conflict(format!(
                    "the {} {} reads the results of {name}: drop it first",
                    reader.spec.kind, reader.spec.name
                )));
            }
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
            None => {
                return Err(Error::NotFound {
                    kind: Kind::Pipeline,
                    name: name.to_string(),
                });
            }
        };
        // Stop the task before its checkpoints go, so that it writes no more.
        self.stop_task(&key).await;
        // A new id: a write the old task had under way cannot land among the new
        // pipeline's checkpoints.
        let old_checkpoints = Checkpoints::new(self.store.table_storage(), &spec.id());
        let spec = PipelineSpec {
            id: uuid::Uuid::now_v7().to_string(),
            from_position: 0,
            ..spec
        };
        let mut specs = self.specs_but(&key);
        specs.push(spec.clone());
        if let Err(e) = self.save(&specs).await {
            let entry = Entry::failed(spec, &e);
            self.entries.lock().insert(key, entry);
            return Err(e);
        }
        if let Err(e) = old_checkpoints.remove().await {
            tracing::warn!(pipeline = name, error = %e, "removing a reset pipeline's checkpoints");
        }
        Ok(self.replace_entry(key, spec).await)
    }

    /// Enable or disable the pipeline (or projection) `name` of `tenant`. Disabling
    /// stops its task; its table keeps what its last checkpoint holds. Enabling
    /// starts it again from that checkpoint.
    pub async fn set_enabled(
        &self,
        tenant: &str,
        name: &str,
        enabled: bool,
    ) -> Result<PipelineInfo> {
        let _change = self.changes.lock().await;
        let key = (tenant.to_string(), name.to_string());
        let spec = match self.entries.lock().get(&key) {
            Some(entry) if entry.spec.disabled != enabled => return Ok(info(entry)),
            Some(entry) => entry.spec.clone(),
            None => {
                return Err(Error::NotFound {
                    kind: Kind::Pipeline,
                    name: name.to_string(),
                });
            }
        };
        let spec = PipelineSpec {
            disabled: !enabled,
            ..spec
        };
        let mut specs = self.specs_but(&key);
        specs.push(spec.clone());
        self.save(&specs).await?;
        // Its checkpoint is consistent whenever the task stops: a stop mid-write
        // leaves the previous manifest in force.
        self.stop_task(&key).await;
        Ok(self.replace_entry(key, spec).await)
    }

    /// Stop the task of the entry `key`, leaving the entry and its table in place
    /// until it is replaced: pipelines that read its table go on reading it.
    async fn stop_task(&self, key: &(String, String)) {
        let task = self
            .entries
            .lock()
            .get_mut(key)
            .and_then(|entry| entry.task.take());
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Start `spec` in place of the entry `key` (listed as failed if it cannot
    /// start).
    async fn replace_entry(&self, key: (String, String), spec: PipelineSpec) -> PipelineInfo {
        let entry = self
            .start(spec.clone())
            .await
            .unwrap_or_else(|e| Entry::failed(spec, &e));
        let info = info(&entry);
        self.entries.lock().insert(key, entry);
        info
    }

    /// The stored definitions, but the one of `key`.
    fn specs_but(&self, key: &(String, String)) -> Vec<PipelineSpec> {
        self.specs()
            .into_iter()
            .filter(|s| (&s.tenant, &s.name) != (&key.0, &key.1))
            .collect()
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

    /// The current row of `key` in the projection `name` of `tenant`, and the
    /// projection's schema; `None` for a key it has no row for.
    pub async fn lookup(
        &self,
        tenant: &str,
        name: &str,
        key: &str,
    ) -> Result<(SchemaRef, Option<RecordBatch>)> {
        let not_found = || Error::NotFound {
            kind: Kind::Projection,
            name: name.to_string(),
        };
        let (schema, requests, state) = {
            let entries = self.entries.lock();
            let entry = entries
                .get(&(tenant.to_string(), name.to_string()))
                .filter(|e| e.spec.kind == Kind::Projection)
                .ok_or_else(not_found)?;
            let state = entry.running.progress.lock().state.clone();
            (
                Arc::clone(&entry.running.schema),
                entry.requests.clone(),
                state,
            )
        };
        let stopped = || {
            let why = match &state {
                PipelineState::Failed { error } => format!("it failed: {error}"),
                PipelineState::Disabled => "it is disabled".to_string(),
                _ => "it has stopped".to_string(),
            };
            Error::Conflict(format!("the projection {name} cannot be read: {why}"))
        };
        let Some(requests) = requests else {
            return Err(stopped());
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let request = Request::Lookup {
            key: key.to_string(),
            reply,
        };
        if requests.send(request).await.is_err() {
            return Err(stopped());
        }
        let row = answer.await.map_err(|_| stopped())??;
        Ok((schema, row))
    }

    /// The result rows of the pipeline (or projection) `name` of `tenant` from now on,
    /// as they are emitted (for totals: the rows that changed), and their schema. A
    /// receiver that falls more than 1024 batches behind is told it lagged.
    pub fn updates(&self, tenant: &str, name: &str) -> Option<(SchemaRef, Updates)> {
        let entries = self.entries.lock();
        let (entry, branch) = find_table(&entries, tenant, name)?;
        let running = &entry.running;
        let updates = Updates {
            receiver: running.updates.subscribe(),
            branch: branch.map(|b| (Arc::clone(&entry.branches), b)),
        };
        Some((Arc::clone(&running.schema), updates))
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
            Statement::Create {
                kind,
                name,
                options,
                sql,
            } => {
                let spec = PipelineSpec {
                    tenant: tenant.to_string(),
                    name,
                    sql,
                    options,
                    kind,
                    ..PipelineSpec::default()
                };
                let info = self.create(spec).await?;
                outcome(&info.spec.name, "created")
            }
            Statement::Drop {
                kind,
                name,
                if_exists,
            } => match self.drop_pipeline(tenant, kind, &name).await {
                Ok(()) => outcome(&name, "dropped"),
                Err(Error::NotFound { .. }) if if_exists => outcome(&name, "not found"),
                Err(e) => Err(e),
            },
            Statement::Alter {
                kind,
                name,
                enabled,
            } => {
                if self.get(tenant, &name).map(|p| p.spec.kind) != Some(kind) {
                    return Err(Error::NotFound { kind, name });
                }
                let info = self.set_enabled(tenant, &name, enabled).await?;
                outcome(
                    &info.spec.name,
                    if enabled { "enabled" } else { "disabled" },
                )
            }
            Statement::Show(kind) => {
                let mut listed = self.list(tenant);
                listed.retain(|p| p.spec.kind == kind);
                show(&listed)
            }
        }
    }

    /// Compute the pipeline (or projection) `name` of `tenant` again in the
    /// background from `from`, feeding it `batch_size` events at a time, and put the
    /// result in place of the running one ([`crate::replay`]). One replay per
    /// pipeline at a time.
    pub fn replay(
        self: &Arc<Self>,
        tenant: &str,
        name: &str,
        from: ReplayFrom,
        batch_size: usize,
        log_progress: bool,
    ) -> Result<ReplayInfo> {
        let spec = self
            .entries
            .lock()
            .get(&(tenant.to_string(), name.to_string()))
            .map(|e| e.spec.clone())
            .ok_or_else(|| Error::NotFound {
                kind: Kind::Projection,
                name: name.to_string(),
            })?;
        if batch_size == 0 {
            return Err(Error::Invalid("a replay's batch_size is at least 1".into()));
        }
        let mut replays = self.replays.lock();
        if let Some(under_way) = replays.values().find(|r| {
            r.tenant == tenant && {
                let info = r.info.lock();
                info.name == name && !info.status.is_finished()
            }
        }) {
            return Err(Error::Conflict(format!(
                "a replay of {name} is under way already ({})",
                under_way.info.lock().id
            )));
        }
        let id = uuid::Uuid::now_v7().to_string();
        let info = Arc::new(Mutex::new(ReplayInfo {
            id: id.clone(),
            name: name.to_string(),
            status: ReplayStatus::Pending,
            error: None,
            from_position: None,
            to_position: 0,
            position: 0,
            events: 0,
            events_per_second: 0.0,
            percent: 0.0,
            started_at_micros: replay::now_micros(),
            finished_at_micros: None,
        }));
        let (cancel, cancelled) = tokio::sync::watch::channel(false);
        let plan = replay::Plan {
            tenant: tenant.to_string(),
            from,
            batch_size,
            log_progress,
        };
        let task =
            tokio::spawn(Arc::clone(self).run_replay(spec, plan, Arc::clone(&info), cancelled));
        let snapshot = info.lock().clone();
        replays.insert(
            id,
            Replay {
                tenant: tenant.to_string(),
                info,
                cancel,
                task: Some(task),
            },
        );
        Ok(snapshot)
    }

    async fn run_replay(
        self: Arc<Self>,
        spec: PipelineSpec,
        plan: replay::Plan,
        info: Arc<Mutex<ReplayInfo>>,
        mut cancelled: tokio::sync::watch::Receiver<bool>,
    ) {
        let outcome: Result<ReplayStatus> = async {
            let pipeline =
                Pipeline::compile(&self.eventql, &spec.tenant, &spec.sql, spec.options.clone())
                    .await?;
            let Some(replayed) =
                replay::compute(&self.store, pipeline, &plan, &info, &mut cancelled).await?
            else {
                return Ok(ReplayStatus::Cancelled);
            };
            self.take_over(&spec, replayed).await?;
            Ok(ReplayStatus::Completed)
        }
        .await;
        let mut info = info.lock();
        info.finished_at_micros = Some(replay::now_micros());
        match outcome {
            Ok(status) => info.status = status,
            Err(e) => {
                tracing::warn!(replay = info.id, name = spec.name, error = %e, "a replay failed");
                info.status = ReplayStatus::Failed;
                info.error = Some(e.to_string());
            }
        }
    }

    /// Put a replayed copy of `spec` in its place: a checkpoint of the copy under a
    /// new id, the definition saved with that id, then the copy started from it.
    async fn take_over(&self, spec: &PipelineSpec, replayed: Replayed) -> Result<()> {
        let _change = self.changes.lock().await;
        let key = (spec.tenant.clone(), spec.name.clone());
        let current = self.entries.lock().get(&key).map(|e| e.spec.id.clone());
        if current.as_deref() != Some(spec.id.as_str()) {
            return Err(Error::Conflict(format!(
                "{} was dropped, reset or replayed while this replay ran",
                spec.name
            )));
        }
        let replacement = PipelineSpec {
            id: uuid::Uuid::now_v7().to_string(),
            from_position: replayed.from_position,
            ..spec.clone()
        };
        let Replayed {
            mut pipeline,
            position,
            results,
            late,
            ..
        } = replayed;
        let snapshot = pipeline.snapshot()?;
        let checkpoints = Checkpoints::new(self.store.table_storage(), &replacement.id());
        let update = Update {
            position,
            snapshot: &snapshot,
            results: Rows::All(&results),
            late: Rows::All(&late),
        };
        checkpoints.write(None, update).await?;
        let mut specs = self.specs_but(&key);
        specs.push(replacement.clone());
        if let Err(e) = self.save(&specs).await {
            let _ = checkpoints.remove().await;
            return Err(e);
        }
        let old_id = self.entries.lock().get(&key).map(|e| e.spec.id());
        if let Some(old_id) = old_id {
            self.stop_task(&key).await;
            let old_checkpoints = Checkpoints::new(self.store.table_storage(), &old_id);
            if let Err(e) = old_checkpoints.remove().await {
                tracing::warn!(pipeline = spec.name, error = %e, "removing a replaced pipeline's checkpoints");
            }
        }
        self.replace_entry(key, replacement).await;
        Ok(())
    }

    /// The tenant's replays, oldest first.
    pub fn replays(&self, tenant: &str) -> Vec<ReplayInfo> {
        self.replays
            .lock()
            .values()
            .filter(|r| r.tenant == tenant)
            .map(|r| r.info.lock().clone())
            .collect()
    }

    /// One replay of the tenant.
    pub fn replay_info(&self, tenant: &str, id: &str) -> Option<ReplayInfo> {
        let replays = self.replays.lock();
        let replay = replays.get(id).filter(|r| r.tenant == tenant)?;
        Some(replay.info.lock().clone())
    }

    /// Cancel a replay (a finished one is left as it is) and wait for it to stop
    /// (at most 10 s); its state then.
    pub async fn cancel_replay(&self, tenant: &str, id: &str) -> Option<ReplayInfo> {
        let task = {
            let mut replays = self.replays.lock();
            let replay = replays.get_mut(id).filter(|r| r.tenant == tenant)?;
            replay.cancel.send_replace(true);
            replay.task.take()
        };
        if let Some(task) = task
            && tokio::time::timeout(std::time::Duration::from_secs(10), task)
                .await
                .is_err()
        {
            tracing::warn!(replay = id, "a cancelled replay did not stop within 10 s");
        }
        self.replay_info(tenant, id)
    }

    /// Cancel a replay if it runs, and forget it.
    pub async fn delete_replay(&self, tenant: &str, id: &str) -> Option<ReplayInfo> {
        let info = self.cancel_replay(tenant, id).await?;
        self.replays.lock().remove(id);
        Some(info)
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
            Pipeline::compile(&self.eventql, &spec.tenant, &spec.sql, spec.options.clone()).await?;
        if spec.kind == Kind::Projection {
            projection::check(&pipeline)?;
        }
        let mut branches = Vec::new();
        for branch in &spec.options.branches {
            let condition = self
                .eventql
                .predicate(&spec.tenant, &branch.when, &pipeline.schema())
                .await
                .map_err(|e| {
                    Error::Invalid(format!("the condition of branch {}: {e}", branch.name))
                })?;
            branches.push((branch.name.clone(), condition));
        }
        let branches = Arc::new(Branches::new(branches));
        let reads = pipeline.reads();
        let running = Arc::new(Running::new(pipeline.schema()));
        running.progress.lock().position = spec.from_position;
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
                    pipeline = Pipeline::compile(
                        &self.eventql,
                        &spec.tenant,
                        &spec.sql,
                        spec.options.clone(),
                    )
                    .await?;
                }
            }
        }
        if spec.disabled {
            running.progress.lock().state = PipelineState::Disabled;
            return Ok(Entry {
                spec,
                running,
                branches,
                reads,
                task: None,
                requests: None,
            });
        }
        let (requests, requested) = tokio::sync::mpsc::channel(64);
        let task = tokio::spawn(run(
            self.store.clone(),
            spec.clone(),
            pipeline,
            Arc::clone(&running),
            checkpoints,
            manifest,
            self.stopping.subscribe(),
            requested,
        ));
        Ok(Entry {
            spec,
            running,
            branches,
            reads,
            task: Some(task),
            requests: Some(requests),
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
    /// Each pipeline's results, by its name, each of its branches' (`<pipeline>_
    /// <branch>`), and `late_events`: the late events of the pipelines that keep
    /// them, with the pipeline's name first. A pipeline's table is read when a scan
    /// of it runs, not when the query is planned.
    fn tables(&self, tenant: &str) -> Vec<(String, Arc<dyn TableProvider>)> {
        let entries = self.entries.lock();
        let mut tables: Vec<(String, Arc<dyn TableProvider>)> = Vec::new();
        for entry in entries.values().filter(|e| e.spec.tenant == tenant) {
            for name in entry.tables() {
                let source = ResultRows {
                    pipelines: Weak::clone(&self.me),
                    tenant: tenant.to_string(),
                    table: name.clone(),
                };
                let table = FeedTable::new(Arc::clone(&entry.running.schema), Arc::new(source));
                tables.push((name, Arc::new(table)));
            }
        }
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

/// The pipelines' tables, for the pipelines' own queries (which must not keep the
/// pipelines alive).
#[derive(Debug)]
struct Tables(Weak<Pipelines>);

impl ExtraTables for Tables {
    fn tables(&self, tenant: &str) -> Vec<(String, Arc<dyn TableProvider>)> {
        self.0
            .upgrade()
            .map(|pipelines| pipelines.tables(tenant))
            .unwrap_or_default()
    }
}

/// The entry filling the table `name` of `tenant`, and the branch whose table it
/// is, if it is a branch's.
fn find_table<'a>(
    entries: &'a BTreeMap<(String, String), Entry>,
    tenant: &str,
    name: &str,
) -> Option<(&'a Entry, Option<usize>)> {
    if let Some(entry) = entries.get(&(tenant.to_string(), name.to_string())) {
        return Some((entry, None));
    }
    entries
        .values()
        .filter(|e| e.spec.tenant == tenant)
        .find_map(|e| {
            let branch = name.strip_prefix(e.spec.name.as_str())?.strip_prefix('_')?;
            Some((e, Some(e.branches.index_of(branch)?)))
        })
}

/// The rows of a pipeline's table (or of one of its branches'), read when a scan
/// runs.
#[derive(Debug)]
struct ResultRows {
    pipelines: Weak<Pipelines>,
    tenant: String,
    table: String,
}

impl RowSource for ResultRows {
    fn rows(&self) -> datafusion::common::Result<Vec<RecordBatch>> {
        let gone = || {
            datafusion::common::DataFusionError::Execution(format!(
                "the table {} was dropped",
                self.table
            ))
        };
        let pipelines = self.pipelines.upgrade().ok_or_else(gone)?;
        let entries = pipelines.entries.lock();
        let (entry, branch) = find_table(&entries, &self.tenant, &self.table).ok_or_else(gone)?;
        let batches = entry.running.results.lock().clone();
        match branch {
            None => Ok(batches),
            Some(b) => batches
                .iter()
                .map(|batch| entry.branches.route(batch, b))
                .collect::<Result<Vec<_>>>()
                .map_err(|e| datafusion::common::DataFusionError::Execution(e.to_string())),
        }
    }

    fn table(&self) -> Option<&str> {
        Some(&self.table)
    }
}

/// The result rows of a pipeline (or of one of its branches) as they are emitted.
#[derive(Debug)]
pub struct Updates {
    receiver: tokio::sync::broadcast::Receiver<RecordBatch>,
    branch: Option<(Arc<Branches>, usize)>,
}

impl Updates {
    /// The next rows, waiting for them. Fails when the pipeline is dropped, reset or
    /// replaced ([`RecvError::Closed`](tokio::sync::broadcast::error::RecvError)), or
    /// when this reader fell more than 1024 result batches behind (`Lagged`).
    pub async fn recv(
        &mut self,
    ) -> std::result::Result<RecordBatch, tokio::sync::broadcast::error::RecvError> {
        loop {
            let batch = self.receiver.recv().await?;
            let Some((branches, index)) = &self.branch else {
                return Ok(batch);
            };
            match branches.route(&batch, *index) {
                Ok(rows) if rows.num_rows() == 0 => continue,
                Ok(rows) => return Ok(rows),
                Err(e) => {
                    tracing::error!(error = %e, "routing a pipeline update to its branch");
                    continue;
                }
            }
        }
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

/// The next batch of `source` (`None` inside once it ends), or `None` once `wait`
/// (when given) passes without one.
async fn next_within(
    source: &mut SendableRecordBatchStream,
    wait: Option<std::time::Duration>,
) -> Option<Option<datafusion::common::Result<RecordBatch>>> {
    match wait {
        None => Some(source.next().await),
        Some(wait) => tokio::time::timeout(wait, source.next()).await.ok(),
    }
}

/// How often a running pipeline's table is rebuilt at most while events pour in;
/// once the pipeline has caught up with the log, it is rebuilt at once.
const TABLE_REFRESH: std::time::Duration = std::time::Duration::from_millis(100);

/// Feed the tenant's log to `pipeline` from the position of its last checkpoint
/// (`manifest`; without one, the spec's `from_position`) until the store closes, the
/// pipelines stop (`stopping`) or the pipeline fails, writing checkpoints every
/// `checkpoint_interval` while there is new input, and one when it stops. Between
/// input batches it answers `requests`.
#[allow(clippy::too_many_arguments)]
async fn run(
    store: EventStore,
    spec: PipelineSpec,
    mut pipeline: Pipeline,
    running: Arc<Running>,
    checkpoints: Checkpoints,
    manifest: Option<Manifest>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
    mut requests: tokio::sync::mpsc::Receiver<Request>,
) {
    let from = manifest.as_ref().map_or(spec.from_position, |m| m.position);
    let source = LogSourceExec::new(store, &spec.tenant, from);
    let started = source
        .execute(0, Arc::new(datafusion::execution::TaskContext::default()))
        .map(|stream| (stream, source.progress()));
    let (mut events, log) = match started {
        Ok((stream, Some(progress))) => (stream, progress),
        Ok((_, None)) | Err(_) => {
            running.progress.lock().state = PipelineState::Failed {
                error: "the log source did not start".into(),
            };
            return;
        }
    };
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
    // A running pipeline's table lags its state while events pour in (rebuilding it
    // after every batch would cost a pass over every key each time).
    let mut table = TableRefresh {
        stale: false,
        built: std::time::Instant::now(),
    };
    let outcome: Result<()> = async {
        loop {
            let wait = match (checkpointer.due_in(), table.due_in()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let next = tokio::select! {
                biased;
                () = async {
                    // Also once the sender is gone: then nothing is left to run for.
                    let _ = stopping.wait_for(|stop| *stop).await;
                } => {
                    if checkpointer.dirty {
                        let position = log.position();
                        checkpointer.write(&mut pipeline, position, &running).await;
                    }
                    return Ok(());
                }
                Some(request) = requests.recv() => {
                    answer(&mut pipeline, request).await;
                    continue;
                }
                next = next_within(&mut events, wait) => next,
            };
            let Some(next) = next else {
                // Quiet for a while: bring the table up to date and write what is
                // pending when it is due.
                if table.stale {
                    table
                        .rebuild(&mut pipeline, &running, log.position())
                        .await?;
                }
                if checkpointer.due_in().is_some_and(|d| d.is_zero()) {
                    let position = log.position();
                    checkpointer.write(&mut pipeline, position, &running).await;
                }
                continue;
            };
            let batch = match next {
                Some(Ok(batch)) => batch,
                // The store closed.
                None => {
                    if checkpointer.dirty {
                        let position = log.position();
                        checkpointer.write(&mut pipeline, position, &running).await;
                    }
                    return Ok(());
                }
                Some(Err(e)) => return Err(Error::Internal(format!("reading the log: {e}"))),
            };
            let out = pipeline.process(&batch).await?;
            for rows in &out {
                // No subscriber is not an error.
                let _ = running.updates.send(rows.clone());
            }
            if !pipeline.is_running() {
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
            }
            let position = log.position();
            if pipeline.is_running() {
                // Totals per key: the table is their current rows, rebuilt from the
                // checkpointed state after a restart.
                table.stale = true;
                if log.lag() == 0 || table.built.elapsed() >= TABLE_REFRESH {
                    table.rebuild(&mut pipeline, &running, position).await?;
                }
            } else {
                running.progress.lock().position = position;
            }
            if checkpointer.due_in().is_some_and(|d| d.is_zero()) {
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

/// When a running pipeline's table was last rebuilt, and whether its state has
/// moved on since.
struct TableRefresh {
    stale: bool,
    built: std::time::Instant,
}

impl TableRefresh {
    /// How long until a stale table is due to be rebuilt.
    fn due_in(&self) -> Option<std::time::Duration> {
        self.stale
            .then(|| TABLE_REFRESH.saturating_sub(self.built.elapsed()))
    }

    /// Rebuild the table of `pipeline`, which has read the log up to `position`.
    async fn rebuild(
        &mut self,
        pipeline: &mut Pipeline,
        running: &Running,
        position: u64,
    ) -> Result<()> {
        let table = pipeline.current().await?;
        *running.results.lock() = table;
        running.progress.lock().position = position;
        self.stale = false;
        self.built = std::time::Instant::now();
        Ok(())
    }
}

/// Answer a reader's request.
async fn answer(pipeline: &mut Pipeline, request: Request) {
    match request {
        Request::Lookup { key, reply } => {
            // A reader that went away needs no answer.
            let _ = reply.send(pipeline.lookup(&key).await);
        }
    }
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
                PipelineState::Disabled => "disabled".to_string(),
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
