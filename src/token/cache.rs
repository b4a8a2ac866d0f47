//! The isolate's access-token cache, driven: memory, then KV, then the token endpoint; one fill in
//! flight at a time; a refresh ahead of expiry that requests do not wait for; a compare-before-
//! drop after the origin refuses a token; and, after a failed fill, probes (`crate::support::breaker`:
//! one at a time, one per half second, the first good answer ends the back-off) so an outage
//! is not met with one endpoint call per request, nor a recovery with a minute of 503s. The
//! state and the decisions taken on it given `now` are `state`'s; this file runs them (I/O).
//!
//! Why waiters poll instead of awaiting the fill: on workerd, a request resumed by I/O that
//! another request started continues in that other request's I/O context (its own fetches then
//! fail), and if the filling request is cancelled its promise never settles, wedging every
//! waiter. So the request that starts a fill runs it in its own context, and the others check
//! the cache on their own timers; a fill whose request disappears is released by a drop guard,
//! and a fill whose future is never polled again (its context torn down without dropping it) is
//! taken over once it is older than the token timeout plus a grace period.
//!
//! The refresh ahead is the same fill, claimed by the request that first sees the token inside
//! its refresh window (`refresh`) and run by the platform after that request's response
//! (`ctx.wait_until`); meanwhile every request keeps using the still-usable token.
//!
//! With a token coordinator bound (`TOKEN_COORDINATOR`, the platform's `coordinator`), a fill
//! that finds nothing usable in KV asks the coordinator instead of the endpoint, and a drop
//! after an origin refusal goes through it too, so the whole deployment shares one token and
//! one back-off. A coordinator that fails or answers garbage is noted (`Obtained::coordinator`)
//! and the fill goes on to the endpoint, exactly as without one. While the coordinator answers
//! that no token can be had, this isolate's asks are its probes: one at a time, one per half
//! second, so that the coordinator's first good answer reaches every isolate at once.

use std::rc::Rc;

use super::client_auth::{self, PostError};
use super::entry::CachedToken;
use super::grant::{self, GrantError, MAX_RESPONSE_BYTES};
use super::protocol::{self, Answer, Ask, Rejection};
use super::refresh;
use super::state::{
    abandon_after_ms, same, Failure, Filled, Next, Obtained, RefreshAhead, RefreshOutcome,
    TokenCache, TokenSource, TokenUnavailable, COORDINATOR_GRACE_MS, REJECT_COOLDOWN_MS,
};
use super::TokenConfig;
use crate::io::{Clock, Coordinator, CoordinatorError, HttpClient, HttpError, KeyValue, Platform};
use crate::support::flight::POLL_MS;

impl TokenCache {
    /// A token that may be sent now, asking the platform's coordinator (when bound) before
    /// the endpoint. Concurrent callers that miss memory cause one fill.
    pub async fn get<P: Platform>(
        &self,
        cfg: &TokenConfig,
        p: &P,
    ) -> Result<Obtained, TokenUnavailable> {
        let clock = p.clock();
        let mut ticket = self.breaker.ticket(clock.now_ms());
        loop {
            match self.next(&mut ticket, clock.now_ms(), abandon_after_ms(cfg)) {
                Next::Ready(obtained) => return Ok(obtained),
                Next::Failed(unavailable) => return Err(unavailable),
                Next::Wait => clock.sleep(POLL_MS).await,
                Next::Fill(filling) => {
                    let rejected = self.state.borrow().rejected.clone();
                    let accept =
                        |t: &CachedToken, now| t.is_usable(now) && !same(rejected.as_ref(), t);
                    let filled = load_or_fetch(cfg, p, accept, false).await;
                    let obtained = self.record(filling, filled, clock.now_ms())?;
                    write_back(cfg, p, &obtained).await;
                    return Ok(obtained);
                }
            }
        }
    }

    /// Runs a claimed refresh: a newer token from KV if another isolate already refreshed, else
    /// one from the platform's coordinator (when bound; asked for a token not due for refresh,
    /// it refreshes its own once for every isolate), else from the endpoint. On failure the
    /// current token stays in use while it is usable.
    pub async fn refresh<P: Platform>(
        &self,
        job: RefreshAhead,
        cfg: &TokenConfig,
        p: &P,
    ) -> RefreshOutcome {
        let clock = p.clock();
        let (current, rejected) = {
            let st = self.state.borrow();
            (st.current.clone(), st.rejected.clone())
        };
        // A KV token is worth taking only if it is another, not yet due for refresh itself.
        let accept = |t: &CachedToken, now| {
            t.is_usable(now)
                && now < refresh::refresh_from_ms(t)
                && !same(current.as_ref(), t)
                && !same(rejected.as_ref(), t)
        };
        let filled = load_or_fetch(cfg, p, accept, true).await;
        match self.record(job.0, filled, clock.now_ms()) {
            Ok(obtained) => {
                write_back(cfg, p, &obtained).await;
                RefreshOutcome::Refreshed(obtained.source)
            }
            Err(unavailable) => RefreshOutcome::Failed(unavailable.cause),
        }
    }

    /// For the scheduled handler: makes sure this isolate, and KV, hold a token that is not
    /// due for refresh, so that the first request after a quiet spell finds one (through the
    /// platform's coordinator when bound).
    pub async fn prewarm<P: Platform>(&self, cfg: &TokenConfig, p: &P) -> RefreshOutcome {
        let now = p.clock().now_ms();
        let abandon = abandon_after_ms(cfg);
        {
            let st = self.state.borrow();
            let fresh = st
                .current
                .as_ref()
                .is_some_and(|t| t.is_usable(now) && now < st.refresh_at_ms);
            if fresh {
                return RefreshOutcome::Fresh;
            }
        }
        if self.flight.in_flight(now, abandon) {
            return RefreshOutcome::InFlight;
        }
        let Some(attempt) = self.breaker.try_go(now, false, abandon) else {
            let cause = self.state.borrow().failure.clone();
            return RefreshOutcome::BackingOff(cause.unwrap_or(GrantError::Unreachable));
        };
        let job = RefreshAhead(self.start_fill(now, attempt));
        self.refresh(job, cfg, p).await
    }

    /// This isolate's part of `reject`: memory and KV.
    async fn reject_here<P: Platform>(
        &self,
        used: &Rc<CachedToken>,
        cfg: &TokenConfig,
        p: &P,
        cooldown: bool,
    ) -> Rejection {
        let store = p.store();
        let now = p.clock().now_ms();
        {
            let mut st = self.state.borrow_mut();
            if !same(st.current.as_ref(), used) {
                return Rejection::AlreadyReplaced;
            }
            if cooldown
                && st
                    .last_drop_ms
                    .is_some_and(|t| now < t.saturating_add(REJECT_COOLDOWN_MS))
            {
                return Rejection::Kept;
            }
            st.current = None;
            st.rejected = Some(used.clone());
            st.last_drop_ms = Some(now);
        }
        // KV has no compare-and-delete: read, compare, delete. Losing the race to another
        // isolate's write deletes its fresh token, which costs that token one more endpoint
        // call, never a request.
        let key = cfg.cache_key();
        if let Ok(Some(value)) = store.get(&key).await {
            let held = CachedToken::from_kv(&value, cfg.sealer.as_ref(), &key);
            if held.is_some_and(|t| t.access_token() == used.access_token()) {
                let _ = store.delete(&key).await;
            }
        }
        Rejection::Dropped
    }

    /// The origin answered 401 to `used`. Drops it from memory and from KV only if it is still
    /// the cached token there (another request, or another isolate, may have replaced it), so
    /// that the next `get` fetches one new token for every request that hit this.
    ///
    /// Without a coordinator, at most one drop per `REJECT_COOLDOWN_MS`: each drop costs an
    /// endpoint call, and an origin that refuses every token must not turn every request into
    /// one. With the platform's coordinator bound, the endpoint is the coordinator's to
    /// protect, so its cooldown decides and this isolate tells it of every refused token it
    /// has not already kept: after an origin revokes every token at once, the coordinator's
    /// newer token may be refused a moment after the isolate's older one, and a cooldown here
    /// would hold that refused token for ten seconds. The coordinator's verdict is returned:
    /// `AlreadyReplaced` when it holds another token (not fetched for this refusal), `Kept`
    /// when its cooldown kept this one (the next `get` hands the same token back). An
    /// unreachable coordinator leaves this isolate's own verdict.
    pub async fn reject<P: Platform>(
        &self,
        used: &Rc<CachedToken>,
        cfg: &TokenConfig,
        p: &P,
    ) -> Rejection {
        let coord = p.coordinator();
        if !coord.is_bound() {
            return self.reject_here(used, cfg, p, true).await;
        }
        let now = p.clock().now_ms();
        if self
            .state
            .borrow()
            .kept_by_coordinator
            .as_ref()
            .is_some_and(|(t, at)| {
                t.access_token() == used.access_token()
                    && now < at.saturating_add(REJECT_COOLDOWN_MS)
            })
        {
            return Rejection::Kept;
        }
        let local = self.reject_here(used, cfg, p, false).await;
        if local != Rejection::Dropped {
            return local;
        }
        let ask = Ask::Drop {
            digest: protocol::digest(used.access_token()),
        };
        let answer = match coord.exchange(&ask.to_json(), COORDINATOR_GRACE_MS).await {
            Ok(text) => Answer::from_json(&text),
            Err(_) => None,
        };
        match answer {
            Some(Answer::Dropped {
                rejection: Rejection::Kept,
            }) => {
                self.state.borrow_mut().kept_by_coordinator = Some((used.clone(), now));
                Rejection::Kept
            }
            Some(Answer::Dropped {
                rejection: Rejection::AlreadyReplaced,
            }) => Rejection::AlreadyReplaced,
            // Dropped there; or the coordinator could not be told (garbage, unreachable): the
            // isolate's own drop stands and the next `get` finds a new token.
            _ => local,
        }
    }
}

/// A token from KV when `accept` takes it, else from the coordinator when one is bound and
/// answers, else from the endpoint. `fresh`: the coordinator is asked for a token not due for
/// refresh. Writes nothing: the caller records the token in memory first, so that waiting
/// requests go on before the KV write.
async fn load_or_fetch<P: Platform>(
    cfg: &TokenConfig,
    p: &P,
    accept: impl Fn(&CachedToken, u64) -> bool,
    fresh: bool,
) -> Filled {
    let (store, coord, clock) = (p.store(), p.coordinator(), p.clock());
    let key = cfg.cache_key();
    // A KV failure is a miss: the endpoint can still serve the request.
    if let Ok(Some(value)) = store.get(&key).await {
        if let Some(token) = CachedToken::from_kv(&value, cfg.sealer.as_ref(), &key) {
            if accept(&token, clock.now_ms()) {
                return Filled {
                    result: Ok((token, TokenSource::Kv)),
                    coordinator: None,
                };
            }
        }
    }
    let mut fault = None;
    if coord.is_bound() {
        match ask_coordinator(cfg, p, fresh).await {
            Ok(result) => {
                return Filled {
                    result,
                    coordinator: None,
                }
            }
            Err(why) => fault = Some(why),
        }
    }
    Filled {
        result: fetch(cfg, p).await.map_err(Failure::Endpoint),
        coordinator: fault,
    }
}

/// The coordinator's answer to a `get`; `Err` with the log value when there is none to use.
/// The coordinator's token is taken even if this isolate refused it: it is the deployment's,
/// and it hands back a refused one only when its own drop cooldown kept it.
async fn ask_coordinator<P: Platform>(
    cfg: &TokenConfig,
    p: &P,
    fresh: bool,
) -> Result<Result<(CachedToken, TokenSource), Failure>, &'static str> {
    let ask = Ask::Get { fresh };
    let text = p
        .coordinator()
        .exchange(&ask.to_json(), cfg.timeout_ms + COORDINATOR_GRACE_MS)
        .await
        .map_err(|e| match e {
            CoordinatorError::Timeout => "timeout",
            CoordinatorError::Unreachable(_) => "unreachable",
        })?;
    match Answer::from_json(&text) {
        Some(Answer::Token { token }) if token.is_usable(p.clock().now_ms()) => {
            Ok(Ok((token, TokenSource::Coordinator)))
        }
        Some(Answer::Unavailable { error, called, .. }) => Ok(Err(Failure::Coordinator {
            cause: error,
            called,
        })),
        // Garbage, a token already spent, or an answer to another question.
        _ => Err("unreachable"),
    }
}

/// One call to the token endpoint.
async fn fetch<P: Platform>(
    cfg: &TokenConfig,
    p: &P,
) -> Result<(CachedToken, TokenSource), GrantError> {
    let (http, clock) = (p.http(), p.clock());
    let response = client_auth::post_form(
        http,
        p.signer(),
        clock.now_ms(),
        cfg,
        &cfg.url,
        &grant::pairs(cfg),
        cfg.timeout_ms,
    )
    .await
    .map_err(|e| match e {
        PostError::Http(HttpError::Timeout) => GrantError::Timeout,
        PostError::Http(_) => GrantError::Unreachable,
        PostError::ClientKey => GrantError::ClientKey,
    })?;
    let body = http
        .read_body(response.body, MAX_RESPONSE_BYTES)
        .await
        .map_err(|_| GrantError::NotJson)?;
    let token = grant::parse_response(response.status, &body, clock.now_ms())?;
    Ok((token, TokenSource::Endpoint))
}

/// Writes a token fresh from the endpoint to KV for the other isolates. Best effort: a failed
/// write costs the next isolate one endpoint call, nothing more.
async fn write_back<P: Platform>(cfg: &TokenConfig, p: &P, obtained: &Obtained) {
    let (store, clock) = (p.store(), p.clock());
    if obtained.source != TokenSource::Endpoint {
        return;
    }
    let key = cfg.cache_key();
    if let Some(value) = obtained.token.to_kv(cfg.sealer.as_ref(), &key) {
        let ttl = obtained.token.kv_ttl_secs(clock.now_ms());
        let _ = store.put(&key, &value, ttl).await;
    }
}
