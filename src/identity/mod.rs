//! The verified caller, whatever vouched for them (a customer JWT, or an opaque identifier the
//! introspection endpoint vouched for), and what is decided from their claims alone: the route's
//! policy (`policy`), and the customer id for the origin.

pub mod claims;
pub mod customer_id;
pub mod identifiers;
pub mod jwks;
pub mod jwt;
pub mod mechanism;
pub mod opaque;
pub mod policy;
pub mod providers;

use http::HeaderMap;

use crate::config::Config;
use crate::edge::headers::CustomerAuth;
use crate::error::GatewayError;
use crate::identity::claims::Claims;
use crate::identity::identifiers::Cookies;
use crate::identity::opaque::{OpaqueError, SessionCache, Unvouched};
use crate::identity::policy::{Defaults, Refusal};
use crate::io::Platform;
use crate::proxy::log::{clip, RequestLog};
use crate::proxy::route::Route;

/// A caller who passed the authenticate phase.
#[derive(Debug)]
pub struct Verified<'h> {
    pub presented: Presented<'h>,
    pub claims: Claims,
}

/// What the caller presented, as it goes to the origin in `customer-auth`.
#[derive(Debug)]
pub enum Presented<'h> {
    /// The validated JWT, byte for byte.
    Jwt(&'h str),
    /// The `customer-auth` value built from the opaque identifier (see `opaque::Identifier`).
    Opaque(String),
}

impl Verified<'_> {
    pub fn customer_auth(&self) -> CustomerAuth<'_> {
        match &self.presented {
            Presented::Jwt(token) => CustomerAuth::Jwt(token),
            Presented::Opaque(value) => CustomerAuth::Value(value),
        }
    }
}

/// The first step of authentication on every route that reads an identifier: every source
/// read, and a request naming its caller two ways refused (`identifiers`), on `report` routes
/// too. The identifier cookies' values, for the extractor of the route's kind.
pub fn one_identifier<'h>(
    config: &Config,
    headers: &'h HeaderMap,
    log: &mut RequestLog,
) -> Result<Cookies<'h>, GatewayError> {
    identifiers::one_per_request(headers, &config.identifier_cookies).map_err(|ambiguity| {
        log.identifier_conflict = Some(ambiguity.sources());
        GatewayError::Ambiguous(ambiguity)
    })
}

/// The authenticate phase of an `opaque` route: the identifier from the request (`cookie`: the
/// session cookie as `one_identifier` found it), vouched for by memory or by the introspection
/// endpoint. Logs where the answer came from, never the identifier.
pub async fn vouch_opaque<'h, P: Platform>(
    sessions: &SessionCache,
    config: &Config,
    headers: &'h HeaderMap,
    cookie: Option<&'h [u8]>,
    p: &P,
    log: &mut RequestLog,
) -> Result<Verified<'h>, GatewayError> {
    log.identity = Some("opaque");
    // `Config` guarantees the settings whenever a route is opaque.
    let settings = config.introspection.as_ref().ok_or(GatewayError::Internal(
        "introspection settings missing for an opaque route",
    ))?;
    let found = opaque::extract(headers, cookie)
        .map_err(GatewayError::Opaque)?
        .ok_or(GatewayError::Opaque(OpaqueError::Missing))?;
    match sessions.check(found.id, settings, &config.token, p).await {
        Ok(vouched) => {
            log.introspection = Some(vouched.source.as_str());
            log.iss = vouched.claims.str("iss").map(clip);
            Ok(Verified {
                presented: Presented::Opaque(found.customer_auth),
                claims: vouched.claims,
            })
        }
        Err(Unvouched::Inactive(source)) => {
            log.introspection = Some(source.as_str());
            Err(GatewayError::Opaque(OpaqueError::Inactive))
        }
        // This identifier's answer could not be used: refused like an inactive one.
        Err(Unvouched::Unusable(cause)) => {
            log.introspection = Some("endpoint");
            log.introspection_error = Some(cause.code());
            Err(GatewayError::Opaque(OpaqueError::Inactive))
        }
        Err(Unvouched::Unavailable(unavailable)) => {
            if unavailable.called_endpoint {
                log.introspection = Some("endpoint");
                log.introspection_error = Some(unavailable.cause.code());
                log.config_error = unavailable.cause.config_problem();
            } else {
                log.introspection_error = Some("backing_off");
            }
            Err(GatewayError::IntrospectionUnavailable(unavailable))
        }
    }
}

/// The checks made of every verified request, a verified-token memory hit included: the
/// route's policy (its own `issuers`, `audiences`, `max_lifetime_seconds`, or else `defaults`;
/// then `scopes` and `claims`); then, with `CUSTOMER_ID_HEADER`, the customer id.
pub fn admit(
    route: &Route,
    config: &Config,
    verified: &Verified<'_>,
    defaults: Defaults<'_>,
    log: &mut RequestLog,
) -> Result<Option<String>, GatewayError> {
    if let Err(refusal) = route.policy.check(&verified.claims, defaults) {
        log.policy = Some(refusal.policy());
        return Err(match refusal {
            Refusal::Issuers(e) | Refusal::Audiences(e) | Refusal::MaxLifetime(e) => {
                GatewayError::Jwt(e)
            }
            Refusal::Scopes => GatewayError::InsufficientScope(route.policy.scopes.clone()),
            Refusal::Claims => GatewayError::ClaimsRefused,
        });
    }
    config
        .customer_id
        .as_ref()
        .map(|ids| ids.derive(&verified.claims))
        .transpose()
        .map_err(GatewayError::NoCustomerId)
}
