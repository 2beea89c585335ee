//! The in-process `ControlLink` (single node): plans are read straight from the database;
//! events go through a bounded channel to one writer task, so the media plane never waits
//! on the database. While the database is slow or down the writer keeps draining the
//! channel into its [`Backlog`] (memory, then a journal file, see `calls::backlog`), so
//! `emit` never blocks and no billable event is dropped (review L10). The writer also
//! keeps the registry of calls live on this node, and writes provider health to
//! `provider_health_status` (`calls::health`) when it changed, at most once a second.

use super::backlog::{Backlog, BacklogLimits, BacklogStats, Entry, is_billable};
use super::ingest::{self, Applied};
use super::plan;
use crate::state::AppState;
use crate::util::now_ms;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
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
    events: mpsc::Sender<Entry>,
    queue: Arc<EventQueue>,
}

/// Sizes of the event path.
#[derive(Clone, Debug)]
pub struct EventQueueConfig {
    /// Events the channel from the calls to the writer holds.
    pub channel_events: usize,
    /// Where events wait while the database cannot take them.
    pub backlog: BacklogLimits,
    /// Longest wait between two tries of a failed write.
    pub max_retry_delay: Duration,
}

impl Default for EventQueueConfig {
    fn default() -> Self {
        Self {
            channel_events: 4_096,
            backlog: BacklogLimits::default(),
            max_retry_delay: Duration::from_secs(5),
        }
    }
}

/// What the event path did, shared by the link and its writer (for metrics and tests).
#[derive(Default)]
pub struct EventQueue {
    backlog: Mutex<BacklogStats>,
    /// Billable events that found the channel full, waiting for the writer here.
    overflow: Mutex<VecDeque<Entry>>,
    overflowed_billable: AtomicU64,
    dropped_channel_full: AtomicU64,
    write_failures: AtomicU64,
    written: AtomicU64,
}

/// A snapshot of [`EventQueue`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventQueueStats {
    pub backlog: BacklogStats,
    /// Billable events that found the channel full (kept, in the overflow list).
    pub overflowed_billable: u64,
    /// Non-billable events dropped because the channel was full.
    pub dropped_channel_full: u64,
    /// Batch writes that failed (each is retried).
    pub write_failures: u64,
    /// Events applied to the database.
    pub written: u64,
}

impl EventQueue {
    pub fn stats(&self) -> EventQueueStats {
        EventQueueStats {
            backlog: *self.backlog.lock().expect("event queue lock"),
            overflowed_billable: self.overflowed_billable.load(Ordering::Relaxed),
            dropped_channel_full: self.dropped_channel_full.load(Ordering::Relaxed),
            write_failures: self.write_failures.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
        }
    }

    /// Prometheus text for `/metrics`.
    pub fn render_metrics(&self) -> String {
        let s = self.stats();
        let b = s.backlog;
        format!(
            "# TYPE vocalized_call_events_queued gauge\n\
             vocalized_call_events_queued{{tier=\"memory\"}} {}\n\
             vocalized_call_events_queued{{tier=\"journal\"}} {}\n\
             # TYPE vocalized_call_events_journal_bytes gauge\n\
             vocalized_call_events_journal_bytes {}\n\
             # TYPE vocalized_call_events_written counter\n\
             vocalized_call_events_written_total {}\n\
             # TYPE vocalized_call_events_write_failures counter\n\
             vocalized_call_events_write_failures_total {}\n\
             # TYPE vocalized_call_events_dropped counter\n\
             vocalized_call_events_dropped_total{{reason=\"queue_full\"}} {}\n\
             vocalized_call_events_dropped_total{{reason=\"channel_full\"}} {}\n",
            b.queued_in_memory,
            b.queued_in_journal,
            b.journal_bytes,
            s.written,
            s.write_failures,
            b.dropped_non_billable,
            s.dropped_channel_full,
        )
    }
}

impl InProcessLink {
    /// The link and its writer task (which ends when every link clone is dropped), with
    /// the default sizes and no journal.
    pub fn start(state: AppState) -> (Self, tokio::task::JoinHandle<()>) {
        Self::start_with(state, EventQueueConfig::default())
    }

    /// The link and its writer task, with the event path sized by `config`.
    pub fn start_with(
        state: AppState,
        config: EventQueueConfig,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(config.channel_events.max(1));
        let queue = Arc::new(EventQueue::default());
        let writer = Writer {
            state: state.clone(),
            backlog: Backlog::new(config.backlog),
            queue: Arc::clone(&queue),
            max_retry_delay: config.max_retry_delay,
        };
        let writer = tokio::spawn(writer.run(rx));
        (
            Self {
                state,
                events: tx,
                queue,
            },
            writer,
        )
    }

    /// What the event path has done so far.
    pub fn queue(&self) -> &Arc<EventQueue> {
        &self.queue
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

/// First wait after a failed write; doubled on each failure up to `max_retry_delay`.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);

/// Writes tried after the last call hung up before the rest is left to the journal.
const SHUTDOWN_WRITE_TRIES: u32 = 3;

type Pending<T> = Option<Pin<Box<dyn Future<Output = T> + Send>>>;

/// One batch write: the batch back, with what applying it did.
type Written = (Vec<Entry>, Result<Vec<Applied>, sqlx::Error>);

struct Writer {
    state: AppState,
    backlog: Backlog,
    queue: Arc<EventQueue>,
    max_retry_delay: Duration,
}

impl Writer {
    /// Receives events into the backlog and writes them in batches, one write at a time.
    /// Receiving never waits for a write, so the channel keeps draining while the
    /// database is slow or down.
    async fn run(mut self, mut rx: mpsc::Receiver<Entry>) {
        let mut tick = tokio::time::interval(Duration::from_millis(HEALTH_TICK_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut incoming = Vec::with_capacity(MAX_BATCH);
        let mut writing: Pending<Written> = None;
        let mut health: Pending<()> = None;
        let mut retry_delay = Duration::ZERO;
        let mut open = true;
        let mut failures_after_close = 0;
        loop {
            self.take_overflow(&mut rx);
            if writing.is_none() && !self.backlog.is_empty() {
                let batch = self.backlog.take(MAX_BATCH);
                writing = Some(Box::pin(write_batch(
                    self.state.clone(),
                    batch,
                    retry_delay,
                )));
            }
            self.publish();
            if !open && writing.is_none() && self.backlog.is_empty() {
                break;
            }
            tokio::select! {
                received = rx.recv_many(&mut incoming, MAX_BATCH), if open => {
                    if received == 0 {
                        open = false;
                    }
                    self.backlog.push_all(incoming.drain(..));
                }
                (batch, result) = async { writing.as_mut().expect("guarded").await }, if writing.is_some() => {
                    writing = None;
                    match result {
                        Ok(applied) => {
                            retry_delay = Duration::ZERO;
                            self.written(&batch, &applied);
                        }
                        Err(e) => {
                            self.queue.write_failures.fetch_add(1, Ordering::Relaxed);
                            retry_delay = (retry_delay * 2)
                                .max(FIRST_RETRY_DELAY)
                                .min(self.max_retry_delay);
                            tracing::error!(events = batch.len(), error = %e, ?retry_delay,
                                "applying call events failed; retrying");
                            self.backlog.push_front(batch);
                            if !open {
                                failures_after_close += 1;
                            }
                            if failures_after_close >= SHUTDOWN_WRITE_TRIES
                                && self.backlog.has_journal()
                            {
                                // Shutting down with the database away: leave the events
                                // in the journal for the next run instead of waiting.
                                let lost = self.backlog.spill_all_to_journal();
                                self.publish();
                                tracing::warn!(lost, "call events left in the journal at shutdown");
                                break;
                            }
                        }
                    }
                }
                () = async { health.as_mut().expect("guarded").await }, if health.is_some() => {
                    health = None;
                }
                _ = tick.tick(), if health.is_none() => {
                    health = Some(Box::pin(write_health(self.state.clone(), false)));
                }
            }
        }
        write_health(self.state.clone(), true).await;
    }

    /// Billable events that found the channel full go in after everything the channel
    /// holds: while the overflow list is not empty `emit` sends nothing to the channel,
    /// so under its lock the channel holds only older events.
    fn take_overflow(&mut self, rx: &mut mpsc::Receiver<Entry>) {
        let mut list = self.queue.overflow.lock().expect("event queue lock");
        if list.is_empty() {
            return;
        }
        let mut older = Vec::new();
        while let Ok(entry) = rx.try_recv() {
            older.push(entry);
        }
        self.backlog.push_all(older);
        self.backlog.push_all(list.drain(..));
    }

    fn publish(&self) {
        *self.queue.backlog.lock().expect("event queue lock") = self.backlog.stats();
    }

    fn written(&self, batch: &[Entry], applied: &[Applied]) {
        self.queue
            .written
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        for ((call_id, event), applied) in batch.iter().zip(applied) {
            if *applied == Applied::UnknownCall {
                tracing::warn!(%call_id, seq = event.seq, "event for an unknown call dropped");
            }
            if matches!(event.kind, CallEventKind::Ended(_)) {
                self.state.live.remove(call_id.as_str());
            }
        }
    }
}

/// Writes provider health if it changed (or is stale); a failure waits for the next tick.
async fn write_health(state: AppState, force: bool) {
    if let Err(e) = state.health.persist(&state.db, now_ms(), force).await {
        tracing::warn!(error = %e, "writing provider health failed; retrying on the next tick");
    }
}

/// Applies one batch in one transaction, after `delay` (the back-off of a retry).
async fn write_batch(state: AppState, batch: Vec<Entry>, delay: Duration) -> Written {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let events: Vec<(&str, &CallEvent)> = batch.iter().map(|(c, e)| (c.as_str(), e)).collect();
    let result = ingest::apply_batch(&state.db, &events).await;
    drop(events);
    (batch, result)
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
        // Never waits: a full channel means the writer itself is behind (it drains the
        // channel even while the database is down). Billable events then wait in the
        // overflow list, and until the writer has taken that list every later event goes
        // there too (billable) or is dropped and counted (others), so a call's events
        // stay in order.
        let mut overflow = self.queue.overflow.lock().expect("event queue lock");
        let entry = (call_id.clone(), event);
        let entry = if overflow.is_empty() {
            match self.events.try_send(entry) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(entry)) => entry,
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    tracing::error!(%call_id, "event writer has stopped; event lost");
                    return;
                }
            }
        } else {
            entry
        };
        if is_billable(&entry.1.kind) {
            self.queue
                .overflowed_billable
                .fetch_add(1, Ordering::Relaxed);
            overflow.push_back(entry);
        } else {
            self.queue
                .dropped_channel_full
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%call_id, "call event channel full: non-billable event dropped");
        }
    }
}
