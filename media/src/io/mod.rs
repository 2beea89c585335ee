//! The tokio side of the media plane: everything that owns a socket, a task or a clock,
//! kept thin around the sans-IO [`crate::core`].
//!
//! - [`node`]: the HTTP surface of a standalone media node (`vocalized media`): liveness,
//!   readiness (false while draining) and Prometheus metrics.
//! - [`twilio_call`]: `/media/twilio`, one task per phone call around a `CallSession`.
//! - [`metrics`]: call setup, time to first audio, gateway-added latency per direction.
//! - [`provider_ws`]: provider WebSocket clients (bounded connect, auth header).
//! - [`provider`]: the agent's provider as the drivers see it (echo or WebSocket).
//! - [`webrtc`]: browser calls: signalling, the peer, the per-call driver.

pub mod metrics;
pub mod node;
pub mod provider;
pub mod provider_ws;
pub mod twilio_call;
pub mod webrtc;

pub use node::{ActiveCall, NodeState, OpenPeer};
