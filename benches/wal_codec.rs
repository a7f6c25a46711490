//! Micro benchmarks of the building blocks of the append and read paths.
//!
//! - `json_check_200B`: checking that a ~200-byte payload is JSON, against a full
//!   parser skipping the value;
//! - `partition_for`: routing one stream identity (the stable hash);
//! - `events_to_batch/N`: building the Arrow batch of N ~200-byte events, which the
//!   WAL writer does for every group commit;
//! - `append_never/N`: one in-process append of N events with durability `never`
//!   (validation, sequencing, WAL encoding and write, Arrow publish);
//! - `read_stream_buffer/100`: reading a 100-event stream from the buffer, its events
//!   interleaved with those of 99 other streams (as in the `query` benchmark);
//! - `entity_state_1000/{same_keys,lifecycle}`: an entity's state from 1000 payloads
//!   (what an automatic snapshot computes), merged forward one parsed payload at a time
//!   against folded newest-first; `same_keys` repeats the 200-byte payload, `lifecycle`
//!   opens with it and then changes a status and a nested field.

// criterion_group! generates a public function without docs.
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use allsource::engine::{
    AppendRequest, Durability, EventData, EventStore, ExpectedVersion, RecordedEvent, StoreConfig,
    event_schema, events_to_batch, json, partition_for, patch,
};

const PAYLOAD: &str = r#"{"order_id":"ord-000123","customer":{"id":"cust-42","tier":"gold"},"items":[{"sku":"A-1","qty":2,"price":19.99},{"sku":"B-7","qty":1,"price":5.5}],"total":45.48,"currency":"EUR","channel":"web"}"#;

fn recorded(n: u64) -> RecordedEvent {
    RecordedEvent {
        tenant: "bench".into(),
        entity_id: format!("entity-{n}").into(),
        event_type: "order.placed".into(),
        version: 1,
        partition: 3,
        offset: n,
        position: n,
        event_id: "0192f0c1-0000-7000-8000-000000000001".into(),
        timestamp_micros: 1_700_000_000_000_000,
        ingested_at_micros: 1_700_000_000_000_000,
        payload: PAYLOAD.into(),
        metadata: None,
    }
}

fn benches(c: &mut Criterion) {
    c.bench_function("partition_for", |b| {
        b.iter(|| partition_for("bench", "entity-123456", 32))
    });

    let mut group = c.benchmark_group("json_check_200B");
    group.throughput(Throughput::Bytes(PAYLOAD.len() as u64));
    group.bench_function("allsource", |b| b.iter(|| json::validate(PAYLOAD)));
    group.bench_function("serde_json_ignored_any", |b| {
        b.iter(|| serde_json::from_str::<serde::de::IgnoredAny>(PAYLOAD).is_ok())
    });
    group.finish();

    let schema = event_schema();
    let mut group = c.benchmark_group("events_to_batch");
    for n in [1u64, 100, 1000] {
        let events: Vec<_> = (0..n).map(recorded).collect();
        let refs: Vec<&RecordedEvent> = events.iter().collect();
        group.throughput(Throughput::Elements(n));
        group.bench_with_input(BenchmarkId::from_parameter(n), &refs, |b, refs| {
            b.iter(|| events_to_batch(&schema, refs))
        });
    }
    group.finish();

    entity_state(c);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = EventStore::open(StoreConfig::new(dir.path()).with_durability(Durability::Never))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut group = c.benchmark_group("append_never");
    for n in [1u64, 100, 1000] {
        group.throughput(Throughput::Elements(n));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                let events = (0..n)
                    .map(|_| EventData::new("order.placed", PAYLOAD))
                    .collect();
                let request =
                    AppendRequest::new("bench").stream("entity-1", ExpectedVersion::Any, events);
                runtime
                    .block_on(store.append(request))
                    .unwrap_or_else(|e| panic!("{e}"))
            })
        });
    }
    group.finish();

    let streams = 100u64;
    for chunk in 0..10u64 {
        let mut request = AppendRequest::new("bench");
        for round in chunk * 10..(chunk + 1) * 10 {
            for s in 0..streams {
                request = request.stream(
                    format!("stream-{s}"),
                    ExpectedVersion::Any,
                    vec![
                        EventData::new("order.placed", PAYLOAD).with_timestamp_micros(round as i64),
                    ],
                );
            }
        }
        runtime
            .block_on(store.append(request))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut group = c.benchmark_group("read_stream_buffer");
    group.throughput(Throughput::Elements(100));
    let mut next = 0u64;
    group.bench_function(BenchmarkId::from_parameter(100), |b| {
        b.iter(|| {
            next = (next + 1) % streams;
            let read = runtime
                .block_on(store.read_stream("bench", &format!("stream-{next}"), 1, usize::MAX))
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(read.len(), 100);
            read
        })
    });
    group.finish();
}

fn entity_state(c: &mut Criterion) {
    let same_keys: Vec<String> = (0..1000).map(|_| PAYLOAD.to_string()).collect();
    let lifecycle: Vec<String> = std::iter::once(PAYLOAD.to_string())
        .chain((1..1000).map(|i| {
            format!(
                r#"{{"status":"step-{i}","customer":{{"tier":"t{}"}},"seen":{i}}}"#,
                i % 3
            )
        }))
        .collect();
    let mut group = c.benchmark_group("entity_state_1000");
    group.throughput(Throughput::Elements(1000));
    for (name, payloads) in [("same_keys", &same_keys), ("lifecycle", &lifecycle)] {
        group.bench_function(BenchmarkId::new("forward", name), |b| {
            b.iter(|| {
                let mut state = serde_json::Value::Null;
                for text in payloads {
                    let parsed: serde_json::Value =
                        serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}"));
                    patch::merge_patch(&mut state, &parsed);
                }
                state
            })
        });
        group.bench_function(BenchmarkId::new("newest_first", name), |b| {
            b.iter(|| {
                patch::fold_newest_first(
                    serde_json::Value::Null,
                    payloads.iter().map(|p| p.as_str()),
                )
                .unwrap_or_else(|e| panic!("{e}"))
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = micro;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = benches
}
criterion_main!(micro);
