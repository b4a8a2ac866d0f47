//! A route's requirement, compiled once when the configuration is read (Envoy jwt_authn's
//! requirement per route): which mechanism produces the caller's identity, what a request
//! without one gets, what a failed one gets, and the policy a verified identity must meet.
//! `identity::authenticate` runs it on each request, and nothing else decides who the caller
//! is.
//!
//! Two kinds of part, and where a new one goes:
//! - a `Mechanism` produces an identity from what the request presents (a customer JWT, an
//!   opaque identifier vouched for by introspection): one file in `mechanism/` and one variant
//!   here. A proof bound to a JWT (DPoP, `cnf.x5t#S256`) is a JWT mechanism's own check.
//! - a `Check` runs on the request itself (a client certificate) or on the verified identity
//!   (the policy, an object-level `bind`, a sender constraint): one file and one variant of
//!   `Check`. The checks on the request run first, before the mechanism (the partner is
//!   unknown before any customer is looked at, and a certificate costs less than a token);
//!   those on the identity run in order after it.

use crate::identity::bind::Bindings;
use crate::identity::client_certificate::CertificateRule;
use crate::identity::policy::Policy;

/// What a route requires of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// A valid customer JWT; all three credentials go to the origin.
    Jwt,
    /// No customer JWT; `Authorization` and `api-key` go to the origin.
    Public,
    /// An opaque customer identifier (a session id), vouched for by `INTROSPECTION_URL`; all
    /// three credentials go to the origin, `customer-auth` carrying the caller's identifier.
    Opaque,
    /// No customer JWT: as `public`. A JWT that is present must pass as on a `jwt` route.
    Optional,
    /// The JWT is checked and the outcome logged (`report`); the request is forwarded
    /// whatever the outcome, with `customer-auth` only when it passed.
    Report,
}

/// `auth`'s words, in the order the reference lists them.
pub const MODES: [&str; 5] = ["jwt", "public", "optional", "report", "opaque"];

impl AuthMode {
    pub fn from_word(word: &str) -> Option<Self> {
        Some(match word {
            "jwt" => Self::Jwt,
            "public" => Self::Public,
            "optional" => Self::Optional,
            "report" => Self::Report,
            "opaque" => Self::Opaque,
            _ => return None,
        })
    }

    /// The modes that verify an identity, and so may carry a policy such as `scopes`.
    pub fn verifies_identity(self) -> bool {
        !matches!(self, AuthMode::Public)
    }

    /// The modes that read a customer JWT.
    pub fn reads_jwt(self) -> bool {
        matches!(self, AuthMode::Jwt | AuthMode::Optional | AuthMode::Report)
    }
}

/// A route's `auth` and policy, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// What produces the identity; `None`: the route reads none (`public`).
    pub mechanism: Option<Mechanism>,
    /// What a request that presents no identifier gets.
    pub missing: Missing,
    /// What a request whose identifier fails (any refusal of the mechanism or a check) gets.
    pub failure: Failure,
    /// The checks, in order: those on the request (`Check::on_request`) before the mechanism,
    /// the others after it, on a verified identity.
    pub checks: Vec<Check>,
    /// The route's policy (issuers, audiences, lifetime, scopes, claims, claim headers,
    /// preflights); also what `Check::Policy` checks.
    pub policy: Policy,
}

/// What produces a caller's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    /// A customer JWT (`mechanism::jwt`); with `JWT_PROVIDERS`, from the providers whose
    /// issuer `issuers` lists (`None`: any configured provider).
    Jwt { issuers: Option<Vec<String>> },
    /// An opaque identifier vouched for by `INTROSPECTION_URL` (`mechanism::opaque`).
    Opaque,
}

/// A check of a request: on the request itself, or on its verified identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// `client_certificate`: the partner's certificate, as the edge verified it
    /// (`client_certificate`). On the request: run before the mechanism, on every route.
    ClientCertificate(CertificateRule),
    /// The route's policy on the verified identity, then the customer id (`identity::admit`).
    Policy,
    /// `bind`: path segments and headers against the identity's claims (`bind`).
    Bind(Bindings),
}

impl Check {
    /// Runs on the request itself, before the mechanism (and on routes without one).
    pub fn on_request(&self) -> bool {
        matches!(self, Check::ClientCertificate(_))
    }
}

/// What a request without an identifier gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// 401 with a challenge.
    Refuse,
    /// Forwarded without an identity, as on a `public` route (`optional`).
    Forward,
}

/// What a request whose identifier fails gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The refusal's own answer (401, 403, 503).
    Refuse,
    /// Forwarded without an identity, the refusal logged as `report` (for rolling a policy
    /// out).
    Report,
}

impl Requirement {
    /// `auth` and `policy` as one requirement: the only place an `AuthMode` is read for what
    /// it requires.
    pub fn compile(auth: AuthMode, policy: Policy) -> Self {
        let jwt = || {
            Some(Mechanism::Jwt {
                issuers: policy.issuers.clone(),
            })
        };
        let (mechanism, missing, failure) = match auth {
            AuthMode::Public => (None, Missing::Forward, Failure::Refuse),
            AuthMode::Jwt => (jwt(), Missing::Refuse, Failure::Refuse),
            AuthMode::Optional => (jwt(), Missing::Forward, Failure::Refuse),
            // A missing JWT is a failure like any other: reported, and forwarded.
            AuthMode::Report => (jwt(), Missing::Refuse, Failure::Report),
            AuthMode::Opaque => (Some(Mechanism::Opaque), Missing::Refuse, Failure::Refuse),
        };
        Self {
            checks: if mechanism.is_some() {
                vec![Check::Policy]
            } else {
                Vec::new()
            },
            mechanism,
            missing,
            failure,
            policy,
        }
    }
}

impl Requirement {
    /// With `client_certificate`: checked first, before anything else.
    pub fn with_client_certificate(mut self, rule: CertificateRule) -> Self {
        self.checks.insert(0, Check::ClientCertificate(rule));
        self
    }

    /// With `bind`: checked last, after the policy (a token for another audience is 401, a
    /// token lacking the scope 403 `insufficient_scope`, before whose object it is matters).
    /// Only on a route with a mechanism (`Route` refuses `bind` on a `public` one).
    pub fn with_bind(mut self, bindings: Bindings) -> Self {
        self.checks.push(Check::Bind(bindings));
        self
    }

    /// Whether the route binds the request to its identity: then an `optional` route refuses
    /// a request without one.
    pub fn binds(&self) -> bool {
        self.checks.iter().any(|c| matches!(c, Check::Bind(_)))
    }
}

impl Default for Requirement {
    /// A `jwt` route without a policy: what every path is with `ROUTES` unset.
    fn default() -> Self {
        Self::compile(AuthMode::Jwt, Policy::default())
    }
}
