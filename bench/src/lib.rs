//! Bench suite and protocol-faithful fakes (ARCHITECTURE.md §8, issue 4).
//!
//! - [`audio`]: test audio. The checked-in speech fixtures under `tests/fixtures/`, and a
//!   tone-burst generator that stands in for them when they are missing.
//! - [`fakes::openai`]: a fake OpenAI Realtime server (GA WebSocket protocol,
//!   protocols.md §2) with an energy VAD, scripted replies and failure modes.
//! - [`fakes::gemini`]: a fake Gemini Live server (protocols.md §3): setup checks, an
//!   energy VAD, interruptions, `goAway` and session resumption, failure modes.
//! - [`fakes::elevenlabs`]: a fake ElevenLabs Agents server (§4): initiation, metadata,
//!   paced audio with event ids, interruption, pings, client tools, failure modes.
//! - [`fakes::deepgram`]: a fake Deepgram Voice Agent (§5): Welcome, Settings checked and
//!   applied, binary audio both ways, barge-in, KeepAlive idle close, failure modes.
//! - [`fakes::twilio`]: a fake Twilio: signed voice/status webhooks, TwiML parsing, and a
//!   Media Streams client that plays a caller at real-time pace and simulates Twilio's
//!   playback buffer (marks, `clear`), protocols.md §1.
//!
//! The fakes never use the gateway's own wire types or validators: they are written from
//! the protocol notes so that they can catch the gateway's mistakes.

pub mod audio;
pub mod fakes;
pub mod suite;
