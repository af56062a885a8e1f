//! HTTP, as SI users have it, on an async front (hyper on a tokio runtime, threads
//! `tally-http-N`): thousands of requests can wait for their commit without a thread each.
//! Keep-alive and HTTP/1.1 pipelining are on.
//!
//! Listeners, each a set of routes:
//! - `tally.http` (or `--http`): `POST /{StreamName}` (`{"event": {…}}` or an array of those),
//!   `POST /stores/query`, `GET /health`, `GET /metrics`;
//! - every `@source(type='http')` of the app: its stream's events at the exact path of its
//!   `receiver.url` (sources on one host and port share a listener; the query string is
//!   ignored), with HTTP basic auth against `auth.configs` when `basic.auth.enabled='true'`;
//!   without `receiver.url`, `/<appName>/<streamName>` on port 8280 of `tally.source_host`;
//! - SI's store query API, `POST /stores/query`, where `siddhi.stores.query.api` says.
//!
//! Ingest is all or nothing, and answered `200 {"accepted": N}` once the flush that holds
//! the events has committed, like a binary ACK; waiting for that starts a flush (group
//! commit). With `tally.token` set, every path needs `Authorization: Bearer TOKEN`
//! (`/health` and `/metrics` too, unless `tally.open_endpoints` names them), except an app
//! source with basic auth, which takes basic credentials instead.

mod ingest;
use super::idempotency;
use super::metrics::{Gauges, Metrics};
use super::{Notice, Shared};
use crate::config::User;
use crate::error::{Error, Result};
use crate::lang::plan::{AppPlan, DEFAULT_SOURCE_PORT, ReceiverUrl};
use crate::lang::types::Value;
use crate::node::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use ingest::ingest;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Answer = Response<Full<Bytes>>;

/// One event source route: a stream's events at an exact path.
#[derive(Debug, Clone)]
struct SourceRoute {
    path: String,
    stream: usize,
    basic_auth: bool,
}

/// What one listener serves.
#[derive(Debug, Clone, Default)]
struct Routes {
    /// `POST /{StreamName}`, `POST /stores/query`, `GET /health`, `GET /metrics`.
    main: bool,
    /// SI's store query API: `POST /stores/query`.
    query_api: bool,
    sources: Vec<SourceRoute>,
}

/// Where a listener is and what it serves, before it is bound.
#[derive(Debug)]
struct Planned {
    addr: String,
    routes: Routes,
}

/// A listening address and what it serves, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listening {
    pub addr: SocketAddr,
    /// `tally.http`, `store query API`, or `source StreamName /path`.
    pub serves: Vec<String>,
}

/// The running HTTP front.
pub(super) struct Http {
    runtime: tokio::runtime::Runtime,
    stop: tokio::sync::watch::Sender<bool>,
    accepts: Vec<tokio::task::JoinHandle<()>>,
    listening: Vec<Listening>,
}

/// What every request handler shares.
struct Front {
    shared: Arc<Shared>,
    /// Routers for requests that route events; a request takes one and puts it back.
    routers: Mutex<Vec<Router>>,
}

impl Http {
    /// Binds every listener (errors name the address and what it is for), then serves.
    pub fn start(main_addr: &str, shared: Arc<Shared>) -> Result<Http> {
        let planned = plan_listeners(main_addr, &shared)?;
        let threads = AtomicUsize::new(0);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(shared.config.workers().max(2))
            .thread_name_fn(move || format!("tally-http-{}", threads.fetch_add(1, Ordering::Relaxed)))
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| Error::io("cannot start the HTTP runtime", e))?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let front = Arc::new(Front { shared: shared.clone(), routers: Mutex::new(Vec::new()) });
        let mut accepts = Vec::new();
        let mut listening = Vec::new();
        for p in planned {
            // Bound here, synchronously, so that a port in use is an error of `start`.
            let std_listener = std::net::TcpListener::bind(&p.addr).map_err(|e| {
                Error::io(
                    format!("cannot listen for HTTP on {} ({}): is the port in use?", p.addr, describe(&p.routes)),
                    e,
                )
            })?;
            std_listener.set_nonblocking(true).map_err(|e| Error::io("cannot set up an HTTP listener", e))?;
            let addr = std_listener.local_addr().map_err(|e| Error::io("cannot read an HTTP listener's address", e))?;
            listening.push(Listening { addr, serves: serves(&p.routes, &shared.plan) });
            let listener = {
                let _guard = runtime.enter();
                tokio::net::TcpListener::from_std(std_listener)
                    .map_err(|e| Error::io("cannot set up an HTTP listener", e))?
            };
            let routes = Arc::new(p.routes);
            accepts.push(runtime.spawn(accept_loop(listener, routes, front.clone(), stopped.clone())));
        }
        Ok(Http { runtime, stop, accepts, listening })
    }

    /// Where it listens and what each listener serves.
    pub fn listening(&self) -> &[Listening] {
        &self.listening
    }

    /// Stops taking connections; requests under way get up to a second to be answered,
    /// then the runtime and its threads end. The names of threads that panicked go to
    /// `panicked`.
    pub fn stop(self, panicked: &mut Vec<String>) {
        // A closed channel means every accept loop has ended already.
        self.stop.send(true).ok();
        for a in self.accepts {
            if let Err(e) = self.runtime.block_on(a)
                && e.is_panic()
            {
                panicked.push("an HTTP accept loop".into());
            }
        }
        // Joins the runtime's threads; a request still waiting after a second is dropped.
        self.runtime.shutdown_timeout(Duration::from_secs(1));
    }
}

/// The listeners to open: `tally.http`, the query API, and one per source address.
fn plan_listeners(main_addr: &str, shared: &Shared) -> Result<Vec<Planned>> {
    let mut planned = vec![Planned { addr: main_addr.to_string(), routes: Routes { main: true, ..Routes::default() } }];
    if let Some(addr) = &shared.config.query_api {
        let routes = Routes { query_api: true, ..Routes::default() };
        planned.push(Planned { addr: addr.clone(), routes });
    }
    let plan = &shared.plan;
    for source in &plan.sources {
        let stream = &plan.streams[source.stream];
        let url = source.url.clone().unwrap_or_else(|| ReceiverUrl {
            host: shared.config.settings.source_host.clone(),
            port: DEFAULT_SOURCE_PORT,
            path: format!("/{}/{}", plan.name, stream.name),
        });
        let addr = if url.host.contains(':') {
            format!("[{}]:{}", url.host, url.port)
        } else {
            format!("{}:{}", url.host, url.port)
        };
        let route = SourceRoute { path: url.path.clone(), stream: source.stream, basic_auth: source.basic_auth };
        if source.basic_auth && shared.config.users.is_empty() {
            return Err(Error::Config {
                source_name: shared.config.source_name.clone(),
                message: format!(
                    "the http source of stream `{}` has basic.auth.enabled='true', but the node file has no users \
                     (auth.configs.userManager.userStore.users, as in SI's deployment.yaml)",
                    stream.name
                ),
            });
        }
        match planned.iter_mut().find(|p| p.addr == addr) {
            Some(p) => {
                if let Some(other) = p.routes.sources.iter().find(|r| r.path == route.path) {
                    return Err(Error::Schema(format!(
                        "the http sources of streams `{}` and `{}` both listen at http://{addr}{}: give each its own \
                         receiver.url path",
                        plan.streams[other.stream].name, stream.name, route.path
                    )));
                }
                p.routes.sources.push(route);
            }
            None => planned.push(Planned { addr, routes: Routes { sources: vec![route], ..Routes::default() } }),
        }
    }
    Ok(planned)
}

fn serves(routes: &Routes, plan: &AppPlan) -> Vec<String> {
    let mut out = Vec::new();
    if routes.main {
        out.push("tally.http".to_string());
    }
    if routes.query_api {
        out.push("store query API".to_string());
    }
    for r in &routes.sources {
        out.push(format!("source {} {}", plan.streams[r.stream].name, r.path));
    }
    out
}

fn describe(routes: &Routes) -> String {
    if routes.main {
        "tally.http, or --http".into()
    } else if routes.query_api {
        "siddhi.stores.query.api".into()
    } else {
        "an @source(type='http') receiver.url".into()
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    routes: Arc<Routes>,
    front: Arc<Front>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Answers go out as soon as they are ready; small answers should not
                    // wait for Nagle's timer.
                    stream.set_nodelay(true).ok();
                    let (routes, front) = (routes.clone(), front.clone());
                    let report = front.shared.report.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |rq| {
                            let (routes, front) = (routes.clone(), front.clone());
                            async move { Ok::<_, std::convert::Infallible>(handle(rq, &routes, &front).await) }
                        });
                        let served = http1::Builder::new()
                            .keep_alive(true)
                            .pipeline_flush(true)
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                        if let Err(e) = served
                            && !e.is_incomplete_message()
                        {
                            report(Notice::Http(format!("a connection ended: {e}")));
                        }
                    });
                }
                // A connection that failed before it was accepted: say so, keep listening.
                Err(e) => (front.shared.report)(Notice::Accept(e.to_string())),
            },
            _ = stopped.changed() => return,
        }
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error(status: StatusCode, message: &str) -> Answer {
    json(status, serde_json::json!({ "error": message }))
}

fn method_not_allowed(allow: &'static str, path: &str) -> Answer {
    let mut r = error(StatusCode::METHOD_NOT_ALLOWED, &format!("{path} takes {allow} only"));
    r.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
    r
}

async fn handle(rq: Request<Incoming>, routes: &Routes, front: &Front) -> Answer {
    let shared = &front.shared;
    Metrics::add(&shared.metrics.http_requests, 1);
    let path = rq.uri().path().to_string();
    if routes.main {
        match path.as_str() {
            "/health" | "/metrics" if rq.method() != Method::GET => return method_not_allowed("GET", &path),
            "/health" | "/metrics" if !bearer_ok(&rq, shared) && !open(shared, &path[1..]) => {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "this node needs `Authorization: Bearer TOKEN` (tally.token); \
                     tally.open_endpoints can serve /health and /metrics without it",
                );
            }
            "/health" => return health(shared),
            "/metrics" => return metrics(shared),
            _ => {}
        }
    }
    if path == "/stores/query" && (routes.main || routes.query_api) {
        if rq.method() != Method::POST {
            return method_not_allowed("POST", &path);
        }
        if !bearer_ok(&rq, shared) {
            return error(StatusCode::UNAUTHORIZED, "this node needs `Authorization: Bearer TOKEN` (tally.token)");
        }
        return match read_json(rq, shared).await {
            Ok(body) => query(shared, body).await,
            Err(r) => *r,
        };
    }
    if let Some(route) = routes.sources.iter().find(|r| r.path == path) {
        if rq.method() != Method::POST {
            return method_not_allowed("POST", &path);
        }
        // A source asks for basic auth (SI's way) or takes the node's token like every
        // other path: with `tally.token` set, no ingest path is open.
        if !route.basic_auth && !bearer_ok(&rq, shared) {
            return error(StatusCode::UNAUTHORIZED, "this node needs `Authorization: Bearer TOKEN` (tally.token)");
        }
        if route.basic_auth && !basic_ok(&rq, &shared.config.users) {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "this source needs HTTP basic credentials of a user of auth.configs (basic.auth.enabled='true')",
            );
            r.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"tally\""));
            return r;
        }
        let stream = route.stream;
        let key = match idempotency::parse(rq.headers().get(idempotency::HEADER).map(|v| v.as_bytes())) {
            Ok(k) => k,
            Err(m) => return error(StatusCode::BAD_REQUEST, &m),
        };
        return match read_body(rq, shared).await {
            Ok(body) => ingest(front, stream, &body, key).await,
            Err(r) => *r,
        };
    }
    if routes.main && path.len() > 1 && !path[1..].contains('/') {
        if rq.method() != Method::POST {
            return method_not_allowed("POST", &path);
        }
        if !bearer_ok(&rq, shared) {
            return error(StatusCode::UNAUTHORIZED, "this node needs `Authorization: Bearer TOKEN` (tally.token)");
        }
        let Some(stream) = shared.plan.stream(&path[1..]) else {
            let known: Vec<&str> = shared.plan.streams.iter().map(|s| s.name.as_str()).collect();
            return error(
                StatusCode::NOT_FOUND,
                &format!("unknown stream `{}`; the app defines {}", &path[1..], known.join(", ")),
            );
        };
        let key = match idempotency::parse(rq.headers().get(idempotency::HEADER).map(|v| v.as_bytes())) {
            Ok(k) => k,
            Err(m) => return error(StatusCode::BAD_REQUEST, &m),
        };
        return match read_body(rq, shared).await {
            Ok(body) => ingest(front, stream, &body, key).await,
            Err(r) => *r,
        };
    }
    error(StatusCode::NOT_FOUND, &format!("no such endpoint: {}", what_is_served(routes, &shared.plan)))
}

fn what_is_served(routes: &Routes, plan: &AppPlan) -> String {
    let mut out = Vec::new();
    if routes.main {
        out.push("POST /{StreamName}, POST /stores/query, GET /health and GET /metrics are served".to_string());
    } else if routes.query_api {
        out.push("POST /stores/query is served".to_string());
    }
    for r in &routes.sources {
        out.push(format!("POST {} takes events of stream `{}`", r.path, plan.streams[r.stream].name));
    }
    out.join("; ")
}

fn health(shared: &Shared) -> Answer {
    json(
        StatusCode::OK,
        serde_json::json!({
            "status": if shared.stopping.load(Ordering::SeqCst) { "stopping" } else { "ok" },
            "app": shared.plan.name,
            "node": shared.config.node_id,
            "shard": shared.config.effective_shard_id(),
        }),
    )
}

fn metrics(shared: &Shared) -> Answer {
    let gauges = Gauges {
        pending_rows: shared.pending_rows.load(Ordering::Relaxed),
        connections: shared.connections.load(Ordering::Relaxed),
        queue_depths: shared.routers.queue_depths(),
    };
    let mut r = Response::new(Full::new(Bytes::from(shared.metrics.render(&gauges))));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    r
}

/// `tally.token`, when set, as `Authorization: Bearer TOKEN`.
fn bearer_ok(rq: &Request<Incoming>, shared: &Shared) -> bool {
    let Some(token) = &shared.config.settings.token else { return true };
    rq.headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|v| v == token)
}

/// `endpoint` (`health`, `metrics`) is in `tally.open_endpoints`.
fn open(shared: &Shared, endpoint: &str) -> bool {
    shared.config.settings.open_endpoints.iter().any(|e| e == endpoint)
}

/// HTTP basic credentials of one of `users`.
fn basic_ok(rq: &Request<Incoming>, users: &[User]) -> bool {
    use base64::Engine;
    let Some(encoded) = rq.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, rest) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("basic").then_some(rest.trim())
    }) else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) else { return false };
    let Ok(text) = String::from_utf8(decoded) else { return false };
    let Some((user, password)) = text.split_once(':') else { return false };
    users.iter().any(|u| u.username == user && u.password == password)
}

/// The body as JSON, within `tally.max_body_bytes` (413 beyond it, naming the limit).
async fn read_json(rq: Request<Incoming>, shared: &Shared) -> std::result::Result<serde_json::Value, Box<Answer>> {
    parse_json(&read_body(rq, shared).await?)
}

fn parse_json(body: &[u8]) -> std::result::Result<serde_json::Value, Box<Answer>> {
    serde_json::from_slice(body)
        .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, &format!("the body is not valid JSON: {e}"))))
}

/// The body, within `tally.max_body_bytes` (413 beyond it, naming the limit).
async fn read_body(rq: Request<Incoming>, shared: &Shared) -> std::result::Result<bytes::Bytes, Box<Answer>> {
    let limit = shared.config.settings.max_body_bytes;
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "the body is over {limit} bytes (tally.max_body_bytes): send fewer events per request, or bulk events \
                 over the binary protocol"
            ),
        )
    };
    let declared = rq.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Box::new(too_large()));
    }
    match Limited::new(rq.into_body(), limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(Box::new(too_large())),
        Err(e) => Err(Box::new(error(StatusCode::BAD_REQUEST, &format!("cannot read the body: {e}")))),
    }
}

/// SI's store query API: `{"appName": "…", "query": "…", "details": true?}` →
/// `{"records": [[…], …]}` (and `"details": [{"name", "type"}, …]` when asked).
async fn query(shared: &Arc<Shared>, body: serde_json::Value) -> Answer {
    let app = body.get("appName").and_then(|a| a.as_str()).unwrap_or("");
    let text = body.get("query").and_then(|q| q.as_str()).unwrap_or("");
    if app.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "Siddhi App name cannot be empty: give {\"appName\": \"…\", \"query\": \"…\"}",
        );
    }
    if text.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "Query cannot be empty: give {\"appName\": \"…\", \"query\": \"from … within … per …\"}",
        );
    }
    if app != shared.plan.name {
        return error(StatusCode::NOT_FOUND, &format!("Cannot find an active SiddhiApp with name: {app}"));
    }
    let details = body.get("details").and_then(|d| d.as_bool()) == Some(true);
    let (s, text) = (shared.clone(), text.to_string());
    // Store I/O: off the async threads.
    let ran = tokio::task::spawn_blocking(move || {
        crate::query::run_on_store(&s.plan, &s.config, s.store_override.as_deref(), &text)
    })
    .await;
    let result = match ran {
        Ok(r) => r,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("the query did not finish: {e}")),
    };
    match result {
        Ok(r) => {
            let records: Vec<serde_json::Value> = r
                .records
                .iter()
                .map(|row| serde_json::Value::Array(row.iter().map(Value::to_json).collect()))
                .collect();
            let mut out = serde_json::json!({ "records": records });
            if details {
                let d: Vec<serde_json::Value> = r
                    .columns
                    .iter()
                    .zip(&r.types)
                    .map(|(n, t)| {
                        serde_json::json!({"name": n, "type": t.map(|t| t.to_string().to_uppercase()).unwrap_or_else(|| "OBJECT".into())})
                    })
                    .collect();
                out["details"] = serde_json::Value::Array(d);
            }
            json(StatusCode::OK, out)
        }
        Err(e) if e.is_retryable() => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        Err(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}
