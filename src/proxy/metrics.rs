//! The `METRICS` data points (Workers Analytics Engine): what each index, blob and double of a
//! point holds, built from the finished log lines so that a point never says more than the
//! line does (and says less: no path, no `kid`, no request id).
//!
//! One point per request, and one per dependency event: each token fill beyond KV, coordinator
//! ask, key set fetch and introspection call that the request made, and each background run
//! (the refresh ahead, the scheduled run). Every blob is a fixed code, the method (a standard
//! one, or `OTHER`), or one of three values from configuration and the platform: the route's
//! prefix, the verified issuer, the data center. Never a token, identifier, `sub`, secret,
//! customer id, path or query: none of them is in the blobs' sources.
//!
//! The order of blobs and doubles is part of the contract (queries name them `blob1`…,
//! `double1`…); docs/configuration.md's "Metrics" section is the schema.

use crate::io::{DataPoint, Metrics};
use crate::proxy::log::{RequestLog, TaskLog};

/// Analytics Engine refuses an index longer than 96 bytes.
pub const INDEX_BYTES: usize = 96;
/// The issuer blob, clipped like the log's `iss`.
pub const ISSUER_BYTES: usize = 128;
/// Every other blob from configuration or the platform (the route, the data center): a route
/// prefix longer than this is cut, so that a point stays far below the dataset's 16 KB.
pub const BLOB_BYTES: usize = 256;

/// What the absent value of a blob or index is written as (a query can then group by it).
pub const NONE: &str = "-";

/// Writes the request's point, then one per dependency event it caused.
pub fn record_request(sink: &impl Metrics, log: &RequestLog) {
    sink.write(&request_point(log));
    for point in request_events(log) {
        sink.write(&point);
    }
}

/// Writes one point per dependency a background run used.
pub fn record_task(sink: &impl Metrics, log: &TaskLog) {
    for point in task_points(log) {
        sink.write(&point);
    }
}

/// The request's point. `indexes`: the route's prefix (cut to 96 bytes) or `-`. `blobs`:
/// outcome, route, method, identity kind, token source, JWT check or introspection source,
/// issuer, colo, refusal reason. `doubles`: status, total, token, origin and auth
/// milliseconds (0 when the phase did not run).
pub fn request_point(log: &RequestLog) -> DataPoint<'_> {
    let route = log.route.as_deref();
    DataPoint {
        indexes: vec![route.map_or(NONE, |r| cut(r, INDEX_BYTES))],
        blobs: vec![
            log.outcome,
            route.map_or(NONE, |r| cut(r, BLOB_BYTES)),
            method(&log.method),
            log.identity.unwrap_or(NONE),
            log.token_source.unwrap_or(NONE),
            log.jwt_check.or(log.introspection).unwrap_or(NONE),
            issuer(log),
            colo(log),
            reason(log),
        ],
        doubles: vec![
            f64::from(log.status),
            ms(Some(log.total_ms)),
            ms(log.token_ms),
            ms(log.origin_ms),
            ms(log.auth_ms),
        ],
    }
}

/// The dependency events of one request, in the order they happen: key set, introspection,
/// coordinator, token endpoint. Each: `indexes: ["event:<name>"]`, `blobs: ["event:<name>",
/// outcome (`ok` or the failure's code), trigger (`request`), source, route, colo]`,
/// `doubles: [the request's status, the phase's milliseconds]`.
pub fn request_events(log: &RequestLog) -> Vec<DataPoint<'_>> {
    let route = log.route.as_deref().map_or(NONE, |r| cut(r, BLOB_BYTES));
    let event = |name: &'static str, outcome, source, phase_ms| DataPoint {
        indexes: vec![name],
        blobs: vec![name, outcome, "request", source, route, colo(log)],
        doubles: vec![f64::from(log.status), ms(phase_ms)],
    };
    let mut events = Vec::new();
    if let Some(jwks) = log.jwks {
        events.push(match jwks {
            "kv" | "endpoint" => event(JWKS, "ok", jwks, log.auth_ms),
            failure => event(JWKS, failure, "endpoint", log.auth_ms),
        });
    }
    if log.introspection == Some("endpoint") {
        let outcome = log.introspection_error.unwrap_or("ok");
        events.push(event(INTROSPECTION, outcome, "endpoint", log.auth_ms));
    }
    if let Some(failure) = log.coordinator {
        events.push(event(COORDINATOR, failure, NONE, log.token_ms));
    } else if log.token_source == Some("coordinator") {
        events.push(event(COORDINATOR, "ok", NONE, log.token_ms));
    }
    match (log.token_error, log.token_source) {
        (Some(error), _) => events.push(event(TOKEN, error, "endpoint", log.token_ms)),
        (None, Some(source @ ("endpoint" | "coordinator"))) => {
            events.push(event(TOKEN, "ok", source, log.token_ms))
        }
        _ => {}
    }
    events
}

/// The points of a background run: `token_refresh` (trigger `ahead`) is one token refresh;
/// `scheduled` is a token refresh and, when the key set was refreshed too, a key set fetch
/// (trigger `scheduled`). Same layout as `request_events`, route `-`, status 0.
pub fn task_points(log: &TaskLog) -> Vec<DataPoint<'_>> {
    let trigger = match log.event {
        "token_refresh" => "ahead",
        other => other,
    };
    let event = |name: &'static str, outcome, source| DataPoint {
        indexes: vec![name],
        blobs: vec![name, outcome, trigger, source, NONE, NONE],
        doubles: vec![0.0, ms(Some(log.total_ms))],
    };
    let outcome = match (log.token, log.token_error) {
        ("refreshed", _) => "ok",
        ("failed", Some(error)) => error,
        (other, _) => other,
    };
    let mut points = vec![event(TOKEN, outcome, log.token_source.unwrap_or(NONE))];
    if let Some(jwks) = log.jwks {
        points.push(match jwks {
            "kv" | "endpoint" => event(JWKS, "ok", jwks),
            failure => event(JWKS, failure, "endpoint"),
        });
    }
    points
}

const JWKS: &str = "event:jwks_fetch";
const INTROSPECTION: &str = "event:introspection";
const COORDINATOR: &str = "event:coordinator";
const TOKEN: &str = "event:token_refresh";

/// The method when it is a standard one; any other is the caller's choice of text, which could
/// be anything (a token, even), so it is written as `OTHER`.
fn method(method: &str) -> &str {
    const STANDARD: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    STANDARD
        .into_iter()
        .find(|m| *m == method)
        .unwrap_or("OTHER")
}

/// The verified issuer, once the gateway accepted it: a signed token's `iss` that the route or
/// `JWT_ISSUER` refused is whatever a key holder wrote, and is left out.
fn issuer(log: &RequestLog) -> &str {
    let refused = log.outcome == "wrong_issuer" || log.policy == Some("issuers");
    match log.iss.as_deref() {
        Some(iss) if !refused => cut(iss, ISSUER_BYTES),
        _ => NONE,
    }
}

fn colo(log: &RequestLog) -> &str {
    log.colo.as_deref().map_or(NONE, |c| cut(c, BLOB_BYTES))
}

/// What refused (or nearly refused) the request beyond its outcome: the first of the path's
/// problem, the policy part, the introspection, token endpoint or key set failure, the
/// operator problem, a `report` route's verdict, the rate limit's trouble, the origin's 401.
fn reason(log: &RequestLog) -> &'static str {
    log.path_problem
        .or(log.client_certificate)
        .or(log.policy)
        .or(log.binding)
        .or(log.introspection_error)
        .or(log.token_error)
        .or(log.jwks.filter(|j| !matches!(*j, "kv" | "endpoint")))
        .or(log.config_error)
        .or(log.report.filter(|r| *r != "forwarded"))
        .or(log.rate_limit)
        .or(log.origin_401)
        .unwrap_or(NONE)
}

fn ms(value: Option<u64>) -> f64 {
    // Milliseconds fit a double exactly for 285,000 years.
    value.unwrap_or(0) as f64
}

/// `s` cut to at most `max` bytes, on a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_whole_characters_within_the_limit() {
        assert_eq!(cut("abc", 96), "abc");
        let long = "é".repeat(60); // 120 bytes
        let c = cut(&long, INDEX_BYTES);
        assert_eq!(c.len(), 96);
        let odd = format!("a{}", "é".repeat(60));
        assert_eq!(cut(&odd, INDEX_BYTES).len(), 95, "never half a character");
    }

    #[test]
    fn only_standard_methods_are_written_as_sent() {
        assert_eq!(method("PATCH"), "PATCH");
        assert_eq!(method("get"), "OTHER");
        assert_eq!(method("eyJhbGciOiJIUzI1NiJ9"), "OTHER");
    }
}
