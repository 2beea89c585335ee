//! Fixed-window rate limits for the endpoints attackers hammer: login, signup and
//! forgot-password, keyed per client IP and per email. In memory, per node: a multi-node
//! deployment multiplies the allowance by its node count, which is acceptable for abuse
//! protection (it is not a quota).

use super::error::ApiError;
use dashmap::DashMap;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicI64, Ordering};

/// One limit: at most `max` requests per `window_secs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub window_secs: u64,
}

impl Limit {
    pub const fn new(max: u32, window_secs: u64) -> Self {
        Self { max, window_secs }
    }
}

/// The limits in force; tests shrink them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimits {
    pub login_per_ip: Limit,
    pub login_per_email: Limit,
    pub signup_per_ip: Limit,
    pub forgot_per_ip: Limit,
    pub forgot_per_email: Limit,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            login_per_ip: Limit::new(30, 60),
            login_per_email: Limit::new(10, 300),
            signup_per_ip: Limit::new(10, 3600),
            forgot_per_ip: Limit::new(10, 3600),
            forgot_per_email: Limit::new(3, 3600),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bucket {
    LoginIp,
    LoginEmail,
    SignupIp,
    ForgotIp,
    ForgotEmail,
}

struct Window {
    started_ms: i64,
    count: u32,
}

/// A key is stored as the first 16 bytes of its SHA-256, so an entry has a fixed size
/// whatever the client sent (a 2 MB "email" costs 16 bytes, not 2 MB).
type KeyDigest = [u8; 16];

fn digest(key: &str) -> KeyDigest {
    let full = Sha256::digest(key.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// Keys beyond the cap share this one window per bucket: limits still hold (collectively)
/// while memory stays bounded.
const OVERFLOW: KeyDigest = [0xff; 16];

/// The most windows kept; about 100 bytes each, so a few MB at most.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

/// How often expired windows are swept out, at most.
const PRUNE_EVERY_MS: i64 = 60_000;

pub struct RateLimiter {
    limits: RateLimits,
    windows: DashMap<(Bucket, KeyDigest), Window>,
    /// (account, address) pairs that signed in successfully, with the time: a full
    /// per-account window does not lock these out (L5).
    known_logins: DashMap<KeyDigest, i64>,
    max_entries: usize,
    last_prune_ms: AtomicI64,
}

/// How long a successful sign-in vouches for its address.
const KNOWN_LOGIN_TTL_MS: i64 = 30 * 24 * 3600 * 1000;

impl RateLimiter {
    pub fn new(limits: RateLimits) -> Self {
        Self::with_capacity(limits, DEFAULT_MAX_ENTRIES)
    }

    /// A limiter that keeps at most `max_entries` windows (tests shrink it).
    pub fn with_capacity(limits: RateLimits, max_entries: usize) -> Self {
        Self {
            limits,
            windows: DashMap::new(),
            known_logins: DashMap::new(),
            max_entries,
            last_prune_ms: AtomicI64::new(i64::MIN),
        }
    }

    fn limit(&self, bucket: Bucket) -> Limit {
        match bucket {
            Bucket::LoginIp => self.limits.login_per_ip,
            Bucket::LoginEmail => self.limits.login_per_email,
            Bucket::SignupIp => self.limits.signup_per_ip,
            Bucket::ForgotIp => self.limits.forgot_per_ip,
            Bucket::ForgotEmail => self.limits.forgot_per_email,
        }
    }

    fn window_ms(&self, bucket: Bucket) -> i64 {
        self.limit(bucket).window_secs as i64 * 1000
    }

    /// Windows currently kept.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// The memory the windows take, keys included (an estimate of the map's payload: the
    /// entry type has a fixed size and owns no heap memory).
    pub fn memory_bytes(&self) -> usize {
        self.windows.len() * std::mem::size_of::<((Bucket, KeyDigest), Window)>()
    }

    /// Drops windows that have run out, once a minute at most, so a burst of one-off keys
    /// does not stay in memory and the sweep's cost is not paid on every request.
    fn prune(&self, now_ms: i64) {
        let last = self.last_prune_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) < PRUNE_EVERY_MS
            || self
                .last_prune_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.windows
            .retain(|(bucket, _), w| now_ms - w.started_ms < self.window_ms(*bucket));
        self.known_logins
            .retain(|_, at| now_ms - *at < KNOWN_LOGIN_TTL_MS);
    }

    /// Remembers that `account` signed in from `ip` (bounded like the windows: past the
    /// cap, new pairs are not remembered and simply get the ordinary limits).
    pub fn remember_login(&self, account: &str, ip: &str, now_ms: i64) {
        let key = digest(&format!("{account}\n{ip}"));
        if self.known_logins.len() < self.max_entries || self.known_logins.contains_key(&key) {
            self.known_logins.insert(key, now_ms);
        }
    }

    /// Whether `account` signed in from `ip` within the last 30 days.
    pub fn is_known_login(&self, account: &str, ip: &str, now_ms: i64) -> bool {
        self.known_logins
            .get(&digest(&format!("{account}\n{ip}")))
            .is_some_and(|at| now_ms - *at < KNOWN_LOGIN_TTL_MS)
    }

    /// Counts one request against `bucket`/`key`; `Err(429)` once the window is full.
    pub fn hit(&self, bucket: Bucket, key: &str, now_ms: i64) -> Result<(), ApiError> {
        let limit = self.limit(bucket);
        let window_ms = self.window_ms(bucket);
        self.prune(now_ms);
        let mut key = digest(key);
        if self.windows.len() >= self.max_entries && !self.windows.contains_key(&(bucket, key)) {
            key = OVERFLOW;
        }
        let mut w = self.windows.entry((bucket, key)).or_insert(Window {
            started_ms: now_ms,
            count: 0,
        });
        if now_ms - w.started_ms >= window_ms {
            w.started_ms = now_ms;
            w.count = 0;
        }
        if w.count >= limit.max {
            let retry_after_ms = (w.started_ms + window_ms - now_ms).max(1000);
            return Err(ApiError::TooManyRequests {
                retry_after_secs: (retry_after_ms as u64).div_ceil(1000),
            });
        }
        w.count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_window_refuses_until_it_rolls_over() {
        let limiter = RateLimiter::new(RateLimits {
            login_per_ip: Limit::new(2, 60),
            ..RateLimits::default()
        });
        assert!(limiter.hit(Bucket::LoginIp, "1.2.3.4", 0).is_ok());
        assert!(limiter.hit(Bucket::LoginIp, "1.2.3.4", 10).is_ok());
        match limiter.hit(Bucket::LoginIp, "1.2.3.4", 20_000) {
            Err(ApiError::TooManyRequests { retry_after_secs }) => assert_eq!(retry_after_secs, 40),
            other => panic!("expected 429, got {other:?}"),
        }
        // Other keys and buckets are independent.
        assert!(limiter.hit(Bucket::LoginIp, "5.6.7.8", 20_000).is_ok());
        assert!(limiter.hit(Bucket::SignupIp, "1.2.3.4", 20_000).is_ok());
        // The window rolls over.
        assert!(limiter.hit(Bucket::LoginIp, "1.2.3.4", 60_000).is_ok());
    }

    #[test]
    fn huge_distinct_keys_take_a_fixed_amount_of_memory() {
        let limiter = RateLimiter::new(RateLimits::default());
        let mut key = "x".repeat(1 << 20);
        for i in 0..1000 {
            key.replace_range(..8, &format!("{i:08}"));
            let _ = limiter.hit(Bucket::LoginEmail, &key, 0);
        }
        assert_eq!(limiter.len(), 1000);
        // A key costs its fixed-size digest, not its megabyte.
        assert!(
            limiter.memory_bytes() <= 1000 * 64,
            "{} bytes for 1000 windows",
            limiter.memory_bytes()
        );
    }

    #[test]
    fn the_map_is_capped_and_keys_beyond_the_cap_share_one_window() {
        let limits = RateLimits {
            login_per_email: Limit::new(3, 300),
            ..RateLimits::default()
        };
        let limiter = RateLimiter::with_capacity(limits, 100);
        for i in 0..100 {
            assert!(limiter.hit(Bucket::LoginEmail, &format!("k{i}"), 0).is_ok());
        }
        let refused = (100..1000)
            .filter(|i| {
                limiter
                    .hit(Bucket::LoginEmail, &format!("k{i}"), 0)
                    .is_err()
            })
            .count();
        assert!(limiter.len() <= 101, "{} windows", limiter.len());
        // The overflow window still limits: 3 pass, the other 897 are refused.
        assert_eq!(refused, 897);
        // Keys already tracked keep their own window.
        assert!(limiter.hit(Bucket::LoginEmail, "k0", 0).is_ok());
    }

    #[test]
    fn expired_windows_are_swept_out() {
        let limiter = RateLimiter::new(RateLimits::default());
        for i in 0..500 {
            let _ = limiter.hit(Bucket::LoginIp, &format!("10.0.{}.{}", i / 256, i % 256), 0);
        }
        assert_eq!(limiter.len(), 500);
        // After the longest window (1 h) has passed, the next hit sweeps them all.
        let _ = limiter.hit(Bucket::LoginIp, "192.0.2.1", 3_600_000);
        assert_eq!(limiter.len(), 1);
    }
}
