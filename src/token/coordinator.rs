//! The token coordinator: the isolate's token cache run once for the whole deployment (in a
//! Durable Object, `TOKEN_COORDINATOR`), answering the isolates' asks (`protocol`).
//!
//! It is the same `TokenCache`: memory, then its own storage, then the token endpoint; one fill
//! at a time, with concurrent asks polling it; a refresh ahead of expiry; compare-before-drop
//! after an origin refusal; and the back-off after endpoint failures, which, held here, is the
//! deployment's: a dead endpoint sees one attempt per back-off step, not one per isolate.
//!
//! Its storage (Durable Object storage in production) is the one it trusts; every token it
//! writes there it also writes to KV, sealed the same way (`TOKEN_ENCRYPTION_KEY`), for the
//! isolates that read KV before they ask. A stored value that does not open is a miss.
//!
//! It refreshes earlier than any isolate would (the most jitter there is), so an isolate
//! refreshing ahead finds the coordinator's token already renewed, or causes its renewal.
//!
//! Its back-off doubles from 2 s to `MAX_BACKOFF_MS` (4 s), not to the isolate's minute: one
//! coordinator makes one call per step for the whole deployment, so a dead endpoint sees at most
//! 15 calls a minute in all, and every isolate is served within 4 s of the endpoint's return.
//! Refused credentials keep the long back-off: only an operator can fix those.

use super::cache::{RefreshAhead, RefreshOutcome, Rejection, TokenCache};
use super::entry::CachedToken;
use super::protocol::{digest, Answer, Ask};
use super::refresh::Jitter;
use super::TokenConfig;
use crate::flight::POLL_MS;
use crate::io::{Clock, HttpClient, KeyValue, StoreError};

/// The coordinator's own storage, trusted, with every write and delete copied to KV.
pub struct Mirrored<'a, P, Q> {
    pub own: &'a P,
    pub kv: &'a Q,
}

impl<P: KeyValue, Q: KeyValue> KeyValue for Mirrored<'_, P, Q> {
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        // Never KV: another location's stale or dropped value must not become the deployment's.
        self.own.get(key).await
    }

    async fn put(&self, key: &str, value: &str, ttl_secs: u64) -> Result<(), StoreError> {
        let own = self.own.put(key, value, ttl_secs).await;
        // Best effort: an isolate that misses KV asks the coordinator anyway.
        let _ = self.kv.put(key, value, ttl_secs).await;
        own
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let own = self.own.delete(key).await;
        let _ = self.kv.delete(key).await;
        own
    }
}

/// An answer, and the refresh ahead that the ask found due: run it after answering
/// (`Coordinator::refresh`), so that no isolate waits for it.
pub struct Answered {
    pub body: String,
    pub refresh: Option<RefreshAhead>,
}

/// Longest back-off after token-endpoint failures (other than refused credentials).
pub const MAX_BACKOFF_MS: u64 = 4_000;

/// One per coordinator object.
pub struct TokenCoordinator {
    cache: TokenCache,
}

impl Default for TokenCoordinator {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenCoordinator {
    pub fn new() -> Self {
        Self {
            cache: TokenCache::with_jitter(|| Jitter::MAX).with_max_backoff(MAX_BACKOFF_MS),
        }
    }

    /// Answers one ask (`protocol::Ask` as JSON); `None` when it is not one.
    pub async fn answer<H, P, Q, C>(
        &self,
        cfg: &TokenConfig,
        http: &H,
        own: &P,
        kv: &Q,
        clock: &C,
        ask: &str,
    ) -> Option<Answered>
    where
        H: HttpClient,
        P: KeyValue,
        Q: KeyValue,
        C: Clock,
    {
        let store = Mirrored { own, kv };
        let answer = match Ask::from_json(ask)? {
            Ask::Get { fresh } => {
                if fresh {
                    if let Some(failed) = self.refresh_first(cfg, http, &store, clock).await {
                        return Some(Answered {
                            body: failed.to_json(),
                            refresh: None,
                        });
                    }
                }
                match self.cache.get(cfg, http, &store, clock).await {
                    Ok(obtained) => {
                        let refresh = self.cache.refresh_due(cfg, clock.now_ms());
                        return Some(Answered {
                            body: Answer::Token {
                                token: (*obtained.token).clone(),
                            }
                            .to_json(),
                            refresh,
                        });
                    }
                    Err(u) => Answer::Unavailable {
                        retry_after_secs: u.retry_after_secs,
                        error: u.cause,
                        called: u.called_endpoint,
                    },
                }
            }
            Ask::Drop { digest: d } => Answer::Dropped {
                rejection: self.drop_if_still(cfg, &store, clock, &d).await,
            },
        };
        Some(Answered {
            body: answer.to_json(),
            refresh: None,
        })
    }

    /// Runs a refresh ahead that an answer claimed.
    pub async fn refresh<H, P, Q, C>(
        &self,
        job: RefreshAhead,
        cfg: &TokenConfig,
        http: &H,
        own: &P,
        kv: &Q,
        clock: &C,
    ) -> RefreshOutcome
    where
        H: HttpClient,
        P: KeyValue,
        Q: KeyValue,
        C: Clock,
    {
        let store = Mirrored { own, kv };
        self.cache.refresh(job, cfg, http, &store, clock).await
    }

    /// For a `fresh` ask: renews the token when it is due (once, whoever asks), waiting for a
    /// renewal already under way. The failure answer when it cannot be renewed now.
    async fn refresh_first<H, S, C>(
        &self,
        cfg: &TokenConfig,
        http: &H,
        store: &S,
        clock: &C,
    ) -> Option<Answer>
    where
        H: HttpClient,
        S: KeyValue,
        C: Clock,
    {
        loop {
            let outcome = self.cache.prewarm(cfg, http, store, clock).await;
            let called = matches!(outcome, RefreshOutcome::Failed(_));
            match outcome {
                RefreshOutcome::InFlight => clock.sleep(POLL_MS).await,
                RefreshOutcome::Fresh | RefreshOutcome::Refreshed(_) => return None,
                RefreshOutcome::Failed(error) | RefreshOutcome::BackingOff(error) => {
                    let retry_after_secs = self.cache.backing_off_secs(clock.now_ms()).unwrap_or(1);
                    return Some(Answer::Unavailable {
                        retry_after_secs,
                        error,
                        called,
                    });
                }
            }
        }
    }

    /// Compare-before-drop: only the token whose digest is `d`, only while it is the one held.
    async fn drop_if_still<S: KeyValue, C: Clock>(
        &self,
        cfg: &TokenConfig,
        store: &S,
        clock: &C,
        d: &str,
    ) -> Rejection {
        if let Some(current) = self.cache.current() {
            if digest(current.access_token()) != d {
                return Rejection::AlreadyReplaced;
            }
            return self.cache.reject(&current, cfg, store, clock).await;
        }
        // Nothing in memory (the object was restarted): compare with what storage holds.
        let key = cfg.cache_key();
        let held = match store.get(&key).await {
            Ok(Some(value)) => CachedToken::from_kv(&value, cfg.sealer.as_ref(), &key),
            _ => None,
        };
        match held {
            Some(t) if digest(t.access_token()) == d => {
                let _ = store.delete(&key).await;
                Rejection::Dropped
            }
            _ => Rejection::AlreadyReplaced,
        }
    }
}
