//! Settings and secrets, parsed once per isolate into a typed `Config`.
//!
//! Every setting is a string as Workers gives it; an empty string counts as unset, since
//! `[vars]` with `KEY = ""` is how people comment a setting out. Errors name the setting and
//! never echo its value: values may be secrets.

use std::fmt;

use crate::http_url::HttpUrl;

/// A setting that is missing or unusable. `problem` describes the shape expected, never the
/// value found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub setting: &'static str,
    pub problem: String,
}

impl ConfigError {
    pub fn new(setting: &'static str, problem: impl Into<String>) -> Self {
        Self {
            setting,
            problem: problem.into(),
        }
    }

    pub fn missing(setting: &'static str) -> Self {
        Self::new(setting, "is required but not set")
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.setting, self.problem)
    }
}

/// Reads one setting by name; `None` when unset or empty.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The value of `name`, or `None` when it is unset or blank.
pub fn optional(get: Lookup<'_>, name: &str) -> Option<String> {
    get(name).filter(|v| !v.trim().is_empty())
}

/// The value of `name`, or a `ConfigError` naming it.
pub fn required(get: Lookup<'_>, name: &'static str) -> Result<String, ConfigError> {
    optional(get, name).ok_or_else(|| ConfigError::missing(name))
}

/// The value of `name`, required, when it can be sent as a header value exactly as set:
/// visible ASCII, with spaces only between other characters. Anything else is refused here,
/// once, rather than sent altered or not at all: HTTP strips leading and trailing whitespace,
/// so such a key would arrive shortened; a control character (tab, CR, LF, DEL) breaks or
/// splits the header; and a non-ASCII character (a non-breaking space pasted with the key) is
/// bytes that origins decode differently, Latin-1 or UTF-8, so it matches nothing reliably.
pub fn header_value(get: Lookup<'_>, name: &'static str) -> Result<String, ConfigError> {
    let value = required(get, name)?;
    let bytes = value.as_bytes();
    let visible = |b: &u8| (0x21..=0x7e).contains(b);
    let ok = bytes.first().is_some_and(visible)
        && bytes.last().is_some_and(visible)
        && bytes.iter().all(|&b| b == b' ' || visible(&b));
    if !ok {
        return Err(ConfigError::new(
            name,
            "must be visible ASCII with no leading or trailing space (it is sent as a header value); check for a pasted non-breaking space, tab or line break",
        ));
    }
    Ok(value)
}

/// Checks an origin or endpoint base URL: absolute http(s), a host, no query or fragment (the
/// request's own path and query are appended). Answers it without a trailing slash.
pub fn base_url(raw: &str) -> Result<String, &'static str> {
    let url = HttpUrl::parse(raw)?;
    if url.has_query() || url.has_fragment() {
        return Err("must not carry a query or fragment");
    }
    Ok(url.without_query().trim_end_matches('/').to_string())
}

/// An absolute http(s) URL with a host; used as given (a query is kept).
pub fn endpoint_url(raw: &str) -> Result<String, &'static str> {
    HttpUrl::parse(raw).map(|u| u.to_string())
}

/// A whole number of seconds or milliseconds within `range`, or the default when unset.
pub fn number(
    get: Lookup<'_>,
    name: &'static str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let Some(raw) = optional(get, name) else {
        return Ok(default);
    };
    raw.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            ConfigError::new(
                name,
                format!(
                    "must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            )
        })
}

/// Settings the contract reserves for features this version does not have. Each is refused when
/// set: ignoring one would check requests against rules the operator did not write.
pub const NOT_SUPPORTED: [&str; 0] = [];

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
    /// `INTROSPECTION_URL` and its companions; always `Some` when a route is `opaque`.
    pub introspection: Option<crate::opaque::IntrospectionSettings>,
    /// `CUSTOMER_ID_HEADER` and `CUSTOMER_ID_KEY`.
    pub customer_id: Option<crate::customer_id::CustomerIdSettings>,
}

impl Config {
    /// Reads and checks every setting. The first problem found is reported.
    pub fn from_settings(get: Lookup<'_>) -> Result<Self, ConfigError> {
        if let Some(name) = NOT_SUPPORTED
            .into_iter()
            .find(|n| optional(get, n).is_some())
        {
            return Err(ConfigError::new(
                name,
                "is not supported by this version of edge-auth-proxy: unset it (see docs/configuration.md)",
            ));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_normalised_and_checked() {
        assert_eq!(
            base_url("https://o.example/api/").unwrap(),
            "https://o.example/api"
        );
        assert_eq!(
            base_url("http://127.0.0.1:8788").unwrap(),
            "http://127.0.0.1:8788"
        );
        assert!(base_url("o.example").is_err());
        assert!(base_url("ftp://o.example").is_err());
        assert!(base_url("https://o.example/?x=1").is_err());
        assert!(base_url("https://user:pw@o.example").is_err());
    }

    #[test]
    fn settings_of_features_not_built_are_refused_by_name() {
        for name in NOT_SUPPORTED {
            let get = |n: &str| (n == name).then(|| "x-customer-id".to_string());
            let err = Config::from_settings(&get).unwrap_err();
            assert_eq!(err.setting, name);
            assert!(!err.problem.contains("x-customer-id"));
        }
    }

    #[test]
    fn header_values_must_arrive_as_set() {
        for good in [
            "k",
            "abc-123_XYZ.~+/=",
            "two words",
            "!\"#$%&'()*,:;<>?@[\\]^`{|}",
        ] {
            let get = |_: &str| Some(good.to_string());
            assert_eq!(header_value(&get, "API_KEY").unwrap(), good);
        }
        for bad in [
            "Zq9\u{a0}",
            "Zq\u{a0}9",
            "\u{a0}Zq9",
            "Zqé9",
            "Zq\t9",
            "Zq9\t",
            "Zq\r9",
            "Zq9\r\n",
            "Zq\n9",
            "Zq\u{7f}9",
            "Zq\09",
            " Zq9",
            "Zq9 ",
            "\tZq9",
        ] {
            let get = |_: &str| Some(bad.to_string());
            let err = header_value(&get, "API_KEY").unwrap_err();
            assert_eq!(err.setting, "API_KEY", "{bad:?}");
            assert!(!err.to_string().contains("Zq"), "{bad:?} echoed");
        }
        let unset = |_: &str| None;
        assert_eq!(
            header_value(&unset, "API_KEY"),
            Err(ConfigError::missing("API_KEY"))
        );
    }

    #[test]
    fn numbers_name_the_setting_but_not_the_value() {
        let get = |n: &str| (n == "X").then(|| "12abc".to_string());
        let err = number(&get, "X", 5, 1..=10).unwrap_err();
        assert_eq!(err.setting, "X");
        assert!(!err.problem.contains("12abc"));
        let unset = |_: &str| None;
        assert_eq!(number(&unset, "X", 5, 1..=10).unwrap(), 5);
    }
}
