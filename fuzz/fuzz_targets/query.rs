//! The `query` fuzz target: [`tally::fuzz::query`].
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tally::fuzz::query(data));
