//! argon2id password hashing (PHC strings with per-password salts).

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

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
}
