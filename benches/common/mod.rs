//! What the macro benchmarks share: the size of a run, where their stores go, and
//! the runtime they drive them from.

use std::path::PathBuf;
use std::time::Duration;

/// How big a run is, from the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// Under `cargo test` (no `--bench` argument): a tiny run that only checks the
    /// benchmark still works.
    Smoke,
    /// `cargo bench --bench … -- --quick`.
    Quick,
    /// `cargo bench --bench …`.
    Full,
}

impl Size {
    /// The size the process's arguments ask for.
    pub fn from_args() -> Self {
        let args: Vec<String> = std::env::args().collect();
        match (
            args.iter().any(|a| a == "--bench"),
            args.iter().any(|a| a == "--quick"),
        ) {
            (false, _) => Size::Smoke,
            (true, true) => Size::Quick,
            (true, false) => Size::Full,
        }
    }

    /// One of three values, by size.
    pub fn pick<T>(self, smoke: T, quick: T, full: T) -> T {
        match self {
            Size::Smoke => smoke,
            Size::Quick => quick,
            Size::Full => full,
        }
    }
}

/// The directory the stores go in, created: `ALLSOURCE_BENCH_DIR` (to put them on
/// another disk) or `target/bench-data`.
pub fn data_dir() -> PathBuf {
    let base = std::env::var("ALLSOURCE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("target/bench-data"));
    std::fs::create_dir_all(&base).unwrap_or_else(|e| panic!("creating {}: {e}", base.display()));
    base
}

/// A multi-threaded runtime (one worker per core).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("starting a runtime: {e}"))
}

/// The `p` quantile (0..=1) of `sorted`, the nearest sample; zero for no samples.
#[allow(dead_code)] // the Flight benchmark reports no percentiles
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize;
    sorted[index]
}

/// The directory the benchmarks write their figures to as JSON (for the charts),
/// created: `ALLSOURCE_BENCH_RESULTS` or `target/bench-results`.
#[allow(dead_code)] // not every benchmark writes figures
pub fn results_dir() -> PathBuf {
    let dir = std::env::var("ALLSOURCE_BENCH_RESULTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("target/bench-results"));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// Write `figures` to `<results_dir>/<name>.json`.
#[allow(dead_code)] // not every benchmark writes figures
pub fn write_results(name: &str, figures: &serde_json::Value) {
    let path = results_dir().join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(figures).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    println!("Figures written to {}", path.display());
}

/// Latency of a 4 KiB write + fdatasync on the benchmark's disk, `rounds` times.
#[allow(dead_code)] // only the append benchmarks probe the disk
pub fn fsync_latencies(base: &std::path::Path, rounds: usize) -> Vec<Duration> {
    let path = base.join("fsync-probe");
    let mut file = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{e}"));
    let block = vec![7u8; 4096];
    let mut latencies = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        std::io::Write::write_all(&mut file, &block).unwrap_or_else(|e| panic!("{e}"));
        let t = std::time::Instant::now();
        file.sync_data().unwrap_or_else(|e| panic!("{e}"));
        latencies.push(t.elapsed());
    }
    let _ = std::fs::remove_file(&path);
    latencies
}

/// Latency of a 4 KiB write + fdatasync over blocks already written and synced (the
/// file is filled first), `rounds` times: what an fsync costs when it commits no new
/// file size, as in a reused WAL segment.
#[allow(dead_code)] // only the append benchmarks probe the disk
pub fn fsync_in_place_latencies(base: &std::path::Path, rounds: usize) -> Vec<Duration> {
    use std::os::unix::fs::FileExt;
    let path = base.join("fsync-probe-in-place");
    let file = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{e}"));
    let block = vec![7u8; 4096];
    for i in 0..rounds as u64 {
        file.write_all_at(&block, i * 4096)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    file.sync_all().unwrap_or_else(|e| panic!("{e}"));
    let mut latencies = Vec::with_capacity(rounds);
    for i in 0..rounds as u64 {
        file.write_all_at(&block, i * 4096)
            .unwrap_or_else(|e| panic!("{e}"));
        let t = std::time::Instant::now();
        file.sync_data().unwrap_or_else(|e| panic!("{e}"));
        latencies.push(t.elapsed());
    }
    let _ = std::fs::remove_file(&path);
    latencies
}

/// Append from one task per list of requests, concurrently: each request's latency
/// (from the call to the acknowledgement) and the seconds from the first call to the
/// last acknowledgement.
#[allow(dead_code)] // only the append benchmarks append this way
pub async fn append_all(
    store: &allsource::engine::EventStore,
    dealt: Vec<Vec<allsource::engine::AppendRequest>>,
) -> (Vec<Duration>, f64) {
    let started = std::time::Instant::now();
    let tasks: Vec<_> = dealt
        .into_iter()
        .map(|requests| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(requests.len());
                for request in requests {
                    let sent = std::time::Instant::now();
                    store
                        .append(request)
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap_or_else(|e| panic!("{e}")));
    }
    (latencies, started.elapsed().as_secs_f64())
}
