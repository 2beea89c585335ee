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

mod counters;
mod legs;
mod limits;
mod marks;
mod output;
mod provider;

pub use counters::SessionCounters;
pub use legs::LegError;
pub use limits::{CallLimits, SILENCE_PROMPT, VOICED_RUN_MS};
pub use output::{CallerOutput, Output};
pub use provider::{ProviderCommand, ProviderEvent};

use crate::core::wire::twilio;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use legs::Leg;
use limits::{EnergyGate, LimitAction, LimitClock};
use marks::{AckMode, MarkOutcome, PlayoutLedger};
use output::Pending;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::Instant;
use tracing::debug;
use vocalized_shared::audio::AudioFormat;
use vocalized_shared::call_settings::CallSettings;
use vocalized_shared::events::{CallEvent, CallEventKind, EndReason, Role};
use vocalized_shared::plan::{CallPlan, CallSource};

/// Longest caller frame accepted in one piece. Twilio sends about 20 ms; a whole second
/// in one frame means a broken peer, and forwarding it would stall the provider.
pub const MAX_CALLER_FRAME_MS: u64 = 1_000;
/// Longest provider audio delta accepted in one piece.
pub const MAX_PROVIDER_DELTA_MS: u64 = 30_000;

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
    gate: EnergyGate,
    /// When the caller's current turn started (ms from answer), for transcript timing.
    user_turn_start_ms: Option<u64>,
    first_audio_sent: bool,
    next_seq: u64,
    counters: SessionCounters,

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
            gate: EnergyGate::default(),
            user_turn_start_ms: None,
            first_audio_sent: false,
            next_seq: 1,
            counters: SessionCounters::default(),
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
            return;
        }
        match input {
            Input::Twilio(message) => self.handle_twilio(message, now),
            Input::WebAnswered => self.answer(now),
            Input::WebAudio(samples) => self.handle_web_audio(samples, now),
            Input::WebHangup => self.end(EndReason::CallerHangup, now, true, false),
            Input::Provider(event) => self.handle_provider(event, now),
            Input::Timeout => {}
        }
        self.after_input(now);
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

    /// When to feed `Input::Timeout` next (max duration, silence). `None` before answer
    /// and after the end.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state != CallState::Active {
            return None;
        }
        let clock = self.clock.as_ref()?;
        Some(clock.next_deadline(
            &self.config.limits,
            self.ledger.is_playing(),
            self.ledger.idle_since(),
        ))
    }

    // ---- caller side ----

    fn handle_twilio(&mut self, message: &twilio::Inbound, now: Instant) {
        if self.config.source != CallSource::Twilio {
            self.counters.unknown_caller_events += 1;
            debug!("twilio message on a web call: ignored");
            return;
        }
        match message {
            twilio::Inbound::Connected { .. } => {}
            twilio::Inbound::Start { stream_sid, .. } => {
                if self.answered_at.is_some() {
                    self.counters.duplicate_starts += 1;
                    debug!("second twilio start: ignored");
                    return;
                }
                self.stream_sid.clone_from(stream_sid);
                self.answer(now);
            }
            twilio::Inbound::Media { media, .. } => self.handle_twilio_media(&media.payload, now),
            twilio::Inbound::Mark { mark, .. } => {
                if self.answered_at.is_none() {
                    self.counters.input_before_answer += 1;
                    return;
                }
                match self.ledger.handle_mark(&mark.name, now) {
                    MarkOutcome::Heard => self.counters.marks_acked += 1,
                    MarkOutcome::Stale => self.counters.stale_marks += 1,
                    MarkOutcome::Unknown => {
                        self.counters.unknown_marks += 1;
                        debug!(mark = %mark.name, "echo of a mark never sent: ignored");
                    }
                }
            }
            twilio::Inbound::Dtmf { dtmf, .. } => {
                if self.answered_at.is_none() {
                    self.counters.input_before_answer += 1;
                    return;
                }
                self.caller_active(now);
                self.emit(
                    CallEventKind::Dtmf {
                        digit: dtmf.digit.clone(),
                    },
                    now,
                );
            }
            twilio::Inbound::Stop { .. } => self.end(EndReason::CallerHangup, now, true, false),
            twilio::Inbound::Unknown => {
                self.counters.unknown_caller_events += 1;
                debug!("unknown twilio event: ignored");
            }
        }
    }

    fn handle_twilio_media(&mut self, payload_b64: &str, now: Instant) {
        if self.answered_at.is_none() {
            // protocols.md §1.9: no stream sid yet, nowhere to answer; drop it.
            self.counters.input_before_answer += 1;
            debug!("twilio media before start: dropped");
            return;
        }
        let max_bytes = (MAX_CALLER_FRAME_MS * 8) as usize;
        if payload_b64.len() / 4 * 3 > max_bytes {
            self.counters.oversized_frames += 1;
            debug!(len = payload_b64.len(), "oversized twilio media: dropped");
            return;
        }
        self.base64_scratch.resize(payload_b64.len() / 4 * 3 + 3, 0);
        let len = match BASE64.decode_slice(payload_b64, &mut self.base64_scratch) {
            Ok(len) => len,
            Err(error) => {
                self.counters.bad_base64 += 1;
                debug!(%error, "twilio media payload is not base64: dropped");
                return;
            }
        };
        if len == 0 {
            self.counters.empty_frames += 1;
            return;
        }
        // µ-law has no partial samples, so decoding cannot report an odd byte.
        self.inbound.decode(&self.base64_scratch[..len]);
        let start = self.provider_bytes.len();
        if self.inbound.is_passthrough() {
            self.inbound
                .pass_bytes(&self.base64_scratch[..len], &mut self.provider_bytes);
        } else {
            self.inbound.encode_bytes(&mut self.provider_bytes);
        }
        self.forward_caller_audio(start, now);
    }

    fn handle_web_audio(&mut self, samples: &[i16], now: Instant) {
        if self.config.source != CallSource::Web {
            self.counters.unknown_caller_events += 1;
            return;
        }
        if self.answered_at.is_none() {
            self.counters.input_before_answer += 1;
            return;
        }
        if samples.is_empty() {
            self.counters.empty_frames += 1;
            return;
        }
        if samples.len() as u64 > MAX_CALLER_FRAME_MS * 48 {
            self.counters.oversized_frames += 1;
            debug!(samples = samples.len(), "oversized web frame: dropped");
            return;
        }
        self.inbound.load_samples(samples);
        let start = self.provider_bytes.len();
        self.inbound.encode_bytes(&mut self.provider_bytes);
        self.forward_caller_audio(start, now);
    }

    /// The caller frame is decoded in `inbound` and converted into `provider_bytes`
    /// from `start`: feed the energy gate and queue it for the provider.
    fn forward_caller_audio(&mut self, start: usize, now: Instant) {
        let rate = self.inbound.input_format().sample_rate_hz();
        if self.gate.feed(self.inbound.decoded(), rate) {
            self.caller_active(now);
        }
        self.counters.caller_frames += 1;
        let end = self.provider_bytes.len();
        // A resampler may hold back its first frame; nothing to send yet.
        if end > start {
            self.queue.push_back(Pending::ProviderAudio(start..end));
        }
    }

    fn answer(&mut self, now: Instant) {
        if self.answered_at.is_some() {
            self.counters.duplicate_starts += 1;
            return;
        }
        self.answered_at = Some(now);
        self.clock = Some(LimitClock::new(now));
        self.state = CallState::Active;
        self.emit(CallEventKind::Answered, now);
    }

    fn caller_active(&mut self, now: Instant) {
        if let Some(clock) = &mut self.clock {
            clock.caller_active(now);
        }
    }

    // ---- provider side ----

    fn handle_provider(&mut self, event: ProviderEvent<'_>, now: Instant) {
        match event {
            ProviderEvent::Connected => {
                let provider = self.config.provider.clone();
                self.emit(CallEventKind::ProviderConnected { provider }, now);
            }
            ProviderEvent::AudioDelta { item_id, audio } => {
                self.handle_provider_audio(item_id, audio, now)
            }
            ProviderEvent::SpeechStarted | ProviderEvent::Interrupted => {
                self.caller_active(now);
                if self.user_turn_start_ms.is_none() {
                    self.user_turn_start_ms = Some(self.ms_since_answer(now));
                }
                if self.config.interruption_enabled {
                    self.barge_in(now);
                }
            }
            ProviderEvent::Transcript {
                role,
                text,
                is_final,
                item_id,
                confidence,
            } => self.handle_transcript(role, text, is_final, item_id, confidence, now),
            ProviderEvent::ToolCall {
                call_id: _,
                name,
                arguments,
            } => {
                self.emit(
                    CallEventKind::ToolCall {
                        name: name.to_owned(),
                        arguments: arguments.to_owned(),
                    },
                    now,
                );
                if name == "end_call" {
                    self.end(EndReason::AgentEndedCall, now, true, true);
                }
            }
            ProviderEvent::Usage { model, usage } => {
                let provider = self.config.provider.clone();
                self.emit(
                    CallEventKind::Usage {
                        provider,
                        model: model.to_owned(),
                        usage: usage.clone(),
                    },
                    now,
                );
            }
            ProviderEvent::Error {
                fatal,
                code,
                message,
            } => {
                self.emit(
                    CallEventKind::Error {
                        code: code.to_owned(),
                        message: message.to_owned(),
                    },
                    now,
                );
                if fatal {
                    let code = code.to_owned();
                    self.end(EndReason::ProviderError { code }, now, true, true);
                } else {
                    self.counters.provider_errors += 1;
                }
            }
            ProviderEvent::Closed => {
                let code = "provider_closed".to_owned();
                self.end(EndReason::ProviderError { code }, now, false, true);
            }
        }
    }

    fn handle_provider_audio(&mut self, item_id: &str, audio: &[u8], now: Instant) {
        if self.answered_at.is_none() {
            self.counters.provider_audio_before_answer += 1;
            debug!("provider audio before answer: dropped");
            return;
        }
        if audio.is_empty() {
            self.counters.empty_frames += 1;
            return;
        }
        let bytes_per_ms = self.config.provider_output.bytes_per_ms().unwrap_or(1);
        if audio.len() as u64 > MAX_PROVIDER_DELTA_MS * u64::from(bytes_per_ms) {
            self.counters.oversized_frames += 1;
            debug!(len = audio.len(), "oversized provider delta: dropped");
            return;
        }
        let Some(item) = self.ledger.item_for_audio(item_id, now) else {
            // The caller barged in on this turn; the provider is still flushing it.
            self.counters.audio_for_truncated_items += 1;
            return;
        };

        let (start, whole) = match self.config.source {
            CallSource::Twilio => {
                let start = self.caller_bytes.len();
                let whole = if self.outbound.is_passthrough() {
                    self.outbound.pass_bytes(audio, &mut self.caller_bytes)
                } else {
                    let whole = self.outbound.decode(audio);
                    self.outbound.encode_bytes(&mut self.caller_bytes);
                    whole
                };
                (start, whole)
            }
            CallSource::Web => {
                let start = self.caller_samples.len();
                let whole = self.outbound.decode(audio);
                self.outbound.encode_samples(&mut self.caller_samples);
                (start, whole)
            }
        };
        if !whole {
            self.counters.odd_length_pcm += 1;
            debug!(
                len = audio.len(),
                "odd-length provider PCM: trailing byte dropped"
            );
        }
        let end = match self.config.source {
            CallSource::Twilio => self.caller_bytes.len(),
            CallSource::Web => self.caller_samples.len(),
        };
        self.counters.provider_frames += 1;
        let samples = (end - start) as u64;
        if samples == 0 {
            // Held back by the resampler; still counts towards what the provider sent.
            if let Some(it) = self.ledger.item_mut(item) {
                it.provider_bytes += audio.len() as u64;
            }
            return;
        }
        let seq = self
            .ledger
            .record_sent(item, samples, audio.len() as u64, now);
        self.queue.push_back(Pending::CallerAudio(start..end));
        if self.config.source == CallSource::Twilio {
            self.queue.push_back(Pending::CallerMark { seq, item });
        }
        if !self.first_audio_sent {
            self.first_audio_sent = true;
            let ttfa_ms = self.ms_since_answer(now);
            self.emit(CallEventKind::ProviderAudioStarted { ttfa_ms }, now);
        }
    }

    /// The caller spoke over the agent: clear the caller leg, drop queued agent audio,
    /// and cut the provider's item at what was heard (protocols.md §2.5, §8).
    fn barge_in(&mut self, now: Instant) {
        let Some(cut) = self.ledger.barge_in(now) else {
            return; // Nothing playing: nothing to interrupt.
        };
        self.queue.retain(|p| !p.is_agent_audio());
        self.queue.push_back(Pending::CallerClear);
        self.outbound.reset();
        let Some(item) = self.ledger.item(cut.item) else {
            return;
        };
        // Never past what the provider sent: OpenAI rejects a truncate beyond the item.
        let provider_ms = self
            .config
            .provider_output
            .bytes_per_ms()
            .map_or(u64::MAX, |bpm| item.provider_bytes / u64::from(bpm));
        let audio_end_ms = cut.heard_ms.min(provider_ms);
        let item_id = item.id.clone();
        self.queue.push_back(Pending::Truncate {
            item_id: item_id.clone(),
            audio_end_ms,
        });
        if self.config.cancel_response_on_barge_in {
            self.queue.push_back(Pending::CancelResponse);
        }
        self.emit(
            CallEventKind::BargeIn {
                item_id,
                heard_ms: audio_end_ms,
            },
            now,
        );
    }

    fn handle_transcript(
        &mut self,
        role: Role,
        text: &str,
        is_final: bool,
        item_id: Option<&str>,
        confidence: Option<f64>,
        now: Instant,
    ) {
        if role == Role::User {
            self.caller_active(now);
            if self.user_turn_start_ms.is_none() {
                self.user_turn_start_ms = Some(self.ms_since_answer(now));
            }
        }
        if !is_final {
            self.counters.partial_transcripts += 1;
            return;
        }
        let now_ms = self.ms_since_answer(now);
        match role {
            Role::User => {
                let start_ms = self.user_turn_start_ms.take().unwrap_or(now_ms);
                self.emit_transcript(
                    role,
                    text.to_owned(),
                    start_ms,
                    now_ms,
                    confidence,
                    false,
                    now,
                );
                if self.config.limits.is_end_call(text) {
                    self.end(EndReason::EndCallPhrase, now, true, true);
                }
            }
            Role::System => self.emit_transcript(
                role,
                text.to_owned(),
                now_ms,
                now_ms,
                confidence,
                false,
                now,
            ),
            Role::Assistant => {
                let item = match item_id {
                    Some(id) => self.ledger.find_item(id),
                    None => self.ledger.latest_item(),
                };
                let Some(item) = item else {
                    // No audio seen for it (text-only turn, or a provider bug): record it
                    // at arrival.
                    if item_id.is_some() {
                        self.counters.unknown_items += 1;
                    }
                    self.emit_transcript(
                        role,
                        text.to_owned(),
                        now_ms,
                        now_ms,
                        confidence,
                        false,
                        now,
                    );
                    return;
                };
                // Held until the caller has heard the turn (or cut it off), so its end
                // time and truncation say what was actually heard.
                self.ledger.hold_transcript(item, text.to_owned());
                self.release_transcripts(false, now);
            }
        }
    }

    fn release_transcripts(&mut self, all: bool, now: Instant) {
        // Empty unless a transcript is due, so the per-frame call allocates nothing.
        let mut released = Vec::new();
        let answered_at = self.answered_at;
        let samples_per_ms = self.ledger.samples_per_ms();
        self.ledger.release_transcripts(all, |item, text| {
            let start_ms = answered_at.map_or(0, |a| {
                item.first_sent_at.saturating_duration_since(a).as_millis() as u64
            });
            let played = if item.truncated {
                item.heard_samples
            } else {
                item.sent_samples
            };
            released.push((
                text,
                start_ms,
                start_ms + played / samples_per_ms,
                item.truncated,
            ));
        });
        for (text, start_ms, end_ms, truncated) in released {
            self.emit_transcript(
                Role::Assistant,
                text,
                start_ms,
                end_ms,
                None,
                truncated,
                now,
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn emit_transcript(
        &mut self,
        role: Role,
        text: String,
        start_ms: u64,
        end_ms: u64,
        confidence: Option<f64>,
        truncated: bool,
        now: Instant,
    ) {
        if !self.config.transcription_enabled {
            return;
        }
        self.emit(
            CallEventKind::Transcript {
                role,
                text,
                start_ms,
                end_ms,
                confidence,
                truncated,
            },
            now,
        );
    }

    // ---- time and limits ----

    fn after_input(&mut self, now: Instant) {
        if self.state != CallState::Active {
            return;
        }
        self.ledger.advance(now);
        // A mark (or the playout clock) may have finished an item whose transcript is
        // waiting; a no-op when none is.
        self.release_transcripts(false, now);
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

    /// Ends the call once: held transcripts go out, then the provider and caller legs
    /// are closed as needed, and `Ended` is the last event.
    fn end(&mut self, reason: EndReason, now: Instant, close_provider: bool, hang_up: bool) {
        if self.is_ended() {
            return;
        }
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
