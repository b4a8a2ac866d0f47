//! The routing table (`ROUTES`): which paths are served, with which auth, methods, origin and
//! rate limit.
//!
//! First match wins. Prefixes match on path-segment boundaries so that `/account` never opens
//! `/accounts`. With `ROUTES` unset every path is a `jwt` route to `ORIGIN_URL`.

use http::Method;

use crate::config::entries::Entry;
use crate::config::setting::{ConfigError, ConfigErrors, Plaintext, Problems};
use crate::edge::path::PathError;
use crate::identity::bind::Bindings;
use crate::identity::client_certificate::CertificateRule;
use crate::identity::policy::{Policy, RawPolicy};
use crate::identity::requirement::{AuthMode, Requirement, MODES};
use crate::proxy::log::{clip, RequestLog};

const SETTING: &str = "ROUTES";

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
    /// What the route requires of its caller (`auth` and the policy, compiled): who vouches
    /// for them, what a missing or failed identity gets, and the policy.
    pub requirement: Requirement,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// The path is refused before any route is looked at (`edge::path`).
    InvalidPath(PathError),
    NoRoute,
    MethodNotAllowed {
        allow: Vec<Method>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    routes: Vec<Route>,
}

/// A route's fields.
const FIELDS: [&str; 14] = [
    "prefix",
    "auth",
    "methods",
    "origin",
    "issuers",
    "audiences",
    "scopes",
    "claims",
    "max_lifetime_seconds",
    "claims_to_headers",
    "cors_preflight",
    "rate_limit",
    "bind",
    "client_certificate",
];

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
                requirement: Requirement::default(),
                rate_limit: None,
            }],
        }
    }
}

impl RouteTable {
    /// Parses `ROUTES`, origins https only (plain http to loopback hosts).
    pub fn parse(json: &str) -> Result<Self, ConfigErrors> {
        Self::from_setting(json, Plaintext::LoopbackOnly)
    }

    /// Parses `ROUTES`; `plaintext` says where a route's `origin` may be plain http. Every
    /// problem of every route, each naming the route (`ROUTES[2]`) and its field; values are
    /// never repeated (`crate::config::entries` says what may be).
    pub fn from_setting(json: &str, plaintext: Plaintext) -> Result<Self, ConfigErrors> {
        let entries = crate::config::entries::array(SETTING, json, "routes")?;
        if entries.is_empty() {
            return Err(
                ConfigError::new(SETTING, "is an empty list: no path would be served").into(),
            );
        }
        let mut p = Problems::default();
        let routes: Vec<Option<Route>> = entries
            .iter()
            .enumerate()
            .map(|(i, map)| p.take_all(Route::from_entry(&Entry::new(SETTING, i, map), plaintext)))
            .collect();
        p.finish(|| {
            Some(Self {
                routes: routes.into_iter().collect::<Option<_>>()?,
            })
        })
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

/// The route phase, first half: the path normalized (`edge::path`), which is all that exists
/// from here on: what the gateway's own paths and the routes match, what the log names and
/// what the origin receives.
pub fn normalize(raw_path: &str, log: &mut RequestLog) -> Result<String, RouteError> {
    let path = crate::edge::path::normalize(raw_path).map_err(|e| {
        log.path_problem = Some(e.code());
        RouteError::InvalidPath(e)
    })?;
    log.path = clip(&path);
    Ok(path)
}

/// The route phase, second half: the first route matching the normalized path, and its method
/// rule.
pub fn phase<'c>(
    routes: &'c RouteTable,
    method: &Method,
    path: &str,
    log: &mut RequestLog,
) -> Result<&'c Route, RouteError> {
    let route = routes.select(method, path)?;
    log.route = Some(route.configured.clone());
    Ok(route)
}

impl Route {
    fn from_entry(e: &Entry<'_>, plaintext: Plaintext) -> Result<Self, ConfigErrors> {
        let mut p = Problems::default();
        for problem in e.unknown_fields(&FIELDS) {
            p.push(problem);
        }
        let prefix = p.take(match e.string("prefix") {
            Ok(None) => Err(e.problem("has no prefix: every route needs one")),
            Ok(Some(raw)) => prefix(raw)
                .map(|normal| (normal, raw.to_string()))
                .map_err(|why| e.field_problem("prefix", why)),
            Err(problem) => Err(problem),
        });
        let (prefix, configured) = prefix.unzip();
        let auth = p.take(
            e.one_of("auth", &MODES)
                .map(|word| word.and_then(AuthMode::from_word).unwrap_or(AuthMode::Jwt)),
        );
        let methods = p.take(match e.strings("methods", "HTTP method names") {
            Ok(Some(list)) if list.is_empty() => Err(e.field_problem("methods", "is empty")),
            Ok(Some(list)) => list
                .iter()
                .map(|m| Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes()))
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
                .map_err(|_| {
                    e.field_problem("methods", "holds something that is not an HTTP method")
                }),
            Ok(None) => Ok(None),
            Err(problem) => Err(problem),
        });
        let origin = p.take(match e.string("origin") {
            Ok(Some(raw)) => crate::config::setting::base_url(raw, plaintext)
                .map(Some)
                .map_err(|why| e.field_problem("origin", why)),
            Ok(None) => Ok(None),
            Err(problem) => Err(problem),
        });
        let raw_policy = read_policy(e, &mut p);
        let rate_limit = match (e.object("rate_limit"), auth) {
            (Ok(None), _) => Some(None),
            (Ok(Some(map)), Some(auth)) => p.take(RateLimit::from_entry(e, map, auth).map(Some)),
            (Ok(Some(_)), None) => None,
            (Err(problem), _) => {
                p.push(problem);
                None
            }
        };
        let at = |field: &str, problem: &str| e.field_problem(field, problem);
        let bind = match (e.get("bind"), auth) {
            (None, _) => Some(None),
            (Some(_), Some(AuthMode::Public)) => {
                p.push(e.field_problem(
                    "bind",
                    "needs a verified identity: it applies to jwt, optional, report and opaque \
                     routes only",
                ));
                None
            }
            (Some(value), _) => p.take(Bindings::compile(value, &at).map(Some)),
        };
        let client_certificate = match e.get("client_certificate") {
            None => Some(None),
            Some(value) => p.take(CertificateRule::compile(value, &at).map(Some)),
        };
        // The policy needs the mode, and fields of the right types: with either broken, its
        // checks wait for the fix (what is broken is already reported).
        let policy = match (auth, raw_policy) {
            (Some(auth), Some(raw)) => {
                p.take(Policy::compile(raw, auth.verifies_identity(), &|what| {
                    e.problem(what)
                }))
            }
            _ => None,
        };
        p.finish(|| {
            Some(Self {
                prefix: prefix?,
                configured: configured?,
                auth: auth?,
                methods: methods?,
                origin: origin?,
                requirement: {
                    let mut r = Requirement::compile(auth?, policy?);
                    if let Some(rule) = client_certificate? {
                        r = r.with_client_certificate(rule);
                    }
                    if let Some(bindings) = bind? {
                        r = r.with_bind(bindings);
                    }
                    r
                },
                rate_limit: rate_limit?,
            })
        })
    }
}

/// The normalized form a prefix is kept in: no trailing slash, except the root `/`. Requests
/// are matched on their normalized path, which never holds `//`, `.`, `..`, `;`, `%61` or a
/// lower-case escape: a prefix that does would match nothing, or not what its author meant.
fn prefix(raw: &str) -> Result<String, &'static str> {
    if !raw.starts_with('/') {
        return Err("must start with '/'");
    }
    if crate::edge::path::normalize(raw).as_deref() != Ok(raw) {
        return Err(
            "must be a normalized path: no empty, '.' or '..' segments, no ';', \
             unreserved characters not percent-encoded, other escapes in upper case",
        );
    }
    Ok(match raw.trim_end_matches('/') {
        "" => "/".to_string(),
        p => p.to_string(),
    })
}

/// The policy fields of a route as typed values, or `None` with each field of the wrong type
/// reported.
fn read_policy(e: &Entry<'_>, p: &mut Problems) -> Option<RawPolicy> {
    let issuers = p.take(e.strings("issuers", "issuer strings"));
    let audiences = p.take(e.strings("audiences", "audience strings"));
    let scopes = p.take(e.strings("scopes", "scope strings"));
    let claims = p.take(e.object("claims").map(|m| m.cloned()));
    let max_lifetime_seconds = p.take(e.whole_number("max_lifetime_seconds"));
    let claims_to_headers = p.take(match e.object("claims_to_headers") {
        Ok(None) => Ok(None),
        Ok(Some(map)) => map
            .iter()
            .map(|(header, path)| match path {
                serde_json::Value::String(path) => Ok((header.clone(), path.clone())),
                _ => Err(e.field_problem(
                    "claims_to_headers",
                    "must map header names to claim names (strings)",
                )),
            })
            .collect::<Result<_, _>>()
            .map(Some),
        Err(problem) => Err(problem),
    });
    let cors_preflight = p.take(e.string("cors_preflight").map(|s| s.map(str::to_string)));
    Some(RawPolicy {
        issuers: issuers?,
        audiences: audiences?,
        scopes: scopes?,
        claims: claims?,
        max_lifetime_seconds: max_lifetime_seconds?,
        claims_to_headers: claims_to_headers?,
        cors_preflight: cors_preflight?,
    })
}

impl RateLimit {
    /// Counted by the caller's address (`ip`): before the identifier is verified, so that
    /// requests with bad or random identifiers are throttled before they cost anything.
    pub fn by_address(&self) -> bool {
        self.key == RateKey::Ip
    }

    fn from_entry(
        e: &Entry<'_>,
        map: &serde_json::Map<String, serde_json::Value>,
        auth: AuthMode,
    ) -> Result<Self, ConfigError> {
        let at =
            |field: &str, problem: &str| e.field_problem(&format!("rate_limit.{field}"), problem);
        if let Some(problem) =
            crate::config::entries::unknown_fields(map, &["binding", "key"], |p| {
                e.field_problem("rate_limit", p)
            })
            .into_iter()
            .next()
        {
            return Err(problem);
        }
        let text = |field: &str| match map.get(field) {
            Some(serde_json::Value::String(s)) => Ok(s.as_str()),
            None => Err(at(field, "is required")),
            Some(_) => Err(at(field, "must be a string")),
        };
        let binding = text("binding")?;
        let key = text("key")?;
        // A binding name is a JavaScript identifier in wrangler.toml; anything else is a typo.
        let name_ok = binding.bytes().next().is_some_and(|b| !b.is_ascii_digit())
            && binding
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$');
        if !name_ok {
            return Err(at("binding", "must be the name of a rate-limiting binding"));
        }
        let key = match key {
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
                return Err(at(
                    "key",
                    "must be sub, client_id, ip or a claim name or dotted path (visible ASCII, no ':', at most 128 bytes)",
                ))
            }
        };
        if auth == AuthMode::Public && key != RateKey::Ip {
            return Err(at(
                "key",
                "needs a verified identity: a public route can only be limited by ip",
            ));
        }
        Ok(Self {
            binding: binding.to_string(),
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
            assert_eq!(err.settings(), ["ROUTES"], "{bad}");
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
        assert_eq!(
            t.routes()[0].requirement.policy.scopes,
            ["profile:read", "openid"]
        );
        assert_eq!(t.routes()[1].auth, AuthMode::Jwt);
        assert_eq!(t.routes()[1].requirement.policy.scopes, ["a"]);
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
            assert_eq!(err.settings(), ["ROUTES"], "{bad}");
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
