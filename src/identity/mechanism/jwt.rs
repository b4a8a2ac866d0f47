//! The JWT mechanism: the customer JWT read from the request and matched to its provider; a
//! token already verified in this isolate is taken from memory;
//! otherwise the key set (configured, or `JWKS_URL`'s via `jwks`) checks it, with one
//! rate-limited refetch when it names a `kid` the set lacks. While the provider's set cannot be
//! fetched, such a token is 503 (`KeysUnavailable`), never 401: the gateway's keys are missing,
//! not the caller's token at fault. With `JWT_PROVIDERS` each
//! provider has its own key set cache, and its own share of the memory (the provider's id is
//! part of the memory's key), so a token is never remembered as valid for another provider.

use std::rc::Rc;

use crate::identity::jwks::{JwksCache, JwksEvent, Keys, KeysUnavailable, KidLookup};
use crate::identity::jwt::{
    self, JwtError, JwtSettings, SignatureVerifier, TokenDigest, VerifiedCache, VerifiedToken,
    MAX_TOKEN_BYTES,
};
use http::HeaderMap;

use crate::config::Config;
use crate::identity::dpop::replay::ReplayMemory;
use crate::identity::policy::Defaults;
use crate::identity::sender::{self, SenderRequest};
use crate::identity::{IdentityError, Presented, Verified};
use crate::io::{Clock, Platform};
use crate::proxy::log::{clip, RequestLog};

/// One per isolate: the key sets and the verified tokens every request shares.
pub struct Authenticator {
    /// One per provider (index = provider id); one for the flat settings.
    jwks: Vec<JwksCache>,
    verified: VerifiedCache,
    /// The DPoP proofs this isolate accepted, when no `DPOP_REPLAY` guard is bound.
    replay: ReplayMemory,
    /// Off only to measure what the memory saves (the `baseline-verify` build).
    remember_verified: bool,
}

impl Default for Authenticator {
    fn default() -> Self {
        Self {
            jwks: vec![JwksCache::new()],
            verified: VerifiedCache::new(),
            replay: ReplayMemory::new(),
            remember_verified: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub claims: VerifiedToken,
    /// How the token was found good, for the log line.
    pub check: Check,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Verified earlier in this isolate; only the time claims were looked at.
    Cached,
    /// Signature and claims checked now.
    Verified,
}

impl Check {
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Cached => "cache",
            Check::Verified => "signature",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    Jwt(JwtError),
    /// `JWKS_URL`'s set was never obtained and the configured keys cannot check the token.
    KeysUnavailable(KeysUnavailable),
}

/// The outcome, and what the key lookup did when it did more than read memory (for the log
/// line, whatever the outcome).
pub type AuthResult = (Result<Authenticated, AuthError>, Option<JwksEvent>);

impl Authenticator {
    pub fn new() -> Self {
        Self::default()
    }

    /// For `providers` identity providers (`JWT_PROVIDERS`); at least one key set cache.
    pub fn for_providers(providers: usize) -> Self {
        Self {
            jwks: (0..providers.max(1)).map(|_| JwksCache::new()).collect(),
            ..Self::default()
        }
    }

    /// This authenticator with the memory off (see `without_verified_memory`).
    pub fn forgetting(mut self) -> Self {
        self.remember_verified = false;
        self
    }

    /// Every token verified in full, every time: the baseline the memory is measured against.
    pub fn without_verified_memory() -> Self {
        Self {
            remember_verified: false,
            ..Self::default()
        }
    }

    /// Checks `token` with the flat settings (provider 0).
    pub async fn check<P: Platform>(
        &self,
        token: &str,
        settings: &JwtSettings,
        p: &P,
    ) -> AuthResult {
        self.check_with(0, token, settings, p).await
    }

    /// Checks `token` with provider `provider`'s `settings` and key set cache.
    pub async fn check_with<P: Platform>(
        &self,
        provider: usize,
        token: &str,
        settings: &JwtSettings,
        p: &P,
    ) -> AuthResult {
        let (clock, verifier) = (p.clock(), p.verifier());
        // Before hashing or fetching anything for it.
        if token.len() > MAX_TOKEN_BYTES {
            return (Err(AuthError::Jwt(JwtError::TooLarge)), None);
        }
        // `Gateway` makes one cache per provider; an id beyond them cannot name any keys.
        let Some(jwks) = self.jwks.get(provider) else {
            return (Err(AuthError::Jwt(JwtError::WrongIssuer)), None);
        };
        let (keys, mut event, mut remote_missing) = match jwks.keys(settings, p).await {
            Ok(view) => (view.keys, view.event, None),
            Err(unavailable) => (
                jwks.configured(settings),
                Some(JwksEvent::Failed(unavailable.cause)),
                Some(unavailable),
            ),
        };
        let digest = TokenDigest::for_provider(provider, token);
        let now_secs = clock.now_ms() / 1000;
        if let Some(claims) = self
            .verified
            .get(&digest, keys.generation, settings, now_secs)
        {
            let check = Check::Cached;
            return (Ok(Authenticated { claims, check }), event);
        }

        let mut result = self
            .verify(token, &digest, settings, &keys, now_secs, verifier)
            .await;
        if result == Err(JwtError::UnknownKid) && remote_missing.is_none() {
            // The header parsed (the token got as far as the keys).
            if let Some(kid) = jwt::header_kid(token) {
                let (lookup, refetch) = jwks.refetch_for_kid(&kid, settings, p).await;
                event = refetch.or(event);
                match lookup {
                    KidLookup::Found(newer) => {
                        let now_secs = clock.now_ms() / 1000;
                        result = self
                            .verify(token, &digest, settings, &newer, now_secs, verifier)
                            .await;
                    }
                    KidLookup::Unknown => {}
                    // The provider cannot be asked: its key may well exist.
                    KidLookup::Unavailable(unavailable) => remote_missing = Some(unavailable),
                }
            }
        }
        let outcome = match (result, remote_missing) {
            (Ok(claims), _) => Ok(Authenticated {
                claims,
                check: Check::Verified,
            }),
            // Without the provider's keys, "no such key" or "no key verifies" may be our
            // fault, not the caller's: say so with a 503 rather than call the token invalid.
            (
                Err(JwtError::UnknownKid | JwtError::KeyMismatch | JwtError::BadSignature),
                Some(unavailable),
            ) => Err(AuthError::KeysUnavailable(unavailable)),
            (Err(e), _) => Err(AuthError::Jwt(e)),
        };
        (outcome, event)
    }

    /// The JWT mechanism: the customer JWT found in the request (`cookie`: the `JWT_COOKIE`
    /// value as `identifiers` found it), matched to its provider (with `JWT_PROVIDERS`, one of
    /// `issuers` when the route names them), verified (or found in the verified-token memory);
    /// `Ok(None)` when the request presents none. The provider's or flat settings come with it,
    /// as the defaults of the route's policy. A token bound to its sender (`cnf`) is then
    /// checked against `req` (`sender`), a token from the verified-token memory too.
    #[allow(clippy::too_many_arguments)]
    pub async fn authenticate<'h, 'c, P: Platform>(
        &self,
        issuers: Option<&[String]>,
        config: &'c Config,
        seen: &'h HeaderMap,
        req: &SenderRequest<'_>,
        cookie: Option<&'h [u8]>,
        svc: &P,
        log: &mut RequestLog,
    ) -> Result<Option<(Verified<'h>, Defaults<'c>)>, IdentityError> {
        let jwt_header = config.identifier_cookies.jwt_header();
        let Some((token, presented)) =
            jwt::locate(seen, jwt_header, cookie).map_err(IdentityError::Jwt)?
        else {
            return Ok(None);
        };
        log.identity = Some("jwt");
        let (provider, settings, defaults) = match &config.providers {
            None => (
                0,
                &config.jwt,
                Defaults {
                    issuers: &config.jwt_issuers,
                    audiences: &config.jwt_audiences,
                    max_lifetime_secs: None,
                },
            ),
            Some(providers) => {
                // The unverified `iss` only chooses whose keys to try.
                let (id, p) = providers.for_token(token).map_err(IdentityError::Jwt)?;
                if issuers.is_some_and(|accepted| !accepted.contains(&p.issuer)) {
                    log.policy = Some("issuers");
                    return Err(IdentityError::Jwt(JwtError::WrongIssuer));
                }
                (
                    id,
                    &p.settings,
                    Defaults {
                        issuers: std::slice::from_ref(&p.issuer),
                        audiences: &p.audiences,
                        max_lifetime_secs: p.max_lifetime_secs,
                    },
                )
            }
        };
        let auth_started = svc.clock().now_ms();
        let (result, jwks) = self.check_with(provider, token, settings, svc).await;
        log.auth_ms = Some(svc.clock().now_ms().saturating_sub(auth_started));
        log.jwks = jwks.map(|e| e.as_str());
        let authenticated = result.map_err(|e| match e {
            AuthError::Jwt(e) => IdentityError::Jwt(e),
            AuthError::KeysUnavailable(u) => {
                // A discovery document naming another issuer (say) is the operator's to fix.
                log.config_error = u.cause.config_problem();
                IdentityError::KeysUnavailable(u)
            }
        })?;
        log.jwt_check = Some(authenticated.check.as_str());
        log.kid = authenticated.claims.kid.as_deref().map(clip);
        log.iss = authenticated.claims.iss.as_deref().map(clip);
        let claims = &authenticated.claims.claims;
        sender::check_bindings(
            claims,
            token,
            presented,
            seen,
            req,
            &config.dpop,
            settings.leeway_secs,
            &self.replay,
            svc,
        )
        .await
        .map_err(IdentityError::Sender)?;
        let verified = Verified {
            presented: Presented::Jwt(token),
            claims: authenticated.claims.claims,
        };
        Ok(Some((verified, defaults)))
    }

    /// Provider `provider`'s discovered `introspection_endpoint` (a provider's `introspect`
    /// without `url`); `Ok(None)` when its document names none.
    pub async fn introspection_endpoint<P: Platform>(
        &self,
        provider: usize,
        settings: &JwtSettings,
        p: &P,
    ) -> Result<Option<Rc<str>>, KeysUnavailable> {
        match self.jwks.get(provider) {
            Some(jwks) => jwks.introspection_endpoint(settings, p).await,
            None => Ok(None),
        }
    }

    /// For the scheduled handler: refreshes `JWKS_URL`'s set when it would go stale within
    /// `ahead_ms`.
    pub async fn refresh_keys<P: Platform>(
        &self,
        settings: &JwtSettings,
        ahead_ms: u64,
        p: &P,
    ) -> Option<JwksEvent> {
        self.refresh_provider_keys(0, settings, ahead_ms, p).await
    }

    /// As `refresh_keys`, for provider `provider`'s `jwks_url`.
    pub async fn refresh_provider_keys<P: Platform>(
        &self,
        provider: usize,
        settings: &JwtSettings,
        ahead_ms: u64,
        p: &P,
    ) -> Option<JwksEvent> {
        self.jwks
            .get(provider)?
            .refresh(settings, ahead_ms, p)
            .await
    }

    async fn verify<V: SignatureVerifier>(
        &self,
        token: &str,
        digest: &TokenDigest,
        settings: &JwtSettings,
        keys: &Rc<Keys>,
        now_secs: u64,
        verifier: &V,
    ) -> Result<VerifiedToken, JwtError> {
        let claims = jwt::validate(token, settings, &keys.set, now_secs, verifier).await?;
        if self.remember_verified {
            self.verified.insert(digest, keys.generation, &claims);
        }
        Ok(claims)
    }
}
