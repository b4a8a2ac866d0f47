//! Discovery: where a provider configured with its issuer alone (no `jwks_url`, `jwks` or
//! secret) finds its key set. The issuer's OpenID Connect discovery document
//! (`<issuer>/.well-known/openid-configuration`), or on 404 its RFC 8414 metadata, is fetched
//! and held like a key set, in isolate memory and in KV (`discovery:v1:<digest of the issuer>`,
//! so a new isolate starts from another's fetch): fresh for its `Cache-Control` within
//! 60 s–24 h, stale-if-error for up to 24 h, one fetch at a time (`flight`), probes after a
//! failure (`breaker`), refreshed ahead by the scheduled run; no redirect is followed (the platform's
//! fetch passes them back, and a redirect is a failed fetch here). Its `jwks_uri` then goes
//! where a `jwks_url` would, under the same rules (https, or http to a loopback host).
//!
//! The mix-up defence (OpenID Connect Discovery §4.3, RFC 8414 §3.3): the document's `issuer`
//! must equal the configured one byte for byte. A document that names another issuer is not
//! used, and the one held before it (in memory and in KV) is dropped, not served stale: the provider's tokens are
//! refused (503) until the document is right, and the log line says `config_error`.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::freshness::MAX_FRESH_SECS;
use super::load::{get_json, GetFailure, JwksFailure, FETCH_TIMEOUT_MS, MAX_STALE_MS};
use super::KeysUnavailable;
use crate::config::setting::endpoint_url;
use crate::io::{Clock, KeyValue, Platform};
use crate::support::breaker::{Attempt, Breaker, Ticket, Turn, PROBE_SPACING_MS};
use crate::support::flight::{Flight, FlightGuard, POLL_MS};
use crate::support::http_url::well_known_urls;

/// Largest discovery document read: as for key sets (real ones are a few KiB).
pub const MAX_DISCOVERY_BYTES: usize = 256 * 1024;
/// Two fetches (the OpenID location, then RFC 8414's) plus room: then a fetch still marked is
/// taken to be abandoned.
const ABANDON_AFTER_MS: u64 = 2 * FETCH_TIMEOUT_MS + 10_000;

/// How far another isolate's clock may be ahead of ours when it wrote a document to KV.
const KV_CLOCK_SKEW_MS: u64 = 60_000;

/// A discovery document, reduced to what the gateway uses.
#[derive(Debug)]
struct Document {
    jwks_uri: Rc<str>,
    /// RFC 8414's `introspection_endpoint`, when it names a usable URL (a provider's
    /// `introspect` without `url` uses it).
    introspection_endpoint: Option<Rc<str>>,
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
    pub introspection_endpoint: Option<Rc<str>>,
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
                Next::Ready(doc) => return Ok(doc.resolved(None)),
                Next::Unavailable(u) => return Err(u),
                Next::Wait => clock.sleep(POLL_MS).await,
                Next::Fill(attempt, flight) => {
                    let got = load(issuer, now, p).await;
                    let failure = got.failure;
                    self.record(got, attempt, flight, clock.now_ms());
                    let now = clock.now_ms();
                    let st = self.state.borrow();
                    return match st.usable(now) {
                        Some(doc) => Ok(doc.resolved(failure)),
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
        let got = load(issuer, wanted_until, p).await;
        let failure = got.failure;
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

    fn record(&self, got: Loaded, attempt: Attempt, flight: FlightGuard, now: u64) {
        drop(flight);
        let mut st = self.state.borrow_mut();
        if got.failure == Some(JwksFailure::DiscoveryIssuerMismatch) {
            // The provider now speaks for another issuer: what it said before is no longer to
            // be relied on.
            st.current = None;
        }
        // The provider's answer replaces what is held; another isolate's (KV) only when fresher.
        if let Some(doc) = got.doc.filter(|d| {
            !got.from_kv
                || st
                    .current
                    .as_ref()
                    .is_none_or(|cur| d.fresh_until_ms > cur.fresh_until_ms)
        }) {
            st.current = Some(Rc::new(doc));
        }
        match got.failure {
            None => {
                st.last_failure = None;
                self.breaker.succeeded(attempt);
            }
            Some(failure) => {
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

impl Document {
    fn resolved(&self, failure: Option<JwksFailure>) -> Resolved {
        Resolved {
            jwks_uri: self.jwks_uri.clone(),
            introspection_endpoint: self.introspection_endpoint.clone(),
            failure,
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

/// What a fill found: a document (KV's or the provider's) and, when the provider failed, why;
/// both when the provider failed and KV still had an older document.
struct Loaded {
    doc: Option<Document>,
    from_kv: bool,
    failure: Option<JwksFailure>,
}

/// KV when it holds a document fresh beyond `wanted_until`; else the provider, whose answer is
/// written to KV (best effort). A provider naming another issuer also clears the KV copy.
async fn load<P: Platform>(issuer: &str, wanted_until: u64, p: &P) -> Loaded {
    let (store, clock) = (p.store(), p.clock());
    let key = kv_key(issuer);
    // A KV failure is a miss: the provider can still answer.
    let older = match store.get(&key).await {
        Ok(Some(value)) => from_kv(&value, clock.now_ms()),
        _ => None,
    };
    if let Some(doc) = older.as_ref().filter(|d| d.fresh_until_ms > wanted_until) {
        return Loaded {
            doc: Some(Document {
                jwks_uri: doc.jwks_uri.clone(),
                introspection_endpoint: doc.introspection_endpoint.clone(),
                fresh_until_ms: doc.fresh_until_ms,
            }),
            from_kv: true,
            failure: None,
        };
    }
    match fetch_document(issuer, p).await {
        Ok(doc) => {
            let fresh_ms = doc.fresh_until_ms.saturating_sub(clock.now_ms());
            let ttl_secs = (fresh_ms + MAX_STALE_MS) / 1000;
            let _ = store.put(&key, &to_kv(&doc), ttl_secs.max(60)).await;
            Loaded {
                doc: Some(doc),
                from_kv: false,
                failure: None,
            }
        }
        Err(failure) => {
            let older = if failure == JwksFailure::DiscoveryIssuerMismatch {
                let _ = store.delete(&key).await;
                None
            } else {
                // Stale-if-error across isolates: an older document beats none.
                older
            };
            Loaded {
                from_kv: older.is_some(),
                doc: older,
                failure: Some(failure),
            }
        }
    }
}

/// The KV key of `issuer`'s document: a digest, as for key sets.
fn kv_key(issuer: &str) -> String {
    let digest = Sha256::digest(issuer.as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("discovery:v1:{hex}")
}

fn to_kv(doc: &Document) -> String {
    serde_json::json!({"fresh_until_ms": doc.fresh_until_ms, "jwks_uri": &*doc.jwks_uri,
        "introspection_endpoint": doc.introspection_endpoint.as_deref()})
    .to_string()
}

/// A KV copy, its `jwks_uri` checked again as the provider's would be, and its claim of
/// freshness cut to what a fetch could have given (as for key sets): a claim beyond that and
/// the clock skew between isolates is not believed, and the copy counts as stale. Anything
/// else is a miss.
fn from_kv(value: &str, now: u64) -> Option<Document> {
    let o: Map<String, Value> = serde_json::from_str(value).ok()?;
    let claimed = o.get("fresh_until_ms")?.as_u64()?;
    let jwks_uri = endpoint_url(o.get("jwks_uri")?.as_str()?).ok()?;
    let latest = now.saturating_add(MAX_FRESH_SECS * 1000);
    let fresh_until_ms = if claimed > latest.saturating_add(KV_CLOCK_SKEW_MS) {
        now
    } else {
        claimed.min(latest)
    };
    Some(Document {
        jwks_uri: jwks_uri.into(),
        introspection_endpoint: introspection_endpoint(&o),
        fresh_until_ms,
    })
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
    let clock = p.clock();
    // A redirect is a failure like any other status: it is never followed.
    let (fresh_ms, body) = get_json(url, "application/json", MAX_DISCOVERY_BYTES, p)
        .await
        .map_err(|e| match e {
            GetFailure::Timeout => JwksFailure::DiscoveryTimeout,
            GetFailure::Unreachable => JwksFailure::DiscoveryUnreachable,
            GetFailure::Status(status) => JwksFailure::DiscoveryStatus(status),
            GetFailure::TooLarge => JwksFailure::DiscoveryTooLarge,
        })?;
    let jwks_uri = read_document(&body, issuer)?;
    let doc: Map<String, Value> = serde_json::from_slice(&body).unwrap_or_default();
    Ok(Document {
        jwks_uri: jwks_uri.into(),
        introspection_endpoint: introspection_endpoint(&doc),
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

/// `introspection_endpoint`, under the same rules as `jwks_uri`; `None` when absent or unusable.
fn introspection_endpoint(doc: &Map<String, Value>) -> Option<Rc<str>> {
    let url = doc.get("introspection_endpoint")?.as_str()?;
    endpoint_url(url).ok().map(Rc::from)
}
