//! Fuzz target: see `bookstore::fuzzing::header_validator` for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bookstore::fuzzing::header_validator(data));
