//! Projections: totals per key kept up to date over the live log, read one key at a
//! time, equal to the same query run in batch; the built-in ones; replays from a
//! position or a time, with progress and cancellation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use allsource::engine::{AppendRequest, Durability, EventData, EventStore, ExpectedVersion};
use allsource::operators::ddl::parse;
use allsource::operators::projection::rows_json;
use allsource::operators::{Error, Kind, Pipelines, ReplayFrom, ReplayInfo, ReplayStatus};
use allsource::sql::EventQl;
use serde_json::{Map, Value, json};

use super::lines;
use crate::util;

pub(super) const TENANT: &str = "acme";

/// The seed's `user-statistics` projection: `created_at` from `user.created`;
/// `order.placed` counts one order and adds its amount, `order.refunded` takes them
/// back; other events change nothing.
const USER_STATISTICS: &str = "CREATE PROJECTION user_statistics AS \
    SELECT entity_id, \
      MAX(CASE WHEN event_type = 'user.created' THEN timestamp END) AS created_at, \
      SUM(CASE event_type WHEN 'order.placed' THEN 1 WHEN 'order.refunded' THEN -1 ELSE 0 END) \
        AS order_count, \
      SUM(CASE event_type WHEN 'order.placed' THEN CAST(payload->>'amount' AS DOUBLE) \
        WHEN 'order.refunded' THEN -CAST(payload->>'amount' AS DOUBLE) ELSE 0 END) AS total_spent \
    FROM events GROUP BY entity_id";

pub(super) async fn append_one(store: &EventStore, entity: &str, kind: &str, payload: Value) {
    store
        .append(AppendRequest::new(TENANT).stream(
            entity,
            ExpectedVersion::Any,
            vec![EventData::new(kind, payload.to_string())],
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

pub(super) struct Fixture {
    _dir: tempfile::TempDir,
    pub(super) store: EventStore,
    pub(super) pipelines: Arc<Pipelines>,
    pub(super) eventql: EventQl,
}

pub(super) async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = util::open(dir.path(), Durability::Never);
    let (pipelines, eventql) = open(&store).await;
    Fixture {
        _dir: dir,
        store,
        pipelines,
        eventql,
    }
}

pub(super) async fn open(store: &EventStore) -> (Arc<Pipelines>, EventQl) {
    let planner = EventQl::new(store.clone());
    let pipelines = Pipelines::open(store.clone(), planner.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let eventql = planner.with_extra_tables(Arc::clone(&pipelines) as _);
    (pipelines, eventql)
}

pub(super) async fn execute(pipelines: &Pipelines, sql: &str) -> Result<(), Error> {
    let statement = parse(sql)?.unwrap_or_else(|| panic!("{sql}: not a pipeline statement"));
    pipelines.execute(TENANT, statement).await.map(|_| ())
}

pub(super) async fn rows(eventql: &EventQl, sql: &str) -> Vec<String> {
    lines(
        &eventql
            .query(TENANT, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}")),
    )
}

/// Poll until the projection `name`'s table equals `batch` (a query over `events`).
async fn table_becomes(eventql: &EventQl, name: &str, batch: &str) {
    let expected = rows(eventql, batch).await;
    assert!(!expected.is_empty(), "{batch}: no rows to compare");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = rows(eventql, &format!("SELECT * FROM {name}")).await;
        if got == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: {got:#?}\nexpected {expected:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn lookup(pipelines: &Pipelines, name: &str, key: &str) -> Option<Map<String, Value>> {
    let (schema, row) = pipelines
        .lookup(TENANT, name, key)
        .await
        .unwrap_or_else(|e| panic!("{name}/{key}: {e}"));
    let row = row?;
    rows_json(&schema, &[row])
        .unwrap_or_else(|e| panic!("{e}"))
        .pop()
}

/// Poll until the projection has read the whole log.
pub(super) async fn caught_up(f: &Fixture, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let head = f.store.head_position();
    while f
        .pipelines
        .get(TENANT, name)
        .is_none_or(|p| p.position < head)
    {
        assert!(Instant::now() < deadline, "{name} did not catch up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_user_statistics_projection_reads_one_user_at_a_time() {
    let f = fixture().await;
    append_one(&f.store, "user-123", "user.created", json!({"name": "Ada"})).await;
    append_one(&f.store, "user-7", "user.created", json!({"name": "Bo"})).await;
    execute(&f.pipelines, USER_STATISTICS)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for (entity, kind, amount) in [
        ("user-123", "order.placed", 30.0),
        ("user-123", "order.placed", 12.5),
        ("user-7", "order.placed", 99.0),
        ("user-123", "order.refunded", 30.0),
        ("user-123", "profile.updated", 1000.0),
    ] {
        append_one(&f.store, entity, kind, json!({"amount": amount})).await;
    }
    caught_up(&f, "user_statistics").await;
    let user = lookup(&f.pipelines, "user_statistics", "user-123")
        .await
        .unwrap_or_else(|| panic!("no row for user-123"));
    assert_eq!(user["order_count"], json!(1), "{user:?}");
    assert_eq!(user["total_spent"], json!(12.5), "{user:?}");
    assert!(user["created_at"].is_string(), "{user:?}");
    let other = lookup(&f.pipelines, "user_statistics", "user-7").await;
    assert_eq!(
        other.map(|r| (r["order_count"].clone(), r["total_spent"].clone())),
        Some((json!(1), json!(99.0)))
    );
    assert_eq!(
        lookup(&f.pipelines, "user_statistics", "nobody").await,
        None
    );

    // The table is the batch query's result.
    let query = USER_STATISTICS
        .split_once(" AS ")
        .map(|(_, q)| q)
        .unwrap_or_else(|| panic!("a query"));
    table_becomes(&f.eventql, "user_statistics", query).await;

    // A projection is listed as one, and read by key only as one.
    let shown = f
        .pipelines
        .execute(
            TENANT,
            parse("SHOW PROJECTIONS")
                .ok()
                .flatten()
                .unwrap_or_else(|| panic!("parsed")),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(shown.num_rows(), 1);
    let shown = f
        .pipelines
        .execute(
            TENANT,
            parse("SHOW PIPELINES")
                .ok()
                .flatten()
                .unwrap_or_else(|| panic!("parsed")),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(shown.num_rows(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_in_projections_equal_entity_state_and_counts_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = util::open(dir.path(), Durability::Never);
    let (pipelines, eventql) = open(&store).await;
    let f = Fixture {
        _dir: dir,
        store,
        pipelines,
        eventql,
    };
    execute(&f.pipelines, "CREATE PROJECTION entity_snapshot")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    execute(&f.pipelines, "CREATE PROJECTION event_counter;")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Patches that set, overwrite, nest and remove (null) members.
    let patch = |i: u64| match i % 4 {
        0 => json!({"n": i, "tags": {"a": i}}),
        1 => json!({"tags": {"b": i}, "gone": true}),
        2 => json!({"gone": null, "tags": {"a": null}}),
        _ => json!({"n": null, "last": i}),
    };
    for i in 0..240u64 {
        let entity = format!("e{}", (i * 7) % 13);
        append_one(&f.store, &entity, &format!("kind.{}", i % 5), patch(i)).await;
    }
    caught_up(&f, "entity_snapshot").await;
    caught_up(&f, "event_counter").await;

    let check_entities = async |pipelines: &Pipelines, store: &EventStore| {
        for e in 0..13 {
            let entity = format!("e{e}");
            let state = store
                .entity_state(TENANT, &entity, None)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|| panic!("{entity} has a state"));
            let row = lookup(pipelines, "entity_snapshot", &entity)
                .await
                .unwrap_or_else(|| panic!("no snapshot of {entity}"));
            assert_eq!(row["state"], state.state, "{entity}");
            assert_eq!(row["version"], json!(state.version), "{entity}");
        }
    };
    check_entities(&f.pipelines, &f.store).await;
    let counts = "SELECT event_type, COUNT(*) AS event_count, MAX(timestamp) AS last_event_at \
                  FROM events GROUP BY event_type";
    table_becomes(&f.eventql, "event_counter", counts).await;
    let kind = lookup(&f.pipelines, "event_counter", "kind.3")
        .await
        .unwrap_or_else(|| panic!("kind.3 counted"));
    assert_eq!(kind["event_count"], json!(48));

    // Stopped and opened again: each resumes from its checkpoint and goes on.
    f.pipelines.stop().await;
    let (pipelines, eventql) = open(&f.store).await;
    let resumed = pipelines
        .get(TENANT, "entity_snapshot")
        .and_then(|p| p.checkpoint)
        .map(|c| c.resumed_from);
    assert_eq!(resumed, Some(f.store.head_position()));
    check_entities(&pipelines, &f.store).await;
    for i in 240..260u64 {
        append_one(&f.store, &format!("e{}", i % 13), "kind.late", patch(i)).await;
    }
    let f = Fixture {
        pipelines,
        eventql,
        ..f
    };
    caught_up(&f, "entity_snapshot").await;
    check_entities(&f.pipelines, &f.store).await;
    table_becomes(&f.eventql, "event_counter", counts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projection_definitions_that_cannot_be_read_by_key_are_refused() {
    let f = fixture().await;
    append_one(&f.store, "a", "k", json!({})).await;
    for (sql, says) in [
        (
            "CREATE PROJECTION hourly AS SELECT window_start, COUNT(*) AS n FROM \
             TUMBLE(events, timestamp, INTERVAL '1' HOUR) GROUP BY window_start, window_end",
            "groups by one column",
        ),
        (
            "CREATE PROJECTION pairs AS SELECT entity_id, event_type, COUNT(*) AS n \
             FROM events GROUP BY entity_id, event_type",
            "groups by one column",
        ),
        (
            "CREATE PROJECTION keyless AS SELECT COUNT(*) AS n FROM events GROUP BY entity_id",
            "returns it",
        ),
        (
            "CREATE PROJECTION raw AS SELECT entity_id FROM events",
            "groups by one column",
        ),
        ("CREATE PROJECTION totals", "not a built-in projection"),
    ] {
        let outcome = match parse(sql) {
            Ok(Some(statement)) => f.pipelines.execute(TENANT, statement).await.map(|_| ()),
            Ok(None) => panic!("{sql}: not a statement"),
            Err(e) => Err(e),
        };
        match outcome {
            Err(e) => assert!(e.to_string().contains(says), "{sql}: {e}"),
            Ok(()) => panic!("{sql}: accepted"),
        }
    }
    assert!(f.pipelines.list(TENANT).is_empty());

    // One namespace for pipelines and projections; each dropped as what it is.
    execute(&f.pipelines, "CREATE PROJECTION event_counter")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let clash = execute(
        &f.pipelines,
        "CREATE PIPELINE event_counter AS SELECT * FROM events",
    )
    .await;
    assert!(
        matches!(
            &clash,
            Err(Error::Exists {
                kind: Kind::Projection,
                ..
            })
        ),
        "{clash:?}"
    );
    let wrong = execute(&f.pipelines, "DROP PIPELINE event_counter").await;
    assert!(
        matches!(&wrong, Err(e) if e.to_string().contains("DROP PROJECTION event_counter")),
        "{wrong:?}"
    );
    execute(
        &f.pipelines,
        "CREATE PIPELINE copy AS SELECT entity_id FROM events",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let not_projection = f.pipelines.lookup(TENANT, "copy", "a").await;
    assert!(
        matches!(
            not_projection,
            Err(Error::NotFound {
                kind: Kind::Projection,
                ..
            })
        ),
        "{not_projection:?}"
    );
    execute(&f.pipelines, "DROP PROJECTION event_counter")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f.pipelines.list(TENANT).len(), 1);
}

/// The log position of the `n`th event (from 0).
async fn position_of(eventql: &EventQl, n: usize) -> u64 {
    let sql = format!("SELECT position FROM events ORDER BY position LIMIT 1 OFFSET {n}");
    let found = rows(eventql, &sql).await;
    found
        .first()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no event {n}: {found:?}"))
}

async fn finished(pipelines: &Pipelines, id: &str) -> ReplayInfo {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = pipelines
            .replay_info(TENANT, id)
            .unwrap_or_else(|| panic!("replay {id} listed"));
        if info.status.is_finished() {
            return info;
        }
        assert!(Instant::now() < deadline, "replay did not finish: {info:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const PER_ENTITY: &str = "SELECT entity_id, COUNT(*) AS n, \
    SUM(CAST(payload->>'i' AS BIGINT)) AS total FROM events";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_recomputes_from_a_position_or_a_time_and_can_be_cancelled() {
    let f = fixture().await;
    for i in 0..200 {
        append_one(&f.store, &format!("u{}", i % 7), "tick", json!({"i": i})).await;
    }
    execute(
        &f.pipelines,
        &format!("CREATE PROJECTION per_entity AS {PER_ENTITY} GROUP BY entity_id"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    table_becomes(
        &f.eventql,
        "per_entity",
        &format!("{PER_ENTITY} GROUP BY entity_id"),
    )
    .await;

    // From a position: only the events from there on count.
    let from = position_of(&f.eventql, 120).await;
    let started = f
        .pipelines
        .replay(TENANT, "per_entity", ReplayFrom::Position(from), 16, false)
        .unwrap_or_else(|e| panic!("{e}"));
    let done = finished(&f.pipelines, &started.id).await;
    assert_eq!(done.status, ReplayStatus::Completed, "{done:?}");
    assert_eq!((done.events, done.percent), (80, 100.0), "{done:?}");
    assert_eq!(done.from_position, Some(from));
    assert!(done.events_per_second > 0.0);
    let since = format!("{PER_ENTITY} WHERE position >= {from} GROUP BY entity_id");
    table_becomes(&f.eventql, "per_entity", &since).await;
    let info = f
        .pipelines
        .get(TENANT, "per_entity")
        .unwrap_or_else(|| panic!("listed"));
    assert_eq!(
        (info.spec.kind, info.spec.from_position),
        (Kind::Projection, from)
    );

    // It goes on with the live log, and after a restart, from its checkpoint.
    for i in 200..230 {
        append_one(&f.store, &format!("u{}", i % 7), "tick", json!({"i": i})).await;
    }
    table_becomes(&f.eventql, "per_entity", &since).await;
    f.pipelines.stop().await;
    let (pipelines, eventql) = open(&f.store).await;
    table_becomes(&eventql, "per_entity", &since).await;
    let f = Fixture {
        pipelines,
        eventql,
        ..f
    };

    // From a time: the first event ingested then, and every one after it.
    let at = rows(
        &f.eventql,
        "SELECT CAST(ingested_at AS BIGINT) FROM events ORDER BY position LIMIT 1 OFFSET 150",
    )
    .await;
    let micros: i64 = at
        .first()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{at:?}"));
    let by_time = f
        .pipelines
        .replay(
            TENANT,
            "per_entity",
            ReplayFrom::IngestedAt(micros),
            1000,
            true,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let done = finished(&f.pipelines, &by_time.id).await;
    assert_eq!(done.status, ReplayStatus::Completed, "{done:?}");
    let first = done.from_position.unwrap_or_else(|| panic!("{done:?}"));
    assert!(first <= position_of(&f.eventql, 150).await, "{done:?}");
    let since = format!("{PER_ENTITY} WHERE position >= {first} GROUP BY entity_id");
    table_becomes(&f.eventql, "per_entity", &since).await;

    // A long replay is cancelled, and the projection stays as it was; one replay
    // of a projection at a time.
    for i in 0..20_000 {
        if i % 1000 == 0 {
            tokio::task::yield_now().await;
        }
        append_one(&f.store, "bulk", "tick", json!({"i": i})).await;
    }
    table_becomes(&f.eventql, "per_entity", &since).await;
    let before = f
        .pipelines
        .get(TENANT, "per_entity")
        .map(|p| p.spec.id)
        .unwrap_or_else(|| panic!("listed"));
    let slow = f
        .pipelines
        .replay(TENANT, "per_entity", ReplayFrom::Position(0), 1, false)
        .unwrap_or_else(|e| panic!("{e}"));
    let second = f
        .pipelines
        .replay(TENANT, "per_entity", ReplayFrom::Position(0), 1, false);
    assert!(matches!(second, Err(Error::Conflict(_))), "{second:?}");
    let cancelled = f
        .pipelines
        .cancel_replay(TENANT, &slow.id)
        .await
        .unwrap_or_else(|| panic!("listed"));
    assert_eq!(cancelled.status, ReplayStatus::Cancelled, "{cancelled:?}");
    assert!(cancelled.percent < 100.0, "{cancelled:?}");
    let after = f.pipelines.get(TENANT, "per_entity").map(|p| p.spec.id);
    assert_eq!(after.as_deref(), Some(before.as_str()));
    table_becomes(&f.eventql, "per_entity", &since).await;
    // Replays are kept in memory: the ones since the restart.
    assert_eq!(f.pipelines.replays(TENANT).len(), 2);
    assert!(f.pipelines.delete_replay(TENANT, &slow.id).await.is_some());
    assert_eq!(f.pipelines.replays(TENANT).len(), 1);
    let missing = f
        .pipelines
        .replay(TENANT, "nothing", ReplayFrom::Position(0), 10, false);
    assert!(
        matches!(missing, Err(Error::NotFound { .. })),
        "{missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_receive_each_changed_row() {
    let f = fixture().await;
    execute(
        &f.pipelines,
        &format!("CREATE PROJECTION per_entity AS {PER_ENTITY} GROUP BY entity_id"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let (schema, mut updates) = f
        .pipelines
        .updates(TENANT, "per_entity")
        .unwrap_or_else(|| panic!("listed"));
    for i in 1..=3 {
        append_one(&f.store, "u1", "tick", json!({"i": i})).await;
    }
    let mut seen = Vec::new();
    while seen
        .last()
        .is_none_or(|r: &Map<String, Value>| r["n"] != json!(3))
    {
        let batch = tokio::time::timeout(Duration::from_secs(20), updates.recv())
            .await
            .unwrap_or_else(|_| panic!("no update after {seen:?}"))
            .unwrap_or_else(|e| panic!("{e}"));
        seen.extend(rows_json(&schema, &[batch]).unwrap_or_else(|e| panic!("{e}")));
    }
    let last = seen.last().cloned().unwrap_or_default();
    assert_eq!(last["entity_id"], json!("u1"));
    assert_eq!(last["total"], json!(6));
    assert!(
        seen.iter().all(|r| r["entity_id"] == json!("u1")),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_projection_keeps_its_last_checkpoint_and_resumes_when_enabled() {
    let f = fixture().await;
    for i in 0..40 {
        append_one(&f.store, &format!("u{}", i % 4), "tick", json!({"i": i})).await;
    }
    execute(
        &f.pipelines,
        &format!(
            "CREATE PROJECTION per_entity WITH (checkpoint_interval = '0s') AS {PER_ENTITY} \
             GROUP BY entity_id"
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let before = format!("{PER_ENTITY} GROUP BY entity_id");
    table_becomes(&f.eventql, "per_entity", &before).await;
    let head = f.store.head_position();
    execute(&f.pipelines, "ALTER PROJECTION per_entity DISABLE")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let info = f
        .pipelines
        .get(TENANT, "per_entity")
        .unwrap_or_else(|| panic!("listed"));
    assert_eq!(info.state, allsource::operators::PipelineState::Disabled);
    let read = f.pipelines.lookup(TENANT, "per_entity", "u1").await;
    assert!(
        matches!(&read, Err(Error::Conflict(m)) if m.contains("disabled")),
        "{read:?}"
    );

    // Disabled, it reads nothing more, also across a restart.
    for i in 40..60 {
        append_one(&f.store, &format!("u{}", i % 4), "tick", json!({"i": i})).await;
    }
    f.pipelines.stop().await;
    let (pipelines, eventql) = open(&f.store).await;
    let f = Fixture {
        pipelines,
        eventql,
        ..f
    };
    let until_then = format!("{PER_ENTITY} WHERE position < {head} GROUP BY entity_id");
    table_becomes(&f.eventql, "per_entity", &until_then).await;
    let info = f
        .pipelines
        .get(TENANT, "per_entity")
        .unwrap_or_else(|| panic!("listed"));
    assert_eq!(info.state, allsource::operators::PipelineState::Disabled);

    // Enabled: it resumes from its checkpoint and catches up.
    execute(&f.pipelines, "ALTER PROJECTION per_entity ENABLE")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    table_becomes(&f.eventql, "per_entity", &before).await;
    let row = lookup(&f.pipelines, "per_entity", "u1").await;
    assert_eq!(row.map(|r| r["n"].clone()), Some(json!(15)));
    let wrong_kind = execute(&f.pipelines, "ALTER PIPELINE per_entity DISABLE").await;
    assert!(
        matches!(wrong_kind, Err(Error::NotFound { .. })),
        "{wrong_kind:?}"
    );
}
