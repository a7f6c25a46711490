//! Redis and PostgreSQL servers from the system's packages, started on a free
//! loopback port with a fresh data directory and stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on loopback (free when this returns; the server binds it next).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .port()
}

/// Run `command` to its end; its standard output, or a panic with its error output.
fn output(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Wait until `ready` holds, for at most 30 s.
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what} did not start within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `redis-server`.
pub struct Redis {
    child: Child,
    port: u16,
    pub version: String,
}

impl Redis {
    /// Start one on an empty `dir`. `durable`: every write is in the append-only file
    /// and fsynced before it is answered (`appendfsync always`); otherwise nothing is
    /// persisted (Redis without persistence, as a cache runs it).
    pub fn start(dir: &Path, durable: bool) -> Redis {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
        let port = free_port();
        let persistence: &[&str] = if durable {
            &["--appendonly", "yes", "--appendfsync", "always"]
        } else {
            &["--appendonly", "no"]
        };
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--protected-mode", "no", "--daemonize", "no"])
            .args(persistence)
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting redis-server (apt-get install redis-server): {e}")
            });
        let mut redis = Redis {
            child,
            port,
            version: String::new(),
        };
        wait_for("redis-server", || {
            Command::new("redis-cli")
                .args(["-p", &port.to_string(), "ping"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG")
        });
        let info = redis.cli(&["info", "server"]);
        redis.version = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("?")
            .trim()
            .to_string();
        redis
    }

    /// A `redis-cli` command's answer.
    pub fn cli(&self, args: &[&str]) -> String {
        output(
            Command::new("redis-cli")
                .args(["-p", &self.port.to_string()])
                .args(args),
        )
    }

    /// Send the commands in `file` (the Redis protocol) through `redis-cli --pipe`,
    /// which writes them all and reads every reply; panics unless all `count`
    /// replies came back without error.
    pub fn pipe(&self, file: &Path, count: usize) {
        let input = std::fs::File::open(file).unwrap_or_else(|e| panic!("{e}"));
        let out = output(
            Command::new("redis-cli")
                .args(["-p", &self.port.to_string(), "--pipe"])
                .stdin(input),
        );
        let expected = format!("errors: 0, replies: {count}");
        assert!(
            out.contains(&expected),
            "redis-cli --pipe: {out} (expected {expected})"
        );
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "shutdown", "nosave"])
            .output();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running PostgreSQL server (its own cluster in a fresh directory).
pub struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// The server runs as the `postgres` user when this process is root (PostgreSQL
    /// refuses to run as root).
    as_postgres: bool,
    pub version: String,
}

/// The directory of PostgreSQL's server programs: the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian's layout), else wherever `initdb` is.
fn postgres_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .filter(|bin| bin.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by_key(|bin| {
        bin.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(bin) = versions.pop() {
        return bin;
    }
    let which = Command::new("which").arg("initdb").output();
    match which {
        Ok(out) if out.status.success() => {
            let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            path.parent().map(Path::to_path_buf).unwrap_or_default()
        }
        _ => panic!("PostgreSQL's initdb not found (apt-get install postgresql)"),
    }
}

fn is_root() -> bool {
    output(Command::new("id").arg("-u")).trim() == "0"
}

impl Postgres {
    /// A new cluster in `dir` (emptied first), started on a free loopback port with
    /// the default durability (`fsync` and `synchronous_commit` on), holding the
    /// events table: the primary key is the stream and its version, as in an event
    /// store, and the payload is `jsonb` (parsed and checked on the way in).
    pub fn start(dir: &Path) -> Postgres {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
        // The server changes into its data directory: every path it gets is absolute.
        let dir = &std::fs::canonicalize(dir).unwrap_or_else(|e| panic!("{e}"));
        let as_postgres = is_root();
        if as_postgres {
            output(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(dir),
            );
        }
        let mut postgres = Postgres {
            bin: postgres_bin(),
            dir: dir.to_path_buf(),
            port: free_port(),
            as_postgres,
            version: String::new(),
        };
        let data = postgres.data();
        postgres.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "-A", "trust", "--no-sync"],
        );
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {}",
            postgres.port,
            dir.display()
        );
        let log = format!("{}/server.log", dir.display());
        postgres.run(
            "pg_ctl",
            &["-D", &data, "-o", &options, "-l", &log, "-w", "start"],
        );
        postgres.version = postgres.sql("SHOW server_version").trim().to_string();
        postgres.sql(
            "CREATE TABLE events (tenant text NOT NULL, entity_id text NOT NULL, \
             version bigint NOT NULL, event_type text NOT NULL, \
             timestamp timestamptz NOT NULL, payload jsonb NOT NULL, \
             PRIMARY KEY (tenant, entity_id, version))",
        );
        postgres
    }

    fn data(&self) -> String {
        format!("{}/data", self.dir.display())
    }

    /// One of the server's programs, as the user the server runs as.
    fn run(&self, program: &str, args: &[&str]) -> String {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        output(command.args(args))
    }

    fn psql(&self) -> Command {
        let mut command = Command::new("psql");
        command.args([
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
        ]);
        command
    }

    /// A statement's result, rows as lines (through `psql`).
    pub fn sql(&self, statement: &str) -> String {
        output(self.psql().args(["-c", statement]))
    }

    /// `COPY events FROM STDIN` (CSV) with `file` as its input, through `psql`'s
    /// `\copy`: the client reads the file and streams it over the connection, and the
    /// statement commits (and so fsyncs) when the file has been read.
    pub fn copy(&self, file: &Path) {
        let command = format!(
            "\\copy events (tenant, entity_id, version, event_type, timestamp, payload) \
             FROM '{}' WITH (FORMAT csv)",
            file.display()
        );
        output(self.psql().args(["-c", &command]));
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data();
        let path = self.bin.join("pg_ctl");
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        let _ = command
            .args(["-D", &data, "-m", "fast", "-w", "stop"])
            .output();
    }
}
