//! Authentication: argon2id passwords, short-lived JWT access tokens, rotating refresh
//! tokens stored hashed and grouped into sessions.

pub mod password;
pub mod sessions;
pub mod tokens;
