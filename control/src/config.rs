//! Control-plane configuration, already validated by the CLI.

use crate::crypto::MasterKey;
use crate::http::ratelimit::RateLimits;
use vocalized_shared::plan::Secret;

/// The platform's own Twilio account (`VOCALIZED_TWILIO_ACCOUNT_SID`/`_AUTH_TOKEN`).
#[derive(Clone, Debug)]
pub struct TwilioAccount {
    pub account_sid: String,
    pub auth_token: Secret,
}

/// Where a provider is reached and with which platform key, from the environment. The
/// admin provider config (`platform_provider_configs`) overrides both when set.
#[derive(Clone, Debug)]
pub struct ProviderEndpoint {
    pub url: String,
    pub api_key: Option<Secret>,
}

impl ProviderEndpoint {
    /// `url` with no platform key.
    pub fn at(url: &str) -> Self {
        Self {
            url: url.into(),
            api_key: None,
        }
    }
}

/// A STUN or TURN server (shared with the media plane's peer).
pub use vocalized_shared::ice::IceServer;

pub const OPENAI_REALTIME_URL: &str = "wss://api.openai.com/v1/realtime";
pub const GEMINI_LIVE_URL: &str = "wss://generativelanguage.googleapis.com/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";
pub const ELEVENLABS_AGENTS_URL: &str = "wss://api.elevenlabs.io/v1/convai/conversation";
pub const DEEPGRAM_AGENT_URL: &str = "wss://agent.deepgram.com/v1/agent/converse";

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
    /// Trust the right-most `X-Forwarded-For` address, the one our proxy appended, as the
    /// client's (only behind a proxy you run; see `vocalized_shared::client_ip`).
    pub trust_forwarded_for: bool,
    pub twilio: Option<TwilioAccount>,
    /// Each provider's endpoint and platform key from the environment (the admin provider
    /// config overrides both).
    pub openai: ProviderEndpoint,
    pub gemini: ProviderEndpoint,
    pub elevenlabs: ProviderEndpoint,
    pub deepgram: ProviderEndpoint,
    /// Handed to the widget; empty means host candidates only (fine on a LAN or localhost).
    /// A TURN server's long-term `credential` never reaches the browser: see
    /// `turn_shared_secret`.
    pub ice_servers: Vec<IceServer>,
    /// The TURN server's REST API secret (coturn `static-auth-secret`): with it, each widget
    /// config carries short-lived TURN credentials; without it, browsers get no TURN.
    pub turn_shared_secret: Option<Secret>,
    /// When set, `/metrics` answers only `Authorization: Bearer <token>` (a scraper's
    /// token); when unset it is open, as a loopback or private-network listener wants.
    pub metrics_token: Option<Secret>,
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
            twilio: None,
            openai: ProviderEndpoint::at(OPENAI_REALTIME_URL),
            gemini: ProviderEndpoint::at(GEMINI_LIVE_URL),
            elevenlabs: ProviderEndpoint::at(ELEVENLABS_AGENTS_URL),
            deepgram: ProviderEndpoint::at(DEEPGRAM_AGENT_URL),
            ice_servers: Vec::new(),
            turn_shared_secret: None,
            metrics_token: None,
        }
    }

    /// The environment's endpoint for a provider (`None` for the built-in echo).
    pub fn endpoint(
        &self,
        kind: vocalized_shared::plan::ProviderKind,
    ) -> Option<&ProviderEndpoint> {
        use vocalized_shared::plan::ProviderKind;
        match kind {
            ProviderKind::Openai => Some(&self.openai),
            ProviderKind::Gemini => Some(&self.gemini),
            ProviderKind::Elevenlabs => Some(&self.elevenlabs),
            ProviderKind::Deepgram => Some(&self.deepgram),
            ProviderKind::Echo => None,
        }
    }

    /// The Media Streams WebSocket URL Twilio is told to open: the public URL as `wss`.
    pub fn twilio_stream_url(&self) -> String {
        let base = self
            .public_url
            .replacen("https://", "wss://", 1)
            .replacen("http://", "ws://", 1);
        format!("{base}/media/twilio")
    }
}
