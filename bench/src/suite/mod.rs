//! The load-test runner behind `vocalized-bench` (issue 7): scenarios that drive a real
//! gateway with simulated callers and fake providers, and the report they produce.
//!
//! A call flows through the bench like this:
//! - `caller.rs`: a simulated Twilio caller. Signed voice webhook, then Media Streams at
//!   real-time pace, every 20 ms frame stamped (`marker.rs`) as it leaves; it times the
//!   agent audio it hears by the stamps the provider put in it.
//! - `provider.rs`: the fake OpenAI Realtime session (`fakes::openai::Session`) behind a
//!   driver that reads the caller's stamps on arrival and stamps the agent's audio.
//! - `gateway.rs`: the `vocalized serve` child, its provisioning over the REST API, and
//!   its CPU and memory from /proc.
//! - `run.rs`: one scenario at one concurrency level: ramp, sample, join.
//! - `report.rs`: the joined figures (the JSON report's shape) and the printed table;
//!   `html.rs`: the self-contained HTML report with inline SVG charts.
//! - `stats.rs`: histograms and frame-number sets.
//! - `webrtc.rs`: the `webrtc` scenario's browser callers (real WebRTC, Opus) and how
//!   their frames are timed by position instead of stamps.

pub mod caller;
pub mod gateway;
pub mod html;
pub mod marker;
pub mod provider;
pub mod report;
pub mod run;
pub mod stats;
pub mod transcode;
pub mod webrtc;
