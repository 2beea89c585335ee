//! The event writer's backlog: call events waiting for the database (review L10).
//!
//! While the database is slow or down, events keep arriving from every call. They wait
//! here, oldest first, in three tiers that together stay a FIFO:
//!
//! 1. `front`, in memory, up to `memory_events`;
//! 2. then a journal file under the data directory (JSON lines), up to `journal_max_bytes`;
//! 3. then `back`, in memory again, only when the journal cannot take more (disk full,
//!    cap reached, no journal configured).
//!
//! New events go to the first tier that has room and keeps the order (nothing goes to the
//! front while older events sit in the journal). When neither the front nor the journal
//! has room, non-billable events (transcripts, failovers, warnings...) still fill `back`
//! up to `memory_events`, and past that they are **dropped and counted**; billable events
//! (answered, usage, ended: what prices a call) are **never dropped**: they stay in memory
//! over the bound, counted. That is the one way memory can outgrow the bound, and it grows
//! by a few events per call, not by audio or transcript volume.
//!
//! Events are applied idempotently (UNIQUE(call_id, seq)), so a journal replayed after a
//! crash, or an event written twice, changes nothing. A journal left by a previous run is
//! picked up at start.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::PathBuf;
use vocalized_shared::events::{CallEvent, CallEventKind};
use vocalized_shared::ids::CallId;

/// One queued event of one call.
pub type Entry = (CallId, CallEvent);

/// Events that price a call or close its record: never dropped.
pub fn is_billable(kind: &CallEventKind) -> bool {
    matches!(
        kind,
        CallEventKind::Answered | CallEventKind::Usage { .. } | CallEventKind::Ended(_)
    )
}

/// How much the backlog may hold, and where it spills.
#[derive(Clone, Debug)]
pub struct BacklogLimits {
    /// Events held in memory before newer ones go to the journal.
    pub memory_events: usize,
    /// The journal file; `None` keeps everything in memory (tests, no data directory).
    pub journal_path: Option<PathBuf>,
    /// Journal size past which it takes no more events.
    pub journal_max_bytes: u64,
}

impl Default for BacklogLimits {
    /// 20 000 events in memory (a few MB: an event is a few hundred bytes) and 256 MiB
    /// of journal: an hour of 100 calls' transcripts.
    fn default() -> Self {
        Self {
            memory_events: 20_000,
            journal_path: None,
            journal_max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// What the backlog did, for metrics and tests. Counters only grow, except the gauges
/// `queued_*` and `journal_bytes`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BacklogStats {
    /// Events waiting in memory right now.
    pub queued_in_memory: usize,
    /// Events waiting in the journal right now (written, not yet read back).
    pub queued_in_journal: u64,
    /// Size of the journal file right now.
    pub journal_bytes: u64,
    /// Events ever written to the journal.
    pub journaled: u64,
    /// Journal appends that failed (disk full, I/O error).
    pub journal_errors: u64,
    /// Journal lines that could not be read back (a torn write at a crash); skipped.
    pub journal_corrupt: u64,
    /// Non-billable events dropped because memory and journal were full.
    pub dropped_non_billable: u64,
    /// Billable events kept in memory past `memory_events` (nothing else could hold them).
    pub billable_over_bound: u64,
    /// The most events ever held in memory at once.
    pub peak_in_memory: usize,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Line {
    call_id: CallId,
    event: CallEvent,
}

struct Journal {
    path: PathBuf,
    /// Opened on first use (append mode).
    file: Option<File>,
    /// Bytes written; the file's length.
    len: u64,
    /// Bytes already read back into memory.
    read: u64,
    /// Lines written but not yet read back.
    unread_lines: u64,
}

impl Journal {
    fn open(path: PathBuf) -> Self {
        // A journal left by an earlier run (the database was down when it stopped) is
        // replayed from its start: applying an event twice changes nothing.
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let unread_lines = if len > 0 {
            File::open(&path)
                .map(|f| BufReader::new(f).lines().count() as u64)
                .unwrap_or(0)
        } else {
            0
        };
        if len > 0 {
            tracing::warn!(path = %path.display(), events = unread_lines,
                "replaying call events journaled by an earlier run");
        }
        Self {
            path,
            file: None,
            len,
            read: 0,
            unread_lines,
        }
    }

    fn has_unread(&self) -> bool {
        self.read < self.len
    }

    fn append(&mut self, entries: &[&Entry], max_bytes: u64) -> std::io::Result<()> {
        let mut text = String::new();
        for (call_id, event) in entries {
            let line = Line {
                call_id: call_id.clone(),
                event: event.clone(),
            };
            text.push_str(&serde_json::to_string(&line).map_err(std::io::Error::other)?);
            text.push('\n');
        }
        if self.len + text.len() as u64 > max_bytes {
            return Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "event journal is at its size cap",
            ));
        }
        if self.file.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            self.file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        let file = self.file.as_mut().expect("opened above");
        if let Err(e) = file.write_all(text.as_bytes()) {
            // A partial line (ENOSPC mid-write) would corrupt the next one: cut it off.
            let _ = file.set_len(self.len);
            return Err(e);
        }
        self.len += text.len() as u64;
        self.unread_lines += entries.len() as u64;
        Ok(())
    }

    /// Reads up to `max` events from where the last read stopped; truncates the file once
    /// everything written has been read back. Returns how many lines were unreadable.
    fn read_into(&mut self, out: &mut VecDeque<Entry>, max: usize) -> std::io::Result<u64> {
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(self.read))?;
        let mut reader = BufReader::new(file);
        let mut corrupt = 0;
        let mut line = String::new();
        let mut taken = 0;
        while taken < max && self.read < self.len {
            line.clear();
            let n = reader.read_line(&mut line)?;
            if n == 0 {
                // Shorter than we thought (truncated from outside): start over.
                self.read = self.len;
                break;
            }
            self.read += n as u64;
            self.unread_lines = self.unread_lines.saturating_sub(1);
            match serde_json::from_str::<Line>(line.trim_end()) {
                Ok(l) => {
                    out.push_back((l.call_id, l.event));
                    taken += 1;
                }
                Err(_) => corrupt += 1,
            }
        }
        if self.read >= self.len {
            // Everything is back in memory: start the file afresh.
            self.file = None;
            File::create(&self.path)?;
            self.len = 0;
            self.read = 0;
            self.unread_lines = 0;
        }
        Ok(corrupt)
    }
}

/// Events waiting for the database; see the module notes.
pub struct Backlog {
    limits: BacklogLimits,
    front: VecDeque<Entry>,
    journal: Option<Journal>,
    back: VecDeque<Entry>,
    stats: BacklogStats,
}

impl Backlog {
    pub fn new(limits: BacklogLimits) -> Self {
        let limits = BacklogLimits {
            memory_events: limits.memory_events.max(1),
            ..limits
        };
        let journal = limits.journal_path.clone().map(Journal::open);
        Self {
            front: VecDeque::new(),
            back: VecDeque::new(),
            journal,
            limits,
            stats: BacklogStats::default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.front.is_empty()
            && self.back.is_empty()
            && !self.journal.as_ref().is_some_and(Journal::has_unread)
    }

    /// Whether events can be left on disk (a journal is configured).
    pub fn has_journal(&self) -> bool {
        self.journal.is_some()
    }

    pub fn in_memory(&self) -> usize {
        self.front.len() + self.back.len()
    }

    pub fn stats(&self) -> BacklogStats {
        let (queued_in_journal, journal_bytes) = self
            .journal
            .as_ref()
            .map_or((0, 0), |j| (j.unread_lines, j.len));
        BacklogStats {
            queued_in_memory: self.in_memory(),
            queued_in_journal,
            journal_bytes,
            ..self.stats
        }
    }

    /// Queues events, oldest first.
    pub fn push_all(&mut self, entries: impl IntoIterator<Item = Entry>) {
        let mut spill: Vec<Entry> = Vec::new();
        for entry in entries {
            let journal_busy = self.journal.as_ref().is_some_and(Journal::has_unread);
            if spill.is_empty()
                && !journal_busy
                && self.back.is_empty()
                && self.front.len() < self.limits.memory_events
            {
                self.front.push_back(entry);
            } else {
                spill.push(entry);
            }
        }
        if !spill.is_empty() {
            self.spill(spill);
        }
        self.stats.peak_in_memory = self.stats.peak_in_memory.max(self.in_memory());
    }

    /// Puts a batch that could not be written back at the head, in its order.
    pub fn push_front(&mut self, batch: Vec<Entry>) {
        for entry in batch.into_iter().rev() {
            self.front.push_front(entry);
        }
        self.stats.peak_in_memory = self.stats.peak_in_memory.max(self.in_memory());
    }

    /// Events that do not fit in the front: to the journal while it takes them (and
    /// nothing newer is already in `back`), the rest to `back`.
    fn spill(&mut self, entries: Vec<Entry>) {
        let mut rest = entries.into_iter();
        if self.back.is_empty()
            && let Some(journal) = self.journal.as_mut()
        {
            for entry in rest.by_ref() {
                match journal.append(&[&entry], self.limits.journal_max_bytes) {
                    Ok(()) => self.stats.journaled += 1,
                    Err(e) => {
                        self.stats.journal_errors += 1;
                        tracing::error!(error = %e,
                            "cannot journal call events; holding them in memory");
                        self.to_back(entry);
                        break;
                    }
                }
            }
        }
        for entry in rest {
            self.to_back(entry);
        }
    }

    /// Keeps an event in memory after the journal: billable ones always, others while
    /// `back` is under the bound.
    fn to_back(&mut self, entry: Entry) {
        if is_billable(&entry.1.kind) {
            if self.back.len() >= self.limits.memory_events {
                self.stats.billable_over_bound += 1;
            }
            self.back.push_back(entry);
        } else if self.back.len() < self.limits.memory_events {
            self.back.push_back(entry);
        } else {
            self.stats.dropped_non_billable += 1;
            tracing::warn!(call_id = %entry.0, seq = entry.1.seq,
                "call event queue full: non-billable event dropped");
        }
    }

    /// Takes up to `max` of the oldest events for one write.
    pub fn take(&mut self, max: usize) -> Vec<Entry> {
        if self.front.is_empty() {
            self.refill();
        }
        let n = self.front.len().min(max);
        self.front.drain(..n).collect()
    }

    /// Moves the next tier into the empty front.
    fn refill(&mut self) {
        if let Some(journal) = self.journal.as_mut()
            && journal.has_unread()
        {
            match journal.read_into(&mut self.front, self.limits.memory_events) {
                Ok(corrupt) => self.stats.journal_corrupt += corrupt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the call event journal back");
                }
            }
            if !self.front.is_empty() || journal.has_unread() {
                return;
            }
        }
        std::mem::swap(&mut self.front, &mut self.back);
    }

    /// Writes everything still in memory to the journal (shutdown while the database is
    /// down), so the next run applies it. What the journal cannot take is lost, and logged.
    pub fn spill_all_to_journal(&mut self) -> usize {
        let Some(journal) = self.journal.as_mut() else {
            return self.in_memory();
        };
        // The journal's unread part sits between front and back: rewrite in order by
        // reading it back first (small in practice: this only runs at shutdown).
        let mut all: VecDeque<Entry> = std::mem::take(&mut self.front);
        while journal.has_unread() {
            if journal.read_into(&mut all, usize::MAX).is_err() {
                break;
            }
        }
        all.extend(std::mem::take(&mut self.back));
        let refs: Vec<&Entry> = all.iter().collect();
        match journal.append(&refs, u64::MAX) {
            Ok(()) => 0,
            Err(e) => {
                tracing::error!(error = %e, events = all.len(), "call events lost at shutdown");
                all.len()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vocalized_shared::events::{EndReason, Role};

    fn transcript(seq: u64) -> Entry {
        (
            CallId::from("call_1"),
            CallEvent {
                seq,
                at_ms: seq * 10,
                kind: CallEventKind::Transcript {
                    role: Role::User,
                    text: format!("turn {seq}"),
                    start_ms: 0,
                    end_ms: 1,
                    confidence: None,
                    truncated: false,
                },
            },
        )
    }

    fn ended(seq: u64) -> Entry {
        (
            CallId::from("call_1"),
            CallEvent {
                seq,
                at_ms: 0,
                kind: CallEventKind::Ended(EndReason::CallerHangup),
            },
        )
    }

    fn drain(b: &mut Backlog) -> Vec<u64> {
        let mut seqs = Vec::new();
        while !b.is_empty() {
            seqs.extend(b.take(3).into_iter().map(|(_, e)| e.seq));
        }
        seqs
    }

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("vz-backlog-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn memory_then_journal_then_back_stays_in_order() {
        let d = dir();
        let limits = BacklogLimits {
            memory_events: 4,
            journal_path: Some(d.join("events.jsonl")),
            journal_max_bytes: 100_000,
        };
        let mut b = Backlog::new(limits.clone());
        b.push_all((1..=20).map(transcript));
        let s = b.stats();
        assert_eq!((s.queued_in_memory, s.queued_in_journal), (4, 16));
        assert_eq!(drain(&mut b), (1..=20).collect::<Vec<_>>());
        assert_eq!(
            b.stats().journal_bytes,
            0,
            "journal truncated once read back"
        );

        // A journal that fills up: the rest waits in memory behind it, still in order,
        // and past the memory bound non-billable events are dropped.
        let mut b = Backlog::new(BacklogLimits {
            journal_max_bytes: 1_000,
            ..limits
        });
        b.push_all((1..=20).map(transcript));
        let s = b.stats();
        assert!(s.journal_bytes <= 1_000 && s.queued_in_journal > 0, "{s:?}");
        assert_eq!(s.queued_in_memory, 8, "4 in front, 4 behind the journal");
        let seqs = drain(&mut b);
        assert_eq!(seqs.len() as u64, 20 - s.dropped_non_billable);
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_disk_under_the_journal_keeps_billable_events_in_memory() {
        // /dev/full fails every write with ENOSPC.
        let mut b = Backlog::new(BacklogLimits {
            memory_events: 2,
            journal_path: Some(PathBuf::from("/dev/full")),
            journal_max_bytes: 1 << 20,
        });
        b.push_all((1..=6).map(transcript));
        b.push_all([ended(7)]);
        let s = b.stats();
        assert!(s.journal_errors >= 1, "{s:?}");
        assert_eq!(s.dropped_non_billable, 2, "{s:?}");
        assert_eq!(drain(&mut b), vec![1, 2, 3, 4, 7]);
    }

    #[test]
    fn without_room_non_billable_events_drop_and_billable_ones_stay() {
        let mut b = Backlog::new(BacklogLimits {
            memory_events: 2,
            journal_path: None,
            journal_max_bytes: 0,
        });
        b.push_all((1..=10).map(transcript));
        b.push_all([ended(11)]);
        let s = b.stats();
        assert_eq!(s.dropped_non_billable, 6, "2 in front, 2 in back");
        assert_eq!(s.queued_in_memory, 5);
        assert_eq!(s.billable_over_bound, 1);
        assert_eq!(drain(&mut b), vec![1, 2, 3, 4, 11]);
    }

    #[test]
    fn a_batch_that_failed_goes_back_to_the_head() {
        let mut b = Backlog::new(BacklogLimits {
            memory_events: 10,
            ..BacklogLimits::default()
        });
        b.push_all((1..=5).map(transcript));
        let batch = b.take(3);
        b.push_all([transcript(6)]);
        b.push_front(batch);
        assert_eq!(drain(&mut b), vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn a_journal_left_by_an_earlier_run_is_replayed_and_a_torn_line_skipped() {
        let d = dir();
        let path = d.join("events.jsonl");
        let limits = BacklogLimits {
            memory_events: 1,
            journal_path: Some(path.clone()),
            journal_max_bytes: 1 << 20,
        };
        let mut first = Backlog::new(limits.clone());
        first.push_all((1..=3).map(transcript));
        first.push_all([ended(4)]);
        assert_eq!(first.spill_all_to_journal(), 0);
        drop(first);
        // A crash mid-append leaves half a line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"call_id\":\"call_1\",\"ev").unwrap();
        drop(f);
        let mut second = Backlog::new(limits);
        assert!(!second.is_empty());
        assert_eq!(drain(&mut second), vec![1, 2, 3, 4], "in their order");
        assert_eq!(second.stats().journal_corrupt, 1);
        std::fs::remove_dir_all(d).unwrap();
    }
}
