//! The customer JWT: where it is found, what it is checked against, and its validation.
//!
//! No I/O: time comes in as `now_secs`, keys as a `KeySet`, and the signature check goes
//! through `SignatureVerifier` so the platform can supply WebCrypto.
//!
//! - `alg`: the eleven JWS algorithms and the key family each one needs.
//! - `settings`: the `JWT_*` and `JWKS_URL` settings, checked against each other once.
//! - `keys`: JWKS parsing and per-token key selection (by `kid`, then by family).
//! - `extract`: `customer-auth`, then `Authorization` (`Bearer` or `DPoP`), then the cookie.
//! - `verify`: the signature trait and its pure-Rust implementation.
//! - `types`: the accepted `typ` values (`JWT_TYPES`, a provider's `types`) and their comparison.
//! - `unique_json`: header and claims as JSON objects without repeated member names (and the
//!   JSON settings, read with it by `entries`).
//! - `validate`: the whole check, in the order that never looks at keys or claims early.
//! - `verified`: the isolate's memory of tokens that passed, so repeats skip the signature.

mod alg;
mod extract;
mod jwk;
mod keys;
mod settings;
mod types;
pub(crate) mod unique_json;
mod validate;
mod verified;
mod verify;

use std::fmt;

pub use alg::{Alg, KeyFamily};
pub use extract::{extract, locate, Presentation};
pub use keys::{Curve, JwksError, Key, KeyComponents, KeySet, MAX_KEY_TRIES};
pub use settings::JwtSettings;
pub use types::TokenTypes;
pub use validate::{header_kid, validate, VerifiedToken, MAX_TOKEN_BYTES};
pub use verified::{
    TokenDigest, VerifiedCache, MAX_BYTES as MAX_VERIFIED_BYTES,
    MAX_CLAIMS_BYTES as MAX_VERIFIED_CLAIMS_BYTES, MAX_ENTRIES as MAX_VERIFIED_ENTRIES,
};
pub use verify::{RustCryptoVerifier, SignatureVerifier};

/// Why a request's customer JWT was not accepted. Variants never carry token content, so
/// they are safe to log and to describe to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwtError {
    /// No token in `customer-auth`, `Authorization: Bearer` or the configured cookie.
    Missing,
    /// `customer-auth` (or `Authorization`) is present but not `<scheme> <token>` as expected,
    /// or is sent twice. A broken request rather than a bad token: 400 `invalid_request`.
    MalformedHeader,
    /// Not exactly three segments of canonical, unpadded base64url; a header or payload
    /// that is not one JSON object; a header member of the wrong type (`alg`, `kid`, `jku`,
    /// `x5u`, `typ` that is not a string); or an unsupported `cty`.
    Malformed,
    /// Longer than `MAX_TOKEN_BYTES`; rejected before any decoding.
    TooLarge,
    /// The header or the claims name a member twice (at any depth). RFC 7515 §4 and RFC 7519
    /// §4 allow rejecting it, and we do: parsers differ on which duplicate wins, so the
    /// gateway and the origin could read different claims from the same token.
    DuplicateMember,
    /// `alg` is `none` (in any spelling), unknown, or not in `JWT_ALGORITHMS`.
    AlgorithmNotAllowed,
    /// The header has `crit`: RFC 7515 §4.1.11 requires rejecting extensions we do not
    /// implement, and we implement none.
    CriticalHeader,
    /// The token names a `kid` that no key in the set has.
    UnknownKid,
    /// No key of the family the token's `alg` needs (or the `kid`'s key is of another family,
    /// or its JWK `alg` differs). RFC 8725 §3.1: keys are never used across algorithms.
    KeyMismatch,
    /// The signature does not verify with any candidate key.
    BadSignature,
    /// `exp` is past, beyond the leeway.
    Expired,
    /// `nbf` is in the future, beyond the leeway.
    NotYetValid,
    /// `iat` is in the future, beyond the leeway.
    IssuedInFuture,
    /// `iat` is older than `JWT_MAX_AGE_SECONDS` (plus leeway).
    TooOld,
    /// A claim the configuration requires is absent (`exp` always; `iat`, `iss`, `aud` when
    /// configured).
    MissingClaim(&'static str),
    /// A claim has the wrong JSON type (e.g. `exp` as a string, `aud` as a number).
    InvalidClaim(&'static str),
    /// `iss` differs from `JWT_ISSUER`.
    WrongIssuer,
    /// `aud` contains none of `JWT_AUDIENCE`.
    WrongAudience,
    /// `exp − iat` is longer than the route's or provider's `max_lifetime_seconds`.
    LifetimeTooLong,
    /// `JWT_TYPES` (or the provider's `types`) is set and the header's `typ` is absent or none
    /// of them (RFC 8725 §3.11: an ID token is not an access token).
    WrongType,
}

impl JwtError {
    /// RFC 6750 `error_description`: short, fixed text that goes inside a quoted header value,
    /// so it holds no token content, no `"` and no `\`.
    pub fn description(&self) -> &'static str {
        match self {
            JwtError::Missing => "No customer JWT was sent",
            JwtError::MalformedHeader => "The header carrying the customer JWT is malformed",
            JwtError::Malformed => "The token is malformed",
            JwtError::TooLarge => "The token is too large",
            JwtError::DuplicateMember => "The token repeats a header parameter or claim name",
            JwtError::AlgorithmNotAllowed => "The token signing algorithm is not allowed",
            JwtError::CriticalHeader => "The token has unsupported critical header parameters",
            JwtError::UnknownKid => "The token key id is unknown",
            JwtError::KeyMismatch => "No key is available for the token algorithm",
            JwtError::BadSignature => "The token signature is invalid",
            JwtError::Expired => "The token has expired",
            JwtError::NotYetValid => "The token is not yet valid",
            JwtError::IssuedInFuture => "The token was issued in the future",
            JwtError::TooOld => "The token is too old",
            JwtError::MissingClaim(claim) => match *claim {
                "exp" => "The token has no exp claim",
                "iat" => "The token has no iat claim",
                "iss" => "The token has no iss claim",
                "aud" => "The token has no aud claim",
                _ => "The token lacks a required claim",
            },
            JwtError::InvalidClaim(claim) => match *claim {
                "exp" => "The token exp claim is invalid",
                "nbf" => "The token nbf claim is invalid",
                "iat" => "The token iat claim is invalid",
                "iss" => "The token iss claim is invalid",
                "aud" => "The token aud claim is invalid",
                "sub" => "The token sub claim is invalid",
                _ => "The token has an invalid claim",
            },
            JwtError::WrongIssuer => "The token issuer is not accepted",
            JwtError::WrongAudience => "The token audience is not accepted",
            JwtError::LifetimeTooLong => "The token lifetime is longer than allowed",
            JwtError::WrongType => "The token is not of an accepted type",
        }
    }

    /// A stable snake_case id for the log line.
    pub fn code(&self) -> &'static str {
        match self {
            JwtError::Missing => "missing_token",
            JwtError::MalformedHeader => "malformed_auth_header",
            JwtError::Malformed => "malformed_token",
            JwtError::TooLarge => "token_too_large",
            JwtError::DuplicateMember => "duplicate_member",
            JwtError::AlgorithmNotAllowed => "alg_not_allowed",
            JwtError::CriticalHeader => "critical_header",
            JwtError::UnknownKid => "unknown_kid",
            JwtError::KeyMismatch => "key_mismatch",
            JwtError::BadSignature => "bad_signature",
            JwtError::Expired => "token_expired",
            JwtError::NotYetValid => "token_not_yet_valid",
            JwtError::IssuedInFuture => "token_issued_in_future",
            JwtError::TooOld => "token_too_old",
            JwtError::MissingClaim(_) => "missing_claim",
            JwtError::InvalidClaim(_) => "invalid_claim",
            JwtError::WrongIssuer => "wrong_issuer",
            JwtError::WrongAudience => "wrong_audience",
            JwtError::LifetimeTooLong => "token_lifetime_too_long",
            JwtError::WrongType => "wrong_token_type",
        }
    }

    /// True when the request itself is malformed (400 `invalid_request`, RFC 6750 §3.1); every
    /// other error is 401, with `invalid_token` except for `Missing`, which gets a bare
    /// challenge. An ambiguous request (a cookie sent twice, two identifiers) is refused
    /// before a JWT is looked for (`identifiers::Ambiguity`).
    pub fn is_request_error(&self) -> bool {
        matches!(self, JwtError::MalformedHeader)
    }
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl std::error::Error for JwtError {}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [JwtError; 22] = [
        JwtError::Missing,
        JwtError::MalformedHeader,
        JwtError::Malformed,
        JwtError::TooLarge,
        JwtError::DuplicateMember,
        JwtError::AlgorithmNotAllowed,
        JwtError::CriticalHeader,
        JwtError::UnknownKid,
        JwtError::KeyMismatch,
        JwtError::BadSignature,
        JwtError::Expired,
        JwtError::NotYetValid,
        JwtError::IssuedInFuture,
        JwtError::TooOld,
        JwtError::MissingClaim("exp"),
        JwtError::MissingClaim("other"),
        JwtError::InvalidClaim("aud"),
        JwtError::InvalidClaim("other"),
        JwtError::WrongIssuer,
        JwtError::WrongAudience,
        JwtError::LifetimeTooLong,
        JwtError::WrongType,
    ];

    #[test]
    fn descriptions_fit_in_a_quoted_header_value() {
        for e in ALL {
            let d = e.description();
            assert!(!d.is_empty());
            assert!(
                d.bytes()
                    .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'),
                "{d}"
            );
            assert!(
                !d.ends_with('.'),
                "the problem detail adds the full stop: {d}"
            );
        }
    }

    #[test]
    fn codes_are_snake_case() {
        for e in ALL {
            assert!(
                e.code()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{}",
                e.code()
            );
        }
    }

    #[test]
    fn only_a_malformed_header_is_a_request_error() {
        for e in ALL {
            assert_eq!(
                e.is_request_error(),
                matches!(e, JwtError::MalformedHeader),
                "{e:?}"
            );
        }
    }
}
