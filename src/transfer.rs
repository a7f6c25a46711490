//! `allsource import` and `allsource export`: files in, query results out, through a
//! running server.
//!
//! Import reads JSONL, CSV or Parquet and appends in batches; each batch is one
//! atomic request, so a batch the server refuses leaves nothing of itself behind,
//! and the report says which records were imported before it. Every format carries
//! the fields `POST /events` takes:
//!
//! ```text
//! event_type, entity_id      text, required
//! payload                    JSON (in CSV and Parquet: JSON text)
//! metadata                   JSON, optional
//! timestamp                  RFC 3339 (Parquet: a timestamp column works too)
//! event_id                   optional; a retried import is then deduplicated
//! ```
//!
//! Other fields or columns are ignored and named once. Export streams a query's
//! Arrow batches into Parquet, JSONL or CSV, written to `FILE.partial` and renamed
//! when complete, so a failed export never leaves a truncated file under its name.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, TimeUnit};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value};

use crate::remote::Remote;

/// The fields an imported event may carry.
const FIELDS: [&str; 7] = [
    "event_type",
    "entity_id",
    "payload",
    "metadata",
    "timestamp",
    "event_id",
    "expected_version",
];

/// A file format of import and export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FileFormat {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated with a header row.
    Csv,
    /// Apache Parquet.
    Parquet,
}

impl FileFormat {
    /// The format a file name's extension names.
    pub fn of_path(path: &Path) -> anyhow::Result<Self> {
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("jsonl" | "ndjson" | "json") => Ok(Self::Jsonl),
            Some("csv") => Ok(Self::Csv),
            Some("parquet") => Ok(Self::Parquet),
            _ => bail!(
                "cannot tell the format of {} from its extension; pass --format jsonl|csv|parquet",
                path.display()
            ),
        }
    }
}

/// One event read from a file, with where it came from (line or row, from 1).
struct Record {
    at: u64,
    event: Value,
    /// Fields the import leaves out, named on the first record that has them.
    ignored: Vec<String>,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Events appended.
    pub events: u64,
    /// Batches sent.
    pub batches: u64,
}

/// Import `path` in batches of `batch_size` events.
pub fn import(
    remote: &Remote,
    path: &Path,
    format: FileFormat,
    batch_size: usize,
) -> anyhow::Result<ImportReport> {
    if batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let unit = if format == FileFormat::Jsonl {
        "line"
    } else {
        "row"
    };
    let records = read_records(path, format)?;
    let progress = progress_bar("{spinner} {human_pos} events  {per_sec}  {elapsed}")?;
    let mut report = ImportReport {
        events: 0,
        batches: 0,
    };
    let mut batch: Vec<Value> = Vec::with_capacity(batch_size);
    let mut first_at = 0;
    let mut records = records.peekable();
    while let Some(record) = records.next() {
        let record = record.with_context(|| {
            format!(
                "{}: nothing of the batch holding this {unit} was sent; {} events were imported before it",
                path.display(),
                report.events
            )
        })?;
        if batch.is_empty() {
            first_at = record.at;
        }
        let last_at = record.at;
        if !record.ignored.is_empty() {
            progress.suspend(|| eprintln!("ignoring the fields {}", record.ignored.join(", ")));
        }
        batch.push(record.event);
        if batch.len() == batch_size || records.peek().is_none() {
            remote.append(&batch).with_context(|| {
                format!(
                    "the batch of {unit}s {first_at}-{last_at} was refused and none of it was written; \
                     {} events (the {unit}s before {first_at}) were imported",
                    report.events
                )
            })?;
            report.events += batch.len() as u64;
            report.batches += 1;
            progress.set_position(report.events);
            batch.clear();
        }
    }
    progress.finish_and_clear();
    Ok(report)
}

/// The events of a file, lazily.
fn read_records(
    path: &Path,
    format: FileFormat,
) -> anyhow::Result<Box<dyn Iterator<Item = anyhow::Result<Record>>>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut seen_ignored = false;
    // The names to report: those of the first record that has any, then none.
    let mut note_ignored = move |names: Vec<String>| -> Vec<String> {
        if seen_ignored || names.is_empty() {
            return Vec::new();
        }
        seen_ignored = true;
        names
    };
    Ok(match format {
        FileFormat::Jsonl => Box::new(
            BufReader::new(file)
                .lines()
                .enumerate()
                .filter(|(_, line)| line.as_ref().map_or(true, |l| !l.trim().is_empty()))
                .map(move |(index, line)| {
                    let at = index as u64 + 1;
                    let line = line.with_context(|| format!("reading line {at}"))?;
                    let value: Value = serde_json::from_str(&line)
                        .with_context(|| format!("line {at} is not JSON"))?;
                    let Value::Object(object) = value else {
                        bail!("line {at} is not a JSON object");
                    };
                    let (event, others) = keep_fields(object);
                    let ignored = note_ignored(others);
                    Ok(Record { at, event, ignored })
                }),
        ),
        FileFormat::Csv => {
            let mut reader = csv::Reader::from_reader(file);
            let headers: Vec<String> = reader
                .headers()
                .context("reading the CSV header row")?
                .iter()
                .map(str::to_string)
                .collect();
            let mut ignored: Vec<String> = headers
                .iter()
                .filter(|h| !FIELDS.contains(&h.as_str()))
                .cloned()
                .collect();
            Box::new(reader.into_records().enumerate().map(move |(index, row)| {
                let at = index as u64 + 1;
                let row = row.with_context(|| format!("reading row {at}"))?;
                let cells = headers.iter().zip(row.iter());
                let event = text_event(cells).with_context(|| format!("row {at}"))?;
                Ok(Record {
                    at,
                    event,
                    ignored: std::mem::take(&mut ignored),
                })
            }))
        }
        FileFormat::Parquet => {
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .with_context(|| format!("reading {} as Parquet", path.display()))?
                    .build()?;
            let mut row = 0u64;
            Box::new(reader.flat_map(move |batch| {
                let events = batch
                    .context("reading a Parquet row group")
                    .and_then(|batch| {
                        let mut events = parquet_events(&batch, row)?;
                        let others = batch
                            .schema()
                            .fields()
                            .iter()
                            .map(|f| f.name().clone())
                            .filter(|n| !FIELDS.contains(&n.as_str()))
                            .collect();
                        if let Some(first) = events.first_mut() {
                            first.ignored = note_ignored(others);
                        }
                        Ok(events)
                    });
                match events {
                    Ok(events) => {
                        row += events.len() as u64;
                        events.into_iter().map(Ok).collect::<Vec<_>>()
                    }
                    Err(e) => vec![Err(e)],
                }
            }))
        }
    })
}

/// The known fields of a JSON event, and the names of the others.
fn keep_fields(object: Map<String, Value>) -> (Value, Vec<String>) {
    let mut others = Vec::new();
    let mut event = Map::new();
    for (key, value) in object {
        if FIELDS.contains(&key.as_str()) {
            event.insert(key, value);
        } else {
            others.push(key);
        }
    }
    (Value::Object(event), others)
}

/// An event from (column name, text) cells; payload and metadata hold JSON text.
fn text_event<'a>(cells: impl Iterator<Item = (&'a String, &'a str)>) -> anyhow::Result<Value> {
    let mut event = Map::new();
    for (name, text) in cells {
        match name.as_str() {
            "payload" | "metadata" => {
                if name == "metadata" && text.is_empty() {
                    continue;
                }
                let value: Value = serde_json::from_str(text)
                    .with_context(|| format!("{name} is not JSON: {text:?}"))?;
                event.insert(name.clone(), value);
            }
            "expected_version" if !text.is_empty() => {
                let value = text
                    .parse::<u64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::from(text));
                event.insert(name.clone(), value);
            }
            "event_type" | "entity_id" => {
                event.insert(name.clone(), Value::from(text));
            }
            "timestamp" | "event_id" if !text.is_empty() => {
                event.insert(name.clone(), Value::from(text));
            }
            _ => {}
        }
    }
    Ok(Value::Object(event))
}

/// The events of one Parquet batch; `first_row` numbers its rows (from 0).
fn parquet_events(batch: &RecordBatch, first_row: u64) -> anyhow::Result<Vec<Record>> {
    let mut columns: Vec<(String, Vec<Option<String>>)> = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if !FIELDS.contains(&field.name().as_str()) {
            continue;
        }
        columns.push((
            field.name().clone(),
            text_cells(column.as_ref(), field.name())?,
        ));
    }
    (0..batch.num_rows())
        .map(|row| {
            let at = first_row + row as u64 + 1;
            let cells: Vec<(&String, &str)> = columns
                .iter()
                .filter_map(|(name, values)| Some((name, values[row].as_deref()?)))
                .collect();
            let event = text_event(cells.into_iter()).with_context(|| format!("row {at}"))?;
            Ok(Record {
                at,
                event,
                ignored: Vec::new(),
            })
        })
        .collect()
}

/// A Parquet column as text: timestamps as RFC 3339, everything else cast to text.
fn text_cells(column: &dyn Array, name: &str) -> anyhow::Result<Vec<Option<String>>> {
    if let DataType::Timestamp(_, _) = column.data_type() {
        let micros =
            arrow::compute::cast(column, &DataType::Timestamp(TimeUnit::Microsecond, None))
                .with_context(|| format!("column {name}"))?;
        let micros = micros.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        return Ok((0..micros.len())
            .map(|i| {
                micros.is_valid(i).then(|| {
                    chrono::DateTime::from_timestamp_micros(micros.value(i))
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
                        .unwrap_or_default()
                })
            })
            .collect());
    }
    let text = arrow::compute::cast(column, &DataType::Utf8)
        .with_context(|| format!("column {name} cannot be read as text"))?;
    let text = text.as_string::<i32>();
    Ok((0..text.len())
        .map(|i| text.is_valid(i).then(|| text.value(i).to_string()))
        .collect())
}

/// Run `sql` and write its result to `output` in `format`; returns the rows written.
pub fn export(
    remote: &Remote,
    sql: &str,
    format: FileFormat,
    output: &Path,
) -> anyhow::Result<u64> {
    let mut batches = remote.query(sql)?;
    let schema = batches.schema();
    let partial = partial_path(output);
    let file = File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let progress = progress_bar("{spinner} {human_pos} rows  {per_sec}  {elapsed}")?;
    let written = (|| -> anyhow::Result<u64> {
        let mut writer = BatchWriter::new(format, BufWriter::new(file), &schema)?;
        let mut rows = 0u64;
        for batch in &mut batches {
            let batch = batch.context("reading the result from the server")?;
            writer.write(&batch)?;
            rows += batch.num_rows() as u64;
            progress.set_position(rows);
        }
        writer.finish()?;
        Ok(rows)
    })();
    progress.finish_and_clear();
    let finished = written.and_then(|rows| {
        std::fs::rename(&partial, output)
            .with_context(|| format!("renaming {} to {}", partial.display(), output.display()))?;
        Ok(rows)
    });
    if finished.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    finished
}

fn partial_path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// A spinner on stderr that updates ten times a second (hidden when stderr is not a
/// terminal).
fn progress_bar(template: &str) -> anyhow::Result<ProgressBar> {
    let progress = ProgressBar::new_spinner();
    progress.set_style(ProgressStyle::with_template(template)?);
    progress.enable_steady_tick(Duration::from_millis(100));
    Ok(progress)
}

/// A writer of record batches in one of the file formats.
enum BatchWriter<W: Write + Send> {
    Parquet(parquet::arrow::ArrowWriter<W>),
    Jsonl(arrow::json::LineDelimitedWriter<W>),
    Csv(arrow::csv::Writer<W>),
}

impl<W: Write + Send> BatchWriter<W> {
    fn new(
        format: FileFormat,
        out: W,
        schema: &arrow::datatypes::SchemaRef,
    ) -> anyhow::Result<Self> {
        Ok(match format {
            FileFormat::Parquet => Self::Parquet(parquet::arrow::ArrowWriter::try_new(
                out,
                std::sync::Arc::clone(schema),
                None,
            )?),
            FileFormat::Jsonl => Self::Jsonl(arrow::json::LineDelimitedWriter::new(out)),
            FileFormat::Csv => Self::Csv(arrow::csv::Writer::new(out)),
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> anyhow::Result<()> {
        match self {
            Self::Parquet(w) => w.write(batch)?,
            Self::Jsonl(w) => w.write(batch)?,
            Self::Csv(w) => w.write(batch)?,
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        match self {
            Self::Parquet(w) => {
                w.close()?;
            }
            Self::Jsonl(mut w) => {
                w.finish()?;
                w.into_inner().flush()?;
            }
            Self::Csv(w) => {
                w.into_inner().flush()?;
            }
        }
        Ok(())
    }
}
