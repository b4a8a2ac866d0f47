//! Settings and secrets, parsed once per isolate into a typed `Config`, assembled from the
//! parts' own settings (each read with `crate::setting`).
//!
//! `ConfigError` and `Lookup` are re-exported here because they are the `Config` API's
//! types; the parts import them from `setting`.

use crate::setting::{base_url, header_value, number, optional, required};
pub use crate::setting::{ConfigError, Lookup};

/// Everything the gateway needs, checked once per isolate.
#[derive(Debug)]
pub struct Config {
    /// `ORIGIN_URL`, without a trailing slash.
    pub origin: String,
    /// `ORIGIN_TIMEOUT_MS`: time allowed for the origin's response head. Defaults to 30000.
    pub origin_timeout_ms: u64,
    /// `ORIGIN_TOKEN_REFUSAL`: which origin 401s refuse the access token. Defaults to
    /// `invalid_token`.
    pub origin_token_refusal: crate::refusal::RefusalMode,
    /// `API_KEY`, sent as `api-key`.
    pub api_key: String,
    pub routes: crate::routes::RouteTable,
    /// How customer JWTs are verified: without `JWT_PROVIDERS`, the flat settings' keys (their
    /// issuer and audience moved to `jwt_issuers`/`jwt_audiences`, checked with the route);
    /// with it, the shared settings (algorithms, leeway, cookie) and no keys.
    pub jwt: crate::jwt::JwtSettings,
    /// `JWT_ISSUER` (at most one), the default `issuers` of a route; empty with `JWT_PROVIDERS`.
    pub jwt_issuers: Vec<String>,
    /// `JWT_AUDIENCE`, the default `audiences` of a route; empty with `JWT_PROVIDERS`.
    pub jwt_audiences: Vec<String>,
    /// `JWT_PROVIDERS`.
    pub providers: Option<crate::providers::Providers>,
    pub token: std::rc::Rc<crate::token::TokenConfig>,
    /// `JWT_COOKIE` and `SESSION_COOKIE`: the cookies compared with the other sources of an
    /// identifier on every route that reads one.
    pub identifier_cookies: crate::identifiers::IdentifierCookies,
    /// `INTROSPECTION_URL` and its companions; always `Some` when a route is `opaque`.
    pub introspection: Option<crate::opaque::IntrospectionSettings>,
    /// `CUSTOMER_ID_HEADER` and `CUSTOMER_ID_KEY`.
    pub customer_id: Option<crate::customer_id::CustomerIdSettings>,
}

impl Config {
    /// Reads and checks every setting. The first problem found is reported.
    pub fn from_settings(get: Lookup<'_>) -> Result<Self, ConfigError> {
        let origin = base_url(&required(get, "ORIGIN_URL")?)
            .map_err(|why| ConfigError::new("ORIGIN_URL", why))?;
        let api_key = header_value(get, "API_KEY")?;
        let routes = match optional(get, "ROUTES") {
            Some(json) => crate::routes::RouteTable::parse(&json)?,
            None => crate::routes::RouteTable::default(),
        };
        let shared = crate::jwt::JwtSettings::shared(get)?;
        let providers = crate::providers::Providers::from_settings(get, &shared)?;
        let (jwt, jwt_issuers, jwt_audiences) = match &providers {
            Some(_) => (shared, Vec::new(), Vec::new()),
            None => {
                let mut jwt = crate::jwt::JwtSettings::from_settings(get)?;
                // Checked per request with the route (which may replace them), not by the
                // verification the verified-token memory stands for.
                let issuers = jwt.issuer.take().into_iter().collect();
                let audiences = std::mem::take(&mut jwt.audiences);
                (jwt, issuers, audiences)
            }
        };
        let identifier_cookies =
            crate::identifiers::IdentifierCookies::from_settings(get, jwt.cookie.as_deref())?;
        let customer_id = crate::customer_id::CustomerIdSettings::from_settings(get)?;
        check_routes_against(&routes, providers.as_ref(), customer_id.as_ref())?;
        let any_opaque = routes
            .routes()
            .iter()
            .any(|r| r.auth == crate::routes::AuthMode::Opaque);
        let introspection = crate::opaque::IntrospectionSettings::from_settings(get, any_opaque)?;
        Ok(Self {
            origin,
            origin_timeout_ms: number(get, "ORIGIN_TIMEOUT_MS", 30_000, 1..=300_000)?,
            origin_token_refusal: crate::refusal::RefusalMode::from_settings(get)?,
            api_key,
            routes,
            jwt,
            jwt_issuers,
            jwt_audiences,
            providers,
            token: std::rc::Rc::new(crate::token::TokenConfig::from_settings(get)?),
            introspection,
            identifier_cookies,
            customer_id,
        })
    }
}

/// What a route's policy may only be checked against the other settings: with
/// `JWT_PROVIDERS`, every issuer a JWT route names must be a provider's; no route may send a
/// claim in the `CUSTOMER_ID_HEADER`.
fn check_routes_against(
    routes: &crate::routes::RouteTable,
    providers: Option<&crate::providers::Providers>,
    customer_id: Option<&crate::customer_id::CustomerIdSettings>,
) -> Result<(), ConfigError> {
    for (i, route) in routes.routes().iter().enumerate() {
        let at = |what: &str| ConfigError::new("ROUTES", format!("route {i}: {what}"));
        if let (Some(providers), Some(issuers), true) = (
            providers,
            route.policy.issuers.as_ref(),
            route.auth.reads_jwt(),
        ) {
            if issuers.iter().any(|iss| providers.find(iss).is_none()) {
                return Err(at(
                    "issuers names an issuer that no JWT_PROVIDERS entry has",
                ));
            }
        }
        if let Some(ids) = customer_id {
            if route
                .policy
                .claims_to_headers
                .iter()
                .any(|h| same_header(h.header.as_str(), ids.header().as_str()))
            {
                return Err(at("claims_to_headers names CUSTOMER_ID_HEADER"));
            }
        }
    }
    Ok(())
}

fn same_header(a: &str, b: &str) -> bool {
    a.replace('_', "-") == b.replace('_', "-")
}
