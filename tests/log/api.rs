//! The in-process API: append, read, idempotency, atomicity, bad input, subscriptions.

use std::time::Duration;

use allsource::engine::{
    AppendRequest, Durability, Error, ErrorKind, EventData, EventStore, ExpectedVersion,
    StoreConfig, SubscriptionFilter,
};

use crate::util::{append, event, fill, open};

#[tokio::test]
async fn expected_version_forms_are_enforced_and_conflicts_carry_the_current_version() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = open(dir.path(), Durability::Never);
    let err = append(
        &store,
        "a",
        ExpectedVersion::StreamExists,
        vec![event("x", 0)],
    )
    .await
    .err();
    assert!(
        matches!(err, Some(Error::WrongExpectedVersion { current: None, .. })),
        "{err:?}"
    );
    append(&store, "a", ExpectedVersion::NoStream, vec![event("x", 1)])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = append(&store, "a", ExpectedVersion::NoStream, vec![event("x", 2)])
        .await
        .err();
    assert!(
        matches!(
            err,
            Some(Error::WrongExpectedVersion {
                current: Some(1),
                ..
            })
        ),
        "{err:?}"
    );
    append(
        &store,
        "a",
        ExpectedVersion::StreamExists,
        vec![event("x", 3)],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let err = append(&store, "a", ExpectedVersion::Exact(1), vec![event("x", 4)])
        .await
        .err();
    assert!(
        matches!(
            &err,
            Some(Error::WrongExpectedVersion {
                current: Some(2),
                expected: ExpectedVersion::Exact(1),
                ..
            })
        ),
        "{err:?}"
    );
    assert_eq!(err.map(|e| e.kind()), Some(ErrorKind::Conflict));
    let ok = append(&store, "a", ExpectedVersion::Exact(2), vec![event("x", 5)])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ok.events[0].version, 3);
    assert_eq!(store.stream_version("t", "a"), Some(3));
    assert_eq!(store.stream_version("t", "nope"), None);
    assert_eq!(
        store.stream_version("other-tenant", "a"),
        None,
        "streams are per tenant"
    );
}

/// A request spanning several streams is atomic: one failed check writes nothing.
#[tokio::test]
async fn a_multi_stream_request_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = open(dir.path(), Durability::Always);
    append(&store, "b", ExpectedVersion::Any, vec![event("x", 0)])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let request = AppendRequest::new("t")
        .stream(
            "a",
            ExpectedVersion::NoStream,
            vec![event("x", 1), event("x", 2)],
        )
        .stream("b", ExpectedVersion::NoStream, vec![event("x", 3)]);
    let err = store.append(request).await.err();
    assert!(
        matches!(err, Some(Error::WrongExpectedVersion { ref entity_id, .. }) if entity_id == "b")
    );
    assert!(
        store
            .read_stream("t", "a", 1, 10)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty()
    );
    assert_eq!(store.stats().events, 1);

    // Parts are checked in order: a later part may expect what an earlier one wrote.
    let request = AppendRequest::new("t")
        .stream("a", ExpectedVersion::NoStream, vec![event("x", 1)])
        .stream("a", ExpectedVersion::Exact(1), vec![event("x", 2)])
        .stream("b", ExpectedVersion::Exact(1), vec![event("x", 3)]);
    let result = store
        .append(request)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let versions: Vec<_> = result
        .events
        .iter()
        .map(|a| (&*a.entity_id, a.version))
        .collect();
    assert_eq!(versions, [("a", 1), ("a", 2), ("b", 2)]);
    let positions: Vec<_> = result.events.iter().map(|a| a.position).collect();
    assert_eq!(
        positions,
        [1, 2, 3],
        "one request takes consecutive positions"
    );
}

#[tokio::test]
async fn a_retried_request_returns_the_original_result_and_appends_nothing() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = open(dir.path(), Durability::Always);
    let request = AppendRequest::new("t").stream(
        "order-1",
        ExpectedVersion::NoStream,
        vec![
            EventData::new("order.placed", "{}")
                .with_event_id("0192f0c1-0000-7000-8000-000000000001"),
            EventData::new("order.paid", "{}").with_event_id("payment-42"),
        ],
    );
    let first = store
        .append(request.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    append(&store, "order-1", ExpectedVersion::Any, vec![event("x", 9)])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The same request again: its expected version no longer holds, but it is a retry.
    let retry = store
        .append(request)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(retry.deduplicated && !first.deduplicated);
    assert_eq!(retry.events, first.events);
    assert_eq!(store.stats().events, 3);
    // A retry survives reopening.
    store.close().unwrap_or_else(|e| panic!("{e}"));
    drop(store);
    let store = open(dir.path(), Durability::Always);
    let again = AppendRequest::new("t").stream(
        "order-1",
        ExpectedVersion::Any,
        vec![EventData::new("order.paid", "{}").with_event_id("payment-42")],
    );
    let result = store.append(again).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((result.deduplicated, result.events[0].version), (true, 2));
    // Some ids known, some new: neither a retry nor a new request.
    let mixed = AppendRequest::new("t").stream(
        "order-1",
        ExpectedVersion::Any,
        vec![
            EventData::new("order.paid", "{}").with_event_id("payment-42"),
            EventData::new("order.shipped", "{}").with_event_id("ship-1"),
        ],
    );
    let err = store.append(mixed).await.err();
    assert!(
        matches!(err, Some(Error::DuplicateEventId { ref event_id, .. }) if event_id == "payment-42"),
        "{err:?}"
    );
    let twice = AppendRequest::new("t").stream(
        "order-2",
        ExpectedVersion::Any,
        vec![
            EventData::new("a", "{}").with_event_id("x"),
            EventData::new("b", "{}").with_event_id("x"),
        ],
    );
    assert!(matches!(
        store.append(twice).await,
        Err(Error::InvalidEvent { index: 1, .. })
    ));
    assert_eq!(store.stats().events, 3, "rejected requests wrote nothing");
}

#[tokio::test]
async fn bad_input_is_a_typed_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = StoreConfig {
        max_payload_bytes: 1000,
        ..StoreConfig::new(dir.path())
    };
    let store = EventStore::open(config).unwrap_or_else(|e| panic!("{e}"));
    let good = || EventData::new("ok", "{}");
    type Case = (AppendRequest, fn(&Error) -> bool);
    let cases: Vec<Case> = vec![
        (
            AppendRequest::new("t").stream("", ExpectedVersion::Any, vec![good()]),
            |e| matches!(e, Error::InvalidRequest(_)),
        ),
        (
            AppendRequest::new("").stream("a", ExpectedVersion::Any, vec![good()]),
            |e| matches!(e, Error::InvalidRequest(_)),
        ),
        (
            AppendRequest::new("t").stream("a", ExpectedVersion::Any, vec![]),
            |e| matches!(e, Error::InvalidRequest(_)),
        ),
        (
            AppendRequest::new("t").stream(
                "a",
                ExpectedVersion::Any,
                vec![good(), EventData::new("", "{}")],
            ),
            |e| matches!(e, Error::InvalidEvent { index: 1, .. }),
        ),
        (
            AppendRequest::new("t").stream(
                "a",
                ExpectedVersion::Any,
                vec![good(), EventData::new("x", "{\"a\":")],
            ),
            |e| matches!(e, Error::InvalidEvent { index: 1, .. }),
        ),
        (
            AppendRequest::new("t").stream(
                "a",
                ExpectedVersion::Any,
                vec![EventData::new("x", format!("\"{}\"", "y".repeat(1000)))],
            ),
            |e| {
                matches!(
                    e,
                    Error::TooLarge {
                        field: "payload",
                        size: 1002,
                        limit: 1000,
                        ..
                    }
                )
            },
        ),
    ];
    for (request, expected) in cases {
        let err = store.append(request.clone()).await.err();
        assert!(
            err.as_ref().is_some_and(expected),
            "{request:?} gave {err:?}"
        );
    }
    assert!(matches!(
        "latest".parse::<ExpectedVersion>(),
        Err(Error::InvalidExpectedVersion(_))
    ));
    let stats = store.stats();
    assert_eq!((stats.events, stats.streams, stats.wal.records), (0, 0, 0));
    assert_eq!(store.head_position(), 0);
}

#[tokio::test]
async fn read_partition_returns_offsets_in_order_and_rejects_unknown_partitions() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = EventStore::open(StoreConfig::new(dir.path()).with_partitions(4))
        .unwrap_or_else(|e| panic!("{e}"));
    fill(&store, 200, "e", 10).await;
    let mut total = 0;
    for p in 0..4 {
        let batches = store
            .read_partition(p, 0, usize::MAX)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let events: Vec<_> = batches
            .iter()
            .flat_map(|b| (0..b.num_rows()).map(move |r| allsource::engine::event_at(b, r)))
            .collect();
        let offsets: Vec<u64> = events.iter().map(|e| e.offset).collect();
        assert_eq!(
            offsets,
            (0..events.len() as u64).collect::<Vec<_>>(),
            "partition {p} is gapless"
        );
        assert!(events.iter().all(|e| e.partition == p));
        let tail = store
            .read_partition(p, 3, 2)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let tail_offsets: Vec<u64> = tail
            .iter()
            .flat_map(|b| (0..b.num_rows()).map(move |r| allsource::engine::event_at(b, r).offset))
            .collect();
        assert_eq!(tail_offsets, [3, 4]);
        total += events.len();
    }
    assert_eq!(total, 200);
    assert!(matches!(
        store.read_partition(4, 0, 1).await,
        Err(Error::PartitionOutOfRange {
            partition: 4,
            count: 4
        })
    ));
}

/// A subscription from position 0 while a writer appends: catch-up then live, every
/// event of the tenant exactly once and in position order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_catches_up_then_follows_live_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = open(dir.path(), Durability::Never);
    fill(&store, 500, "e", 13).await;
    let mut subscription = store.subscribe("t", 0, SubscriptionFilter::all());
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 500..2500u64 {
                let events = vec![event("x", i)];
                let request = AppendRequest::new("t")
                    .stream(format!("e{}", i % 13), ExpectedVersion::Any, events)
                    .stream(
                        format!("other-{i}"),
                        ExpectedVersion::Any,
                        vec![event("noise", i)],
                    );
                // Another tenant's events share the log but never reach this subscriber.
                let foreign =
                    AppendRequest::new("u").stream("e1", ExpectedVersion::Any, vec![event("x", i)]);
                store
                    .append(request)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                store
                    .append(foreign)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        })
    };
    let mut positions = Vec::new();
    let mut ns = Vec::new();
    while ns.len() < 2500 {
        let batch = tokio::time::timeout(Duration::from_secs(20), subscription.next_batch())
            .await
            .unwrap_or_else(|_| panic!("subscription stalled after {} events", ns.len()))
            .unwrap_or_else(|e| panic!("{e}"));
        for e in batch {
            assert_eq!(&*e.tenant, "t");
            positions.push(e.position);
            if &*e.event_type == "x" {
                ns.push(super::recovery_n(&e.payload));
            }
        }
    }
    writer.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ns,
        (0..2500).collect::<Vec<_>>(),
        "every event once, in order"
    );
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "positions strictly increase"
    );

    // A filtered subscription, resumed from the position the first one reached.
    let resume_at = subscription.position();
    append(&store, "e5", ExpectedVersion::Any, vec![event("y", 1)])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    append(&store, "e6", ExpectedVersion::Any, vec![event("y", 2)])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut resumed = store.subscribe("t", resume_at, SubscriptionFilter::stream("e6"));
    let got = resumed.next_batch().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.len(), 1);
    assert_eq!((&*got[0].entity_id, &*got[0].event_type), ("e6", "y"));
    let mut by_type = store.subscribe("t", 0, SubscriptionFilter::event_types(["y"]));
    assert_eq!(by_type.next_batch().await.map(|b| b.len()).unwrap_or(0), 2);
}

/// A subscriber that reads nothing while many events arrive costs no memory and is
/// never skipped ahead: it is told its lag and then reads every event.
#[tokio::test]
async fn a_slow_subscriber_is_told_its_lag_and_misses_nothing() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = open(dir.path(), Durability::Never);
    let mut subscription = store.subscribe("t", store.head_position(), SubscriptionFilter::all());
    for i in 0..50u64 {
        let events = (0..200).map(|k| event("x", i * 200 + k)).collect();
        append(&store, &format!("e{i}"), ExpectedVersion::Any, events)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(subscription.lag(), 10_000);
    let mut seen = 0u64;
    let mut largest_step = 0;
    while seen < 10_000 {
        let batch = subscription
            .next_batch()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        largest_step = largest_step.max(batch.len());
        for e in batch {
            assert_eq!(e.position, seen);
            seen += 1;
        }
    }
    assert!(
        largest_step <= 1024,
        "a step reads at most subscription_chunk_events"
    );
    assert_eq!(subscription.lag(), 0);
    store.close().unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        subscription.next_batch().await,
        Err(Error::Closed)
    ));
    assert!(matches!(
        append(&store, "e", ExpectedVersion::Any, vec![event("x", 0)]).await,
        Err(Error::Closed)
    ));
}

#[tokio::test]
async fn submitted_appends_are_sequenced_in_order_and_fail_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = open(dir.path(), Durability::Always);
    let request = |expected, n| {
        AppendRequest::new("t").stream("a", expected, vec![event("x", n), event("x", n + 1)])
    };
    // The second expects the version the first leaves, before the first is durable.
    let first = store
        .submit(request(ExpectedVersion::NoStream, 0))
        .unwrap_or_else(|e| panic!("{e}"));
    let second = store
        .submit(request(ExpectedVersion::Exact(2), 2))
        .unwrap_or_else(|e| panic!("{e}"));
    // A conflict is found at submit time, and writes nothing.
    let conflict = store.submit(request(ExpectedVersion::Exact(2), 4)).err();
    assert!(
        matches!(
            conflict,
            Some(Error::WrongExpectedVersion {
                current: Some(4),
                ..
            })
        ),
        "{conflict:?}"
    );
    // Awaited out of order, each still gets its own acknowledgement.
    let second = second.durable().await.unwrap_or_else(|e| panic!("{e}"));
    let first = first.durable().await.unwrap_or_else(|e| panic!("{e}"));
    let versions = |r: &allsource::engine::AppendResult| {
        r.events.iter().map(|e| e.version).collect::<Vec<_>>()
    };
    assert_eq!(versions(&first), vec![1, 2]);
    assert_eq!(versions(&second), vec![3, 4]);
    let read = store
        .read_stream("t", "a", 1, usize::MAX)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read.len(), 4);
}
