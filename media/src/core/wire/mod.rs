//! Caller and provider wire formats, typed (STYLE.md §2: parse, then act).
//!
//! - [`twilio`]: Twilio Media Streams JSON, both directions (protocols.md §1.2–1.3).
//! - [`openai`]: OpenAI Realtime (GA), the session.update and events (protocols.md §2).
//! - [`gemini`]: Google Gemini Live, the setup and server messages (protocols.md §3).
//! - [`elevenlabs`]: ElevenLabs Agents, the initiation message and events (protocols.md §4).
//! - [`deepgram`]: Deepgram Voice Agent, `Settings`, binary audio and events (protocols.md §5).
//!
//! Provider formats (OpenAI, Gemini, ...) join here as one module each; they translate
//! to and from the provider-neutral `ProviderEvent` / `ProviderCommand` of
//! [`crate::core::session`].

pub mod deepgram;
pub mod elevenlabs;
pub mod gemini;
pub mod openai;
pub mod twilio;
