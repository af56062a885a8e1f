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

    /// Tells the thread to stop (what it is doing finishes first) and joins it.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        let _ = self.stop.try_send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.halt();
    }
}
