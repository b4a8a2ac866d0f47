//! The isolate's token cache as state and the decisions taken on it given `now`, without I/O:
//! what a request does next (use the token held, wait for the fill under way, fill, or be
//! refused while the endpoint backs off), whether the refresh ahead is due, and what a fill's
//! outcome leaves behind. `cache` drives them: the fills, KV, the coordinator, the endpoint.

use std::cell::RefCell;
use std::rc::Rc;

use super::entry::CachedToken;
use super::grant::GrantError;
use super::refresh::{self, Jitter};
use super::TokenConfig;
use crate::support::breaker::{Attempt, Breaker, Turn, PROBE_SPACING_MS, REFUSED_RETRY_MS};
use crate::support::flight::{Flight, FlightGuard};

/// Where a request's access token came from, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    Memory,
    Kv,
    Endpoint,
    /// The deployment's token coordinator (`TOKEN_COORDINATOR`).
    Coordinator,
}

impl TokenSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Kv => "kv",
            Self::Endpoint => "endpoint",
            Self::Coordinator => "coordinator",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Obtained {
    pub token: Rc<CachedToken>,
    pub source: TokenSource,
    /// Set when this request asked the coordinator and it failed (`unreachable`, `timeout`):
    /// the token then came from this isolate's own fill.
    pub coordinator: Option<&'static str>,
}

/// No usable token: the caller gets 503 with `Retry-After: retry_after_secs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenUnavailable {
    pub retry_after_secs: u64,
    pub cause: GrantError,
    /// This request called the token endpoint (and it failed); `false` when the answer is the
    /// back-off repeating an earlier failure.
    pub called_endpoint: bool,
    /// As `Obtained::coordinator`.
    pub coordinator: Option<&'static str>,
}

/// What a refresh (ahead of expiry, or the scheduled pre-warm) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The token held is not due for refresh: nothing was called.
    Fresh,
    /// Another fill is in flight in this isolate: nothing was called.
    InFlight,
    /// An earlier failure is being backed off (no probe due, or one in flight): nothing was
    /// called.
    BackingOff(GrantError),
    /// A newer token was taken from KV (another isolate refreshed it) or from the endpoint.
    Refreshed(TokenSource),
    /// The endpoint failed; a still-usable token stays in use.
    Failed(GrantError),
}

impl RefreshOutcome {
    /// A stable id for the log line.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Fresh => "fresh",
            Self::InFlight => "in_flight",
            Self::BackingOff(_) => "backing_off",
            Self::Refreshed(_) => "refreshed",
            Self::Failed(_) => "failed",
        }
    }

    pub fn source(&self) -> Option<TokenSource> {
        match self {
            Self::Refreshed(source) => Some(*source),
            _ => None,
        }
    }

    pub fn error(&self) -> Option<&GrantError> {
        match self {
            Self::BackingOff(e) | Self::Failed(e) => Some(e),
            _ => None,
        }
    }
}

/// A fill still marked after the token timeout plus this long is taken to be abandoned.
const FILL_GRACE_MS: u64 = 30_000;
/// At most one token dropped after an origin 401 per this long, per isolate.
pub const REJECT_COOLDOWN_MS: u64 = 10_000;
/// How long an isolate waits for the coordinator beyond the token timeout: the coordinator may
/// itself be waiting on the token endpoint for up to `TOKEN_TIMEOUT_MS`, and an isolate that
/// gave up sooner would call the endpoint too, which is what the coordinator is there to stop.
pub const COORDINATOR_GRACE_MS: u64 = 2_000;

#[derive(Default)]
pub(super) struct State {
    pub(super) current: Option<Rc<CachedToken>>,
    /// When this isolate refreshes `current` ahead of its expiry: drawn, with jitter, when
    /// `current` is stored.
    pub(super) refresh_at_ms: u64,
    /// The last failure, what requests refused while backing off are told.
    pub(super) failure: Option<GrantError>,
    /// The breaker's number of the fill in flight, which waiting requests wait on.
    pub(super) fill_seq: u64,
    /// The last token the origin refused: never taken from KV again (KV's delete may not be
    /// visible yet where this isolate reads).
    pub(super) rejected: Option<Rc<CachedToken>>,
    /// When this isolate last dropped a token after an origin 401.
    pub(super) last_drop_ms: Option<u64>,
    /// The token the coordinator last kept on a drop (its cooldown), and when: refused again
    /// within the cooldown, it is kept here without asking again.
    pub(super) kept_by_coordinator: Option<(Rc<CachedToken>, u64)>,
}

/// One per isolate. Requests share it; nothing in it is `Send` because an isolate is one thread.
pub struct TokenCache {
    pub(super) state: Rc<RefCell<State>>,
    /// The one fill (foreground or refresh ahead) in flight.
    pub(super) flight: Flight,
    /// The token endpoint's (or the coordinator's) health: probes after a failure.
    pub(super) breaker: Breaker,
    /// Draws the jitter of each stored token's refresh moment; fixed in tests.
    pub(super) jitter: Box<dyn Fn() -> Jitter>,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::new()
    }
}

/// A fill under way: the cache's mark and the breaker's numbered call. Dropped unfinished (its
/// request cancelled), both are released.
pub(super) struct Filling {
    pub(super) flight: FlightGuard,
    pub(super) attempt: Attempt,
}

/// The isolate's one refresh ahead of expiry, claimed: run it with `TokenCache::refresh`.
/// Dropping it unrun releases the claim.
pub struct RefreshAhead(pub(super) Filling);

impl std::fmt::Debug for RefreshAhead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RefreshAhead")
            .field(&self.0.flight.id())
            .finish()
    }
}

/// Why a fill got no token.
pub(super) enum Failure {
    /// This isolate called the endpoint and it failed.
    Endpoint(GrantError),
    /// The coordinator answered that no token can be had: its back-off, shared by every
    /// isolate, so this one does not call the endpoint either.
    Coordinator { cause: GrantError, called: bool },
}

/// What one fill came back with, and what went wrong with the coordinator on the way.
pub(super) struct Filled {
    pub(super) result: Result<(CachedToken, TokenSource), Failure>,
    pub(super) coordinator: Option<&'static str>,
}

pub(super) enum Next {
    Ready(Obtained),
    Failed(TokenUnavailable),
    Wait,
    Fill(Filling),
}

pub(super) fn same(a: Option<&Rc<CachedToken>>, b: &CachedToken) -> bool {
    a.is_some_and(|a| a.access_token() == b.access_token())
}

pub(super) fn abandon_after_ms(cfg: &TokenConfig) -> u64 {
    cfg.timeout_ms + FILL_GRACE_MS
}

impl TokenCache {
    /// A cache whose refresh moments get random jitter.
    pub fn new() -> Self {
        Self::with_jitter(Jitter::random)
    }

    /// A cache whose refresh moments get jitter from `jitter` (tests fix it).
    pub fn with_jitter(jitter: impl Fn() -> Jitter + 'static) -> Self {
        Self {
            state: Rc::default(),
            flight: Flight::default(),
            breaker: Breaker::new(),
            jitter: Box::new(jitter),
        }
    }

    /// Claims the refresh ahead of expiry when the cached token is in its refresh window and
    /// nothing else is filling, and, after a failure, a probe is due; `None` otherwise (nearly
    /// always).
    pub fn refresh_due(&self, cfg: &TokenConfig, now: u64) -> Option<RefreshAhead> {
        {
            let st = self.state.borrow();
            let current = st.current.as_ref()?;
            // Past its usable time the next request fills in the foreground: nothing to do ahead.
            if !current.is_usable(now) || now < st.refresh_at_ms {
                return None;
            }
        }
        let abandon = abandon_after_ms(cfg);
        let attempt = self
            .breaker
            .try_go(now, self.flight.in_flight(now, abandon), abandon)?;
        Some(RefreshAhead(self.start_fill(now, attempt)))
    }

    /// The token held in memory, usable or not (the coordinator compares drops against it).
    pub fn current(&self) -> Option<Rc<CachedToken>> {
        self.state.borrow().current.clone()
    }

    /// `Retry-After` while the endpoint is backing off: seconds until the next probe may start.
    pub fn retry_after_secs(&self, now: u64) -> u64 {
        self.breaker.retry_after_secs(now)
    }

    /// Decides, from the state at `now`, what this request does next.
    pub(super) fn next(
        &self,
        ticket: &mut crate::support::breaker::Ticket,
        now: u64,
        abandon_ms: u64,
    ) -> Next {
        let (busy, cause) = {
            let st = self.state.borrow();
            if let Some(token) = st.current.as_ref().filter(|t| t.is_usable(now)) {
                return Next::Ready(Obtained {
                    token: token.clone(),
                    source: TokenSource::Memory,
                    coordinator: None,
                });
            }
            let busy = self
                .flight
                .in_flight(now, abandon_ms)
                .then_some(st.fill_seq);
            (busy, st.failure.clone())
        };
        match self.breaker.turn(ticket, now, busy, abandon_ms) {
            Turn::Go(attempt) => Next::Fill(self.start_fill(now, attempt)),
            Turn::Wait => Next::Wait,
            Turn::Refuse { retry_after_secs } => Next::Failed(TokenUnavailable {
                retry_after_secs,
                cause: cause.unwrap_or(GrantError::Unreachable),
                called_endpoint: false,
                coordinator: None,
            }),
        }
    }

    /// Marks a fill as under way, numbered `attempt` for the requests that wait on it.
    pub(super) fn start_fill(&self, now: u64, attempt: Attempt) -> Filling {
        self.state.borrow_mut().fill_seq = attempt.seq();
        Filling {
            flight: self.flight.start(now),
            attempt,
        }
    }

    pub(super) fn record(
        &self,
        filling: Filling,
        filled: Filled,
        now: u64,
    ) -> Result<Obtained, TokenUnavailable> {
        let Filling { flight, attempt } = filling;
        drop(flight);
        let mut st = self.state.borrow_mut();
        let coordinator = filled.coordinator;
        match filled.result {
            Ok((token, source)) => {
                self.breaker.succeeded(attempt);
                st.refresh_at_ms = refresh::refresh_at_ms(&token, (self.jitter)());
                let token = Rc::new(token);
                st.current = Some(token.clone());
                st.failure = None;
                Ok(Obtained {
                    token,
                    source,
                    coordinator,
                })
            }
            Err(failure) => {
                let (cause, called_endpoint) = match failure {
                    Failure::Endpoint(cause) => (cause, true),
                    // The coordinator's answer that no token can be had: this isolate's probe
                    // failed like an endpoint call would; its next ask is its next probe.
                    Failure::Coordinator { cause, called } => (cause, called),
                };
                self.breaker.failed(attempt, now, retry_in_ms(&cause));
                st.failure = Some(cause.clone());
                Err(TokenUnavailable {
                    retry_after_secs: self.breaker.retry_after_secs(now),
                    cause,
                    called_endpoint,
                    coordinator,
                })
            }
        }
    }
}

/// How long after a failure the endpoint is next tried.
pub(super) fn retry_in_ms(cause: &GrantError) -> u64 {
    if cause.is_client_misconfigured() {
        // Our credentials were refused: only an operator can fix that, so do not hammer.
        return REFUSED_RETRY_MS;
    }
    PROBE_SPACING_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_credentials_wait_a_minute_and_every_other_failure_is_probed_again_soon() {
        for down in [
            GrantError::Unreachable,
            GrantError::Timeout,
            GrantError::NotJson,
            GrantError::Status {
                status: 503,
                oauth_error: None,
            },
            GrantError::Status {
                status: 429,
                oauth_error: None,
            },
        ] {
            assert_eq!(retry_in_ms(&down), PROBE_SPACING_MS, "{down:?}");
        }
        for refused in [401, 403] {
            let refused = GrantError::Status {
                status: refused,
                oauth_error: Some("invalid_client".into()),
            };
            assert_eq!(retry_in_ms(&refused), REFUSED_RETRY_MS);
        }
    }

    #[test]
    fn a_dropped_fill_releases_its_mark() {
        let cache = TokenCache::new();
        let mut first = cache.breaker.ticket(0);
        let Next::Fill(guard) = cache.next(&mut first, 0, 1_000) else {
            panic!("the first caller fills");
        };
        let mut second = cache.breaker.ticket(0);
        assert!(matches!(cache.next(&mut second, 0, 1_000), Next::Wait));
        drop(guard);
        assert!(
            matches!(cache.next(&mut second, 0, 1_000), Next::Fill(_)),
            "a waiter takes over"
        );
    }

    #[test]
    fn a_fill_never_finished_nor_dropped_is_taken_over_after_a_while() {
        let cache = TokenCache::new();
        let mut first = cache.breaker.ticket(0);
        let Next::Fill(stuck) = cache.next(&mut first, 0, 1_000) else {
            panic!("the first caller fills");
        };
        let mut second = cache.breaker.ticket(0);
        assert!(matches!(cache.next(&mut second, 999, 1_000), Next::Wait));
        assert!(matches!(
            cache.next(&mut second, 1_000, 1_000),
            Next::Fill(_)
        ));
        std::mem::forget(stuck);
    }
}
