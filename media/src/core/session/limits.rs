//! Call limits from the agent's settings (seed `call-feature-schema-changes.md` §9):
//! maximum duration (warn at 90 %, then end), caller silence (prompt once, then end) and
//! end-call phrases.
//!
//! What counts as the caller speaking (resets the silence clock):
//! - the provider's own voice detection: speech-started / interrupted events;
//! - any user transcript, partial or final;
//! - a DTMF key;
//! - caller audio above a fixed energy threshold for [`VOICED_RUN_MS`], because not
//!   every provider reports speech when the agent is quiet (Gemini only says
//!   `interrupted` while it is talking).
//!
//! The provider signals are the primary source: their VAD is far better than an energy
//! gate. The gate only has to tell a speaking caller from a silent line, and a phone
//! line's noise floor sits well under its threshold.
//!
//! Agent speech pauses the silence clock: a caller listening to a long answer is not
//! silent. The clock runs from the latest of: the caller's last activity, the end of the
//! agent's playout, and the "are you still there?" prompt.

use std::time::{Duration, Instant};
use vocalized_shared::call_settings::CallSettings;

/// What the agent says when the caller has been quiet for one silence timeout.
pub const SILENCE_PROMPT: &str = "Are you still there?";

/// The limits of one call, read once at call start.
#[derive(Clone, Debug, PartialEq)]
pub struct CallLimits {
    pub max_duration: Duration,
    /// When the "call will end soon" warning is spoken: 90 % of `max_duration`.
    pub warn_after: Duration,
    pub silence_timeout: Duration,
    /// Lower-case, trimmed; matched on word boundaries in the caller's final transcripts.
    pub end_call_phrases: Vec<String>,
}

impl CallLimits {
    pub fn from_settings(settings: &CallSettings) -> Self {
        let max_duration = Duration::from_secs(u64::from(settings.max_call_duration.max(1)));
        Self {
            max_duration,
            warn_after: max_duration.mul_f64(0.9),
            silence_timeout: Duration::from_secs(u64::from(settings.silence_timeout.max(1))),
            end_call_phrases: settings.end_call_phrases(),
        }
    }

    /// The warning spoken at `warn_after`, with the time actually left.
    pub fn warning_text(&self) -> String {
        let left_s = (self.max_duration - self.warn_after).as_secs();
        match left_s {
            0..=59 => format!("This call will end in {left_s} seconds."),
            60..=119 => "This call will end in one minute.".to_owned(),
            _ => format!("This call will end in {} minutes.", left_s / 60),
        }
    }

    /// True when a final caller transcript contains an end-call phrase as whole words
    /// ("bye" ends the call, "maybe" does not).
    pub fn is_end_call(&self, transcript: &str) -> bool {
        if self.end_call_phrases.is_empty() {
            return false;
        }
        let text = transcript.to_lowercase();
        self.end_call_phrases
            .iter()
            .any(|phrase| contains_words(&text, phrase))
    }
}

fn contains_words(text: &str, phrase: &str) -> bool {
    let is_word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    text.match_indices(phrase).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + phrase.len()..].chars().next();
        !is_word(before) && !is_word(after)
    })
}

/// A limit that has come due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitAction {
    WarnMaxDuration,
    EndMaxDuration,
    PromptSilence,
    EndSilence,
}

/// The deadlines of one answered call.
#[derive(Debug)]
pub(crate) struct LimitClock {
    answered_at: Instant,
    warned: bool,
    last_caller_activity: Instant,
    prompted_at: Option<Instant>,
}

impl LimitClock {
    pub fn new(answered_at: Instant) -> Self {
        Self {
            answered_at,
            warned: false,
            last_caller_activity: answered_at,
            prompted_at: None,
        }
    }

    /// The caller spoke (or pressed a key): silence starts over, and a past prompt is
    /// forgotten so a later silence gets its own prompt.
    pub fn caller_active(&mut self, now: Instant) {
        self.last_caller_activity = self.last_caller_activity.max(now);
        self.prompted_at = None;
    }

    fn silence_deadline(
        &self,
        limits: &CallLimits,
        agent_playing: bool,
        agent_idle_since: Option<Instant>,
    ) -> Option<Instant> {
        if agent_playing {
            return None;
        }
        let mut since = self.last_caller_activity;
        if let Some(t) = agent_idle_since {
            since = since.max(t);
        }
        if let Some(t) = self.prompted_at {
            since = since.max(t);
        }
        Some(since + limits.silence_timeout)
    }

    /// The next instant at which [`LimitClock::due`] may return an action.
    pub fn next_deadline(
        &self,
        limits: &CallLimits,
        agent_playing: bool,
        agent_idle_since: Option<Instant>,
    ) -> Instant {
        let duration = if self.warned {
            self.answered_at + limits.max_duration
        } else {
            self.answered_at + limits.warn_after
        };
        match self.silence_deadline(limits, agent_playing, agent_idle_since) {
            Some(silence) => duration.min(silence),
            None => duration,
        }
    }

    /// The limit that is due at `now`, if any; its state is updated as taken.
    pub fn due(
        &mut self,
        limits: &CallLimits,
        now: Instant,
        agent_playing: bool,
        agent_idle_since: Option<Instant>,
    ) -> Option<LimitAction> {
        if now >= self.answered_at + limits.max_duration {
            return Some(LimitAction::EndMaxDuration);
        }
        if !self.warned && now >= self.answered_at + limits.warn_after {
            self.warned = true;
            return Some(LimitAction::WarnMaxDuration);
        }
        let silence = self.silence_deadline(limits, agent_playing, agent_idle_since)?;
        if now < silence {
            return None;
        }
        if self.prompted_at.is_some() {
            Some(LimitAction::EndSilence)
        } else {
            self.prompted_at = Some(now);
            Some(LimitAction::PromptSilence)
        }
    }
}

/// Mean absolute amplitude above which a frame counts as voiced (about -36 dBFS).
const VOICED_MEAN_ABS: u64 = 500;
/// Voiced audio needed in one run before the caller counts as speaking, so a click or
/// a burst of line noise does not reset the silence clock.
pub const VOICED_RUN_MS: u64 = 200;

/// A deliberately simple energy gate on caller audio; see the module notes.
#[derive(Debug, Default)]
pub(crate) struct EnergyGate {
    voiced_run_samples: u64,
}

impl EnergyGate {
    /// Feeds one frame of decoded caller audio; true once a voiced run is long enough.
    pub fn feed(&mut self, samples: &[i16], sample_rate_hz: u32) -> bool {
        if samples.is_empty() {
            return false;
        }
        let sum: u64 = samples.iter().map(|&s| u64::from(s.unsigned_abs())).sum();
        if sum / samples.len() as u64 >= VOICED_MEAN_ABS {
            self.voiced_run_samples += samples.len() as u64;
        } else {
            self.voiced_run_samples = 0;
        }
        self.voiced_run_samples * 1000 >= VOICED_RUN_MS * u64::from(sample_rate_hz)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(silence_s: u32, max_s: u32) -> CallLimits {
        CallLimits::from_settings(&CallSettings {
            silence_timeout: silence_s,
            max_call_duration: max_s,
            end_call_phrase: "goodbye, bye, end the call".into(),
            ..CallSettings::default()
        })
    }

    #[test]
    fn end_call_phrases_match_whole_words_only() {
        let l = limits(30, 600);
        assert!(l.is_end_call("OK, Goodbye!"));
        assert!(l.is_end_call("bye"));
        assert!(l.is_end_call("please end the call now"));
        assert!(!l.is_end_call("maybe later"));
        assert!(!l.is_end_call("byexample"));
        assert!(!l.is_end_call("end the calls"));
    }

    #[test]
    fn max_duration_warns_at_ninety_percent_then_ends() {
        let l = limits(300, 600);
        let t0 = Instant::now();
        let mut clock = LimitClock::new(t0);
        clock.caller_active(t0 + Duration::from_secs(500));
        assert_eq!(
            clock.next_deadline(&l, true, None),
            t0 + Duration::from_secs(540)
        );
        assert_eq!(
            clock.due(&l, t0 + Duration::from_secs(539), true, None),
            None
        );
        assert_eq!(
            clock.due(&l, t0 + Duration::from_secs(540), true, None),
            Some(LimitAction::WarnMaxDuration)
        );
        assert_eq!(
            clock.due(&l, t0 + Duration::from_secs(541), true, None),
            None
        );
        assert_eq!(
            clock.next_deadline(&l, true, None),
            t0 + Duration::from_secs(600)
        );
        assert_eq!(
            clock.due(&l, t0 + Duration::from_secs(600), true, None),
            Some(LimitAction::EndMaxDuration)
        );
        assert_eq!(l.warning_text(), "This call will end in one minute.");
        assert_eq!(
            limits(30, 3600).warning_text(),
            "This call will end in 6 minutes."
        );
        assert_eq!(
            limits(30, 100).warning_text(),
            "This call will end in 10 seconds."
        );
    }

    #[test]
    fn silence_prompts_once_then_ends_and_agent_speech_pauses_it() {
        let l = limits(30, 3600);
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut clock = LimitClock::new(t0);
        // The agent talks until 10 s: the silence clock starts there.
        assert_eq!(clock.due(&l, t0 + s(35), true, None), None);
        assert_eq!(clock.next_deadline(&l, false, Some(t0 + s(10))), t0 + s(40));
        assert_eq!(clock.due(&l, t0 + s(39), false, Some(t0 + s(10))), None);
        assert_eq!(
            clock.due(&l, t0 + s(40), false, Some(t0 + s(10))),
            Some(LimitAction::PromptSilence)
        );
        assert_eq!(clock.next_deadline(&l, false, Some(t0 + s(10))), t0 + s(70));
        assert_eq!(
            clock.due(&l, t0 + s(70), false, Some(t0 + s(10))),
            Some(LimitAction::EndSilence)
        );
        // Speech after a prompt earns a fresh prompt later.
        clock.caller_active(t0 + s(71));
        assert_eq!(
            clock.due(&l, t0 + s(101), false, None),
            Some(LimitAction::PromptSilence)
        );
    }

    #[test]
    fn the_energy_gate_needs_a_sustained_voiced_run() {
        let mut gate = EnergyGate::default();
        let loud = [3000i16; 160];
        let quiet = [20i16; 160];
        for _ in 0..9 {
            assert!(!gate.feed(&loud, 8_000));
        }
        assert!(!gate.feed(&quiet, 8_000));
        for _ in 0..9 {
            assert!(!gate.feed(&loud, 8_000));
        }
        assert!(gate.feed(&loud, 8_000));
        assert!(!gate.feed(&[], 8_000));
    }
}
