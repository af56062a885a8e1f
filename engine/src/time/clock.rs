//! The wall clock, in the unit every time stamp of the engine uses.

/// Wall-clock time in epoch milliseconds (0 for a clock set before 1970, which no
/// registry heartbeat or arrival time can use anyway).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
