//! The tokio side of the media plane: everything that owns a socket, a task or a clock,
//! kept thin around the sans-IO [`crate::core`].
//!
//! - [`node`]: the HTTP surface of a standalone media node (`vocalized media`): liveness,
//!   readiness (false while draining) and Prometheus metrics.
//!
//! The Twilio WebSocket handler, the WebRTC peer, the provider clients and the per-call
//! driver task join this folder as they are built (ARCHITECTURE.md §4).

pub mod node;

pub use node::{ActiveCall, NodeState};
