//! Golden tests: each case in `tests/streaming/golden/` is a pipeline definition,
//! input events (in log order) and the expected results. Every case runs straight
//! through, then again through every checkpoint → kill → restore the input allows:
//! a checkpoint after batch `c`, more batches processed (and their results lost with
//! the process) up to batch `k`, then a new pipeline restored from the checkpoint in
//! the table storage and fed the log from the checkpoint's position. Each run must
//! give exactly the expected rows: nothing counted twice, nothing lost.

use std::path::Path;

use allsource::engine::{Durability, RecordedEvent, event_schema, events_to_batch};
use allsource::operators::checkpoint::{Checkpoints, Rows, Update};
use allsource::operators::ddl::set_option;
use allsource::operators::{Pipeline, PipelineOptions};
use allsource::sql::EventQl;
use arrow::array::RecordBatch;
use serde::Deserialize;

use super::lines;
use crate::util;

const BASE_SECONDS: i64 = 1_700_000_000;
/// Events per input batch.
const BATCH: usize = 2;

#[derive(Debug, Deserialize)]
struct Case {
    sql: String,
    options: std::collections::BTreeMap<String, String>,
    /// `[entity, event type, seconds after the base, payload]`.
    events: Vec<(String, String, i64, serde_json::Value)>,
    late: u64,
    expected: Vec<String>,
}

fn load(path: &Path) -> Case {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// The case's events as input batches of [`BATCH`] events.
fn batches(case: &Case) -> Vec<RecordBatch> {
    let recorded: Vec<RecordedEvent> = case
        .events
        .iter()
        .enumerate()
        .map(|(i, (entity, kind, seconds, payload))| {
            let micros = (BASE_SECONDS + seconds) * 1_000_000;
            RecordedEvent {
                tenant: "acme".into(),
                entity_id: entity.as_str().into(),
                event_type: kind.as_str().into(),
                version: 1,
                partition: 0,
                offset: i as u64,
                position: i as u64,
                event_id: format!("00000000-0000-7000-8000-{i:012}").into(),
                timestamp_micros: micros,
                ingested_at_micros: micros,
                payload: payload.to_string().into(),
                metadata: None,
            }
        })
        .collect();
    let schema = event_schema();
    recorded
        .chunks(BATCH)
        .map(|chunk| {
            let refs: Vec<&RecordedEvent> = chunk.iter().collect();
            events_to_batch(&schema, &refs).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect()
}

async fn compile(eventql: &EventQl, case: &Case) -> Pipeline {
    let mut options = PipelineOptions::default();
    for (key, value) in &case.options {
        set_option(&mut options, key, value).unwrap_or_else(|e| panic!("{e}"));
    }
    Pipeline::compile(eventql, "acme", &case.sql, options)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", case.sql))
}

/// Run `input` straight through: the results the watermark released, and the late
/// count.
async fn straight(eventql: &EventQl, case: &Case, input: &[RecordBatch]) -> (Vec<String>, u64) {
    let mut pipeline = compile(eventql, case).await;
    let mut out = Vec::new();
    for batch in input {
        out.extend(
            pipeline
                .process(batch)
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    if pipeline.is_running() {
        out = pipeline.current().await.unwrap_or_else(|e| panic!("{e}"));
    }
    (lines(&out), pipeline.stats().late_events)
}

/// Checkpoint after `checkpoint` batches, lose everything after it once `killed`
/// batches are processed, restore from the checkpoint and finish the input.
async fn with_crash(
    eventql: &EventQl,
    storage: &Checkpoints,
    case: &Case,
    input: &[RecordBatch],
    checkpoint: usize,
    killed: usize,
) -> (Vec<String>, u64) {
    storage.remove().await.unwrap_or_else(|e| panic!("{e}"));
    let mut pipeline = compile(eventql, case).await;
    let mut emitted = Vec::new();
    for batch in &input[..checkpoint] {
        emitted.extend(
            pipeline
                .process(batch)
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    // Positions are event indexes: the checkpoint reflects every event before it.
    let position = input[..checkpoint]
        .iter()
        .map(|b| b.num_rows() as u64)
        .sum();
    let snapshot = pipeline.snapshot().unwrap_or_else(|e| panic!("{e}"));
    storage
        .write(
            None,
            Update {
                position,
                snapshot: &snapshot,
                results: Rows::Since(&emitted),
                late: Rows::Since(&[]),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Progress past the checkpoint, lost with the process.
    for batch in &input[checkpoint..killed] {
        pipeline
            .process(batch)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    drop(pipeline);

    let mut restored = compile(eventql, case).await;
    let loaded = storage
        .load(&restored.schema(), &event_schema())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no checkpoint"));
    assert_eq!(loaded.manifest.position, position);
    restored
        .restore(&loaded.snapshot)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut out = loaded.results;
    // The log again from the checkpoint's position (batches start at multiples of
    // BATCH, and so does the checkpoint).
    for batch in &input[checkpoint..] {
        out.extend(
            restored
                .process(batch)
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    if restored.is_running() {
        // Totals per key: the table is the current rows, not what was emitted.
        out = restored.current().await.unwrap_or_else(|e| panic!("{e}"));
    }
    (lines(&out), restored.stats().late_events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_cases_straight_and_through_checkpoint_kill_restore() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = util::open(dir.path(), Durability::Never);
    let eventql = EventQl::new(store.clone());
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/streaming/golden");
    let mut paths: Vec<_> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("{folder:?}: {e}"))
        .map(|entry| entry.unwrap_or_else(|e| panic!("{e}")).path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 4, "golden cases: {paths:?}");
    for path in paths {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_else(|| panic!("{path:?}"))
            .to_string();
        let case = load(&path);
        let input = batches(&case);
        let (rows, late) = straight(&eventql, &case, &input).await;
        assert_eq!(rows, case.expected, "{name}: straight through");
        assert_eq!(late, case.late, "{name}: late events, straight through");
        let storage = Checkpoints::new(store.table_storage(), &format!("golden-{name}"));
        let mut runs = 0;
        for checkpoint in 0..=input.len() {
            for killed in checkpoint..=input.len() {
                let (rows, late) =
                    with_crash(&eventql, &storage, &case, &input, checkpoint, killed).await;
                assert_eq!(
                    rows, case.expected,
                    "{name}: checkpoint after batch {checkpoint}, killed after {killed}"
                );
                assert_eq!(late, case.late, "{name}: late events after the restore");
                runs += 1;
            }
        }
        assert!(runs >= 10, "{name}: {runs} crash runs");
    }
}
