//! Reading one setting: lookup, optional or required, numbers, header values, URLs; errors that
//! name the setting.
//!
//! Every part's settings (`routes`, `jwt`, `token`, `opaque`, ...) are read with these, and
//! `config` only assembles the parts into a `Config`: the parts know nothing of it, so nothing
//! imports `config` back. Every setting is a string as Workers gives it; an empty string counts
//! as unset, since `[vars]` with `KEY = ""` is how people comment a setting out. Errors name the
//! setting and never echo its value: values may be secrets.

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
