//! Browser calls (ARCHITECTURE.md §3). So far: the widget assets and the pure signalling
//! checks (content type, offer shape, refusal statuses). The HTTP routes and the per-call
//! WebRTC peer are not built yet.

pub mod assets;
pub mod signalling;

pub use assets::assets_router;
