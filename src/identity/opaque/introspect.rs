//! The introspection exchange (RFC 7662): the request we send (§2.1) and what we accept back
//! (§2.2).
//!
//! Parsing is tolerant where real endpoints differ (Keycloak, Okta and ORY each add their own
//! members; `exp` as a number or a numeric string) and strict where being wrong would let an
//! identifier through: only a JSON `true` in `active` is active, and an `exp` that has passed
//! makes an answer inactive whatever `active` says.
//!
//! Whose fault a failure is decides what it costs (`IntrospectionError::blame`): the endpoint's
//! own failures (unreachable, timeout, 5xx, 408, 429, a body that is not JSON) back it off for
//! every identifier; a refusal of the gateway's client credentials (401, 403), or an answer no
//! RFC 7662 endpoint gives (a redirect, 404, 405), is a configuration problem; and a problem
//! with one identifier's answer (too large, not an object, `active` missing or not a boolean,
//! an unusable `exp` or `nbf`, a 400, 409, 413 or 422 about the request it was sent) makes that
//! identifier inactive and costs no other request anything: the caller chose the identifier,
//! so they must not be able to switch introspection off for everyone with it.

use http::HeaderMap;
use serde_json::{Map, Value};

use crate::identity::claims::Claims;
use crate::token::TokenConfig;

/// Most of an answer we will read; real ones are well under 2 KiB.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// Why the endpoint gave no usable answer. Carries no identifier and no endpoint text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntrospectionError {
    Timeout,
    /// Connection refused, reset, or broken off before the whole answer arrived.
    Unreachable,
    /// Anything but 200 (RFC 7662 §2.2 answers 200 for active and inactive alike).
    Status(u16),
    /// Not JSON at all (an HTML error page, say).
    NotJson,
    /// Larger than `MAX_ANSWER_BYTES`.
    TooLarge,
    /// JSON, but not an object.
    NotAnObject,
    /// No `active` member: the one member the RFC requires.
    NoActive,
    /// `active` is not a JSON boolean (`"true"`, `1`).
    BadActive,
    /// A time member (`exp`, `nbf`) that is not a NumericDate: the answer's lifetime is unknown.
    BadTime(&'static str),
    /// `private_key_jwt`: the platform refused to sign with `CLIENT_PRIVATE_KEY`; the endpoint
    /// was not called.
    ClientKey,
    /// A provider's `introspect` has no `url` and its discovery document names no
    /// `introspection_endpoint`: nothing was called.
    NoEndpoint,
}

/// Whose problem an introspection failure is, which decides what it costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The endpoint failed: it is probed again, one request at a time, and meanwhile uncached
    /// identifiers get 503.
    Endpoint,
    /// The endpoint refused the gateway's client credentials, or answered as no introspection
    /// endpoint would (a redirect, 404): an operator must act, so it is tried again in a minute,
    /// and meanwhile uncached identifiers get 503.
    Configuration,
    /// The answer about this identifier is unusable: this identifier is inactive (401), and
    /// nothing else changes.
    Identifier,
}

impl IntrospectionError {
    /// A stable id for the log line.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Timeout => "introspection_timeout",
            Self::Unreachable => "introspection_unreachable",
            Self::Status(401 | 403) => "introspection_client_rejected",
            Self::Status(_) => "introspection_status",
            Self::NotJson => "introspection_not_json",
            Self::TooLarge => "introspection_too_large",
            Self::NotAnObject => "introspection_not_an_object",
            Self::NoActive => "introspection_no_active",
            Self::BadActive => "introspection_bad_active",
            Self::BadTime(_) => "introspection_bad_time",
            Self::ClientKey => "introspection_client_key_unusable",
            Self::NoEndpoint => "introspection_no_endpoint",
        }
    }

    /// Whose problem this is (see the module's doc).
    pub fn blame(&self) -> Blame {
        match self {
            Self::Timeout | Self::Unreachable | Self::NotJson => Blame::Endpoint,
            // 408: the endpoint's own deadline; 429: it is shedding load.
            Self::Status(408 | 429 | 500..) => Blame::Endpoint,
            // What the endpoint says of the request that carried this identifier (a malformed
            // or oversized one): another identifier's request is not concerned.
            Self::Status(400 | 409 | 413 | 422) => Blame::Identifier,
            Self::Status(_) | Self::ClientKey | Self::NoEndpoint => Blame::Configuration,
            Self::TooLarge
            | Self::NotAnObject
            | Self::NoActive
            | Self::BadActive
            | Self::BadTime(_) => Blame::Identifier,
        }
    }

    /// The endpoint refused our client credentials, or is not an introspection endpoint: only
    /// an operator can fix that.
    pub fn is_client_misconfigured(&self) -> bool {
        self.blame() == Blame::Configuration
    }

    /// For the log line's `config_error`: what the operator must look at, naming settings only.
    pub fn config_problem(&self) -> Option<&'static str> {
        match self {
            Self::Status(401 | 403) => Some(
                "the introspection endpoint refused the client credentials: check CLIENT_ID, CLIENT_SECRET (CLIENT_PRIVATE_KEY with private_key_jwt), TOKEN_CLIENT_AUTH and INTROSPECTION_URL (or the provider's introspect.url)",
            ),
            Self::ClientKey => Some(
                "the platform could not sign with CLIENT_PRIVATE_KEY: check that its private members match its public ones",
            ),
            Self::NoEndpoint => Some(
                "the issuer's discovery document names no introspection_endpoint: give the provider's introspect.url",
            ),
            _ if self.is_client_misconfigured() => Some(
                "the introspection endpoint answered as no RFC 7662 endpoint would (a redirect, 404 or 405): check INTROSPECTION_URL (or the provider's introspect.url)",
            ),
            _ => None,
        }
    }
}

/// What the endpoint said about one identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `"active": true`, and not past its `exp` (nor before its `nbf`). `exp_secs` bounds how
    /// long it may be remembered.
    Active {
        claims: Claims,
        exp_secs: Option<u64>,
    },
    Inactive,
}

/// The form of the request for `identifier`: `token=<id>`; `token::post_form` sends it
/// form-urlencoded, `accept: application/json`, the gateway authenticated as its OAuth client
/// per `TOKEN_CLIENT_AUTH` (the same way as at the token endpoint).
pub fn pairs(identifier: &str) -> [(&'static str, &str); 1] {
    [("token", identifier)]
}

/// Headers and form body of the request for `identifier` (`pairs`), as `token::post_form`
/// sends them with a client secret (with `private_key_jwt`, it signs the assertion first).
pub fn request(identifier: &str, client: &TokenConfig) -> (HeaderMap, Vec<u8>) {
    crate::token::client_form(client, &pairs(identifier), None)
}

/// Reads the endpoint's answer, `now_secs` being when it arrived.
pub fn parse_answer(status: u16, body: &[u8], now_secs: u64) -> Result<Answer, IntrospectionError> {
    if status != 200 {
        return Err(IntrospectionError::Status(status));
    }
    if body.len() > MAX_ANSWER_BYTES {
        return Err(IntrospectionError::TooLarge);
    }
    let value: Value = serde_json::from_slice(body).map_err(|_| IntrospectionError::NotJson)?;
    let Value::Object(map) = value else {
        return Err(IntrospectionError::NotAnObject);
    };
    // `"active": "true"` is not `true`: anything but a boolean here means an answer we do not
    // understand, and the safe reading of that is "not active".
    let active = match map.get("active") {
        None => return Err(IntrospectionError::NoActive),
        Some(Value::Bool(active)) => *active,
        Some(_) => return Err(IntrospectionError::BadActive),
    };
    let exp = numeric_date(&map, "exp")?;
    let nbf = numeric_date(&map, "nbf")?;
    if !active || exp.is_some_and(|exp| now_secs >= exp) || nbf.is_some_and(|nbf| nbf > now_secs) {
        return Ok(Answer::Inactive);
    }
    Ok(Answer::Active {
        claims: Claims::new(map, body.len()),
        exp_secs: exp,
    })
}

/// A NumericDate: a non-negative JSON number of seconds (fractions dropped), or the same as a
/// numeric string, which some endpoints send.
fn numeric_date(
    map: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<u64>, IntrospectionError> {
    let bad = IntrospectionError::BadTime(name);
    let secs = match map.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64().ok_or(bad.clone())?,
        Some(Value::String(s)) => crate::token::decimal_string(s).ok_or(bad.clone())?,
        Some(_) => return Err(bad),
    };
    if secs.is_finite() && secs >= 0.0 {
        // `as` saturates: an absurdly far date becomes u64::MAX, which is still far.
        Ok(Some(secs as u64))
    } else {
        Err(bad)
    }
}
