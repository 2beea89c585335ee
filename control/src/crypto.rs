//! Secrets at rest: AES-256-GCM under the master key (`VOCALIZED_MASTER_KEY`).
//!
//! A sealed secret is stored as `v2:` + base64(nonce ‖ ciphertext ‖ tag), with the place it
//! is stored (`table/column/row`, see [`SealedAt`]) as AES-GCM associated data: a blob
//! copied to another row or column does not open (security review L8). `v1:` blobs, sealed
//! before that with no associated data, still open anywhere; `vocalized keys rotate`
//! rewrites them as `v2:`. The random 96-bit nonce is fresh per secret.

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use std::fmt;

/// Unbound secrets (no associated data), from before rows were bound.
const SEALED_PREFIX: &str = "v1:";
/// Secrets bound to their row.
const BOUND_PREFIX: &str = "v2:";

/// Where a sealed secret is stored: its table, column and row (the row's id, or for
/// workspace provider keys `workspace_id/provider`). Bound into the ciphertext.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedAt {
    pub table: &'static str,
    pub column: &'static str,
    pub row: String,
}

impl SealedAt {
    pub fn new(table: &'static str, column: &'static str, row: impl Into<String>) -> Self {
        Self {
            table,
            column,
            row: row.into(),
        }
    }

    /// A platform provider's key (`platform_provider_configs`, one row per provider).
    pub fn platform_provider_key(provider: &str) -> Self {
        Self::new("platform_provider_configs", "api_key_encrypted", provider)
    }

    /// A workspace's own key for a provider (one row per workspace and provider).
    pub fn workspace_provider_key(workspace_id: &str, provider: &str) -> Self {
        Self::new(
            "workspace_provider_configs",
            "api_key_encrypted",
            format!("{workspace_id}/{provider}"),
        )
    }

    fn aad(&self) -> String {
        format!("{}/{}/{}", self.table, self.column, self.row)
    }
}
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
    /// The wrong key, or (for a bound secret) the wrong row: a blob copied elsewhere.
    #[error("sealed secret does not open under this master key, or not in this row")]
    WrongKey,
    #[error("sealed secret is bound to its row and must be opened there")]
    Bound,
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

    fn encrypt(&self, prefix: &str, plaintext: &str, aad: &[u8]) -> String {
        let nonce = Nonce::generate();
        let ciphertext = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad,
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        format!("{prefix}{}", B64.encode(blob))
    }

    fn decrypt(&self, body: &str, aad: &[u8]) -> Result<String, SealError> {
        let blob = B64.decode(body).map_err(|_| SealError::Malformed)?;
        if blob.len() < NONCE_LEN + 16 {
            return Err(SealError::Malformed);
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).map_err(|_| SealError::Malformed)?;
        let plaintext = self
            .cipher()
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| SealError::WrongKey)?;
        String::from_utf8(plaintext).map_err(|_| SealError::Malformed)
    }

    /// Encrypts a secret for storage at `at`; it opens only there.
    pub fn seal_at(&self, plaintext: &str, at: &SealedAt) -> String {
        self.encrypt(BOUND_PREFIX, plaintext, at.aad().as_bytes())
    }

    /// Decrypts a secret stored at `at`: a `v2:` secret sealed for that place, or a `v1:`
    /// one from before secrets were bound.
    pub fn open_at(&self, sealed: &str, at: &SealedAt) -> Result<String, SealError> {
        if let Some(body) = sealed.strip_prefix(BOUND_PREFIX) {
            return self.decrypt(body, at.aad().as_bytes());
        }
        self.open(sealed)
    }

    /// Encrypts a secret with no binding to a row (`v1:`): what was stored before rows were
    /// bound. New secrets use [`MasterKey::seal_at`].
    pub fn seal(&self, plaintext: &str) -> String {
        self.encrypt(SEALED_PREFIX, plaintext, b"")
    }

    /// Decrypts a `v1:` secret (see [`MasterKey::seal`]); a bound one needs
    /// [`MasterKey::open_at`].
    pub fn open(&self, sealed: &str) -> Result<String, SealError> {
        if sealed.starts_with(BOUND_PREFIX) {
            return Err(SealError::Bound);
        }
        let body = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or(SealError::Malformed)?;
        self.decrypt(body, b"")
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

    /// Security review L8: a secret copied to another row, column or table does not open.
    #[test]
    fn a_bound_secret_opens_only_where_it_was_sealed() {
        let key = MasterKey::generate();
        let here = SealedAt::workspace_provider_key("ws_a", "openai");
        let sealed = key.seal_at("sk-a", &here);
        assert!(sealed.starts_with("v2:"), "{sealed}");
        assert_eq!(key.open_at(&sealed, &here).unwrap(), "sk-a");
        for elsewhere in [
            SealedAt::workspace_provider_key("ws_b", "openai"),
            SealedAt::workspace_provider_key("ws_a", "gemini"),
            SealedAt::platform_provider_key("openai"),
            SealedAt::new(
                "integration_accounts",
                "credentials_encrypted",
                "ws_a/openai",
            ),
        ] {
            assert_eq!(
                key.open_at(&sealed, &elsewhere),
                Err(SealError::WrongKey),
                "{elsewhere:?}"
            );
        }
        // Relabelled as an unbound blob it does not open either.
        let relabelled = sealed.replacen("v2:", "v1:", 1);
        assert!(key.open_at(&relabelled, &here).is_err());
        assert_eq!(key.open(&sealed), Err(SealError::Bound));
    }

    #[test]
    fn unbound_v1_secrets_still_open_anywhere() {
        let key = MasterKey::generate();
        let old = key.seal("sk-old");
        assert!(old.starts_with("v1:"));
        assert_eq!(
            key.open_at(&old, &SealedAt::platform_provider_key("openai"))
                .unwrap(),
            "sk-old"
        );
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = MasterKey::parse(&"11".repeat(32)).unwrap();
        assert_eq!(format!("{key:?}"), "MasterKey(***)");
    }
}
