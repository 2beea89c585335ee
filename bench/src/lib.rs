//! Bench suite and protocol-faithful fakes (ARCHITECTURE.md §8, issue 4).
//!
//! - [`audio`]: test audio. The checked-in speech fixtures under `tests/fixtures/`, and a
//!   tone-burst generator that stands in for them when they are missing.
//! - [`fakes::openai`]: a fake OpenAI Realtime server (GA WebSocket protocol,
//!   protocols.md §2) with an energy VAD, scripted replies and failure modes.
//! - [`fakes::twilio`]: a fake Twilio: signed voice/status webhooks, TwiML parsing, and a
//!   Media Streams client that plays a caller at real-time pace and simulates Twilio's
//!   playback buffer (marks, `clear`), protocols.md §1.
//!
//! The fakes never use the gateway's own wire types or validators: they are written from
//! the protocol notes so that they can catch the gateway's mistakes.

pub mod audio;
pub mod fakes;
pub mod suite;
