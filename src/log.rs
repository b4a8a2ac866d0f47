//! The one JSON log line per request. Holds identifiers and timings only: never a JWT, an
//! access token, a secret, an `api-key` or a query string (queries sometimes carry tokens).

use serde::Serialize;

#[derive(Debug, Default, Serialize)]
pub struct RequestLog {
    pub request_id: String,
    pub method: String,
    pub path: String,
    /// The matched route's prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    pub status: u16,
    /// `forwarded`, or the stable code of the gateway error that answered.
    pub outcome: &'static str,
    /// `kid` and `iss` of the verified customer JWT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// How the customer JWT was found good: `signature` (checked now) or `cache` (checked
    /// earlier in this isolate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_check: Option<&'static str>,
    /// What fetching `JWKS_URL`'s key set did for this request, when it did more than read
    /// memory: `kv`, `endpoint`, or a failure code such as `jwks_unreachable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks: Option<&'static str>,
    /// Where the access token came from: `memory`, `kv` or `endpoint`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_source: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_ms: Option<u64>,
    pub total_ms: u64,
}

/// Longest identifier copied from a token into the log: `kid` and `iss` come from the caller.
const MAX_FIELD: usize = 128;

impl RequestLog {
    pub fn to_json(&self) -> String {
        // A struct of strings and numbers always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Truncates an attacker-influenced identifier to a sane length on a char boundary.
pub fn clip(s: &str) -> String {
    match s.char_indices().nth(MAX_FIELD) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}
