//! Who is calling: the route's requirement run on a request (`authenticate`), and the verified
//! caller it gives, whatever vouched for them. Everything that identifies a caller lives in
//! this wing:
//! - `requirement`: each route's `auth` and policy compiled into what it requires;
//! - `mechanism`: what produces an identity (`jwt`, `opaque`);
//! - `identifiers`, `jwt`, `jwks`, `providers`, `opaque`: reading identifiers, verifying
//!   tokens, key sets, identity providers, introspection;
//! - `policy`, `claims`, `customer_id`, `bind`: what is decided from a verified identity's
//!   claims (`bind`: with the path and headers of the request);
//! - `client_certificate`: the calling partner, by the certificate the edge verified;
//! - `revocation`: tokens taken back before their `exp`: a provider's `introspect` and the
//!   subject-wide cut-off in KV, checked after the policy on every verified JWT;
//! - `sender`, `dpop`: tokens bound to their sender (`cnf.jkt` with a DPoP proof,
//!   `cnf.x5t#S256` with the client certificate), checked by the JWT mechanism, and the
//!   route check `sender_constraint`;
//! - `signing`: the gateway's own identity, from the other side of the same JOSE algorithms:
//!   its private keys, the key set it publishes, and signing through the platform's `Signer`
//!   (the gateway assertion; a `private_key_jwt` client assertion can reuse it).

pub mod bind;
pub mod claims;
pub mod client_certificate;
pub mod customer_id;
pub mod dpop;
pub mod identifiers;
pub mod jwks;
pub mod jwt;
pub mod mechanism;
pub mod opaque;
pub mod policy;
pub mod providers;
pub mod requirement;
pub mod revocation;
pub mod sender;
pub mod signing;

use http::HeaderMap;

use crate::config::{Config, ConfigErrors};
use crate::edge::headers::CustomerAuth;
use crate::identity::bind::BindRefusal;
use crate::identity::claims::Claims;
use crate::identity::client_certificate::CertificateRefusal;
use crate::identity::customer_id::MissingIdentity;
use crate::identity::identifiers::{Ambiguity, Cookies};
use crate::identity::jwks::KeysUnavailable;
use crate::identity::jwt::JwtError;
use crate::identity::mechanism::jwt::Authenticator;
use crate::identity::opaque::{IntrospectionUnavailable, OpaqueError, SessionCache};
use crate::identity::policy::{Defaults, Refusal};
use crate::identity::requirement::{Check, Failure, Mechanism, Missing, Requirement};
use crate::identity::revocation::Revocation;
use crate::identity::sender::{SenderError, SenderRequest};
use crate::io::{Fields, Platform, TlsClientAuth};
use crate::proxy::log::RequestLog;

/// What a route's checks read of the request besides its identifier fields.
pub struct Asked<'r, F> {
    /// The normalized path (what the route matched and the origin receives).
    pub path: &'r str,
    /// The caller's fields, as the platform holds them (`bind` reads its headers there).
    pub fields: &'r F,
    /// The client certificate, as the edge reports it.
    pub tls_client_auth: Option<&'r TlsClientAuth>,
    /// The request's method.
    pub method: &'r http::Method,
    /// The URL the request was received at, without query, before the gateway normalized
    /// its path (what a DPoP proof's `htu` names); `None` when the platform did not say.
    pub url: Option<&'r str>,
}

impl<F> Asked<'_, F> {
    fn sender(&self) -> SenderRequest<'_> {
        SenderRequest {
            method: self.method.as_str(),
            url: self.url,
            tls_client_auth: self.tls_client_auth,
        }
    }
}

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

/// A verified caller admitted by the route's checks, and their customer id
/// (`CUSTOMER_ID_HEADER`).
#[derive(Debug)]
pub struct Identity<'h> {
    pub verified: Verified<'h>,
    pub customer_id: Option<String>,
}

/// Why the authenticate phase refused a request. `error::GatewayError::Identity` carries it,
/// and `error.rs` says what each becomes on the wire.
#[derive(Debug, Clone)]
pub enum IdentityError {
    /// The request names its caller more than one way: two different identifiers, or an
    /// identifier cookie sent twice (`identifiers`). Refused before anything is verified.
    Ambiguous(Ambiguity),
    /// The customer JWT is missing, malformed or fails a check.
    Jwt(JwtError),
    /// The provider's key set cannot be had and the keys held cannot check the token.
    KeysUnavailable(KeysUnavailable),
    /// The opaque customer identifier is missing, malformed or not active (`opaque` routes).
    Opaque(OpaqueError),
    /// The introspection endpoint gave no answer (down, slow, garbage), or is being backed off.
    IntrospectionUnavailable(IntrospectionUnavailable),
    /// The verified identity lacks one of the route's `scopes` (the route's list).
    InsufficientScope(Vec<String>),
    /// The verified identity fails the route's `claims`.
    ClaimsRefused,
    /// `CUSTOMER_ID_HEADER` is set and the verified identity has no `sub` (or `iss`).
    NoCustomerId(MissingIdentity),
    /// A `bind` does not hold: the request names an object that is not the caller's.
    BindingMismatch(BindRefusal),
    /// The route's `client_certificate` is not met: the calling partner is not known.
    ClientCertificate(CertificateRefusal),
    /// A sender-constrained token's binding fails (its DPoP proof, its certificate), or the
    /// route requires a sender-constrained token (`sender`).
    Sender(SenderError),
    /// The verified JWT was taken back: its provider's introspection says inactive, or its
    /// subject's cut-off is later than its `iat` (`revocation`).
    Revoked(revocation::Revoked),
    /// The subject's cut-off could not be read (KV failed) and none was remembered.
    RevocationUnavailable,
    /// The settings a mechanism needs are missing: `Config` rules it out, so this is a bug.
    Internal(&'static str),
}

impl IdentityError {
    /// A stable id for the log line's `outcome` (and `report`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Ambiguous(a) => a.code(),
            Self::Jwt(e) => e.code(),
            Self::KeysUnavailable(k) => k.cause.code(),
            Self::Opaque(e) => e.code(),
            Self::IntrospectionUnavailable(u) => u.cause.code(),
            Self::InsufficientScope(_) => "insufficient_scope",
            Self::ClaimsRefused => "claims_refused",
            Self::NoCustomerId(m) => m.code(),
            Self::BindingMismatch(_) => "binding_mismatch",
            Self::ClientCertificate(_) => "client_certificate_required",
            Self::Sender(e) => e.code(),
            Self::Revoked(r) => r.code(),
            Self::RevocationUnavailable => "revocation_list_unavailable",
            Self::Internal(_) => "internal_error",
        }
    }
}

/// One per isolate: what every mechanism remembers between requests (key sets, verified
/// tokens, introspection answers, revocations).
pub struct Identities {
    jwt: Authenticator,
    sessions: SessionCache,
    revocation: Revocation,
}

impl Identities {
    pub fn new(config: &Result<Config, ConfigErrors>) -> Self {
        Self {
            jwt: Authenticator::for_providers(provider_count(config)),
            sessions: SessionCache::new(),
            revocation: Revocation::new(provider_count(config)),
        }
    }

    /// These identities with the verified-token memory off (`baseline-verify` builds).
    pub fn forgetting(mut self) -> Self {
        self.jwt = self.jwt.forgetting();
        self
    }

    /// The JWT mechanism's key sets and memory (the scheduled run refreshes its key sets).
    pub fn jwt(&self) -> &Authenticator {
        &self.jwt
    }

    /// The authenticate phase: `requirement` run on the request whose fields are `seen` (the
    /// ones the core reads) and whose path, other fields and certificate `asked` holds.
    /// `Ok(None)`: forwarded without an identity (a `public` route, an `optional` one without
    /// an identifier, a `report` one whose identifier failed).
    ///
    /// The checks on the request (a client certificate) come first and always refuse, on
    /// `report` routes too: they are about the calling partner, which `report` does not roll
    /// out.
    pub async fn authenticate<'h, P: Platform, F: Fields>(
        &self,
        requirement: &Requirement,
        config: &Config,
        seen: &'h HeaderMap,
        asked: &Asked<'_, F>,
        p: &P,
        log: &mut RequestLog,
    ) -> Result<Option<Identity<'h>>, IdentityError> {
        for check in requirement.checks.iter().filter(|c| c.on_request()) {
            if let Check::ClientCertificate(rule) = check {
                rule.check(asked.tls_client_auth).map_err(|refusal| {
                    log.client_certificate = Some(refusal.code());
                    IdentityError::ClientCertificate(refusal)
                })?;
            }
        }
        let Some(mechanism) = &requirement.mechanism else {
            return Ok(None);
        };
        // On every route that reads an identifier (`report` included): one per request.
        let cookies = one_identifier(config, seen, log)?;
        let checked = self
            .run(mechanism, requirement, config, seen, asked, cookies, p, log)
            .await;
        match (requirement.failure, checked) {
            // Forwarded whatever the outcome; the identity only when it passed.
            (Failure::Report, Ok(passed)) => {
                log.report = Some("forwarded");
                Ok(passed)
            }
            (Failure::Report, Err(refused)) => {
                log.report = Some(refused.code());
                Ok(None)
            }
            (Failure::Refuse, checked) => checked,
        }
    }

    /// The mechanism, then the checks.
    #[allow(clippy::too_many_arguments)]
    async fn run<'h, P: Platform, F: Fields>(
        &self,
        mechanism: &Mechanism,
        requirement: &Requirement,
        config: &Config,
        seen: &'h HeaderMap,
        asked: &Asked<'_, F>,
        cookies: Cookies<'h>,
        p: &P,
        log: &mut RequestLog,
    ) -> Result<Option<Identity<'h>>, IdentityError> {
        let found = match mechanism {
            Mechanism::Jwt { issuers } => {
                let sender = asked.sender();
                self.jwt
                    .authenticate(
                        issuers.as_deref(),
                        config,
                        seen,
                        &sender,
                        cookies.jwt,
                        p,
                        log,
                    )
                    .await?
            }
            Mechanism::Opaque => {
                mechanism::opaque::vouch(&self.sessions, config, seen, cookies.session, p, log)
                    .await?
            }
        };
        let Some((verified, defaults)) = found else {
            return match (requirement.missing, mechanism) {
                // Nothing to bind the request's object to: it is nobody's to reach.
                (Missing::Forward, _) if requirement.binds() => {
                    log.binding = Some(BindRefusal::NoIdentity.code());
                    Err(IdentityError::BindingMismatch(BindRefusal::NoIdentity))
                }
                (Missing::Forward, _) => Ok(None),
                (Missing::Refuse, Mechanism::Jwt { .. }) => {
                    Err(IdentityError::Jwt(JwtError::Missing))
                }
                (Missing::Refuse, Mechanism::Opaque) => {
                    Err(IdentityError::Opaque(OpaqueError::Missing))
                }
            };
        };
        let mut customer_id = None;
        for check in &requirement.checks {
            match check {
                Check::Policy => {
                    customer_id = admit(requirement, config, &verified, defaults, log)?;
                    // Once the token is otherwise good: nothing is asked about a token
                    // that would be refused anyway.
                    if let Presented::Jwt(token) = verified.presented {
                        self.revocation
                            .check(token, &verified.claims, config, &self.jwt, p, log)
                            .await?;
                    }
                }
                Check::Bind(bindings) => bindings
                    .check(asked.path, asked.fields, &verified.claims)
                    .map_err(|refusal| {
                        log.binding = Some(refusal.code());
                        IdentityError::BindingMismatch(refusal)
                    })?,
                Check::SenderConstraint => {
                    sender::require_constrained(&verified.claims).map_err(IdentityError::Sender)?
                }
                // Checked before the mechanism.
                Check::ClientCertificate(_) => {}
            }
        }
        Ok(Some(Identity {
            verified,
            customer_id,
        }))
    }
}

/// One key set cache per provider, or one for the flat settings.
fn provider_count(config: &Result<Config, ConfigErrors>) -> usize {
    match config {
        Ok(Config {
            providers: Some(p), ..
        }) => p.list().len(),
        _ => 1,
    }
}

/// The first step of authentication on every route that reads an identifier: every source
/// read, and a request naming its caller two ways refused (`identifiers`), on `report` routes
/// too. The identifier cookies' values, for the extractor of the route's kind.
fn one_identifier<'h>(
    config: &Config,
    headers: &'h HeaderMap,
    log: &mut RequestLog,
) -> Result<Cookies<'h>, IdentityError> {
    identifiers::one_per_request(headers, &config.identifier_cookies).map_err(|ambiguity| {
        log.identifier_conflict = Some(ambiguity.sources());
        IdentityError::Ambiguous(ambiguity)
    })
}

/// The checks made of every verified request, a verified-token memory hit included: the
/// route's policy (its own `issuers`, `audiences`, `max_lifetime_seconds`, or else `defaults`;
/// then `scopes` and `claims`); then, with `CUSTOMER_ID_HEADER`, the customer id.
fn admit(
    requirement: &Requirement,
    config: &Config,
    verified: &Verified<'_>,
    defaults: Defaults<'_>,
    log: &mut RequestLog,
) -> Result<Option<String>, IdentityError> {
    let policy = &requirement.policy;
    if let Err(refusal) = policy.check(&verified.claims, defaults) {
        log.policy = Some(refusal.policy());
        return Err(match refusal {
            Refusal::Issuers(e) | Refusal::Audiences(e) | Refusal::MaxLifetime(e) => {
                IdentityError::Jwt(e)
            }
            Refusal::Scopes => IdentityError::InsufficientScope(policy.scopes.clone()),
            Refusal::Claims => IdentityError::ClaimsRefused,
        });
    }
    config
        .customer_id
        .as_ref()
        .map(|ids| ids.derive(&verified.claims))
        .transpose()
        .map_err(IdentityError::NoCustomerId)
}
