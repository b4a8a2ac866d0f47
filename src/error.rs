//! The gateway's own errors, tagged with where they came from, and the one place where they
//! become HTTP: RFC 9457 problem+json that never carries a token, a secret or a stack.

use http::header::{
    HeaderMap, HeaderName, HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use http::Method;
use serde::Serialize;

use crate::config::setting::ConfigErrors;
use crate::edge::path::PathError;
use crate::identity::customer_id::MissingIdentity;
use crate::identity::identifiers::Ambiguity;
use crate::identity::jwks::KeysUnavailable;
use crate::identity::jwt::JwtError;
use crate::identity::opaque::{IntrospectionUnavailable, OpaqueError};
use crate::token::TokenUnavailable;

pub const REALM: &str = "edge-auth-proxy";

/// Everything the gateway itself may answer instead of the origin.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum GatewayError {
    /// A setting is missing or unusable: the operator must fix wrangler.toml or a secret.
    Config(ConfigErrors),
    /// The request path is refused before routing: it could be read two ways (an encoded
    /// slash, a `;`, double encoding…), so what is matched might not be what the origin serves.
    InvalidPath(PathError),
    /// `ROUTES` has no route for the path: the gateway is never an open proxy.
    NoRoute,
    /// The route exists but not for this method.
    MethodNotAllowed(Vec<Method>),
    /// The request names its caller more than one way: two different identifiers, or an
    /// identifier cookie sent twice (`identifiers`). Refused before anything is verified.
    Ambiguous(Ambiguity),
    /// The customer JWT is missing, malformed or fails a check.
    Jwt(JwtError),
    /// `JWKS_URL`'s key set was never obtained and the configured keys cannot check the token.
    KeysUnavailable(KeysUnavailable),
    /// No access token could be obtained, and none cached is still usable.
    TokenUnavailable(TokenUnavailable),
    /// The origin refused the connection or could not be reached.
    OriginUnreachable,
    /// The origin sent no response head within `ORIGIN_TIMEOUT_MS`.
    OriginTimeout,
    /// Under `ORIGIN_TOKEN_REFUSAL=invalid_token`, the origin refused an access token obtained
    /// after it refused the previous one (or the cache could not offer a new one): the
    /// gateway's credentials are wrong for this origin and an operator must act.
    OriginRefusedToken,
    /// Under `ORIGIN_TOKEN_REFUSAL=invalid_token`, the origin refused the access token and the
    /// request could not be replayed (its body streamed through): the token was dropped, so a
    /// retry carries a new one.
    OriginRefusedUnreplayed,
    /// A value that cannot be sent in a header (e.g. a credential with a line break).
    Internal(&'static str),
    /// The caller's body could not be read (it broke off, or ran past its `content-length`).
    RequestBody,
    /// The opaque customer identifier is missing, malformed or not active (`opaque` routes).
    Opaque(OpaqueError),
    /// The introspection endpoint gave no answer (down, slow, garbage), or is being backed off.
    IntrospectionUnavailable(IntrospectionUnavailable),
    /// The verified identity lacks one of the route's `scopes` (the route's list).
    InsufficientScope(Vec<String>),
    /// The verified identity fails the route's `claims`.
    ClaimsRefused,
    /// `CUSTOMER_ID_HEADER` is set and the verified identity has no `sub` (or `iss`).
    NoCustomerId(MissingIdentity),
    /// Over the route's `rate_limit`: answered here, never forwarded.
    RateLimited,
}

/// `Retry-After` of a 429. A rate-limiting binding does not say when its window ends; its
/// period is 10 or 60 s, and a caller retrying early is simply answered 429 again.
pub const RATE_LIMIT_RETRY_AFTER_SECS: u64 = 10;

/// A problem+json answer, ready for any HTTP response type.
#[derive(Debug)]
pub struct Problem {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    request_id: &'a str,
}

impl GatewayError {
    pub fn status(&self) -> u16 {
        match self {
            Self::Config(_) | Self::Internal(_) => 500,
            Self::NoRoute => 404,
            Self::MethodNotAllowed(_) => 405,
            Self::Jwt(e) if e.is_request_error() => 400,
            Self::Jwt(_) => 401,
            Self::TokenUnavailable(_) | Self::KeysUnavailable(_) => 503,
            Self::OriginRefusedUnreplayed => 503,
            Self::OriginUnreachable | Self::OriginRefusedToken => 502,
            Self::OriginTimeout => 504,
            Self::RequestBody | Self::InvalidPath(_) | Self::Ambiguous(_) => 400,
            Self::Opaque(e) if e.is_request_error() => 400,
            Self::Opaque(_) | Self::NoCustomerId(_) => 401,
            Self::IntrospectionUnavailable(_) => 503,
            Self::InsufficientScope(_) | Self::ClaimsRefused => 403,
            Self::RateLimited => 429,
        }
    }

    /// A stable id for the log line's `outcome`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Config(_) => "config_error",
            Self::NoRoute => "no_route",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Ambiguous(a) => a.code(),
            Self::Jwt(e) => e.code(),
            Self::TokenUnavailable(t) => t.cause.code(),
            Self::KeysUnavailable(k) => k.cause.code(),
            Self::OriginUnreachable => "origin_unreachable",
            Self::OriginTimeout => "origin_timeout",
            Self::OriginRefusedToken => "origin_refused_token",
            Self::OriginRefusedUnreplayed => "origin_refused_token_unreplayed",
            Self::Internal(_) => "internal_error",
            Self::RequestBody => "request_body_unreadable",
            Self::InvalidPath(_) => "invalid_path",
            Self::Opaque(e) => e.code(),
            Self::IntrospectionUnavailable(u) => u.cause.code(),
            Self::InsufficientScope(_) => "insufficient_scope",
            Self::ClaimsRefused => "claims_refused",
            Self::NoCustomerId(m) => m.code(),
            Self::RateLimited => "rate_limited",
        }
    }

    fn slug_and_title(&self) -> (&'static str, &'static str) {
        match self {
            Self::Config(_) => ("configuration", "Gateway configuration error"),
            Self::NoRoute => ("no-route", "Not found"),
            Self::MethodNotAllowed(_) => ("method-not-allowed", "Method not allowed"),
            Self::Jwt(JwtError::Missing) => ("missing-token", "Authentication required"),
            Self::Jwt(e) if e.is_request_error() => ("invalid-request", "Invalid request"),
            Self::Jwt(_) => ("invalid-token", "Invalid token"),
            Self::TokenUnavailable(_) => ("upstream-credentials", "Service unavailable"),
            Self::KeysUnavailable(_) => ("key-set-unavailable", "Service unavailable"),
            Self::OriginUnreachable => ("origin-unreachable", "Bad gateway"),
            Self::OriginTimeout => ("origin-timeout", "Gateway timeout"),
            Self::OriginRefusedToken => ("origin-refused-credentials", "Bad gateway"),
            Self::OriginRefusedUnreplayed => ("origin-refused-credentials", "Service unavailable"),
            Self::Internal(_) => ("internal", "Internal error"),
            Self::RequestBody | Self::InvalidPath(_) | Self::Ambiguous(_) => {
                ("invalid-request", "Invalid request")
            }
            Self::Opaque(OpaqueError::Missing) => ("missing-token", "Authentication required"),
            Self::Opaque(e) if e.is_request_error() => ("invalid-request", "Invalid request"),
            Self::Opaque(_) | Self::NoCustomerId(_) => ("invalid-token", "Invalid token"),
            Self::IntrospectionUnavailable(_) => {
                ("introspection-unavailable", "Service unavailable")
            }
            Self::InsufficientScope(_) => ("insufficient-scope", "Forbidden"),
            Self::ClaimsRefused => ("claims-refused", "Forbidden"),
            Self::RateLimited => ("rate-limited", "Too many requests"),
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::Config(problems) => config_detail(problems),
            Self::NoRoute => "No route is configured for this path.".into(),
            Self::MethodNotAllowed(_) => "This route does not accept this method.".into(),
            Self::Jwt(JwtError::Missing) => {
                "A customer JWT is required: send customer-auth: JWT <token> or Authorization: Bearer <token>.".into()
            }
            Self::Jwt(e) => format!("{}.", e.description()),
            Self::Ambiguous(a) => a.detail(),
            Self::TokenUnavailable(_) => {
                "The gateway could not obtain credentials for the origin; retry later.".into()
            }
            Self::KeysUnavailable(_) => {
                "The gateway could not obtain the keys that check the customer JWT; retry later.".into()
            }
            Self::OriginUnreachable => "The origin could not be reached.".into(),
            Self::OriginTimeout => "The origin did not answer in time.".into(),
            // Never the origin's challenge: it is about the gateway's token, not the caller's.
            Self::OriginRefusedToken => {
                "The origin refused the gateway's own credentials.".into()
            }
            Self::OriginRefusedUnreplayed => {
                "The origin refused the gateway's own credentials; they have been replaced, retry the request.".into()
            }
            Self::Internal(what) => format!("The gateway could not build the origin request ({what})."),
            Self::RequestBody => "The request body could not be read.".into(),
            Self::InvalidPath(e) => format!("The request path contains {}.", e.description()),
            Self::Opaque(OpaqueError::Missing) => {
                "A customer identifier is required: send customer-auth: <scheme> <id>, Authorization: Bearer <id> or the session cookie.".into()
            }
            Self::Opaque(e) => format!("{}.", e.description()),
            Self::IntrospectionUnavailable(_) => {
                "The gateway could not check the customer identifier; retry later.".into()
            }
            Self::ClaimsRefused => {
                "The customer's credentials do not meet this route's claim requirements.".into()
            }
            Self::InsufficientScope(_) => {
                "The customer's credentials do not grant the scopes this route requires.".into()
            }
            Self::NoCustomerId(m) => format!("{}.", m.description()),
            Self::RateLimited => "Too many requests for this route; retry later.".into(),
        }
    }

    /// The response for this error. The only error-to-HTTP mapping in the gateway.
    pub fn to_problem(&self, request_id: &str) -> Problem {
        let status = self.status();
        let (slug, title) = self.slug_and_title();
        let body = ProblemBody {
            kind: format!("urn:edge-auth-proxy:problem:{slug}"),
            title,
            status,
            detail: self.detail(),
            request_id,
        };
        let mut headers = HeaderMap::new();
        put(
            &mut headers,
            CONTENT_TYPE,
            "application/problem+json".into(),
        );
        put(&mut headers, CACHE_CONTROL, "no-store".into());
        const REQUEST_ID: HeaderName = HeaderName::from_static(crate::edge::headers::REQUEST_ID);
        put(&mut headers, REQUEST_ID, request_id.into());
        let challenge = |value: String| Some((WWW_AUTHENTICATE, value));
        let retry_after = |secs: u64| Some((RETRY_AFTER, secs.to_string()));
        let extra = match self {
            Self::Jwt(JwtError::Missing) | Self::Opaque(OpaqueError::Missing) => {
                challenge(format!("Bearer realm=\"{REALM}\""))
            }
            Self::Jwt(e) => challenge(bearer_error(e.is_request_error(), e.description())),
            Self::Opaque(e) => challenge(bearer_error(e.is_request_error(), e.description())),
            Self::Ambiguous(a) => challenge(bearer_error(true, a.description())),
            Self::NoCustomerId(m) => challenge(format!(
                "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{}\"",
                m.description()
            )),
            // RFC 6750 §3.1; the scopes were checked at configuration time to be scope tokens,
            // which cannot break out of the quoted string.
            Self::InsufficientScope(scopes) => challenge(format!(
                "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{}\"",
                scopes.join(" ")
            )),
            Self::IntrospectionUnavailable(u) => retry_after(u.retry_after_secs),
            Self::MethodNotAllowed(allow) => {
                let list: Vec<&str> = allow.iter().map(Method::as_str).collect();
                Some((ALLOW, list.join(", ")))
            }
            Self::TokenUnavailable(t) => retry_after(t.retry_after_secs),
            Self::KeysUnavailable(k) => retry_after(k.retry_after_secs),
            // The refused token is gone from the cache: the next attempt gets another one.
            Self::OriginRefusedUnreplayed => retry_after(1),
            Self::RateLimited => retry_after(RATE_LIMIT_RETRY_AFTER_SECS),
            _ => None,
        };
        if let Some((name, value)) = extra {
            put(&mut headers, name, value);
        }
        Problem {
            status,
            headers,
            // Serialising plain strings and numbers cannot fail.
            body: serde_json::to_vec(&body).unwrap_or_default(),
        }
    }
}

/// Sets `name` to `value` when it is a valid header value (all of them are: fixed text, ids,
/// numbers). One call site per header rather than a closure inlined at each (issue 13: bytes).
fn put(headers: &mut HeaderMap, name: HeaderName, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(name, v);
    }
}

/// The 500's `detail`: every problem, each naming its setting (never a value).
fn config_detail(problems: &ConfigErrors) -> String {
    let list: Vec<String> = problems.iter().map(|e| format!("setting {e}")).collect();
    match list.len() {
        0 => "The gateway is misconfigured.".into(),
        1 => format!("The gateway is misconfigured: {}.", list[0]),
        n => format!(
            "The gateway is misconfigured ({n} problems): {}.",
            list.join("; ")
        ),
    }
}

/// The RFC 6750 §3.1 challenge for a refused credential: `invalid_request` when the request
/// itself is malformed, else `invalid_token`; `description` is fixed text, never the credential.
fn bearer_error(request_error: bool, description: &str) -> String {
    let code = if request_error {
        "invalid_request"
    } else {
        "invalid_token"
    };
    format!("Bearer realm=\"{REALM}\", error=\"{code}\", error_description=\"{description}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::setting::ConfigError;
    use crate::token::GrantError;

    fn json(p: &Problem) -> serde_json::Value {
        serde_json::from_slice(&p.body).unwrap()
    }

    #[test]
    fn a_missing_token_gets_a_bare_bearer_challenge() {
        let p = GatewayError::Jwt(JwtError::Missing).to_problem("r1");
        assert_eq!(p.status, 401);
        assert_eq!(
            p.headers["www-authenticate"],
            "Bearer realm=\"edge-auth-proxy\""
        );
        assert_eq!(p.headers["content-type"], "application/problem+json");
        let body = json(&p);
        assert_eq!(body["status"], 401);
        assert_eq!(body["request_id"], "r1");
        for field in ["type", "title", "detail"] {
            assert!(body[field].is_string(), "{field}");
        }
    }

    #[test]
    fn an_invalid_token_says_invalid_token() {
        let p = GatewayError::Jwt(JwtError::Expired).to_problem("r");
        assert_eq!(p.status, 401);
        let challenge = p.headers["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with(
            "Bearer realm=\"edge-auth-proxy\", error=\"invalid_token\", error_description=\""
        ));
    }

    #[test]
    fn statuses_follow_the_contract() {
        let unavailable = TokenUnavailable {
            retry_after_secs: 7,
            cause: GrantError::Unreachable,
            called_endpoint: true,
            coordinator: None,
        };
        let cases = [
            (GatewayError::NoRoute, 404),
            (GatewayError::InvalidPath(PathError::EncodedSlash), 400),
            (GatewayError::MethodNotAllowed(vec![Method::POST]), 405),
            (
                GatewayError::Config(ConfigError::missing("API_KEY").into()),
                500,
            ),
            (GatewayError::TokenUnavailable(unavailable), 503),
            (GatewayError::OriginUnreachable, 502),
            (GatewayError::OriginTimeout, 504),
            (GatewayError::OriginRefusedToken, 502),
            (GatewayError::OriginRefusedUnreplayed, 503),
            (GatewayError::RateLimited, 429),
        ];
        for (err, status) in cases {
            let p = err.to_problem("r");
            assert_eq!(p.status, status, "{err:?}");
            assert_eq!(json(&p)["status"], status);
        }
    }

    #[test]
    fn extras_per_status() {
        let p = GatewayError::MethodNotAllowed(vec![Method::POST, Method::GET]).to_problem("r");
        assert_eq!(p.headers["allow"], "POST, GET");
        let p = GatewayError::TokenUnavailable(TokenUnavailable {
            retry_after_secs: 7,
            cause: GrantError::Timeout,
            called_endpoint: false,
            coordinator: None,
        })
        .to_problem("r");
        assert_eq!(p.headers["retry-after"], "7");
        let p = GatewayError::OriginRefusedUnreplayed.to_problem("r");
        assert_eq!(p.headers["retry-after"], "1");
        for err in [
            GatewayError::OriginRefusedToken,
            GatewayError::OriginRefusedUnreplayed,
        ] {
            let p = err.to_problem("r");
            assert!(p.headers.get("www-authenticate").is_none(), "{err:?}");
            assert_eq!(
                json(&p)["type"],
                "urn:edge-auth-proxy:problem:origin-refused-credentials"
            );
        }
    }

    #[test]
    fn a_refused_path_is_an_invalid_request_naming_the_class() {
        let p = GatewayError::InvalidPath(PathError::EncodedSlash).to_problem("r");
        assert_eq!(p.status, 400);
        assert_eq!(p.headers["content-type"], "application/problem+json");
        assert!(!p.headers.contains_key("www-authenticate"));
        let body = json(&p);
        assert_eq!(body["type"], "urn:edge-auth-proxy:problem:invalid-request");
        assert_eq!(body["title"], "Invalid request");
        assert_eq!(
            body["detail"],
            "The request path contains an encoded slash (%2F)."
        );
        assert_eq!(
            GatewayError::InvalidPath(PathError::Semicolon).outcome(),
            "invalid_path"
        );
    }

    #[test]
    fn a_missing_scope_gets_an_insufficient_scope_challenge() {
        let p = GatewayError::InsufficientScope(vec!["profile:read".into(), "openid".into()])
            .to_problem("r");
        assert_eq!(p.status, 403);
        assert_eq!(
            p.headers["www-authenticate"],
            "Bearer realm=\"edge-auth-proxy\", error=\"insufficient_scope\", scope=\"profile:read openid\""
        );
        assert_eq!(p.headers["content-type"], "application/problem+json");
    }

    #[test]
    fn opaque_identifier_answers() {
        let missing = GatewayError::Opaque(OpaqueError::Missing).to_problem("r");
        assert_eq!(missing.status, 401);
        assert_eq!(
            missing.headers["www-authenticate"],
            "Bearer realm=\"edge-auth-proxy\""
        );
        let inactive = GatewayError::Opaque(OpaqueError::Inactive).to_problem("r");
        assert_eq!(inactive.status, 401);
        assert!(inactive.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\""));
        let down = GatewayError::IntrospectionUnavailable(IntrospectionUnavailable {
            retry_after_secs: 4,
            cause: crate::identity::opaque::IntrospectionError::Timeout,
            called_endpoint: true,
        })
        .to_problem("r");
        assert_eq!(down.status, 503);
        assert_eq!(down.headers["retry-after"], "4");
        let no_sub = GatewayError::NoCustomerId(MissingIdentity::Sub).to_problem("r");
        assert_eq!(no_sub.status, 401);
        assert!(json(&no_sub)["detail"]
            .as_str()
            .unwrap()
            .contains("no sub claim"));
    }

    #[test]
    fn an_ambiguous_request_is_an_invalid_request_saying_where() {
        use crate::identity::identifiers::Source;
        for (a, code) in [
            (Ambiguity::DuplicateJwtCookie, "duplicate_jwt_cookie"),
            (
                Ambiguity::DuplicateSessionCookie,
                "duplicate_session_cookie",
            ),
            (
                Ambiguity::TwoIdentifiers(Source::CustomerAuth, Source::JwtCookie),
                "two_identifiers",
            ),
        ] {
            let err = GatewayError::Ambiguous(a);
            assert_eq!(err.outcome(), code);
            let p = err.to_problem("r");
            assert_eq!(p.status, 400);
            assert_eq!(p.headers["content-type"], "application/problem+json");
            assert!(p.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer realm=\"edge-auth-proxy\", error=\"invalid_request\""));
            let body = json(&p);
            assert_eq!(body["type"], "urn:edge-auth-proxy:problem:invalid-request");
            assert_eq!(body["detail"], a.detail());
        }
    }

    #[test]
    fn config_errors_name_the_setting() {
        let p = GatewayError::Config(ConfigError::missing("CLIENT_SECRET").into()).to_problem("r");
        assert_eq!(
            json(&p)["detail"],
            "The gateway is misconfigured: setting CLIENT_SECRET is required but not set."
        );
        let two = ConfigErrors::from(vec![
            ConfigError::missing("CLIENT_SECRET"),
            ConfigError::at("ROUTES", "[1].auth", "must be one of jwt, public"),
        ]);
        let p = GatewayError::Config(two).to_problem("r");
        assert_eq!(
            json(&p)["detail"],
            "The gateway is misconfigured (2 problems): setting CLIENT_SECRET is required but not set; setting ROUTES[1].auth: must be one of jwt, public."
        );
    }
}
