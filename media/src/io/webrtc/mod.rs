//! Browser calls (ARCHITECTURE.md §3). So far: the widget assets. The WHIP-style
//! signalling and the per-call WebRTC peer are not built yet.

pub mod assets;

pub use assets::assets_router;
