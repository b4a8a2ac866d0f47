//! The introspection exchange (RFC 7662): the request we send (§2.1) and what we accept back
//! (§2.2).
//!
//! Parsing is tolerant where real endpoints differ (Keycloak, Okta and ORY each add their own
//! members; `exp` as a number or a numeric string) and strict where being wrong would let an
//! identifier through: only a JSON `true` in `active` is active, and an `exp` that has passed
//! makes an answer inactive whatever `active` says.

use http::HeaderMap;
use serde_json::{Map, Value};

use crate::claims::Claims;
use crate::token::TokenConfig;

/// Most of an answer we will read; real ones are well under 2 KiB.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// Why the endpoint gave no usable answer. Carries no identifier and no endpoint text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntrospectionError {
    Timeout,
    Unreachable,
    /// Anything but 200 (RFC 7662 §2.2 answers 200 for active and inactive alike).
    Status(u16),
    /// Not a JSON object, or larger than `MAX_ANSWER_BYTES`.
    NotJson,
    /// No `active` member: the one member the RFC requires.
    NoActive,
    /// A time member (`exp`, `nbf`) that is not a NumericDate: the answer's lifetime is unknown.
    BadTime(&'static str),
}

impl IntrospectionError {
    /// A stable id for the log line.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Timeout => "introspection_timeout",
            Self::Unreachable => "introspection_unreachable",
            Self::Status(_) if self.is_client_misconfigured() => "introspection_client_rejected",
            Self::Status(_) => "introspection_status",
            Self::NotJson => "introspection_not_json",
            Self::NoActive => "introspection_no_active",
            Self::BadTime(_) => "introspection_bad_time",
        }
    }

    /// The endpoint refused our client credentials: only an operator can fix that.
    pub fn is_client_misconfigured(&self) -> bool {
        matches!(self, Self::Status(401 | 403))
    }

    /// For the log line's `config_error`: what the operator must look at, naming settings only.
    pub fn config_problem(&self) -> Option<&'static str> {
        self.is_client_misconfigured().then_some(
            "the introspection endpoint refused the client credentials: check CLIENT_ID, CLIENT_SECRET, TOKEN_CLIENT_AUTH and INTROSPECTION_URL",
        )
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

/// Headers and form body of the request for `identifier`: `token=<id>`, form-urlencoded,
/// `accept: application/json`, the gateway authenticated as its OAuth client per
/// `TOKEN_CLIENT_AUTH` (the same way as at the token endpoint).
pub fn request(identifier: &str, client: &TokenConfig) -> (HeaderMap, Vec<u8>) {
    crate::token::client_form(client, &[("token", identifier)])
}

/// Reads the endpoint's answer, `now_secs` being when it arrived.
pub fn parse_answer(status: u16, body: &[u8], now_secs: u64) -> Result<Answer, IntrospectionError> {
    if status != 200 {
        return Err(IntrospectionError::Status(status));
    }
    if body.len() > MAX_ANSWER_BYTES {
        return Err(IntrospectionError::NotJson);
    }
    let map: Map<String, Value> =
        serde_json::from_slice(body).map_err(|_| IntrospectionError::NotJson)?;
    let active = map.get("active").ok_or(IntrospectionError::NoActive)?;
    let exp = numeric_date(&map, "exp")?;
    let nbf = numeric_date(&map, "nbf")?;
    // `"active": "true"` is not `true`: a string here means an endpoint we do not understand,
    // and the safe reading of that is "not active".
    if active != &Value::Bool(true)
        || exp.is_some_and(|exp| now_secs >= exp)
        || nbf.is_some_and(|nbf| nbf > now_secs)
    {
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
