//! Ingest over HTTP: a request's JSON body becomes events, checked all or nothing, routed
//! to the workers, and answered once the flush that holds them has committed. With an
//! `Idempotency-Key` the request is counted once however often it is sent
//! ([`super::super::idempotency`], docs/delivery.md).

use super::super::Commit;
use super::super::Shared;
use super::super::idempotency::{self, Admit};
use super::super::metrics::Metrics;
use super::{Answer, Front, error, json, parse_json};
use crate::lang::types::Value;
use hyper::StatusCode;
use hyper::header::HeaderValue;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The events of an ingest request's body: read straight into values when the body is
/// valid ([`crate::ingest::body`]); otherwise as a tree, which names what is wrong.
fn events_of_body(shared: &Shared, stream: usize, body: &[u8]) -> std::result::Result<Vec<Vec<Value>>, Box<Answer>> {
    let s = &shared.plan.streams[stream];
    let max = shared.config.settings.max_batch_events;
    if let Some(events) = crate::ingest::body::events(s, s.mapping, body, max)
        && events.iter().all(|v| crate::ingest::check::check_event(&shared.plan, stream, v).is_ok())
    {
        return Ok(events);
    }
    events_of(shared, stream, &parse_json(body)?)
}

/// The events of a request: `{"event": {…}}` or an array of those, converted and checked,
/// all or nothing.
fn events_of(
    shared: &Shared,
    stream: usize,
    body: &serde_json::Value,
) -> std::result::Result<Vec<Vec<Value>>, Box<Answer>> {
    let count = body.as_array().map_or(1, |a| a.len());
    if count > shared.config.settings.max_batch_events {
        return Err(Box::new(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "{count} events in one request; tally.max_batch_events is {}",
                shared.config.settings.max_batch_events
            ),
        )));
    }
    crate::ingest::json::request_events(&shared.plan, stream, body).map_err(|(i, m)| {
        Metrics::add(&shared.metrics.batches_refused, 1);
        Box::new(error(StatusCode::BAD_REQUEST, &format!("{}; nothing of this request was taken", m.at(i))))
    })
}

/// What routing a request came to.
enum Routed {
    /// Taken at this generation.
    New(u64),
    /// With an idempotency key: counted before; committed already (`None`) or once the
    /// generation has committed.
    Duplicate(Option<u64>),
}

pub(super) async fn ingest(front: &Front, stream: usize, body: &[u8], key: Option<(String, i64)>) -> Answer {
    let shared = &front.shared;
    let events = match events_of_body(shared, stream, body) {
        Ok(e) => e,
        Err(r) => return *r,
    };
    if shared.pending_rows.load(Ordering::Relaxed) > shared.config.settings.max_pending_rows {
        Metrics::add(&shared.metrics.batches_refused, 1);
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the node holds tally.max_pending_rows unwritten rows (its store is slow or down); retry later",
        );
    }
    // With an idempotency key, the producer first (taken in the store at its first request).
    let held = match &key {
        None => None,
        Some((p, _)) => match tokio::task::block_in_place(|| shared.http_producers.entry(shared, p)) {
            Ok(h) => Some(h),
            Err(e) => {
                let m = if idempotency::held_elsewhere(&e) {
                    e.to_string()
                } else {
                    format!("cannot take producer `{p}` in the store ({e}); retry later or use another node")
                };
                let mut r = error(StatusCode::SERVICE_UNAVAILABLE, &m);
                r.headers_mut().insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
                return r;
            }
        },
    };
    // Registered as routing before the stop check, so the last flush waits for us.
    shared.routing.fetch_add(1, Ordering::SeqCst);
    if shared.stopping.load(Ordering::SeqCst) {
        shared.routing.fetch_sub(1, Ordering::SeqCst);
        return error(StatusCode::SERVICE_UNAVAILABLE, "the node is stopping; send the events to another node");
    }
    // Routing can wait on a full worker queue (back-pressure): tell the runtime this
    // thread may block, so other requests move on.
    let routed = tokio::task::block_in_place(|| {
        // A producer's requests are admitted one at a time (a client sends them in order).
        let mut held = held.as_ref().map(|h| h.lock().unwrap_or_else(|p| p.into_inner()));
        if let (Some(h), Some((_, seq))) = (held.as_deref(), &key) {
            match idempotency::admit(h, *seq) {
                Admit::Committed => return Ok(Routed::Duplicate(None)),
                Admit::Taken { generation } => return Ok(Routed::Duplicate(Some(generation))),
                Admit::New => {}
            }
        }
        let mut router = front.routers.lock().expect("routers").pop().unwrap_or_else(|| shared.routers.router());
        let mut route = || events.iter().try_for_each(|v| router.push(stream, v)).and_then(|_| router.send_all());
        let routed = match (held.as_deref(), &key) {
            // Noted with the collect that holds its events (node::ledger).
            (Some(h), Some((_, seq))) => shared.ledger.route_and_note(&h.name, *seq, route),
            _ => route(),
        };
        front.routers.lock().expect("routers").push(router);
        let generation = shared.open.load(Ordering::SeqCst);
        if routed.is_ok()
            && let (Some(h), Some((_, seq))) = (held.as_deref_mut(), &key)
        {
            h.took(*seq, generation);
        }
        routed.map(|_| Routed::New(generation))
    });
    shared.routing.fetch_sub(1, Ordering::SeqCst);
    let (generation, duplicate) = match routed {
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        Ok(Routed::New(g)) => {
            Metrics::add(&shared.metrics.events_in, events.len() as u64);
            Metrics::add(&shared.metrics.batches_in, 1);
            (g, false)
        }
        Ok(Routed::Duplicate(g)) => (g.unwrap_or(0), true),
    };
    // Answer once committed, like a binary ACK; waiting starts a flush (group commit).
    shared.wake_flush();
    let wait = shared.config.flush_interval * 2 + shared.config.store_wait.unwrap_or(Duration::from_secs(3600));
    let mut commits = shared.commits.subscribe();
    let done = tokio::time::timeout(wait, commits.wait_for(|c: &Commit| c.generation >= generation || c.given_up))
        .await
        .ok()
        .and_then(|r| r.ok().map(|c| c.generation >= generation));
    if done == Some(true) && duplicate {
        Metrics::add(&shared.metrics.batches_duplicate, 1);
        json(StatusCode::OK, serde_json::json!({ "accepted": events.len(), "duplicate": true }))
    } else if done == Some(true) {
        Metrics::add(&shared.metrics.batches_acked, 1);
        json(StatusCode::OK, serde_json::json!({ "accepted": events.len() }))
    } else if key.is_some() {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the events were taken but their flush has not committed (the store is down?); resend them with the \
             same Idempotency-Key, to this node or another: they are counted once",
        )
    } else {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the events were taken but their flush has not committed (the store is down?); they will be written \
             when it is back — do not resend them",
        )
    }
}
