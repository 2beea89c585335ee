//! Browser calls (ARCHITECTURE.md §3): the widget assets, WHIP-style signalling, the
//! server end of each WebRTC connection, and the per-call driver.
//!
//! - [`assets`]: `/widget.js` and the demo page.
//! - [`signalling`]: the pure checks and refusal statuses of an offer.
//! - [`routes`]: `POST /media/webrtc/{public_key}`, `DELETE /media/webrtc/sessions/{id}`.
//! - [`peer`]: building and answering the peer connection (webrtc-rs).
//! - [`call`]: one call's task: Opus in and out, pacing, the session, the provider.

pub mod assets;
pub mod call;
pub mod peer;
pub mod routes;
pub mod signalling;

pub use assets::assets_router;
pub use peer::WebRtcConfig;
pub use routes::router;
