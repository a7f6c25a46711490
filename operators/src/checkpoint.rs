//! Checkpoints: a pipeline's state and results in the table storage, so that after a
//! crash it resumes from its last checkpoint instead of from the start of the log,
//! with the results it had then, and ends with the results of a run without the
//! crash.
//!
//! A pipeline's checkpoints live under `pipelines/<id>/`:
//!
//! - `checkpoint.json`, the manifest: the sequence number, the log position every
//!   event before which is reflected, the watermark and counters, and the files below
//!   that make up the checkpoint;
//! - `groups-<seq>.arrow`: the open windows' groups at that point
//!   ([`crate::state`]), an Arrow IPC file;
//! - `admission-<seq>.arrow`: the keys the source operators remember
//!   ([`crate::admission`]), when the pipeline dedupes or throttles;
//! - `join-left-<seq>.arrow`, `join-right-<seq>.arrow`: the rows each side of a
//!   join of the events with themselves has kept ([`crate::stream_join`]);
//! - `results-<seq>.arrow`, `late-<seq>.arrow`: the result rows and the late events
//!   (when kept) emitted since the previous checkpoint. Every so many checkpoints,
//!   they are written again as one file.
//!
//! A checkpoint writes its data files first and its manifest last, as one `put`
//! (atomic on every object store: a rename on a local directory, a single object on
//! S3). The manifest so names a complete checkpoint or the previous one; files of a
//! checkpoint that never got its manifest are removed on the next load. Results are
//! durable only through checkpoints: rows emitted after the last one are computed
//! again, identically, after a restart, so the results table holds each row once.

use std::io::Cursor;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::pipeline::{PipelineStats, Snapshot};
use crate::watermark::Watermark;

/// The manifest's name under a pipeline's directory.
const MANIFEST: &str = "checkpoint.json";
/// How many results (or late events) files a checkpoint may name before they are
/// written again as one.
const COMPACT_AT: usize = 32;

/// What a checkpoint holds, as its manifest names it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Counts checkpoints of the pipeline, from 1.
    pub sequence: u64,
    /// Every event before this log position is reflected in the checkpoint.
    pub position: u64,
    /// Event-time progress.
    pub watermark: Watermark,
    /// Counters.
    pub stats: PipelineStats,
    /// The open groups' file, if the pipeline groups.
    pub groups: Option<String>,
    /// The source operators' state file, if they remember anything.
    #[serde(default)]
    pub admission: Option<String>,
    /// The files of the rows a join's two sides keep, left then right, if the
    /// pipeline joins its events with themselves.
    #[serde(default)]
    pub join: Vec<String>,
    /// The result files, in emission order.
    pub results: Vec<String>,
    /// The late events' files, in order.
    pub late: Vec<String>,
}

/// A checkpoint read back.
#[derive(Debug)]
pub struct Restored {
    /// Its manifest.
    pub manifest: Manifest,
    /// The pipeline's state.
    pub snapshot: Snapshot,
    /// The results emitted up to it.
    pub results: Vec<RecordBatch>,
    /// The late events kept up to it.
    pub late: Vec<RecordBatch>,
}

/// New rows for a checkpoint: appended to the previous checkpoint's, or all of them.
#[derive(Debug, Clone, Copy)]
pub enum Rows<'a> {
    /// Rows emitted since the previous checkpoint.
    Since(&'a [RecordBatch]),
    /// Every row so far, replacing the previous checkpoint's files.
    All(&'a [RecordBatch]),
}

/// What to write as the next checkpoint.
#[derive(Debug)]
pub struct Update<'a> {
    /// The log position every event before which is reflected.
    pub position: u64,
    /// The pipeline's state there.
    pub snapshot: &'a Snapshot,
    /// Its results.
    pub results: Rows<'a>,
    /// Its late events.
    pub late: Rows<'a>,
}

/// The checkpoints of one pipeline.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    storage: Arc<dyn ObjectStore>,
    root: Path,
}

impl Checkpoints {
    /// The checkpoints of the pipeline `id` in `storage`.
    pub fn new(storage: Arc<dyn ObjectStore>, id: &str) -> Self {
        Self {
            storage,
            root: Path::from("pipelines").join(id),
        }
    }

    /// Whether the manifest names more files than a checkpoint should.
    pub fn wants_compaction(manifest: &Manifest) -> bool {
        manifest.results.len() >= COMPACT_AT || manifest.late.len() >= COMPACT_AT
    }

    /// The last checkpoint, if there is one. Its results must have `results` as
    /// schema and its late events `late`. Files no manifest names (a checkpoint cut
    /// short) are removed.
    pub async fn load(&self, results: &SchemaRef, late: &SchemaRef) -> Result<Option<Restored>> {
        let manifest: Manifest = match self.storage.get(&self.path(MANIFEST)).await {
            Ok(found) => {
                let bytes = found.bytes().await.map_err(storage_error)?;
                serde_json::from_slice(&bytes)
                    .map_err(|e| Error::Invalid(format!("reading {}: {e}", self.path(MANIFEST))))?
            }
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(storage_error(e)),
        };
        let groups = match &manifest.groups {
            Some(name) => {
                let batches = self.read(name).await?;
                let schema = batches
                    .first()
                    .map(RecordBatch::schema)
                    .ok_or_else(|| Error::Invalid(format!("{name} holds no batch")))?;
                Some(arrow::compute::concat_batches(&schema, &batches)?)
            }
            None => None,
        };
        let admission = match &manifest.admission {
            Some(name) => {
                let schema = crate::admission::state_schema();
                let batches = conform(self.read(name).await?, &schema, name)?;
                Some(arrow::compute::concat_batches(&schema, &batches)?)
            }
            None => None,
        };
        let join = match manifest.join.as_slice() {
            [] => None,
            [left, right] => Some([self.read_whole(left).await?, self.read_whole(right).await?]),
            _ => {
                return Err(Error::Invalid(format!(
                    "{} names {} join files, not two",
                    self.path(MANIFEST),
                    manifest.join.len()
                )));
            }
        };
        let mut result_rows = Vec::new();
        for name in &manifest.results {
            result_rows.extend(conform(self.read(name).await?, results, name)?);
        }
        let mut late_rows = Vec::new();
        for name in &manifest.late {
            late_rows.extend(conform(self.read(name).await?, late, name)?);
        }
        self.remove_unnamed(&manifest).await;
        Ok(Some(Restored {
            snapshot: Snapshot {
                watermark: manifest.watermark,
                stats: manifest.stats,
                groups,
                admission,
                join,
            },
            manifest,
            results: result_rows,
            late: late_rows,
        }))
    }

    /// Write the checkpoint after `previous` (the last one written or loaded).
    pub async fn write(&self, previous: Option<&Manifest>, update: Update<'_>) -> Result<Manifest> {
        let sequence = previous.map_or(1, |m| m.sequence + 1);
        let groups = match &update.snapshot.groups {
            Some(batch) => {
                let name = format!("groups-{sequence:012}.arrow");
                self.put(&name, &batch.schema(), std::slice::from_ref(batch))
                    .await?;
                Some(name)
            }
            None => None,
        };
        let admission = match &update.snapshot.admission {
            Some(batch) if batch.num_rows() > 0 => {
                let name = format!("admission-{sequence:012}.arrow");
                self.put(&name, &batch.schema(), std::slice::from_ref(batch))
                    .await?;
                Some(name)
            }
            _ => None,
        };
        let mut join = Vec::new();
        if let Some(sides) = &update.snapshot.join {
            for (side, rows) in ["left", "right"].into_iter().zip(sides) {
                let name = format!("join-{side}-{sequence:012}.arrow");
                self.put(&name, &rows.schema(), std::slice::from_ref(rows))
                    .await?;
                join.push(name);
            }
        }
        let files =
            |rows: Rows<'_>, kind: &str| -> (Vec<String>, Option<(String, Vec<RecordBatch>)>) {
                let (mut names, batches) = match rows {
                    Rows::Since(batches) => (
                        previous.map_or_else(Vec::new, |m| {
                            if kind == "results" {
                                m.results.clone()
                            } else {
                                m.late.clone()
                            }
                        }),
                        batches,
                    ),
                    Rows::All(batches) => (Vec::new(), batches),
                };
                let batches: Vec<RecordBatch> = batches
                    .iter()
                    .filter(|b| b.num_rows() > 0)
                    .cloned()
                    .collect();
                if batches.is_empty() {
                    return (names, None);
                }
                let name = format!("{kind}-{sequence:012}.arrow");
                names.push(name.clone());
                (names, Some((name, batches)))
            };
        let (result_names, result_file) = files(update.results, "results");
        let (late_names, late_file) = files(update.late, "late");
        for (name, batches) in [result_file, late_file].into_iter().flatten() {
            self.put(&name, &batches[0].schema(), &batches).await?;
        }
        let manifest = Manifest {
            sequence,
            position: update.position,
            watermark: update.snapshot.watermark,
            stats: update.snapshot.stats,
            groups,
            admission,
            join,
            results: result_names,
            late: late_names,
        };
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| Error::Internal(format!("encoding a checkpoint manifest: {e}")))?;
        self.storage
            .put(&self.path(MANIFEST), PutPayload::from(json))
            .await
            .map_err(storage_error)?;
        // The files only the previous checkpoint named are no longer needed.
        if let Some(previous) = previous {
            for name in previous
                .groups
                .iter()
                .chain(&previous.admission)
                .chain(&previous.join)
                .chain(&previous.results)
                .chain(&previous.late)
            {
                let named = manifest.groups.as_ref() == Some(name)
                    || manifest.admission.as_ref() == Some(name)
                    || manifest.join.contains(name)
                    || manifest.results.contains(name)
                    || manifest.late.contains(name);
                if !named {
                    self.delete(name).await;
                }
            }
        }
        Ok(manifest)
    }

    /// Remove every checkpoint of the pipeline.
    pub async fn remove(&self) -> Result<()> {
        let names: Vec<Path> = self
            .storage
            .list(Some(&self.root))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(storage_error)?;
        for name in names {
            match self.storage.delete(&name).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(storage_error(e)),
            }
        }
        Ok(())
    }

    async fn remove_unnamed(&self, manifest: &Manifest) {
        let listed: std::result::Result<Vec<Path>, _> = self
            .storage
            .list(Some(&self.root))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await;
        let Ok(listed) = listed else {
            return;
        };
        for path in listed {
            let Some(name) = path.filename().map(str::to_string) else {
                continue;
            };
            let named = name == MANIFEST
                || manifest.groups.as_ref() == Some(&name)
                || manifest.admission.as_ref() == Some(&name)
                || manifest.join.contains(&name)
                || manifest.results.contains(&name)
                || manifest.late.contains(&name);
            if !named {
                self.delete(&name).await;
            }
        }
    }

    fn path(&self, name: &str) -> Path {
        self.root.clone().join(name)
    }

    async fn delete(&self, name: &str) {
        if let Err(e) = self.storage.delete(&self.path(name)).await
            && !matches!(e, object_store::Error::NotFound { .. })
        {
            tracing::warn!(file = %self.path(name), error = %e, "removing an old checkpoint file");
        }
    }

    async fn put(&self, name: &str, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<()> {
        let mut writer = FileWriter::try_new(Vec::new(), schema)?;
        for batch in batches {
            writer.write(batch)?;
        }
        writer.finish()?;
        let bytes = writer.into_inner()?;
        self.storage
            .put(&self.path(name), PutPayload::from(bytes))
            .await
            .map_err(storage_error)?;
        Ok(())
    }

    async fn read(&self, name: &str) -> Result<Vec<RecordBatch>> {
        let reader = self.reader(name).await?;
        Ok(reader.collect::<std::result::Result<Vec<_>, _>>()?)
    }

    /// The rows of the file `name` as one batch, of the schema the file holds.
    async fn read_whole(&self, name: &str) -> Result<RecordBatch> {
        let reader = self.reader(name).await?;
        let schema = reader.schema();
        let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(arrow::compute::concat_batches(&schema, &batches)?)
    }

    async fn reader(&self, name: &str) -> Result<FileReader<Cursor<bytes::Bytes>>> {
        let bytes = self
            .storage
            .get(&self.path(name))
            .await
            .map_err(storage_error)?
            .bytes()
            .await
            .map_err(storage_error)?;
        Ok(FileReader::try_new(Cursor::new(bytes), None)?)
    }
}

/// `batches` read from `name`, checked against `schema` and given it.
fn conform(batches: Vec<RecordBatch>, schema: &SchemaRef, name: &str) -> Result<Vec<RecordBatch>> {
    batches
        .into_iter()
        .map(|batch| {
            if !crate::groups::same_columns(&batch.schema(), schema, false) {
                return Err(Error::Invalid(format!(
                    "{name} does not hold the pipeline's columns"
                )));
            }
            Ok(batch.with_schema(Arc::clone(schema))?)
        })
        .collect()
}

fn storage_error(e: object_store::Error) -> Error {
    Error::Storage(e.to_string())
}
