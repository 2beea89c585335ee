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

/// Most events applied in one transaction.
const MAX_BATCH: usize = 256;

async fn write_events(state: AppState, mut rx: mpsc::UnboundedReceiver<(CallId, CallEvent)>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(HEALTH_TICK_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        // Whatever has queued up while the last batch was written goes in the next one,
        // so the writer does fewer, larger transactions exactly when calls are many.
        tokio::select! {
            received = rx.recv_many(&mut batch, MAX_BATCH) => if received == 0 {
                break;
            },
            _ = tick.tick() => {
                write_health(&state, false).await;
                continue;
            }
        }
        apply_events(&state, &batch).await;
        batch.clear();
    }
    write_health(&state, true).await;
}

/// Writes provider health if it changed (or is stale); a failure waits for the next tick.
async fn write_health(state: &AppState, force: bool) {
    if let Err(e) = state.health.persist(&state.db, now_ms(), force).await {
        tracing::warn!(error = %e, "writing provider health failed; retrying on the next tick");
    }
}

async fn apply_events(state: &AppState, batch: &[(CallId, CallEvent)]) {
    let events: Vec<(&str, &CallEvent)> = batch.iter().map(|(c, e)| (c.as_str(), e)).collect();
    // A database hiccup must not lose a billable event: retry with backoff.
    let mut delay_ms = 50;
    let applied = loop {
        match ingest::apply_batch(&state.db, &events).await {
            Ok(applied) => break applied,
            Err(e) => {
                tracing::error!(events = events.len(), error = %e, "applying call events failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
                delay_ms = (delay_ms * 2).min(5_000);
            }
        }
    };
    for ((call_id, event), applied) in batch.iter().zip(applied) {
        if applied == Applied::UnknownCall {
            tracing::warn!(%call_id, seq = event.seq, "event for an unknown call dropped");
        }
        if matches!(event.kind, CallEventKind::Ended(_)) {
            state.live.remove(call_id.as_str());
        }
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
        // The call's place in the concurrency limits frees when it ends, not when the
        // writer gets to the database.
        if matches!(event.kind, CallEventKind::Ended(_)) {
            self.state.slots.release(call_id.as_str());
        }
        if self.events.send((call_id.clone(), event)).is_err() {
            tracing::error!(%call_id, "event writer has stopped; event lost");
        }
    }
}
