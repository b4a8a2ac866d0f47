//! The opaque mechanism: an identifier that is not a JWT (a session id, from `customer-auth`,
//! `Authorization` or the session cookie), vouched for by memory or by the introspection
//! endpoint (RFC 7662). Logs where the answer came from, never the identifier.

use http::HeaderMap;

use crate::config::Config;
use crate::identity::opaque::{self, OpaqueError, SessionCache, Unvouched};
use crate::identity::policy::Defaults;
use crate::identity::{IdentityError, Presented, Verified};
use crate::io::Platform;
use crate::proxy::log::{clip, RequestLog};

/// The identifier from the request (`cookie`: the session cookie as `identifiers` found it),
/// vouched for; `Ok(None)` when the request presents none. The defaults for the route's policy
/// come with it.
pub async fn vouch<'h, 'c, P: Platform>(
    sessions: &SessionCache,
    config: &'c Config,
    headers: &'h HeaderMap,
    cookie: Option<&'h [u8]>,
    p: &P,
    log: &mut RequestLog,
) -> Result<Option<(Verified<'h>, Defaults<'c>)>, IdentityError> {
    log.identity = Some("opaque");
    // `Config` guarantees the settings whenever a route is opaque.
    let settings = config
        .introspection
        .as_ref()
        .ok_or(IdentityError::Internal(
            "introspection settings missing for an opaque route",
        ))?;
    let Some(found) = opaque::extract(headers, cookie).map_err(IdentityError::Opaque)? else {
        return Ok(None);
    };
    match sessions.check(found.id, settings, &config.token, p).await {
        Ok(vouched) => {
            log.introspection = Some(vouched.source.as_str());
            log.iss = vouched.claims.str("iss").map(clip);
            let verified = Verified {
                presented: Presented::Opaque(found.customer_auth),
                claims: vouched.claims,
            };
            // The route's own policy only: no provider settings stand behind an answer.
            Ok(Some((verified, Defaults::default())))
        }
        Err(Unvouched::Inactive(source)) => {
            log.introspection = Some(source.as_str());
            Err(IdentityError::Opaque(OpaqueError::Inactive))
        }
        // This identifier's answer could not be used: refused like an inactive one.
        Err(Unvouched::Unusable(cause)) => {
            log.introspection = Some("endpoint");
            log.introspection_error = Some(cause.code());
            Err(IdentityError::Opaque(OpaqueError::Inactive))
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
