//! Playout pacer for real-time outputs (the WebRTC leg).
//!
//! Providers send agent audio in bursts, often much faster than real time, while an RTP
//! stream must leave one 20 ms frame every 20 ms. Twilio buffers for us (protocols.md
//! §1.3); a browser does not, so the WebRTC driver puts provider audio through this
//! pacer and asks it, on every timer tick, for the frame that is due.
//!
//! Behaviour, all with the time passed in (`now: Instant`, like `CallSession`):
//! - [`Pacer::push`] accumulates samples of any length into 20 ms frames at the configured
//!   rate and queues them. The queue is bounded (30 s for WebRTC: about 2.8 MB per call),
//!   so a provider that floods audio faster than real time cannot grow memory (review
//!   L10). Past the bound the **newest** frame is dropped and counted (an overrun): the
//!   caller keeps hearing the queued speech coherently and only the tail of an over-long
//!   burst is cut. After an overrun the pacer keeps dropping until half the queue has
//!   played, so a sustained flood is heard as a few coherent stretches; dropping the
//!   oldest (or one frame per freed slot) would play every n-th frame: noise.
//! - The clock starts at the first [`Pacer::poll`]; afterwards a frame is due every 20 ms
//!   and [`Pacer::next_deadline`] says when. `poll` returns `None` when nothing is due.
//! - When a frame is due, `poll` returns it, or **comfort silence** if there is no agent
//!   audio to play: the outgoing stream stays continuous (steady RTP timestamps, and the
//!   Opus encoder sees every tick), so the driver just encodes and sends whatever it gets.
//! - Playout starts once `target_depth_frames` frames are queued (jitter headroom for
//!   bursty arrival), or earlier once the end of an utterance was signalled with
//!   [`Pacer::end_of_audio`]. Running dry while playing is an underrun; the pacer then
//!   re-buffers to the target depth.
//! - A poll more than one tick after its deadline still plays the frame but counts it as
//!   late; the driver catches up by polling again until `None`. Past `MAX_CATCH_UP_TICKS`
//!   behind, the schedule re-anchors at `now` instead of bursting.
//! - [`Pacer::flush`] drops everything queued on barge-in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Frame duration of the outgoing stream.
pub const TICK: Duration = Duration::from_millis(20);
/// How far behind schedule the pacer catches up by bursting before it re-anchors.
const MAX_CATCH_UP_TICKS: u32 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacerConfig {
    pub sample_rate_hz: u32,
    /// Frames queued before playout starts (and restarts after an underrun).
    pub target_depth_frames: usize,
    /// Queue bound; a frame pushed past it is dropped.
    pub max_depth_frames: usize,
}

impl PacerConfig {
    /// 48 kHz for Opus, 60 ms of jitter headroom, at most 30 s of queued agent audio
    /// (a long answer delivered in one burst must not be cut).
    pub fn webrtc() -> Self {
        Self {
            sample_rate_hz: 48_000,
            target_depth_frames: 3,
            max_depth_frames: 1_500,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacerStats {
    /// Frames of agent audio released.
    pub frames_played: u64,
    /// Ticks filled with comfort silence.
    pub silence_frames: u64,
    /// Times the queue ran dry while playing.
    pub underruns: u64,
    /// Frames dropped on arrival because the queue was full.
    pub overrun_drops: u64,
    /// Frames released more than one tick after their deadline.
    pub late_frames: u64,
    /// Times the schedule was re-anchored after falling far behind.
    pub resyncs: u64,
    /// Frames dropped by `flush` (barge-in).
    pub flushed_frames: u64,
    /// Frames queued right now.
    pub queued_frames: usize,
}

pub struct Pacer {
    config: PacerConfig,
    frame_samples: usize,
    /// Whole frames, oldest first, back to back.
    queue: VecDeque<i16>,
    /// The frame being assembled by `push`.
    partial: Vec<i16>,
    /// The frame handed out by `poll`.
    current: Vec<i16>,
    playing: bool,
    /// Set by `end_of_audio`: play what is queued even below the target depth.
    draining: bool,
    /// The queue overflowed: drop arrivals until it has drained to half its bound.
    overrun: bool,
    next_tick: Option<Instant>,
    stats: PacerStats,
}

impl Pacer {
    pub fn new(config: PacerConfig) -> Self {
        let frame_samples = (config.sample_rate_hz / 50).max(1) as usize;
        let config = PacerConfig {
            target_depth_frames: config.target_depth_frames.max(1),
            max_depth_frames: config
                .max_depth_frames
                .max(config.target_depth_frames)
                .max(1),
            ..config
        };
        Self {
            config,
            frame_samples,
            queue: VecDeque::with_capacity(frame_samples * config.target_depth_frames * 4),
            partial: Vec::with_capacity(frame_samples),
            current: vec![0; frame_samples],
            playing: false,
            draining: false,
            overrun: false,
            next_tick: None,
            stats: PacerStats::default(),
        }
    }

    /// Queues agent audio at the configured rate, any length.
    pub fn push(&mut self, samples: &[i16]) {
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (self.frame_samples - self.partial.len()).min(rest.len());
            self.partial.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.partial.len() == self.frame_samples {
                self.enqueue_partial();
            }
        }
    }

    /// The agent finished an utterance: pad the last partial frame with silence and let
    /// playout start even if fewer than `target_depth_frames` are queued.
    pub fn end_of_audio(&mut self) {
        if !self.partial.is_empty() {
            self.partial.resize(self.frame_samples, 0);
            self.enqueue_partial();
        }
        self.draining = true;
    }

    /// Returns the frame due at `now`, or `None` if the next deadline has not come.
    /// A due tick with no agent audio yields a frame of silence.
    pub fn poll(&mut self, now: Instant) -> Option<&[i16]> {
        let deadline = *self.next_tick.get_or_insert(now);
        if now < deadline {
            return None;
        }
        let behind = now - deadline;
        if behind > TICK * MAX_CATCH_UP_TICKS {
            self.stats.resyncs += 1;
            self.next_tick = Some(now + TICK);
        } else {
            self.next_tick = Some(deadline + TICK);
        }

        let queued = self.queued_frames();
        if !self.playing
            && (queued >= self.config.target_depth_frames || (self.draining && queued > 0))
        {
            self.playing = true;
        }
        if self.playing && queued == 0 {
            self.playing = false;
            if !self.draining {
                self.stats.underruns += 1;
            }
            self.draining = false;
        }
        if self.playing {
            for (slot, sample) in self
                .current
                .iter_mut()
                .zip(self.queue.drain(..self.frame_samples))
            {
                *slot = sample;
            }
            self.stats.frames_played += 1;
            if behind > TICK {
                self.stats.late_frames += 1;
            }
        } else {
            self.current.fill(0);
            self.stats.silence_frames += 1;
        }
        Some(&self.current)
    }

    /// When the next frame is due; `None` until the first `poll` starts the clock.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.next_tick
    }

    /// Drops all queued and partial audio (barge-in). The clock keeps running, so the
    /// stream goes on with silence.
    pub fn flush(&mut self) {
        self.stats.flushed_frames += self.queued_frames() as u64;
        self.queue.clear();
        self.partial.clear();
        self.playing = false;
        self.draining = false;
        self.overrun = false;
    }

    pub fn queued_frames(&self) -> usize {
        self.queue.len() / self.frame_samples
    }

    pub fn is_playing(&self) -> bool {
        self.playing
    }

    pub fn frame_samples(&self) -> usize {
        self.frame_samples
    }

    pub fn stats(&self) -> PacerStats {
        PacerStats {
            queued_frames: self.queued_frames(),
            ..self.stats
        }
    }

    fn enqueue_partial(&mut self) {
        let queued = self.queued_frames();
        if self.overrun && queued <= self.config.max_depth_frames / 2 {
            self.overrun = false;
        }
        if self.overrun || queued >= self.config.max_depth_frames {
            // Keep dropping until half the queue has played: what is accepted afterwards
            // is a coherent stretch, not one frame per freed slot.
            self.overrun = true;
            self.partial.clear();
            self.stats.overrun_drops += 1;
            return;
        }
        self.queue.extend(self.partial.drain(..));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 8_000; // 160-sample frames keep the tests readable.

    fn pacer(target: usize, max: usize) -> Pacer {
        Pacer::new(PacerConfig {
            sample_rate_hz: RATE,
            target_depth_frames: target,
            max_depth_frames: max,
        })
    }

    /// A frame whose every sample is `tag`, so tests can tell frames apart.
    fn frame(tag: i16) -> Vec<i16> {
        vec![tag; 160]
    }

    fn ms(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    /// What each poll returned: Some(tag of first sample) or None.
    fn tag(p: &mut Pacer, now: Instant) -> Option<i16> {
        p.poll(now).map(|f| {
            assert_eq!(f.len(), 160);
            f[0]
        })
    }

    #[test]
    fn starts_at_target_depth_and_plays_one_frame_per_tick() {
        let t0 = Instant::now();
        let mut p = pacer(2, 10);
        p.push(&frame(1));
        assert_eq!(tag(&mut p, t0), Some(0), "below target depth: silence");
        assert_eq!(p.next_deadline(), Some(ms(t0, 20)));
        assert_eq!(tag(&mut p, ms(t0, 19)), None, "not due yet");
        p.push(&frame(2));
        assert_eq!(tag(&mut p, ms(t0, 20)), Some(1));
        assert_eq!(tag(&mut p, ms(t0, 40)), Some(2));
        assert_eq!(tag(&mut p, ms(t0, 60)), Some(0), "ran dry: silence");
        let s = p.stats();
        assert_eq!(
            (
                s.frames_played,
                s.silence_frames,
                s.underruns,
                s.late_frames
            ),
            (2, 2, 1, 0)
        );
        assert!(!p.is_playing());
    }

    #[test]
    fn push_accumulates_odd_sizes_into_frames() {
        let t0 = Instant::now();
        let mut p = pacer(1, 10);
        let samples: Vec<i16> = (0..400).collect();
        for piece in samples.chunks(37) {
            p.push(piece);
        }
        assert_eq!(p.queued_frames(), 2, "80 samples still partial");
        let first = p.poll(t0).unwrap().to_vec();
        assert_eq!(first, samples[..160]);
        let second = p.poll(ms(t0, 20)).unwrap().to_vec();
        assert_eq!(second, samples[160..320]);
    }

    #[test]
    fn end_of_audio_pads_and_plays_below_target_without_an_underrun() {
        let t0 = Instant::now();
        let mut p = pacer(3, 10);
        p.push(&[7; 100]);
        p.end_of_audio();
        let f = p.poll(t0).unwrap().to_vec();
        assert_eq!(&f[..100], &[7; 100]);
        assert!(f[100..].iter().all(|&s| s == 0), "padded with silence");
        assert_eq!(tag(&mut p, ms(t0, 20)), Some(0));
        assert_eq!(
            p.stats().underruns,
            0,
            "a finished utterance is not an underrun"
        );
        // The next utterance buffers to the target depth again.
        p.push(&frame(8));
        assert_eq!(tag(&mut p, ms(t0, 40)), Some(0));
    }

    #[test]
    fn bursts_are_queued_and_overflow_drops_the_newest() {
        let t0 = Instant::now();
        let mut p = pacer(1, 3);
        for t in 1..=5 {
            p.push(&frame(t));
        }
        let s = p.stats();
        assert_eq!((s.queued_frames, s.overrun_drops), (3, 2));
        assert_eq!(tag(&mut p, t0), Some(1), "what was queued plays in order");
        assert_eq!(tag(&mut p, ms(t0, 20)), Some(2));
        assert_eq!(tag(&mut p, ms(t0, 40)), Some(3));
        assert_eq!(
            tag(&mut p, ms(t0, 60)),
            Some(0),
            "frames 4 and 5 were dropped"
        );
    }

    /// A provider sending 200 ms of audio every 20 ms (10× real time) for a minute: the
    /// queue never passes its bound, the caller hears the first frames without a gap,
    /// and every frame is accounted for as played, queued or dropped.
    #[test]
    fn a_flood_ten_times_faster_than_real_time_stays_bounded() {
        let t0 = Instant::now();
        let max = 1_500; // 30 s, as for WebRTC
        let mut p = pacer(3, max);
        let mut next_tag: i16 = 1;
        let mut heard = Vec::new();
        let mut peak = 0;
        for tick in 0..3_000u64 {
            for _ in 0..10 {
                p.push(&frame(next_tag));
                next_tag = next_tag.wrapping_add(1).max(1);
            }
            peak = peak.max(p.queued_frames());
            while let Some(t) = tag(&mut p, ms(t0, tick * 20)) {
                heard.push(t);
            }
        }
        let s = p.stats();
        assert!(peak <= max, "queue peaked at {peak} frames");
        assert!(s.queued_frames >= max / 2, "still full of the flood");
        assert_eq!(
            s.frames_played + s.queued_frames as u64 + s.overrun_drops,
            30_000
        );
        assert_eq!(s.frames_played, 3_000 - s.silence_frames);
        let played: Vec<i16> = heard.iter().copied().filter(|&t| t != 0).collect();
        assert_eq!(
            played[..1_500],
            (1..=1_500).collect::<Vec<i16>>()[..],
            "the first 30 s play in order, no skipping"
        );
        let jumps = played
            .windows(2)
            .filter(|w| w[1] != w[0].wrapping_add(1))
            .count();
        assert!(
            jumps <= 4,
            "{jumps} jumps: the rest plays in long coherent stretches"
        );
    }

    #[test]
    fn late_polls_catch_up_then_resync_when_far_behind() {
        let t0 = Instant::now();
        let mut p = pacer(1, 100);
        for t in 1..=20 {
            p.push(&frame(t));
        }
        assert_eq!(tag(&mut p, t0), Some(1));
        // The driver wakes 50 ms late: frames for 20 and 40 are overdue, 60 is not yet.
        assert_eq!(tag(&mut p, ms(t0, 70)), Some(2));
        assert_eq!(tag(&mut p, ms(t0, 70)), Some(3));
        assert_eq!(tag(&mut p, ms(t0, 70)), Some(4), "deadline 60 is due at 70");
        assert_eq!(tag(&mut p, ms(t0, 70)), None);
        assert_eq!(
            p.stats().late_frames,
            2,
            "50 and 30 ms late count; 10 ms late does not"
        );
        // Now stall 300 ms: re-anchor instead of bursting 15 frames.
        assert_eq!(tag(&mut p, ms(t0, 380)), Some(5));
        assert_eq!(p.next_deadline(), Some(ms(t0, 400)));
        assert_eq!(tag(&mut p, ms(t0, 380)), None);
        assert_eq!(p.stats().resyncs, 1);
    }

    #[test]
    fn flush_drops_queue_and_partial_but_keeps_the_clock() {
        let t0 = Instant::now();
        let mut p = pacer(1, 100);
        for t in 1..=4 {
            p.push(&frame(t));
        }
        p.push(&[9; 50]);
        assert_eq!(tag(&mut p, t0), Some(1));
        p.flush();
        assert_eq!(p.stats().flushed_frames, 3);
        assert_eq!(tag(&mut p, ms(t0, 20)), Some(0), "silence after barge-in");
        assert_eq!(p.next_deadline(), Some(ms(t0, 40)));
        p.push(&frame(5));
        assert_eq!(
            tag(&mut p, ms(t0, 40)),
            Some(5),
            "the stale partial frame is gone"
        );
        assert_eq!(p.stats().underruns, 0, "a flush is not an underrun");
    }

    #[test]
    fn degenerate_config_is_clamped_not_a_panic() {
        let t0 = Instant::now();
        let mut p = pacer(0, 0);
        p.push(&frame(1));
        p.push(&frame(2));
        assert_eq!(p.stats().overrun_drops, 1);
        assert_eq!(tag(&mut p, t0), Some(1));
        assert_eq!(PacerConfig::webrtc().sample_rate_hz, 48_000);
        assert_eq!(Pacer::new(PacerConfig::webrtc()).frame_samples(), 960);
    }
}
