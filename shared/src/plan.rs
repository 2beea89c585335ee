//! The `CallPlan`: everything the media plane needs to run one call on its own
//! (ARCHITECTURE.md §2). Asked for once at call start; after that the media plane never
//! waits on the control plane.

use crate::call_settings::CallSettings;
use crate::ids::{AgentId, CallId, WorkspaceId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where the caller is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallSource {
    /// Twilio Media Streams.
    Twilio,
    /// The browser widget over WebRTC.
    Web,
}

/// A realtime speech-to-speech provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Openai,
    Gemini,
    Elevenlabs,
    Deepgram,
    /// The built-in diagnostic provider that plays the caller back (a test provider).
    Echo,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Gemini => "gemini",
            ProviderKind::Elevenlabs => "elevenlabs",
            ProviderKind::Deepgram => "deepgram",
            ProviderKind::Echo => "echo",
        }
    }
}

/// A secret that must never reach a log line: `Debug` prints a placeholder.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One provider in the call's ordered chain, with its decrypted credential.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProviderTarget {
    pub kind: ProviderKind,
    /// WebSocket URL (configurable so operators can use regional endpoints and tests a fake).
    pub url: String,
    pub api_key: Secret,
    pub model: String,
}

/// A tool the agent may call (function calling).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments.
    pub parameters: serde_json::Value,
}

/// Everything one call needs, decided by the control plane at call start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallPlan {
    pub call_id: CallId,
    pub workspace_id: WorkspaceId,
    pub agent_id: AgentId,
    pub source: CallSource,
    pub instructions: String,
    pub settings: CallSettings,
    pub tools: Vec<ToolSpec>,
    /// Ordered: the first is tried first, the rest are the failover chain.
    pub providers: Vec<ProviderTarget>,
}
