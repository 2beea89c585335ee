//! Fixed-window rate limits for the endpoints attackers hammer: login, signup and
//! forgot-password, keyed per client IP and per email. In memory, per node: a multi-node
//! deployment multiplies the allowance by its node count, which is acceptable for abuse
//! protection (it is not a quota).

use super::error::ApiError;
use dashmap::DashMap;

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

pub struct RateLimiter {
    limits: RateLimits,
    windows: DashMap<(Bucket, String), Window>,
}

const PRUNE_ABOVE: usize = 50_000;

impl RateLimiter {
    pub fn new(limits: RateLimits) -> Self {
        Self {
            limits,
            windows: DashMap::new(),
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

    /// Counts one request against `bucket`/`key`; `Err(429)` once the window is full.
    pub fn hit(&self, bucket: Bucket, key: &str, now_ms: i64) -> Result<(), ApiError> {
        let limit = self.limit(bucket);
        let window_ms = limit.window_secs as i64 * 1000;
        if self.windows.len() > PRUNE_ABOVE {
            self.windows
                .retain(|_, w| now_ms - w.started_ms < window_ms.max(3_600_000));
        }
        let mut w = self
            .windows
            .entry((bucket, key.to_owned()))
            .or_insert(Window {
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
}
