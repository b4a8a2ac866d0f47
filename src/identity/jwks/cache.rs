//! The isolate's key set from `JWKS_URL`: isolate memory, then KV, then the provider; one
//! fetch at a time (`flight`); stale-if-error; probes after a failed fetch (`breaker`: one at a
//! time, one per half second, the first good answer ends the back-off); and a rate-limited,
//! negatively cached refetch for tokens naming a `kid` the set does not have.
//!
//! A `kid` the held set lacks is the caller's fault (401 `unknown_kid`) only when the provider
//! has said so: its answer since the token arrived lacked it, or one within `UNKNOWN_KID_TTL_MS`
//! did, or (the provider answering) the refetch limit of one per `KID_REFETCH_INTERVAL_MS`
//! allows no new look. While the provider is failing nobody can say, so the answer is
//! `KidLookup::Unavailable` (503 with `Retry-After`): the gateway's keys are missing, not the
//! caller's token at fault. The refetch is limited to one per interval and is not delayed
//! further by the back-off; beyond it, the probes of the back-off look for the key too, so a
//! token signed with a key rotated in during an outage is accepted as soon as the set can be
//! fetched again.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use sha2::{Digest, Sha256};

use super::discovery::Discovery;
use super::load::{load, JwksEvent, JwksFailure, Loaded, Sources, FETCH_TIMEOUT_MS, MAX_STALE_MS};
use crate::identity::jwt::{JwtSettings, KeySet};
use crate::io::{Clock, Platform};
use crate::support::breaker::{Attempt, Breaker, Ticket, Turn, PROBE_SPACING_MS};
use crate::support::flight::{Flight, FlightGuard, POLL_MS};

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

/// What looking again for a `kid` the held set lacks found.
#[derive(Debug)]
pub enum KidLookup {
    /// A set that has it.
    Found(Rc<Keys>),
    /// The provider's set does not have it (or, the provider answering, the refetch limit
    /// allows no look now): the token is refused, 401.
    Unknown,
    /// The provider's set cannot be had now: nobody can say whether the key exists, 503.
    Unavailable(KeysUnavailable),
}

#[derive(Default)]
struct State {
    current: Option<Rc<Keys>>,
    /// Digest of the document behind `current`, to tell a changed set from a refetched one.
    digest: Option<[u8; 32]>,
    generation: u64,
    /// Why the last fetch failed, while the provider is backing off.
    last_failure: Option<JwksFailure>,
    last_kid_refetch_ms: Option<u64>,
    /// Fetches the provider answered, to tell a waiter whether the fetch it waited on was one.
    provider_answers: u64,
    /// The breaker's number of the fetch in flight, which waiting requests wait on.
    fill_seq: u64,
    /// `kid` → until when it is known not to be in the provider's set.
    unknown_kids: HashMap<String, u64>,
}

/// One per isolate, shared by its requests.
#[derive(Default)]
pub struct JwksCache {
    state: RefCell<State>,
    flight: Flight,
    /// The provider's health: probes after a failed fetch.
    breaker: Breaker,
    inline: OnceCell<Rc<Keys>>,
    /// For settings that discover (`JwtSettings::discovery`): the document naming the URL.
    discovery: Discovery,
}

/// Where the set comes from: the configured `jwks_url`, or the one discovery found.
enum Url<'s> {
    Configured(&'s str),
    Discovered(Rc<str>),
}

impl Url<'_> {
    fn as_str(&self) -> &str {
        match self {
            Url::Configured(url) => url,
            Url::Discovered(url) => url,
        }
    }
}

/// A fetch under way: the cache's mark and the breaker's numbered call.
struct Filling {
    _flight: FlightGuard,
    attempt: Attempt,
}

enum Next {
    Ready(Rc<Keys>),
    Unavailable(KeysUnavailable),
    Wait,
    Fill(Filling),
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
        let (url, discovered) = match self.url(settings, p).await? {
            Some(found) => found,
            None => {
                return Ok(KeysView {
                    keys: self.configured(settings),
                    event: None,
                })
            }
        };
        let url = url.as_str();
        let mut ticket = self.breaker.ticket(clock.now_ms());
        loop {
            let now = clock.now_ms();
            match self.next(&mut ticket, now) {
                Next::Ready(keys) => {
                    return Ok(KeysView {
                        keys,
                        event: discovered,
                    })
                }
                Next::Unavailable(u) => return Err(u),
                Next::Wait => clock.sleep(POLL_MS).await,
                Next::Fill(filling) => {
                    let got = load(url, Sources::KvFreshUntil(now), p).await;
                    let event = got.event();
                    self.record(settings, got, filling, clock.now_ms());
                    let now = clock.now_ms();
                    let st = self.state.borrow();
                    return match st.usable(now) {
                        Some(keys) => Ok(KeysView {
                            keys,
                            event: Some(event),
                        }),
                        None => Err(self.unavailable(&st, now)),
                    };
                }
            }
        }
    }

    /// For a token whose `kid` is not in the set it was checked with: a set that has it,
    /// fetched now if the rate limit (or, the provider failing, a probe) allows; `Unknown` when
    /// the provider says, or has said, it has no such key; `Unavailable` when the provider
    /// cannot be asked. And what the fetch did, if this request made one. Requests arriving while
    /// a fetch is in flight wait for it and take its answer rather than start another.
    pub async fn refetch_for_kid<P: Platform>(
        &self,
        kid: &str,
        settings: &JwtSettings,
        p: &P,
    ) -> (KidLookup, Option<JwksEvent>) {
        let clock = p.clock();
        let url = match self.url(settings, p).await {
            Ok(Some((url, _))) => url,
            Ok(None) => return (KidLookup::Unknown, None),
            Err(u) => return (KidLookup::Unavailable(u), Some(JwksEvent::Failed(u.cause))),
        };
        let url = url.as_str();
        let answers_at_arrival = self.state.borrow().provider_answers;
        let mut ticket = self.breaker.ticket(clock.now_ms());
        loop {
            let now = clock.now_ms();
            let filling = match self.kid_turn(kid, answers_at_arrival, &mut ticket, now) {
                KidTurn::Done(lookup) => return (lookup, None),
                KidTurn::Wait => {
                    clock.sleep(POLL_MS).await;
                    continue;
                }
                KidTurn::Fetch(filling) => filling,
            };
            let got = load(url, Sources::Provider, p).await;
            let event = got.event();
            let failure = got.failure;
            self.record(settings, got, filling, clock.now_ms());
            let now = clock.now_ms();
            let mut st = self.state.borrow_mut();
            if let Some(cur) = st.current.clone().filter(|c| has_kid(&c.set, kid)) {
                return (KidLookup::Found(cur), Some(event));
            }
            if let Some(cause) = failure {
                // The provider did not answer: whether the key exists is unknown.
                let unavailable = KeysUnavailable {
                    retry_after_secs: self.breaker.retry_after_secs(now),
                    cause,
                };
                return (KidLookup::Unavailable(unavailable), Some(event));
            }
            if kid.len() <= MAX_REMEMBERED_KID_BYTES {
                // Too long a kid is not kept: only the rate limit holds for it.
                if st.unknown_kids.len() >= MAX_UNKNOWN_KIDS {
                    st.unknown_kids.retain(|_, until| now < *until);
                    if st.unknown_kids.len() >= MAX_UNKNOWN_KIDS {
                        st.unknown_kids.clear();
                    }
                }
                st.unknown_kids
                    .insert(kid.to_string(), now + UNKNOWN_KID_TTL_MS);
            }
            return (KidLookup::Unknown, Some(event));
        }
    }

    /// What a request looking for `kid` does next (see `refetch_for_kid`).
    fn kid_turn(
        &self,
        kid: &str,
        answers_at_arrival: u64,
        ticket: &mut Ticket,
        now: u64,
    ) -> KidTurn {
        let mut st = self.state.borrow_mut();
        if st.unknown_kids.get(kid).is_some_and(|&until| now < until) {
            return KidTurn::Done(KidLookup::Unknown);
        }
        // Someone else's fetch may already have brought it.
        if let Some(cur) = st.current.as_ref().filter(|c| has_kid(&c.set, kid)) {
            return KidTurn::Done(KidLookup::Found(cur.clone()));
        }
        let busy = self.flight.in_flight(now, ABANDON_AFTER_MS);
        let limited = st
            .last_kid_refetch_ms
            .is_some_and(|at| now < at + KID_REFETCH_INTERVAL_MS);
        if !self.breaker.is_backing_off() {
            if st.provider_answers != answers_at_arrival {
                // The provider answered after the token arrived, and the kid was not there:
                // another fetch would say the same.
                return KidTurn::Done(KidLookup::Unknown);
            }
            if busy {
                return KidTurn::Wait;
            }
            if limited {
                return KidTurn::Done(KidLookup::Unknown);
            }
        }
        // Not backing off, or backing off and the refetch limit allows one now: not delayed
        // by the back-off (one at a time still). Else, backing off, the probes' rules.
        let allowed = (!limited && !busy)
            .then(|| self.breaker.probe_now(now, ABANDON_AFTER_MS))
            .flatten();
        let attempt = match allowed {
            Some(attempt) => attempt,
            None => {
                let busy = busy.then_some(st.fill_seq);
                match self.breaker.turn(ticket, now, busy, ABANDON_AFTER_MS) {
                    Turn::Go(attempt) => attempt,
                    Turn::Wait => return KidTurn::Wait,
                    Turn::Refuse { retry_after_secs } => {
                        return KidTurn::Done(KidLookup::Unavailable(KeysUnavailable {
                            retry_after_secs,
                            cause: st.last_failure.unwrap_or(JwksFailure::Unreachable),
                        }))
                    }
                }
            }
        };
        st.last_kid_refetch_ms = Some(now);
        drop(st);
        KidTurn::Fetch(self.start_fill(now, attempt))
    }

    /// For the scheduled handler: fetches the set when it would stop being fresh within
    /// `ahead_ms`, so requests rarely find it stale. `None` when nothing needed doing.
    pub async fn refresh<P: Platform>(
        &self,
        settings: &JwtSettings,
        ahead_ms: u64,
        p: &P,
    ) -> Option<JwksEvent> {
        // The discovery document first, ahead of its staleness as the set's.
        let discovery_failed = match settings.discovery.as_deref() {
            Some(issuer) => self.discovery.refresh(issuer, ahead_ms, p).await,
            None => None,
        };
        let url = match self.url(settings, p).await {
            Ok(Some((url, _))) => url,
            Ok(None) => return None,
            Err(u) => return Some(JwksEvent::Failed(u.cause)),
        };
        let url = url.as_str();
        let clock = p.clock();
        let now = clock.now_ms();
        let wanted_until = now.saturating_add(ahead_ms);
        let discovery_failed = discovery_failed.map(JwksEvent::Failed);
        if self
            .state
            .borrow()
            .current
            .as_ref()
            .is_some_and(|c| c.fresh_until_ms > wanted_until)
        {
            return discovery_failed;
        }
        let busy = self.flight.in_flight(now, ABANDON_AFTER_MS);
        let Some(attempt) = self.breaker.try_go(now, busy, ABANDON_AFTER_MS) else {
            return discovery_failed;
        };
        let filling = self.start_fill(now, attempt);
        let got = load(url, Sources::KvFreshUntil(wanted_until), p).await;
        let event = got.event();
        self.record(settings, got, filling, clock.now_ms());
        Some(event)
    }

    /// The set's URL: `jwks_url`, or the discovered `jwks_uri` (with the failure of a document
    /// fetch a held document survived, for the log line); `None` without either. A discovery
    /// that yields nothing usable is the set being unavailable.
    async fn url<'s, P: Platform>(
        &self,
        settings: &'s JwtSettings,
        p: &P,
    ) -> Result<Option<(Url<'s>, Option<JwksEvent>)>, KeysUnavailable> {
        if let Some(url) = settings.jwks_url.as_deref() {
            return Ok(Some((Url::Configured(url), None)));
        }
        let Some(issuer) = settings.discovery.as_deref() else {
            return Ok(None);
        };
        let resolved = self.discovery.jwks_uri(issuer, p).await?;
        Ok(Some((
            Url::Discovered(resolved.jwks_uri),
            resolved.failure.map(JwksEvent::Failed),
        )))
    }

    /// The discovery document's `introspection_endpoint` (`Ok(None)`: the document names
    /// none, or the settings do not discover).
    pub async fn introspection_endpoint<P: Platform>(
        &self,
        settings: &JwtSettings,
        p: &P,
    ) -> Result<Option<Rc<str>>, KeysUnavailable> {
        let Some(issuer) = settings.discovery.as_deref() else {
            return Ok(None);
        };
        Ok(self
            .discovery
            .jwks_uri(issuer, p)
            .await?
            .introspection_endpoint)
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

    fn next(&self, ticket: &mut Ticket, now: u64) -> Next {
        let st = self.state.borrow();
        if let Some(cur) = st.current.as_ref().filter(|c| now < c.fresh_until_ms) {
            return Next::Ready(cur.clone());
        }
        // Stale or missing from here on.
        let busy = self.flight.in_flight(now, ABANDON_AFTER_MS);
        if let Some(stale) = st.usable(now) {
            // A stale set serves while one request refreshes it, when a fetch may be made.
            drop(st);
            return match self.breaker.try_go(now, busy, ABANDON_AFTER_MS) {
                Some(attempt) => Next::Fill(self.start_fill(now, attempt)),
                None => Next::Ready(stale),
            };
        }
        let busy = busy.then_some(st.fill_seq);
        match self.breaker.turn(ticket, now, busy, ABANDON_AFTER_MS) {
            Turn::Go(attempt) => {
                drop(st);
                Next::Fill(self.start_fill(now, attempt))
            }
            Turn::Wait => Next::Wait,
            Turn::Refuse { retry_after_secs } => Next::Unavailable(KeysUnavailable {
                retry_after_secs,
                cause: st.last_failure.unwrap_or(JwksFailure::Unreachable),
            }),
        }
    }

    /// Marks a fetch as under way, numbered `attempt` for the requests that wait on it.
    fn start_fill(&self, now: u64, attempt: Attempt) -> Filling {
        self.state.borrow_mut().fill_seq = attempt.seq();
        Filling {
            _flight: self.flight.start(now),
            attempt,
        }
    }

    /// No usable set: 503, retry when the next probe may start.
    fn unavailable(&self, st: &State, now: u64) -> KeysUnavailable {
        KeysUnavailable {
            retry_after_secs: self.breaker.retry_after_secs(now),
            cause: st.last_failure.unwrap_or(JwksFailure::Unreachable),
        }
    }

    fn record(&self, settings: &JwtSettings, got: Loaded, filling: Filling, now: u64) {
        let Filling { _flight, attempt } = filling;
        drop(_flight);
        let mut st = self.state.borrow_mut();
        if got.failure.is_none() && !got.from_kv {
            st.provider_answers += 1;
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
                self.breaker.succeeded(attempt);
                st.last_failure = None;
            }
            Some(failure) => {
                self.breaker.failed(attempt, now, PROBE_SPACING_MS);
                st.last_failure = Some(failure);
            }
        }
    }
}

/// What a request looking for an unknown `kid` does next.
enum KidTurn {
    Done(KidLookup),
    Wait,
    Fetch(Filling),
}

impl State {
    /// The current set if it may still serve: fresh, or stale within `MAX_STALE_MS`.
    fn usable(&self, now: u64) -> Option<Rc<Keys>> {
        self.current
            .clone()
            .filter(|c| now < c.fresh_until_ms.saturating_add(MAX_STALE_MS))
    }
}

fn has_kid(set: &KeySet, kid: &str) -> bool {
    set.keys().iter().any(|k| k.kid() == Some(kid))
}
