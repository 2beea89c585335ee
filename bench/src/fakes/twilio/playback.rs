//! Twilio's outbound playback buffer, simulated (protocols.md §1.2–1.3): audio the gateway
//! sends queues up and plays at 8 bytes/ms; a mark is echoed when everything queued before
//! it has played; `clear` drops what has not played and echoes every pending mark at once.
//!
//! Sans-IO: every call takes `now`, so tests can script the clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Audio that actually reached the caller's ear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayedChunk {
    pub started_at: Instant,
    pub bytes: Vec<u8>,
    /// A `clear` cut this chunk short.
    pub cut_by_clear: bool,
}

#[derive(Debug)]
struct Segment {
    start: Instant,
    bytes: Vec<u8>,
}

impl Segment {
    fn end(&self) -> Instant {
        self.start + play_time(self.bytes.len())
    }
}

/// 8 kHz µ-law: 125 µs per byte.
fn play_time(bytes: usize) -> Duration {
    Duration::from_micros(bytes as u64 * 125)
}

#[derive(Debug, Default)]
pub struct Playback {
    queued: VecDeque<Segment>,
    /// Pending marks with the instant their audio will have played.
    marks: VecDeque<(Instant, String)>,
    played: Vec<PlayedChunk>,
}

impl Playback {
    /// When the queue will have drained (`now` if it is empty).
    fn tail(&self, now: Instant) -> Instant {
        self.queued.back().map_or(now, |s| s.end().max(now))
    }

    pub fn queue_audio(&mut self, bytes: Vec<u8>, now: Instant) {
        self.advance(now);
        if bytes.is_empty() {
            return;
        }
        let start = self.tail(now);
        self.queued.push_back(Segment { start, bytes });
    }

    pub fn queue_mark(&mut self, name: String, now: Instant) {
        self.advance(now);
        let due = self.tail(now);
        self.marks.push_back((due, name));
    }

    /// Drops unplayed audio; returns every pending mark, to be echoed now.
    pub fn clear(&mut self, now: Instant) -> Vec<String> {
        self.advance(now);
        if let Some(playing) = self.queued.pop_front()
            && playing.start < now
        {
            let heard = ((now - playing.start).as_micros() / 125) as usize;
            let mut bytes = playing.bytes;
            bytes.truncate(heard);
            self.played.push(PlayedChunk {
                started_at: playing.start,
                bytes,
                cut_by_clear: true,
            });
        }
        self.queued.clear();
        self.marks.drain(..).map(|(_, name)| name).collect()
    }

    /// The next mark whose audio has finished playing by `now`.
    pub fn poll_mark(&mut self, now: Instant) -> Option<String> {
        self.advance(now);
        if self.marks.front().is_some_and(|(due, _)| *due <= now) {
            return self.marks.pop_front().map(|(_, name)| name);
        }
        None
    }

    /// When the next mark falls due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.marks.front().map(|(due, _)| *due)
    }

    /// Ms of audio still queued or playing at `now`.
    pub fn queued_ms(&self, now: Instant) -> u64 {
        (self.tail(now) - now).as_millis() as u64
    }

    /// Moves audio that has finished playing by `now` into the played log.
    fn advance(&mut self, now: Instant) {
        while self.queued.front().is_some_and(|s| s.end() <= now) {
            if let Some(done) = self.queued.pop_front() {
                self.played.push(PlayedChunk {
                    started_at: done.start,
                    bytes: done.bytes,
                    cut_by_clear: false,
                });
            }
        }
    }

    /// The call ended at `now`: the part of the playing segment heard so far counts as
    /// played, the rest is lost (the caller hung up). Returns the played log.
    pub fn finish(mut self, now: Instant) -> Vec<PlayedChunk> {
        self.advance(now);
        if let Some(playing) = self.queued.pop_front()
            && playing.start < now
        {
            let heard = ((now - playing.start).as_micros() / 125) as usize;
            let mut bytes = playing.bytes;
            bytes.truncate(heard);
            self.played.push(PlayedChunk {
                started_at: playing.start,
                bytes,
                cut_by_clear: false,
            });
        }
        self.played
    }

    /// Audio played so far (whole chunks only; see [`Playback::finish`]).
    pub fn played(&self) -> &[PlayedChunk] {
        &self.played
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_mark_is_echoed_when_the_audio_before_it_has_played() {
        let t0 = Instant::now();
        let mut p = Playback::default();
        p.queue_audio(vec![1; 800], t0); // 100 ms
        p.queue_mark("a".into(), t0);
        p.queue_audio(vec![2; 1600], t0 + ms(10)); // 200 ms more, queued behind
        p.queue_mark("b".into(), t0 + ms(10));
        assert_eq!(p.poll_timeout(), Some(t0 + ms(100)));
        assert_eq!(p.poll_mark(t0 + ms(99)), None);
        assert_eq!(p.poll_mark(t0 + ms(100)).as_deref(), Some("a"));
        assert_eq!(p.poll_mark(t0 + ms(299)), None);
        assert_eq!(p.poll_mark(t0 + ms(300)).as_deref(), Some("b"));
        assert_eq!(p.played().len(), 2);
        assert_eq!(p.queued_ms(t0 + ms(300)), 0);
    }

    #[test]
    fn a_mark_on_an_empty_buffer_is_echoed_at_once_and_gaps_do_not_count() {
        let t0 = Instant::now();
        let mut p = Playback::default();
        p.queue_audio(vec![1; 80], t0); // 10 ms, long done by t0+50
        p.queue_mark("idle".into(), t0 + ms(50));
        assert_eq!(p.poll_mark(t0 + ms(50)).as_deref(), Some("idle"));
        // Audio after a gap starts when it arrives, not when the old audio ended.
        p.queue_audio(vec![1; 160], t0 + ms(60));
        p.queue_mark("x".into(), t0 + ms(60));
        assert_eq!(p.poll_timeout(), Some(t0 + ms(80)));
    }

    #[test]
    fn clear_drops_unplayed_audio_and_echoes_pending_marks() {
        let t0 = Instant::now();
        let mut p = Playback::default();
        p.queue_audio(vec![7; 8000], t0); // 1 s
        p.queue_mark("m1".into(), t0);
        p.queue_audio(vec![8; 800], t0);
        p.queue_mark("m2".into(), t0);
        assert_eq!(
            p.clear(t0 + ms(250)),
            vec!["m1".to_string(), "m2".to_string()]
        );
        assert_eq!(p.poll_timeout(), None);
        let played = p.finish(t0 + ms(2000));
        assert_eq!(played.len(), 1);
        assert_eq!(played[0].bytes.len(), 2000); // 250 ms heard
        assert!(played[0].cut_by_clear);
    }

    #[test]
    fn finish_counts_the_part_heard_before_hang_up() {
        let t0 = Instant::now();
        let mut p = Playback::default();
        p.queue_audio(vec![1; 1600], t0);
        let played = p.finish(t0 + ms(50));
        assert_eq!(played[0].bytes.len(), 400);
    }
}
