//! `allsource query`, `import` and `export` as a user runs them, against a running
//! server.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use super::Server;

fn allsource(server: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_allsource"))
        .args(args)
        .env("ALLSOURCE_SERVER", &server.base)
        .output()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The single number a one-cell query prints.
fn count(server: &Server, sql: &str) -> u64 {
    let output = allsource(server, &["query", sql]);
    assert!(output.status.success(), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .filter(|l| l.starts_with('|'))
        .nth(1)
        .and_then(|l| l.trim_matches(|c| c == '|' || c == ' ').parse().ok())
        .unwrap_or_else(|| panic!("no count in\n{stdout}"))
}

fn jsonl(path: &Path, lines: impl Iterator<Item = String>) {
    let body: Vec<String> = lines.collect();
    fs::write(path, body.join("\n") + "\n").unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn import_in_atomic_batches_then_query_and_export() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), &[], &[]);

    // JSONL: 2,500 events in three batches; unknown fields are named and left out.
    let file = dir.path().join("events.jsonl");
    jsonl(
        &file,
        (0..2500).map(|i| {
            format!(
                r#"{{"event_type":"order.placed","entity_id":"order-{}","payload":{{"i":{i}}},"note":"x"}}"#,
                i % 50
            )
        }),
    );
    let output = allsource(&server, &["import", file.to_str().unwrap_or_default()]);
    assert!(output.status.success(), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("imported 2500 events in 3 batches"),
        "{}",
        text(&output)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("ignoring the fields note"));

    // CSV with JSON text cells and a timestamp.
    let file = dir.path().join("events.csv");
    fs::write(
        &file,
        "entity_id,event_type,payload,timestamp\n\
         user-1,user.created,\"{\"\"name\"\":\"\"Ann, A.\"\"}\",2024-01-15T10:00:00Z\n\
         user-2,user.created,\"{\"\"name\"\":\"\"Bo\"\"}\",\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let output = allsource(&server, &["import", file.to_str().unwrap_or_default()]);
    assert!(output.status.success(), "{}", text(&output));

    // Parquet with a timestamp column.
    let file = dir.path().join("events.parquet");
    let schema = Arc::new(Schema::new(vec![
        Field::new("entity_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("payload", DataType::Utf8, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(StringArray::from(vec!["device-1", "device-1"])),
            Arc::new(StringArray::from(vec!["reading", "reading"])),
            Arc::new(StringArray::from(vec![r#"{"c":21.5}"#, r#"{"c":22.0}"#])),
            Arc::new(TimestampMicrosecondArray::from(vec![
                Some(1_705_312_800_000_000),
                None,
            ])),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = fs::File::create(&file).unwrap_or_else(|e| panic!("{e}"));
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(out, schema, None).unwrap_or_else(|e| panic!("{e}"));
    writer.write(&batch).unwrap_or_else(|e| panic!("{e}"));
    writer.close().unwrap_or_else(|e| panic!("{e}"));
    let output = allsource(&server, &["import", file.to_str().unwrap_or_default()]);
    assert!(output.status.success(), "{}", text(&output));

    assert_eq!(count(&server, "SELECT count(*) FROM events"), 2504);
    assert_eq!(
        count(
            &server,
            "SELECT count(*) FROM events WHERE entity_id = 'order-7'"
        ),
        50
    );
    assert_eq!(
        count(
            &server,
            "SELECT count(*) FROM events WHERE payload->>'name' = 'Ann, A.' \
             AND timestamp = TIMESTAMP '2024-01-15T10:00:00Z'"
        ),
        1
    );
    assert_eq!(
        count(
            &server,
            "SELECT count(*) FROM events WHERE entity_id = 'device-1' \
             AND timestamp = TIMESTAMP '2024-01-15T10:00:00Z'"
        ),
        1
    );

    // Export in each format.
    let sql =
        "SELECT entity_id, version FROM events WHERE event_type = 'order.placed' ORDER BY position";
    for name in ["orders.parquet", "orders.jsonl", "orders.csv"] {
        let path = dir.path().join(name);
        let output = allsource(
            &server,
            &[
                "export",
                "--sql",
                sql,
                "-o",
                path.to_str().unwrap_or_default(),
            ],
        );
        assert!(output.status.success(), "{}", text(&output));
        assert!(String::from_utf8_lossy(&output.stdout).contains("wrote 2500 rows"));
    }
    let parquet =
        fs::File::open(dir.path().join("orders.parquet")).unwrap_or_else(|e| panic!("{e}"));
    let batches: Vec<RecordBatch> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(parquet)
            .and_then(|b| b.build())
            .unwrap_or_else(|e| panic!("{e}"))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2500);
    assert_eq!(batches[0].column(0).as_string::<i32>().value(0), "order-0");
    let lines = fs::read_to_string(dir.path().join("orders.jsonl")).unwrap_or_default();
    assert_eq!(lines.lines().count(), 2500);
    assert_eq!(
        lines.lines().next(),
        Some(r#"{"entity_id":"order-0","version":1}"#)
    );
    let csv = fs::read_to_string(dir.path().join("orders.csv")).unwrap_or_default();
    assert_eq!(csv.lines().count(), 2501);
    assert_eq!(csv.lines().next(), Some("entity_id,version"));

    // A query the server refuses: a clear error, no file, no partial file.
    let path = dir.path().join("bad.csv");
    let output = allsource(
        &server,
        &[
            "export",
            "--sql",
            "SELECT nope FROM events",
            "-o",
            path.to_str().unwrap_or_default(),
        ],
    );
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("the server refused"),
        "{}",
        text(&output)
    );
    assert!(!path.exists() && !dir.path().join("bad.csv.partial").exists());
}

#[test]
fn a_refused_batch_writes_none_of_itself() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start(&dir.path().join("data"), &[], &[]);
    // Line 15 holds a version conflict: the batch of lines 11-20 is refused whole.
    let file = dir.path().join("conflict.jsonl");
    jsonl(
        &file,
        (1..=30).map(|i| {
            let expected = if i == 15 {
                r#","expected_version":99"#
            } else {
                ""
            };
            format!(r#"{{"event_type":"t","entity_id":"s-{i}","payload":{{}}{expected}}}"#)
        }),
    );
    let output = allsource(
        &server,
        &[
            "import",
            "--batch-size",
            "10",
            file.to_str().unwrap_or_default(),
        ],
    );
    assert!(!output.status.success(), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("lines 11-20 was refused"),
        "{}",
        text(&output)
    );
    assert!(stderr.contains("10 events"), "{}", text(&output));
    assert!(stderr.contains("conflict"), "{}", text(&output));
    assert_eq!(count(&server, "SELECT count(*) FROM events"), 10);

    // A line that is not JSON: its batch is never sent.
    let file = dir.path().join("broken.jsonl");
    jsonl(
        &file,
        (1..=30).map(|i| {
            if i == 25 {
                "{not json".to_string()
            } else {
                format!(r#"{{"event_type":"t","entity_id":"b-{i}","payload":{{}}}}"#)
            }
        }),
    );
    let output = allsource(
        &server,
        &[
            "import",
            "--batch-size",
            "10",
            file.to_str().unwrap_or_default(),
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 25 is not JSON"), "{}", text(&output));
    assert_eq!(
        count(
            &server,
            "SELECT count(*) FROM events WHERE entity_id LIKE 'b-%'"
        ),
        20
    );

    // No server: a clear message.
    drop(server);
    let output = Command::new(env!("CARGO_BIN_EXE_allsource"))
        .args(["query", "SELECT 1", "--server", "http://127.0.0.1:9"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no server answers"));
}
