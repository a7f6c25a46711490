//! Ingest side by side: AllSource's appends next to Redis Streams (`XADD`,
//! pipelined) and PostgreSQL (`COPY` into an events table), and durable appends
//! next to the disk's own fsync rate, all in the same run.
//!
//! Every system takes the same Nexmark events (person, auction and bid events with
//! their JSON payloads, ~150–250 bytes):
//!
//! - **AllSource in process**: 8 tasks appending requests of 1,000 events
//!   (`EventStore::append`), durability `always` (acknowledged = fsynced) and `never`.
//! - **AllSource server**: the real `allsource serve` on loopback, 8 HTTP connections
//!   posting batches of 1,000 events, durability `always`. The client runs in this
//!   process, on the same two cores.
//! - **Redis**: `redis-server` on loopback, the events as `XADD events * …` commands
//!   sent by `redis-cli --pipe` (Redis's own mass-insertion mode: every command
//!   written, every reply read). Without persistence, and with `appendfsync always`.
//! - **PostgreSQL**: a fresh cluster on loopback with its default durability; the
//!   events table's key is (tenant, entity_id, version) and the payload is `jsonb`;
//!   the events go in as one `COPY … FROM STDIN` (CSV) through `psql`'s `\copy`.
//!
//! Inputs (requests, HTTP bodies, the Redis protocol file, the CSV file) are built
//! before the clock starts; each run starts from an empty store, stream or table.
//! After each run the system is asked how many events it holds.
//!
//! **Durable appends**: 64 tasks appending single events, durability `always` and
//! `never`, with each request's latency, next to the disk's own fsync (4 KiB write +
//! fdatasync) latency and rate, measured in the same run.
//!
//! Run: `cargo bench --bench ingest` (`-- --quick` for a short run). Needs
//! `redis-server` and PostgreSQL from the system's packages (`apt-get install
//! redis-server postgresql`). Under `cargo test` it runs every scenario once on a few
//! thousand events, checking the counts, without timing.

#[path = "../common/mod.rs"]
mod common;
#[allow(dead_code)] // the streaming benchmark's parts of the generator
#[path = "../nexmark/generator.rs"]
mod generator;
#[path = "../server/mod.rs"]
mod server;
mod services;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use allsource::engine::{
    AppendRequest, Durability, EventData, EventStore, ExpectedVersion, StoreConfig,
};
use bytes::Bytes;
use common::{Size, percentile};
use generator::{Config, Generator};
use serde_json::{Value, json};
use server::Server;
use services::{Postgres, Redis};

const TENANT: &str = "nexmark";
const BATCH: usize = 1_000;
const APPENDERS: usize = 8;
const SINGLE_APPENDERS: usize = 64;

/// One event as every system takes it.
struct Event {
    kind: &'static str,
    entity: String,
    version: u64,
    time_micros: i64,
    payload: String,
}

fn events(count: usize) -> Vec<Event> {
    let mut versions: HashMap<String, u64> = HashMap::new();
    Generator::new(Config {
        rate: 1_000,
        disorder_micros: 0,
        seed: 7,
    })
    .take(count)
    .map(|g| {
        let (kind, entity, payload) = g.to_event();
        let version = versions.entry(entity.clone()).or_default();
        *version += 1;
        Event {
            kind,
            version: *version,
            entity,
            time_micros: g.time_micros,
            payload: payload.to_string(),
        }
    })
    .collect()
}

fn rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap_or_else(|| panic!("{micros} µs is out of range"))
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// The events as append requests of `batch` events, dealt round-robin to `tasks`
/// appenders.
fn requests(events: &[Event], batch: usize, tasks: usize) -> Vec<Vec<AppendRequest>> {
    let mut dealt: Vec<Vec<AppendRequest>> = (0..tasks).map(|_| Vec::new()).collect();
    for (i, chunk) in events.chunks(batch).enumerate() {
        let mut request = AppendRequest::new(TENANT);
        for e in chunk {
            let data =
                EventData::new(e.kind, e.payload.as_str()).with_timestamp_micros(e.time_micros);
            request = request.stream(e.entity.as_str(), ExpectedVersion::Any, vec![data]);
        }
        dealt[i % tasks].push(request);
    }
    dealt
}

/// What one timed run gave.
struct Run {
    seconds: f64,
    /// Each request's latency, where the client sees requests.
    latencies: Vec<Duration>,
}

/// Append the requests from one task per list; checks the store holds `count`
/// events after.
async fn in_process(dir: &Path, durability: Durability, dealt: Vec<Vec<AppendRequest>>) -> Run {
    let _ = std::fs::remove_dir_all(dir);
    let store = EventStore::open(StoreConfig::new(dir).with_durability(durability))
        .unwrap_or_else(|e| panic!("{e}"));
    let count: usize = dealt.iter().flatten().map(AppendRequest::event_count).sum();
    let (latencies, seconds) = common::append_all(&store, dealt).await;
    assert_eq!(
        store.stats().events,
        count as u64,
        "AllSource holds every event"
    );
    store.close().unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_dir_all(dir);
    Run { seconds, latencies }
}

/// The events as HTTP batch bodies of `BATCH` events, dealt to `APPENDERS`
/// connections.
fn bodies(events: &[Event]) -> Vec<Vec<Bytes>> {
    let mut dealt: Vec<Vec<Bytes>> = (0..APPENDERS).map(|_| Vec::new()).collect();
    for (i, chunk) in events.chunks(BATCH).enumerate() {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|e| {
                let payload: Value =
                    serde_json::from_str(&e.payload).unwrap_or_else(|err| panic!("{err}"));
                json!({"event_type": e.kind, "entity_id": e.entity,
                       "timestamp": rfc3339(e.time_micros), "payload": payload})
            })
            .collect();
        dealt[i % APPENDERS].push(Bytes::from(json!({"events": batch}).to_string()));
    }
    dealt
}

/// Post the bodies to a fresh `allsource serve` (durability `always`), a keep-alive
/// connection per list; checks the store holds `count` events after.
async fn over_http(dir: &Path, bodies: Vec<Vec<Bytes>>, count: usize) -> Run {
    let server = Server::start(dir, "always");
    let (latencies, seconds) = server::post_all(&format!("http://{}", server.addr), bodies).await;
    drop(server);
    let store = EventStore::open(StoreConfig::new(dir)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        store.stats().events,
        count as u64,
        "the server kept every event"
    );
    store.close().unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_dir_all(dir);
    Run { seconds, latencies }
}

/// The events as `XADD events * …` commands in the Redis protocol.
fn resp(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() * 320);
    for e in events {
        let time = e.time_micros.to_string();
        let args: [&str; 13] = [
            "XADD",
            "events",
            "*",
            "tenant",
            TENANT,
            "entity_id",
            &e.entity,
            "event_type",
            e.kind,
            "timestamp",
            &time,
            "payload",
            &e.payload,
        ];
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

fn redis_run(redis: &Redis, file: &Path, count: usize) -> Run {
    redis.cli(&["del", "events"]);
    let started = Instant::now();
    redis.pipe(file, count);
    let seconds = started.elapsed().as_secs_f64();
    let held: usize = redis
        .cli(&["xlen", "events"])
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("XLEN: {e}"));
    assert_eq!(held, count, "Redis holds every event");
    Run {
        seconds,
        latencies: Vec::new(),
    }
}

/// The events as CSV rows of the PostgreSQL events table.
fn csv(events: &[Event]) -> Vec<u8> {
    let mut writer = csv::Writer::from_writer(Vec::with_capacity(events.len() * 300));
    for e in events {
        writer
            .write_record([
                TENANT,
                &e.entity,
                &e.version.to_string(),
                e.kind,
                &rfc3339(e.time_micros),
                &e.payload,
            ])
            .unwrap_or_else(|err| panic!("{err}"));
    }
    writer.into_inner().unwrap_or_else(|e| panic!("{e}"))
}

fn postgres_run(postgres: &Postgres, file: &Path, events: &[Event]) -> Run {
    postgres.sql("TRUNCATE events");
    let started = Instant::now();
    postgres.copy(file);
    let seconds = started.elapsed().as_secs_f64();
    let held: usize = postgres
        .sql("SELECT count(*) FROM events")
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("count: {e}"));
    assert_eq!(held, events.len(), "PostgreSQL holds every event");
    // The payloads went in whole: the bid prices add up.
    let expected: u64 = events
        .iter()
        .filter(|e| e.kind == "bid")
        .map(|e| {
            let payload: Value = serde_json::from_str(&e.payload).unwrap_or_default();
            payload["price"].as_u64().unwrap_or(0)
        })
        .sum();
    let prices = postgres
        .sql("SELECT sum((payload->>'price')::bigint) FROM events WHERE event_type = 'bid'");
    assert_eq!(prices.trim(), expected.to_string(), "the bid prices add up");
    Run {
        seconds,
        latencies: Vec::new(),
    }
}

/// A scenario's runs.
struct Scenario {
    system: &'static str,
    how: String,
    durable: bool,
    events: usize,
    runs: Vec<Run>,
}

impl Scenario {
    fn rates(&self) -> Vec<f64> {
        let mut rates: Vec<f64> = self
            .runs
            .iter()
            .map(|r| self.events as f64 / r.seconds)
            .collect();
        rates.sort_by(f64::total_cmp);
        rates
    }

    fn median(&self) -> f64 {
        let rates = self.rates();
        rates[rates.len() / 2]
    }

    /// Every run's request latencies, sorted.
    fn latencies(&self) -> Vec<Duration> {
        let mut all: Vec<Duration> = self
            .runs
            .iter()
            .flat_map(|r| r.latencies.iter().copied())
            .collect();
        all.sort();
        all
    }
}

fn rate(per_second: f64) -> String {
    if per_second >= 1e6 {
        format!("{:.2}M", per_second / 1e6)
    } else {
        format!("{:.0}K", per_second / 1e3)
    }
}

fn micros(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

const QUANTILES: [(&str, f64); 4] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)];

fn main() {
    let size = Size::from_args();
    let count = size.pick(5_000, 200_000, 1_000_000);
    let singles = size.pick(640, 32_000, 128_000);
    let runs = size.pick(1, 3, 3);
    let base = common::data_dir().join("ingest");
    std::fs::create_dir_all(&base).unwrap_or_else(|e| panic!("{e}"));
    let runtime = common::runtime();

    let started = Instant::now();
    let input = events(count);
    let single_input = events(singles);
    let resp_file = base.join("events.resp");
    std::fs::write(&resp_file, resp(&input)).unwrap_or_else(|e| panic!("{e}"));
    let csv_file = base.join("events.csv");
    std::fs::write(&csv_file, csv(&input)).unwrap_or_else(|e| panic!("{e}"));
    let bytes: usize = input.iter().map(|e| e.payload.len()).sum();
    println!(
        "{count} events ({} payload bytes on average) and their inputs built in {:.1} s",
        bytes / count,
        started.elapsed().as_secs_f64()
    );

    let redis = Redis::start(&base.join("redis"), false);
    let durable_redis = Redis::start(&base.join("redis-aof"), true);
    let postgres = Postgres::start(&base.join("postgres"));
    let mut scenarios = [
        Scenario {
            system: "AllSource",
            how: format!("in process, {APPENDERS} appenders, batches of {BATCH}"),
            durable: true,
            events: count,
            runs: Vec::new(),
        },
        Scenario {
            system: "AllSource",
            how: format!("in process, {APPENDERS} appenders, batches of {BATCH}"),
            durable: false,
            events: count,
            runs: Vec::new(),
        },
        Scenario {
            system: "AllSource",
            how: format!("server, {APPENDERS} HTTP connections, batches of {BATCH}"),
            durable: true,
            events: count,
            runs: Vec::new(),
        },
        Scenario {
            system: "Redis",
            how: "XADD pipelined (redis-cli --pipe), appendfsync always".to_string(),
            durable: true,
            events: count,
            runs: Vec::new(),
        },
        Scenario {
            system: "Redis",
            how: "XADD pipelined (redis-cli --pipe), no persistence".to_string(),
            durable: false,
            events: count,
            runs: Vec::new(),
        },
        Scenario {
            system: "PostgreSQL",
            how: "COPY FROM STDIN (psql \\copy, CSV), jsonb, key (stream, version)".to_string(),
            durable: true,
            events: count,
            runs: Vec::new(),
        },
        Scenario {
            system: "AllSource",
            how: format!("in process, {SINGLE_APPENDERS} appenders, single events"),
            durable: true,
            events: singles,
            runs: Vec::new(),
        },
        Scenario {
            system: "AllSource",
            how: format!("in process, {SINGLE_APPENDERS} appenders, single events"),
            durable: false,
            events: singles,
            runs: Vec::new(),
        },
    ];
    let store_dir = base.join("allsource");
    for _ in 0..runs {
        for (i, scenario) in scenarios.iter_mut().enumerate() {
            let run = match i {
                0 => runtime.block_on(in_process(
                    &store_dir,
                    Durability::Always,
                    requests(&input, BATCH, APPENDERS),
                )),
                1 => runtime.block_on(in_process(
                    &store_dir,
                    Durability::Never,
                    requests(&input, BATCH, APPENDERS),
                )),
                2 => runtime.block_on(over_http(&store_dir, bodies(&input), count)),
                3 => redis_run(&durable_redis, &resp_file, count),
                4 => redis_run(&redis, &resp_file, count),
                5 => postgres_run(&postgres, &csv_file, &input),
                6 => runtime.block_on(in_process(
                    &store_dir,
                    Durability::Always,
                    requests(&single_input, 1, SINGLE_APPENDERS),
                )),
                _ => runtime.block_on(in_process(
                    &store_dir,
                    Durability::Never,
                    requests(&single_input, 1, SINGLE_APPENDERS),
                )),
            };
            scenario.runs.push(run);
        }
    }
    let fsync = {
        let mut samples = common::fsync_latencies(&base, size.pick(100, 1_000, 2_000));
        samples.sort();
        samples
    };
    let versions = (redis.version.clone(), postgres.version.clone());
    drop((redis, durable_redis, postgres));
    let _ = std::fs::remove_file(&resp_file);
    let _ = std::fs::remove_file(&csv_file);
    println!(
        "Every run's events were all there after it (AllSource's stats, Redis's XLEN, \
         PostgreSQL's count and the bid prices' sum)."
    );
    if size == Size::Smoke {
        return;
    }

    println!();
    println!(
        "Ingest: {count} Nexmark events ({} B payloads on average), Redis {}, PostgreSQL {}; \
         medians of {runs} runs (min–max), events/s",
        bytes / count,
        versions.0,
        versions.1
    );
    println!();
    let durable_redis_rate = scenarios[3].median();
    let redis_rate = scenarios[4].median();
    let postgres_rate = scenarios[5].median();
    println!(
        "| system | how | durable | events/s | min–max | vs Redis (fsync always) | \
         vs Redis (no persistence) | vs PostgreSQL COPY |"
    );
    println!("|---|---|---|---:|---|---:|---:|---:|");
    for scenario in &scenarios[..6] {
        let rates = scenario.rates();
        let median = scenario.median();
        println!(
            "| {} | {} | {} | {} | {}–{} | {:.2} | {:.2} | {:.2} |",
            scenario.system,
            scenario.how,
            if scenario.durable { "yes" } else { "no" },
            rate(median),
            rate(rates[0]),
            rate(rates[rates.len() - 1]),
            median / durable_redis_rate,
            median / redis_rate,
            median / postgres_rate
        );
    }

    let fsync_mean = fsync.iter().sum::<Duration>().as_secs_f64() / fsync.len() as f64;
    println!();
    println!(
        "Durable appends next to the disk: fsync (4 KiB write + fdatasync, {} samples) \
         {:.0} per second one after another; latencies in µs",
        fsync.len(),
        1.0 / fsync_mean
    );
    println!();
    println!("| appends | durability | events/s | p50 | p90 | p99 | p99.9 | p99 / fsync p99 |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    let fsync_cells: Vec<String> = QUANTILES
        .iter()
        .map(|(_, q)| micros(percentile(&fsync, *q)))
        .collect();
    println!(
        "| disk fsync alone | | {:.0} fsyncs/s | {} | 1.00 |",
        1.0 / fsync_mean,
        fsync_cells.join(" | ")
    );
    let fsync_p99 = percentile(&fsync, 0.99).as_secs_f64();
    let mut latency_figures = Vec::new();
    for scenario in [&scenarios[0], &scenarios[1], &scenarios[6], &scenarios[7]] {
        let latencies = scenario.latencies();
        let cells: Vec<String> = QUANTILES
            .iter()
            .map(|(_, q)| micros(percentile(&latencies, *q)))
            .collect();
        let durability = if scenario.durable { "always" } else { "never" };
        println!(
            "| {} | {durability} | {} | {} | {:.2} |",
            scenario.how,
            rate(scenario.median()),
            cells.join(" | "),
            percentile(&latencies, 0.99).as_secs_f64() / fsync_p99
        );
        latency_figures.push(json!({
            "how": scenario.how,
            "durability": durability,
            "events_per_second": scenario.median(),
            "micros": QUANTILES.iter().map(|(name, q)| {
                (name.to_string(), json!(percentile(&latencies, *q).as_secs_f64() * 1e6))
            }).collect::<serde_json::Map<_, _>>(),
        }));
    }

    common::write_results(
        "ingest",
        &json!({
            "events": count,
            "runs": runs,
            "versions": {"Redis": versions.0, "PostgreSQL": versions.1},
            "throughput": scenarios[..6].iter().map(|s| json!({
                "system": s.system,
                "how": s.how,
                "durable": s.durable,
                "events_per_second": s.rates(),
                "median": s.median(),
            })).collect::<Vec<_>>(),
            "fsync_micros": QUANTILES.iter().map(|(name, q)| {
                (name.to_string(), json!(percentile(&fsync, *q).as_secs_f64() * 1e6))
            }).collect::<serde_json::Map<_, _>>(),
            "fsyncs_per_second": 1.0 / fsync_mean,
            "latency": latency_figures,
        }),
    );
}
