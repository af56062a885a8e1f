//! The `json` fuzz target: [`tally::fuzz::json`].
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tally::fuzz::json(data));
