//! `CallSession`: the sans-IO state machine of one call (ARCHITECTURE.md §3–4).
//!
//! The per-call driver task feeds it everything that happens — caller audio and control
//! (Twilio messages, WebRTC PCM), provider events, timer expiry — with the current time
//! through [`CallSession::handle_input`], then drains [`CallSession::poll_output`]
//! (audio and control for the caller, commands for the provider, call events) and
//! sleeps until [`CallSession::poll_timeout`]. Every decision lives here, so a barge-in
//! or a silence timeout is a unit test with a scripted clock.
//!
//! The driver's loop, in outline (the real one `select!`s over sockets and a timer):
//!
//! ```no_run
//! # use std::time::Instant;
//! # use vocalized_media::core::session::*;
//! # use vocalized_media::core::wire::twilio;
//! # fn send_text(_: &str) {}
//! # fn drive(session: &mut CallSession, frame: &str) {
//! let message = twilio::Inbound::parse(frame).expect("count and skip bad frames");
//! session.handle_input(Input::Twilio(&message), Instant::now());
//! let mut text = String::new(); // reused across frames
//! while let Some(output) = session.poll_output() {
//!     match output {
//!         Output::Caller(CallerOutput::Twilio(out)) => {
//!             text.clear();
//!             out.write_json(&mut text);
//!             send_text(&text);
//!         }
//!         Output::Caller(_) => { /* WebRTC pacer, hang-up */ }
//!         Output::Provider(_command) => { /* the provider adapter encodes it */ }
//!         Output::Event(_event) => { /* bounded channel to the control plane */ }
//!     }
//! }
//! let _sleep_until = session.poll_timeout(); // then feed Input::Timeout
//! # }
//! ```
//!
//! - `legs`: audio conversion per direction (pass-through or decode/resample/encode).
//! - `marks`: what the caller has heard, from Twilio marks or a WebRTC playout clock.
//! - `limits`: max duration, silence, end-call phrases.
//! - `provider`: the provider-neutral events and commands adapters translate.
//! - `output`: what `poll_output` returns.
//! - `counters`: bad and unexpected input, counted.

mod caller_side;
mod counters;
mod legs;
mod limits;
mod marks;
mod output;
mod provider;
mod provider_side;

pub use counters::SessionCounters;
pub use legs::LegError;
pub use limits::{CallLimits, SILENCE_PROMPT, VOICED_RUN_MS};
pub use output::{CallerOutput, Output};
pub use provider::{ProviderCommand, ProviderEvent};

use crate::core::wire::twilio;
use legs::Leg;
use limits::{EnergyGate, LimitAction, LimitClock};
use marks::{AckMode, PlayoutLedger};
use output::Pending;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use tracing::debug;
use vocalized_shared::audio::AudioFormat;
use vocalized_shared::call_settings::CallSettings;
use vocalized_shared::events::{CallEvent, CallEventKind, EndReason};
use vocalized_shared::plan::{CallPlan, CallSource};

/// Longest caller frame accepted in one piece. Twilio sends about 20 ms; a whole second
/// in one frame means a broken peer, and forwarding it would stall the provider.
pub const MAX_CALLER_FRAME_MS: u64 = 1_000;
/// How far caller audio may run ahead of real time (counted from the answer) before
/// frames are dropped as a flood: generous for network jitter, which delivers a late
/// bunch of frames at once.
pub const CALLER_AUDIO_BURST_MS: u64 = 2_000;
/// Longest provider audio delta accepted in one piece.
pub const MAX_PROVIDER_DELTA_MS: u64 = 30_000;

/// Longest the agent's last words may play after the call was ended by the agent's
/// end-call tool or the caller's end-call phrase, before hanging up regardless.
pub const ENDING_GRACE: Duration = Duration::from_secs(5);

/// The WebRTC caller leg's format, after the driver's Opus decode.
pub const WEB_CALLER_FORMAT: AudioFormat = AudioFormat::Pcm16 {
    sample_rate_hz: 48_000,
};

/// How one call runs, fixed at call start.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionConfig {
    pub source: CallSource,
    /// Provider name for events (`ProviderKind::as_str`).
    pub provider: String,
    /// The format the provider accepts caller audio in.
    pub provider_input: AudioFormat,
    /// The format the provider's audio deltas are in.
    pub provider_output: AudioFormat,
    pub limits: CallLimits,
    /// Barge-in on; when off, speech-started and interrupted only count as caller speech.
    pub interruption_enabled: bool,
    /// When off, no transcript events are emitted (they still drive end-call phrases
    /// and the silence clock).
    pub transcription_enabled: bool,
    /// Send `CancelResponse` on barge-in, for providers that do not stop on their own
    /// speech detection (OpenAI without `interrupt_response`).
    pub cancel_response_on_barge_in: bool,
}

impl SessionConfig {
    /// A config from the agent's call settings.
    pub fn new(
        source: CallSource,
        provider: impl Into<String>,
        provider_input: AudioFormat,
        provider_output: AudioFormat,
        settings: &CallSettings,
    ) -> Self {
        Self {
            source,
            provider: provider.into(),
            provider_input,
            provider_output,
            limits: CallLimits::from_settings(settings),
            interruption_enabled: settings.interruption_enabled,
            transcription_enabled: settings.transcription_enabled,
            cancel_response_on_barge_in: false,
        }
    }

    /// A config for a call plan's first provider, speaking the given formats (the
    /// provider adapter picks them: `audio/pcmu` for OpenAI on Twilio, etc.).
    pub fn for_plan(
        plan: &CallPlan,
        provider_input: AudioFormat,
        provider_output: AudioFormat,
    ) -> Self {
        let provider = plan.providers.first().map_or("none", |p| p.kind.as_str());
        Self::new(
            plan.source,
            provider,
            provider_input,
            provider_output,
            &plan.settings,
        )
    }

    /// The caller leg's audio format: Twilio µ-law 8 kHz, or WebRTC PCM16 48 kHz.
    pub fn caller_format(&self) -> AudioFormat {
        match self.source {
            CallSource::Twilio => AudioFormat::Mulaw8k,
            CallSource::Web => WEB_CALLER_FORMAT,
        }
    }
}

/// Something that happened to the call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Input<'a> {
    /// A parsed Twilio Media Streams message (parse failures are the driver's to count).
    Twilio(&'a twilio::Inbound),
    /// The WebRTC peer connected: the call is answered.
    WebAnswered,
    /// Caller audio from the WebRTC leg, PCM16 48 kHz after Opus decode.
    WebAudio(&'a [i16]),
    /// The WebRTC caller hung up.
    WebHangup,
    /// The WebRTC connection failed or never came up. Before answer the call ends as
    /// [`EndReason::NotConnected`]; after it, the caller is gone: a hang-up.
    WebFailed,
    Provider(ProviderEvent<'a>),
    /// The deadline from `poll_timeout` passed.
    Timeout,
}

/// Where the call is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallState {
    /// Waiting for Twilio `start` or the WebRTC connection.
    Ringing,
    Active,
    /// The call is over but the agent's last words are still playing (the goodbye
    /// before an end-call tool or phrase); ends when they have, or after
    /// [`ENDING_GRACE`].
    Ending(EndReason),
    Ended(EndReason),
}

/// One call's state machine. See the module notes.
pub struct CallSession {
    config: SessionConfig,
    state: CallState,
    answered_at: Option<Instant>,
    stream_sid: String,
    /// Caller -> provider.
    inbound: Leg,
    /// Provider -> caller.
    outbound: Leg,
    ledger: PlayoutLedger,
    clock: Option<LimitClock>,
    /// When an `Ending` call hangs up even if audio is still playing.
    ending_deadline: Option<Instant>,
    gate: EnergyGate,
    /// When the caller's current turn started (ms from answer), for transcript timing.
    user_turn_start_ms: Option<u64>,
    first_audio_sent: bool,
    /// Items below this key came from a provider the call has since switched away from:
    /// a barge-in still clears them, but there is no one left to truncate them at.
    first_item_of_provider: u64,
    next_seq: u64,
    counters: SessionCounters,
    /// Caller audio admitted so far, for the flood check.
    caller_audio_ms: u64,

    queue: VecDeque<Pending>,
    /// The output `poll_output` last lent out; it owns what the borrow points at.
    current: Pending,
    caller_bytes: Vec<u8>,
    caller_samples: Vec<i16>,
    provider_bytes: Vec<u8>,
    base64_scratch: Vec<u8>,
    mark_name: String,
}

impl CallSession {
    /// Builds the session; fails only on a format the session cannot carry.
    pub fn new(config: SessionConfig) -> Result<Self, LegError> {
        let caller = config.caller_format();
        let inbound = Leg::new(caller, config.provider_input)?;
        let outbound = Leg::new(config.provider_output, caller)?;
        let ack_mode = match config.source {
            CallSource::Twilio => AckMode::Marks,
            CallSource::Web => AckMode::PlayoutClock,
        };
        Ok(Self {
            ledger: PlayoutLedger::new(ack_mode, caller.sample_rate_hz()),
            config,
            state: CallState::Ringing,
            answered_at: None,
            stream_sid: String::new(),
            inbound,
            outbound,
            clock: None,
            ending_deadline: None,
            gate: EnergyGate::default(),
            user_turn_start_ms: None,
            first_audio_sent: false,
            first_item_of_provider: 0,
            next_seq: 1,
            counters: SessionCounters::default(),
            caller_audio_ms: 0,
            queue: VecDeque::with_capacity(64),
            current: Pending::Idle,
            // A few frames' worth; provider deltas can be larger and grow these once.
            caller_bytes: Vec::with_capacity(16 * 1024),
            caller_samples: Vec::with_capacity(48 * 1024),
            provider_bytes: Vec::with_capacity(16 * 1024),
            base64_scratch: Vec::with_capacity(16 * 1024),
            mark_name: String::with_capacity(128),
        })
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    pub fn state(&self) -> &CallState {
        &self.state
    }

    pub fn is_ended(&self) -> bool {
        matches!(self.state, CallState::Ended(_))
    }

    pub fn counters(&self) -> &SessionCounters {
        &self.counters
    }

    /// True when caller audio passes to the provider unchanged.
    pub fn is_passthrough(&self) -> bool {
        self.inbound.is_passthrough() && self.outbound.is_passthrough()
    }

    /// Feeds one input. Outputs it causes are queued for `poll_output`.
    pub fn handle_input(&mut self, input: Input<'_>, now: Instant) {
        if self.is_ended() {
            self.counters.inputs_after_end += 1;
            debug!("input after the call ended: ignored");
            return;
        }
        match input {
            Input::Twilio(message) => self.handle_twilio(message, now),
            Input::WebAnswered => self.answer(now),
            Input::WebAudio(samples) => self.handle_web_audio(samples, now),
            Input::WebHangup => self.end(EndReason::CallerHangup, now, true, false),
            Input::WebFailed if self.state == CallState::Ringing => {
                self.end(EndReason::NotConnected, now, true, false)
            }
            Input::WebFailed => self.end(EndReason::CallerHangup, now, true, false),
            Input::Provider(event) => self.handle_provider(event, now),
            Input::Timeout => {}
        }
        self.after_input(now);
    }

    /// The driver replaced the provider: a failover to the next one in the plan's chain,
    /// or a new session with the same one (rollover before its session cap). Later caller
    /// audio and provider audio use the new formats. Agent audio already sent keeps
    /// playing and its marks still count, so barge-in works across the switch; a
    /// `failover` event records it. Fails (changing nothing) on formats the session
    /// cannot carry.
    pub fn switch_provider(
        &mut self,
        name: &str,
        input: AudioFormat,
        output: AudioFormat,
        reason: &str,
        now: Instant,
    ) -> Result<(), LegError> {
        let caller = self.config.caller_format();
        let inbound = Leg::new(caller, input)?;
        let outbound = Leg::new(output, caller)?;
        self.inbound = inbound;
        self.outbound = outbound;
        self.config.provider_input = input;
        self.config.provider_output = output;
        self.first_item_of_provider = self.ledger.next_item_key();
        let from = std::mem::replace(&mut self.config.provider, name.to_owned());
        self.emit(
            CallEventKind::Failover {
                from,
                to: name.to_owned(),
                reason: reason.to_owned(),
            },
            now,
        );
        Ok(())
    }

    /// The next output, borrowing the session's buffers until the next call.
    pub fn poll_output(&mut self) -> Option<Output<'_>> {
        let next = match self.queue.pop_front() {
            None => {
                // Nothing is lent out any more: reuse the buffers from the start.
                self.current = Pending::Idle;
                self.caller_bytes.clear();
                self.caller_samples.clear();
                self.provider_bytes.clear();
                return None;
            }
            Some(Pending::Event(event)) => return Some(Output::Event(event)),
            Some(next) => next,
        };
        if let Pending::CallerMark { seq, item } = next {
            let id = self.ledger.item(item).map_or("", |i| i.id.as_str());
            self.mark_name.clear();
            let _ = write!(self.mark_name, "{id}:{seq}");
        }
        self.current = next;
        let sid = self.stream_sid.as_str();
        Some(match &self.current {
            Pending::CallerAudio(range) => match self.config.source {
                CallSource::Twilio => {
                    Output::Caller(CallerOutput::Twilio(twilio::Outbound::Media {
                        stream_sid: sid,
                        payload: &self.caller_bytes[range.clone()],
                    }))
                }
                CallSource::Web => {
                    Output::Caller(CallerOutput::WebAudio(&self.caller_samples[range.clone()]))
                }
            },
            Pending::CallerMark { .. } => {
                Output::Caller(CallerOutput::Twilio(twilio::Outbound::Mark {
                    stream_sid: sid,
                    name: &self.mark_name,
                }))
            }
            Pending::CallerClear => match self.config.source {
                CallSource::Twilio => {
                    Output::Caller(CallerOutput::Twilio(twilio::Outbound::Clear {
                        stream_sid: sid,
                    }))
                }
                CallSource::Web => Output::Caller(CallerOutput::WebFlush),
            },
            Pending::CallerHangup => Output::Caller(CallerOutput::Hangup),
            Pending::ProviderAudio(range) => {
                Output::Provider(ProviderCommand::Audio(&self.provider_bytes[range.clone()]))
            }
            Pending::Truncate {
                item_id,
                audio_end_ms,
            } => Output::Provider(ProviderCommand::Truncate {
                item_id,
                audio_end_ms: *audio_end_ms,
            }),
            Pending::CancelResponse => Output::Provider(ProviderCommand::CancelResponse),
            Pending::Say(text) => Output::Provider(ProviderCommand::Say { text }),
            Pending::ProviderClose => Output::Provider(ProviderCommand::Close),
            // Events are returned above; `Idle` is never queued.
            Pending::Event(_) | Pending::Idle => return None,
        })
    }

    /// When to feed `Input::Timeout` next (max duration, silence, the end of the last
    /// words). `None` before answer and after the end.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            CallState::Active => {}
            CallState::Ending(_) => {
                // WebRTC playout ends at a known time; Twilio's is told by mark echoes.
                return match (self.ending_deadline, self.ledger.playout_end()) {
                    (Some(deadline), Some(end)) => Some(deadline.min(end)),
                    (deadline, _) => deadline,
                };
            }
            CallState::Ringing | CallState::Ended(_) => return None,
        }
        let clock = self.clock.as_ref()?;
        Some(clock.next_deadline(
            &self.config.limits,
            self.ledger.is_playing(),
            self.ledger.idle_since(),
        ))
    }

    // ---- time and limits ----

    fn after_input(&mut self, now: Instant) {
        if !matches!(self.state, CallState::Active | CallState::Ending(_)) {
            return;
        }
        self.ledger.advance(now);
        // A mark (or the playout clock) may have finished an item whose transcript is
        // waiting; a no-op when none is.
        self.release_transcripts(false, now);
        if let CallState::Ending(reason) = &self.state {
            let out_of_time = self.ending_deadline.is_some_and(|d| now >= d);
            if !self.ledger.is_playing() || out_of_time {
                let reason = reason.clone();
                self.end(reason, now, true, true);
            }
            return;
        }
        while self.state == CallState::Active {
            let Some(clock) = &mut self.clock else {
                return;
            };
            let Some(action) = clock.due(
                &self.config.limits,
                now,
                self.ledger.is_playing(),
                self.ledger.idle_since(),
            ) else {
                return;
            };
            match action {
                LimitAction::WarnMaxDuration => {
                    let text = self.config.limits.warning_text();
                    self.queue.push_back(Pending::Say(Cow::Owned(text.clone())));
                    self.emit(
                        CallEventKind::Warning {
                            code: "max_duration_approaching".into(),
                            message: text,
                        },
                        now,
                    );
                }
                LimitAction::EndMaxDuration => self.end(EndReason::MaxDuration, now, true, true),
                LimitAction::PromptSilence => {
                    self.queue
                        .push_back(Pending::Say(Cow::Borrowed(SILENCE_PROMPT)));
                    self.emit(
                        CallEventKind::Warning {
                            code: "caller_silent".into(),
                            message: SILENCE_PROMPT.into(),
                        },
                        now,
                    );
                }
                LimitAction::EndSilence => self.end(EndReason::SilenceTimeout, now, true, true),
            }
        }
    }

    /// Ends the call after the agent audio already sent has played (at most
    /// [`ENDING_GRACE`]), so a goodbye is heard rather than cut off.
    fn end_after_playout(&mut self, reason: EndReason, now: Instant) {
        if !self.ledger.is_playing() {
            self.end(reason, now, true, true);
        } else if self.state == CallState::Active {
            self.ending_deadline = Some(now + ENDING_GRACE);
            self.state = CallState::Ending(reason);
        }
    }

    /// Ends the call once: held transcripts go out, then the provider and caller legs
    /// are closed as needed, and `Ended` is the last event. A call already `Ending`
    /// keeps the reason it is ending for (the caller hanging up during the goodbye).
    fn end(&mut self, reason: EndReason, now: Instant, close_provider: bool, hang_up: bool) {
        let reason = match &self.state {
            CallState::Ended(_) => return,
            CallState::Ending(first) => first.clone(),
            _ => reason,
        };
        self.release_transcripts(true, now);
        if close_provider {
            self.queue.push_back(Pending::ProviderClose);
        }
        if hang_up {
            self.queue.push_back(Pending::CallerHangup);
        }
        self.emit(CallEventKind::Ended(reason.clone()), now);
        self.state = CallState::Ended(reason);
    }

    fn ms_since_answer(&self, now: Instant) -> u64 {
        self.answered_at
            .map_or(0, |a| now.saturating_duration_since(a).as_millis() as u64)
    }

    fn emit(&mut self, kind: CallEventKind, now: Instant) {
        let event = CallEvent {
            seq: self.next_seq,
            at_ms: self.ms_since_answer(now),
            kind,
        };
        self.next_seq += 1;
        self.queue.push_back(Pending::Event(event));
    }
}
