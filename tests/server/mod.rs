//! The HTTP server driven over real sockets: the `allsource` binary on a free port,
//! a real HTTP client.

mod api;
mod cli;
mod flight;
mod graphql;
mod observe;
mod pipelines;
mod projections;
mod seed;
mod shutdown;
mod stream;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `allsource serve`.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The Flight address, `127.0.0.1:PORT`.
    pub flight: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Start the binary on `dir` with a free HTTP port, extra flags and environment
    /// variables; returns once it logs that it is serving.
    pub fn start(dir: &Path, flags: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_on(dir, Some("127.0.0.1:0"), flags, env)
    }

    /// [`Server::start`] on `http_addr`, or on the default address when `None`.
    pub fn start_on(
        dir: &Path,
        http_addr: Option<&str>,
        flags: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_allsource"));
        command.arg("serve");
        if let Some(addr) = http_addr {
            command.args(["--http-addr", addr]);
        }
        if !flags.contains(&"--flight-addr") {
            command.args(["--flight-addr", "127.0.0.1:0"]);
        }
        command
            .arg("--data-dir")
            .arg(dir)
            .args(flags)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap_or_else(|e| panic!("{e}"));
        let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
        let mut lines = BufReader::new(stderr).lines();
        let mut log = String::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut base = None;
        let mut flight = String::new();
        while base.is_none() && Instant::now() < deadline {
            let Some(Ok(line)) = lines.next() else { break };
            if line.contains("serving") {
                base = serving_address(&line, "http").map(|addr| format!("http://{addr}"));
                flight = serving_address(&line, "flight").unwrap_or_default();
            }
            log.push_str(&line);
            log.push('\n');
        }
        let Some(base) = base else {
            let _ = child.kill();
            panic!("the server did not start:\n{log}");
        };
        let log = Arc::new(Mutex::new(log));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Ok(mut log) = sink.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        Server {
            child,
            base,
            flight,
            log,
        }
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The WebSocket URL of `path`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws{}{path}", self.base.trim_start_matches("http"))
    }

    /// The URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Send `signal` (`-TERM`, `-INT`) and wait for the exit; returns its status and log.
    pub fn stop(mut self, signal: &str) -> (ExitStatus, String) {
        let sent = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status();
        assert!(sent.is_ok_and(|s| s.success()));
        let status = self.child.wait().unwrap_or_else(|e| panic!("{e}"));
        std::thread::sleep(Duration::from_millis(50));
        let log = self.log.lock().map(|l| l.clone()).unwrap_or_default();
        (status, log)
    }
}

/// The address of `field` (`http`, `flight`) in the "serving" line, logged as text
/// (`http=ADDR`) or JSON.
fn serving_address(line: &str, field: &str) -> Option<String> {
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(line) {
        return json["fields"][field].as_str().map(str::to_string);
    }
    let prefix = format!("{field}=");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(prefix.as_str()))
        .map(str::to_string)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
