//! The body lives in `vocalized_media::fuzzing::gemini_messages` (shared with the stable driver,
//! media/tests/fuzz.rs, which documents the properties it checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vocalized_media::fuzzing::gemini_messages(data));
