//! Publishing the way SI clients do: JSON events posted over HTTP/1.1 with keep-alive,
//! `{"event": {…}}` per request or an array of them, each request answered once its
//! events are committed. Every client is closed-loop (one request in flight), as an SI
//! http sink or a `curl` loop is.
//!
//! A request answered 503 (the node is busy or stopping) is sent again; one refused for
//! good (4xx) fails the run. A request whose connection broke is sent again on a new one:
//! HTTP has no way to tell whether the node committed it, so such a retry may count its
//! events twice, and the verification would show it.

use crate::drive::Published;
use crate::error::{Error, Result};
use crate::{Batch, Workload, symbol_name};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How an HTTP run publishes.
#[derive(Debug, Clone)]
pub struct HttpPlan {
    /// The nodes' HTTP addresses (`tally.http`).
    pub targets: Vec<String>,
    /// Concurrent clients over all nodes (client `c` posts to node `c % nodes`).
    pub clients: usize,
    pub token: Option<String>,
}

/// Every event as complete HTTP requests of `per_request` events (`POST /TradeStream`,
/// keep-alive), so that formatting JSON is not what a run measures.
pub fn requests(w: &Workload, per_request: usize, token: Option<&str>) -> Vec<Batch> {
    let per_request = per_request.max(1);
    let names: Vec<String> = (0..w.symbols).map(symbol_name).collect();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let mut out = Vec::new();
    let mut events: Vec<String> = Vec::with_capacity(per_request);
    let flush = |events: &mut Vec<String>, out: &mut Vec<Batch>| {
        if events.is_empty() {
            return;
        }
        let body = if events.len() == 1 { events[0].clone() } else { format!("[{}]", events.join(",")) };
        let head = format!(
            "POST /TradeStream HTTP/1.1\r\nHost: tally\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body.as_bytes());
        out.push(Batch { bytes, events: events.len() as u32 });
        events.clear();
    };
    for t in w.trades() {
        events.push(format!(
            "{{\"event\":{{\"symbol\":\"{}\",\"price\":{},\"quantity\":{},\"timestamp\":{}}}}}",
            names[t.symbol as usize], t.price, t.quantity, t.timestamp
        ));
        if events.len() == per_request {
            flush(&mut events, &mut out);
        }
    }
    flush(&mut events, &mut out);
    out
}

/// What the clients share.
struct Shared {
    next: AtomicUsize,
    acked_events: AtomicU64,
    acked_requests: AtomicU64,
    resent: AtomicU64,
}

/// Posts every request; fails when one is refused for good or a node cannot be reached.
pub fn publish(plan: &HttpPlan, requests: &[Batch], progress: &ProgressBar) -> Result<Published> {
    let clients = plan.clients.max(1);
    let shared = Shared {
        next: AtomicUsize::new(0),
        acked_events: AtomicU64::new(0),
        acked_requests: AtomicU64::new(0),
        resent: AtomicU64::new(0),
    };
    let started = Instant::now();
    let results: Vec<Result<(u64, Histogram<u64>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let target = &plan.targets[c % plan.targets.len()];
                let shared = &shared;
                s.spawn(move || client(target, requests, shared, progress))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::Publish { message: "an HTTP client thread panicked".into(), retryable: false })
                })
            })
            .collect()
    });
    let elapsed = started.elapsed();
    let mut latency = Histogram::<u64>::new(3).expect("a histogram");
    let mut per_target = vec![0u64; plan.targets.len()];
    for (c, r) in results.into_iter().enumerate() {
        let (events, h) = r?;
        per_target[c % plan.targets.len()] += events;
        latency.add(&h).expect("same histogram bounds");
    }
    Ok(Published {
        elapsed,
        acked_events: shared.acked_events.load(Ordering::SeqCst),
        acked_batches: shared.acked_requests.load(Ordering::SeqCst),
        per_target,
        resent: shared.resent.load(Ordering::SeqCst),
        duplicates: 0,
        reconnects: 0,
        latency_us: latency,
    })
}

/// How many times in a row a request may meet a broken connection or a busy node.
const ATTEMPTS: u32 = 200;

/// One closed-loop client: takes the next request, posts it, waits for the answer.
fn client(target: &str, requests: &[Batch], shared: &Shared, progress: &ProgressBar) -> Result<(u64, Histogram<u64>)> {
    let mut latency = Histogram::<u64>::new(3).expect("a histogram");
    let mut events = 0u64;
    let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
    loop {
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        let Some(rq) = requests.get(i) else { break };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent_at = Instant::now();
            let answer = post(&mut conn, target, &rq.bytes);
            match answer {
                Ok((200, _)) => {
                    // A latency beyond the histogram's range is left out of it.
                    latency.record(sent_at.elapsed().as_micros() as u64).ok();
                    events += u64::from(rq.events);
                    shared.acked_events.fetch_add(u64::from(rq.events), Ordering::Relaxed);
                    shared.acked_requests.fetch_add(1, Ordering::Relaxed);
                    progress.inc(u64::from(rq.events));
                    break;
                }
                Ok((503, _)) | Err(_) if attempt < ATTEMPTS => {
                    shared.resent.fetch_add(1, Ordering::Relaxed);
                    if answer.is_err() {
                        conn = None;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok((status, body)) => {
                    return Err(Error::Publish {
                        message: format!("{target} answered request {i} with {status}: {body}"),
                        retryable: status == 503,
                    });
                }
                Err(e) => {
                    return Err(Error::Publish { message: format!("{target}: {e}"), retryable: true });
                }
            }
        }
    }
    Ok((events, latency))
}

/// Sends one request on the keep-alive connection (opened when there is none) and reads
/// its answer: (status, body).
fn post(
    conn: &mut Option<(TcpStream, BufReader<TcpStream>)>,
    target: &str,
    request: &[u8],
) -> std::io::Result<(u16, String)> {
    if conn.is_none() {
        let stream = TcpStream::connect(target)?;
        stream.set_nodelay(true)?;
        let reader = BufReader::with_capacity(1 << 14, stream.try_clone()?);
        *conn = Some((stream, reader));
    }
    let (stream, reader) = conn.as_mut().expect("connected above");
    stream.write_all(request)?;
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP status line: {line:?}")))?;
    let mut length = 0usize;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().map_err(|_| std::io::Error::other("a bad Content-Length"))?;
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
