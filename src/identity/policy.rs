//! Per-route policy: what a route requires of a verified identity (`issuers`, `audiences`,
//! `max_lifetime_seconds`, `scopes`, `claims`) and which claims it passes on as headers,
//! compiled once from `ROUTES` and checked against the identity's claims on every request —
//! a verified-token memory hit included — without I/O.
//!
//! Modelled on Envoy's jwt_authn: the route names one requirement; the defaults it does not
//! override (the flat `JWT_ISSUER`/`JWT_AUDIENCE`, or the token's provider) come in as
//! `Defaults`, so the signature check itself never depends on the route.

use std::collections::BTreeMap;

use http::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value};

use crate::config::setting::ConfigError;
use crate::identity::claims::Claims;
use crate::identity::jwt::JwtError;

/// A route's requirement and claim headers. `Default`: nothing beyond a verified identity.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    /// `issuers`: `iss` must be one of them; replaces `JWT_ISSUER` (or, with `JWT_PROVIDERS`,
    /// restricts the providers) for this route.
    pub issuers: Option<Vec<String>>,
    /// `audiences`: `aud` must contain one of them; replaces `JWT_AUDIENCE` or the provider's.
    pub audiences: Option<Vec<String>>,
    /// `max_lifetime_seconds`: `exp − iat` at most this; replaces the provider's.
    pub max_lifetime_secs: Option<u64>,
    /// `scopes`: every one granted (`scope` or `scp`).
    pub scopes: Vec<String>,
    /// `claims`: every rule holds.
    pub claims: Vec<ClaimRule>,
    /// `claims_to_headers`, in the order given.
    pub claims_to_headers: Vec<ClaimHeader>,
    /// `cors_preflight: "forward"`.
    pub forward_preflight: bool,
}

/// One `claims` entry: the claim at `path` equals one of `allowed` (or, being an array,
/// holds one of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRule {
    pub path: String,
    allowed: Vec<Value>,
}

/// One `claims_to_headers` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimHeader {
    pub header: HeaderName,
    pub path: String,
}

/// What applies where the route sets nothing: the flat settings, or the token's provider.
#[derive(Debug, Clone, Copy, Default)]
pub struct Defaults<'a> {
    /// Empty: any issuer (with `JWT_PROVIDERS` the provider was already matched by `iss`).
    pub issuers: &'a [String],
    /// Empty: any audience.
    pub audiences: &'a [String],
    pub max_lifetime_secs: Option<u64>,
}

/// Which part of the route's requirement a verified identity failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 401 `invalid_token`, as the flat `JWT_ISSUER` check answers.
    Issuers(JwtError),
    /// 401 `invalid_token`.
    Audiences(JwtError),
    /// 401 `invalid_token`.
    MaxLifetime(JwtError),
    /// 403 with the `insufficient_scope` challenge.
    Scopes,
    /// 403 problem+json.
    Claims,
}

impl Refusal {
    /// The log line's `policy` field.
    pub fn policy(self) -> &'static str {
        match self {
            Self::Issuers(_) => "issuers",
            Self::Audiences(_) => "audiences",
            Self::MaxLifetime(_) => "max_lifetime",
            Self::Scopes => "scopes",
            Self::Claims => "claims",
        }
    }
}

/// The policy fields of one `ROUTES` entry, as JSON gave them.
#[derive(Debug, Default)]
pub struct RawPolicy {
    pub issuers: Option<Vec<String>>,
    pub audiences: Option<Vec<String>>,
    pub scopes: Option<Vec<String>>,
    pub claims: Option<Map<String, Value>>,
    pub max_lifetime_seconds: Option<u64>,
    pub claims_to_headers: Option<BTreeMap<String, String>>,
    pub cors_preflight: Option<String>,
}

impl RawPolicy {
    fn has_identity_fields(&self) -> bool {
        self.issuers.is_some()
            || self.audiences.is_some()
            || self.scopes.is_some()
            || self.claims.is_some()
            || self.max_lifetime_seconds.is_some()
            || self.claims_to_headers.is_some()
    }
}

impl Policy {
    /// Checks and compiles a route's policy fields. `verifies`: the route's mode checks an
    /// identity (only `cors_preflight` applies to `public` routes). Errors come from `at`,
    /// which names `ROUTES` and the route.
    pub fn compile(
        raw: RawPolicy,
        verifies: bool,
        at: &dyn Fn(&str) -> ConfigError,
    ) -> Result<Self, ConfigError> {
        if !verifies && raw.has_identity_fields() {
            return Err(at(
                "issuers, audiences, scopes, claims, max_lifetime_seconds and claims_to_headers \
                 apply to jwt, optional, report and opaque routes only",
            ));
        }
        let list = |name: &str, v: Option<Vec<String>>| -> Result<_, ConfigError> {
            match v {
                None => Ok(None),
                Some(l) if l.is_empty() => Err(at(&format!("{name} is empty"))),
                Some(l) if l.iter().any(|s| s.trim().is_empty()) => {
                    Err(at(&format!("{name} holds an empty string")))
                }
                Some(l) => Ok(Some(l)),
            }
        };
        let issuers = list("issuers", raw.issuers)?;
        let audiences = list("audiences", raw.audiences)?;
        let scopes = match list("scopes", raw.scopes)? {
            None => Vec::new(),
            Some(l) if !l.iter().all(|s| is_scope_token(s)) => {
                return Err(at(
                    "scopes holds something that is not an RFC 6749 scope token",
                ))
            }
            Some(l) => l,
        };
        let claims = match raw.claims {
            None => Vec::new(),
            Some(map) if map.is_empty() => return Err(at("claims is empty")),
            Some(map) => map
                .into_iter()
                .map(|(path, want)| ClaimRule::compile(path, want, at))
                .collect::<Result<_, _>>()?,
        };
        let max_lifetime_secs = match raw.max_lifetime_seconds {
            None => None,
            Some(n) if (1..=u64::from(u32::MAX)).contains(&n) => Some(n),
            Some(_) => return Err(at("max_lifetime_seconds must be from 1 to 4294967295")),
        };
        let mut claims_to_headers: Vec<ClaimHeader> = Vec::new();
        for (name, path) in raw.claims_to_headers.unwrap_or_default() {
            let header = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| at("claims_to_headers names something that is not a header name"))?;
            if crate::identity::customer_id::is_reserved(header.as_str()) {
                return Err(at(
                    "claims_to_headers names a header the gateway or HTTP controls \
                     (credentials, host, hop-by-hop, x-request-id, ...)",
                ));
            }
            if claims_to_headers
                .iter()
                .any(|h| same_spelling(h.header.as_str(), header.as_str()))
            {
                return Err(at("claims_to_headers names one header twice"));
            }
            if path.trim().is_empty() {
                return Err(at("claims_to_headers maps a header to an empty claim path"));
            }
            if header
                .as_str()
                .bytes()
                .filter(|&b| b == b'-' || b == b'_')
                .count()
                > 6
            {
                return Err(at(
                    "claims_to_headers names a header with more than 6 '-' or '_'",
                ));
            }
            claims_to_headers.push(ClaimHeader { header, path });
        }
        let forward_preflight = match raw.cors_preflight.as_deref() {
            None => false,
            Some("forward") => true,
            Some(_) => return Err(at("cors_preflight must be \"forward\" when set")),
        };
        Ok(Self {
            issuers,
            audiences,
            max_lifetime_secs,
            scopes,
            claims,
            claims_to_headers,
            forward_preflight,
        })
    }

    /// Checks `claims` against the requirement, `defaults` standing in for what the route
    /// does not set. The 401 parts first (who issued it, for whom, how long-lived), then the
    /// 403 ones (what it grants).
    pub fn check(&self, claims: &Claims, defaults: Defaults<'_>) -> Result<(), Refusal> {
        let issuers = self.issuers.as_deref().unwrap_or(defaults.issuers);
        if !issuers.is_empty() {
            match claims.get("iss") {
                None => return Err(Refusal::Issuers(JwtError::MissingClaim("iss"))),
                Some(Value::String(iss)) if issuers.contains(iss) => {}
                Some(Value::String(_)) => return Err(Refusal::Issuers(JwtError::WrongIssuer)),
                Some(_) => return Err(Refusal::Issuers(JwtError::InvalidClaim("iss"))),
            }
        }
        let audiences = self.audiences.as_deref().unwrap_or(defaults.audiences);
        if !audiences.is_empty() {
            let ok = match claims.get("aud") {
                None => return Err(Refusal::Audiences(JwtError::MissingClaim("aud"))),
                Some(Value::String(one)) => audiences.contains(one),
                Some(Value::Array(many)) if many.iter().all(Value::is_string) => many
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|a| audiences.iter().any(|ours| ours == a)),
                Some(_) => return Err(Refusal::Audiences(JwtError::InvalidClaim("aud"))),
            };
            if !ok {
                return Err(Refusal::Audiences(JwtError::WrongAudience));
            }
        }
        if let Some(max) = self.max_lifetime_secs.or(defaults.max_lifetime_secs) {
            let exp = numeric(claims, "exp").map_err(Refusal::MaxLifetime)?;
            let iat = numeric(claims, "iat").map_err(Refusal::MaxLifetime)?;
            if exp.saturating_sub(iat) > max {
                return Err(Refusal::MaxLifetime(JwtError::LifetimeTooLong));
            }
        }
        if !claims.grants_all(&self.scopes) {
            return Err(Refusal::Scopes);
        }
        if !self.claims.iter().all(|rule| rule.holds(claims)) {
            return Err(Refusal::Claims);
        }
        Ok(())
    }

    /// The claim headers the origin gets for `claims`: each configured name that has a value
    /// to send. Callers' copies of every name are removed on every route, whatever this gives
    /// (`headers::IdentityHeaders`).
    pub fn claim_headers(&self, claims: &Claims) -> Vec<(HeaderName, HeaderValue)> {
        self.claims_to_headers
            .iter()
            .filter_map(|h| Some((h.header.clone(), h.value(claims)?)))
            .collect()
    }
}

impl ClaimRule {
    fn compile(
        path: String,
        want: Value,
        at: &dyn Fn(&str) -> ConfigError,
    ) -> Result<Self, ConfigError> {
        if path.trim().is_empty() {
            return Err(at("claims has an empty claim name"));
        }
        let allowed = match want {
            Value::Array(items) if items.is_empty() => {
                return Err(at("claims lists an empty array of values"))
            }
            Value::Array(items) => items,
            one => vec![one],
        };
        if !allowed
            .iter()
            .all(|v| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)))
        {
            return Err(at(
                "claims values must be a string, number or boolean, or an array of them",
            ));
        }
        Ok(Self { path, allowed })
    }

    /// The claim equals one of the allowed values; a claim that is an array must hold one.
    /// Types are never converted: `"true"` is not `true`, `"1"` is not `1`.
    pub fn holds(&self, claims: &Claims) -> bool {
        match claims.get(&self.path) {
            None => false,
            Some(Value::Array(items)) => items.iter().any(|v| self.admits(v)),
            Some(v) => self.admits(v),
        }
    }

    fn admits(&self, v: &Value) -> bool {
        self.allowed.iter().any(|a| same_scalar(a, v))
    }
}

impl ClaimHeader {
    /// A string as it is; a number or boolean as its JSON text; an array of strings joined
    /// with `,`. Anything else (an object, `null`, a mixed or empty array), an absent claim,
    /// or a value that cannot be a header value (a control character): no header.
    pub fn value(&self, claims: &Claims) -> Option<HeaderValue> {
        let text = match claims.get(&self.path)? {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => {
                let parts: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
                parts.join(",")
            }
            _ => return None,
        };
        HeaderValue::from_bytes(text.as_bytes()).ok()
    }
}

/// Numbers compare by value (`1` and `1.0` are one number); nothing else is converted.
fn same_scalar(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            x.as_f64() == y.as_f64()
        }
        (Value::Number(x), Value::Number(y)) => x == y,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        _ => false,
    }
}

/// A NumericDate claim, required.
fn numeric(claims: &Claims, name: &'static str) -> Result<u64, JwtError> {
    match claims.get(name) {
        None => Err(JwtError::MissingClaim(name)),
        Some(v) => v
            .as_u64()
            .or_else(|| {
                v.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(|f| f as u64)
            })
            .ok_or(JwtError::InvalidClaim(name)),
    }
}

/// Header names compared as origins read them: case-insensitive (a `HeaderName` is lower case
/// already), `_` the same as `-`.
fn same_spelling(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes().zip(b.bytes()).all(|(x, y)| {
            let dash = |c: u8| if c == b'_' { b'-' } else { c };
            dash(x) == dash(y)
        })
}

/// RFC 6749 §3.3 `scope-token`: one or more of %x21 / %x23-5B / %x5D-7E. It goes into the
/// quoted `scope="..."` of the 403 challenge, so no space, `"` or backslash.
fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}
