//! The ledger: which version 2 batches (producer, sequence number) a collect holds, so that
//! their ids are recorded in the same flush as their events (docs/delivery.md).
//!
//! A connection routes a batch and notes its id under the gate's shared side; a collect
//! takes the gate's exclusive side while it asks the workers for their partials and takes
//! the notes. A batch noted before is ahead of that request in the workers' queues, so
//! its events are in the collect; one noted after is behind it, in the next. Without the
//! gate a batch routed just before a collect could have its events in one flush and its id
//! in the next, and a node dying between the two would count a resent batch twice.
//!
//! Version 1 batches do not pass the gate: their throughput is untouched.

use std::sync::{Arc, Mutex, RwLock};

#[derive(Debug, Default)]
pub struct Ledger {
    gate: RwLock<()>,
    noted: Mutex<Vec<(Arc<str>, i64)>>,
}

impl Ledger {
    /// Runs `route` (which hands a batch to the workers) and, when it succeeds, notes
    /// `(producer, seq)` for the collect that holds the batch's events.
    pub fn route_and_note<T, E>(
        &self,
        producer: &Arc<str>,
        seq: i64,
        route: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let _shared = self.gate.read().unwrap_or_else(|p| p.into_inner());
        let routed = route()?;
        self.noted.lock().unwrap_or_else(|p| p.into_inner()).push((producer.clone(), seq));
        Ok(routed)
    }

    /// Runs `request` (which asks the workers for their partials) with no batch being
    /// routed, and takes the ids noted before it.
    pub(crate) fn request_and_take<E>(
        &self,
        request: impl FnOnce() -> Result<(), E>,
    ) -> Result<Vec<(Arc<str>, i64)>, E> {
        let _exclusive = self.gate.write().unwrap_or_else(|p| p.into_inner());
        request()?;
        Ok(std::mem::take(&mut *self.noted.lock().unwrap_or_else(|p| p.into_inner())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_is_taken_by_the_first_request_after_it_and_only_when_routed() {
        let l = Ledger::default();
        let p: Arc<str> = Arc::from("p");
        assert_eq!(l.route_and_note(&p, 1, || Ok::<_, ()>(())), Ok(()));
        assert_eq!(l.route_and_note(&p, 2, || Err::<(), _>("refused")), Err("refused"));
        let taken = l.request_and_take(|| Ok::<_, ()>(())).unwrap();
        assert_eq!(taken, vec![(p.clone(), 1)]);
        assert!(l.request_and_take(|| Ok::<_, ()>(())).unwrap().is_empty());
        // A failed request takes nothing: the notes wait for the next.
        l.route_and_note(&p, 3, || Ok::<_, ()>(())).unwrap();
        assert_eq!(l.request_and_take(|| Err::<(), _>("closed")), Err("closed"));
        assert_eq!(l.request_and_take(|| Ok::<_, ()>(())).unwrap(), vec![(p, 3)]);
    }
}
