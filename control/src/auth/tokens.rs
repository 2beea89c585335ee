//! JWT access tokens (HS256, 15 minutes). The signing key is derived from the master key,
//! so there is no second secret to configure; rotating the master key logs everyone out of
//! their access tokens (refresh tokens survive: they are looked up, not verified by key).

use crate::crypto::MasterKey;
use hmac::{Hmac, KeyInit, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub const ACCESS_TOKEN_TTL_MS: i64 = 15 * 60 * 1000;

/// Whose token: a client user's (the client API) or a platform admin's (`/api/v1/admin`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    User,
    Admin,
}

impl Audience {
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::User => "user",
            Audience::Admin => "admin",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub aud: Audience,
    /// The login session (refresh-token family); logout revokes it.
    pub sid: String,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl TokenKeys {
    pub fn derive(master: &MasterKey) -> Self {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(master.to_hex().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(b"vocalized jwt signing key v1");
        let key = mac.finalize().into_bytes();
        Self {
            encoding: EncodingKey::from_secret(&key).expect("a 32-byte HMAC key is valid"),
            decoding: DecodingKey::from_secret(&key).expect("a 32-byte HMAC key is valid"),
        }
    }

    pub fn issue(&self, aud: Audience, sub: &str, sid: &str, now_ms: i64) -> String {
        let claims = Claims {
            sub: sub.to_owned(),
            aud,
            sid: sid.to_owned(),
            iat: now_ms / 1000,
            exp: (now_ms + ACCESS_TOKEN_TTL_MS) / 1000,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// Verifies signature, expiry and audience.
    pub fn verify(&self, token: &str, aud: Audience) -> Option<Claims> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).ok()?;
        (data.claims.aud == aud).then_some(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::now_ms;

    #[test]
    fn tokens_verify_only_for_their_audience_and_key() {
        let keys = TokenKeys::derive(&MasterKey::generate());
        let t = keys.issue(Audience::User, "usr_1", "ses_1", now_ms());
        let claims = keys.verify(&t, Audience::User).expect("valid");
        assert_eq!(claims.sub, "usr_1");
        assert_eq!(claims.sid, "ses_1");
        assert!(keys.verify(&t, Audience::Admin).is_none());
        let other = TokenKeys::derive(&MasterKey::generate());
        assert!(other.verify(&t, Audience::User).is_none());
        assert!(keys.verify("garbage", Audience::User).is_none());
    }

    #[test]
    fn expired_tokens_are_refused() {
        let keys = TokenKeys::derive(&MasterKey::generate());
        let t = keys.issue(
            Audience::User,
            "usr_1",
            "ses_1",
            now_ms() - ACCESS_TOKEN_TTL_MS - 5_000,
        );
        assert!(keys.verify(&t, Audience::User).is_none());
    }
}
