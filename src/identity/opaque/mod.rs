//! Opaque customer identifiers (cookie sessions): identifiers that are not JWTs, vouched for by
//! the company's RFC 7662 introspection endpoint (`INTROSPECTION_URL`).
//!
//! No I/O of its own: the cache is handed the HTTP client and the clock.
//!
//! - `extract`: `customer-auth: <scheme> <id>`, then `Authorization: Bearer <id>`, then the
//!   cookie `SESSION_COOKIE` (read with the other sources by `crate::identity::identifiers`).
//! - `introspect`: the request we send (RFC 7662 §2.1) and what we accept back (§2.2).
//! - `cache`: the isolate's answers, keyed by the identifier's SHA-256; one call per identifier
//!   at a time; a back-off after failures.

mod cache;
mod extract;
mod introspect;

pub use cache::{
    IntrospectionSource, IntrospectionUnavailable, Keep, SessionCache, Unvouched, Vouched,
    ABANDON_GRACE_MS, ACTIVE_MAX_MS, ENTRY_OVERHEAD, INACTIVE_MS, MAX_BYTES, MAX_ENTRIES,
};
pub use extract::{extract, Identifier, IdentifierSource, MAX_IDENTIFIER_BYTES};
pub use introspect::{parse_answer, request, Answer, Blame, IntrospectionError, MAX_ANSWER_BYTES};

use std::fmt;

use crate::config::setting::{
    endpoint_url, number, optional, ConfigError, ConfigErrors, Lookup, Problems,
};

const URL: &str = "INTROSPECTION_URL";
const TIMEOUT: &str = "INTROSPECTION_TIMEOUT_MS";

/// The introspection settings, read once per isolate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntrospectionSettings {
    /// `INTROSPECTION_URL`, used verbatim.
    pub url: String,
    /// `INTROSPECTION_TIMEOUT_MS`: time allowed for the endpoint's answer. Defaults to 5000.
    pub timeout_ms: u64,
}

impl IntrospectionSettings {
    /// `None` when `INTROSPECTION_URL` is unset, which is an error when `required` (a route is
    /// `opaque`).
    pub fn from_settings(get: Lookup<'_>, required: bool) -> Result<Option<Self>, ConfigErrors> {
        let Some(raw) = optional(get, URL) else {
            return if required {
                Err(ConfigError::new(URL, "is required when a route is opaque").into())
            } else {
                Ok(None)
            };
        };
        let mut p = Problems::default();
        let url = p.take(endpoint_url(&raw).map_err(|why| ConfigError::new(URL, why)));
        let timeout_ms = p.take(number(get, TIMEOUT, 5_000, 1..=60_000));
        p.finish(|| {
            Some(Some(Self {
                url: url?,
                timeout_ms: timeout_ms?,
            }))
        })
    }
}

/// Why a request's opaque identifier was not accepted. Carries no identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpaqueError {
    /// No identifier in `customer-auth`, `Authorization: Bearer` or `SESSION_COOKIE`.
    Missing,
    /// `customer-auth` is not `<scheme> <id>`, or is sent twice; `Authorization: Bearer`
    /// without an identifier, or twice.
    MalformedHeader,
    /// Longer than `MAX_IDENTIFIER_BYTES`; refused before hashing or introspecting.
    TooLarge,
    /// The endpoint says `"active": false` (or not `true`), or the answer's `exp` has passed.
    Inactive,
}

impl OpaqueError {
    /// RFC 6750 `error_description`: fixed text that fits a quoted header value.
    pub fn description(&self) -> &'static str {
        match self {
            Self::Missing => "No customer identifier was sent",
            Self::MalformedHeader => "The customer-auth or Authorization header is malformed",
            Self::TooLarge => "The customer identifier is too large",
            Self::Inactive => "The customer identifier is not active",
        }
    }

    /// A stable snake_case id for the log line.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "missing_identifier",
            Self::MalformedHeader => "malformed_auth_header",
            Self::TooLarge => "identifier_too_large",
            Self::Inactive => "identifier_inactive",
        }
    }

    /// A malformed request (400 `invalid_request`) rather than a bad identifier (401). An
    /// ambiguous one (the session cookie twice, two identifiers) is refused before this
    /// extraction (`identifiers::Ambiguity`).
    pub fn is_request_error(&self) -> bool {
        matches!(self, Self::MalformedHeader)
    }
}

impl fmt::Display for OpaqueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_required_only_for_opaque_routes() {
        let none = |_: &str| None;
        assert_eq!(IntrospectionSettings::from_settings(&none, false), Ok(None));
        let err = IntrospectionSettings::from_settings(&none, true).unwrap_err();
        assert_eq!(err.settings(), [URL]);

        let get = |n: &str| match n {
            URL => Some("https://idp.example/introspect".to_string()),
            _ => None,
        };
        let s = IntrospectionSettings::from_settings(&get, true)
            .unwrap()
            .unwrap();
        assert_eq!(s.timeout_ms, 5_000);
    }

    #[test]
    fn bad_settings_are_named_not_echoed() {
        for (name, value) in [
            (URL, "not a url"),
            (URL, "https://user:pw@idp.example/x"),
            (TIMEOUT, "99999999"),
            (TIMEOUT, "soon"),
        ] {
            let get = |n: &str| {
                if n == name {
                    Some(value.to_string())
                } else if n == URL {
                    Some("https://idp.example/introspect".to_string())
                } else {
                    None
                }
            };
            let err = IntrospectionSettings::from_settings(&get, true).unwrap_err();
            assert_eq!(err.settings(), [name], "{value}");
            assert!(!err.to_string().contains(value), "{value}");
        }
    }

    #[test]
    fn descriptions_fit_in_a_quoted_header_value() {
        for e in [
            OpaqueError::Missing,
            OpaqueError::MalformedHeader,
            OpaqueError::TooLarge,
            OpaqueError::Inactive,
        ] {
            assert!(e
                .description()
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'));
        }
    }
}
