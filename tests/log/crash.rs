//! Crash safety: every acknowledged event survives SIGKILL.
//!
//! The test runs its own binary again as a child (selected by an environment
//! variable) that appends with durability `always` from several tasks and prints one
//! `ACK` line per acknowledged event. The parent kills it with SIGKILL at a random
//! moment, reopens the store and checks that every acknowledged event is there, that
//! every stream is gapless and in order, and that every request is whole or absent.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use allsource::engine::{
    AppendRequest, Durability, EventData, EventStore, ExpectedVersion, StoreConfig,
};

use crate::util::open;

const CHILD_ENV: &str = "ALLSOURCE_CRASH_CHILD_DIR";
const ROUND_ENV: &str = "ALLSOURCE_CRASH_ROUND";
const ROUNDS: u64 = 24;
const WRITERS: u64 = 4;

#[test]
fn acknowledged_events_survive_sigkill() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let round: u64 = std::env::var(ROUND_ENV)
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        run_child(&dir, round);
        return;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut rng = seed();
    eprintln!("crash test seed {rng}");
    let mut acked: Vec<Ack> = Vec::new();
    for round in 0..ROUNDS {
        let kill_after = Duration::from_millis(5 + next(&mut rng) % 200);
        let acks = run_and_kill(dir.path(), round, kill_after);
        acked.extend(acks);
        check_store(dir.path(), &acked, round);
    }
    assert!(
        acked.len() > 100,
        "the child acknowledged only {} events",
        acked.len()
    );
    eprintln!(
        "{ROUNDS} SIGKILL rounds, {} acknowledged events all present",
        acked.len()
    );
}

/// One acknowledged event, as the child reported it.
#[derive(Debug, Clone)]
struct Ack {
    entity_id: String,
    version: u64,
    request: String,
}

fn run_and_kill(dir: &std::path::Path, round: u64, kill_after: Duration) -> Vec<Ack> {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let mut child = Command::new(exe)
        .args([
            "log::crash::acknowledged_events_survive_sigkill",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, dir)
        .env(ROUND_ENV, round.to_string())
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning the child: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Wait for the first acknowledgement, then let the child run a random while.
    while lines.is_empty() && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(50)) {
            lines.push(line);
        }
    }
    std::thread::sleep(kill_after);
    child.kill().unwrap_or_else(|e| panic!("SIGKILL: {e}"));
    let _ = child.wait();
    reader.join().unwrap_or_else(|_| panic!("reader thread"));
    lines.extend(rx.try_iter());
    lines
        .iter()
        .filter_map(|line| {
            let mut parts = line.strip_prefix("ACK ")?.split(' ');
            Some(Ack {
                entity_id: parts.next()?.to_string(),
                version: parts.next()?.parse().ok()?,
                request: parts.next()?.to_string(),
            })
        })
        .collect()
}

fn check_store(dir: &std::path::Path, acked: &[Ack], round: u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let store = open(dir, Durability::Always);
    let mut streams: HashMap<String, Vec<allsource::engine::RecordedEvent>> = HashMap::new();
    let entities = (0..WRITERS).flat_map(|w| {
        [
            format!("solo-{w}"),
            format!("pair-a-{w}"),
            format!("pair-b-{w}"),
        ]
    });
    for entity in entities {
        let events = runtime
            .block_on(store.read_stream("t", &entity, 1, usize::MAX))
            .unwrap_or_else(|e| panic!("{e}"));
        let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
        assert_eq!(
            versions,
            (1..=events.len() as u64).collect::<Vec<_>>(),
            "round {round}: {entity} has gaps"
        );
        streams.insert(entity, events);
    }
    for ack in acked {
        let event = streams
            .get(&ack.entity_id)
            .and_then(|events| events.get(ack.version as usize - 1))
            .unwrap_or_else(|| panic!("round {round}: acknowledged {ack:?} is missing"));
        let request = request_of(&event.payload);
        assert_eq!(
            request, ack.request,
            "round {round}: {ack:?} has another event in its place"
        );
    }
    let mut per_request: HashMap<String, (u64, u64)> = HashMap::new();
    for event in streams.values().flatten() {
        let payload: serde_json::Value =
            serde_json::from_str(&event.payload).unwrap_or_else(|e| panic!("{e}"));
        let entry = per_request.entry(request_of(&event.payload)).or_default();
        entry.0 += 1;
        entry.1 = payload["of"].as_u64().unwrap_or(0);
    }
    for (request, (found, of)) in per_request {
        assert_eq!(
            found, of,
            "round {round}: request {request} is only partly present"
        );
    }
    store.close().unwrap_or_else(|e| panic!("{e}"));
}

fn request_of(payload: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(payload).unwrap_or_else(|e| panic!("{e}"));
    value["req"].as_str().unwrap_or_default().to_string()
}

/// The child: append forever from several tasks, printing each acknowledgement.
fn run_child(dir: &str, round: u64) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    runtime.block_on(async move {
        // Small segments and frequent flushes, so that the WAL rotates, drops flushed
        // segments and reuses their files while the child is being killed.
        let mut config = StoreConfig::new(dir)
            .with_durability(Durability::Always)
            .with_wal_segment_bytes(16 << 10);
        config.flush_min_events = 256;
        let store = EventStore::open(config).unwrap_or_else(|e| panic!("{e}"));
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| tokio::spawn(child_writer(store.clone(), w, round)))
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    });
}

async fn child_writer(store: EventStore, writer: u64, round: u64) {
    use std::io::Write;
    for i in 0u64.. {
        let req = format!("r{round}-w{writer}-{i}");
        let payload = |n: u64, of: u64| format!(r#"{{"req":"{req}","n":{n},"of":{of}}}"#);
        let request = if i % 3 == 0 {
            // One request spanning two streams: both parts or neither.
            AppendRequest::new("t")
                .stream(
                    format!("pair-a-{writer}"),
                    ExpectedVersion::Any,
                    vec![EventData::new("a", payload(0, 3)); 1],
                )
                .stream(
                    format!("pair-b-{writer}"),
                    ExpectedVersion::Any,
                    vec![
                        EventData::new("b", payload(1, 3)),
                        EventData::new("b", payload(2, 3)),
                    ],
                )
        } else {
            let n = 1 + i % 4;
            let events = (0..n)
                .map(|k| EventData::new("solo", payload(k, n)))
                .collect();
            AppendRequest::new("t").stream(format!("solo-{writer}"), ExpectedVersion::Any, events)
        };
        let Ok(result) = store.append(request).await else {
            return;
        };
        let mut out = std::io::stdout().lock();
        for ack in result.events {
            let _ = writeln!(out, "ACK {} {} {req}", ack.entity_id, ack.version);
        }
    }
}

fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    nanos | 1
}

fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}
