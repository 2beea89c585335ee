//! Caller and provider wire formats, typed (STYLE.md §2: parse, then act).
//!
//! - [`twilio`]: Twilio Media Streams JSON, both directions (protocols.md §1.2–1.3).
//! - [`openai`]: OpenAI Realtime (GA), the session.update and events (protocols.md §2).
//! - [`gemini`]: Google Gemini Live, the setup and server messages (protocols.md §3).
//!
//! Provider formats (OpenAI, Gemini, ...) join here as one module each; they translate
//! to and from the provider-neutral `ProviderEvent` / `ProviderCommand` of
//! [`crate::core::session`].

pub mod gemini;
pub mod openai;
pub mod twilio;
