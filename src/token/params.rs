//! `TOKEN_PARAMS`: extra form parameters of the token request (RFC 8707 `resource`, an
//! `audience`), given as a query string. Read once at configuration: decoded strictly (a `%`
//! not followed by two hex digits, or bytes that are not UTF-8, are refused rather than sent
//! altered), and none may set what the gateway itself sends (the grant, the client's
//! authentication, `TOKEN_SCOPE`'s `scope`).

use crate::config::setting::{optional, ConfigError, Lookup};

const SETTING: &str = "TOKEN_PARAMS";

/// The names the gateway sends itself; `client_assertion*` are refused by prefix. Compared
/// ignoring ASCII case: an endpoint that reads names loosely must not see a second value.
const RESERVED: [&str; 4] = ["grant_type", "client_id", "client_secret", "scope"];

/// The parameters in the order given, decoded; a name may repeat (`resource` often does).
pub fn from_settings(get: Lookup<'_>) -> Result<Vec<(String, String)>, ConfigError> {
    let Some(raw) = optional(get, SETTING) else {
        return Ok(Vec::new());
    };
    let raw = raw.trim();
    let raw = raw.strip_prefix('?').unwrap_or(raw);
    let mut params = Vec::new();
    for (i, pair) in raw.split('&').enumerate() {
        let at =
            |problem: String| ConfigError::new(SETTING, format!("parameter {}: {problem}", i + 1));
        if pair.is_empty() {
            continue;
        }
        let Some((name, value)) = pair.split_once('=') else {
            return Err(at("is not name=value".into()));
        };
        let name = decode(name).map_err(at)?;
        let value = decode(value).map_err(at)?;
        if name.is_empty() {
            return Err(at("has an empty name".into()));
        }
        let lower = name.to_ascii_lowercase();
        if RESERVED.contains(&lower.as_str()) || lower.starts_with("client_assertion") {
            return Err(ConfigError::new(
                SETTING,
                format!(
                    "may not set \"{}\": the gateway sends it itself ({})",
                    printable(&name),
                    if lower == "scope" {
                        "use TOKEN_SCOPE"
                    } else {
                        "per TOKEN_CLIENT_AUTH"
                    }
                ),
            ));
        }
        params.push((name, value));
    }
    Ok(params)
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space), refusing a `%` without two
/// hex digits after it and bytes that are not UTF-8.
fn decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .filter(|_| {
                        bytes[i + 1].is_ascii_hexdigit() && bytes[i + 2].is_ascii_hexdigit()
                    });
                match hex {
                    Some(b) => out.push(b),
                    None => return Err("has a '%' not followed by two hex digits".into()),
                }
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "does not decode to UTF-8".into())
}

/// A parameter name as an error may show it: the operator's own name, not a secret, but cut
/// and stripped of control characters so that a log line stays one line.
fn printable(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).take(40).collect()
}
