//! Types that cross the boundary between the control plane and the media plane.
//!
//! serde only: no tokio, axum or sqlx, so both planes (and the bench) can depend on it
//! without dragging in each other's runtime.
//!
//! - [`ids`]: newtype ids (`CallId`, `WorkspaceId`, ...).
//! - [`call_settings`]: an agent's call settings (seed `call-feature-schema-changes.md` §9),
//!   their defaults and validation ranges.
//! - [`audio`]: the audio formats callers and providers speak.
//! - [`plan`]: the `CallPlan` the media plane receives at call start.
//! - [`events`]: the `CallEvent`s the media plane emits for the control plane.
//! - [`ice`]: STUN/TURN servers for browser calls.
//! - [`link`]: the `ControlLink` trait, the one door between the planes.
//! - [`client_ip`]: the client's address behind a reverse proxy (`X-Forwarded-For`).

pub mod audio;
pub mod call_settings;
pub mod client_ip;
pub mod events;
pub mod ice;
pub mod ids;
pub mod link;
pub mod plan;
