//! The isolate's key set from `JWKS_URL`: isolate memory, then KV, then the provider; one
//! fetch at a time (`flight`); stale-if-error; and a rate-limited, negatively cached refetch
//! for tokens naming a `kid` the set does not have.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use http::{HeaderMap, HeaderValue, Method};
use sha2::{Digest, Sha256};

use super::freshness::{fresh_secs, MAX_FRESH_SECS};
use super::stored::{kv_key, StoredJwks};
use crate::flight::{backoff_ms, retry_after_secs, Flight, FlightGuard, POLL_MS};
use crate::io::{Body, Clock, HttpClient, HttpError, KeyValue, OutboundRequest, Platform};
use crate::jwt::{JwtSettings, KeySet};

/// A token naming an unknown `kid` makes at most one refetch per this interval per isolate
/// (the contract's 10 s), however many such tokens arrive.
pub const KID_REFETCH_INTERVAL_MS: u64 = 10_000;
/// A `kid` still unknown after a refetch is refused without another one for this long.
pub const UNKNOWN_KID_TTL_MS: u64 = 60_000;
/// Remembered unknown `kid`s; past this the oldest memory is forgotten, which only costs the
/// forgotten ones a wait for the next allowed refetch.
pub const MAX_UNKNOWN_KIDS: usize = 256;
/// Longer `kid`s (attacker-chosen text) are not remembered, which bounds that memory to about
/// 256 × 128 bytes; they still meet the refetch rate limit.
const MAX_REMEMBERED_KID_BYTES: usize = 128;
/// How far another isolate's clock may be ahead of ours when it wrote a set to KV.
const KV_CLOCK_SKEW_MS: u64 = 60_000;
/// A set past its freshness keeps serving this long while the provider cannot be reached.
pub const MAX_STALE_MS: u64 = 86_400_000;
/// Largest key set document read. Real ones are a few KiB; certificate chains can make them
/// tens of KiB.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Time allowed for the provider's answer.
pub const FETCH_TIMEOUT_MS: u64 = 5_000;
/// A fetch still marked after this long is taken to be abandoned (see `flight`): the fetch's
/// own deadline plus room for its KV read and write.
const ABANDON_AFTER_MS: u64 = FETCH_TIMEOUT_MS + 10_000;

/// The keys a token is checked with: the fetched set, then `JWT_JWKS` and `JWT_HMAC_SECRET`.
#[derive(Debug)]
pub struct Keys {
    pub set: KeySet,
    /// Changes whenever the fetched document changes, so that a verification done with an
    /// older set (whose key may since have been removed) is not trusted any more.
    pub generation: u64,
    fresh_until_ms: u64,
}

/// Why the provider's key set could not be fetched; for logs and the 503's cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwksFailure {
    Timeout,
    Unreachable,
    Status(u16),
    TooLarge,
    NotAKeySet,
    NoUsableKeys,
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

/// No key set at all (never fetched, provider failing): the caller gets 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeysUnavailable {
    pub retry_after_secs: u64,
    pub cause: JwksFailure,
}

#[derive(Debug)]
pub struct KeysView {
    pub keys: Rc<Keys>,
    pub event: Option<JwksEvent>,
}

#[derive(Default)]
struct State {
    current: Option<Rc<Keys>>,
    /// Digest of the document behind `current`, to tell a changed set from a refetched one.
    digest: Option<[u8; 32]>,
    generation: u64,
    /// No fetch starts before this instant after a failure.
    next_attempt_ms: u64,
    failures_in_a_row: u32,
    last_failure: Option<JwksFailure>,
    last_kid_refetch_ms: Option<u64>,
    /// Fetches that asked the provider (answered or failed), to tell a waiter whether the
    /// fetch it waited on was one.
    provider_fetches: u64,
    /// `kid` → until when it is known not to be in the provider's set.
    unknown_kids: HashMap<String, u64>,
}

/// One per isolate, shared by its requests.
#[derive(Default)]
pub struct JwksCache {
    state: RefCell<State>,
    flight: Flight,
    inline: OnceCell<Rc<Keys>>,
}

enum Next {
    Ready(Rc<Keys>),
    Unavailable(KeysUnavailable),
    Wait,
    Fill(FlightGuard),
}

/// Where a fill may look.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sources {
    /// KV first when it holds a set fresh until at least the instant given; else the provider.
    KvFreshUntil(u64),
    /// The provider only: the set we have is known not to be enough.
    Provider,
}

impl JwksCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The keys to check a token with now. Without `JWKS_URL`, the configured keys.
    pub async fn keys<P: Platform>(
        &self,
        settings: &JwtSettings,
        p: &P,
    ) -> Result<KeysView, KeysUnavailable> {
        let clock = p.clock();
        let Some(url) = settings.jwks_url.as_deref() else {
            return Ok(KeysView {
                keys: self.configured(settings),
                event: None,
            });
        };
        loop {
            let now = clock.now_ms();
            match self.next(now) {
                Next::Ready(keys) => return Ok(KeysView { keys, event: None }),
                Next::Unavailable(u) => return Err(u),
                Next::Wait => clock.sleep(POLL_MS).await,
                Next::Fill(guard) => {
                    let got = load(url, Sources::KvFreshUntil(now), p).await;
                    let event = got.event();
                    self.record(settings, got, clock.now_ms());
                    drop(guard);
                    let now = clock.now_ms();
                    let st = self.state.borrow();
                    return match st.usable(now) {
                        Some(keys) => Ok(KeysView {
                            keys,
                            event: Some(event),
                        }),
                        None => Err(st.unavailable(now)),
                    };
                }
            }
        }
    }

    /// For a token whose `kid` is not in the set it was checked with: a set that has it,
    /// fetched now if the rate limit allows, or `None`; and what the fetch did, if this request
    /// made one. Requests arriving while a fetch is in flight wait for it and take its answer
    /// rather than start another.
    pub async fn refetch_for_kid<P: Platform>(
        &self,
        kid: &str,
        settings: &JwtSettings,
        p: &P,
    ) -> (Option<Rc<Keys>>, Option<JwksEvent>) {
        let clock = p.clock();
        let Some(url) = settings.jwks_url.as_deref() else {
            return (None, None);
        };
        let fetches_at_arrival = self.state.borrow().provider_fetches;
        loop {
            let now = clock.now_ms();
            let guard = {
                let mut st = self.state.borrow_mut();
                if st.unknown_kids.get(kid).is_some_and(|&until| now < until) {
                    return (None, None);
                }
                // Someone else's fetch may already have brought it.
                if let Some(cur) = st.current.as_ref().filter(|c| has_kid(&c.set, kid)) {
                    return (Some(cur.clone()), None);
                }
                if self.flight.in_flight(now, ABANDON_AFTER_MS) {
                    None
                } else if st.provider_fetches != fetches_at_arrival {
                    // The fetch this request waited on asked the provider after the token
                    // arrived, and the kid was not there: another one would say the same.
                    return (None, None);
                } else {
                    let limited = st
                        .last_kid_refetch_ms
                        .is_some_and(|at| now < at + KID_REFETCH_INTERVAL_MS);
                    if limited || now < st.next_attempt_ms {
                        return (None, None);
                    }
                    st.last_kid_refetch_ms = Some(now);
                    Some(self.flight.start(now))
                }
            };
            let Some(guard) = guard else {
                clock.sleep(POLL_MS).await;
                continue;
            };
            let got = load(url, Sources::Provider, p).await;
            let event = got.event();
            let answered = got.failure.is_none();
            self.record(settings, got, clock.now_ms());
            drop(guard);
            let now = clock.now_ms();
            let mut st = self.state.borrow_mut();
            if let Some(cur) = st.current.clone().filter(|c| has_kid(&c.set, kid)) {
                return (Some(cur), Some(event));
            }
            if !answered || kid.len() > MAX_REMEMBERED_KID_BYTES {
                // Either the provider did not say the kid is unknown, or the kid is too long to
                // keep: only the rate limit holds.
                return (None, Some(event));
            }
            if st.unknown_kids.len() >= MAX_UNKNOWN_KIDS {
                st.unknown_kids.retain(|_, until| now < *until);
                if st.unknown_kids.len() >= MAX_UNKNOWN_KIDS {
                    st.unknown_kids.clear();
                }
            }
            st.unknown_kids
                .insert(kid.to_string(), now + UNKNOWN_KID_TTL_MS);
            return (None, Some(event));
        }
    }

    /// For the scheduled handler: fetches the set when it would stop being fresh within
    /// `ahead_ms`, so requests rarely find it stale. `None` when nothing needed doing.
    pub async fn refresh<P: Platform>(
        &self,
        settings: &JwtSettings,
        ahead_ms: u64,
        p: &P,
    ) -> Option<JwksEvent> {
        let url = settings.jwks_url.as_deref()?;
        let clock = p.clock();
        let now = clock.now_ms();
        let wanted_until = now.saturating_add(ahead_ms);
        let guard = {
            let st = self.state.borrow();
            if st
                .current
                .as_ref()
                .is_some_and(|c| c.fresh_until_ms > wanted_until)
            {
                return None;
            }
            self.flight.try_start(now, ABANDON_AFTER_MS)?
        };
        let got = load(url, Sources::KvFreshUntil(wanted_until), p).await;
        let event = got.event();
        self.record(settings, got, clock.now_ms());
        drop(guard);
        Some(event)
    }

    /// The configured keys alone (`JWT_JWKS`, `JWT_HMAC_SECRET`), generation 0.
    pub fn configured(&self, settings: &JwtSettings) -> Rc<Keys> {
        self.inline
            .get_or_init(|| {
                Rc::new(Keys {
                    set: settings.keys().clone(),
                    generation: 0,
                    fresh_until_ms: u64::MAX,
                })
            })
            .clone()
    }

    fn next(&self, now: u64) -> Next {
        let st = self.state.borrow();
        if let Some(cur) = st.current.as_ref().filter(|c| now < c.fresh_until_ms) {
            return Next::Ready(cur.clone());
        }
        // Stale or missing from here on.
        let stale = st.usable(now);
        if self.flight.in_flight(now, ABANDON_AFTER_MS) {
            return stale.map_or(Next::Wait, Next::Ready);
        }
        if now < st.next_attempt_ms {
            return match stale {
                Some(keys) => Next::Ready(keys),
                None => Next::Unavailable(st.unavailable(now)),
            };
        }
        Next::Fill(self.flight.start(now))
    }

    fn record(&self, settings: &JwtSettings, got: Loaded, now: u64) {
        let mut st = self.state.borrow_mut();
        if got.asked_provider() {
            st.provider_fetches += 1;
        }
        // A set the provider just sent is its current word, whatever lifetime it asks for: a
        // provider that rotates its keys and shortens `max-age` at once must not be refused
        // until the held set's longer lifetime runs out. A set read from KV is another
        // isolate's earlier fetch, so it only replaces a held set it is fresher than.
        let replaces = got.set.filter(|found| {
            !got.from_kv
                || st
                    .current
                    .as_ref()
                    .is_none_or(|cur| found.fresh_until_ms > cur.fresh_until_ms)
        });
        if let Some(found) = replaces {
            let digest: [u8; 32] = Sha256::digest(found.document.as_bytes()).into();
            if st.digest != Some(digest) {
                st.generation += 1;
                st.digest = Some(digest);
                // A new set may hold kids refused a moment ago.
                st.unknown_kids.clear();
            }
            let mut merged = found.set;
            merged.extend(settings.keys());
            st.current = Some(Rc::new(Keys {
                set: merged,
                generation: st.generation,
                fresh_until_ms: found.fresh_until_ms,
            }));
        }
        match got.failure {
            None => {
                st.failures_in_a_row = 0;
                st.next_attempt_ms = 0;
                st.last_failure = None;
            }
            Some(failure) => {
                st.failures_in_a_row = st.failures_in_a_row.saturating_add(1);
                st.next_attempt_ms = now + backoff_ms(st.failures_in_a_row);
                st.last_failure = Some(failure);
            }
        }
    }
}

impl State {
    /// The current set if it may still serve: fresh, or stale within `MAX_STALE_MS`.
    fn usable(&self, now: u64) -> Option<Rc<Keys>> {
        self.current
            .clone()
            .filter(|c| now < c.fresh_until_ms.saturating_add(MAX_STALE_MS))
    }

    fn unavailable(&self, now: u64) -> KeysUnavailable {
        KeysUnavailable {
            retry_after_secs: retry_after_secs(self.next_attempt_ms, now),
            cause: self.last_failure.unwrap_or(JwksFailure::Unreachable),
        }
    }
}

fn has_kid(set: &KeySet, kid: &str) -> bool {
    set.keys().iter().any(|k| k.kid() == Some(kid))
}

/// What a fill found: a set (from KV or the provider) and, when the provider failed, why.
/// Both at once when the provider failed and KV still had an older set.
struct Loaded {
    set: Option<Fetched>,
    from_kv: bool,
    failure: Option<JwksFailure>,
}

struct Fetched {
    set: KeySet,
    document: String,
    fresh_until_ms: u64,
}

impl Loaded {
    fn event(&self) -> JwksEvent {
        match (self.failure, self.from_kv) {
            (Some(f), _) => JwksEvent::Failed(f),
            (None, true) => JwksEvent::Kv,
            (None, false) => JwksEvent::Fetched,
        }
    }

    fn asked_provider(&self) -> bool {
        self.failure.is_some() || !self.from_kv
    }
}

async fn load<P: Platform>(url: &str, sources: Sources, p: &P) -> Loaded {
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
    let (http, clock) = (p.http(), p.clock());
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::ACCEPT,
        HeaderValue::from_static("application/json, application/jwk-set+json"),
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
            HttpError::Timeout => JwksFailure::Timeout,
            _ => JwksFailure::Unreachable,
        })?;
    if response.status != 200 {
        return Err(JwksFailure::Status(response.status));
    }
    let fresh_ms = fresh_secs(&response.headers) * 1000;
    let body = http
        .read_body(response.body, MAX_JWKS_BYTES)
        .await
        .map_err(|_| JwksFailure::TooLarge)?;
    let document = String::from_utf8(body).map_err(|_| JwksFailure::NotAKeySet)?;
    let set = usable_set(&document)?;
    Ok(Fetched {
        set,
        document,
        fresh_until_ms: clock.now_ms() + fresh_ms,
    })
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
