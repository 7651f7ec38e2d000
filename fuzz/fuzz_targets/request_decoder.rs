//! Fuzz target: see `bookstore::fuzzing::request_decoder` for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bookstore::fuzzing::request_decoder(data));
