//! The real `allsource serve` binary for the benchmarks that go through the network:
//! started on a free loopback port with a fresh store, stopped with SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `allsource serve`.
pub struct Server {
    child: Child,
    /// `host:port` of its HTTP listener.
    pub addr: String,
}

impl Server {
    /// Start it on an empty `dir` with the given durability.
    pub fn start(dir: &Path, durability: &str) -> Server {
        let _ = std::fs::remove_dir_all(dir);
        let mut child = Command::new(env!("CARGO_BIN_EXE_allsource"))
            .args([
                "serve",
                "--http-addr",
                "127.0.0.1:0",
                "--durability",
                durability,
            ])
            .arg("--data-dir")
            .arg(dir)
            .env("RUST_LOG", "warn,allsource=info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let Some(Ok(line)) = lines.next() else {
                panic!("the server exited before serving");
            };
            if let Some(addr) = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("http="))
            {
                break addr.to_string();
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        Server { child, addr }
    }

    /// The server's user + system CPU time so far (from `/proc`).
    #[allow(dead_code)] // only the fan-out benchmark reports it
    pub fn cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // The fields after the command name, which is in parentheses and may hold
        // spaces; utime and stime are the 12th and 13th of them, in 1/100 s.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        let total = ticks(11).unwrap_or(0) + ticks(12).unwrap_or(0);
        Duration::from_secs_f64(total as f64 / 100.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Post appends to `base`: every list of bodies over its own keep-alive connection,
/// concurrently; returns each request's
/// latency and the elapsed time.
#[allow(dead_code)] // the fan-out benchmark appends its own way
pub async fn post_all(base: &str, bodies: Vec<Vec<bytes::Bytes>>) -> (Vec<Duration>, f64) {
    let url = format!("{base}/api/v1/events");
    let started = std::time::Instant::now();
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|bodies| {
            let url = url.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut latencies = Vec::with_capacity(bodies.len());
                for body in bodies {
                    let sent = std::time::Instant::now();
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                    let status = response.status();
                    let _ = response.bytes().await;
                    assert!(status.is_success(), "append answered {status}");
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
