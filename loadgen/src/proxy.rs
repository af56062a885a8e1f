//! A TCP proxy in front of a node, for `--chaos partition`: clients connect to the proxy,
//! which relays to the node until it is cut. A cut closes every relayed connection and
//! refuses new ones for a while, without touching the node: a network partition between
//! the clients and one node that is still running (and may still commit what it took).

use crate::error::{IoContext, Result};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One proxy: its listening address, and the switch that cuts it.
#[derive(Debug)]
pub struct Proxy {
    pub addr: String,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct State {
    cut: AtomicBool,
    stop: AtomicBool,
    /// Both ends of every relayed connection, to close them at a cut.
    open: Mutex<Vec<TcpStream>>,
}

impl Proxy {
    /// Listens on a free loopback port and relays to `upstream`.
    pub fn start(upstream: &str) -> Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").doing(|| "cannot start a proxy".into())?;
        let addr = listener.local_addr().doing(|| "cannot read the proxy's address".into())?.to_string();
        listener.set_nonblocking(true).doing(|| "cannot set up the proxy".into())?;
        let state = Arc::new(State::default());
        let (s, up) = (state.clone(), upstream.to_string());
        let accept = std::thread::Builder::new()
            .name("loadgen-proxy".into())
            .spawn(move || accept_loop(listener, &up, &s))
            .doing(|| "cannot start a proxy thread".into())?;
        Ok(Proxy { addr, state, accept: Some(accept) })
    }

    /// Cuts (closes every relayed connection and refuses new ones) or heals.
    pub fn cut(&self, on: bool) {
        self.state.cut.store(on, Ordering::SeqCst);
        if on {
            for s in self.state.open.lock().expect("proxy lock").drain(..) {
                s.shutdown(Shutdown::Both).ok();
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.cut(true);
        if let Some(a) = self.accept.take() {
            a.join().ok();
        }
    }
}

fn accept_loop(listener: TcpListener, upstream: &str, state: &Arc<State>) {
    while !state.stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
        };
        if state.cut.load(Ordering::SeqCst) {
            // Partitioned: the connection is dropped at once.
            continue;
        }
        let Ok(node) = TcpStream::connect(upstream) else { continue };
        client.set_nonblocking(false).ok();
        for s in [&client, &node] {
            s.set_nodelay(true).ok();
        }
        let (Ok(c2), Ok(n2), Ok(c3), Ok(n3)) =
            (client.try_clone(), node.try_clone(), client.try_clone(), node.try_clone())
        else {
            continue;
        };
        state.open.lock().expect("proxy lock").extend([c3, n3]);
        std::thread::spawn(move || relay(client, n2));
        std::thread::spawn(move || relay(node, c2));
    }
}

/// Copies `from` to `to` until either ends, then closes both.
fn relay(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    from.shutdown(Shutdown::Both).ok();
    to.shutdown(Shutdown::Both).ok();
}
