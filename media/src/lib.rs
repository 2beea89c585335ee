//! The Vocalized media plane.
//!
//! - [`core`]: sans-IO. Codecs, resamplers, the playout pacer, the stereo recorder, the
//!   provider and caller wire formats, and the `CallSession` state machine. No sockets, no
//!   tokio, no clock reads: time is a parameter.
//! - [`io`]: the tokio drivers around the core; for now the media node's HTTP surface
//!   (`/healthz`, `/readyz`, `/metrics`).

pub mod core;
#[doc(hidden)]
pub mod fuzzing;
pub mod io;
