//! A small fuzz driver that runs on the stable toolchain: no coverage feedback, but
//! three sources of inputs that reach deep into parsers anyway.
//!
//! 1. The seed corpus (real messages from protocols.md and the bench fakes), each once.
//! 2. Structured mutations of seeds: byte flips, truncations, splices, dictionary tokens
//!    and, for JSON seeds, edits of one value or key in the parsed tree (a field's value
//!    replaced by one of another type, a huge number, a long or odd string, a key removed
//!    or added), which keep the input valid JSON so it gets past the tokenizer.
//! 3. Generated inputs: random bytes, and a target's own generator when it has one.
//!
//! Runs are deterministic for a seed. A panicking input is written to a file (and its
//! path printed) before the panic goes on, so it can be replayed with
//! `VOCALIZED_FUZZ_REPLAY=<file>` and kept as a regression test.
//!
//! Environment:
//! - `VOCALIZED_FUZZ_ITERS`: inputs per target (each test has a small default for CI).
//! - `VOCALIZED_FUZZ_SECS`: stop a target after this many seconds even if the count is
//!   not reached (for long runs on a shared machine).
//! - `VOCALIZED_FUZZ_SEED`: the PRNG seed (default: fixed per target, so CI is repeatable).
//! - `VOCALIZED_FUZZ_REPLAY`: run the target on this file's bytes only.
//! - `VOCALIZED_FUZZ_ARTIFACTS`: where crashing inputs go (default: the temp dir).

use serde_json::Value;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// splitmix64: tiny, fast, and good enough to pick mutations.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`0` when `n == 0`).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True with probability `1 / n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A length skewed towards small values, at most `max`.
    pub fn len(&mut self, max: usize) -> usize {
        match self.below(4) {
            0 => self.below(8.min(max + 1)),
            1 | 2 => self.below(64.min(max + 1)),
            _ => self.below(max + 1),
        }
    }
}

/// Bytes that tend to matter to text parsers.
const INTERESTING_BYTES: &[u8] = b"\0\x01\x7f\x80\xc0\xff\xfe\"\\{}[],:\n\r\t =&%+;/.-0a";

/// Number spellings at and past the edges of every integer and float type.
const INTERESTING_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "127",
    "255",
    "256",
    "65535",
    "65536",
    "2147483647",
    "-2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "1e308",
    "1e309",
    "-1e309",
    "1.5",
    "0.1",
    "5e-324",
    "1E+2",
    "00",
    "1.",
    ".5",
    "NaN",
    "Infinity",
];

/// Strings that tend to matter to validators.
const INTERESTING_STRINGS: &[&str] = &[
    "",
    " ",
    "\0",
    "a",
    "\u{7f}",
    "\u{feff}",
    "\u{10ffff}",
    "é",
    "日本",
    "\"",
    "\\",
    "\n",
    "null",
    "true",
    "-1",
    "1e400",
    "%00",
    "<>&'\"",
    "a@b.c",
    "@",
    "x@",
    "http://",
    "https://127.0.0.1:0/",
    "../../etc/passwd",
    "' OR 1=1 --",
];

/// The inputs of one target: seeds to start from and tokens to splice in.
#[derive(Clone, Debug, Default)]
pub struct Corpus {
    pub seeds: Vec<Vec<u8>>,
    pub dict: Vec<Vec<u8>>,
    /// Largest input the generators make (mutations may grow a seed past it a little).
    pub max_len: usize,
}

impl Corpus {
    pub fn new(seeds: &[&[u8]], dict: &[&str]) -> Self {
        Self {
            seeds: seeds.iter().map(|s| s.to_vec()).collect(),
            dict: dict.iter().map(|d| d.as_bytes().to_vec()).collect(),
            max_len: 4096,
        }
    }

    pub fn with_max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len;
        self
    }

    fn token(&self, rng: &mut Rng) -> Vec<u8> {
        match rng.below(4) {
            0 if !self.dict.is_empty() => rng.pick(&self.dict).clone(),
            1 => rng.pick(INTERESTING_NUMBERS).as_bytes().to_vec(),
            2 => rng.pick(INTERESTING_STRINGS).as_bytes().to_vec(),
            _ => vec![*rng.pick(INTERESTING_BYTES)],
        }
    }
}

/// One byte-level edit of `buf`.
pub fn mutate_bytes(rng: &mut Rng, buf: &mut Vec<u8>, corpus: &Corpus) {
    let len = buf.len();
    match rng.below(11) {
        0 if len > 0 => {
            let i = rng.below(len);
            buf[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            buf[i] = rng.byte();
        }
        2 if len > 0 => {
            let i = rng.below(len);
            buf[i] = *rng.pick(INTERESTING_BYTES);
        }
        3 => {
            // Insert a few random bytes.
            let at = rng.below(len + 1);
            let n = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
            buf.splice(at..at, bytes);
        }
        4 if len > 0 => {
            // Delete a range.
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(32));
            buf.drain(at..at + n);
        }
        5 if len > 0 => {
            // Truncate: the most common shape of a broken frame.
            buf.truncate(rng.below(len));
        }
        6 if len > 0 => {
            // Duplicate a range in place (repeated fields, doubled brackets).
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(64));
            let copy = buf[at..at + n].to_vec();
            let to = rng.below(len + 1);
            buf.splice(to..to, copy);
        }
        7 if !corpus.seeds.is_empty() => {
            // Splice: a prefix of this input with a suffix of another seed.
            let other = rng.pick(&corpus.seeds);
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            buf.truncate(cut);
            buf.extend_from_slice(&other[from..]);
        }
        8 | 9 => {
            // Insert or overwrite with a token.
            let token = corpus.token(rng);
            let at = rng.below(len + 1);
            if rng.one_in(2) || at == len {
                buf.splice(at..at, token);
            } else {
                let end = (at + token.len()).min(len);
                buf.splice(at..end, token);
            }
        }
        _ => {
            // Replace a run of digits with an interesting number.
            let digits: Vec<usize> = (0..len).filter(|&i| buf[i].is_ascii_digit()).collect();
            if let Some(&start) = digits.get(rng.below(digits.len())) {
                let mut end = start;
                while end < len && buf[end].is_ascii_digit() {
                    end += 1;
                }
                let number = rng.pick(INTERESTING_NUMBERS).as_bytes().to_vec();
                buf.splice(start..end, number);
            } else if len > 0 {
                let i = rng.below(len);
                buf[i] = b'0' + rng.below(10) as u8;
            }
        }
    }
}

/// A random JSON value, at most `depth` deep.
pub fn random_json(rng: &mut Rng, corpus: &Corpus, depth: usize) -> Value {
    match rng.below(if depth == 0 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.one_in(2)),
        2 => serde_json::from_str(rng.pick::<&str>(INTERESTING_NUMBERS))
            .unwrap_or_else(|_| Value::from(rng.next_u64() as i64)),
        3 => Value::String(random_string(rng, corpus)),
        4 => Value::from(rng.next_u64() % 100_000),
        5 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_json(rng, corpus, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.below(4))
                .map(|_| {
                    (
                        random_string(rng, corpus),
                        random_json(rng, corpus, depth - 1),
                    )
                })
                .collect(),
        ),
    }
}

fn random_string(rng: &mut Rng, corpus: &Corpus) -> String {
    match rng.below(5) {
        0 => rng.pick(INTERESTING_STRINGS).to_string(),
        1 if !corpus.dict.is_empty() => {
            String::from_utf8_lossy(rng.pick::<Vec<u8>>(&corpus.dict)).into()
        }
        2 => {
            // Long: past most length limits.
            let n = *rng.pick(&[64usize, 129, 201, 255, 256, 1_000, 20_001]);
            "x".repeat(n)
        }
        _ => {
            let n = rng.len(24);
            let bytes: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
            String::from_utf8_lossy(&bytes).into()
        }
    }
}

/// Every value in the tree, as paths of object keys / array indices.
fn paths(value: &Value, prefix: &mut Vec<PathStep>, out: &mut Vec<Vec<PathStep>>) {
    out.push(prefix.clone());
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                prefix.push(PathStep::Key(key.clone()));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                prefix.push(PathStep::Index(i));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

#[derive(Clone, Debug)]
enum PathStep {
    Key(String),
    Index(usize),
}

fn at_path<'a>(value: &'a mut Value, path: &[PathStep]) -> Option<&'a mut Value> {
    let mut node = value;
    for step in path {
        node = match step {
            PathStep::Key(k) => node.get_mut(k.as_str())?,
            PathStep::Index(i) => node.get_mut(*i)?,
        };
    }
    Some(node)
}

/// One edit of a parsed JSON tree: a value retyped or changed, a key removed, renamed
/// or added, an array grown or shrunk, a value nested deeper.
pub fn mutate_json(rng: &mut Rng, value: &mut Value, corpus: &Corpus) {
    let mut all = Vec::new();
    paths(value, &mut Vec::new(), &mut all);
    let path = rng.pick(&all).clone();
    let Some(node) = at_path(value, &path) else {
        return;
    };
    match rng.below(9) {
        0 | 1 => *node = random_json(rng, corpus, 2),
        2 => match node {
            Value::String(s) => {
                let mut bytes = std::mem::take(s).into_bytes();
                for _ in 0..1 + rng.below(3) {
                    mutate_bytes(rng, &mut bytes, corpus);
                }
                *s = String::from_utf8_lossy(&bytes).into();
            }
            Value::Number(_) => {
                *node = serde_json::from_str(rng.pick::<&str>(INTERESTING_NUMBERS))
                    .unwrap_or(Value::Null)
            }
            Value::Bool(b) => *b = !*b,
            _ => *node = Value::String(random_string(rng, corpus)),
        },
        3 => {
            if let Value::Object(map) = node
                && !map.is_empty()
            {
                let key = map.keys().nth(rng.below(map.len())).cloned();
                if let Some(key) = key {
                    let child = map.remove(&key);
                    // Drop it, or put it back under another name.
                    if rng.one_in(2)
                        && let Some(child) = child
                    {
                        map.insert(random_string(rng, corpus), child);
                    }
                }
            }
        }
        4 => {
            if let Value::Object(map) = node {
                let key = if !corpus.dict.is_empty() && rng.one_in(2) {
                    String::from_utf8_lossy(rng.pick::<Vec<u8>>(&corpus.dict)).into()
                } else {
                    random_string(rng, corpus)
                };
                map.insert(key, random_json(rng, corpus, 2));
            }
        }
        5 => match node {
            Value::Array(items) if !items.is_empty() => {
                let i = rng.below(items.len());
                if rng.one_in(2) {
                    items.remove(i);
                } else {
                    let copy = items[i].clone();
                    for _ in 0..1 + rng.below(8) {
                        items.push(copy.clone());
                    }
                }
            }
            _ => *node = Value::Array(vec![node.take()]),
        },
        6 => {
            // Deep nesting: recursion limits.
            let mut nested = node.take();
            for _ in 0..1 + rng.below(200) {
                nested = Value::Array(vec![nested]);
            }
            *node = nested;
        }
        7 => *node = Value::Null,
        _ => {
            // Swap in a value from another seed at a random position.
            if let Some(other) = corpus
                .seeds
                .get(rng.below(corpus.seeds.len()))
                .and_then(|s| serde_json::from_slice::<Value>(s).ok())
            {
                let mut others = Vec::new();
                paths(&other, &mut Vec::new(), &mut others);
                let mut other = other;
                let from = rng.pick(&others).clone();
                if let Some(v) = at_path(&mut other, &from) {
                    *node = v.take();
                }
            }
        }
    }
}

/// A target's own generator of structured inputs.
pub type Generate<'a> = &'a dyn Fn(&mut Rng, &mut Vec<u8>);

/// Builds one input. `generate` is the target's own structured generator, if any.
pub struct InputMaker<'a> {
    pub corpus: &'a Corpus,
    pub generate: Option<Generate<'a>>,
    /// Parsed JSON seeds, for tree mutations.
    json_seeds: Vec<Value>,
    next_seed: usize,
}

impl<'a> InputMaker<'a> {
    pub fn new(corpus: &'a Corpus, generate: Option<Generate<'a>>) -> Self {
        let json_seeds = corpus
            .seeds
            .iter()
            .filter_map(|s| serde_json::from_slice::<Value>(s).ok())
            .filter(|v| v.is_object() || v.is_array())
            .collect();
        Self {
            corpus,
            generate,
            json_seeds,
            next_seed: 0,
        }
    }

    /// Writes the next input into `out` (cleared first). `prev` is the last input, which
    /// a mutation sometimes continues from (stacking edits).
    pub fn make(&mut self, rng: &mut Rng, prev: &[u8], out: &mut Vec<u8>) {
        out.clear();
        let corpus = self.corpus;
        // Every seed once, first.
        if self.next_seed < corpus.seeds.len() {
            out.extend_from_slice(&corpus.seeds[self.next_seed]);
            self.next_seed += 1;
            return;
        }
        match rng.below(16) {
            0 => {
                let n = rng.len(corpus.max_len);
                if rng.one_in(2) {
                    out.extend((0..n).map(|_| rng.byte()));
                } else {
                    // Printable-ish: gets further into text formats.
                    out.extend((0..n).map(|_| {
                        *rng.pick(b" !\"#%&'()*+,-./0123456789:;<=>?@ABCXYZ[\\]^_abcxyz{|}~\n")
                    }));
                }
            }
            1 | 2 => match self.generate {
                Some(generate) => generate(rng, out),
                None => {
                    let v = random_json(rng, corpus, 4);
                    out.extend_from_slice(v.to_string().as_bytes());
                }
            },
            3..=8 if !self.json_seeds.is_empty() => {
                let mut v = rng.pick(&self.json_seeds).clone();
                for _ in 0..1 + rng.below(4) {
                    mutate_json(rng, &mut v, corpus);
                }
                out.extend_from_slice(v.to_string().as_bytes());
                if rng.one_in(4) {
                    mutate_bytes(rng, out, corpus);
                }
            }
            _ => {
                if !prev.is_empty() && rng.one_in(4) {
                    out.extend_from_slice(prev);
                } else if let Some(seed) = corpus.seeds.get(rng.below(corpus.seeds.len())) {
                    out.extend_from_slice(seed);
                } else if let Some(generate) = self.generate {
                    generate(rng, out);
                }
                for _ in 0..1 + rng.below(4) {
                    mutate_bytes(rng, out, corpus);
                }
                // Keep stacked edits from growing without bound.
                out.truncate(corpus.max_len.max(64) * 2);
            }
        }
    }
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct Stats {
    pub target: String,
    pub inputs: u64,
    pub elapsed: Duration,
    pub seed: u64,
}

impl Stats {
    pub fn per_second(&self) -> f64 {
        self.inputs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fuzz {}: {} inputs in {:.1} s ({:.0}/s), seed {:#x}, no crash",
            self.target,
            self.inputs,
            self.elapsed.as_secs_f64(),
            self.per_second(),
            self.seed
        )
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim().replace('_', "");
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// FNV-1a, to give each target its own default seed.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Writes a crashing input where it can be replayed from.
fn save_crash(target: &str, input: &[u8]) -> PathBuf {
    let dir = std::env::var_os("VOCALIZED_FUZZ_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("vocalized-fuzz"));
    let _ = std::fs::create_dir_all(&dir);
    let name = format!(
        "{target}-crash-{:016x}",
        fnv(&String::from_utf8_lossy(input))
    );
    let path = dir.join(name);
    let _ = std::fs::write(&path, input);
    path
}

/// Runs `body` on one input; a panic saves the input and goes on unwinding.
fn run_one(target: &str, input: &[u8], body: &mut dyn FnMut(&[u8])) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| body(input))) {
        let path = save_crash(target, input);
        eprintln!(
            "fuzz {target}: crashing input ({} bytes) saved to {} (replay with VOCALIZED_FUZZ_REPLAY={}): {:?}",
            input.len(),
            path.display(),
            path.display(),
            String::from_utf8_lossy(&input[..input.len().min(2_000)]),
        );
        resume_unwind(panic);
    }
}

/// Fuzzes `body` with `default_iters` inputs (or as the environment says) and prints
/// the count. Panics (after saving the input) if an input makes `body` panic.
pub fn fuzz(
    target: &str,
    default_iters: u64,
    corpus: &Corpus,
    generate: Option<Generate<'_>>,
    mut body: impl FnMut(&[u8]),
) -> Stats {
    let started = Instant::now();
    if let Some(path) = std::env::var_os("VOCALIZED_FUZZ_REPLAY") {
        let input = std::fs::read(&path).expect("VOCALIZED_FUZZ_REPLAY names a readable file");
        run_one(target, &input, &mut body);
        return Stats {
            target: target.into(),
            inputs: 1,
            elapsed: started.elapsed(),
            seed: 0,
        };
    }
    let iters = env_u64("VOCALIZED_FUZZ_ITERS").unwrap_or(default_iters);
    let deadline = env_u64("VOCALIZED_FUZZ_SECS").map(|s| started + Duration::from_secs(s));
    let seed = env_u64("VOCALIZED_FUZZ_SEED").unwrap_or(fnv(target));
    let mut rng = Rng::new(seed ^ fnv(target));
    let mut maker = InputMaker::new(corpus, generate);
    let mut input = Vec::with_capacity(corpus.max_len * 2);
    let mut prev = Vec::with_capacity(corpus.max_len * 2);
    let mut done = 0u64;
    while done < iters {
        // The clock is read every 1024 inputs, not per input.
        if done.is_multiple_of(1024) && deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        maker.make(&mut rng, &prev, &mut input);
        run_one(target, &input, &mut body);
        std::mem::swap(&mut input, &mut prev);
        done += 1;
    }
    let stats = Stats {
        target: target.into(),
        inputs: done,
        elapsed: started.elapsed(),
        seed,
    };
    println!("{stats}");
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_mutations_keep_json_valid() {
        let seed: &[u8] = br#"{"a":[1,{"b":"c"}],"d":true}"#;
        let corpus = Corpus::new(&[seed], &["event"]);
        let mut rng = Rng::new(7);
        let mut v: Value = serde_json::from_slice(&corpus.seeds[0]).unwrap();
        for _ in 0..1_000 {
            mutate_json(&mut rng, &mut v, &corpus);
            let text = v.to_string();
            if text.len() > 100_000 {
                v = serde_json::from_slice(&corpus.seeds[0]).unwrap();
                continue;
            }
            // Deep nesting past serde_json's limit of 128 is what some inputs are for.
            let _ = serde_json::from_str::<Value>(&text);
        }
    }

    #[test]
    fn every_seed_is_tried_first_and_runs_are_repeatable() {
        let corpus = Corpus::new(&[b"one".as_slice(), b"two"], &[]);
        let collect = || {
            let mut rng = Rng::new(1);
            let mut maker = InputMaker::new(&corpus, None);
            let mut out: Vec<u8> = Vec::new();
            let mut all: Vec<Vec<u8>> = Vec::new();
            for _ in 0..50 {
                let prev = all.last().cloned().unwrap_or_default();
                maker.make(&mut rng, &prev, &mut out);
                all.push(out.clone());
            }
            all
        };
        let a = collect();
        assert_eq!(a[0], b"one".to_vec());
        assert_eq!(a[1], b"two".to_vec());
        assert_eq!(a, collect());
        assert!(
            a[2..]
                .iter()
                .any(|x| x[..] != b"one"[..] && x[..] != b"two"[..])
        );
    }
}
