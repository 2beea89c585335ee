//! Secrets at rest: AES-256-GCM under the master key (`VOCALIZED_MASTER_KEY`).
//!
//! A sealed secret is stored as `v1:` + base64(nonce ‖ ciphertext ‖ tag). The version
//! prefix leaves room for key rotation; the random 96-bit nonce is fresh per secret.

use aes_gcm::aead::{Aead, Generate, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use std::fmt;

const SEALED_PREFIX: &str = "v1:";
const NONCE_LEN: usize = 12;

/// The 32-byte key that encrypts every secret at rest. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey([u8; 32]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("master key must be 32 bytes given as 64 hex characters or base64 (got {0} bytes)")]
    WrongLength(usize),
    #[error("master key is neither hex nor base64")]
    NotEncoded,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("sealed secret is malformed")]
    Malformed,
    #[error("sealed secret does not open under this master key")]
    WrongKey,
}

impl MasterKey {
    /// Parses 64 hex characters or the base64 (standard or URL-safe, padded or not) of 32 bytes.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|_| KeyError::NotEncoded)?
        } else {
            let cleaned: String = text
                .trim_end_matches('=')
                .replace('-', "+")
                .replace('_', "/");
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(cleaned)
                .map_err(|_| KeyError::NotEncoded)?
        };
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::WrongLength(bytes.len()))?;
        Ok(Self(key))
    }

    /// A new random key.
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        Self(key)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&Key::<Aes256Gcm>::from(self.0))
    }

    /// Encrypts a secret for storage.
    pub fn seal(&self, plaintext: &str) -> String {
        let nonce = Nonce::generate();
        let ciphertext = self
            .cipher()
            .encrypt(&nonce, plaintext.as_bytes())
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        format!("{SEALED_PREFIX}{}", B64.encode(blob))
    }

    /// Decrypts a secret sealed by [`MasterKey::seal`].
    pub fn open(&self, sealed: &str) -> Result<String, SealError> {
        let body = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or(SealError::Malformed)?;
        let blob = B64.decode(body).map_err(|_| SealError::Malformed)?;
        if blob.len() < NONCE_LEN + 16 {
            return Err(SealError::Malformed);
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).map_err(|_| SealError::Malformed)?;
        let plaintext = self
            .cipher()
            .decrypt(&nonce, ciphertext)
            .map_err(|_| SealError::WrongKey)?;
        String::from_utf8(plaintext).map_err(|_| SealError::Malformed)
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_base64_forms_parse_to_the_same_key() {
        let key = MasterKey::generate();
        let hex_form = key.to_hex();
        let b64_form = B64.encode(key.0);
        assert_eq!(MasterKey::parse(&hex_form).unwrap(), key);
        assert_eq!(MasterKey::parse(&b64_form).unwrap(), key);
        assert_eq!(
            MasterKey::parse(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.0))
                .unwrap(),
            key
        );
    }

    #[test]
    fn malformed_keys_are_rejected_with_a_reason() {
        assert_eq!(MasterKey::parse("abcd"), Err(KeyError::WrongLength(3)));
        assert_eq!(MasterKey::parse("not a key!"), Err(KeyError::NotEncoded));
        assert_eq!(
            MasterKey::parse(&"ab".repeat(16)),
            Err(KeyError::WrongLength(24))
        );
    }

    #[test]
    fn sealed_secrets_round_trip_and_never_contain_the_plaintext() {
        let key = MasterKey::generate();
        let sealed = key.seal("sk-live-very-secret");
        assert!(!sealed.contains("very-secret"));
        assert_eq!(key.open(&sealed).unwrap(), "sk-live-very-secret");
        // Fresh nonce per seal: the same secret never seals to the same text.
        assert_ne!(sealed, key.seal("sk-live-very-secret"));
    }

    #[test]
    fn a_different_key_or_a_tampered_blob_does_not_open() {
        let key = MasterKey::generate();
        let sealed = key.seal("secret");
        assert_eq!(
            MasterKey::generate().open(&sealed),
            Err(SealError::WrongKey)
        );
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(key.open(std::str::from_utf8(&tampered).unwrap()).is_err());
        assert_eq!(key.open("plain"), Err(SealError::Malformed));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = MasterKey::parse(&"11".repeat(32)).unwrap();
        assert_eq!(format!("{key:?}"), "MasterKey(***)");
    }
}
