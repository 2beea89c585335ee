//! The caller side of `CallSession`: Twilio messages and WebRTC audio in.

use super::limits::LimitClock;
use super::marks::MarkOutcome;
use super::output::Pending;
use super::{CALLER_AUDIO_BURST_MS, CallSession, CallSource, CallState, MAX_CALLER_FRAME_MS};
use crate::core::wire::twilio;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::time::Instant;
use tracing::debug;
use vocalized_shared::events::{CallEventKind, EndReason};

impl CallSession {
    pub(super) fn handle_twilio(&mut self, message: &twilio::Inbound, now: Instant) {
        if self.config.source != CallSource::Twilio {
            self.counters.unknown_caller_events += 1;
            debug!("twilio message on a web call: ignored");
            return;
        }
        if let twilio::Inbound::Media { stream_sid, .. }
        | twilio::Inbound::Mark { stream_sid, .. }
        | twilio::Inbound::Dtmf { stream_sid, .. }
        | twilio::Inbound::Stop { stream_sid, .. } = message
            && self.answered_at.is_some()
            && !stream_sid.is_empty()
            && *stream_sid != self.stream_sid
        {
            // A peer mixing streams up: another call's audio must not reach this
            // call's provider, and another stream's `stop` must not hang this one up.
            self.counters.foreign_stream += 1;
            debug!("twilio message for another stream: dropped");
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
                    debug!("twilio mark before start: ignored");
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
                    debug!("twilio dtmf before start: ignored");
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

    pub(super) fn handle_twilio_media(&mut self, payload_b64: &str, now: Instant) {
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
            debug!("empty twilio media: skipped");
            return;
        }
        // µ-law at 8 kHz: 8 bytes a millisecond.
        if !self.admit_caller_audio(len as u64 / 8, now) {
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

    pub(super) fn handle_web_audio(&mut self, samples: &[i16], now: Instant) {
        if self.config.source != CallSource::Web {
            self.counters.unknown_caller_events += 1;
            debug!("web audio on a twilio call: ignored");
            return;
        }
        if self.answered_at.is_none() {
            self.counters.input_before_answer += 1;
            debug!("web audio before answer: dropped");
            return;
        }
        if samples.is_empty() {
            self.counters.empty_frames += 1;
            debug!("empty web frame: skipped");
            return;
        }
        if samples.len() as u64 > MAX_CALLER_FRAME_MS * 48 {
            self.counters.oversized_frames += 1;
            debug!(samples = samples.len(), "oversized web frame: dropped");
            return;
        }
        if !self.admit_caller_audio(samples.len() as u64 / 48, now) {
            return;
        }
        self.inbound.load_samples(samples);
        let start = self.provider_bytes.len();
        self.inbound.encode_bytes(&mut self.provider_bytes);
        self.forward_caller_audio(start, now);
    }

    /// Caller audio may run ahead of real time by [`CALLER_AUDIO_BURST_MS`] (network
    /// jitter delivers frames in bunches); past that a peer is flooding, and its excess
    /// frames are dropped and counted rather than forwarded to the provider.
    fn admit_caller_audio(&mut self, frame_ms: u64, now: Instant) -> bool {
        let Some(answered_at) = self.answered_at else {
            return true;
        };
        let elapsed_ms = now.saturating_duration_since(answered_at).as_millis() as u64;
        if self.caller_audio_ms + frame_ms > elapsed_ms + CALLER_AUDIO_BURST_MS {
            self.counters.caller_audio_over_real_time += 1;
            debug!("caller audio ahead of real time: dropped");
            return false;
        }
        self.caller_audio_ms += frame_ms;
        true
    }

    /// The caller frame is decoded in `inbound` and converted into `provider_bytes`
    /// from `start`: feed the energy gate and queue it for the provider.
    pub(super) fn forward_caller_audio(&mut self, start: usize, now: Instant) {
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

    pub(super) fn answer(&mut self, now: Instant) {
        if self.answered_at.is_some() {
            self.counters.duplicate_starts += 1;
            debug!("second answer: ignored");
            return;
        }
        self.answered_at = Some(now);
        self.clock = Some(LimitClock::new(now));
        self.state = CallState::Active;
        self.emit(CallEventKind::Answered, now);
    }

    pub(super) fn caller_active(&mut self, now: Instant) {
        if let Some(clock) = &mut self.clock {
            clock.caller_active(now);
        }
    }
}
