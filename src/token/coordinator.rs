//! The token coordinator: the isolate's token cache run once for the whole deployment (in a
//! Durable Object, `TOKEN_COORDINATOR`), answering the isolates' asks (`protocol`).
//!
//! It is the same `TokenCache`: memory, then its own storage, then the token endpoint; one fill
//! at a time, with concurrent asks polling it; a refresh ahead of expiry; compare-before-drop
//! after an origin refusal; and the probes after endpoint failures (`crate::support::breaker`), which,
//! held here, are the deployment's: a dead endpoint sees one probe at a time and at most two a
//! second for the whole deployment, not that per isolate.
//!
//! Its storage (Durable Object storage in production) is the one it trusts; every token it
//! writes there it also writes to KV, sealed the same way (`TOKEN_ENCRYPTION_KEY`), for the
//! isolates that read KV before they ask. A stored value that does not open is a miss.
//!
//! It refreshes earlier than any isolate would (the most jitter there is), so an isolate
//! refreshing ahead finds the coordinator's token already renewed, or causes its renewal.
//!
//! An ask that arrives while the endpoint is backing off waits for the next probe (at most
//! `breaker::HOLD_MS`) and takes its answer: the first good answer after an outage serves every
//! isolate asking, and no ask is refused on a failure older than itself. Refused credentials
//! are answered at once, and tried again a minute later: only an operator can fix those.

use super::entry::CachedToken;
use super::protocol::{digest, Answer, Ask, Rejection};
use super::refresh::Jitter;
use super::state::{RefreshAhead, RefreshOutcome, TokenCache};
use super::TokenConfig;
use crate::io::{Clock, KeyPage, KeyValue, NoCoordinator, Platform, StoreError};
use crate::support::flight::POLL_MS;

/// The coordinator's own storage, trusted, with every write and delete copied to KV: the
/// `store` of the platform handle the coordinator runs with.
pub struct Mirrored<O, K> {
    pub own: O,
    pub kv: K,
}

impl<O: KeyValue, K: KeyValue> KeyValue for Mirrored<O, K> {
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

    async fn list(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<KeyPage, StoreError> {
        // Like `get`: the coordinator's own storage only.
        self.own.list(prefix, cursor, limit).await
    }
}

/// An answer, and the refresh ahead that the ask found due: run it after answering
/// (`Coordinator::refresh`), so that no isolate waits for it.
pub struct Answered {
    pub body: String,
    pub refresh: Option<RefreshAhead>,
}

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
            cache: TokenCache::with_jitter(|| Jitter::MAX),
        }
    }

    /// Answers one ask (`protocol::Ask` as JSON); `None` when it is not one. `p`'s store is
    /// the coordinator's own (`Mirrored`), and it has no coordinator: the coordinator's cache
    /// is the one that asks nobody but the endpoint.
    pub async fn answer<P>(&self, cfg: &TokenConfig, p: &P, ask: &str) -> Option<Answered>
    where
        P: Platform<Coordinator = NoCoordinator>,
    {
        let clock = p.clock();
        let answer = match Ask::from_json(ask)? {
            Ask::Get { fresh } => {
                if fresh {
                    if let Some(failed) = self.refresh_first(cfg, p).await {
                        return Some(Answered {
                            body: failed.to_json(),
                            refresh: None,
                        });
                    }
                }
                match self.cache.get(cfg, p).await {
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
                rejection: self.drop_if_still(cfg, p, &d).await,
            },
        };
        Some(Answered {
            body: answer.to_json(),
            refresh: None,
        })
    }

    /// Runs a refresh ahead that an answer claimed.
    pub async fn refresh<P>(&self, job: RefreshAhead, cfg: &TokenConfig, p: &P) -> RefreshOutcome
    where
        P: Platform<Coordinator = NoCoordinator>,
    {
        self.cache.refresh(job, cfg, p).await
    }

    /// For a `fresh` ask: renews the token when it is due (once, whoever asks), waiting for a
    /// renewal already under way. The failure answer when it cannot be renewed now.
    async fn refresh_first<P: Platform>(&self, cfg: &TokenConfig, p: &P) -> Option<Answer> {
        let clock = p.clock();
        loop {
            let outcome = self.cache.prewarm(cfg, p).await;
            let called = matches!(outcome, RefreshOutcome::Failed(_));
            match outcome {
                RefreshOutcome::InFlight => clock.sleep(POLL_MS).await,
                RefreshOutcome::Fresh | RefreshOutcome::Refreshed(_) => return None,
                RefreshOutcome::Failed(error) | RefreshOutcome::BackingOff(error) => {
                    let retry_after_secs = self.cache.retry_after_secs(clock.now_ms());
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
    async fn drop_if_still<P: Platform>(&self, cfg: &TokenConfig, p: &P, d: &str) -> Rejection {
        let store = p.store();
        if let Some(current) = self.cache.current() {
            if digest(current.access_token()) != d {
                return Rejection::AlreadyReplaced;
            }
            return self.cache.reject(&current, cfg, p).await;
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
