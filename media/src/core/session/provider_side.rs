//! The provider side of `CallSession`: agent audio to the caller, barge-in,
//! transcripts, tool calls, usage and errors.

use super::output::Pending;
use super::{CallSession, CallSource, CallState, MAX_PROVIDER_DELTA_MS, ProviderEvent};
use std::time::Instant;
use tracing::debug;
use vocalized_shared::events::{CallEventKind, EndReason, Role};

impl CallSession {
    pub(super) fn handle_provider(&mut self, event: ProviderEvent<'_>, now: Instant) {
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
                // Not while ending: the goodbye plays out whatever the caller says.
                if self.config.interruption_enabled && self.state == CallState::Active {
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
                    self.end_after_playout(EndReason::AgentEndedCall, now);
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
                    debug!("recoverable provider error: call goes on");
                }
            }
            ProviderEvent::Closed => {
                let code = "provider_closed".to_owned();
                self.end(EndReason::ProviderError { code }, now, false, true);
            }
        }
    }

    pub(super) fn handle_provider_audio(&mut self, item_id: &str, audio: &[u8], now: Instant) {
        if self.answered_at.is_none() {
            self.counters.provider_audio_before_answer += 1;
            debug!("provider audio before answer: dropped");
            return;
        }
        if audio.is_empty() {
            self.counters.empty_frames += 1;
            debug!("empty provider delta: skipped");
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
            debug!("audio for a turn the caller cut off: dropped");
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
    pub(super) fn barge_in(&mut self, now: Instant) {
        let Some(cut) = self.ledger.barge_in(now) else {
            return; // Nothing playing: nothing to interrupt.
        };
        self.queue.retain(|p| !p.is_agent_audio());
        self.queue.push_back(Pending::CallerClear);
        self.outbound.reset();
        let Some(item) = self.ledger.item(cut.item) else {
            return;
        };
        if item.key < self.first_item_of_provider {
            // Sent by a provider the call has switched away from: nothing to truncate.
            let item_id = item.id.clone();
            self.emit(
                CallEventKind::BargeIn {
                    item_id,
                    heard_ms: cut.heard_ms,
                },
                now,
            );
            return;
        }
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

    pub(super) fn handle_transcript(
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
                    self.end_after_playout(EndReason::EndCallPhrase, now);
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
                        debug!("transcript for an unknown item: recorded at arrival");
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

    pub(super) fn release_transcripts(&mut self, all: bool, now: Instant) {
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
    pub(super) fn emit_transcript(
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
}
