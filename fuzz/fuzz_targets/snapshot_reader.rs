//! Fuzz target: see `bookstore::fuzzing::snapshot_reader` for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bookstore::fuzzing::snapshot_reader(data));
