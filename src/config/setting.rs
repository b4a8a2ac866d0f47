//! Reading one setting: lookup, optional or required, numbers, flags, header values, URLs;
//! errors that name the setting, and the list of every problem found.
//!
//! Every part's settings (`routes`, `jwt`, `token`, `opaque`, ...) are read with these, and
//! `config` only assembles the parts into a `Config`: the parts know nothing of it, so nothing
//! imports `config` back. Every setting is a string as Workers gives it; an empty string counts
//! as unset, since `[vars]` with `KEY = ""` is how people comment a setting out. Errors name the
//! setting and never echo its value: values may be secrets.
//!
//! Each part reports every problem it finds, not the first (`Problems`): an operator fixes a
//! deployment's configuration in one pass, not one deploy per mistake.

use std::borrow::Cow;
use std::fmt;

use crate::support::http_url::HttpUrl;

/// A setting that is missing or unusable. `problem` describes the shape expected, never the
/// value found; `place` is where in a structured setting (`[2].auth` of `ROUTES`), or empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// A setting of the gateway, or a name found in the environment (an unknown setting).
    pub setting: Cow<'static, str>,
    pub place: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(setting: &'static str, problem: impl Into<String>) -> Self {
        Self {
            setting: Cow::Borrowed(setting),
            place: String::new(),
            problem: problem.into(),
        }
    }

    /// A problem of a name only known at run time: a name in the environment that is not a
    /// setting of the gateway.
    pub fn named(setting: String, problem: impl Into<String>) -> Self {
        Self {
            setting: Cow::Owned(setting),
            place: String::new(),
            problem: problem.into(),
        }
    }

    /// A problem at `place` inside a structured setting: `ConfigError::at("ROUTES", "[0].auth",
    /// ...)` reads `ROUTES[0].auth: ...`.
    pub fn at(setting: &'static str, place: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            setting: Cow::Borrowed(setting),
            place: place.into(),
            problem: problem.into(),
        }
    }

    pub fn missing(setting: &'static str) -> Self {
        Self::new(setting, "is required but not set")
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.place.is_empty() {
            write!(f, "{} {}", self.setting, self.problem)
        } else {
            write!(f, "{}{}: {}", self.setting, self.place, self.problem)
        }
    }
}

/// Every problem of a configuration, in the order found; never empty when it comes from
/// `Config`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The settings named, each once, in the order found.
    pub fn settings(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for e in &self.0 {
            if !names.contains(&e.setting.as_ref()) {
                names.push(&e.setting);
            }
        }
        names
    }

    pub fn into_vec(self) -> Vec<ConfigError> {
        self.0
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        Self(vec![e])
    }
}

impl From<Vec<ConfigError>> for ConfigErrors {
    fn from(list: Vec<ConfigError>) -> Self {
        Self(list)
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Collects problems while a part reads all its settings. `take` answers `None` exactly when
/// it recorded a problem, so a part assembles its value with `?` on each `Option` in `finish`.
#[derive(Debug, Default)]
pub struct Problems(Vec<ConfigError>);

impl Problems {
    pub fn push(&mut self, e: ConfigError) {
        self.0.push(e);
    }

    /// The value, or `None` with its problem recorded.
    pub fn take<T>(&mut self, r: Result<T, ConfigError>) -> Option<T> {
        r.map_err(|e| self.0.push(e)).ok()
    }

    /// The value, or `None` with all its problems recorded (none when another part already
    /// recorded the cause: see `finish`).
    pub fn take_all<T>(&mut self, r: Result<T, ConfigErrors>) -> Option<T> {
        r.map_err(|e| self.0.extend(e.0)).ok()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `build`'s value when no problem was found. `build` answers `None` only when a value it
    /// needs is missing because of a problem recorded by the caller's caller (a part read with
    /// another part's broken settings): then the list is empty, and the caller, which has the
    /// cause, reports it.
    pub fn finish<T>(self, build: impl FnOnce() -> Option<T>) -> Result<T, ConfigErrors> {
        if !self.0.is_empty() {
            return Err(ConfigErrors(self.0));
        }
        build().ok_or_else(ConfigErrors::default)
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

/// Where plain `http` is allowed: the token, key and introspection endpoints carry the client
/// secret, identifiers and the keys that decide who is let in, so only on a loopback host
/// (tests, a local demo); an origin may also be reached over a private network, by choice
/// (`ALLOW_PLAINTEXT_ORIGIN=true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plaintext {
    LoopbackOnly,
    /// `ALLOW_PLAINTEXT_ORIGIN=true`: any host.
    Allowed,
}

const HTTPS_ONLY: &str =
    "must be an https URL (plain http only to a loopback host: localhost, 127.0.0.0/8, [::1])";
const HTTPS_ORIGIN: &str = "must be an https URL (plain http only to a loopback host: localhost, 127.0.0.0/8, [::1]; or set ALLOW_PLAINTEXT_ORIGIN=true for an origin reached over a private network)";

/// Checks an origin base URL: absolute https (or http as `plaintext` allows), a host, no query
/// or fragment (the request's own path and query are appended). Answers it without a trailing
/// slash.
pub fn base_url(raw: &str, plaintext: Plaintext) -> Result<String, &'static str> {
    let url = HttpUrl::parse(raw)?;
    if url.has_query() || url.has_fragment() {
        return Err("must not carry a query or fragment");
    }
    if !url.is_https() && !url.is_loopback() && plaintext == Plaintext::LoopbackOnly {
        return Err(HTTPS_ORIGIN);
    }
    Ok(url.without_query().trim_end_matches('/').to_string())
}

/// An absolute https URL with a host (http only to a loopback host); used as given (a query is
/// kept). The token, key set and introspection endpoints.
pub fn endpoint_url(raw: &str) -> Result<String, &'static str> {
    let url = HttpUrl::parse(raw)?;
    if !url.is_https() && !url.is_loopback() {
        return Err(HTTPS_ONLY);
    }
    Ok(url.to_string())
}

/// `true` or `false` (surrounding spaces ignored), `false` when unset: a switch that lowers a
/// protection is read strictly, so that `yes`, `1` or `TRUE` are errors, not guesses.
pub fn flag(get: Lookup<'_>, name: &'static str) -> Result<bool, ConfigError> {
    match optional(get, name).as_deref().map(str::trim) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(ConfigError::new(name, "must be true or false")),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_normalised_and_checked() {
        let strict = Plaintext::LoopbackOnly;
        assert_eq!(
            base_url("https://o.example/api/", strict).unwrap(),
            "https://o.example/api"
        );
        assert_eq!(
            base_url("http://127.0.0.1:8788", strict).unwrap(),
            "http://127.0.0.1:8788"
        );
        assert!(base_url("o.example", strict).is_err());
        assert!(base_url("ftp://o.example", strict).is_err());
        assert!(base_url("https://o.example/?x=1", strict).is_err());
        assert!(base_url("https://user:pw@o.example", strict).is_err());
    }

    #[test]
    fn plain_http_only_to_loopback_and_for_origins_by_choice() {
        let loopback = [
            "http://localhost/",
            "http://LOCALHOST:8080/x",
            "http://127.0.0.1:8788",
            "http://127.255.3.4/",
            "http://[::1]:9/",
            "http://[0:0:0:0:0:0:0:1]/",
            "http://[0::1]/",
            "http://[::0:0001]/",
        ];
        // Hosts that look like loopback to a reader but resolve elsewhere, or that only a
        // lenient parser would read as 127.x: refused, never guessed.
        let public = [
            "http://idp.example.com/token",
            "http://127.0.0.1.nip.io/",
            "http://localhost.evil.example/",
            "http://evil.example/localhost",
            "http://128.0.0.1/",
            "http://126.255.255.255/",
            "http://[::2]/",
            "http://[::1:0]/",
            "http://[1::1]/",
            "http://[::]/",
            "http://[:::1]/",
            "http://[0:0:0:0:0:0:0:0:1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::127.0.0.1]/",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://127.1/",
            "http://0177.0.0.1/",
            "http://127.000.000.001/",
            "http://0.0.0.0/",
        ];
        for url in loopback {
            assert!(endpoint_url(url).is_ok(), "{url}");
            assert!(base_url(url, Plaintext::LoopbackOnly).is_ok(), "{url}");
        }
        for url in public {
            assert_eq!(endpoint_url(url), Err(HTTPS_ONLY), "{url}");
            assert_eq!(
                base_url(url, Plaintext::LoopbackOnly),
                Err(HTTPS_ORIGIN),
                "{url}"
            );
            assert!(base_url(url, Plaintext::Allowed).is_ok(), "{url}");
            let https = url.replacen("http://", "https://", 1);
            assert!(endpoint_url(&https).is_ok(), "{https}");
        }
    }

    #[test]
    fn flags_are_true_or_false() {
        for (raw, want) in [
            (None, false),
            (Some("true"), true),
            (Some(" false "), false),
        ] {
            let get = |_: &str| raw.map(String::from);
            assert_eq!(flag(&get, "F"), Ok(want), "{raw:?}");
        }
        for raw in ["yes", "1", "TRUE", "True", "on", "truee"] {
            let get = |_: &str| Some(raw.to_string());
            assert_eq!(
                flag(&get, "F"),
                Err(ConfigError::new("F", "must be true or false"))
            );
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
