//! The routing table (`ROUTES`): which paths are served, with which auth, methods, origin and
//! rate limit.
//!
//! First match wins. Prefixes match on path-segment boundaries so that `/account` never opens
//! `/accounts`. With `ROUTES` unset every path is a `jwt` route to `ORIGIN_URL`.

use http::Method;
use serde::Deserialize;

use crate::policy::{Policy, RawPolicy};
use crate::setting::ConfigError;

const SETTING: &str = "ROUTES";

/// What a route requires of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
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

impl AuthMode {
    /// The modes that verify an identity, and so may carry a policy such as `scopes`.
    pub fn verifies_identity(self) -> bool {
        !matches!(self, AuthMode::Public)
    }

    /// The modes that read a customer JWT.
    pub fn reads_jwt(self) -> bool {
        matches!(self, AuthMode::Jwt | AuthMode::Optional | AuthMode::Report)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// What paths are matched against: `configured` without its trailing slash, except the
    /// root `/` (`/account/` matches `/account` and `/account/x`).
    pub prefix: String,
    /// `prefix` exactly as `ROUTES` gives it: what the log line and messages name, so that an
    /// operator finds the route they wrote.
    pub configured: String,
    pub auth: AuthMode,
    /// `None`: every method.
    pub methods: Option<Vec<Method>>,
    /// Base URL overriding `ORIGIN_URL` for this route.
    pub origin: Option<String>,
    /// What the route requires of a verified identity, and the claims it passes on.
    pub policy: Policy,
    /// `rate_limit`: the Workers rate-limiting binding and what requests are counted by.
    pub rate_limit: Option<RateLimit>,
}

/// A route's `rate_limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// The name of a Workers rate-limiting binding (`[[ratelimits]]`).
    pub binding: String,
    pub key: RateKey,
}

/// What a rate limit counts requests by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateKey {
    /// The verified identity's `sub`.
    Sub,
    /// The verified identity's `client_id`.
    ClientId,
    /// The caller's address, `cf-connecting-ip`.
    Ip,
    /// Another claim of the verified identity, by name or dotted path (`org.id`): a string as
    /// is, a number or boolean as its JSON text.
    Claim(String),
}

/// Longest claim path a rate limit may name.
const MAX_RATE_CLAIM_PATH: usize = 128;

impl RateKey {
    /// What the key's bucket names are prefixed with: the kind, or the claim path.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Sub => "sub",
            Self::ClientId => "client_id",
            Self::Ip => "ip",
            Self::Claim(path) => path,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    binding: String,
    key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    NoRoute,
    MethodNotAllowed { allow: Vec<Method> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    routes: Vec<Route>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    prefix: String,
    #[serde(default = "default_auth")]
    auth: AuthMode,
    methods: Option<Vec<String>>,
    origin: Option<String>,
    issuers: Option<Vec<String>>,
    audiences: Option<Vec<String>>,
    scopes: Option<Vec<String>>,
    claims: Option<serde_json::Map<String, serde_json::Value>>,
    max_lifetime_seconds: Option<u64>,
    claims_to_headers: Option<std::collections::BTreeMap<String, String>>,
    cors_preflight: Option<String>,
    rate_limit: Option<RawRateLimit>,
}

fn default_auth() -> AuthMode {
    AuthMode::Jwt
}

impl Default for RouteTable {
    /// Every path, `jwt`, every method, to `ORIGIN_URL`.
    fn default() -> Self {
        Self {
            routes: vec![Route {
                prefix: "/".into(),
                configured: "/".into(),
                auth: AuthMode::Jwt,
                methods: None,
                origin: None,
                policy: Policy::default(),
                rate_limit: None,
            }],
        }
    }
}

impl RouteTable {
    /// Parses `ROUTES`. Errors describe the position and field, never echo the document.
    pub fn parse(json: &str) -> Result<Self, ConfigError> {
        let raw: Vec<RawRoute> = serde_json::from_slice(json.as_bytes()).map_err(|e| {
            ConfigError::new(
                SETTING,
                format!(
                    "is not a JSON array of routes ({{prefix, auth, methods, origin, issuers, audiences, scopes, claims, max_lifetime_seconds, claims_to_headers, cors_preflight}}) of the right types: line {} column {}",
                    e.line(),
                    e.column()
                ),
            )
        })?;
        if raw.is_empty() {
            return Err(ConfigError::new(
                SETTING,
                "is an empty list: no path would be served",
            ));
        }
        let routes = raw
            .into_iter()
            .enumerate()
            .map(|(i, r)| Route::from_raw(i, r))
            .collect::<Result<_, _>>()?;
        Ok(Self { routes })
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The first route whose prefix matches `path`; then its method rule.
    pub fn select(&self, method: &Method, path: &str) -> Result<&Route, RouteError> {
        let route = self
            .routes
            .iter()
            .find(|r| prefix_matches(&r.prefix, path))
            .ok_or(RouteError::NoRoute)?;
        match &route.methods {
            Some(allowed) if !allowed.contains(method) => Err(RouteError::MethodNotAllowed {
                allow: allowed.clone(),
            }),
            _ => Ok(route),
        }
    }
}

impl Route {
    fn from_raw(index: usize, raw: RawRoute) -> Result<Self, ConfigError> {
        let at = |what: &str| ConfigError::new(SETTING, format!("route {index}: {what}"));
        if !raw.prefix.starts_with('/') {
            return Err(at("prefix must start with '/'"));
        }
        // Requests are matched on their normalized path, which never holds `//`, `.`, `..`,
        // `;`, `%61` or a lower-case escape: a prefix that does would match nothing, or not
        // what its author meant.
        if crate::path::normalize(&raw.prefix).as_deref() != Ok(raw.prefix.as_str()) {
            return Err(at(
                "prefix must be a normalized path: no empty, '.' or '..' segments, no ';', \
                 unreserved characters not percent-encoded, other escapes in upper case",
            ));
        }
        let prefix = match raw.prefix.trim_end_matches('/') {
            "" => "/".to_string(),
            p => p.to_string(),
        };
        let methods = match raw.methods {
            None => None,
            Some(list) if list.is_empty() => return Err(at("methods is empty")),
            Some(list) => Some(
                list.iter()
                    .map(|m| Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| at("methods holds something that is not an HTTP method"))?,
            ),
        };
        let origin = match raw.origin {
            None => None,
            Some(o) => {
                Some(crate::setting::base_url(&o).map_err(|why| at(&format!("origin {why}")))?)
            }
        };
        let policy = Policy::compile(
            RawPolicy {
                issuers: raw.issuers,
                audiences: raw.audiences,
                scopes: raw.scopes,
                claims: raw.claims,
                max_lifetime_seconds: raw.max_lifetime_seconds,
                claims_to_headers: raw.claims_to_headers,
                cors_preflight: raw.cors_preflight,
            },
            raw.auth.verifies_identity(),
            &at,
        )?;
        let rate_limit = match raw.rate_limit {
            None => None,
            Some(r) => Some(RateLimit::from_raw(r, raw.auth).map_err(|why| at(&why))?),
        };
        Ok(Self {
            prefix,
            configured: raw.prefix,
            auth: raw.auth,
            methods,
            origin,
            policy,
            rate_limit,
        })
    }
}

impl RateLimit {
    /// Counted by the caller's address (`ip`): before the identifier is verified, so that
    /// requests with bad or random identifiers are throttled before they cost anything.
    pub fn by_address(&self) -> bool {
        self.key == RateKey::Ip
    }

    fn from_raw(raw: RawRateLimit, auth: AuthMode) -> Result<Self, String> {
        // A binding name is a JavaScript identifier in wrangler.toml; anything else is a typo.
        let name_ok = raw
            .binding
            .bytes()
            .next()
            .is_some_and(|b| !b.is_ascii_digit())
            && raw
                .binding
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$');
        if !name_ok {
            return Err("rate_limit.binding must be the name of a rate-limiting binding".into());
        }
        let key = match raw.key.as_str() {
            "sub" => RateKey::Sub,
            "client_id" => RateKey::ClientId,
            "ip" => RateKey::Ip,
            path if !path.is_empty()
                && path.len() <= MAX_RATE_CLAIM_PATH
                && !path.starts_with('.')
                && !path.ends_with('.')
                && !path.contains("..")
                && path.bytes().all(|b| b.is_ascii_graphic() && b != b':') =>
            {
                RateKey::Claim(path.to_string())
            }
            _ => {
                return Err(
                    "rate_limit.key must be sub, client_id, ip or a claim name or dotted path (visible ASCII, no ':', at most 128 bytes)"
                        .into(),
                )
            }
        };
        if auth == AuthMode::Public && key != RateKey::Ip {
            return Err(format!(
                "rate_limit.key {} needs a customer JWT: a public route can only be limited by ip",
                key.as_str()
            ));
        }
        Ok(Self {
            binding: raw.binding,
            key,
        })
    }
}

/// `/account` matches `/account` and `/account/x`, never `/accounts`. `path` is normalized.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTRACT_EXAMPLE: &str = r#"[
      { "prefix": "/auth/customer_authenticate", "auth": "public", "methods": ["POST"] },
      { "prefix": "/account/", "auth": "jwt", "methods": ["POST", "GET"] }
    ]"#;

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        let t = RouteTable::parse(CONTRACT_EXAMPLE).unwrap();
        assert_eq!(
            t.select(&Method::POST, "/account").unwrap().prefix,
            "/account"
        );
        assert_eq!(
            t.select(&Method::POST, "/account/getprofile").unwrap().auth,
            AuthMode::Jwt
        );
        assert_eq!(
            t.select(&Method::POST, "/accounts"),
            Err(RouteError::NoRoute)
        );
        assert_eq!(
            t.select(&Method::POST, "/accountx/y"),
            Err(RouteError::NoRoute)
        );
        assert_eq!(t.select(&Method::GET, "/"), Err(RouteError::NoRoute));
    }

    #[test]
    fn first_match_wins_and_methods_are_enforced() {
        let t = RouteTable::parse(CONTRACT_EXAMPLE).unwrap();
        let r = t
            .select(&Method::POST, "/auth/customer_authenticate")
            .unwrap();
        assert_eq!(r.auth, AuthMode::Public);
        assert_eq!(
            t.select(&Method::DELETE, "/account/x"),
            Err(RouteError::MethodNotAllowed {
                allow: vec![Method::POST, Method::GET]
            })
        );
    }

    #[test]
    fn default_table_requires_a_jwt_everywhere() {
        let t = RouteTable::default();
        assert_eq!(
            t.select(&Method::PATCH, "/anything").unwrap().auth,
            AuthMode::Jwt
        );
    }

    #[test]
    fn bad_tables_name_the_setting_and_the_route() {
        for bad in [
            "{",
            "[]",
            r#"[{"prefix": "account"}]"#,
            r#"[{"prefix": "/a", "auth": "none"}]"#,
            r#"[{"prefix": "/a", "methods": ["G T"]}]"#,
            r#"[{"prefix": "/a", "origin": "ftp://x"}]"#,
            r#"[{"prefix": "/a", "orgin": "https://x"}]"#,
            r#"[{"prefix": "//account"}]"#,
            r#"[{"prefix": "/account//"}]"#,
            r#"[{"prefix": "/auth/../account"}]"#,
            r#"[{"prefix": "/./account"}]"#,
            r#"[{"prefix": "/%61ccount"}]"#,
            r#"[{"prefix": "/account;x"}]"#,
            r#"[{"prefix": "/caf%c3%a9"}]"#,
            r#"[{"prefix": "/a%2Fb"}]"#,
            r#"[{"prefix": "/a\\b"}]"#,
            r#"[{"prefix": "/a", "scopes": "read"}]"#,
            r#"[{"prefix": "/a", "scopes": ["read", 1]}]"#,
            r#"[{"prefix": "/a", "scopes": []}]"#,
            r#"[{"prefix": "/a", "scopes": ["two words"]}]"#,
            r#"[{"prefix": "/a", "scopes": ["quo\"te"]}]"#,
            r#"[{"prefix": "/a", "auth": "public", "scopes": ["read"]}]"#,
        ] {
            let err = RouteTable::parse(bad).unwrap_err();
            assert_eq!(err.setting, "ROUTES", "{bad}");
        }
    }

    #[test]
    fn normalized_prefixes_are_accepted() {
        let t = RouteTable::parse(
            r#"[{"prefix": "/account/"}, {"prefix": "/caf%C3%A9"}, {"prefix": "/a%20b/"}, {"prefix": "/"}]"#,
        )
        .unwrap();
        let prefixes: Vec<&str> = t.routes().iter().map(|r| r.prefix.as_str()).collect();
        assert_eq!(prefixes, ["/account", "/caf%C3%A9", "/a%20b", "/"]);
        // What the log names: the prefix as written.
        let configured: Vec<&str> = t.routes().iter().map(|r| r.configured.as_str()).collect();
        assert_eq!(configured, ["/account/", "/caf%C3%A9", "/a%20b/", "/"]);
    }

    #[test]
    fn scopes_and_opaque_routes_parse() {
        let t = RouteTable::parse(
            r#"[{"prefix": "/s", "auth": "opaque", "scopes": ["profile:read", "openid"]},
                {"prefix": "/j", "scopes": ["a"]}]"#,
        )
        .unwrap();
        assert_eq!(t.routes()[0].auth, AuthMode::Opaque);
        assert_eq!(t.routes()[0].policy.scopes, ["profile:read", "openid"]);
        assert_eq!(t.routes()[1].auth, AuthMode::Jwt);
        assert_eq!(t.routes()[1].policy.scopes, ["a"]);
    }

    #[test]
    fn rate_limits_name_a_binding_and_a_key_the_route_can_give() {
        let t = RouteTable::parse(
            r#"[{"prefix": "/a", "rate_limit": {"binding": "PER_CUSTOMER", "key": "sub"}},
                {"prefix": "/login", "auth": "public", "rate_limit": {"binding": "BY_IP", "key": "ip"}}]"#,
        )
        .unwrap();
        assert_eq!(
            t.routes()[0].rate_limit,
            Some(RateLimit {
                binding: "PER_CUSTOMER".into(),
                key: RateKey::Sub
            })
        );
        assert_eq!(t.routes()[1].rate_limit.as_ref().unwrap().key, RateKey::Ip);
        for bad in [
            r#"[{"prefix": "/a", "rate_limit": {"binding": "", "key": "sub"}}]"#,
            r#"[{"prefix": "/a", "rate_limit": {"binding": "A B", "key": "sub"}}]"#,
            r#"[{"prefix": "/a", "rate_limit": {"binding": "A", "key": ""}}]"#,
            r#"[{"prefix": "/a", "rate_limit": {"binding": "A", "key": "org id"}}]"#,
            r#"[{"prefix": "/a", "rate_limit": {"binding": "A", "key": "org..id"}}]"#,
            r#"[{"prefix": "/a", "rate_limit": {"binding": "A", "key": "a:b"}}]"#,
            r#"[{"prefix": "/a", "auth": "public", "rate_limit": {"binding": "A", "key": "org.id"}}]"#,
            r#"[{"prefix": "/a", "rate_limit": {"binding": "A"}}]"#,
            r#"[{"prefix": "/a", "rate_limit": {"binding": "A", "key": "sub", "limit": 5}}]"#,
            r#"[{"prefix": "/a", "auth": "public", "rate_limit": {"binding": "A", "key": "sub"}}]"#,
        ] {
            let err = RouteTable::parse(bad).unwrap_err();
            assert_eq!(err.setting, "ROUTES", "{bad}");
        }
    }

    #[test]
    fn route_origin_is_normalised() {
        let t = RouteTable::parse(r#"[{"prefix": "/x", "origin": "https://other.example/base/"}]"#)
            .unwrap();
        assert_eq!(
            t.routes()[0].origin.as_deref(),
            Some("https://other.example/base")
        );
    }
}
