//! A named background thread that runs until told to stop: the heartbeat and the purge
//! schedule. Stopping wakes it from its wait at once and joins it; so does dropping it.

use crate::error::{Error, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Debug)]
pub struct Background {
    stop: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

/// What the thread's body waits on.
#[derive(Debug)]
pub struct Stop(Receiver<()>);

impl Stop {
    /// Sleeps `d` unless told to stop; true when told (the body should return).
    pub fn wait(&self, d: Duration) -> bool {
        !matches!(self.0.recv_timeout(d), Err(RecvTimeoutError::Timeout))
    }
}

impl Background {
    /// Runs `body` on a thread named `name`.
    pub fn spawn(name: &str, body: impl FnOnce(Stop) + Send + 'static) -> Result<Background> {
        let (stop, stopped) = bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || body(Stop(stopped)))
            .map_err(|e| Error::io(format!("cannot start the {name} thread"), e))?;
        Ok(Background { stop, thread: Some(thread) })
    }

    /// Tells the thread to stop (what it is doing finishes first) and joins it; an
    /// internal error if it had panicked.
    pub fn stop(mut self) -> Result<()> {
        self.halt()
    }

    fn halt(&mut self) -> Result<()> {
        // A full channel means the thread was told already.
        self.stop.try_send(()).ok();
        let mut panicked = Vec::new();
        if let Some(t) = self.thread.take() {
            join(t, &mut panicked);
        }
        match panicked.is_empty() {
            true => Ok(()),
            false => Err(Error::Internal(format!("the thread {} panicked", panicked.join(", ")))),
        }
    }
}

impl Drop for Background {
    /// Dropped without [`Background::stop`]: the thread is still stopped and joined, and a
    /// panic in it has no caller left to hear of it.
    fn drop(&mut self) {
        self.halt().ok();
    }
}

/// Joins a thread; when it panicked, its name goes to `panicked` and there is no value.
/// Every thread the engine starts is joined through here, so a panic is never silently
/// taken for a clean end.
pub fn join<T>(thread: JoinHandle<T>, panicked: &mut Vec<String>) -> Option<T> {
    let name = thread.thread().name().unwrap_or("unnamed").to_string();
    match thread.join() {
        Ok(v) => Some(v),
        Err(_) => {
            panicked.push(name);
            None
        }
    }
}
