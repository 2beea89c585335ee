//! The echo provider: a diagnostic "agent" that plays the caller's speech back, like a
//! telephone echo test. It proves the whole media path (caller codec, session, pacer,
//! provider plumbing, billing events) without an AI provider or a network.
//!
//! Sans-IO: time is a parameter. The driver feeds [`ProviderCommand`]s with
//! [`EchoProvider::handle_command`], drains [`EchoProvider::poll_event`] and wakes at
//! [`EchoProvider::next_deadline`].
//!
//! Audio is PCM16 LE mono at [`SAMPLE_RATE`] in both directions. Speech is found with a
//! simple energy gate on 20 ms frames; each utterance becomes one agent turn (its own
//! item id) played back [`ECHO_DELAY`] after it was heard. Silence between utterances is
//! not echoed: the session pads the caller leg with silence anyway.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use vocalized_shared::events::{Role, Usage};

use crate::core::session::{ProviderCommand, ProviderEvent};

/// Input and output sample rate (the same 24 kHz PCM16 as OpenAI Realtime, so a web or
/// phone session configured for it needs no special case).
pub const SAMPLE_RATE: u32 = 24_000;
/// How long after hearing audio it is played back.
pub const ECHO_DELAY: Duration = Duration::from_millis(500);
/// The `model` named in usage events.
pub const MODEL: &str = "echo";

/// 20 ms of samples: the energy gate's frame.
const FRAME: usize = (SAMPLE_RATE / 50) as usize;
/// RMS above which a frame counts as speech (about -36 dBFS; fake-device speech and real
/// microphones sit well above it, line noise below).
const SPEECH_RMS: f64 = 500.0;
/// Silence that ends an utterance (so pauses between words do not split it).
const HANGOVER_FRAMES: u32 = 25; // 500 ms

enum Owned {
    Connected,
    SpeechStarted,
    Audio {
        item: usize,
        bytes: Vec<u8>,
    },
    Transcript {
        role: Role,
        text: String,
        item: usize,
    },
    Usage(Usage),
    Closed,
}

/// See the module documentation.
pub struct EchoProvider {
    /// Events due now (speech start, caller transcript).
    immediate: VecDeque<Owned>,
    /// Events due later, in due order (echoed audio and what follows it).
    delayed: VecDeque<(Instant, Owned)>,
    /// The event last handed out by `poll_event` (the borrow lives here).
    current: Option<Owned>,
    current_item: String,
    /// Samples of a partial 20 ms frame carried to the next command.
    frame: Vec<i16>,
    /// A half sample (odd byte) carried to the next command.
    odd_byte: Option<u8>,
    /// The utterance in progress: its number, its length in samples and the silent
    /// frames since its last loud one.
    utterance: Option<(usize, u64, u32)>,
    utterances: usize,
    input_samples: u64,
    closed: bool,
}

impl Default for EchoProvider {
    fn default() -> Self {
        Self::new()
    }
}

impl EchoProvider {
    pub fn new() -> Self {
        let mut immediate = VecDeque::new();
        immediate.push_back(Owned::Connected);
        Self {
            immediate,
            delayed: VecDeque::new(),
            current: None,
            current_item: String::new(),
            frame: Vec::with_capacity(FRAME),
            odd_byte: None,
            utterance: None,
            utterances: 0,
            input_samples: 0,
            closed: false,
        }
    }

    /// Take a command from the session.
    pub fn handle_command(&mut self, cmd: ProviderCommand<'_>, now: Instant) {
        if self.closed {
            return;
        }
        match cmd {
            ProviderCommand::Audio(bytes) => self.audio(bytes, now),
            // Barge-in: drop the echo not yet played, as a real agent stops talking.
            ProviderCommand::Truncate { .. } | ProviderCommand::CancelResponse => {
                self.delayed
                    .retain(|(_, e)| !matches!(e, Owned::Audio { .. }));
            }
            // The echo has no voice of its own; prompts are not spoken.
            ProviderCommand::Say { .. } => {}
            ProviderCommand::Close => {
                self.finish_utterance(now);
                self.closed = true;
                self.flush_usage(now);
                self.delayed.push_back((now, Owned::Closed));
            }
        }
    }

    /// The next event due at `now`.
    pub fn poll_event(&mut self, now: Instant) -> Option<ProviderEvent<'_>> {
        let next = match self.immediate.pop_front() {
            Some(e) => e,
            None => match self.delayed.front() {
                // Once closed everything left is handed out at once.
                Some((due, _)) if *due <= now || self.closed => self.delayed.pop_front()?.1,
                _ => return None,
            },
        };
        self.current_item.clear();
        if let Owned::Audio { item, .. } | Owned::Transcript { item, .. } = &next {
            self.current_item = format!("echo_{item}");
        }
        self.current = Some(next);
        Some(match self.current.as_ref()? {
            Owned::Connected => ProviderEvent::Connected,
            Owned::SpeechStarted => ProviderEvent::SpeechStarted,
            Owned::Audio { bytes, .. } => ProviderEvent::AudioDelta {
                item_id: &self.current_item,
                audio: bytes,
            },
            Owned::Transcript { role, text, .. } => ProviderEvent::Transcript {
                role: *role,
                text,
                is_final: true,
                item_id: (*role == Role::Assistant).then_some(self.current_item.as_str()),
                confidence: None,
            },
            Owned::Usage(usage) => ProviderEvent::Usage {
                model: MODEL,
                usage,
            },
            Owned::Closed => ProviderEvent::Closed,
        })
    }

    /// True when `poll_event(now)` has something.
    pub fn has_event_due(&self, now: Instant) -> bool {
        !self.immediate.is_empty()
            || self
                .delayed
                .front()
                .is_some_and(|(due, _)| *due <= now || self.closed)
    }

    /// When `poll_event` next has something, if nothing is due now.
    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.immediate.is_empty() {
            return None;
        }
        self.delayed.front().map(|(due, _)| *due)
    }

    fn audio(&mut self, bytes: &[u8], now: Instant) {
        let mut bytes = bytes;
        if let Some(lo) = self.odd_byte.take() {
            if let Some((&hi, rest)) = bytes.split_first() {
                self.frame.push(i16::from_le_bytes([lo, hi]));
                bytes = rest;
            } else {
                self.odd_byte = Some(lo);
            }
        }
        let mut chunks = bytes.chunks_exact(2);
        for pair in &mut chunks {
            self.frame.push(i16::from_le_bytes([pair[0], pair[1]]));
            if self.frame.len() == FRAME {
                self.take_frame(now);
            }
        }
        if let [last] = chunks.remainder() {
            self.odd_byte = Some(*last);
        }
        if self.frame.len() == FRAME {
            self.take_frame(now);
        }
    }

    fn take_frame(&mut self, now: Instant) {
        self.input_samples += self.frame.len() as u64;
        let energy: f64 = self
            .frame
            .iter()
            .map(|&s| f64::from(s) * f64::from(s))
            .sum();
        let loud = (energy / self.frame.len() as f64).sqrt() > SPEECH_RMS;
        match (&mut self.utterance, loud) {
            (None, false) => {}
            (None, true) => {
                self.utterances += 1;
                self.utterance = Some((self.utterances, 0, 0));
                self.immediate.push_back(Owned::SpeechStarted);
            }
            (Some((_, _, quiet)), true) => *quiet = 0,
            (Some((_, _, quiet)), false) => *quiet += 1,
        }
        if let Some((item, len, _)) = &mut self.utterance {
            *len += self.frame.len() as u64;
            let bytes = self.frame.iter().flat_map(|s| s.to_le_bytes()).collect();
            self.delayed
                .push_back((now + ECHO_DELAY, Owned::Audio { item: *item, bytes }));
        }
        self.frame.clear();
        if matches!(self.utterance, Some((_, _, quiet)) if quiet >= HANGOVER_FRAMES) {
            self.finish_utterance(now);
        }
    }

    /// Close the utterance in progress: the caller's transcript now, the echo's after
    /// its audio, then the usage for both.
    fn finish_utterance(&mut self, now: Instant) {
        let Some((item, len, quiet)) = self.utterance.take() else {
            return;
        };
        let spoken = len.saturating_sub(u64::from(quiet) * FRAME as u64);
        let secs = |n: u64| n as f64 / f64::from(SAMPLE_RATE);
        self.immediate.push_back(Owned::Transcript {
            role: Role::User,
            text: format!("(caller spoke for {:.1} s)", secs(spoken)),
            item,
        });
        self.delayed.push_back((
            now + ECHO_DELAY,
            Owned::Transcript {
                role: Role::Assistant,
                text: format!("(echo of {:.1} s of speech)", secs(len)),
                item,
            },
        ));
        let usage = Usage {
            audio_input_ms: std::mem::take(&mut self.input_samples) * 1000 / u64::from(SAMPLE_RATE),
            audio_output_ms: len * 1000 / u64::from(SAMPLE_RATE),
            ..Usage::default()
        };
        self.delayed
            .push_back((now + ECHO_DELAY, Owned::Usage(usage)));
    }

    /// Bill input heard since the last utterance (silence counts as listened-to audio).
    fn flush_usage(&mut self, now: Instant) {
        let ms = std::mem::take(&mut self.input_samples) * 1000 / u64::from(SAMPLE_RATE);
        if ms > 0 {
            let usage = Usage {
                audio_input_ms: ms,
                ..Usage::default()
            };
            self.delayed.push_back((now, Owned::Usage(usage)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcm(samples: usize, amplitude: i16) -> Vec<u8> {
        (0..samples)
            .flat_map(|i| {
                let s = if i % 2 == 0 { amplitude } else { -amplitude };
                s.to_le_bytes()
            })
            .collect()
    }

    /// Feed `ms` of audio in 20 ms commands, advancing the clock; returns the new time.
    fn feed(echo: &mut EchoProvider, t: Instant, ms: u64, amplitude: i16) -> Instant {
        let mut t = t;
        for _ in 0..ms / 20 {
            echo.handle_command(ProviderCommand::Audio(&pcm(FRAME, amplitude)), t);
            t += Duration::from_millis(20);
        }
        t
    }

    #[derive(Debug, PartialEq)]
    enum Seen {
        Connected,
        Speech,
        Audio(String, usize),
        Text(Role, String),
        Usage(u64, u64),
        Closed,
    }

    fn drain(echo: &mut EchoProvider, now: Instant) -> Vec<Seen> {
        let mut out = Vec::new();
        while let Some(e) = echo.poll_event(now) {
            out.push(match e {
                ProviderEvent::Connected => Seen::Connected,
                ProviderEvent::SpeechStarted => Seen::Speech,
                ProviderEvent::AudioDelta { item_id, audio } => {
                    Seen::Audio(item_id.to_string(), audio.len())
                }
                ProviderEvent::Transcript { role, text, .. } => Seen::Text(role, text.into()),
                ProviderEvent::Usage { usage, .. } => {
                    Seen::Usage(usage.audio_input_ms, usage.audio_output_ms)
                }
                ProviderEvent::Closed => Seen::Closed,
                other => panic!("unexpected {other:?}"),
            });
        }
        out
    }

    #[test]
    fn silence_is_not_echoed() {
        let t0 = Instant::now();
        let mut echo = EchoProvider::new();
        let t = feed(&mut echo, t0, 1000, 20);
        assert_eq!(
            drain(&mut echo, t + Duration::from_secs(2)),
            vec![Seen::Connected]
        );
        assert_eq!(echo.next_deadline(), None);
    }

    #[test]
    fn speech_comes_back_half_a_second_later_with_transcripts_and_usage() {
        let t0 = Instant::now();
        let mut echo = EchoProvider::new();
        let t = feed(&mut echo, t0, 200, 0);
        let t = feed(&mut echo, t, 20, 8000);
        // Speech start is reported at once, but nothing is played back yet.
        assert!(echo.has_event_due(t));
        assert_eq!(drain(&mut echo, t), vec![Seen::Connected, Seen::Speech]);
        assert!(!echo.has_event_due(t));
        let first_due = echo.next_deadline().expect("echo scheduled");
        assert!(echo.has_event_due(first_due));
        assert_eq!(first_due, t0 + Duration::from_millis(200) + ECHO_DELAY);
        let t = feed(&mut echo, t, 980, 8000);
        // Half a second after the first loud frame, that frame comes back, and no later one.
        let got = drain(&mut echo, first_due);
        assert_eq!(got, vec![Seen::Audio("echo_1".into(), FRAME * 2)]);
        // Silence ends the utterance after the hangover.
        let t = feed(&mut echo, t, 600, 0);
        let got = drain(&mut echo, t + Duration::from_secs(2));
        let audio: usize = got.iter().filter(|s| matches!(s, Seen::Audio(..))).count();
        // 1 s speech + 500 ms hangover, less the first frame already played.
        assert_eq!(audio, 50 + 25 - 1);
        assert!(got.contains(&Seen::Text(Role::User, "(caller spoke for 1.0 s)".into())));
        assert!(got.contains(&Seen::Text(
            Role::Assistant,
            "(echo of 1.5 s of speech)".into()
        )));
        assert_eq!(got.last(), Some(&Seen::Usage(1700, 1500)));
    }

    #[test]
    fn barge_in_drops_unplayed_echo_and_close_finishes() {
        let t0 = Instant::now();
        let mut echo = EchoProvider::new();
        let t = feed(&mut echo, t0, 400, 8000);
        drain(&mut echo, t);
        echo.handle_command(ProviderCommand::CancelResponse, t);
        let t = feed(&mut echo, t, 100, 0);
        // Odd byte counts survive a split sample without panicking.
        echo.handle_command(ProviderCommand::Audio(&[1]), t);
        echo.handle_command(ProviderCommand::Close, t);
        let got = drain(&mut echo, t);
        // Only the 100 ms heard after the barge-in is left to play.
        assert_eq!(
            got.iter().filter(|s| matches!(s, Seen::Audio(..))).count(),
            5
        );
        assert_eq!(got.last(), Some(&Seen::Closed));
        echo.handle_command(ProviderCommand::Audio(&pcm(FRAME, 8000)), t);
        assert!(echo.poll_event(t + Duration::from_secs(5)).is_none());
    }
}
