//! The settings of `allsource serve`, layered: defaults, then the TOML file given
//! with `--config`, then `ALLSOURCE_*` environment variables, then flags.
//!
//! The file is flat: the server's keys (`http_addr`, `flight_addr`,
//! `max_body_bytes`, `query_memory_bytes`, `query_timeout_ms`, `flight_tokens`, the
//! `graphql_*` limits) and
//! the store's (every name in
//! [`allsource_engine::SETTINGS`]); S3 settings go in an `[s3]` table.
//!
//! ```toml
//! data_dir = "/var/lib/allsource"
//! http_addr = "0.0.0.0:8080"
//! durability = "always"
//! [s3]
//! endpoint = "http://127.0.0.1:9000"
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use allsource_engine::StoreConfig;
use allsource_graphql::GraphqlLimits;
use allsource_sql::QueryLimits;
use anyhow::{Context, bail};

/// Everything `allsource serve` runs with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The store.
    pub store: StoreConfig,
    /// HTTP listen address (port 0: any free port, logged at start).
    pub http_addr: SocketAddr,
    /// Arrow Flight listen address.
    pub flight_addr: SocketAddr,
    /// Largest HTTP request body, in bytes (default: the store's `max_request_bytes`
    /// plus room for JSON framing).
    pub max_body_bytes: usize,
    /// Memory and time limits of each EventQL query (HTTP and Flight alike).
    pub query_limits: QueryLimits,
    /// Flight bearer tokens and the tenant each acts for; empty: no Flight auth,
    /// every call acts for the tenant `default`.
    pub flight_tokens: HashMap<String, String>,
    /// The limits GraphQL requests are checked against.
    pub graphql_limits: GraphqlLimits,
}

/// Server settings: (name in the file, environment variable).
const SERVER_SETTINGS: [(&str, &str); 12] = [
    ("http_addr", "ALLSOURCE_HTTP_ADDR"),
    ("flight_addr", "ALLSOURCE_FLIGHT_ADDR"),
    ("max_body_bytes", "ALLSOURCE_MAX_BODY_BYTES"),
    ("query_memory_bytes", "ALLSOURCE_QUERY_MEMORY_BYTES"),
    ("query_timeout_ms", "ALLSOURCE_QUERY_TIMEOUT_MS"),
    ("flight_tokens", "ALLSOURCE_FLIGHT_TOKENS"),
    ("graphql_max_depth", "ALLSOURCE_GRAPHQL_MAX_DEPTH"),
    ("graphql_max_complexity", "ALLSOURCE_GRAPHQL_MAX_COMPLEXITY"),
    ("graphql_max_aliases", "ALLSOURCE_GRAPHQL_MAX_ALIASES"),
    ("graphql_max_batch", "ALLSOURCE_GRAPHQL_MAX_BATCH"),
    ("graphql_timeout_ms", "ALLSOURCE_GRAPHQL_TIMEOUT_MS"),
    ("graphql_introspection", "ALLSOURCE_GRAPHQL_INTROSPECTION"),
];

/// Values given on the command line (each wins over everything else).
#[derive(Debug, Default, Clone)]
pub struct Flags {
    /// `--config`.
    pub config_file: Option<PathBuf>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--http-addr`.
    pub http_addr: Option<SocketAddr>,
    /// `--flight-addr`.
    pub flight_addr: Option<SocketAddr>,
    /// `--durability`.
    pub durability: Option<String>,
    /// `--partitions`.
    pub partitions: Option<u16>,
}

impl ServeConfig {
    /// The defaults: `./data`, HTTP on 127.0.0.1:8080, Flight on 127.0.0.1:50051.
    pub fn defaults() -> Self {
        let store = StoreConfig::new("./data");
        Self {
            max_body_bytes: default_body_bytes(&store),
            store,
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            flight_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            query_limits: QueryLimits::default(),
            flight_tokens: HashMap::new(),
            graphql_limits: GraphqlLimits::default(),
        }
    }

    /// Defaults, then the file, then the environment, then `flags`.
    pub fn load(flags: &Flags) -> anyhow::Result<Self> {
        let mut config = Self::defaults();
        let mut body_set = false;
        if let Some(path) = &flags.config_file {
            body_set |= config.apply_file(path)?;
        }
        config.store.apply_env()?;
        for (key, var) in SERVER_SETTINGS {
            if let Some(value) = std::env::var(var).ok().filter(|v| !v.is_empty()) {
                body_set |= config
                    .set(key, &value)
                    .with_context(|| format!("environment variable {var}"))?;
            }
        }
        if let Some(dir) = &flags.data_dir {
            config.store.data_dir = dir.clone();
        }
        if let Some(addr) = flags.http_addr {
            config.http_addr = addr;
        }
        if let Some(addr) = flags.flight_addr {
            config.flight_addr = addr;
        }
        if let Some(durability) = &flags.durability {
            config.store.durability = durability.parse()?;
        }
        if flags.partitions.is_some() {
            config.store.partitions = flags.partitions;
        }
        if !body_set {
            config.max_body_bytes = default_body_bytes(&config.store);
        }
        config.store.validate()?;
        Ok(config)
    }

    /// Apply the TOML file at `path`; true when it sets `max_body_bytes`.
    fn apply_file(&mut self, path: &Path) -> anyhow::Result<bool> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the configuration file {}", path.display()))?;
        let table: toml::Table = text
            .parse()
            .with_context(|| format!("parsing the configuration file {}", path.display()))?;
        let mut body_set = false;
        for (key, value) in &table {
            match value {
                toml::Value::Table(inner) if key == "s3" => {
                    for (inner_key, value) in inner {
                        self.store
                            .set(&format!("s3.{inner_key}"), &text_of(value))
                            .with_context(|| format!("{}: [s3] {inner_key}", path.display()))?;
                    }
                }
                _ => {
                    body_set |= self
                        .set(key, &text_of(value))
                        .with_context(|| format!("{}: {key}", path.display()))?;
                }
            }
        }
        Ok(body_set)
    }

    /// Set a server or store setting by name; true when it was `max_body_bytes`.
    fn set(&mut self, key: &str, value: &str) -> anyhow::Result<bool> {
        let addr = |v: &str| -> anyhow::Result<SocketAddr> {
            v.parse()
                .with_context(|| format!("{key} = {v:?} is not an address such as 127.0.0.1:8080"))
        };
        match key {
            "http_addr" => self.http_addr = addr(value)?,
            "flight_addr" => self.flight_addr = addr(value)?,
            "max_body_bytes" => {
                self.max_body_bytes = value
                    .parse()
                    .with_context(|| format!("max_body_bytes = {value:?} is not a number"))?;
                if self.max_body_bytes == 0 {
                    bail!("max_body_bytes must be at least 1");
                }
                return Ok(true);
            }
            "query_memory_bytes" => {
                self.query_limits.memory_bytes = positive(key, value)?;
            }
            "query_timeout_ms" => {
                self.query_limits.timeout = Duration::from_millis(positive(key, value)? as u64);
            }
            "flight_tokens" => self.flight_tokens = tokens(value)?,
            "graphql_max_depth" => self.graphql_limits.max_depth = positive(key, value)?,
            "graphql_max_complexity" => {
                self.graphql_limits.max_complexity = positive(key, value)?;
            }
            "graphql_max_aliases" => self.graphql_limits.max_aliases = positive(key, value)?,
            "graphql_max_batch" => self.graphql_limits.max_batch = positive(key, value)?,
            "graphql_timeout_ms" => {
                self.graphql_limits.timeout = Duration::from_millis(positive(key, value)? as u64);
            }
            "graphql_introspection" => {
                self.graphql_limits.introspection = match value.trim() {
                    "true" | "on" | "1" => true,
                    "false" | "off" | "0" => false,
                    _ => bail!("{key} = {value:?} is not true or false"),
                };
            }
            _ => self.store.set(key, value)?,
        }
        Ok(false)
    }
}

/// A whole number of at least 1.
fn positive(key: &str, value: &str) -> anyhow::Result<usize> {
    match value.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("{key} = {value:?} is not a whole number of at least 1"),
    }
}

/// `token=tenant` pairs separated by commas.
fn tokens(value: &str) -> anyhow::Result<HashMap<String, String>> {
    let mut tokens = HashMap::new();
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((token, tenant)) = pair.split_once('=') else {
            bail!("flight_tokens: {pair:?} is not token=tenant");
        };
        let (token, tenant) = (token.trim(), tenant.trim());
        if token.is_empty() || tenant.is_empty() {
            bail!("flight_tokens: {pair:?} has an empty token or tenant");
        }
        if tokens
            .insert(token.to_string(), tenant.to_string())
            .is_some()
        {
            bail!("flight_tokens: a token appears twice");
        }
    }
    Ok(tokens)
}

/// A request carrying `max_request_bytes` of events, plus JSON framing.
fn default_body_bytes(store: &StoreConfig) -> usize {
    store
        .max_request_bytes
        .saturating_mul(2)
        .saturating_add(64 << 10)
}

/// A TOML value as the text form settings parse.
fn text_of(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_limits_and_flight_tokens_parse_or_are_refused() {
        let mut config = ServeConfig::defaults();
        config
            .set("query_timeout_ms", "250")
            .unwrap_or_else(|e| panic!("{e}"));
        config
            .set("query_memory_bytes", "1048576")
            .unwrap_or_else(|e| panic!("{e}"));
        config
            .set("flight_tokens", "s3cret=acme, other = globex")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.query_limits.timeout, Duration::from_millis(250));
        assert_eq!(config.query_limits.memory_bytes, 1 << 20);
        assert_eq!(
            config.flight_tokens.get("s3cret").map(String::as_str),
            Some("acme")
        );
        assert_eq!(
            config.flight_tokens.get("other").map(String::as_str),
            Some("globex")
        );
        for (key, bad) in [
            ("query_timeout_ms", "0"),
            ("query_timeout_ms", "soon"),
            ("query_memory_bytes", "-1"),
            ("flight_tokens", "nopair"),
            ("flight_tokens", "=acme"),
            ("flight_tokens", "a=x,a=y"),
        ] {
            let err = config
                .set(key, bad)
                .err()
                .unwrap_or_else(|| panic!("{key}={bad}"));
            assert!(err.to_string().contains(key), "{err}");
        }
    }
}
