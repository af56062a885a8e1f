//! The `frames` fuzz target: [`tally::fuzz::frames`].
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tally::fuzz::frames(data));
