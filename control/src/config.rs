//! Control-plane configuration, already validated by the CLI.

use crate::crypto::MasterKey;

/// Everything the control plane needs to start.
#[derive(Clone, Debug)]
pub struct ControlConfig {
    /// `sqlite://...` or `postgres://...`.
    pub database_url: String,
    /// The https base URL the outside world uses (webhook signatures, TwiML stream URLs,
    /// links in emails). No trailing slash.
    pub public_url: String,
    pub master_key: MasterKey,
}
