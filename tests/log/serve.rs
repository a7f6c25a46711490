//! `allsource serve`: opens the store, runs until SIGTERM/SIGINT, closes cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use allsource::engine::{Durability, ExpectedVersion};

use crate::util::{append, event, open};

fn serve_until(signal: &str, dir: &std::path::Path) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_allsource"))
        .args(["serve", "--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
    let mut lines = BufReader::new(stderr).lines();
    let mut log = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log.contains("serving") && Instant::now() < deadline {
        match lines.next() {
            Some(Ok(line)) => log.push_str(&(line + "\n")),
            _ => break,
        }
    }
    assert!(log.contains("serving"), "the server did not start:\n{log}");
    let killed = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status();
    assert!(killed.is_ok_and(|s| s.success()));
    let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
    log.extend(lines.map_while(Result::ok).map(|l| l + "\n"));
    assert!(status.success(), "exit status {status:?}:\n{log}");
    log
}

#[tokio::test]
async fn serve_runs_until_a_signal_and_closes_cleanly() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = open(dir.path(), Durability::Always);
    append(&store, "a", ExpectedVersion::NoStream, vec![event("x", 1)])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store.close().unwrap_or_else(|e| panic!("{e}"));
    drop(store);

    let log = serve_until("-TERM", dir.path());
    assert!(
        log.contains("events=1"),
        "the server recovered the existing event:\n{log}"
    );
    assert!(log.contains("store closed cleanly"), "{log}");
    let log = serve_until("-INT", dir.path());
    assert!(log.contains("store closed cleanly"), "{log}");

    // The directory is released and intact.
    let store = open(dir.path(), Durability::Always);
    assert_eq!(store.stats().events, 1);
}
