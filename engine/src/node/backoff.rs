//! Retrying what failed for a reason that can pass (a store that is down, busy or
//! restarting): wait, double the wait up to a cap, and tell the caller before each wait so
//! the operator sees why the node is not progressing.

use crate::error::Result;
use std::time::{Duration, Instant};

/// The first wait and the longest one.
const FIRST: Duration = Duration::from_millis(200);
const CAP: Duration = Duration::from_secs(5);

/// Runs `attempt` until it succeeds, fails with an error that is not retryable, or the next
/// wait would end after `patience` (`None`: never give up). `on_wait` hears each retryable
/// error and the wait that follows.
pub fn retry<T>(
    patience: Option<Duration>,
    on_wait: &mut dyn FnMut(&crate::Error, Duration),
    mut attempt: impl FnMut() -> Result<T>,
) -> Result<T> {
    let deadline = patience.map(|p| Instant::now() + p);
    let mut wait = FIRST;
    loop {
        match attempt() {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && deadline.is_none_or(|d| Instant::now() + wait < d) => {
                on_wait(&e, wait);
                std::thread::sleep(wait);
                wait = (wait * 2).min(CAP);
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    fn busy() -> Error {
        Error::Store { backend: "test", code: None, message: "down".into(), retryable: true }
    }

    #[test]
    fn retries_until_success_and_reports_each_wait() {
        let mut calls = 0;
        let mut waits = Vec::new();
        let v = retry(Some(Duration::from_secs(10)), &mut |_, w| waits.push(w), || {
            calls += 1;
            if calls < 3 { Err(busy()) } else { Ok(calls) }
        })
        .unwrap();
        assert_eq!(v, 3);
        assert_eq!(waits, vec![FIRST, FIRST * 2]);
    }

    #[test]
    fn gives_up_on_permanent_errors_and_after_patience() {
        let mut calls = 0;
        let e = retry(None, &mut |_, _| {}, || -> Result<()> {
            calls += 1;
            Err(Error::Schema("bad".into()))
        })
        .unwrap_err();
        assert_eq!((calls, e.to_string()), (1, "bad".to_string()));
        let e = retry(Some(Duration::from_millis(300)), &mut |_, _| {}, || -> Result<()> { Err(busy()) });
        assert!(e.unwrap_err().is_retryable());
    }
}
