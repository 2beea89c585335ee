//! What the session saw and skipped. Bad input is counted here (and logged at debug),
//! never a panic and never the end of a call: a metrics exporter can read these per call.

/// Per-call counters; every field counts inputs, none is a gauge.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionCounters {
    /// Caller audio frames forwarded to the provider.
    pub caller_frames: u64,
    /// Provider audio deltas forwarded to the caller.
    pub provider_frames: u64,
    /// Marks echoed for audio the caller heard.
    pub marks_acked: u64,

    /// Twilio `media` whose payload was not valid base64.
    pub bad_base64: u64,
    /// PCM16 audio with an odd byte count; the trailing byte was dropped.
    pub odd_length_pcm: u64,
    /// Audio frames with no samples.
    pub empty_frames: u64,
    /// Audio frames longer than the session accepts in one piece; dropped whole.
    pub oversized_frames: u64,
    /// Caller audio or control before the call was answered (Twilio `start`).
    pub input_before_answer: u64,
    /// Provider audio before the caller leg was answered; dropped.
    pub provider_audio_before_answer: u64,
    /// A second Twilio `start` on the same stream.
    pub duplicate_starts: u64,
    /// Twilio events this gateway does not know (`Inbound::Unknown`).
    pub unknown_caller_events: u64,
    /// Mark echoes for names we never sent (or sent and already counted).
    pub unknown_marks: u64,
    /// Mark echoes for audio a `clear` dropped: expected after a barge-in, not heard.
    pub stale_marks: u64,
    /// Provider audio for an item the caller already barged in on; dropped.
    pub audio_for_truncated_items: u64,
    /// Provider events naming an item the session has never seen.
    pub unknown_items: u64,
    /// Non-final transcripts (counted as speech, not recorded).
    pub partial_transcripts: u64,
    /// Provider errors that did not end the call.
    pub provider_errors: u64,
    /// Inputs that arrived after the call ended.
    pub inputs_after_end: u64,
    /// Twilio messages naming another stream than this call's; dropped.
    pub foreign_stream: u64,
    /// Caller audio frames beyond real time (a flooding peer); dropped.
    pub caller_audio_over_real_time: u64,
}

impl SessionCounters {
    /// The sum of the counters that mean "bad or unexpected input", for a quick health check.
    pub fn rejected_inputs(&self) -> u64 {
        self.bad_base64
            + self.odd_length_pcm
            + self.empty_frames
            + self.oversized_frames
            + self.input_before_answer
            + self.provider_audio_before_answer
            + self.duplicate_starts
            + self.unknown_caller_events
            + self.unknown_marks
            + self.unknown_items
            + self.foreign_stream
            + self.caller_audio_over_real_time
    }
}
