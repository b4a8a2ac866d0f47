//! The isolate's access-token cache: memory, then KV, then the token endpoint; one fill in
//! flight at a time, and a back-off after a failed fill so an outage is not met with one
//! endpoint call per request.
//!
//! Why waiters poll instead of awaiting the fill: on workerd, a request resumed by I/O that
//! another request started continues in that other request's I/O context (its own fetches then
//! fail), and if the filling request is cancelled its promise never settles, wedging every
//! waiter. So the request that starts a fill runs it in its own context, and the others check
//! the cache on their own timers; a fill whose request disappears is released by a drop guard.

use std::cell::RefCell;
use std::rc::Rc;

use http::Method;

use super::entry::CachedToken;
use super::grant::{self, GrantError, MAX_RESPONSE_BYTES};
use super::TokenConfig;
use crate::io::{Body, Clock, HttpClient, HttpError, KeyValue, OutboundRequest};

/// Where a request's access token came from, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    Memory,
    Kv,
    Endpoint,
}

impl TokenSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Kv => "kv",
            Self::Endpoint => "endpoint",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Obtained {
    pub token: Rc<CachedToken>,
    pub source: TokenSource,
}

/// No usable token: the caller gets 503 with `Retry-After: retry_after_secs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenUnavailable {
    pub retry_after_secs: u64,
    pub cause: GrantError,
}

/// First back-off after a failed fill; it doubles with each failure in a row up to the cap.
const FIRST_BACKOFF_MS: u64 = 2_000;
const MAX_BACKOFF_MS: u64 = 60_000;
/// How often a waiting request looks again: small next to a token endpoint's round trip.
const POLL_MS: u64 = 10;

#[derive(Default)]
struct State {
    current: Option<Rc<CachedToken>>,
    /// A fill is running (in some request); its number, so a finished fill is told apart.
    filling: Option<u64>,
    fills_started: u64,
    /// No fill starts before this instant; requests get `failure` until then.
    backoff_until_ms: u64,
    failure: Option<GrantError>,
    failures_in_a_row: u32,
}

/// One per isolate. Requests share it; nothing in it is `Send` because an isolate is one thread.
#[derive(Default)]
pub struct TokenCache {
    state: Rc<RefCell<State>>,
}

/// Releases the fill mark if the filling request is dropped before recording an outcome, so a
/// waiter takes over instead of waiting for a fill that will never finish.
struct FillGuard {
    state: Rc<RefCell<State>>,
    fill: u64,
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        let mut st = self.state.borrow_mut();
        if st.filling == Some(self.fill) {
            st.filling = None;
        }
    }
}

enum Next {
    Ready(Obtained),
    Failed(TokenUnavailable),
    Wait,
    Fill(FillGuard),
}

impl TokenCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// A token that may be sent now. Concurrent callers that miss memory cause one fill.
    pub async fn get<H, S, C>(
        &self,
        cfg: &TokenConfig,
        http: &H,
        store: &S,
        clock: &C,
    ) -> Result<Obtained, TokenUnavailable>
    where
        H: HttpClient,
        S: KeyValue,
        C: Clock,
    {
        loop {
            match self.next(clock.now_ms()) {
                Next::Ready(obtained) => return Ok(obtained),
                Next::Failed(unavailable) => return Err(unavailable),
                Next::Wait => clock.sleep(POLL_MS).await,
                Next::Fill(guard) => {
                    let result = load_or_fetch(cfg, http, store, clock).await;
                    return self.record(guard, result, clock.now_ms());
                }
            }
        }
    }

    /// Decides, from the state at `now`, what this request does next.
    fn next(&self, now: u64) -> Next {
        let mut st = self.state.borrow_mut();
        if let Some(token) = st.current.as_ref().filter(|t| t.is_usable(now)) {
            return Next::Ready(Obtained {
                token: token.clone(),
                source: TokenSource::Memory,
            });
        }
        if st.filling.is_some() {
            return Next::Wait;
        }
        if let Some(cause) = st.failure.clone().filter(|_| now < st.backoff_until_ms) {
            return Next::Failed(TokenUnavailable {
                retry_after_secs: retry_after_secs(st.backoff_until_ms, now),
                cause,
            });
        }
        st.fills_started += 1;
        let fill = st.fills_started;
        st.filling = Some(fill);
        Next::Fill(FillGuard {
            state: self.state.clone(),
            fill,
        })
    }

    fn record(
        &self,
        guard: FillGuard,
        result: Result<(CachedToken, TokenSource), GrantError>,
        now: u64,
    ) -> Result<Obtained, TokenUnavailable> {
        drop(guard);
        let mut st = self.state.borrow_mut();
        match result {
            Ok((token, source)) => {
                let token = Rc::new(token);
                st.current = Some(token.clone());
                st.failure = None;
                st.failures_in_a_row = 0;
                Ok(Obtained { token, source })
            }
            Err(cause) => {
                st.failures_in_a_row = st.failures_in_a_row.saturating_add(1);
                st.backoff_until_ms = now + backoff_ms(st.failures_in_a_row, &cause);
                st.failure = Some(cause.clone());
                Err(TokenUnavailable {
                    retry_after_secs: retry_after_secs(st.backoff_until_ms, now),
                    cause,
                })
            }
        }
    }
}

fn retry_after_secs(until_ms: u64, now_ms: u64) -> u64 {
    until_ms.saturating_sub(now_ms).div_ceil(1000).max(1)
}

/// How long to leave the endpoint alone after `failures` failed fills in a row.
pub(super) fn backoff_ms(failures: u32, cause: &GrantError) -> u64 {
    if cause.is_client_misconfigured() {
        // Our credentials were refused: only an operator can fix that, so do not hammer.
        return MAX_BACKOFF_MS;
    }
    let doublings = failures.saturating_sub(1).min(16);
    (FIRST_BACKOFF_MS << doublings).min(MAX_BACKOFF_MS)
}

async fn load_or_fetch<H, S, C>(
    cfg: &TokenConfig,
    http: &H,
    store: &S,
    clock: &C,
) -> Result<(CachedToken, TokenSource), GrantError>
where
    H: HttpClient,
    S: KeyValue,
    C: Clock,
{
    let key = cfg.cache_key();
    let sealer = cfg.sealer.as_ref();
    // A KV failure is a miss: the endpoint can still serve the request.
    if let Ok(Some(value)) = store.get(&key).await {
        if let Some(token) = CachedToken::from_kv(&value, sealer, &key) {
            if token.is_usable(clock.now_ms()) {
                return Ok((token, TokenSource::Kv));
            }
        }
    }
    let (headers, form) = grant::request(cfg);
    let response = http
        .send(OutboundRequest {
            method: Method::POST,
            url: cfg.url.clone(),
            headers,
            body: Body::Bytes(form),
            timeout_ms: cfg.timeout_ms,
        })
        .await
        .map_err(|e| match e {
            HttpError::Timeout => GrantError::Timeout,
            _ => GrantError::Unreachable,
        })?;
    let body = http
        .read_body(response.body, MAX_RESPONSE_BYTES)
        .await
        .map_err(|_| GrantError::NotJson)?;
    let now = clock.now_ms();
    let token = grant::parse_response(response.status, &body, now)?;
    if let Some(value) = token.to_kv(sealer, &key) {
        // Best effort: a failed write costs the next isolate one endpoint call, nothing more.
        let _ = store.put(&key, &value, token.kv_ttl_secs(now)).await;
    }
    Ok((token, TokenSource::Endpoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_and_is_long_for_refused_credentials() {
        let down = GrantError::Unreachable;
        assert_eq!(backoff_ms(1, &down), 2_000);
        assert_eq!(backoff_ms(2, &down), 4_000);
        assert_eq!(backoff_ms(5, &down), 32_000);
        assert_eq!(backoff_ms(6, &down), 60_000);
        assert_eq!(backoff_ms(u32::MAX, &down), 60_000);
        let refused = GrantError::Status {
            status: 401,
            oauth_error: Some("invalid_client".into()),
        };
        assert_eq!(backoff_ms(1, &refused), 60_000);
    }

    #[test]
    fn a_dropped_fill_releases_its_mark() {
        let cache = TokenCache::new();
        let Next::Fill(guard) = cache.next(0) else {
            panic!("the first caller fills");
        };
        assert!(matches!(cache.next(0), Next::Wait));
        drop(guard);
        assert!(
            matches!(cache.next(0), Next::Fill(_)),
            "a waiter takes over"
        );
    }
}
