//! Node configuration: an SI `deployment.yaml`, as it is, plus Tally's own `tally:` section.
//!
//! Read from the SI sections (SEMANTICS.md §8): `wso2.carbon.id` (node id),
//! `siddhi.properties.{partitionById, shardId, aggTimeZone}` and
//! `wso2.datasources.dataSources[]`. Every other SI section is ignored, so an existing
//! file works unchanged. The `tally:` section is Tally's own, and there an unknown key is an
//! error (a typo must not silently fall back to a default).

use crate::error::{Error, Result};
use crate::time::bucket::Zone;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// A JDBC-style data source of `wso2.datasources`, referred to by `@store(datasource='NAME')`.
#[derive(Debug, Clone, PartialEq)]
pub struct DataSource {
    pub name: String,
    pub jdbc_url: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// Tally's own settings (`tally:` in the node file). Unknown keys are errors.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The store used when neither `--store` nor the aggregation's `@store` names one.
    pub store: String,
    /// Aggregation worker threads, each owning the partials of its share of the group
    /// keys. Default: the number of cores.
    pub workers: Option<usize>,
    /// The longest a taken event waits before a flush writes it (`500ms`, `1s`, `2m`).
    /// A client waiting for its acknowledgement starts a flush sooner (group commit).
    pub flush_interval: String,
    /// Group commit: the least time between the starts of two flushes started because
    /// acknowledgements wait (default 1ms). Bounds commits per second.
    pub min_flush_gap: String,
    /// Group commit: a flush starts early for waiting acknowledgements only while fewer
    /// events than this were taken since the last one. Above it the node is saturated, and
    /// flushes follow `flush_interval`, so they write no more rows per event than timed
    /// flushes.
    pub eager_flush_events: u64,
    /// How long after its end a coarse bucket (a minute, an hour, …) of a partitioned
    /// aggregation is rolled up from the finer rows and written (docs/rollup.md). Until
    /// then queries answer it from the finer rows; an event older than that goes straight
    /// into every duration. Measured from the newest event time taken (never ahead of the
    /// clock).
    pub rollup_delay: String,
    /// Events per batch handed from the decoder to a worker.
    pub batch_events: usize,
    /// Batches a worker's queue holds before the decoder waits (back-pressure).
    pub queue_batches: usize,
    /// How long a node keeps retrying a store that is down or busy (at start, and for the
    /// last flush of `tally ingest`) before giving up: an interval, or `forever`. Nothing
    /// buffered is dropped while it waits.
    pub store_wait: String,
    /// Where `tally serve` takes binary ingest (`host:port`; port 0 picks a free one).
    pub ingest: String,
    /// Where `tally serve` answers HTTP.
    pub http: String,
    /// The host an `@source(type='http')` without `receiver.url` listens on (SI's default
    /// path `/<appName>/<streamName>`, port 8280). Loopback unless set: a node does not
    /// open a port to the network unless told to.
    pub source_host: String,
    /// When set, clients must present it (binary HELLO, HTTP `Authorization: Bearer`) on
    /// every path: ingest, queries, `/health` and `/metrics`. An app's http source with
    /// `basic.auth.enabled='true'` takes basic credentials instead.
    pub token: Option<String>,
    /// Endpoints served without the token: any of `health` and `metrics` (for a load
    /// balancer's probe or a Prometheus without credentials). Default: none.
    pub open_endpoints: Vec<String>,
    /// The largest binary frame a client may send, in bytes.
    pub max_frame_bytes: usize,
    /// Events one binary batch (or one HTTP request) may hold.
    pub max_batch_events: usize,
    /// The largest HTTP request body taken, in bytes (larger: 413, naming the limit).
    pub max_body_bytes: usize,
    /// Binary ingest connections served at once.
    pub max_connections: usize,
    /// Rolled-up rows a node may hold unwritten (its store is slow or down) before it
    /// answers new batches with a retryable "busy".
    pub max_pending_rows: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            store: "sqlite:tally.db".into(),
            workers: None,
            flush_interval: "1s".into(),
            min_flush_gap: "1ms".into(),
            eager_flush_events: 65_536,
            rollup_delay: "5s".into(),
            batch_events: 4096,
            queue_batches: 64,
            store_wait: "2m".into(),
            ingest: "127.0.0.1:7171".into(),
            http: "127.0.0.1:7080".into(),
            source_host: "127.0.0.1".into(),
            token: None,
            open_endpoints: Vec::new(),
            max_frame_bytes: 64 << 20,
            max_batch_events: 1 << 20,
            max_body_bytes: 16 << 20,
            max_connections: 256,
            max_pending_rows: 10_000_000,
        }
    }
}

/// The node's configuration, checked.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Where it was read from, for messages.
    pub source_name: String,
    /// `wso2.carbon.id`.
    pub node_id: Option<String>,
    /// `siddhi.properties.partitionById`.
    pub partition_by_id: bool,
    /// `siddhi.properties.shardId`.
    pub shard_id: Option<String>,
    /// `siddhi.properties.aggTimeZone` (default GMT).
    pub agg_time_zone: Zone,
    pub datasources: Vec<DataSource>,
    pub settings: Settings,
    /// `settings.flush_interval`, parsed.
    pub flush_interval: Duration,
    /// `settings.store_wait`, parsed (`None`: forever).
    pub store_wait: Option<Duration>,
    /// `settings.min_flush_gap`, parsed.
    pub min_flush_gap: Duration,
    /// `settings.rollup_delay`, parsed.
    pub rollup_delay: Duration,
    /// `auth.configs.userManager.userStore.users` (SI's local user store): who may post to
    /// an http source with `basic.auth.enabled='true'`.
    pub users: Vec<User>,
    /// `siddhi.stores.query.api.listenerConfigurations`: where SI's store query API
    /// listens (its first plain-HTTP listener), when the section is there.
    pub query_api: Option<String>,
}

/// A user of SI's local user store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub username: String,
    /// Decoded from the file's base64.
    pub password: String,
}

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        NodeConfig {
            source_name: "(defaults)".into(),
            node_id: None,
            partition_by_id: false,
            shard_id: None,
            agg_time_zone: Zone::default(),
            datasources: Vec::new(),
            settings: Settings::default(),
            flush_interval: Duration::from_secs(1),
            store_wait: Some(Duration::from_secs(120)),
            min_flush_gap: Duration::from_millis(1),
            rollup_delay: Duration::from_secs(5),
            users: Vec::new(),
            query_api: None,
        }
    }
}

#[derive(Deserialize, Default)]
struct RawFile {
    #[serde(rename = "wso2.carbon")]
    carbon: Option<RawCarbon>,
    siddhi: Option<RawSiddhi>,
    #[serde(rename = "wso2.datasources")]
    datasources: Option<RawDataSources>,
    #[serde(rename = "auth.configs")]
    auth: Option<RawAuth>,
    #[serde(rename = "siddhi.stores.query.api")]
    query_api: Option<RawQueryApi>,
    tally: Option<Settings>,
}

#[derive(Deserialize, Default)]
struct RawAuth {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(rename = "userManager")]
    user_manager: Option<RawUserManager>,
}

#[derive(Deserialize, Default)]
struct RawUserManager {
    #[serde(rename = "userStore")]
    user_store: Option<RawUserStore>,
}

#[derive(Deserialize, Default)]
struct RawUserStore {
    #[serde(default)]
    users: Vec<RawUserEntry>,
}

#[derive(Deserialize)]
struct RawUserEntry {
    user: RawUser,
}

#[derive(Deserialize)]
struct RawUser {
    username: serde_norway::Value,
    password: serde_norway::Value,
}

#[derive(Deserialize, Default)]
struct RawQueryApi {
    #[serde(rename = "listenerConfigurations", default)]
    listeners: Vec<RawListener>,
}

#[derive(Deserialize)]
struct RawListener {
    host: Option<String>,
    port: Option<u16>,
    scheme: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawCarbon {
    id: Option<serde_norway::Value>,
}

#[derive(Deserialize, Default)]
struct RawSiddhi {
    properties: Option<BTreeMap<String, serde_norway::Value>>,
}

#[derive(Deserialize, Default)]
struct RawDataSources {
    #[serde(rename = "dataSources", default)]
    data_sources: Vec<RawDataSource>,
}

#[derive(Deserialize)]
struct RawDataSource {
    name: String,
    definition: Option<RawDefinition>,
}

#[derive(Deserialize)]
struct RawDefinition {
    configuration: Option<RawConfiguration>,
}

#[derive(Deserialize)]
struct RawConfiguration {
    #[serde(rename = "jdbcUrl")]
    jdbc_url: Option<String>,
    username: Option<serde_norway::Value>,
    password: Option<serde_norway::Value>,
}

impl NodeConfig {
    /// Reads and checks a node file.
    pub fn load(path: &Path) -> Result<NodeConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("cannot read the node configuration {}", path.display()), e))?;
        NodeConfig::parse(&text, &path.display().to_string())
    }

    /// Parses and checks the text of a node file; `source_name` is used in messages.
    pub fn parse(text: &str, source_name: &str) -> Result<NodeConfig> {
        let err = |m: String| Error::config(source_name, m);
        let raw: RawFile = if text.trim().is_empty() {
            RawFile::default()
        } else {
            serde_norway::from_str(text).map_err(|e| err(yaml_message(&e)))?
        };
        let mut cfg = NodeConfig { source_name: source_name.to_string(), ..NodeConfig::default() };
        cfg.node_id = raw.carbon.and_then(|c| c.id).map(|v| scalar(source_name, "wso2.carbon.id", &v)).transpose()?;
        let props = raw.siddhi.and_then(|s| s.properties).unwrap_or_default();
        for (key, value) in &props {
            match key.as_str() {
                "partitionById" => {
                    cfg.partition_by_id = boolean(source_name, "siddhi.properties.partitionById", value)?;
                }
                "shardId" => {
                    let id = scalar(source_name, "siddhi.properties.shardId", value)?;
                    if !id.trim().is_empty() {
                        cfg.shard_id = Some(id);
                    }
                }
                "aggTimeZone" => {
                    let name = scalar(source_name, "siddhi.properties.aggTimeZone", value)?;
                    cfg.agg_time_zone =
                        Zone::parse(&name).map_err(|m| err(format!("siddhi.properties.aggTimeZone: {m}")))?;
                }
                _ => {} // other Siddhi properties are not Tally's business
            }
        }
        for ds in raw.datasources.map(|d| d.data_sources).unwrap_or_default() {
            let conf = ds.definition.and_then(|d| d.configuration);
            let Some(conf) = conf else { continue };
            let Some(jdbc_url) = conf.jdbc_url else {
                continue;
            };
            let username = conf.username.map(|v| scalar(source_name, "username", &v)).transpose()?;
            let password = conf.password.map(|v| scalar(source_name, "password", &v)).transpose()?;
            cfg.datasources.push(DataSource { name: ds.name, jdbc_url, username, password });
        }
        if let Some(auth) = raw.auth {
            cfg.users = users(source_name, auth)?;
        }
        if let Some(api) = raw.query_api {
            let plain =
                api.listeners.iter().find(|l| l.scheme.as_deref().is_none_or(|s| s.eq_ignore_ascii_case("http")));
            let Some(l) = plain else {
                return Err(err(
                    "siddhi.stores.query.api has no plain-HTTP listener (https is not served by Tally): add one \
                     with host and port, or remove the section to serve the store API on tally.http only"
                        .into(),
                ));
            };
            cfg.query_api = Some(format!("{}:{}", l.host.as_deref().unwrap_or("0.0.0.0"), l.port.unwrap_or(7070)));
        }
        if let Some(settings) = raw.tally {
            cfg.settings = settings;
        }
        if let Some(bad) = cfg.settings.open_endpoints.iter().find(|e| !matches!(e.as_str(), "health" | "metrics")) {
            return Err(err(format!(
                "tally.open_endpoints: `{bad}` is not an endpoint that can be opened; write `health`, `metrics` or both"
            )));
        }
        cfg.min_flush_gap = parse_interval(&cfg.settings.min_flush_gap).ok_or_else(|| {
            err(format!("tally.min_flush_gap `{}`: write an interval such as 2ms or 1ms", cfg.settings.min_flush_gap))
        })?;
        cfg.rollup_delay = parse_interval(&cfg.settings.rollup_delay).ok_or_else(|| {
            err(format!("tally.rollup_delay `{}`: write an interval such as 5s or 1m", cfg.settings.rollup_delay))
        })?;
        cfg.flush_interval = parse_interval(&cfg.settings.flush_interval).ok_or_else(|| {
            err(format!(
                "tally.flush_interval `{}`: write a positive interval such as 500ms, 1s or 2m",
                cfg.settings.flush_interval
            ))
        })?;
        cfg.store_wait = match cfg.settings.store_wait.trim() {
            "forever" => None,
            text => Some(parse_interval(text).ok_or_else(|| {
                err(format!(
                    "tally.store_wait `{}`: write an interval such as 30s or 5m, or `forever`",
                    cfg.settings.store_wait
                ))
            })?),
        };
        if let Some(w) = cfg.settings.workers
            && !(1..=256).contains(&w)
        {
            return Err(err(format!("tally.workers is {w}; it must be between 1 and 256")));
        }
        if !(1..=1 << 20).contains(&cfg.settings.batch_events) {
            return Err(err("tally.batch_events must be between 1 and 1048576".into()));
        }
        if cfg.settings.queue_batches == 0 {
            return Err(err("tally.queue_batches must be at least 1".into()));
        }
        Ok(cfg)
    }

    /// The shard id: `shardId`, else the node id (as WSO2 SI does).
    pub fn effective_shard_id(&self) -> Option<&str> {
        self.shard_id.as_deref().or(self.node_id.as_deref())
    }

    /// Worker threads to run: the setting, or one per core.
    pub fn workers(&self) -> usize {
        self.settings.workers.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
    }

    pub fn datasource(&self, name: &str) -> Option<&DataSource> {
        self.datasources.iter().find(|d| d.name == name)
    }
}

/// The users of SI's local user store, passwords decoded from base64.
fn users(source_name: &str, auth: RawAuth) -> Result<Vec<User>> {
    use base64::Engine;
    if let Some(kind) = &auth.kind
        && !kind.eq_ignore_ascii_case("local")
    {
        return Err(Error::config(
            source_name,
            format!("auth.configs type '{kind}': Tally reads SI's local user store only (type: 'local')"),
        ));
    }
    let entries = auth.user_manager.and_then(|m| m.user_store).map(|s| s.users).unwrap_or_default();
    entries
        .into_iter()
        .map(|e| {
            let username = scalar(source_name, "auth.configs user username", &e.user.username)?;
            let encoded = scalar(source_name, "auth.configs user password", &e.user.password)?;
            let bytes = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|e| {
                Error::config(
                    source_name,
                    format!("auth.configs: the password of user `{username}` is not base64 ({e}); SI stores it base64-encoded"),
                )
            })?;
            let password = String::from_utf8(bytes).map_err(|_| {
                Error::config(source_name, format!("auth.configs: the password of user `{username}` is not UTF-8 text"))
            })?;
            Ok(User { username, password })
        })
        .collect()
}

fn yaml_message(e: &serde_norway::Error) -> String {
    match e.location() {
        Some(loc) => format!("line {}, column {}: {e}", loc.line(), loc.column()),
        None => e.to_string(),
    }
}

/// A single YAML value as text (SI writes ids and names unquoted, so numbers and booleans
/// count too).
fn scalar(source_name: &str, key: &str, v: &serde_norway::Value) -> Result<String> {
    use serde_norway::Value as Y;
    match v {
        Y::String(s) => Ok(s.clone()),
        Y::Number(n) => Ok(n.to_string()),
        Y::Bool(b) => Ok(b.to_string()),
        _ => Err(Error::config(source_name, format!("{key} must be a single value, not a list or a map"))),
    }
}

/// A YAML boolean, or the text `true`/`false` in any case.
fn boolean(source_name: &str, key: &str, v: &serde_norway::Value) -> Result<bool> {
    use serde_norway::Value as Y;
    match v {
        Y::Bool(b) => Ok(*b),
        Y::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Y::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(Error::config(source_name, format!("{key} must be true or false"))),
    }
}

/// `500ms`, `1s`, `1.5s`, `2m`; a bare number is seconds.
pub fn parse_interval(text: &str) -> Option<Duration> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (t[..i].trim(), t[i..].trim()),
        None => (t, "s"),
    };
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "sec" => n,
        "m" | "min" => n * 60.0,
        _ => return None,
    };
    (secs.is_finite() && secs > 0.0 && secs <= 86_400.0).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_si_deployment_yaml_and_ignores_other_sections() {
        let cfg = NodeConfig::parse(
            r#"
wso2.carbon:
  id: wso2-si-1
  type: wso2-si
wso2.transport.http:
  listenerConfigurations: []
siddhi:
  refs: []
  properties:
    partitionById: true
    shardId: wso2-si-1
    aggTimeZone: Asia/Singapore
    some.other: x
wso2.datasources:
  dataSources:
    - name: TEST_DB
      description: x
      definition:
        type: RDBMS
        configuration:
          jdbcUrl: 'jdbc:postgresql://127.0.0.1:5432/test'
          username: root
          password: 1234
          driverClassName: org.postgresql.Driver
"#,
            "node.yaml",
        )
        .unwrap();
        assert_eq!(cfg.node_id.as_deref(), Some("wso2-si-1"));
        assert!(cfg.partition_by_id);
        assert_eq!(cfg.effective_shard_id(), Some("wso2-si-1"));
        assert_eq!(cfg.agg_time_zone.name(), "Asia/Singapore");
        let ds = cfg.datasource("TEST_DB").unwrap();
        assert_eq!(ds.jdbc_url, "jdbc:postgresql://127.0.0.1:5432/test");
        assert_eq!(ds.password.as_deref(), Some("1234"));
        assert_eq!(cfg.settings, Settings::default());
    }

    #[test]
    fn shard_id_falls_back_to_node_id_and_strings_are_accepted() {
        let cfg =
            NodeConfig::parse("wso2.carbon: {id: \"n7\"}\nsiddhi: {properties: {partitionById: 'true'}}", "x").unwrap();
        assert!(cfg.partition_by_id);
        assert_eq!(cfg.effective_shard_id(), Some("n7"));
        let empty = NodeConfig::parse("", "x").unwrap();
        assert_eq!(empty.effective_shard_id(), None);
        assert!(!empty.partition_by_id);
    }

    #[test]
    fn own_section_rejects_unknown_keys_and_bad_values() {
        let e = NodeConfig::parse("tally:\n  flush_intervall: 1s\n", "node.yaml").unwrap_err().to_string();
        assert!(e.contains("node.yaml") && e.contains("flush_intervall"), "{e}");
        let e = NodeConfig::parse("tally:\n  flush_interval: soon\n", "node.yaml").unwrap_err().to_string();
        assert!(e.contains("500ms"), "{e}");
        let e =
            NodeConfig::parse("siddhi: {properties: {aggTimeZone: Asia/Singapo}}", "n.yaml").unwrap_err().to_string();
        assert!(e.contains("Asia/Singapo"), "{e}");
        let e = NodeConfig::parse("siddhi: {properties: {partitionById: maybe}}", "n.yaml").unwrap_err().to_string();
        assert!(e.contains("true or false"), "{e}");
        let e = NodeConfig::parse("wso2.carbon: [1, 2", "n.yaml").unwrap_err().to_string();
        assert!(e.contains("n.yaml") && e.contains("line"), "{e}");
        let cfg = NodeConfig::parse("tally:\n  flush_interval: 250ms\n  workers: 3\n", "n").unwrap();
        assert_eq!(cfg.flush_interval, Duration::from_millis(250));
        assert_eq!(cfg.store_wait, Some(Duration::from_secs(120)));
        assert_eq!(cfg.workers(), 3);
        let cfg = NodeConfig::parse("tally:\n  store_wait: forever\n", "n").unwrap();
        assert_eq!(cfg.store_wait, None);
        let e = NodeConfig::parse("tally:\n  store_wait: later\n", "n").unwrap_err().to_string();
        assert!(e.contains("tally.store_wait `later`"), "{e}");
    }

    #[test]
    fn si_users_and_the_store_query_api_are_read() {
        let text = "auth.configs:\n  type: 'local'\n  userManager:\n    adminRole: admin\n    userStore:\n      users:\n       -\n         user:\n           username: admin\n           password: YWRtaW4=\n           roles: 1\n      roles:\n       -\n         role:\n           id: 1\n           displayName: admin\nsiddhi.stores.query.api:\n  transportProperties:\n    - name: x\n      value: 1\n  listenerConfigurations:\n    - id: msf4j-https\n      host: 0.0.0.0\n      port: 7443\n      scheme: https\n    - id: default\n      host: 127.0.0.1\n      port: 7070\n";
        let cfg = NodeConfig::parse(text, "deployment.yaml").unwrap();
        assert_eq!(cfg.users, vec![User { username: "admin".into(), password: "admin".into() }]);
        assert_eq!(cfg.query_api.as_deref(), Some("127.0.0.1:7070"), "the first plain-HTTP listener");
        assert_eq!(NodeConfig::parse("wso2.carbon: {id: n}", "n").unwrap().query_api, None);
        let e = NodeConfig::parse(
            "auth.configs:\n  userManager:\n    userStore:\n      users:\n        - user: {username: a, password: '%%%'}\n",
            "d.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("password of user `a` is not base64"), "{e}");
        let e = NodeConfig::parse("auth.configs:\n  type: external\n", "d.yaml").unwrap_err().to_string();
        assert!(e.contains("local user store only"), "{e}");
        let e = NodeConfig::parse(
            "siddhi.stores.query.api:\n  listenerConfigurations:\n    - {host: h, port: 1, scheme: https}\n",
            "d.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no plain-HTTP listener"), "{e}");
    }

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_interval("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_interval("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_interval("0s"), None);
        assert_eq!(parse_interval("1h"), None);
    }
}
