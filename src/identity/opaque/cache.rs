//! The isolate's introspection answers, so that a session used on every request costs one call
//! to the endpoint per few minutes, not one per request.
//!
//! Keyed by the SHA-256 of the identifier: the identifier itself is never kept, so a heap dump
//! or a stray debug line cannot replay a session. An active answer is remembered until its `exp`
//! and at most `ACTIVE_MAX_MS` (a session revoked at the endpoint stops working here within
//! that); an inactive one for `INACTIVE_MS`, so that a caller retrying a dead session, or
//! guessing, does not cost one call per request, while a session that has just become valid
//! (a login racing its first request) is not refused for long.
//!
//! One call per identifier at a time: the first request that misses introspects in its own
//! context, the others poll the cache on their own timers (`Clock::sleep`), never awaiting the
//! first one's future; why is in `crate::support::flight`. A mark whose request vanished is released by a
//! drop guard, or ignored once older than the timeout plus `ABANDON_GRACE_MS`.
//!
//! After the endpoint itself fails (down, slow, 5xx, 429, not JSON), identifiers that memory
//! cannot answer are sent to it one at a time, at most one every half second (`crate::support::breaker`);
//! requests meanwhile wait for that probe's answer (at most a second) and get 503 with
//! `Retry-After` if it fails; the first good answer ends the back-off at once. Answers already
//! remembered keep being served. A problem with one identifier's answer (too large, `active`
//! not a boolean, an unusable `exp`: `introspect::Blame::Identifier`) makes that identifier
//! inactive, remembered as such for `INACTIVE_MS`, and backs nothing off.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use sha2::{Digest, Sha256};

use super::introspect::{self, Answer, Blame, IntrospectionError, MAX_ANSWER_BYTES};
use super::IntrospectionSettings;
use crate::identity::claims::Claims;
use crate::io::{Clock, HttpClient, HttpError, Platform};
use crate::support::bounded::BoundedMap;
use crate::support::breaker::{Attempt, Breaker, Ticket, Turn, PROBE_SPACING_MS, REFUSED_RETRY_MS};
use crate::support::flight::POLL_MS;
use crate::token::{PostError, TokenConfig};

/// An active answer is remembered at most this long, whatever its `exp`.
pub const ACTIVE_MAX_MS: u64 = 5 * 60 * 1000;
/// An inactive answer is remembered this long.
pub const INACTIVE_MS: u64 = 10_000;
/// Most answers remembered per isolate.
pub const MAX_ENTRIES: usize = 10_000;
/// Most bytes the answers may hold, counted generously (parsed JSON at three times its text).
pub const MAX_BYTES: usize = 4 * 1024 * 1024;
/// Count for an entry's fixed part: digest, times, map and queue overhead.
pub const ENTRY_OVERHEAD: usize = 128;
const CLAIMS_FACTOR: usize = 3;
/// A call still marked after `INTROSPECTION_TIMEOUT_MS` plus this long is taken to be
/// abandoned (its request's future is never polled again).
pub const ABANDON_GRACE_MS: u64 = 5_000;

type Digest32 = [u8; 32];

/// How long an active answer may be remembered, besides its own `exp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep {
    /// At most this long after it arrived.
    pub active_max_ms: u64,
    /// And not at or after this time (a JWT's `exp`).
    pub until_ms: u64,
}

impl Default for Keep {
    /// A session's: `ACTIVE_MAX_MS`.
    fn default() -> Self {
        Self {
            active_max_ms: ACTIVE_MAX_MS,
            until_ms: u64::MAX,
        }
    }
}

/// Where the answer for a request came from, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntrospectionSource {
    Memory,
    Endpoint,
}

impl IntrospectionSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Endpoint => "endpoint",
        }
    }
}

/// The endpoint said `"active": true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vouched {
    pub claims: Claims,
    pub source: IntrospectionSource,
}

/// No answer could be had: the caller gets 503 with `Retry-After: retry_after_secs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntrospectionUnavailable {
    pub retry_after_secs: u64,
    pub cause: IntrospectionError,
    /// This request called the endpoint (and it failed); `false` when the answer is the back-off
    /// repeating an earlier failure.
    pub called_endpoint: bool,
}

/// Why an identifier was not vouched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unvouched {
    /// Not active (or expired): 401.
    Inactive(IntrospectionSource),
    /// The endpoint's answer about this identifier could not be used (too large, `active` not
    /// a boolean, an unusable `exp`, …): 401 as for an inactive one, and remembered as
    /// inactive; nothing else backs off.
    Unusable(IntrospectionError),
    /// 503: never let through unchecked.
    Unavailable(IntrospectionUnavailable),
}

#[derive(Debug)]
enum Verdict {
    Active(Claims),
    Inactive,
}

struct Entry {
    verdict: Verdict,
    /// Remembered while `now < until_ms`.
    until_ms: u64,
}

struct Pending {
    id: u64,
    started_ms: u64,
    /// The breaker's number of the call, which waiting requests wait on.
    seq: u64,
}

struct Inner {
    answers: BoundedMap<Digest32, Entry>,
    /// Identifiers being introspected now, by digest.
    pending: HashMap<Digest32, Pending>,
    calls_started: u64,
    /// The endpoint's last failure, what requests refused while it backs off are told.
    failure: Option<IntrospectionError>,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            answers: BoundedMap::new(MAX_ENTRIES, MAX_BYTES),
            pending: Default::default(),
            calls_started: Default::default(),
            failure: Default::default(),
        }
    }
}

/// One per isolate; requests share it.
#[derive(Default)]
pub struct SessionCache {
    inner: Rc<RefCell<Inner>>,
    /// The endpoint's health: probes after a failure.
    breaker: Breaker,
}

/// Held by the request introspecting an identifier; dropping it (done, or the request
/// cancelled) lets the next request for that identifier call.
struct CallGuard {
    inner: Rc<RefCell<Inner>>,
    digest: Digest32,
    id: u64,
    attempt: Option<Attempt>,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        let mut inner = self.inner.borrow_mut();
        if inner
            .pending
            .get(&self.digest)
            .is_some_and(|p| p.id == self.id)
        {
            inner.pending.remove(&self.digest);
        }
    }
}

enum Next {
    Ready(Result<Vouched, Unvouched>),
    Wait,
    Call(CallGuard),
}

impl SessionCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// What the endpoint says of `identifier`, from memory when it answered recently.
    /// Concurrent requests with one identifier cause one call.
    pub async fn check<P: Platform>(
        &self,
        identifier: &str,
        settings: &IntrospectionSettings,
        client: &TokenConfig,
        p: &P,
    ) -> Result<Vouched, Unvouched> {
        self.check_within(identifier, settings, client, Keep::default(), p)
            .await
    }

    /// As `check`, an active answer remembered only as long as `keep` allows (a JWT's
    /// introspection: `max_age_seconds` and the token's own `exp`).
    pub async fn check_within<P: Platform>(
        &self,
        identifier: &str,
        settings: &IntrospectionSettings,
        client: &TokenConfig,
        keep: Keep,
        p: &P,
    ) -> Result<Vouched, Unvouched> {
        let clock = p.clock();
        let digest: Digest32 = Sha256::digest(identifier.as_bytes()).into();
        let abandon_ms = settings.timeout_ms.saturating_add(ABANDON_GRACE_MS);
        let mut ticket = self.breaker.ticket(clock.now_ms());
        loop {
            match self.next(&digest, &mut ticket, clock.now_ms(), abandon_ms) {
                Next::Ready(result) => return result,
                Next::Wait => clock.sleep(POLL_MS).await,
                Next::Call(guard) => {
                    let answer = call(identifier, settings, client, p).await;
                    return self.record(guard, answer, keep, clock.now_ms());
                }
            }
        }
    }

    /// Answers remembered now (live or not yet noticed as expired).
    pub fn len(&self) -> usize {
        self.inner.borrow().answers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes counted for the answers, at most `MAX_BYTES`.
    pub fn bytes(&self) -> usize {
        self.inner.borrow().answers.bytes()
    }

    /// Decides, from the state at `now`, what this request does next.
    fn next(&self, digest: &Digest32, ticket: &mut Ticket, now: u64, abandon_ms: u64) -> Next {
        let mut inner = self.inner.borrow_mut();
        match inner.answers.get(digest) {
            Some(entry) if now < entry.until_ms => {
                let memory = IntrospectionSource::Memory;
                return Next::Ready(match &entry.verdict {
                    Verdict::Active(claims) => Ok(Vouched {
                        claims: claims.clone(),
                        source: memory,
                    }),
                    Verdict::Inactive => Err(Unvouched::Inactive(memory)),
                });
            }
            Some(_) => {
                inner.answers.remove(digest);
            }
            None => {}
        }
        // The same identifier's call in flight: not backing off, this request waits for it.
        let busy = inner
            .pending
            .get(digest)
            .filter(|p| now < p.started_ms.saturating_add(abandon_ms))
            .map(|p| p.seq);
        let attempt = match self.breaker.turn(ticket, now, busy, abandon_ms) {
            Turn::Go(attempt) => attempt,
            Turn::Wait => return Next::Wait,
            Turn::Refuse { retry_after_secs } => {
                return Next::Ready(Err(Unvouched::Unavailable(IntrospectionUnavailable {
                    retry_after_secs,
                    cause: inner
                        .failure
                        .clone()
                        .unwrap_or(IntrospectionError::Unreachable),
                    called_endpoint: false,
                })));
            }
        };
        inner.calls_started += 1;
        let id = inner.calls_started;
        inner.pending.insert(
            *digest,
            Pending {
                id,
                started_ms: now,
                seq: attempt.seq(),
            },
        );
        Next::Call(CallGuard {
            inner: self.inner.clone(),
            digest: *digest,
            id,
            attempt: Some(attempt),
        })
    }

    fn record(
        &self,
        mut guard: CallGuard,
        answer: Result<Answer, IntrospectionError>,
        keep: Keep,
        now: u64,
    ) -> Result<Vouched, Unvouched> {
        let digest = guard.digest;
        let attempt = guard.attempt.take();
        drop(guard);
        let endpoint = IntrospectionSource::Endpoint;
        let answered = |attempt: Option<Attempt>| {
            if let Some(attempt) = attempt {
                self.breaker.succeeded(attempt);
            }
        };
        let mut inner = self.inner.borrow_mut();
        match answer {
            Err(cause) if cause.blame() == Blame::Identifier => {
                // The endpoint answered; what it said of this identifier is unusable. The
                // identifier is refused like an inactive one, and no one else is.
                answered(attempt);
                let until = now.saturating_add(INACTIVE_MS);
                inner.insert(digest, Verdict::Inactive, until, ENTRY_OVERHEAD);
                Err(Unvouched::Unusable(cause))
            }
            Ok(answer) => {
                answered(attempt);
                inner.failure = None;
                match answer {
                    Answer::Active { claims, exp_secs } => {
                        let until = exp_secs
                            .map_or(u64::MAX, |exp| exp.saturating_mul(1000))
                            .min(now.saturating_add(keep.active_max_ms))
                            .min(keep.until_ms);
                        let bytes = ENTRY_OVERHEAD + claims.bytes() * CLAIMS_FACTOR;
                        inner.insert(digest, Verdict::Active(claims.clone()), until, bytes);
                        Ok(Vouched {
                            claims,
                            source: endpoint,
                        })
                    }
                    Answer::Inactive => {
                        let until = now.saturating_add(INACTIVE_MS);
                        inner.insert(digest, Verdict::Inactive, until, ENTRY_OVERHEAD);
                        Err(Unvouched::Inactive(endpoint))
                    }
                }
            }
            Err(cause) => {
                let retry_in_ms = match cause.blame() {
                    Blame::Configuration => REFUSED_RETRY_MS,
                    _ => PROBE_SPACING_MS,
                };
                if let Some(attempt) = attempt {
                    self.breaker.failed(attempt, now, retry_in_ms);
                }
                inner.failure = Some(cause.clone());
                Err(Unvouched::Unavailable(IntrospectionUnavailable {
                    retry_after_secs: self.breaker.retry_after_secs(now),
                    cause,
                    called_endpoint: true,
                }))
            }
        }
    }
}

impl Inner {
    /// Remembers a verdict, evicting the oldest answers to stay within the bounds.
    fn insert(&mut self, digest: Digest32, verdict: Verdict, until_ms: u64, bytes: usize) {
        self.answers
            .insert(digest, Entry { verdict, until_ms }, bytes);
    }
}

/// One call to the endpoint.
async fn call<P: Platform>(
    identifier: &str,
    settings: &IntrospectionSettings,
    client: &TokenConfig,
    p: &P,
) -> Result<Answer, IntrospectionError> {
    let http = p.http();
    let pairs = introspect::pairs(identifier);
    let response = crate::token::post_form(
        http,
        p.signer(),
        p.clock().now_ms(),
        client,
        &settings.url,
        &pairs,
        settings.timeout_ms,
    )
    .await
    .map_err(|e| match e {
        PostError::Http(HttpError::Timeout) => IntrospectionError::Timeout,
        PostError::Http(_) => IntrospectionError::Unreachable,
        PostError::ClientKey => IntrospectionError::ClientKey,
    })?;
    if response.status != 200 {
        // Before reading: a large error page is the endpoint's failure, not this identifier's.
        return Err(IntrospectionError::Status(response.status));
    }
    let body = http
        .read_body(response.body, MAX_ANSWER_BYTES)
        .await
        .map_err(|e| match e {
            // The whole answer came and was too much: this identifier's (its claims).
            HttpError::TooLarge => IntrospectionError::TooLarge,
            _ => IntrospectionError::Unreachable,
        })?;
    introspect::parse_answer(response.status, &body, p.clock().now_ms() / 1000)
}
