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
/// set: ignoring `CUSTOMER_ID_HEADER`, say, would leave a caller free to send that header
/// itself to an origin that trusts it, and ignoring `JWT_PROVIDERS` would check tokens against
/// rules the operator did not write.
pub const NOT_SUPPORTED: [&str; 6] = [
    "JWT_PROVIDERS",
    "INTROSPECTION_URL",
    "INTROSPECTION_TIMEOUT_MS",
    "SESSION_COOKIE",
    "CUSTOMER_ID_HEADER",
    "CUSTOMER_ID_KEY",
];

/// Everything the gateway needs, checked once per isolate.
#[derive(Debug)]
pub struct Config {
    /// `ORIGIN_URL`, without a trailing slash.
    pub origin: String,
    /// `ORIGIN_TIMEOUT_MS`: time allowed for the origin's response head. Defaults to 30000.
    pub origin_timeout_ms: u64,
    /// `API_KEY`, sent as `api-key`.
    pub api_key: String,
    pub routes: crate::routes::RouteTable,
    pub jwt: crate::jwt::JwtSettings,
    pub token: std::rc::Rc<crate::token::TokenConfig>,
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
        let api_key = required(get, "API_KEY")?;
        if http::HeaderValue::from_str(&api_key).is_err() {
            return Err(ConfigError::new(
                "API_KEY",
                "holds characters not allowed in a header",
            ));
        }
        let routes = match optional(get, "ROUTES") {
            Some(json) => crate::routes::RouteTable::parse(&json)?,
            None => crate::routes::RouteTable::default(),
        };
        let jwt = crate::jwt::JwtSettings::from_settings(get)?;
        Ok(Self {
            origin,
            origin_timeout_ms: number(get, "ORIGIN_TIMEOUT_MS", 30_000, 1..=300_000)?,
            api_key,
            routes,
            jwt,
            token: std::rc::Rc::new(crate::token::TokenConfig::from_settings(get)?),
        })
    }
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
    fn numbers_name_the_setting_but_not_the_value() {
        let get = |n: &str| (n == "X").then(|| "12abc".to_string());
        let err = number(&get, "X", 5, 1..=10).unwrap_err();
        assert_eq!(err.setting, "X");
        assert!(!err.problem.contains("12abc"));
        let unset = |_: &str| None;
        assert_eq!(number(&unset, "X", 5, 1..=10).unwrap(), 5);
    }
}
