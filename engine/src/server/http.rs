//! HTTP, as SI users have it: JSON ingest as SI's http source takes it, on-demand queries as
//! SI's store API takes them, health and Prometheus metrics. Blocking, on `tiny_http` with a
//! few named threads (`tally-http-N`); the fast path is the binary protocol.
//!
//! - `POST /{StreamName}`: `{"event": {"attr": value, …}}` or an array of those. All or
//!   nothing; answered `200 {"accepted": N}` after the flush that holds the events has
//!   committed, like a binary ACK.
//! - `POST /stores/query`: `{"appName": "…", "query": "…", "details": true?}` →
//!   `{"records": [[…], …]}` (and `"details": [{"name", "type"}, …]` when asked).
//! - `GET /health`, `GET /metrics`.
//!
//! With `tally.token` set, ingest and queries need `Authorization: Bearer TOKEN`.

use super::metrics::{Gauges, Metrics};
use super::{Notice, Shared, wait_committed};
use crate::error::{BadEvent, Error};
use crate::ingest::check::check_event;
use crate::lang::types::Value;
use crate::node::background::join;
use crate::node::router::Router;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;
use tiny_http::{Header, Method, Request, Response};

const THREADS: usize = 4;

pub(super) struct Http {
    server: Arc<tiny_http::Server>,
    threads: Vec<JoinHandle<()>>,
}

impl Http {
    pub fn start(addr: &str, shared: Arc<Shared>) -> crate::Result<(Http, std::net::SocketAddr)> {
        let server = tiny_http::Server::http(addr).map_err(|e| {
            Error::io(
                format!("cannot listen for HTTP on {addr} (tally.http, or --http): is the port in use?"),
                std::io::Error::other(e.to_string()),
            )
        })?;
        let bound = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| Error::io("HTTP listens on a unix socket", std::io::Error::other("not an IP address")))?;
        let server = Arc::new(server);
        let mut threads = Vec::new();
        for i in 0..THREADS {
            let (server, shared) = (server.clone(), shared.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("tally-http-{i}"))
                    .spawn(move || {
                        let mut router = shared.routers.router();
                        loop {
                            match server.recv() {
                                Ok(rq) => handle(rq, &shared, &mut router),
                                // `unblock` at shutdown.
                                Err(_) if shared.stopping.load(Ordering::SeqCst) => break,
                                Err(e) => (shared.report)(Notice::Http(format!("cannot take a request: {e}"))),
                            }
                        }
                    })
                    .map_err(|e| Error::io("cannot start an HTTP thread", e))?,
            );
        }
        Ok((Http { server, threads }, bound))
    }

    /// Stops taking requests (those under way finish) and joins the threads; the names
    /// of any that panicked go to `panicked`.
    pub fn stop(self, panicked: &mut Vec<String>) {
        for _ in &self.threads {
            self.server.unblock();
        }
        for t in self.threads {
            join(t, panicked);
        }
    }
}

fn json_response(status: u16, body: serde_json::Value) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_string(body.to_string())
        .with_status_code(status)
        .with_header(Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]).expect("a valid header"))
}

fn error(status: u16, message: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    json_response(status, serde_json::json!({ "error": message }))
}

fn handle(mut rq: Request, shared: &Shared, router: &mut Router) {
    Metrics::add(&shared.metrics.http_requests, 1);
    let path = rq.url().split('?').next().unwrap_or("").to_string();
    let method = rq.method().clone();
    let authorized = match &shared.config.settings.token {
        None => true,
        Some(t) => rq.headers().iter().any(|h| {
            h.field.equiv("Authorization") && h.value.as_str().strip_prefix("Bearer ").is_some_and(|v| v == t)
        }),
    };
    let response = match (&method, path.as_str()) {
        (Method::Get, "/health") => json_response(
            200,
            serde_json::json!({
                "status": if shared.stopping.load(Ordering::SeqCst) { "stopping" } else { "ok" },
                "app": shared.plan.name,
                "node": shared.config.node_id,
                "shard": shared.config.effective_shard_id(),
            }),
        ),
        (Method::Get, "/metrics") => {
            let gauges = Gauges {
                pending_rows: shared.pending_rows.load(Ordering::Relaxed),
                connections: shared.connections.load(Ordering::Relaxed),
                queue_depths: shared.routers.queue_depths(),
            };
            Response::from_string(shared.metrics.render(&gauges)).with_header(
                Header::from_bytes(&b"Content-Type"[..], &b"text/plain; version=0.0.4"[..]).expect("a valid header"),
            )
        }
        (Method::Post, _) if !authorized => error(401, "this node needs `Authorization: Bearer TOKEN` (tally.token)"),
        (Method::Post, "/stores/query") => match read_json(&mut rq) {
            Ok(body) => query(shared, &body),
            Err(r) => r,
        },
        (Method::Post, p) if p.len() > 1 && !p[1..].contains('/') => match read_json(&mut rq) {
            Ok(body) => ingest(shared, router, &p[1..], &body),
            Err(r) => r,
        },
        _ => error(
            404,
            "no such endpoint: POST /{StreamName}, POST /stores/query, GET /health and GET /metrics are served",
        ),
    };
    if let Err(e) = rq.respond(response) {
        (shared.report)(Notice::Http(format!("cannot answer {method:?} {path}: {e}")));
    }
}

fn read_json(rq: &mut Request) -> Result<serde_json::Value, Response<std::io::Cursor<Vec<u8>>>> {
    let mut body = Vec::new();
    let n = rq
        .as_reader()
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| error(400, &format!("cannot read the body: {e}")))?;
    if n > MAX_BODY {
        return Err(error(
            413,
            &format!("the body is over {MAX_BODY} bytes; send bulk events over the binary protocol"),
        ));
    }
    serde_json::from_slice(&body).map_err(|e| error(400, &format!("the body is not valid JSON: {e}")))
}

fn ingest(
    shared: &Shared,
    router: &mut Router,
    name: &str,
    body: &serde_json::Value,
) -> Response<std::io::Cursor<Vec<u8>>> {
    let Some(stream) = shared.plan.stream(name) else {
        let known: Vec<&str> = shared.plan.streams.iter().map(|s| s.name.as_str()).collect();
        return error(404, &format!("unknown stream `{name}`; the app defines {}", known.join(", ")));
    };
    let s = &shared.plan.streams[stream];
    let items: Vec<&serde_json::Value> = match body {
        serde_json::Value::Array(a) => a.iter().collect(),
        one => vec![one],
    };
    if items.len() > shared.config.settings.max_batch_events {
        return error(
            413,
            &format!(
                "{} events in one request; tally.max_batch_events is {}",
                items.len(),
                shared.config.settings.max_batch_events
            ),
        );
    }
    // Convert and check every event first: a request is taken whole or not at all.
    let mut events: Vec<Vec<Value>> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let values = item
            .get("event")
            .and_then(|e| e.as_object())
            .ok_or_else(|| BadEvent::from("expected {\"event\": {\"attribute\": value, …}}"))
            .and_then(|map| crate::ingest::json::event_values(s, map))
            .and_then(|v| check_event(&shared.plan, stream, &v).map(|_| v));
        match values {
            Ok(v) => events.push(v),
            Err(m) => {
                Metrics::add(&shared.metrics.batches_refused, 1);
                return error(400, &format!("{}; nothing of this request was taken", m.at(i)));
            }
        }
    }
    if shared.pending_rows.load(Ordering::Relaxed) > shared.config.settings.max_pending_rows {
        Metrics::add(&shared.metrics.batches_refused, 1);
        return error(
            503,
            "the node holds tally.max_pending_rows unwritten rows (its store is slow or down); retry later",
        );
    }
    // Registered as routing before the stop check, so the last flush waits for us.
    shared.routing.fetch_add(1, Ordering::SeqCst);
    if shared.stopping.load(Ordering::SeqCst) {
        shared.routing.fetch_sub(1, Ordering::SeqCst);
        return error(503, "the node is stopping; send the events to another node");
    }
    let routed = events.iter().try_for_each(|v| router.push(stream, v)).and_then(|_| router.send_all());
    let generation = shared.open.load(Ordering::SeqCst);
    shared.routing.fetch_sub(1, Ordering::SeqCst);
    if let Err(e) = routed {
        return error(503, &format!("{e}"));
    }
    Metrics::add(&shared.metrics.events_in, events.len() as u64);
    Metrics::add(&shared.metrics.batches_in, 1);
    // Answer once committed, like a binary ACK.
    let wait = shared.config.flush_interval * 2 + shared.config.store_wait.unwrap_or(Duration::from_secs(3600));
    if wait_committed(shared, generation, wait) {
        Metrics::add(&shared.metrics.batches_acked, 1);
        json_response(200, serde_json::json!({ "accepted": events.len() }))
    } else {
        error(
            503,
            "the events were taken but their flush has not committed (the store is down?); they will be written when it is back — do not resend them",
        )
    }
}

fn query(shared: &Shared, body: &serde_json::Value) -> Response<std::io::Cursor<Vec<u8>>> {
    let Some(text) = body.get("query").and_then(|q| q.as_str()) else {
        return error(400, "expected {\"appName\": \"…\", \"query\": \"from … within … per …\"}");
    };
    if let Some(app) = body.get("appName").and_then(|a| a.as_str())
        && app != shared.plan.name
    {
        return error(404, &format!("this node runs the app `{}`, not `{app}`", shared.plan.name));
    }
    match crate::query::run_on_store(&shared.plan, &shared.config, shared.store_override.as_deref(), text) {
        Ok(r) => {
            let records: Vec<serde_json::Value> = r
                .records
                .iter()
                .map(|row| serde_json::Value::Array(row.iter().map(Value::to_json).collect()))
                .collect();
            let mut out = serde_json::json!({ "records": records });
            if body.get("details").and_then(|d| d.as_bool()) == Some(true) {
                let details: Vec<serde_json::Value> = r
                    .columns
                    .iter()
                    .zip(&r.types)
                    .map(|(n, t)| {
                        serde_json::json!({"name": n, "type": t.map(|t| t.to_string().to_uppercase()).unwrap_or_else(|| "OBJECT".into())})
                    })
                    .collect();
                out["details"] = serde_json::Value::Array(details);
            }
            json_response(200, out)
        }
        Err(e) if e.is_retryable() => error(503, &e.to_string()),
        Err(e) => error(400, &e.to_string()),
    }
}
