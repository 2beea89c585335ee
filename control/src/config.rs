//! Control-plane configuration, already validated by the CLI.

use crate::crypto::MasterKey;
use crate::http::ratelimit::RateLimits;

/// Everything the control plane needs to start.
#[derive(Clone, Debug)]
pub struct ControlConfig {
    /// `sqlite://...` or `postgres://...`.
    pub database_url: String,
    /// The https base URL the outside world uses (webhook signatures, TwiML stream URLs,
    /// links in emails). No trailing slash.
    pub public_url: String,
    pub master_key: MasterKey,
    /// Per-IP and per-email limits on login, signup and forgot-password.
    pub rate_limits: RateLimits,
    /// Trust the first `X-Forwarded-For` address as the client's (only behind a proxy you run).
    pub trust_forwarded_for: bool,
}

impl ControlConfig {
    /// The defaults for everything but the three required values.
    pub fn new(database_url: String, public_url: String, master_key: MasterKey) -> Self {
        Self {
            database_url,
            public_url: public_url.trim_end_matches('/').to_owned(),
            master_key,
            rate_limits: RateLimits::default(),
            trust_forwarded_for: false,
        }
    }
}
