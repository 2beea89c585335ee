//! argon2id password hashing (PHC strings with per-password salts).
//!
//! argon2 is CPU- and memory-heavy by design (tens of ms, 19 MiB per hash). Request
//! handlers use [`hash_off_runtime`] and [`verify_off_runtime`], which run it on tokio's
//! blocking pool behind a semaphore sized to the cores, so a burst of logins neither stalls
//! the runtime threads carrying call audio nor reserves unbounded memory. The blocking
//! [`hash`] and [`verify`] are for the CLI and start-up code.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use std::sync::OnceLock;
use tokio::sync::Semaphore;

pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 128;

/// Why a password is not acceptable, for a 422 field error.
pub fn check_strength(password: &str) -> Option<&'static str> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_CHARS {
        Some("must be at least 8 characters")
    } else if n > MAX_PASSWORD_CHARS {
        Some("must be at most 128 characters")
    } else {
        None
    }
}

pub fn hash(password: &str) -> String {
    Argon2::default()
        .hash_password(password.as_bytes())
        .expect("argon2 with default params hashes any password")
        .to_string()
}

/// Constant work whether or not the hash parses; a malformed stored hash never matches.
pub fn verify(password: &str, phc: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), phc)
        .is_ok()
}

/// At most one argon2 run per core at a time; the rest wait their turn (asynchronously).
fn permits() -> &'static Semaphore {
    static PERMITS: OnceLock<Semaphore> = OnceLock::new();
    PERMITS
        .get_or_init(|| Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())))
}

/// Runs `work` on the blocking pool once a permit is free.
async fn off_runtime<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let _permit = permits()
        .acquire()
        .await
        .expect("the password semaphore is never closed");
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// [`hash`], off the runtime threads.
pub async fn hash_off_runtime(password: &str) -> String {
    let password = password.to_owned();
    off_runtime(move || hash(&password)).await
}

/// [`verify`] against `phc`, or against [`dummy_hash`] when `phc` is `None` (unknown
/// account: the same work, so the same time), off the runtime threads.
pub async fn verify_off_runtime(password: &str, phc: Option<&str>) -> bool {
    let (password, phc) = (password.to_owned(), phc.map(str::to_owned));
    off_runtime(move || match phc {
        Some(phc) => verify(&password, &phc),
        None => {
            verify(&password, dummy_hash());
            false
        }
    })
    .await
}

/// A valid hash of a random password, checked against when the account does not exist,
/// so a login for an unknown email costs the same time as one for a known email.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash(&crate::util::random_token()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let h = hash("correct horse");
        assert!(h.starts_with("$argon2id$"));
        assert_ne!(h, hash("correct horse"));
        assert!(verify("correct horse", &h));
        assert!(!verify("wrong horse", &h));
        assert!(!verify("correct horse", "not a phc string"));
    }

    #[test]
    fn strength_limits() {
        assert!(check_strength("short").is_some());
        assert!(check_strength("longenough").is_none());
        assert!(check_strength(&"x".repeat(129)).is_some());
    }

    /// On a single-threaded runtime, another task keeps running while a password hashes:
    /// the work is not on the runtime thread.
    #[tokio::test(flavor = "current_thread")]
    async fn hashing_and_verifying_leave_the_runtime_thread_free() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let ticks = Arc::new(AtomicUsize::new(0));
        let ticker = {
            let ticks = Arc::clone(&ticks);
            tokio::spawn(async move {
                loop {
                    ticks.fetch_add(1, Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            })
        };
        let h = hash_off_runtime("correct horse").await;
        assert!(
            ticks.load(Ordering::Relaxed) > 0,
            "hash ran on the runtime thread"
        );
        let before = ticks.load(Ordering::Relaxed);
        assert!(verify_off_runtime("correct horse", Some(&h)).await);
        assert!(
            ticks.load(Ordering::Relaxed) > before,
            "verify ran on the runtime thread"
        );
        assert!(!verify_off_runtime("correct horse", None).await);
        ticker.abort();
    }
}
