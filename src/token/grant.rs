//! The client-credentials exchange (RFC 6749 §4.4): the request we send and what we accept back.
//!
//! Parsing is tolerant where real endpoints differ (`expires_in` as a number or a numeric string,
//! `token_type` in any case, `issued_at` in epoch milliseconds as a string) and strict where
//! being wrong would be unsafe (a token that is not Bearer, an empty or header-breaking token).

use serde::Deserialize;
use serde_json::Value;

use super::entry::CachedToken;
use super::TokenConfig;

/// Lifetime assumed when the endpoint does not say (`expires_in` absent): short, so a token of
/// unknown life is not trusted for long.
pub const DEFAULT_LIFETIME_SECS: u64 = 300;

/// Most of a token response we will read; real ones are well under 4 KiB.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Why the token endpoint gave us no usable token. Carries no token or secret.
// The token coordinator passes its endpoint failure on to the isolates it answers, as JSON
// (src/token/protocol.rs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantError {
    Timeout,
    Unreachable,
    /// A non-2xx answer, with the OAuth `error` code when the body had one.
    Status {
        status: u16,
        oauth_error: Option<String>,
    },
    NotJson,
    NoAccessToken,
    /// `access_token` is not one run of `VSCHAR`s without a space, so it cannot be sent as
    /// `Authorization: Bearer <token>` byte for byte (a space, a control character, non-ASCII).
    BadAccessToken,
    /// `token_type` present and not Bearer.
    WrongTokenType,
    /// `expires_in` present but not a positive number.
    BadExpiry,
    /// `private_key_jwt`: the platform refused to sign with `CLIENT_PRIVATE_KEY`; the endpoint
    /// was not called.
    ClientKey,
}

impl GrantError {
    /// A stable id for the log line.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Timeout => "token_endpoint_timeout",
            Self::Unreachable => "token_endpoint_unreachable",
            Self::Status { .. } if self.is_client_misconfigured() => "token_client_rejected",
            Self::Status { .. } => "token_endpoint_status",
            Self::NotJson => "token_response_not_json",
            Self::NoAccessToken => "token_response_no_access_token",
            Self::BadAccessToken => "token_response_bad_access_token",
            Self::WrongTokenType => "token_response_wrong_type",
            Self::BadExpiry => "token_response_bad_expiry",
            Self::ClientKey => "token_client_key_unusable",
        }
    }

    /// The endpoint refused our credentials: retrying soon cannot help, an operator must act.
    pub fn is_client_misconfigured(&self) -> bool {
        match self {
            Self::Status {
                oauth_error: Some(e),
                ..
            } => {
                matches!(
                    e.as_str(),
                    "invalid_client" | "unauthorized_client" | "invalid_scope"
                )
            }
            Self::Status { status, .. } => *status == 401 || *status == 403,
            Self::ClientKey => true,
            _ => false,
        }
    }

    /// For a refusal of our credentials, what the operator must look at: the log line reports
    /// it as a configuration error, naming settings, never their values.
    pub fn config_problem(&self) -> Option<&'static str> {
        if !self.is_client_misconfigured() {
            return None;
        }
        Some(match self {
            Self::Status {
                oauth_error: Some(e),
                ..
            } if e == "invalid_scope" => "the token endpoint refused TOKEN_SCOPE (invalid_scope)",
            Self::ClientKey => "the platform could not sign with CLIENT_PRIVATE_KEY: check that its private members match its public ones",
            _ => "the token endpoint refused the client credentials: check CLIENT_ID, CLIENT_SECRET (CLIENT_PRIVATE_KEY with private_key_jwt) and TOKEN_CLIENT_AUTH",
        })
    }
}

/// Headers and form body of the token request, as `client_auth::post_form` sends them (with
/// a client secret).
#[cfg(test)]
pub fn request(cfg: &TokenConfig) -> (http::HeaderMap, Vec<u8>) {
    super::client_auth::form(cfg, &pairs(cfg), None)
}

/// The form of the token request: `grant_type` (unless `TOKEN_URL` carries it), `scope`, then
/// `TOKEN_PARAMS`; `client_auth` adds the client's authentication.
pub fn pairs(cfg: &TokenConfig) -> Vec<(&str, &str)> {
    let mut pairs = Vec::with_capacity(2 + cfg.params.len());
    // The documented endpoint takes grant_type in its query; RFC 6749 §3.2 forbids a parameter
    // twice, so only add it to the body when the URL does not already carry it.
    if !crate::support::http_url::has_query_param(&cfg.url, "grant_type") {
        pairs.push(("grant_type", "client_credentials"));
    }
    if let Some(scope) = &cfg.scope {
        pairs.push(("scope", scope.as_str()));
    }
    pairs.extend(cfg.params.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    pairs
}

#[derive(Deserialize)]
struct RawResponse {
    access_token: Option<Value>,
    token_type: Option<Value>,
    expires_in: Option<Value>,
    issued_at: Option<Value>,
}

#[derive(Deserialize)]
struct RawError {
    error: Option<String>,
}

/// Turns the endpoint's answer into a cache entry, `now_ms` being when the answer arrived.
pub fn parse_response(status: u16, body: &[u8], now_ms: u64) -> Result<CachedToken, GrantError> {
    if !(200..300).contains(&status) {
        let oauth_error = serde_json::from_slice::<RawError>(body)
            .ok()
            .and_then(|e| e.error)
            // Only a plausible RFC 6749 §5.2 code goes to logs, never arbitrary endpoint text.
            .filter(|e| e.len() <= 40 && e.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        return Err(GrantError::Status {
            status,
            oauth_error,
        });
    }
    let raw: RawResponse = serde_json::from_slice(body).map_err(|_| GrantError::NotJson)?;
    let token = match raw.access_token {
        Some(Value::String(t)) if t.is_empty() => return Err(GrantError::NoAccessToken),
        Some(Value::String(t)) if bearer_safe(&t) => t,
        Some(Value::String(_)) => return Err(GrantError::BadAccessToken),
        _ => return Err(GrantError::NoAccessToken),
    };
    match raw.token_type {
        None => {}
        Some(Value::String(t)) if t.eq_ignore_ascii_case("bearer") => {}
        Some(_) => return Err(GrantError::WrongTokenType),
    }
    let lifetime_secs = match raw.expires_in {
        None | Some(Value::Null) => DEFAULT_LIFETIME_SECS,
        Some(v) => seconds(&v)
            .filter(|s| *s > 0)
            .ok_or(GrantError::BadExpiry)?,
    };
    let lifetime_ms = lifetime_secs.saturating_mul(1000);
    let mut expires_at = now_ms.saturating_add(lifetime_ms);
    if let Some(issued_ms) = raw.issued_at.as_ref().and_then(millis) {
        // Trust the endpoint's issue time only when it is near ours: it can only shorten the
        // life (a token issued earlier expires earlier), and a clock far off is ignored rather
        // than making every token look expired.
        if issued_ms <= now_ms && now_ms - issued_ms <= 5 * 60 * 1000 {
            expires_at = expires_at.min(issued_ms.saturating_add(lifetime_ms));
        }
    }
    Ok(CachedToken::new(token, now_ms, expires_at))
}

/// RFC 6749 §A.12: `access-token = 1*VSCHAR` (`%x20-7E`), less the space: RFC 6750 §2.1 puts
/// the token after `Bearer ` as one `b64token`, so a space would split it into two, and an
/// origin would read only the first part. Everything else in VSCHAR is allowed: providers'
/// tokens are not always strict `b64token`s, and the origin is the one that judges them.
pub(super) fn bearer_safe(token: &str) -> bool {
    token.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// A whole or fractional number of seconds, as a JSON number or a numeric string.
fn seconds(v: &Value) -> Option<u64> {
    let f = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => decimal_string(s)?,
        _ => return None,
    };
    (0.0..1e12).contains(&f).then_some(f as u64)
}

/// A number sent as a string (`" 59.9 "`, `"1e3"`, `"inf"`): what `s.trim().parse::<f64>()`
/// accepts, the same grammar (optional sign; digits with an optional `.` and exponent, or
/// `inf`, `infinity`, `nan` in any case), read by serde_json's number parser, which the wasm
/// has anyway, instead of core's `f64` parser and its ten-kilobyte table of powers of five
/// (issue 13: bytes). The values are core's for every string of at most 15 significant digits
/// and an exponent within ±22; beyond that they may differ in the last binary digit, which no
/// whole number of seconds below 2^53 can tell apart.
pub(crate) fn decimal_string(s: &str) -> Option<f64> {
    let t = s.trim();
    let (negative, rest) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let sign = if negative { -1.0 } else { 1.0 };
    if rest.eq_ignore_ascii_case("inf") || rest.eq_ignore_ascii_case("infinity") {
        return Some(sign * f64::INFINITY);
    }
    if rest.eq_ignore_ascii_case("nan") {
        return Some(f64::NAN);
    }
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) => (&rest[..at], Some(&rest[at + 1..])),
        None => (rest, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if whole.len() + fraction.len() == 0 || !digits(whole) || !digits(fraction) {
        return None;
    }
    // As JSON: no `+`, no leading zeros, a digit on both sides of the `.`.
    let mut json = String::with_capacity(t.len() + 2);
    if negative {
        json.push('-');
    }
    let whole = whole.trim_start_matches('0');
    json.push_str(if whole.is_empty() { "0" } else { whole });
    if !fraction.is_empty() {
        json.push('.');
        json.push_str(fraction);
    }
    if let Some(exponent) = exponent {
        let unsigned = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
        if unsigned.is_empty() || !digits(unsigned) {
            return None;
        }
        json.push('e');
        json.push_str(exponent);
    }
    match serde_json::from_slice::<Value>(json.as_bytes()) {
        Ok(Value::Number(n)) => n.as_f64(),
        // Only a number too large for an f64, where core's parser says infinity.
        _ => Some(sign * f64::INFINITY),
    }
}

fn millis(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::super::ClientAuth;
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn cfg(auth: ClientAuth, url: &str, scope: Option<&str>) -> TokenConfig {
        TokenConfig {
            url: url.into(),
            client_id: "id:é".into(),
            client_secret: "s&cr=t".into(),
            client_auth: auth,
            scope: scope.map(Into::into),
            params: Vec::new(),
            timeout_ms: 1000,
            sealer: None,
        }
    }

    fn form(body: &[u8]) -> Vec<(String, String)> {
        form_urlencoded::parse(body).into_owned().collect()
    }

    #[test]
    fn post_auth_puts_credentials_in_the_body() {
        let (h, body) = request(&cfg(
            ClientAuth::Post,
            "https://t.example/token",
            Some("a b"),
        ));
        assert_eq!(h["content-type"], "application/x-www-form-urlencoded");
        assert!(!h.contains_key("authorization"));
        let f = form(&body);
        assert!(f.contains(&("grant_type".into(), "client_credentials".into())));
        assert!(f.contains(&("scope".into(), "a b".into())));
        assert!(f.contains(&("client_id".into(), "id:é".into())));
        assert!(f.contains(&("client_secret".into(), "s&cr=t".into())));
    }

    #[test]
    fn basic_auth_form_encodes_before_base64() {
        let (h, body) = request(&cfg(ClientAuth::Basic, "https://t.example/token", None));
        let value = h["authorization"].to_str().unwrap();
        let b64 = value.strip_prefix("Basic ").unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(decoded, b"id%3A%C3%A9:s%26cr%3Dt");
        assert!(!String::from_utf8(body).unwrap().contains("client_secret"));
    }

    #[test]
    fn grant_type_is_not_sent_twice() {
        let url = "https://t.example/oauth/access_token?grant_type=client_credentials";
        let (_, body) = request(&cfg(ClientAuth::Post, url, None));
        assert!(!form(&body).iter().any(|(k, _)| k == "grant_type"));
    }

    #[test]
    fn the_documented_example_parses() {
        let body = br#"{"token_type":"Bearer","issued_at":"1570733606449","client_id":"c",
            "access_token":"abc","scope":"client_credentials","expires_in":"28799"}"#;
        let t = parse_response(200, body, NOW).unwrap();
        assert_eq!(t.access_token(), "abc");
        assert_eq!(t.expires_at_ms(), NOW + 28_799_000);
    }

    #[test]
    fn expiry_variants() {
        let at = |b: &str| parse_response(200, b.as_bytes(), NOW).map(|t| t.expires_at_ms());
        assert_eq!(
            at(r#"{"access_token":"a","expires_in":3600}"#),
            Ok(NOW + 3_600_000)
        );
        assert_eq!(
            at(r#"{"access_token":"a","expires_in":" 60 "}"#),
            Ok(NOW + 60_000)
        );
        assert_eq!(
            at(r#"{"access_token":"a","expires_in":59.9}"#),
            Ok(NOW + 59_000)
        );
        assert_eq!(
            at(r#"{"access_token":"a"}"#),
            Ok(NOW + DEFAULT_LIFETIME_SECS * 1000)
        );
        assert_eq!(
            at(r#"{"access_token":"a","expires_in":"soon"}"#),
            Err(GrantError::BadExpiry)
        );
        assert_eq!(
            at(r#"{"access_token":"a","expires_in":0}"#),
            Err(GrantError::BadExpiry)
        );
        assert_eq!(
            at(r#"{"access_token":"a","expires_in":-5}"#),
            Err(GrantError::BadExpiry)
        );
    }

    #[test]
    fn numeric_strings_read_as_cores_f64_parser_reads_them() {
        let same = |s: &str| {
            // Bit for bit (so `-0` is `-0`), any NaN as one.
            let bits = |f: f64| if f.is_nan() { None } else { Some(f.to_bits()) };
            let core = s.trim().parse::<f64>().ok().map(bits);
            assert_eq!(decimal_string(s).map(bits), core, "{s:?}");
        };
        for s in [
            "60",
            " 60 ",
            "\t60\n",
            "+60",
            "-60",
            "0",
            "-0",
            "+0",
            "00",
            "007",
            "59.9",
            ".5",
            "5.",
            ".",
            "",
            " ",
            "+",
            "-",
            "1e3",
            "1E3",
            "1e+3",
            "1e-3",
            "1e",
            "1e+",
            "e3",
            ".e3",
            "1.5e2",
            "0.000001",
            "28799",
            "1570733606449",
            "1e12",
            "999999999999.9",
            "1e400",
            "-1e400",
            "1e-400",
            "0e999999999999999999999",
            "1e999999999999999999999",
            "inf",
            "-inf",
            "+Infinity",
            "INF",
            "infinity",
            "nan",
            "NaN",
            "-nan",
            "in",
            "infinit",
            "1_000",
            "0x10",
            "1,5",
            "1.2.3",
            "1e5.5",
            "--1",
            "+-1",
            "1 2",
            "١",
            "6０",
            "18446744073709551615",
            "18446744073709551616",
            "9007199254740993",
            "123456789012345",
            "0.1",
            "0.2",
            "0.3",
            "3600.000000000001",
        ] {
            same(s);
        }
        // Every string of up to 15 digits with a `.` somewhere, and exponents within ±22.
        let mut n: u64 = 1;
        while n < 1_000_000_000_000_000 {
            let d = n.to_string();
            for dot in 0..=d.len() {
                same(&format!("{}.{}", &d[..dot], &d[dot..]));
            }
            for e in [-22, -7, -1, 1, 7, 22] {
                same(&format!("{d}e{e}"));
            }
            n = n * 7 + 3;
        }
    }

    #[test]
    fn issued_at_only_ever_shortens_the_life() {
        let body = |issued: u64| {
            format!(r#"{{"access_token":"a","expires_in":"100","issued_at":"{issued}"}}"#)
        };
        let at = |b: String| {
            parse_response(200, b.as_bytes(), NOW)
                .unwrap()
                .expires_at_ms()
        };
        assert_eq!(at(body(NOW - 10_000)), NOW + 90_000);
        assert_eq!(
            at(body(NOW + 10_000)),
            NOW + 100_000,
            "a future issued_at is ignored"
        );
        assert_eq!(
            at(body(NOW - 3_600_000)),
            NOW + 100_000,
            "a far-off clock is ignored"
        );
    }

    #[test]
    fn token_type_is_case_insensitive_and_must_be_bearer() {
        let p = |b: &str| parse_response(200, b.as_bytes(), NOW).map(|_| ());
        assert_eq!(p(r#"{"access_token":"a","token_type":"bearer"}"#), Ok(()));
        assert_eq!(p(r#"{"access_token":"a","token_type":"BEARER"}"#), Ok(()));
        assert_eq!(
            p(r#"{"access_token":"a","token_type":"mac"}"#),
            Err(GrantError::WrongTokenType)
        );
        assert_eq!(
            p(r#"{"access_token":"a","token_type":7}"#),
            Err(GrantError::WrongTokenType)
        );
    }

    #[test]
    fn an_access_token_outside_vschar_is_refused_not_sent_header_less() {
        let p = |t: &str| {
            let body = serde_json::json!({ "access_token": t, "token_type": "Bearer" });
            parse_response(200, body.to_string().as_bytes(), NOW)
                .map(|t| t.access_token().to_string())
        };
        for bad in [
            "a b",
            " ab",
            "ab ",
            "a\tb",
            "a\rb",
            "a\nb",
            "a\u{7f}b",
            "a\u{0}b",
            "a\u{a0}b",
            "aéb",
            "a\u{2028}b",
        ] {
            assert_eq!(p(bad), Err(GrantError::BadAccessToken), "{bad:?}");
        }
        let err = p("a b").unwrap_err();
        assert_eq!(err.code(), "token_response_bad_access_token");
        assert!(
            !err.is_client_misconfigured(),
            "a garbage answer, retried with back-off"
        );
        for good in ["abc", "eyJ.a-b_c.~+/=", "!#$%&'()*,:;<>?@[]^`{|}\"\\"] {
            assert_eq!(p(good).as_deref(), Ok(good), "{good:?}");
        }
    }

    #[test]
    fn garbage_is_named_not_echoed() {
        let p = |s: u16, b: &str| parse_response(s, b.as_bytes(), NOW).map(|_| ());
        assert_eq!(p(200, "<html>"), Err(GrantError::NotJson));
        assert_eq!(p(200, "[]"), Err(GrantError::NotJson));
        assert_eq!(
            p(200, r#"{"token_type":"Bearer"}"#),
            Err(GrantError::NoAccessToken)
        );
        assert_eq!(
            p(200, r#"{"access_token":""}"#),
            Err(GrantError::NoAccessToken)
        );
        assert_eq!(
            p(200, r#"{"access_token":"a\r\nx: y"}"#),
            Err(GrantError::BadAccessToken)
        );
        assert_eq!(
            p(200, r#"{"access_token":7}"#),
            Err(GrantError::NoAccessToken)
        );
        let rejected = p(401, r#"{"error":"invalid_client"}"#).unwrap_err();
        assert!(rejected.is_client_misconfigured());
        assert_eq!(rejected.code(), "token_client_rejected");
        let free_text = p(500, r#"{"error":"Secret s3cr3t leaked here"}"#).unwrap_err();
        assert_eq!(
            free_text,
            GrantError::Status {
                status: 500,
                oauth_error: None
            }
        );
        assert!(!free_text.is_client_misconfigured());
    }
}
