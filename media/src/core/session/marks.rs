//! How much agent audio the caller has actually heard, per provider item.
//!
//! Providers stream audio faster than real time and Twilio buffers it, so "sent" is not
//! "heard" (protocols.md §2.5–2.6). Every chunk sent to a Twilio caller is followed by a
//! mark named `{item_id}:{seq}`; Twilio echoes it when the chunk has played. `seq` is
//! unique per call (not per item), so a mark name is never reused and an echo can be
//! classified on its own: heard, dropped by an earlier `clear` (stale), or never sent.
//!
//! WebRTC callers have no marks: the driver's pacer plays chunks in real time, so the
//! ledger runs a playout clock instead and a chunk counts as heard once its playout time
//! has passed. Both modes interpolate inside the chunk that is playing, so a barge-in
//! truncates at the millisecond, not at the last chunk boundary.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A provider item (one agent turn) as the session numbers it.
pub(crate) type ItemKey = u64;

/// Playout of one provider item on the caller leg.
#[derive(Debug)]
pub(crate) struct ItemPlayout {
    pub key: ItemKey,
    /// The provider's id, e.g. OpenAI's `item_...`.
    pub id: String,
    /// Caller-leg samples sent (µ-law: one byte per sample).
    pub sent_samples: u64,
    /// Caller-leg samples acknowledged as played.
    pub heard_samples: u64,
    /// Provider-format bytes received: `Truncate` must not exceed them.
    pub provider_bytes: u64,
    pub first_sent_at: Instant,
    /// The caller barged in; later audio for this item is dropped.
    pub truncated: bool,
    /// A final assistant transcript, held until the item has played out (or was cut off)
    /// so its end time and truncation reflect what the caller heard.
    pub held_transcript: Option<String>,
}

#[derive(Debug)]
struct Chunk {
    seq: u64,
    item: ItemKey,
    samples: u64,
    sent_at: Instant,
    /// WebRTC only: when the pacer will have played this chunk.
    plays_until: Option<Instant>,
}

/// What a Twilio mark echo meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MarkOutcome {
    /// Audio up to and including this mark was played.
    Heard,
    /// The mark's audio was dropped by our `clear`: Twilio echoes those too. Not heard.
    Stale,
    /// Not a mark we sent, or one already acknowledged.
    Unknown,
}

/// The playing item was cut off by a barge-in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Truncation {
    pub item: ItemKey,
    pub heard_ms: u64,
}

/// How chunks become "heard".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AckMode {
    /// Twilio: by mark echoes.
    Marks,
    /// WebRTC: by a real-time playout clock.
    PlayoutClock,
}

/// Items kept once they have played out; enough for late transcripts to find theirs.
const KEPT_ITEMS: usize = 16;
/// Cleared mark ranges remembered, to tell stale echoes from unknown ones.
const KEPT_CLEARED_RANGES: usize = 8;

pub(crate) struct PlayoutLedger {
    mode: AckMode,
    samples_per_ms: u64,
    items: Vec<ItemPlayout>,
    next_item_key: ItemKey,
    /// Sent, not yet heard, in send order.
    chunks: VecDeque<Chunk>,
    last_seq: u64,
    /// Inclusive ranges of seqs a `clear` dropped.
    cleared: VecDeque<(u64, u64)>,
    /// When the chunk before the front one finished playing.
    last_played_at: Option<Instant>,
    /// WebRTC: when everything queued so far will have played.
    playout_end: Option<Instant>,
    /// When agent audio last stopped playing; `None` while playing or before any audio.
    idle_since: Option<Instant>,
    held_transcripts: usize,
}

impl PlayoutLedger {
    pub fn new(mode: AckMode, caller_sample_rate_hz: u32) -> Self {
        Self {
            mode,
            samples_per_ms: u64::from(caller_sample_rate_hz / 1000).max(1),
            items: Vec::with_capacity(KEPT_ITEMS * 2),
            next_item_key: 1,
            chunks: VecDeque::with_capacity(256),
            last_seq: 0,
            cleared: VecDeque::with_capacity(KEPT_CLEARED_RANGES + 1),
            last_played_at: None,
            playout_end: None,
            idle_since: None,
            held_transcripts: 0,
        }
    }

    pub fn samples_per_ms(&self) -> u64 {
        self.samples_per_ms
    }

    /// The item a provider audio delta belongs to, created on its first delta.
    /// `None` when the caller already barged in on it: its remaining audio is stale.
    pub fn item_for_audio(&mut self, id: &str, now: Instant) -> Option<ItemKey> {
        if let Some(item) = self.items.iter().rev().find(|i| i.id == id) {
            return (!item.truncated).then_some(item.key);
        }
        self.prune();
        let key = self.next_item_key;
        self.next_item_key += 1;
        self.items.push(ItemPlayout {
            key,
            id: id.to_owned(),
            sent_samples: 0,
            heard_samples: 0,
            provider_bytes: 0,
            first_sent_at: now,
            truncated: false,
            held_transcript: None,
        });
        Some(key)
    }

    /// The key the next new item will get: items below it already exist.
    pub fn next_item_key(&self) -> ItemKey {
        self.next_item_key
    }

    pub fn item(&self, key: ItemKey) -> Option<&ItemPlayout> {
        self.items.iter().find(|i| i.key == key)
    }

    pub fn item_mut(&mut self, key: ItemKey) -> Option<&mut ItemPlayout> {
        self.items.iter_mut().find(|i| i.key == key)
    }

    pub fn find_item(&self, id: &str) -> Option<ItemKey> {
        self.items.iter().rev().find(|i| i.id == id).map(|i| i.key)
    }

    /// The most recent item, for transcripts that name none.
    pub fn latest_item(&self) -> Option<ItemKey> {
        self.items.last().map(|i| i.key)
    }

    /// Records a chunk sent to the caller; returns the seq to name its mark with.
    pub fn record_sent(
        &mut self,
        item: ItemKey,
        samples: u64,
        provider_bytes: u64,
        now: Instant,
    ) -> u64 {
        self.advance(now);
        if let Some(it) = self.item_mut(item) {
            if it.sent_samples == 0 {
                it.first_sent_at = now;
            }
            it.sent_samples += samples;
            it.provider_bytes += provider_bytes;
        }
        self.last_seq += 1;
        let plays_until = match self.mode {
            AckMode::Marks => None,
            AckMode::PlayoutClock => {
                let starts = self.playout_end.map_or(now, |end| end.max(now));
                let end = starts + Duration::from_micros(samples * 1000 / self.samples_per_ms);
                self.playout_end = Some(end);
                Some(end)
            }
        };
        if self.chunks.is_empty() {
            self.last_played_at = Some(now);
        }
        self.chunks.push_back(Chunk {
            seq: self.last_seq,
            item,
            samples,
            sent_at: now,
            plays_until,
        });
        self.idle_since = None;
        self.last_seq
    }

    /// Handles a Twilio mark echo named `{item_id}:{seq}`.
    pub fn handle_mark(&mut self, name: &str, now: Instant) -> MarkOutcome {
        let Some((id, seq)) = name.rsplit_once(':') else {
            return MarkOutcome::Unknown;
        };
        let Ok(seq) = seq.parse::<u64>() else {
            return MarkOutcome::Unknown;
        };
        if self
            .cleared
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&seq))
        {
            return MarkOutcome::Stale;
        }
        let Some(pos) = self.chunks.iter().position(|c| c.seq == seq) else {
            return MarkOutcome::Unknown;
        };
        let item_matches = self.item(self.chunks[pos].item).is_some_and(|i| i.id == id);
        if !item_matches {
            return MarkOutcome::Unknown;
        }
        // Twilio plays in order: this echo means every earlier chunk has played too.
        for _ in 0..=pos {
            self.pop_heard(now);
        }
        MarkOutcome::Heard
    }

    /// WebRTC: credits chunks whose playout time has passed. A no-op for Twilio.
    pub fn advance(&mut self, now: Instant) {
        if self.mode != AckMode::PlayoutClock {
            return;
        }
        while let Some(end) = self.chunks.front().and_then(|c| c.plays_until) {
            if end > now {
                break;
            }
            self.pop_heard(end);
        }
    }

    fn pop_heard(&mut self, played_at: Instant) {
        let Some(chunk) = self.chunks.pop_front() else {
            return;
        };
        if let Some(item) = self.item_mut(chunk.item) {
            item.heard_samples += chunk.samples;
        }
        self.last_played_at = Some(played_at);
        if self.chunks.is_empty() {
            self.idle_since = Some(played_at);
            self.playout_end = None;
        }
    }

    /// True while sent agent audio has not finished playing.
    pub fn is_playing(&self) -> bool {
        !self.chunks.is_empty()
    }

    /// WebRTC: when everything sent will have played. `None` for Twilio or when idle.
    pub fn playout_end(&self) -> Option<Instant> {
        self.playout_end
    }

    pub fn idle_since(&self) -> Option<Instant> {
        self.idle_since
    }

    /// Barge-in: everything sent but not played is dropped (the caller leg is cleared).
    /// Returns the item that was playing and how much of it was heard, or `None` when
    /// nothing was playing.
    pub fn barge_in(&mut self, now: Instant) -> Option<Truncation> {
        self.advance(now);
        let front = self.chunks.front()?;
        let (item_key, front_samples) = (front.item, front.samples);
        // The front chunk started playing when the previous one ended, or when it was
        // sent if the caller's buffer had run dry.
        let started = match front.plays_until {
            Some(end) => end - Duration::from_micros(front_samples * 1000 / self.samples_per_ms),
            None => self
                .last_played_at
                .map_or(front.sent_at, |t| t.max(front.sent_at)),
        };
        let elapsed_ms = now.saturating_duration_since(started).as_millis() as u64;
        let partial = (elapsed_ms * self.samples_per_ms).min(front_samples);

        let first_seq = front.seq;
        let last_seq = self.chunks.back().map_or(first_seq, |c| c.seq);
        if self.cleared.len() == KEPT_CLEARED_RANGES {
            self.cleared.pop_front();
        }
        self.cleared.push_back((first_seq, last_seq));
        for chunk in &self.chunks {
            let key = chunk.item;
            if let Some(item) = self.items.iter_mut().find(|i| i.key == key) {
                item.truncated = true;
            }
        }
        self.chunks.clear();
        self.playout_end = None;
        self.idle_since = Some(now);
        self.last_played_at = Some(now);

        let item = self.item_mut(item_key)?;
        item.heard_samples = (item.heard_samples + partial).min(item.sent_samples);
        let heard_ms = item.heard_samples / self.samples_per_ms;
        Some(Truncation {
            item: item_key,
            heard_ms,
        })
    }

    /// Holds a final assistant transcript until its item has played out.
    pub fn hold_transcript(&mut self, key: ItemKey, text: String) {
        if let Some(item) = self.item_mut(key)
            && item.held_transcript.replace(text).is_none()
        {
            self.held_transcripts += 1;
        }
    }

    /// Releases held transcripts whose items are no longer playing (or all, at call end).
    pub fn release_transcripts(&mut self, all: bool, mut emit: impl FnMut(&ItemPlayout, String)) {
        if self.held_transcripts == 0 {
            return;
        }
        for i in 0..self.items.len() {
            let key = self.items[i].key;
            let playing = self.chunks.iter().any(|c| c.item == key);
            if self.items[i].held_transcript.is_none() || (playing && !all) {
                continue;
            }
            if let Some(text) = self.items[i].held_transcript.take() {
                self.held_transcripts -= 1;
                emit(&self.items[i], text);
            }
        }
    }

    /// Forgets old items that nothing refers to any more.
    fn prune(&mut self) {
        if self.items.len() < KEPT_ITEMS * 2 {
            return;
        }
        let chunks = &self.chunks;
        let mut excess = self.items.len() - KEPT_ITEMS;
        self.items.retain(|item| {
            let keep = excess == 0
                || item.held_transcript.is_some()
                || chunks.iter().any(|c| c.item == item.key);
            if !keep {
                excess -= 1;
            }
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn acked_marks_count_as_heard_and_echoes_are_classified() {
        let t0 = Instant::now();
        let mut ledger = PlayoutLedger::new(AckMode::Marks, 8_000);
        let item = ledger.item_for_audio("item_a", t0).unwrap();
        let s1 = ledger.record_sent(item, 800, 800, t0);
        let s2 = ledger.record_sent(item, 800, 800, t0);
        assert_eq!(
            ledger.handle_mark(&format!("item_a:{s1}"), t0 + ms(100)),
            MarkOutcome::Heard
        );
        assert_eq!(ledger.item(item).unwrap().heard_samples, 800);
        // The same echo twice, a wrong item, and a seq never sent.
        assert_eq!(
            ledger.handle_mark(&format!("item_a:{s1}"), t0),
            MarkOutcome::Unknown
        );
        assert_eq!(
            ledger.handle_mark(&format!("item_b:{s2}"), t0),
            MarkOutcome::Unknown
        );
        assert_eq!(ledger.handle_mark("item_a:99", t0), MarkOutcome::Unknown);
        assert_eq!(ledger.handle_mark("garbage", t0), MarkOutcome::Unknown);
        assert!(ledger.is_playing());
    }

    #[test]
    fn barge_in_interpolates_inside_the_playing_chunk_and_makes_echoes_stale() {
        let t0 = Instant::now();
        let mut ledger = PlayoutLedger::new(AckMode::Marks, 8_000);
        let item = ledger.item_for_audio("item_a", t0).unwrap();
        let s1 = ledger.record_sent(item, 800, 800, t0); // 100 ms
        let s2 = ledger.record_sent(item, 800, 800, t0);
        assert_eq!(
            ledger.handle_mark(&format!("item_a:{s1}"), t0 + ms(100)),
            MarkOutcome::Heard
        );
        let cut = ledger.barge_in(t0 + ms(130)).unwrap();
        assert_eq!(cut.heard_ms, 130);
        assert!(!ledger.is_playing());
        assert_eq!(
            ledger.handle_mark(&format!("item_a:{s2}"), t0 + ms(140)),
            MarkOutcome::Stale
        );
        // Later audio for the cut item is refused.
        assert_eq!(ledger.item_for_audio("item_a", t0 + ms(150)), None);
        assert!(ledger.barge_in(t0 + ms(160)).is_none());
    }

    #[test]
    fn heard_is_clamped_to_what_was_sent() {
        let t0 = Instant::now();
        let mut ledger = PlayoutLedger::new(AckMode::Marks, 8_000);
        let item = ledger.item_for_audio("a", t0).unwrap();
        ledger.record_sent(item, 160, 160, t0);
        let cut = ledger.barge_in(t0 + ms(5_000)).unwrap();
        assert_eq!(cut.heard_ms, 20);
    }

    #[test]
    fn the_playout_clock_credits_chunks_in_real_time() {
        let t0 = Instant::now();
        let mut ledger = PlayoutLedger::new(AckMode::PlayoutClock, 48_000);
        let item = ledger.item_for_audio("a", t0).unwrap();
        // 300 ms of audio arrives at once; it plays until t0 + 300 ms.
        for _ in 0..3 {
            ledger.record_sent(item, 4_800, 9_600, t0);
        }
        ledger.advance(t0 + ms(150));
        assert_eq!(ledger.item(item).unwrap().heard_samples, 4_800);
        let cut = ledger.barge_in(t0 + ms(150)).unwrap();
        assert_eq!(cut.heard_ms, 150);

        let item2 = ledger.item_for_audio("b", t0 + ms(200)).unwrap();
        ledger.record_sent(item2, 960, 1_920, t0 + ms(200));
        ledger.advance(t0 + ms(221));
        assert!(!ledger.is_playing());
        assert_eq!(ledger.idle_since(), Some(t0 + ms(220)));
    }

    #[test]
    fn held_transcripts_wait_for_playout() {
        let t0 = Instant::now();
        let mut ledger = PlayoutLedger::new(AckMode::Marks, 8_000);
        let item = ledger.item_for_audio("a", t0).unwrap();
        let s1 = ledger.record_sent(item, 160, 160, t0);
        ledger.hold_transcript(item, "hello".into());
        let mut out = Vec::new();
        ledger.release_transcripts(false, |_, t| out.push(t));
        assert!(out.is_empty());
        ledger.handle_mark(&format!("a:{s1}"), t0 + ms(20));
        ledger.release_transcripts(false, |_, t| out.push(t));
        assert_eq!(out, ["hello"]);
    }

    #[test]
    fn old_items_are_pruned_but_playing_ones_kept() {
        let t0 = Instant::now();
        let mut ledger = PlayoutLedger::new(AckMode::Marks, 8_000);
        let first = ledger.item_for_audio("item0", t0).unwrap();
        ledger.record_sent(first, 160, 160, t0);
        for n in 1..100 {
            ledger.item_for_audio(&format!("item{n}"), t0).unwrap();
        }
        assert!(ledger.items.len() < KEPT_ITEMS * 2);
        assert!(ledger.item(first).is_some());
    }
}
