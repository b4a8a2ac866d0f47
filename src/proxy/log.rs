//! The one JSON log line per request, and one per background task (refresh ahead, scheduled
//! run). Holds identifiers and timings only: never a JWT, an opaque customer identifier (nor
//! its digest), an access token, a secret, an `api-key` or a query string (queries sometimes
//! carry tokens).

use http::HeaderMap;
use serde::Serialize;

use crate::edge::headers;
use crate::token::RefreshOutcome;

#[derive(Debug, Default, Serialize)]
pub struct RequestLog {
    pub request_id: String,
    pub method: String,
    /// The normalized path (what was matched and forwarded); the path as received, clipped,
    /// when it was refused.
    pub path: String,
    /// Why the path was refused (`outcome` `invalid_path`): `encoded_slash`, `semicolon`, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_problem: Option<&'static str>,
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
    /// Why the request was refused as naming its caller more than one way (outcome
    /// `two_identifiers`, `duplicate_jwt_cookie`, `duplicate_session_cookie`): the two places,
    /// among `customer-auth`, `authorization`, `jwt_cookie`, `session_cookie` (a cookie sent
    /// twice: its name twice). Never the identifiers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier_conflict: Option<[&'static str; 2]>,
    /// What vouched for the caller: `jwt` (a customer JWT) or `opaque` (an identifier the
    /// introspection endpoint vouched for). Absent on public routes and before authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<&'static str>,
    /// Where the introspection answer came from: `memory` or `endpoint` (`opaque` routes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub introspection: Option<&'static str>,
    /// The introspection endpoint's failure, when this request called it and it failed (e.g.
    /// `introspection_timeout`), or `backing_off` when an earlier failure answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub introspection_error: Option<&'static str>,
    /// Where the subject's cut-off (`revoked:v1:` in KV) was read: `list` (not in the isolate's
    /// listing of the entries: none, no read), `memory`, `kv`, `stale` (KV failed; an older
    /// listing or read served) or `kv_failed` (nothing to serve: 503).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cutoff: Option<&'static str>,
    /// The part of the route's policy that refused the verified identity: `issuers`,
    /// `audiences`, `max_lifetime`, `scopes` or `claims` (on a `report` route: that would have).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<&'static str>,
    /// Why a route's `bind` refused (on a `report` route: would have): `mismatch`,
    /// `absent_segment`, `absent_header`, `repeated_header`, `absent_claim` or `no_identity`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binding: Option<&'static str>,
    /// Why a route's `client_certificate` refused: `absent`, `not_verified`, `revoked` or
    /// `not_listed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<&'static str>,
    /// On `report` routes: what a `jwt` route would have answered: `forwarded`, or the outcome
    /// code of the refusal (`missing_token`, `token_expired`, `insufficient_scope`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<&'static str>,
    /// `forwarded` when the request was a CORS preflight forwarded without credentials
    /// (`cors_preflight: "forward"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors_preflight: Option<&'static str>,
    /// What fetching `JWKS_URL`'s key set did for this request, when it did more than read
    /// memory: `kv`, `endpoint`, or a failure code such as `jwks_unreachable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks: Option<&'static str>,
    /// Where the access token came from: `memory`, `kv`, `endpoint` or `coordinator`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_source: Option<&'static str>,
    /// The route's rate limit, when it did not simply pass: `limited` (answered 429) or
    /// `error` (the binding failed; the request was served).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<&'static str>,
    /// What the route's rate limit counted the request by when not the key's own value: `ip`
    /// (the request had no value for the key: counted under the caller's address) or
    /// `no_address` (no `cf-connecting-ip` either: the one bucket of such requests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_key: Option<&'static str>,
    /// Present when this request asked the token coordinator and got no usable answer:
    /// `unreachable` or `timeout` (the isolate then filled its own cache).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coordinator: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_ms: Option<u64>,
    pub total_ms: u64,
    /// `ahead`: this request started the isolate's background refresh (its own line follows);
    /// `after_401`: the origin refused the token, this request dropped it and got a new one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_refresh: Option<&'static str>,
    /// Present when the origin answered 401: `refusal` (it refused the gateway's access token,
    /// per `ORIGIN_TOKEN_REFUSAL`) or `passed` (its answer to the caller, returned as sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_401: Option<&'static str>,
    /// Present when the origin's 401 was a refusal: whether the request was sent again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed: Option<bool>,
    /// Why a refusal was not replayed: `body_not_kept` or `no_new_token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_skipped: Option<&'static str>,
    /// The token endpoint's failure, when this request called it and it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_error: Option<&'static str>,
    /// Set when an operator must act: the token endpoint refusing our client (what to fix), or
    /// `origin_refused_token`, the origin refusing a token just obtained for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_error: Option<&'static str>,
    /// Time spent proving the caller's identity: the key set and signature check, or the
    /// introspection call (in a Worker the clock moves only across I/O: this is their I/O).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_ms: Option<u64>,
    /// Where the request was sent: the origin's host and path, never the query.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// The Cloudflare data center that ran the request (`request.cf.colo`, e.g. `AMS`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub colo: Option<String>,
    /// The request's Ray ID: the id of Cloudflare's `cf-ray` header, without its data center.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ray: Option<String>,
}

/// The line of a background task: `event` is `token_refresh` (ahead of expiry, after a
/// request) or `scheduled` (the cron trigger).
#[derive(Debug, Default, Serialize)]
pub struct TaskLog {
    pub event: &'static str,
    /// What the token refresh did: `fresh`, `in_flight`, `backing_off`, `refreshed`, `failed`.
    pub token: &'static str,
    /// Where a refreshed token came from: `kv` (another isolate refreshed it), `coordinator`
    /// or `endpoint`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_source: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_error: Option<&'static str>,
    /// What the `JWKS_URL` refresh did, when it did anything: `kv`, `endpoint` or a failure
    /// code such as `jwks_unreachable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks: Option<&'static str>,
    pub total_ms: u64,
}

impl TaskLog {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Longest identifier copied from a token into the log: `kid` and `iss` come from the caller.
const MAX_FIELD: usize = 128;

impl RequestLog {
    pub fn to_json(&self) -> String {
        // A struct of strings and numbers always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The `upstream` field of an origin URL: host and path, without the scheme, the query or a
/// fragment (a query sometimes carries a token), clipped.
pub fn upstream(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    clip(&rest[..end])
}

/// Truncates an attacker-influenced identifier to a sane length on a char boundary.
pub fn clip(s: &str) -> String {
    match s.char_indices().nth(MAX_FIELD) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// The isolate's one `config_error` line: every setting with a problem, and each problem as
/// the 500's `detail` words it (names, never values). `within`: what read the settings, when
/// it is not the gateway itself (`coordinator`).
pub fn config_error_line(
    problems: &crate::config::setting::ConfigErrors,
    within: Option<&'static str>,
) -> String {
    #[derive(Serialize)]
    struct Line<'a> {
        event: &'static str,
        settings: Vec<&'a str>,
        problems: Vec<String>,
        #[serde(rename = "in", skip_serializing_if = "Option::is_none")]
        within: Option<&'static str>,
    }
    serde_json::to_string(&Line {
        event: "config_error",
        settings: problems.settings(),
        problems: problems.iter().map(ToString::to_string).collect(),
        within,
    })
    .unwrap_or_default()
}

impl TaskLog {
    /// The line of a token refresh (`event`: ahead of expiry, scheduled, the coordinator's).
    pub fn refreshed(event: &'static str, outcome: &RefreshOutcome, total_ms: u64) -> Self {
        TaskLog {
            event,
            token: outcome.as_str(),
            token_source: outcome.source().map(|s| s.as_str()),
            token_error: outcome.error().map(|e| e.code()),
            config_error: outcome.error().and_then(|e| e.config_problem()),
            jwks: None,
            total_ms,
        }
    }
}

/// The caller's `x-request-id` when it is a sane identifier, else a fresh random one: the id
/// goes into headers and logs, so arbitrary caller text is not copied.
pub fn request_id(headers: &HeaderMap) -> String {
    let from_caller = headers
        .get(headers::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| {
            (1..=128).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(&b))
        });
    match from_caller {
        Some(id) => id.to_string(),
        None => random_id(),
    }
}

fn random_id() -> String {
    let bytes = random_bytes();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(32);
    for b in bytes {
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    id
}

/// 16 random bytes, drawn from a pool that `getrandom` refills 64 ids at a time: in a Worker
/// each `getrandom` call is four calls into JavaScript (`crypto.getRandomValues` on a fresh
/// typed array, then a copy).
fn random_bytes() -> [u8; 16] {
    use std::cell::RefCell;
    const POOL: usize = 16 * 64;
    thread_local! {
        static RANDOM: RefCell<([u8; POOL], usize)> = const { RefCell::new(([0; POOL], POOL)) };
    }
    RANDOM.with_borrow_mut(|(pool, used)| {
        if *used == POOL {
            // Ids only correlate log lines: without entropy an all-zero id beats failing the
            // request.
            if getrandom::getrandom(pool).is_err() {
                pool.fill(0);
            }
            *used = 0;
        }
        let mut out = [0u8; 16];
        out.copy_from_slice(&pool[*used..*used + 16]);
        *used += 16;
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::setting::{ConfigError, ConfigErrors};

    #[test]
    fn the_config_error_line_names_every_setting_once() {
        let problems = ConfigErrors::from(vec![
            ConfigError::at("ROUTES", "[0].auth", "must be one of jwt, public"),
            ConfigError::missing("API_KEY"),
            ConfigError::at("ROUTES", "[1]", "has no prefix"),
        ]);
        assert_eq!(
            config_error_line(&problems, None),
            r#"{"event":"config_error","settings":["ROUTES","API_KEY"],"problems":["ROUTES[0].auth: must be one of jwt, public","API_KEY is required but not set","ROUTES[1]: has no prefix"]}"#
        );
        assert!(
            config_error_line(&problems, Some("coordinator")).ends_with(r#","in":"coordinator"}"#)
        );
    }
}
