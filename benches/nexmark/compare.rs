//! The other engines: DuckDB and Polars running the same queries over a store's
//! Parquet files (`engines.py`), and rows in the one form all engines' rows are
//! compared in.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;

/// The script that runs the queries in DuckDB or Polars.
const ENGINES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/nexmark/engines.py");

/// An engine besides AllSource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    DuckDb,
    Polars,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::DuckDb => "DuckDB",
            Engine::Polars => "Polars",
        }
    }

    fn arg(self) -> &'static str {
        match self {
            Engine::DuckDb => "duckdb",
            Engine::Polars => "polars",
        }
    }
}

/// Where the engines read and what the time-range query asks for.
pub struct Files<'a> {
    /// The store's Parquet files, as a glob.
    pub glob: &'a str,
    /// The time-range query's bounds, µs since the epoch.
    pub range_micros: (i64, i64),
}

/// What one engine's timed run measured.
#[allow(dead_code)] // the streaming benchmark only checks rows
pub struct Timed {
    pub version: String,
    /// Seconds of each run, by query.
    pub seconds: BTreeMap<String, Vec<f64>>,
    /// Rows each query gave.
    pub rows: BTreeMap<String, usize>,
}

fn script(engine: Engine, files: &Files, tail: &[String]) -> serde_json::Value {
    let (from, to) = files.range_micros;
    let mut args = vec![
        ENGINES.to_string(),
        engine.arg().to_string(),
        files.glob.to_string(),
        from.to_string(),
        to.to_string(),
    ];
    args.extend_from_slice(tail);
    let output = std::process::Command::new("python3")
        .args(&args)
        .output()
        .unwrap_or_else(|e| panic!("running python3 (pip install duckdb polars): {e}"));
    assert!(
        output.status.success(),
        "{}: {}",
        engine.name(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{}: {e}", engine.name()))
}

/// Every query's rows in `engine`, as canonical lines ([`canonical`]), by query name.
pub fn rows(engine: Engine, files: &Files) -> BTreeMap<String, Vec<String>> {
    let out = script(engine, files, &["rows".to_string()]);
    let by_query: BTreeMap<String, Vec<Vec<serde_json::Value>>> =
        serde_json::from_value(out["rows"].clone()).unwrap_or_else(|e| panic!("{e}"));
    by_query
        .into_iter()
        .map(|(name, rows)| {
            let mut lines: Vec<String> = rows
                .iter()
                .map(|row| {
                    let cells: Vec<String> = row.iter().map(json_cell).collect();
                    cells.join(" | ")
                })
                .collect();
            lines.sort();
            (name, lines)
        })
        .collect()
}

/// Every query run `runs` times in `engine`.
#[allow(dead_code)] // the streaming benchmark only checks rows
pub fn time(engine: Engine, files: &Files, runs: usize) -> Timed {
    let out = script(engine, files, &["time".to_string(), runs.to_string()]);
    let field = |name: &str| out[name].clone();
    Timed {
        version: out["version"].as_str().unwrap_or("?").to_string(),
        seconds: serde_json::from_value(field("seconds")).unwrap_or_else(|e| panic!("{e}")),
        rows: serde_json::from_value(field("rows")).unwrap_or_else(|e| panic!("{e}")),
    }
}

fn json_cell(cell: &serde_json::Value) -> String {
    match cell {
        serde_json::Value::Null => "null".to_string(),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => float_text(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => text_cell(s),
        other => other.to_string(),
    }
}

fn float_text(value: f64) -> String {
    format!("{value:.4}")
}

/// A text cell as the engines can agree on it: a number's digits as that number.
fn text_cell(text: &str) -> String {
    text.parse::<i64>()
        .map_or_else(|_| text.to_string(), |i| i.to_string())
}

/// Rows as sorted lines in the form all engines' rows are compared in: timestamps
/// as µs since the epoch, integers as integers (also when a JSON operator returned
/// them as text), floats to four decimals.
pub fn canonical(batches: &[RecordBatch]) -> Vec<String> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Float64Type, Int64Type};
    let mut lines = Vec::new();
    for batch in batches {
        let columns: Vec<Vec<String>> = batch
            .columns()
            .iter()
            .map(|column| {
                let cast = |to: &DataType| {
                    arrow::compute::cast(column, to).unwrap_or_else(|e| panic!("{e}"))
                };
                let cells = |array: &dyn Array, text: &dyn Fn(usize) -> String| {
                    (0..array.len())
                        .map(|i| {
                            if array.is_null(i) {
                                "null".to_string()
                            } else {
                                text(i)
                            }
                        })
                        .collect::<Vec<_>>()
                };
                match column.data_type() {
                    DataType::Timestamp(..)
                    | DataType::Int8
                    | DataType::Int16
                    | DataType::Int32
                    | DataType::Int64
                    | DataType::UInt8
                    | DataType::UInt16
                    | DataType::UInt32
                    | DataType::UInt64 => {
                        let ints = cast(&DataType::Int64);
                        let ints = ints.as_primitive::<Int64Type>();
                        cells(ints, &|i| ints.value(i).to_string())
                    }
                    DataType::Float16
                    | DataType::Float32
                    | DataType::Float64
                    | DataType::Decimal128(..) => {
                        let floats = cast(&DataType::Float64);
                        let floats = floats.as_primitive::<Float64Type>();
                        cells(floats, &|i| float_text(floats.value(i)))
                    }
                    _ => {
                        let texts = cast(&DataType::Utf8);
                        let texts = texts.as_string::<i32>();
                        cells(texts, &|i| text_cell(texts.value(i)))
                    }
                }
            })
            .collect();
        for row in 0..batch.num_rows() {
            let cells: Vec<&str> = columns.iter().map(|c| c[row].as_str()).collect();
            lines.push(cells.join(" | "));
        }
    }
    lines.sort();
    lines
}

/// Panics naming the first row where `theirs` differs from `ours`.
pub fn assert_same(what: &str, ours: &[String], other: &str, theirs: &[String]) {
    assert_eq!(
        ours.len(),
        theirs.len(),
        "{what}: AllSource and {other} give different row counts"
    );
    if let Some(i) = (0..ours.len()).find(|&i| ours[i] != theirs[i]) {
        panic!(
            "{what}: row {i} differs: AllSource {:?}, {other} {:?}",
            ours[i], theirs[i]
        );
    }
}
