//! Tokens the issuer takes back before their `exp`: a provider's `introspect` (RFC 7662 asked
//! about each JWT, `introspection`) and the subject-wide cut-off in KV (`cutoff`). Both run after
//! the JWT's signature, claims and the route's policy passed, on every request, a token from
//! the verified-token memory included; neither is ever skipped.

pub mod cutoff;
mod introspection;
pub mod listing;
pub mod rule;

use crate::config::Config;
use crate::identity::claims::Claims;
use crate::identity::mechanism::jwt::Authenticator;
use crate::identity::opaque::{IntrospectionError, SessionCache};
use crate::identity::IdentityError;
use crate::io::Platform;
use crate::proxy::log::RequestLog;

use cutoff::{Cutoff, CutoffCache};
pub use rule::IntrospectRule;

/// Why a verified JWT was refused as taken back: 401 `invalid_token`, "The token has been
/// revoked".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// The provider's introspection endpoint says `"active": false`.
    Introspection,
    /// Its answer about this token could not be used (not JSON-object, `active` not a
    /// boolean, …): the token is not vouched for.
    Unvouched(IntrospectionError),
    /// Issued (`iat`) before the subject's cut-off, or the cut-off entry is unreadable.
    CutOff,
    /// The subject has a cut-off and the token has no `iat` to compare with it.
    NoIssuedAt,
}

impl Revoked {
    /// A stable id for the log line's `outcome`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Introspection => "token_revoked",
            Self::Unvouched(_) => "token_not_vouched",
            Self::CutOff => "subject_cut_off",
            Self::NoIssuedAt => "cut_off_without_iat",
        }
    }

    /// RFC 6750 `error_description`.
    pub fn description(&self) -> &'static str {
        "The token has been revoked"
    }
}

/// One per isolate: the introspection answers (one cache per provider, so one endpoint's
/// back-off is not another's) and the cut-offs read.
pub struct Revocation {
    introspection: Vec<SessionCache>,
    cutoffs: CutoffCache,
}

impl Revocation {
    pub fn new(providers: usize) -> Self {
        Self {
            introspection: (0..providers.max(1)).map(|_| SessionCache::new()).collect(),
            cutoffs: CutoffCache::new(),
        }
    }

    /// Whether the verified JWT `token` with `claims` is still good: its subject's cut-off,
    /// then its provider's `introspect`.
    pub async fn check<P: Platform>(
        &self,
        token: &str,
        claims: &Claims,
        config: &Config,
        jwt: &Authenticator,
        p: &P,
        log: &mut RequestLog,
    ) -> Result<(), IdentityError> {
        self.check_cutoff(claims, p, log).await?;
        let Some(providers) = &config.providers else {
            return Ok(());
        };
        let Some((id, provider)) = claims.str("iss").and_then(|iss| providers.find(iss)) else {
            return Ok(());
        };
        let (Some(rule), Some(cache)) = (&provider.introspect, self.introspection.get(id)) else {
            return Ok(());
        };
        let ask = introspection::Ask {
            provider: id,
            settings: &provider.settings,
            rule,
            client: &config.token,
        };
        introspection::check(cache, jwt, &ask, token, claims, p, log).await
    }

    async fn check_cutoff<P: Platform>(
        &self,
        claims: &Claims,
        p: &P,
        log: &mut RequestLog,
    ) -> Result<(), IdentityError> {
        // Without both, no entry can name the token's subject.
        let (Some(iss), Some(sub)) = (claims.str("iss"), claims.str("sub")) else {
            return Ok(());
        };
        let (cutoff, source) = self.cutoffs.cutoff(iss, sub, p).await.map_err(|_| {
            log.cutoff = Some("kv_failed");
            IdentityError::RevocationUnavailable
        })?;
        log.cutoff = Some(source.as_str());
        let at = match cutoff {
            Cutoff::None => return Ok(()),
            Cutoff::Unreadable => {
                log.config_error = Some(
                    "a revoked:v1: entry in TOKEN_CACHE is not a Unix time in seconds: every token of its subject is refused",
                );
                return Err(IdentityError::Revoked(Revoked::CutOff));
            }
            Cutoff::At(at) => at,
        };
        // A token without `iat` cannot show it was issued after the cut-off: refused.
        let iat = claims.get("iat").and_then(serde_json::Value::as_f64);
        match iat {
            None => Err(IdentityError::Revoked(Revoked::NoIssuedAt)),
            Some(iat) if iat < at as f64 => Err(IdentityError::Revoked(Revoked::CutOff)),
            Some(_) => Ok(()),
        }
    }
}
