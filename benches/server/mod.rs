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
