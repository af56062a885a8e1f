//! The `app` fuzz target: [`tally::fuzz::app`].
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tally::fuzz::app(data));
