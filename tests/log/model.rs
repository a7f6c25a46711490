//! Model-based test: random appends, reads, flushes to Parquet and reopens against an
//! in-memory reference.

use std::collections::{HashMap, HashSet};

use allsource::engine::{
    AppendRequest, Durability, Error, EventData, EventStore, ExpectedVersion, StoreConfig,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append { tenant: u8, parts: Vec<Part> },
    Read { tenant: u8, stream: u8, from: u64 },
    Flush,
    Reopen,
}

#[derive(Debug, Clone)]
struct Part {
    stream: u8,
    /// 0 any, 1 no_stream, 2 stream_exists, 3 exact(current), 4 exact(current + 1), 5 exact(0)
    expected: u8,
    /// Per event: an id from a small pool (to provoke retries and duplicates), or none.
    ids: Vec<Option<u8>>,
}

fn part() -> impl Strategy<Value = Part> {
    (
        0u8..4,
        0u8..6,
        prop::collection::vec(prop::option::weighted(0.5, 0u8..6), 1..4),
    )
        .prop_map(|(stream, expected, ids)| Part {
            stream,
            expected,
            ids,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..2, prop::collection::vec(part(), 1..3)).prop_map(|(tenant, parts)| Op::Append { tenant, parts }),
        3 => (0u8..2, 0u8..4, 1u64..6).prop_map(|(tenant, stream, from)| Op::Read { tenant, stream, from }),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
    ]
}

/// An event of the reference: (event_type, payload, id).
type ModelEvent = (String, String, String);

/// The reference: per stream, its events.
#[derive(Debug, Default)]
struct Model {
    streams: HashMap<(u8, u8), Vec<ModelEvent>>,
    counter: u64,
}

/// What the reference says an append does.
#[derive(Debug, PartialEq)]
enum Expect {
    Versions(Vec<(u8, u64)>, bool),
    WrongExpectedVersion,
    DuplicateEventId,
    InvalidEvent,
}

impl Model {
    fn version(&self, key: (u8, u8)) -> u64 {
        self.streams.get(&key).map_or(0, |s| s.len() as u64)
    }

    fn expected_version(&self, tenant: u8, part: &Part) -> ExpectedVersion {
        let current = self.version((tenant, part.stream));
        match part.expected {
            0 => ExpectedVersion::Any,
            1 => ExpectedVersion::NoStream,
            2 => ExpectedVersion::StreamExists,
            3 => ExpectedVersion::Exact(current),
            4 => ExpectedVersion::Exact(current + 1),
            _ => ExpectedVersion::Exact(0),
        }
    }

    /// Apply an append to the reference; returns the expected outcome and the request.
    fn append(&mut self, tenant: u8, parts: &[Part]) -> (Expect, AppendRequest) {
        let mut request = AppendRequest::new(format!("tenant-{tenant}"));
        let mut planned = Vec::new();
        for part in parts {
            let events: Vec<EventData> = part
                .ids
                .iter()
                .map(|id| {
                    self.counter += 1;
                    let data = EventData::new(
                        format!("type-{}", self.counter % 3),
                        format!(r#"{{"k":{}}}"#, self.counter),
                    );
                    match id {
                        Some(id) => data.with_event_id(format!("id-{id}")),
                        None => data,
                    }
                })
                .collect();
            let expected = self.expected_version(tenant, part);
            planned.push((part.stream, expected, events.clone()));
            request = request.stream(format!("s{}", part.stream), expected, events);
        }
        (self.outcome(tenant, &planned), request)
    }

    fn outcome(&mut self, tenant: u8, planned: &[(u8, ExpectedVersion, Vec<EventData>)]) -> Expect {
        let mut seen = HashSet::new();
        let mut found = Vec::new();
        let total: usize = planned.iter().map(|p| p.2.len()).sum();
        for (stream, _, events) in planned {
            let existing = self.streams.get(&(tenant, *stream));
            for event in events {
                let Some(id) = &event.event_id else { continue };
                if !seen.insert((*stream, id.clone())) {
                    return Expect::InvalidEvent;
                }
                if let Some(v) = existing.and_then(|s| s.iter().position(|e| &e.2 == id)) {
                    found.push((*stream, v as u64 + 1));
                }
            }
        }
        if !found.is_empty() {
            return if found.len() == total {
                Expect::Versions(found, true)
            } else {
                Expect::DuplicateEventId
            };
        }
        let mut overlay: HashMap<u8, u64> = HashMap::new();
        for (stream, expected, events) in planned {
            let version = overlay
                .get(stream)
                .copied()
                .unwrap_or_else(|| self.version((tenant, *stream)));
            if !expected.is_satisfied_by((version > 0).then_some(version)) {
                return Expect::WrongExpectedVersion;
            }
            overlay.insert(*stream, version + events.len() as u64);
        }
        let mut versions = Vec::new();
        for (stream, _, events) in planned {
            let log = self.streams.entry((tenant, *stream)).or_default();
            for event in events {
                // A generated id is unique; the model only needs it not to match the pool.
                let id = event
                    .event_id
                    .clone()
                    .unwrap_or_else(|| format!("generated-{}", log.len()));
                log.push((event.event_type.clone(), event.payload.clone(), id));
                versions.push((*stream, log.len() as u64));
            }
        }
        Expect::Versions(versions, false)
    }
}

fn observed(result: Result<allsource::engine::AppendResult, Error>) -> Expect {
    match result {
        Ok(r) => Expect::Versions(
            r.events
                .iter()
                .map(|a| {
                    (
                        a.entity_id
                            .trim_start_matches('s')
                            .parse()
                            .unwrap_or(u8::MAX),
                        a.version,
                    )
                })
                .collect(),
            r.deduplicated,
        ),
        Err(Error::WrongExpectedVersion { .. }) => Expect::WrongExpectedVersion,
        Err(Error::DuplicateEventId { .. }) => Expect::DuplicateEventId,
        Err(Error::InvalidEvent { .. }) => Expect::InvalidEvent,
        Err(other) => panic!("unexpected error {other}"),
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let config = StoreConfig::new(dir.path())
        .with_durability(Durability::Never)
        .with_partitions(4)
        .with_flush_interval_ms(0);
    let mut store =
        EventStore::open(config.clone()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Append { tenant, parts } => {
                let (expect, request) = model.append(tenant, &parts);
                let got = observed(runtime.block_on(store.append(request)));
                prop_assert_eq!(got, expect);
            }
            Op::Read {
                tenant,
                stream,
                from,
            } => {
                let events = runtime
                    .block_on(store.read_stream(
                        &format!("tenant-{tenant}"),
                        &format!("s{stream}"),
                        from,
                        usize::MAX,
                    ))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let got: Vec<_> = events
                    .iter()
                    .map(|e| (e.version, e.event_type.to_string(), e.payload.to_string()))
                    .collect();
                let want: Vec<_> = model
                    .streams
                    .get(&(tenant, stream))
                    .map(|s| {
                        s.iter()
                            .enumerate()
                            .map(|(i, e)| (i as u64 + 1, e.0.clone(), e.1.clone()))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|e| e.0 >= from)
                    .collect();
                prop_assert_eq!(got, want);
            }
            Op::Flush => {
                let report = runtime
                    .block_on(store.flush())
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(report.flushed_position, store.head_position());
            }
            Op::Reopen => {
                store
                    .close()
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                drop(store);
                store = EventStore::open(config.clone())
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
        }
    }
    let total: usize = model.streams.values().map(Vec::len).sum();
    prop_assert_eq!(store.stats().events, total as u64);
    prop_assert_eq!(store.head_position(), total as u64);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn the_log_behaves_like_the_reference(ops in prop::collection::vec(op(), 1..40)) {
        run(ops)?;
    }
}
