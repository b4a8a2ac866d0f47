//! Where a key set comes from: KV (another isolate's fetch), then the provider at `JWKS_URL`;
//! bounded in size and time, with a KV copy's own claim of freshness checked. What a fill
//! found, and what it did, for the cache (`cache`) and the log line.

use http::{HeaderMap, HeaderValue, Method};

use super::freshness::{fresh_secs, MAX_FRESH_SECS};
use super::stored::{kv_key, StoredJwks};
use crate::identity::jwt::KeySet;
use crate::io::{Body, Clock, HttpClient, HttpError, KeyValue, OutboundRequest, Platform};

/// How far another isolate's clock may be ahead of ours when it wrote a set to KV.
const KV_CLOCK_SKEW_MS: u64 = 60_000;
/// A set past its freshness keeps serving this long while the provider cannot be reached.
pub const MAX_STALE_MS: u64 = 86_400_000;
/// Largest key set document read. Real ones are a few KiB; certificate chains can make them
/// tens of KiB.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Time allowed for the provider's answer.
pub const FETCH_TIMEOUT_MS: u64 = 5_000;

/// Why the provider's key set could not be fetched; for logs and the 503's cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwksFailure {
    Timeout,
    Unreachable,
    Status(u16),
    TooLarge,
    NotAKeySet,
    NoUsableKeys,
    /// The issuer's discovery document (`discovery`) could not be had or used.
    DiscoveryTimeout,
    DiscoveryUnreachable,
    /// Neither well-known location answered 200 (a redirect, a 404 from both, a 5xx).
    DiscoveryStatus(u16),
    DiscoveryTooLarge,
    /// Not a JSON object.
    DiscoveryNotADocument,
    /// Its `issuer` is not the configured one, byte for byte (the mix-up defence).
    DiscoveryIssuerMismatch,
    /// Its `jwks_uri` is missing, or not https (nor http to a loopback host).
    DiscoveryJwksUri,
}

impl JwksFailure {
    pub fn code(self) -> &'static str {
        match self {
            Self::Timeout => "jwks_timeout",
            Self::Unreachable => "jwks_unreachable",
            Self::Status(_) => "jwks_status",
            Self::TooLarge => "jwks_too_large",
            Self::NotAKeySet => "jwks_not_a_key_set",
            Self::NoUsableKeys => "jwks_no_usable_keys",
            Self::DiscoveryTimeout => "discovery_timeout",
            Self::DiscoveryUnreachable => "discovery_unreachable",
            Self::DiscoveryStatus(_) => "discovery_status",
            Self::DiscoveryTooLarge => "discovery_too_large",
            Self::DiscoveryNotADocument => "discovery_not_a_document",
            Self::DiscoveryIssuerMismatch => "discovery_issuer_mismatch",
            Self::DiscoveryJwksUri => "discovery_jwks_uri",
        }
    }

    /// For the log line's `config_error`: a discovery answer only the operator (or the
    /// provider's) can fix, naming settings only.
    pub fn config_problem(self) -> Option<&'static str> {
        match self {
            Self::DiscoveryIssuerMismatch => Some(
                "the discovery document names another issuer than the one configured: check JWT_ISSUER or the JWT_PROVIDERS issuer, spelt exactly as the provider's iss (trailing slash included)",
            ),
            Self::DiscoveryJwksUri => Some(
                "the discovery document has no jwks_uri, or one that is not https: set jwks_url (JWKS_URL) instead",
            ),
            Self::DiscoveryStatus(300..=399 | 404) => Some(
                "the issuer's discovery document was not found at its well-known locations (a redirect or 404): check the issuer, or set jwks_url (JWKS_URL)",
            ),
            _ => None,
        }
    }
}

/// What this request's key lookup did, for its log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwksEvent {
    /// Read another isolate's fetch from KV.
    Kv,
    /// Fetched from the provider.
    Fetched,
    /// The fetch failed; the last good set served (stale-if-error) or nothing did.
    Failed(JwksFailure),
}

impl JwksEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kv => "kv",
            Self::Fetched => "endpoint",
            Self::Failed(f) => f.code(),
        }
    }
}

/// Where a fill may look.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Sources {
    /// KV first when it holds a set fresh until at least the instant given; else the provider.
    KvFreshUntil(u64),
    /// The provider only: the set we have is known not to be enough.
    Provider,
}

/// What a fill found: a set (from KV or the provider) and, when the provider failed, why.
/// Both at once when the provider failed and KV still had an older set.
pub(super) struct Loaded {
    pub(super) set: Option<Fetched>,
    pub(super) from_kv: bool,
    pub(super) failure: Option<JwksFailure>,
}

pub(super) struct Fetched {
    pub(super) set: KeySet,
    pub(super) document: String,
    pub(super) fresh_until_ms: u64,
}

impl Loaded {
    pub(super) fn event(&self) -> JwksEvent {
        match (self.failure, self.from_kv) {
            (Some(f), _) => JwksEvent::Failed(f),
            (None, true) => JwksEvent::Kv,
            (None, false) => JwksEvent::Fetched,
        }
    }
}

pub(super) async fn load<P: Platform>(url: &str, sources: Sources, p: &P) -> Loaded {
    let (store, clock) = (p.store(), p.clock());
    let key = kv_key(url);
    let mut older = None;
    if let Sources::KvFreshUntil(until) = sources {
        // A KV failure is a miss: the provider can still answer.
        if let Ok(Some(value)) = store.get(&key).await {
            if let Some(stored) = StoredJwks::from_kv(&value) {
                if let Ok(set) = usable_set(&stored.jwks) {
                    let found = Fetched {
                        set,
                        document: stored.jwks,
                        fresh_until_ms: kv_fresh_until(stored.fresh_until_ms, clock.now_ms()),
                    };
                    if found.fresh_until_ms > until {
                        return Loaded {
                            set: Some(found),
                            from_kv: true,
                            failure: None,
                        };
                    }
                    older = Some(found);
                }
            }
        }
    }
    match fetch(url, p).await {
        Ok(fetched) => {
            let stored = StoredJwks {
                fresh_until_ms: fetched.fresh_until_ms,
                jwks: fetched.document,
            };
            let fresh_ms = fetched.fresh_until_ms.saturating_sub(clock.now_ms());
            let ttl_secs = (fresh_ms + MAX_STALE_MS) / 1000;
            // Best effort: a failed write costs another isolate one fetch, nothing more.
            let _ = store.put(&key, &stored.to_kv(), ttl_secs.max(60)).await;
            Loaded {
                set: Some(Fetched {
                    document: stored.jwks,
                    ..fetched
                }),
                from_kv: false,
                failure: None,
            }
        }
        // Stale-if-error across isolates: an older set from KV beats none.
        Err(failure) => Loaded {
            from_kv: older.is_some(),
            set: older,
            failure: Some(failure),
        },
    }
}

/// What a KV copy's own claim of freshness is worth at `now`. No fetch is fresh for longer
/// than `MAX_FRESH_SECS`, so a claim past that is cut to it, or, beyond the clock skew
/// between isolates, not believed at all: it comes from a clock far ahead or a value this
/// version did not write, and would otherwise pin its keys for as long as it says. Such a
/// copy counts as stale: the provider is asked, and the copy serves only if that fails.
fn kv_fresh_until(claimed_ms: u64, now: u64) -> u64 {
    let latest = now.saturating_add(MAX_FRESH_SECS * 1000);
    if claimed_ms > latest.saturating_add(KV_CLOCK_SKEW_MS) {
        now
    } else {
        claimed_ms.min(latest)
    }
}

async fn fetch<P: Platform>(url: &str, p: &P) -> Result<Fetched, JwksFailure> {
    let clock = p.clock();
    let (fresh_ms, body) = get_json(
        url,
        "application/json, application/jwk-set+json",
        MAX_JWKS_BYTES,
        p,
    )
    .await
    .map_err(|e| match e {
        GetFailure::Timeout => JwksFailure::Timeout,
        GetFailure::Unreachable => JwksFailure::Unreachable,
        GetFailure::Status(status) => JwksFailure::Status(status),
        GetFailure::TooLarge => JwksFailure::TooLarge,
    })?;
    let document = String::from_utf8(body).map_err(|_| JwksFailure::NotAKeySet)?;
    let set = usable_set(&document)?;
    Ok(Fetched {
        set,
        document,
        fresh_until_ms: clock.now_ms() + fresh_ms,
    })
}

/// Why `get_json` got no document; each caller names it in its own failure codes.
pub(super) enum GetFailure {
    Timeout,
    Unreachable,
    /// Any status but 200; a redirect too: it is never followed.
    Status(u16),
    TooLarge,
}

/// A `GET` of a provider's JSON document (a key set, a discovery document): answered 200
/// within `FETCH_TIMEOUT_MS` and at most `max_bytes`. Its freshness in milliseconds, from its
/// `Cache-Control`, and its body.
pub(super) async fn get_json<P: Platform>(
    url: &str,
    accept: &'static str,
    max_bytes: usize,
    p: &P,
) -> Result<(u64, Vec<u8>), GetFailure> {
    let http = p.http();
    let mut headers = HeaderMap::new();
    headers.insert(http::header::ACCEPT, HeaderValue::from_static(accept));
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
            HttpError::Timeout => GetFailure::Timeout,
            _ => GetFailure::Unreachable,
        })?;
    if response.status != 200 {
        return Err(GetFailure::Status(response.status));
    }
    let fresh_ms = fresh_secs(&response.headers) * 1000;
    let body = http
        .read_body(response.body, max_bytes)
        .await
        .map_err(|e| match e {
            HttpError::TooLarge => GetFailure::TooLarge,
            _ => GetFailure::Unreachable,
        })?;
    Ok((fresh_ms, body))
}

/// A set with at least one usable key. An empty one is treated as a failed fetch, so that a
/// provider's glitch does not lock every caller out while the last good set could serve.
fn usable_set(document: &str) -> Result<KeySet, JwksFailure> {
    let set = KeySet::from_jwks_json(document).map_err(|_| JwksFailure::NotAKeySet)?;
    if set.is_empty() {
        return Err(JwksFailure::NoUsableKeys);
    }
    Ok(set)
}
