//! Application secrets and access tokens.
//!
//! Secrets are kept only as salted Argon2id hashes (PHC strings). Access and
//! refresh tokens are 256-bit values from the operating system's CSPRNG,
//! written as 64 lower-case hex characters, compared in constant time. Only
//! the newest pair of an application is valid: a login or refresh replaces it.
//! Tokens live in memory only, so a restarted server asks every application
//! to log in again (as a new login on the platform invalidates older tokens).

use std::fmt;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use dashmap::DashMap;
use devcmd_core::{AppId, Timestamp};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// How expensive a secret hash is to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecretCost {
    /// Argon2id with the OWASP-recommended parameters (19 MiB, 2 passes).
    #[default]
    Standard,
    /// Argon2id with minimal parameters (8 KiB, 1 pass). For tests and
    /// benchmarks only: it protects nothing.
    Minimal,
}

/// Hashes a secret with a fresh random salt into a PHC string.
pub fn hash_secret(secret: &str, cost: SecretCost) -> Result<String, ApiError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| ApiError::Internal(format!("no randomness: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| ApiError::Internal(e.to_string()))?;
    let params = match cost {
        SecretCost::Standard => Params::default(),
        SecretCost::Minimal => Params::new(8, 1, 1, None).map_err(|e| ApiError::Internal(e.to_string()))?,
    };
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// Whether `secret` matches the stored hash. A malformed hash matches nothing.
pub fn verify_secret(hash: &str, secret: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(secret.as_bytes(), &h).is_ok())
}

/// A 256-bit token.
#[derive(Clone, Copy)]
pub struct Token([u8; 32]);

impl Token {
    /// A fresh token from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, ApiError> {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).map_err(|e| ApiError::Internal(format!("no randomness: {e}")))?;
        Ok(Self(b))
    }

    /// Parses the 64-hex-character form; anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.as_bytes();
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in s.chunks_exact(2).enumerate() {
            out[i] = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
        }
        Some(Self(out))
    }

    /// The 64-hex-character form sent to the application.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn matches(&self, other: &Token) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never in logs.
        f.write_str("Token(..)")
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// A freshly issued pair of tokens.
#[derive(Debug, Clone, Copy)]
pub struct Issued {
    /// Goes in `Authorization: Bearer …`.
    pub access: Token,
    /// Exchanged for a new pair at refreshToken.
    pub refresh: Token,
    /// Lifetime of the access token.
    pub expires_in: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Session {
    access: Token,
    access_until: Timestamp,
    refresh: Token,
    refresh_until: Timestamp,
}

/// The newest token pair of every application.
#[derive(Debug)]
pub struct TokenBook {
    sessions: DashMap<AppId, Session>,
    access_ttl: Duration,
    refresh_ttl: Duration,
}

impl TokenBook {
    /// An empty book issuing tokens with these lifetimes.
    pub fn new(access_ttl: Duration, refresh_ttl: Duration) -> Self {
        Self {
            sessions: DashMap::new(),
            access_ttl,
            refresh_ttl,
        }
    }

    /// Issues a new pair for `app`, invalidating any earlier one.
    pub fn issue(&self, app: &AppId, now: Timestamp) -> Result<Issued, ApiError> {
        let issued = Issued {
            access: Token::generate()?,
            refresh: Token::generate()?,
            expires_in: self.access_ttl,
        };
        self.sessions.insert(
            app.clone(),
            Session {
                access: issued.access,
                access_until: now.saturating_add(self.access_ttl),
                refresh: issued.refresh,
                refresh_until: now.saturating_add(self.refresh_ttl),
            },
        );
        Ok(issued)
    }

    /// Whether `access` is `app`'s newest, unexpired access token.
    pub fn check_access(&self, app: &AppId, access: &Token, now: Timestamp) -> bool {
        self.sessions
            .get(app)
            .is_some_and(|s| s.access.matches(access) && now < s.access_until)
    }

    /// Whether `refresh` is `app`'s newest, unexpired refresh token.
    pub fn check_refresh(&self, app: &AppId, refresh: &Token, now: Timestamp) -> bool {
        self.sessions
            .get(app)
            .is_some_and(|s| s.refresh.matches(refresh) && now < s.refresh_until)
    }

    /// Ends `app`'s session if `access` is its access token; false otherwise.
    pub fn revoke(&self, app: &AppId, access: &Token) -> bool {
        self.sessions.remove_if(app, |_, s| s.access.matches(access)).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_verify_only_against_their_own_hash() {
        let h = hash_secret("s3cret", SecretCost::Minimal).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(!h.contains("s3cret"));
        assert!(verify_secret(&h, "s3cret"));
        assert!(!verify_secret(&h, "s3cret "));
        assert!(!verify_secret("not a hash", "s3cret"));
        // Same secret, new salt, different hash.
        assert_ne!(h, hash_secret("s3cret", SecretCost::Minimal).unwrap());
    }

    #[test]
    fn tokens_round_trip_through_hex_and_refuse_other_text() {
        let t = Token::generate().unwrap();
        let hex = t.to_hex();
        assert_eq!(hex.len(), 64);
        assert!(Token::parse(&hex).unwrap().matches(&t));
        assert!(Token::parse(&hex.to_uppercase()).is_none());
        assert!(Token::parse(&hex[1..]).is_none());
        assert!(Token::parse("").is_none());
        assert_eq!(format!("{t:?}"), "Token(..)");
    }

    #[test]
    fn only_the_newest_unexpired_token_is_valid() {
        let book = TokenBook::new(Duration::from_secs(3600), Duration::from_secs(86_400));
        let app = AppId::new("a").unwrap();
        let other = AppId::new("b").unwrap();
        let t0 = Timestamp::from_millis(1_000_000);
        let first = book.issue(&app, t0).unwrap();
        assert!(book.check_access(&app, &first.access, t0));
        assert!(!book.check_access(&other, &first.access, t0));
        let second = book.issue(&app, t0).unwrap();
        assert!(!book.check_access(&app, &first.access, t0));
        assert!(!book.check_refresh(&app, &first.refresh, t0));
        assert!(book.check_access(&app, &second.access, t0));
        let late = t0.saturating_add(Duration::from_secs(3600));
        assert!(!book.check_access(&app, &second.access, late));
        assert!(book.check_refresh(&app, &second.refresh, late));
        assert!(!book.revoke(&app, &first.access));
        assert!(book.revoke(&app, &second.access));
        assert!(!book.check_refresh(&app, &second.refresh, t0));
    }
}
