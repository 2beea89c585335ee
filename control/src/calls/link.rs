//! The in-process `ControlLink` (single node): plans are read straight from the database;
//! events go through an unbounded queue to one writer task, so the media plane never waits
//! on the database and no billable event is dropped while the process lives. The writer
//! also keeps the registry of calls live on this node, and writes provider health to
//! `provider_health_status` (`calls::health`) when it changed, at most once a second.

use super::ingest::{self, Applied};
use super::plan;
use crate::state::AppState;
use crate::util::now_ms;
use std::sync::Arc;
use tokio::sync::mpsc;
use vocalized_shared::events::{CallEvent, CallEventKind};
use vocalized_shared::ids::CallId;
use vocalized_shared::link::{ControlLink, PlanError};
use vocalized_shared::plan::CallPlan;

/// A call in progress on this node (for `/calls/live`).
#[derive(Clone, Debug)]
pub struct LiveCall {
    pub workspace_id: String,
    pub started_at_ms: i64,
    /// The browser caller's address (web calls), for the per-address limit.
    pub client_ip: Option<String>,
}

#[derive(Clone)]
pub struct InProcessLink {
    state: AppState,
    events: mpsc::UnboundedSender<(CallId, CallEvent)>,
}

impl InProcessLink {
    /// The link and its writer task (which ends when every link clone is dropped).
    pub fn start(state: AppState) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_events(state.clone(), rx));
        (Self { state, events: tx }, writer)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Lists the planned call as live on this node until its `Ended` event is written.
    fn track(&self, plan: &CallPlan, client_ip: Option<&str>) {
        self.state.live.insert(
            plan.call_id.0.clone(),
            Arc::new(LiveCall {
                workspace_id: plan.workspace_id.0.clone(),
                started_at_ms: now_ms(),
                client_ip: client_ip.map(str::to_owned),
            }),
        );
    }
}

/// How often the writer checks whether provider health needs writing.
const HEALTH_TICK_MS: u64 = 1_000;

async fn write_events(state: AppState, mut rx: mpsc::UnboundedReceiver<(CallId, CallEvent)>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(HEALTH_TICK_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (call_id, event) = tokio::select! {
            next = rx.recv() => match next {
                Some(next) => next,
                None => break,
            },
            _ = tick.tick() => {
                write_health(&state, false).await;
                continue;
            }
        };
        apply_event(&state, call_id, event).await;
    }
    write_health(&state, true).await;
}

/// Writes provider health if it changed (or is stale); a failure waits for the next tick.
async fn write_health(state: &AppState, force: bool) {
    if let Err(e) = state.health.persist(&state.db, now_ms(), force).await {
        tracing::warn!(error = %e, "writing provider health failed; retrying on the next tick");
    }
}

async fn apply_event(state: &AppState, call_id: CallId, event: CallEvent) {
    let ended = matches!(event.kind, CallEventKind::Ended(_));
    // A database hiccup must not lose a billable event: retry with backoff.
    let mut delay_ms = 50;
    loop {
        match ingest::apply(&state.db, call_id.as_str(), &event).await {
            Ok(Applied::New | Applied::Duplicate) => break,
            Ok(Applied::UnknownCall) => {
                tracing::warn!(%call_id, seq = event.seq, "event for an unknown call dropped");
                break;
            }
            Err(e) => {
                tracing::error!(%call_id, seq = event.seq, error = %e, "applying call event failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
                delay_ms = (delay_ms * 2).min(5_000);
            }
        }
    }
    if ended {
        state.live.remove(call_id.as_str());
    }
}

impl ControlLink for InProcessLink {
    async fn plan_twilio_call(&self, token: &str, stream_sid: &str) -> Result<CallPlan, PlanError> {
        let plan = plan::redeem_twilio(&self.state, token, stream_sid).await?;
        self.track(&plan, None);
        Ok(plan)
    }

    async fn plan_web_call(
        &self,
        public_key: &str,
        client_ip: &str,
    ) -> Result<CallPlan, PlanError> {
        let plan = plan::start_web_call(&self.state, public_key, client_ip).await?;
        self.track(&plan, Some(client_ip));
        Ok(plan)
    }

    fn emit(&self, call_id: &CallId, event: CallEvent) {
        // Health first and synchronously (a few map operations): the next call's route
        // sees this outcome at once, not after the writer's database round trip.
        self.state
            .health
            .observe(call_id.as_str(), &event, now_ms());
        if self.events.send((call_id.clone(), event)).is_err() {
            tracing::error!(%call_id, "event writer has stopped; event lost");
        }
    }
}
