//! Discovery: where a provider configured with its issuer alone (no `jwks_url`, `jwks` or
//! secret) finds its key set. The issuer's OpenID Connect discovery document
//! (`<issuer>/.well-known/openid-configuration`), or on 404 its RFC 8414 metadata, is fetched
//! and held in isolate memory like a key set: fresh for its `Cache-Control` within 60 s–24 h,
//! stale-if-error for up to 24 h, one fetch at a time (`flight`), probes after a failure
//! (`breaker`), refreshed ahead by the scheduled run; no redirect is followed (the platform's
//! fetch passes them back, and a redirect is a failed fetch here). Its `jwks_uri` then goes
//! where a `jwks_url` would, under the same rules (https, or http to a loopback host).
//!
//! The mix-up defence (OpenID Connect Discovery §4.3, RFC 8414 §3.3): the document's `issuer`
//! must equal the configured one byte for byte. A document that names another issuer is not
//! used, and the one held before it is dropped, not served stale: the provider's tokens are
//! refused (503) until the document is right, and the log line says `config_error`.

use std::cell::RefCell;
use std::rc::Rc;

use http::{HeaderMap, HeaderValue, Method};
use serde_json::{Map, Value};

use super::freshness::fresh_secs;
use super::load::{JwksFailure, FETCH_TIMEOUT_MS, MAX_STALE_MS};
use super::KeysUnavailable;
use crate::config::setting::endpoint_url;
use crate::io::{Body, Clock, HttpClient, HttpError, OutboundRequest, Platform};
use crate::support::breaker::{Attempt, Breaker, Ticket, Turn, PROBE_SPACING_MS};
use crate::support::flight::{Flight, FlightGuard, POLL_MS};
use crate::support::http_url::well_known_urls;

/// Largest discovery document read: as for key sets (real ones are a few KiB).
pub const MAX_DISCOVERY_BYTES: usize = 256 * 1024;
/// Two fetches (the OpenID location, then RFC 8414's) plus room: then a fetch still marked is
/// taken to be abandoned.
const ABANDON_AFTER_MS: u64 = 2 * FETCH_TIMEOUT_MS + 10_000;

/// A discovery document, reduced to what the gateway uses.
#[derive(Debug)]
struct Document {
    jwks_uri: Rc<str>,
    fresh_until_ms: u64,
}

#[derive(Default)]
struct State {
    current: Option<Rc<Document>>,
    last_failure: Option<JwksFailure>,
    fill_seq: u64,
}

/// One per provider that discovers, per isolate.
#[derive(Default)]
pub struct Discovery {
    state: RefCell<State>,
    flight: Flight,
    breaker: Breaker,
}

/// The key set's URL, and what the lookup did when a fetch of the document failed while a
/// held one served (for the log line).
pub struct Resolved {
    pub jwks_uri: Rc<str>,
    pub failure: Option<JwksFailure>,
}

enum Next {
    Ready(Rc<Document>),
    Unavailable(KeysUnavailable),
    Wait,
    Fill(Attempt, FlightGuard),
}

impl Discovery {
    /// `issuer`'s `jwks_uri`: the held document's while fresh; stale, while one request
    /// refreshes it or the provider fails (up to `MAX_STALE_MS`); else fetched now, one request
    /// at a time, the others waiting for its answer.
    pub async fn jwks_uri<P: Platform>(
        &self,
        issuer: &str,
        p: &P,
    ) -> Result<Resolved, KeysUnavailable> {
        let clock = p.clock();
        let mut ticket = self.breaker.ticket(clock.now_ms());
        loop {
            let now = clock.now_ms();
            match self.next(&mut ticket, now) {
                Next::Ready(doc) => {
                    return Ok(Resolved {
                        jwks_uri: doc.jwks_uri.clone(),
                        failure: None,
                    })
                }
                Next::Unavailable(u) => return Err(u),
                Next::Wait => clock.sleep(POLL_MS).await,
                Next::Fill(attempt, flight) => {
                    let got = fetch_document(issuer, p).await;
                    let failure = got.as_ref().err().copied();
                    self.record(got, attempt, flight, clock.now_ms());
                    let now = clock.now_ms();
                    let st = self.state.borrow();
                    return match st.usable(now) {
                        Some(doc) => Ok(Resolved {
                            jwks_uri: doc.jwks_uri.clone(),
                            failure,
                        }),
                        None => Err(self.unavailable(&st, now)),
                    };
                }
            }
        }
    }

    /// For the scheduled run: fetches the document when it would stop being fresh within
    /// `ahead_ms`. `Some(failure)` when a fetch failed, `None` otherwise.
    pub async fn refresh<P: Platform>(
        &self,
        issuer: &str,
        ahead_ms: u64,
        p: &P,
    ) -> Option<JwksFailure> {
        let clock = p.clock();
        let now = clock.now_ms();
        let wanted_until = now.saturating_add(ahead_ms);
        if self
            .state
            .borrow()
            .current
            .as_ref()
            .is_some_and(|d| d.fresh_until_ms > wanted_until)
        {
            return None;
        }
        let busy = self.flight.in_flight(now, ABANDON_AFTER_MS);
        let attempt = self.breaker.try_go(now, busy, ABANDON_AFTER_MS)?;
        let flight = self.start(now, &attempt);
        let got = fetch_document(issuer, p).await;
        let failure = got.as_ref().err().copied();
        self.record(got, attempt, flight, clock.now_ms());
        failure
    }

    fn next(&self, ticket: &mut Ticket, now: u64) -> Next {
        let st = self.state.borrow();
        if let Some(doc) = st.current.as_ref().filter(|d| now < d.fresh_until_ms) {
            return Next::Ready(doc.clone());
        }
        let busy = self.flight.in_flight(now, ABANDON_AFTER_MS);
        if let Some(stale) = st.usable(now) {
            drop(st);
            return match self.breaker.try_go(now, busy, ABANDON_AFTER_MS) {
                Some(attempt) => {
                    let flight = self.start(now, &attempt);
                    Next::Fill(attempt, flight)
                }
                None => Next::Ready(stale),
            };
        }
        let busy = busy.then_some(st.fill_seq);
        match self.breaker.turn(ticket, now, busy, ABANDON_AFTER_MS) {
            Turn::Go(attempt) => {
                drop(st);
                let flight = self.start(now, &attempt);
                Next::Fill(attempt, flight)
            }
            Turn::Wait => Next::Wait,
            Turn::Refuse { retry_after_secs } => Next::Unavailable(KeysUnavailable {
                retry_after_secs,
                cause: st.last_failure.unwrap_or(JwksFailure::DiscoveryUnreachable),
            }),
        }
    }

    fn start(&self, now: u64, attempt: &Attempt) -> FlightGuard {
        self.state.borrow_mut().fill_seq = attempt.seq();
        self.flight.start(now)
    }

    fn record(
        &self,
        got: Result<Document, JwksFailure>,
        attempt: Attempt,
        flight: FlightGuard,
        now: u64,
    ) {
        drop(flight);
        let mut st = self.state.borrow_mut();
        match got {
            Ok(doc) => {
                st.current = Some(Rc::new(doc));
                st.last_failure = None;
                self.breaker.succeeded(attempt);
            }
            Err(failure) => {
                if failure == JwksFailure::DiscoveryIssuerMismatch {
                    // The provider now speaks for another issuer: what it said before is no
                    // longer to be relied on.
                    st.current = None;
                }
                st.last_failure = Some(failure);
                self.breaker.failed(attempt, now, PROBE_SPACING_MS);
            }
        }
    }

    fn unavailable(&self, st: &State, now: u64) -> KeysUnavailable {
        KeysUnavailable {
            retry_after_secs: self.breaker.retry_after_secs(now),
            cause: st.last_failure.unwrap_or(JwksFailure::DiscoveryUnreachable),
        }
    }
}

impl State {
    fn usable(&self, now: u64) -> Option<Rc<Document>> {
        self.current
            .clone()
            .filter(|d| now < d.fresh_until_ms.saturating_add(MAX_STALE_MS))
    }
}

/// The OpenID Connect location, then, when that is 404, RFC 8414's.
async fn fetch_document<P: Platform>(issuer: &str, p: &P) -> Result<Document, JwksFailure> {
    // Checked at configuration time; a failure here would be a bug, refused all the same.
    let [openid, oauth] =
        well_known_urls(issuer).map_err(|_| JwksFailure::DiscoveryNotADocument)?;
    match fetch_one(&openid, issuer, p).await {
        Err(JwksFailure::DiscoveryStatus(404)) => fetch_one(&oauth, issuer, p).await,
        other => other,
    }
}

async fn fetch_one<P: Platform>(url: &str, issuer: &str, p: &P) -> Result<Document, JwksFailure> {
    let (http, clock) = (p.http(), p.clock());
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::ACCEPT,
        HeaderValue::from_static("application/json"),
    );
    let response = http
        .send(OutboundRequest {
            method: Method::GET,
            url: url.to_string(),
            headers,
            body: Body::Empty,
            timeout_ms: FETCH_TIMEOUT_MS,
        })
        .await
        .map_err(|e| match e {
            HttpError::Timeout => JwksFailure::DiscoveryTimeout,
            _ => JwksFailure::DiscoveryUnreachable,
        })?;
    // A redirect is a failure like any other status: it is never followed.
    if response.status != 200 {
        return Err(JwksFailure::DiscoveryStatus(response.status));
    }
    let fresh_ms = fresh_secs(&response.headers) * 1000;
    let body = http
        .read_body(response.body, MAX_DISCOVERY_BYTES)
        .await
        .map_err(|e| match e {
            HttpError::TooLarge => JwksFailure::DiscoveryTooLarge,
            _ => JwksFailure::DiscoveryUnreachable,
        })?;
    let jwks_uri = read_document(&body, issuer)?;
    Ok(Document {
        jwks_uri: jwks_uri.into(),
        fresh_until_ms: clock.now_ms().saturating_add(fresh_ms),
    })
}

/// The document's `jwks_uri`, once its `issuer` is exactly `issuer`; the URL under
/// `endpoint_url`'s rules (https, or http to a loopback host), as a `jwks_url` setting.
pub fn read_document(body: &[u8], issuer: &str) -> Result<String, JwksFailure> {
    let doc: Map<String, Value> =
        serde_json::from_slice(body).map_err(|_| JwksFailure::DiscoveryNotADocument)?;
    if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
        return Err(JwksFailure::DiscoveryIssuerMismatch);
    }
    doc.get("jwks_uri")
        .and_then(Value::as_str)
        .and_then(|uri| endpoint_url(uri).ok())
        .ok_or(JwksFailure::DiscoveryJwksUri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issuer_must_match_exactly_and_jwks_uri_be_https() {
        let iss = "https://idp.example";
        let doc = |v: Value| v.to_string().into_bytes();
        assert_eq!(
            read_document(
                &doc(serde_json::json!({"issuer": iss, "jwks_uri": "https://idp.example/keys"})),
                iss
            ),
            Ok("https://idp.example/keys".into())
        );
        for other in [
            "https://idp.example/",
            "https://IDP.example",
            "https://evil.example",
            "",
        ] {
            assert_eq!(
                read_document(
                    &doc(serde_json::json!({"issuer": other, "jwks_uri": "https://idp.example/k"})),
                    iss
                ),
                Err(JwksFailure::DiscoveryIssuerMismatch),
                "{other}"
            );
        }
        for bad in [
            doc(serde_json::json!({"jwks_uri": "https://idp.example/k"})),
            doc(serde_json::json!({"issuer": 1, "jwks_uri": "https://idp.example/k"})),
        ] {
            assert_eq!(
                read_document(&bad, iss),
                Err(JwksFailure::DiscoveryIssuerMismatch)
            );
        }
        for uri in [
            serde_json::json!("http://idp.example/k"),
            serde_json::json!("http://10.0.0.1/k"),
            serde_json::json!("ftp://idp.example/k"),
            serde_json::json!("/k"),
            serde_json::json!(null),
            serde_json::json!(["https://idp.example/k"]),
        ] {
            assert_eq!(
                read_document(
                    &doc(serde_json::json!({"issuer": iss, "jwks_uri": uri})),
                    iss
                ),
                Err(JwksFailure::DiscoveryJwksUri),
                "{uri}"
            );
        }
        // The loopback allowance the jwks_url setting makes (tests, the demo).
        assert_eq!(
            read_document(
                &doc(serde_json::json!({"issuer": iss, "jwks_uri": "http://127.0.0.1:9/k"})),
                iss
            ),
            Ok("http://127.0.0.1:9/k".into())
        );
        assert_eq!(
            read_document(b"[1]", iss),
            Err(JwksFailure::DiscoveryNotADocument)
        );
    }
}
