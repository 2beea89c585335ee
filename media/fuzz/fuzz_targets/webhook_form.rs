//! The body lives in `vocalized_control::fuzzing::webhook_form` (shared with the stable
//! driver, control/tests/fuzz.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vocalized_control::fuzzing::webhook_form(data));
