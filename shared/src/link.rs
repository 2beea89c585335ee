//! The boundary between the planes (ARCHITECTURE.md §2): the media plane asks for a call's
//! plan once, at call start, and then only ever emits events. Two implementations: the
//! control plane in the same process (single node), or HTTP + a durable bus (scale-out).

use crate::events::CallEvent;
use crate::ids::CallId;
use crate::plan::CallPlan;
use std::future::Future;

/// Why the control plane would not hand out a call plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// The stream token is unknown, already used or expired.
    InvalidToken,
    /// The call may not go ahead (calling switched off, agent paused, ...); `code` is the
    /// call's `error_code`.
    Refused { code: String },
    /// The control plane could not answer (database down, ...).
    Unavailable(String),
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanError::InvalidToken => f.write_str("stream token is invalid, used or expired"),
            PlanError::Refused { code } => write!(f, "call refused: {code}"),
            PlanError::Unavailable(why) => write!(f, "control plane unavailable: {why}"),
        }
    }
}

impl std::error::Error for PlanError {}

/// What the media plane needs from the control plane.
pub trait ControlLink: Send + Sync + 'static {
    /// Redeems a one-time Twilio stream token (from `start.customParameters.token`) for
    /// the call's plan. A token works once, within its lifetime.
    fn plan_twilio_call(
        &self,
        token: &str,
        stream_sid: &str,
    ) -> impl Future<Output = Result<CallPlan, PlanError>> + Send;

    /// Starts a browser call for the agent whose public widget key is `public_key`,
    /// from `client_ip`: checks that calling is allowed (workspace switch, agent
    /// capability, agent live, per-address limit), creates the call record (source web,
    /// ringing until the media plane reports `answered`) and returns its plan. `InvalidToken` for an unknown key.
    fn plan_web_call(
        &self,
        public_key: &str,
        client_ip: &str,
    ) -> impl Future<Output = Result<CallPlan, PlanError>> + Send;

    /// Hands one event of a call to the control plane. Never blocks and never drops:
    /// implementations queue (and spool, if their transport is down).
    fn emit(&self, call_id: &CallId, event: CallEvent);
}
