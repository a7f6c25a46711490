//! Optimistic concurrency under contention.

use std::collections::BTreeSet;

use allsource::engine::{Durability, Error, ExpectedVersion};

use crate::util::{append, event, open};

/// 16 tasks append to one stream, each with the exact version it last saw. Every
/// version must be won exactly once and the stream must have no gaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_writers_win_each_version_exactly_once() {
    const TASKS: u64 = 16;
    const WINS_PER_TASK: u64 = 25;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = open(dir.path(), Durability::Always);
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let (mut won, mut conflicts) = (Vec::new(), 0u64);
            let mut expected = 0;
            while (won.len() as u64) < WINS_PER_TASK {
                match append(
                    &store,
                    "contested",
                    ExpectedVersion::Exact(expected),
                    vec![event("tick", task)],
                )
                .await
                {
                    Ok(result) => {
                        let version = result.events[0].version;
                        assert_eq!(
                            version,
                            expected + 1,
                            "a win must land right after the expected version"
                        );
                        won.push(version);
                        expected = version;
                    }
                    Err(Error::WrongExpectedVersion { current, .. }) => {
                        let current = current.unwrap_or(0);
                        assert!(current > expected, "a conflict must report a newer version");
                        expected = current;
                        conflicts += 1;
                    }
                    Err(other) => panic!("unexpected error: {other}"),
                }
            }
            (won, conflicts)
        }));
    }
    let mut all = Vec::new();
    let mut conflicts = 0;
    for handle in handles {
        let (won, c) = handle.await.unwrap_or_else(|e| panic!("{e}"));
        all.extend(won);
        conflicts += c;
    }
    let total = TASKS * WINS_PER_TASK;
    let distinct: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(all.len() as u64, total, "every win counted once");
    assert_eq!(
        distinct,
        (1..=total).collect(),
        "versions 1..={total}, each won exactly once"
    );
    let events = store
        .read_stream("t", "contested", 1, usize::MAX)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
    assert_eq!(
        versions,
        (1..=total).collect::<Vec<_>>(),
        "the stream is gapless"
    );
    eprintln!("{total} versions won, {conflicts} conflicts retried");
    store.close().unwrap_or_else(|e| panic!("{e}"));
}
