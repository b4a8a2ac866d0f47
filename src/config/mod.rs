//! Settings and secrets, parsed once per isolate into a typed `Config`, assembled from the
//! parts' own settings (each read with `crate::config::setting`), with every problem of every part
//! reported at once, and the environment's names and bindings checked against
//! `crate::config::registry`.
//!
//! `ConfigError`, `ConfigErrors` and `Lookup` are re-exported here because they are the
//! `Config` API's types; the parts import them from `setting`.

#[cfg(not(target_arch = "wasm32"))]
pub mod check;
pub mod entries;
pub mod registry;
pub mod setting;
pub mod suggest;

use crate::config::registry::{Binding, Bound, Environment};
use crate::config::setting::{
    base_url, flag, header_value, number, optional, required, Plaintext, Problems,
};
pub use crate::config::setting::{ConfigError, ConfigErrors, Lookup};

/// Everything the gateway needs, checked once per isolate.
#[derive(Debug)]
pub struct Config {
    /// `ORIGIN_URL`, without a trailing slash.
    pub origin: String,
    /// `ORIGIN_TIMEOUT_MS`: time allowed for the origin's response head. Defaults to 30000.
    pub origin_timeout_ms: u64,
    /// `ORIGIN_TOKEN_REFUSAL`: which origin 401s refuse the access token. Defaults to
    /// `invalid_token`.
    pub origin_token_refusal: crate::edge::refusal::RefusalMode,
    /// `API_KEY`, sent as `api-key`.
    pub api_key: String,
    pub routes: crate::proxy::route::RouteTable,
    /// How customer JWTs are verified: without `JWT_PROVIDERS`, the flat settings' keys (their
    /// issuer and audience moved to `jwt_issuers`/`jwt_audiences`, checked with the route);
    /// with it, the shared settings (algorithms, leeway, cookie) and no keys.
    pub jwt: crate::identity::jwt::JwtSettings,
    /// `JWT_ISSUER` (at most one), the default `issuers` of a route; empty with `JWT_PROVIDERS`.
    pub jwt_issuers: Vec<String>,
    /// `JWT_AUDIENCE`, the default `audiences` of a route; empty with `JWT_PROVIDERS`.
    pub jwt_audiences: Vec<String>,
    /// `JWT_PROVIDERS`.
    pub providers: Option<crate::identity::providers::Providers>,
    pub token: std::rc::Rc<crate::token::TokenConfig>,
    /// `JWT_COOKIE`, `SESSION_COOKIE` and `JWT_HEADER`: the sources compared with the other
    /// sources of an identifier on every route that reads one.
    pub identifier_cookies: crate::identity::identifiers::IdentifierCookies,
    /// `INTROSPECTION_URL` and its companions; always `Some` when a route is `opaque`.
    pub introspection: Option<crate::identity::opaque::IntrospectionSettings>,
    /// `CUSTOMER_ID_HEADER` and `CUSTOMER_ID_KEY`.
    pub customer_id: Option<crate::identity::customer_id::CustomerIdSettings>,
    /// Every route's `claims_to_headers` names and `CUSTOMER_ID_HEADER`: removed from every
    /// request on every route.
    pub identity_headers: crate::edge::headers::IdentityHeaders,
    /// `GATEWAY_ASSERTION_HEADER`, `GATEWAY_SIGNING_KEY` and `GATEWAY_ISSUER`.
    pub assertion: Option<crate::proxy::assertion::settings::AssertionSettings>,
    /// `DPOP_ALGORITHMS` and `DPOP_MAX_AGE_SECONDS`: how DPoP proofs are checked.
    pub dpop: crate::identity::dpop::DpopSettings,
}

impl Config {
    /// Reads and checks every setting; every problem found. Without a listing of the
    /// environment: names that are no setting, and bindings, are not checked (see
    /// `from_environment`).
    pub fn from_settings(get: Lookup<'_>) -> Result<Self, ConfigErrors> {
        Self::read(get, None)
    }

    /// Reads and checks every setting, and `env`'s names and bindings against the gateway's
    /// (`crate::config::registry`): names under the gateway's prefixes that are no setting, settings
    /// bound as the wrong kind, `TOKEN_CACHE` and routes' rate-limit bindings missing. Every
    /// problem found. What the Worker runs on its first request, and `npm run check-config`
    /// before a deploy.
    pub fn from_environment(get: Lookup<'_>, env: &Environment) -> Result<Self, ConfigErrors> {
        Self::read(get, Some(env))
    }

    fn read(get: Lookup<'_>, env: Option<&Environment>) -> Result<Self, ConfigErrors> {
        // Every name a part reads is in the registry: the unknown-name check and the reference
        // depend on it (checked in debug builds, which every test runs).
        let registered = |name: &str| {
            debug_assert!(
                crate::config::registry::find(name).is_some(),
                "{name} is read but not listed in registry::SETTINGS"
            );
            get(name)
        };
        let get: Lookup<'_> = &registered;
        let mut p = Problems::default();
        // A broken switch is reported as such; the URLs are then read as if it were on, so
        // that no second problem follows from the first.
        let plaintext = match p.take(flag(get, "ALLOW_PLAINTEXT_ORIGIN")) {
            Some(false) => Plaintext::LoopbackOnly,
            Some(true) | None => Plaintext::Allowed,
        };
        let origin = p.take(required(get, "ORIGIN_URL").and_then(|raw| {
            base_url(&raw, plaintext).map_err(|why| ConfigError::new("ORIGIN_URL", why))
        }));
        let origin_timeout_ms = p.take(number(get, "ORIGIN_TIMEOUT_MS", 30_000, 1..=300_000));
        let origin_token_refusal = p.take(crate::edge::refusal::RefusalMode::from_settings(get));
        let api_key = p.take(header_value(get, "API_KEY"));
        let routes = p.take_all(match optional(get, "ROUTES") {
            Some(json) => crate::proxy::route::RouteTable::from_setting(&json, plaintext),
            None => Ok(crate::proxy::route::RouteTable::default()),
        });
        let token = p.take_all(crate::token::TokenConfig::from_settings(get));
        let shared = p.take_all(crate::identity::jwt::JwtSettings::shared(get));
        let providers = p.take_all(crate::identity::providers::Providers::from_settings(
            get,
            shared.as_ref(),
        ));
        let jwt = match &providers {
            // With providers, the shared settings (algorithms, leeway, cookie) and no keys.
            Some(Some(_)) => shared.map(|s| (s, Vec::new(), Vec::new())),
            Some(None) => p
                .take_all(crate::identity::jwt::JwtSettings::flat(get, shared))
                .map(|mut jwt| {
                    // Checked per request with the route (which may replace them), not by the
                    // verification the verified-token memory stands for.
                    let issuers = jwt.issuer.take().into_iter().collect();
                    let audiences = std::mem::take(&mut jwt.audiences);
                    (jwt, issuers, audiences)
                }),
            None => None,
        };
        let customer_id =
            p.take_all(crate::identity::customer_id::CustomerIdSettings::from_settings(get));
        let assertion = p.take_all(
            crate::proxy::assertion::settings::AssertionSettings::from_settings(
                get,
                customer_id
                    .as_ref()
                    .and_then(|c| c.as_ref().map(|c| c.header())),
            ),
        );
        let dpop = p.take_all(crate::identity::dpop::DpopSettings::from_settings(get));
        let any_opaque = routes.as_ref().is_some_and(|r| {
            r.routes()
                .iter()
                .any(|r| r.auth == crate::identity::requirement::AuthMode::Opaque)
        });
        let introspection = p.take_all(
            crate::identity::opaque::IntrospectionSettings::from_settings(get, any_opaque),
        );
        if let Some(routes) = &routes {
            let providers = providers.as_ref().and_then(Option::as_ref);
            let customer_id = customer_id.as_ref().and_then(Option::as_ref);
            for e in check_routes_against(routes, providers, customer_id) {
                p.push(e);
            }
        }
        if let Some(env) = env {
            let limiters: Vec<&str> = routes.iter().flat_map(rate_limit_bindings).collect();
            for e in crate::config::registry::check(env, &limiters) {
                p.push(e);
            }
            if let Some(routes) = &routes {
                for e in check_rate_limit_bindings(routes, env) {
                    p.push(e);
                }
            }
        }
        let identifier_cookies = p.take(
            crate::identity::identifiers::IdentifierCookies::from_settings(
                get,
                jwt.as_ref().and_then(|(jwt, _, _)| jwt.cookie.as_deref()),
            ),
        );
        // JWT_HEADER is the caller's; a header the gateway sets to the origin cannot be it too.
        if let Some(jwt_header) = identifier_cookies.as_ref().and_then(|c| c.jwt_header()) {
            let ours = customer_id
                .iter()
                .flatten()
                .map(|c| c.header())
                .chain(assertion.iter().flatten().map(|a| a.header()))
                .chain(routes.iter().flat_map(|r| {
                    r.routes()
                        .iter()
                        .flat_map(|r| r.requirement.policy.claims_to_headers.iter())
                        .map(|h| &h.header)
                }));
            if ours
                .into_iter()
                .any(|h| same_header(h.as_str(), jwt_header.as_str()))
            {
                p.push(ConfigError::new(
                    "JWT_HEADER",
                    "names a header the gateway sets (CUSTOMER_ID_HEADER, GATEWAY_ASSERTION_HEADER or a route's claims_to_headers)",
                ));
            }
        }
        p.finish(|| {
            let (jwt, jwt_issuers, jwt_audiences) = jwt?;
            let routes = routes?;
            let customer_id = customer_id?;
            let assertion = assertion?;
            let identity_headers = crate::edge::headers::IdentityHeaders::new(
                routes
                    .routes()
                    .iter()
                    .flat_map(|r| {
                        r.requirement
                            .policy
                            .claims_to_headers
                            .iter()
                            .map(|h| &h.header)
                    })
                    .chain(customer_id.as_ref().map(|ids| ids.header()))
                    .chain(assertion.as_ref().map(|a| a.header()))
                    // A caller's JWT_HEADER copy is the caller's token: the origin gets it in
                    // customer-auth, once verified, never as sent.
                    .chain(identifier_cookies.as_ref().and_then(|c| c.jwt_header())),
            );
            Some(Self {
                origin: origin?,
                origin_timeout_ms: origin_timeout_ms?,
                origin_token_refusal: origin_token_refusal?,
                api_key: api_key?,
                routes,
                jwt,
                jwt_issuers,
                jwt_audiences,
                providers: providers?,
                token: std::rc::Rc::new(token?),
                introspection: introspection?,
                identifier_cookies: identifier_cookies?,
                customer_id,
                identity_headers,
                assertion,
                dpop: dpop?,
            })
        })
    }
}

/// The rate-limiting bindings the routes name.
fn rate_limit_bindings(routes: &crate::proxy::route::RouteTable) -> Vec<&str> {
    routes
        .routes()
        .iter()
        .filter_map(|r| r.rate_limit.as_ref().map(|l| l.binding.as_str()))
        .collect()
}

/// Each route's `rate_limit.binding` must be bound, to a rate-limiting binding: found here,
/// on the isolate's first request, not after a caller has been authenticated.
fn check_rate_limit_bindings(
    routes: &crate::proxy::route::RouteTable,
    env: &Environment,
) -> Vec<ConfigError> {
    let limiters: Vec<&str> = env
        .names()
        .filter(|(_, b)| *b == Bound::Binding(Binding::RateLimiter))
        .map(|(n, _)| n)
        .collect();
    let mut problems = Vec::new();
    for (i, route) in routes.routes().iter().enumerate() {
        let Some(limit) = &route.rate_limit else {
            continue;
        };
        let name = limit.binding.as_str();
        let problem = match env.get(name) {
            Some(Bound::Binding(Binding::RateLimiter)) => continue,
            None => {
                let meant = crate::config::suggest::closest(name, limiters.iter().copied())
                    .map(|m| format!("; did you mean {m}?"))
                    .unwrap_or_default();
                format!(
                    "no rate-limiting binding named {name} is bound ([[ratelimits]] name = \"{name}\" in wrangler.toml){meant}"
                )
            }
            Some(_) => format!("{name} is bound, but not to a rate-limiting binding"),
        };
        problems.push(ConfigError::at(
            "ROUTES",
            format!("[{i}].rate_limit.binding"),
            problem,
        ));
    }
    problems
}

/// What a route's policy may only be checked against the other settings: with
/// `JWT_PROVIDERS`, every issuer a JWT route names must be a provider's; no route may send a
/// claim in the `CUSTOMER_ID_HEADER`.
fn check_routes_against(
    routes: &crate::proxy::route::RouteTable,
    providers: Option<&crate::identity::providers::Providers>,
    customer_id: Option<&crate::identity::customer_id::CustomerIdSettings>,
) -> Vec<ConfigError> {
    let mut problems = Vec::new();
    for (i, route) in routes.routes().iter().enumerate() {
        if let (Some(providers), Some(issuers), true) = (
            providers,
            route.requirement.policy.issuers.as_ref(),
            route.auth.reads_jwt(),
        ) {
            if issuers.iter().any(|iss| providers.find(iss).is_none()) {
                problems.push(ConfigError::at(
                    "ROUTES",
                    format!("[{i}].issuers"),
                    "names an issuer that no JWT_PROVIDERS entry has",
                ));
            }
        }
        if let Some(ids) = customer_id {
            if route
                .requirement
                .policy
                .claims_to_headers
                .iter()
                .any(|h| same_header(h.header.as_str(), ids.header().as_str()))
            {
                problems.push(ConfigError::at(
                    "ROUTES",
                    format!("[{i}].claims_to_headers"),
                    "names CUSTOMER_ID_HEADER",
                ));
            }
        }
    }
    problems
}

fn same_header(a: &str, b: &str) -> bool {
    a.replace('_', "-") == b.replace('_', "-")
}
