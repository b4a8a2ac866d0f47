//! A provider's `introspect`: its JWTs, once verified, asked about at its RFC 7662 endpoint with
//! the opaque sessions' request code (`opaque::SessionCache`: the gateway authenticated per
//! `TOKEN_CLIENT_AUTH`, one call per token at a time, answers keyed by the token's SHA-256 and
//! never the token, a back-off after the endpoint fails). An active answer is remembered for at
//! most `max_age_seconds` and never past the token's `exp`; while the endpoint fails a remembered
//! answer serves, and a token without one is refused 503 `introspection-unavailable`.

use crate::identity::claims::Claims;
use crate::identity::jwt::JwtSettings;
use crate::identity::mechanism::jwt::Authenticator;
use crate::identity::opaque::{
    IntrospectionError, IntrospectionSettings, IntrospectionUnavailable, Keep, SessionCache,
    Unvouched,
};
use crate::identity::IdentityError;
use crate::io::Platform;
use crate::proxy::log::RequestLog;
use crate::support::breaker::REFUSED_RETRY_MS;
use crate::token::TokenConfig;

use super::rule::IntrospectRule;
use super::Revoked;

/// Time allowed for the endpoint's answer, as `INTROSPECTION_TIMEOUT_MS`'s default.
pub const TIMEOUT_MS: u64 = 5_000;

/// Whom to ask, and how.
pub struct Ask<'a> {
    pub provider: usize,
    pub settings: &'a JwtSettings,
    pub rule: &'a IntrospectRule,
    pub client: &'a TokenConfig,
}

/// Whether `token` (verified, with `claims`) is still active at its provider.
pub async fn check<P: Platform>(
    cache: &SessionCache,
    jwt: &Authenticator,
    ask: &Ask<'_>,
    token: &str,
    claims: &Claims,
    p: &P,
    log: &mut RequestLog,
) -> Result<(), IdentityError> {
    let url = match &ask.rule.url {
        Some(url) => url.clone(),
        None => match jwt
            .introspection_endpoint(ask.provider, ask.settings, p)
            .await
        {
            Ok(Some(url)) => url.to_string(),
            Ok(None) => {
                let cause = IntrospectionError::NoEndpoint;
                log.introspection_error = Some(cause.code());
                log.config_error = cause.config_problem();
                return Err(IdentityError::IntrospectionUnavailable(
                    IntrospectionUnavailable {
                        retry_after_secs: REFUSED_RETRY_MS / 1000,
                        cause,
                        called_endpoint: false,
                    },
                ));
            }
            Err(unavailable) => return Err(IdentityError::KeysUnavailable(unavailable)),
        },
    };
    let settings = IntrospectionSettings {
        url,
        timeout_ms: TIMEOUT_MS,
    };
    let keep = Keep {
        active_max_ms: ask.rule.max_age_secs.saturating_mul(1000),
        // Validation passed, so `exp` is a number when present.
        until_ms: claims
            .get("exp")
            .and_then(serde_json::Value::as_f64)
            .map_or(u64::MAX, |exp| (exp * 1000.0) as u64),
    };
    match cache
        .check_within(token, &settings, ask.client, keep, p)
        .await
    {
        Ok(vouched) => {
            log.introspection = Some(vouched.source.as_str());
            Ok(())
        }
        Err(Unvouched::Inactive(source)) => {
            log.introspection = Some(source.as_str());
            Err(IdentityError::Revoked(Revoked::Introspection))
        }
        Err(Unvouched::Unusable(cause)) => {
            log.introspection = Some("endpoint");
            log.introspection_error = Some(cause.code());
            Err(IdentityError::Revoked(Revoked::Unvouched(cause)))
        }
        Err(Unvouched::Unavailable(unavailable)) => {
            if unavailable.called_endpoint {
                log.introspection = Some("endpoint");
                log.introspection_error = Some(unavailable.cause.code());
                log.config_error = unavailable.cause.config_problem();
            } else {
                log.introspection_error = Some("backing_off");
            }
            Err(IdentityError::IntrospectionUnavailable(unavailable))
        }
    }
}
