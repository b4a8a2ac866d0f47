//! The gateway's own errors, tagged with where they came from, and the one place where they
//! become HTTP: RFC 9457 problem+json that never carries a token, a secret or a stack. Each
//! error is described once, in `describe`: its status, its log outcome, its problem type,
//! title and detail, and the one header that goes with it (a challenge, `Retry-After`,
//! `Allow`).

use http::header::{
    HeaderMap, HeaderName, HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use http::Method;
use serde::Serialize;

use crate::config::setting::ConfigErrors;
use crate::edge::path::PathError;
use crate::identity::jwt::JwtError;
use crate::identity::opaque::OpaqueError;
use crate::identity::sender::SenderError;
use crate::identity::IdentityError;
use crate::proxy::route::RouteError;
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
    /// The authenticate phase refused the caller (`identity::IdentityError` says why).
    Identity(IdentityError),
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
    /// Over the route's `rate_limit`: answered here, never forwarded.
    RateLimited,
}

impl From<RouteError> for GatewayError {
    fn from(e: RouteError) -> Self {
        match e {
            RouteError::InvalidPath(e) => Self::InvalidPath(e),
            RouteError::NoRoute => Self::NoRoute,
            RouteError::MethodNotAllowed { allow } => Self::MethodNotAllowed(allow),
        }
    }
}

impl From<IdentityError> for GatewayError {
    fn from(e: IdentityError) -> Self {
        Self::Identity(e)
    }
}

/// `Retry-After` of a 429. A rate-limiting binding does not say when its window ends; its
/// period is 10 or 60 s, and a caller retrying early is simply answered 429 again.
pub const RATE_LIMIT_RETRY_AFTER_SECS: u64 = 10;

/// A problem+json answer, ready for any HTTP response type.
#[derive(Debug)]
pub struct Problem {
    pub status: u16,
    /// The log line's `outcome` for it.
    pub outcome: &'static str,
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

/// One error as the caller and the log line see it.
struct Described {
    status: u16,
    /// The log line's `outcome`: a stable id.
    outcome: &'static str,
    /// The last part of the problem `type` (`urn:edge-auth-proxy:problem:<slug>`).
    slug: &'static str,
    title: &'static str,
    detail: String,
    /// The header that goes with it: a challenge, `Retry-After` or `Allow`.
    extra: Option<(HeaderName, String)>,
}

const INVALID_REQUEST: (&str, &str) = ("invalid-request", "Invalid request");
const MISSING_TOKEN: (&str, &str) = ("missing-token", "Authentication required");
const INVALID_TOKEN: (&str, &str) = ("invalid-token", "Invalid token");
const UNAVAILABLE: &str = "Service unavailable";

impl GatewayError {
    pub fn status(&self) -> u16 {
        self.describe().status
    }

    /// A stable id for the log line's `outcome`.
    pub fn outcome(&self) -> &'static str {
        self.describe().outcome
    }

    /// Every error, once: the only description of what it is on the wire.
    fn describe(&self) -> Described {
        let d = |status, outcome, (slug, title): (&'static str, &'static str), detail: String| {
            Described {
                status,
                outcome,
                slug,
                title,
                detail,
                extra: None,
            }
        };
        let retry_after = |secs: u64| Some((RETRY_AFTER, secs.to_string()));
        match self {
            Self::Config(problems) => d(
                500,
                "config_error",
                ("configuration", "Gateway configuration error"),
                config_detail(problems),
            ),
            Self::InvalidPath(e) => d(
                400,
                "invalid_path",
                INVALID_REQUEST,
                format!("The request path contains {}.", e.description()),
            ),
            Self::NoRoute => d(
                404,
                "no_route",
                ("no-route", "Not found"),
                "No route is configured for this path.".into(),
            ),
            Self::MethodNotAllowed(allow) => {
                let list: Vec<&str> = allow.iter().map(Method::as_str).collect();
                Described {
                    extra: Some((ALLOW, list.join(", "))),
                    ..d(
                        405,
                        "method_not_allowed",
                        ("method-not-allowed", "Method not allowed"),
                        "This route does not accept this method.".into(),
                    )
                }
            }
            Self::Identity(e) => describe_identity(e),
            Self::TokenUnavailable(t) => Described {
                extra: retry_after(t.retry_after_secs),
                ..d(
                    503,
                    t.cause.code(),
                    ("upstream-credentials", UNAVAILABLE),
                    "The gateway could not obtain credentials for the origin; retry later.".into(),
                )
            },
            Self::OriginUnreachable => d(
                502,
                "origin_unreachable",
                ("origin-unreachable", "Bad gateway"),
                "The origin could not be reached.".into(),
            ),
            Self::OriginTimeout => d(
                504,
                "origin_timeout",
                ("origin-timeout", "Gateway timeout"),
                "The origin did not answer in time.".into(),
            ),
            // Never the origin's challenge: it is about the gateway's token, not the caller's.
            Self::OriginRefusedToken => d(
                502,
                "origin_refused_token",
                ("origin-refused-credentials", "Bad gateway"),
                "The origin refused the gateway's own credentials.".into(),
            ),
            // The refused token is gone from the cache: the next attempt gets another one.
            Self::OriginRefusedUnreplayed => Described {
                extra: retry_after(1),
                ..d(
                    503,
                    "origin_refused_token_unreplayed",
                    ("origin-refused-credentials", UNAVAILABLE),
                    "The origin refused the gateway's own credentials; they have been replaced, retry the request.".into(),
                )
            },
            Self::Internal(what) => internal(what),
            Self::RequestBody => d(
                400,
                "request_body_unreadable",
                INVALID_REQUEST,
                "The request body could not be read.".into(),
            ),
            Self::RateLimited => Described {
                extra: retry_after(RATE_LIMIT_RETRY_AFTER_SECS),
                ..d(
                    429,
                    "rate_limited",
                    ("rate-limited", "Too many requests"),
                    "Too many requests for this route; retry later.".into(),
                )
            },
        }
    }

    /// The response for this error. The only error-to-HTTP mapping in the gateway.
    pub fn to_problem(&self, request_id: &str) -> Problem {
        let Described {
            status,
            outcome,
            slug,
            title,
            detail,
            extra,
        } = self.describe();
        let body = ProblemBody {
            kind: format!("urn:edge-auth-proxy:problem:{slug}"),
            title,
            status,
            detail,
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
        if let Some((name, value)) = extra {
            put(&mut headers, name, value);
        }
        Problem {
            status,
            outcome,
            headers,
            // Serialising plain strings and numbers cannot fail.
            body: serde_json::to_vec(&body).unwrap_or_default(),
        }
    }
}

/// The authenticate phase's refusals, each once (a part of `GatewayError::describe`).
fn describe_identity(e: &IdentityError) -> Described {
    let outcome = e.code();
    let d =
        |status, (slug, title): (&'static str, &'static str), detail: String, extra| Described {
            status,
            outcome,
            slug,
            title,
            detail,
            extra,
        };
    let challenge = |value: String| Some((WWW_AUTHENTICATE, value));
    let retry_after = |secs: u64| Some((RETRY_AFTER, secs.to_string()));
    let bare = || challenge(format!("Bearer realm=\"{REALM}\""));
    match e {
        IdentityError::Ambiguous(a) => d(
            400,
            INVALID_REQUEST,
            a.detail(),
            challenge(bearer_error(true, a.description())),
        ),
        IdentityError::Jwt(JwtError::Missing) => d(
            401,
            MISSING_TOKEN,
            "A customer JWT is required: send customer-auth: JWT <token> or Authorization: Bearer <token>.".into(),
            bare(),
        ),
        IdentityError::Jwt(e) if e.is_request_error() => d(
            400,
            INVALID_REQUEST,
            format!("{}.", e.description()),
            challenge(bearer_error(true, e.description())),
        ),
        IdentityError::Jwt(e) => d(
            401,
            INVALID_TOKEN,
            format!("{}.", e.description()),
            challenge(bearer_error(false, e.description())),
        ),
        IdentityError::KeysUnavailable(k) => d(
            503,
            ("key-set-unavailable", UNAVAILABLE),
            "The gateway could not obtain the keys that check the customer JWT; retry later.".into(),
            retry_after(k.retry_after_secs),
        ),
        IdentityError::Opaque(OpaqueError::Missing) => d(
            401,
            MISSING_TOKEN,
            "A customer identifier is required: send customer-auth: <scheme> <id>, Authorization: Bearer <id> or the session cookie.".into(),
            bare(),
        ),
        IdentityError::Opaque(e) if e.is_request_error() => d(
            400,
            INVALID_REQUEST,
            format!("{}.", e.description()),
            challenge(bearer_error(true, e.description())),
        ),
        IdentityError::Opaque(e) => d(
            401,
            INVALID_TOKEN,
            format!("{}.", e.description()),
            challenge(bearer_error(false, e.description())),
        ),
        IdentityError::IntrospectionUnavailable(u) => d(
            503,
            ("introspection-unavailable", UNAVAILABLE),
            "The gateway could not check the customer identifier; retry later.".into(),
            retry_after(u.retry_after_secs),
        ),
        // RFC 6750 §3.1; the scopes were checked at configuration time to be scope tokens,
        // which cannot break out of the quoted string.
        IdentityError::InsufficientScope(scopes) => d(
            403,
            ("insufficient-scope", "Forbidden"),
            "The customer's credentials do not grant the scopes this route requires.".into(),
            challenge(format!(
                "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{}\"",
                scopes.join(" ")
            )),
        ),
        IdentityError::ClaimsRefused => d(
            403,
            ("claims-refused", "Forbidden"),
            "The customer's credentials do not meet this route's claim requirements.".into(),
            None,
        ),
        IdentityError::BindingMismatch(refusal) => d(
            403,
            ("binding-mismatch", "Forbidden"),
            format!(
                "The request names an object this route binds to the customer's identity, and {}.",
                refusal.description()
            ),
            None,
        ),
        IdentityError::ClientCertificate(refusal) => d(
            403,
            ("client-certificate-required", "Forbidden"),
            format!(
                "This route requires a client certificate verified by the edge and allowed for it: {}.",
                refusal.description()
            ),
            None,
        ),
        IdentityError::Sender(SenderError::ReplayGuardUnavailable) => d(
            503,
            ("dpop-replay-guard-unavailable", UNAVAILABLE),
            "The gateway could not check that the DPoP proof is fresh; retry with a new proof."
                .into(),
            retry_after(1),
        ),
        // RFC 9449 §7.1: the DPoP scheme's challenge; a proof's failure is
        // `invalid_dpop_proof`, a token sent with the wrong scheme `invalid_token`.
        IdentityError::Sender(e) if e.is_dpop() => d(
            401,
            if matches!(e, SenderError::Proof(_)) {
                ("invalid-dpop-proof", "Invalid DPoP proof")
            } else {
                INVALID_TOKEN
            },
            format!("{}.", e.description()),
            challenge(format!(
                "DPoP error=\"{}\", error_description=\"{}\"",
                if matches!(e, SenderError::Proof(_)) {
                    "invalid_dpop_proof"
                } else {
                    "invalid_token"
                },
                e.description()
            )),
        ),
        IdentityError::Sender(e) => d(
            401,
            INVALID_TOKEN,
            format!("{}.", e.description()),
            challenge(bearer_error(false, e.description())),
        ),
        IdentityError::NoCustomerId(m) => d(
            401,
            INVALID_TOKEN,
            format!("{}.", m.description()),
            challenge(bearer_error(false, m.description())),
        ),
        IdentityError::Revoked(r) => d(
            401,
            INVALID_TOKEN,
            format!("{}.", r.description()),
            challenge(bearer_error(false, r.description())),
        ),
        IdentityError::RevocationUnavailable => d(
            503,
            ("revocation-list-unavailable", UNAVAILABLE),
            "The gateway could not check whether the customer JWT was revoked; retry later."
                .into(),
            retry_after(1),
        ),
        IdentityError::Internal(what) => internal(what),
    }
}

fn internal(what: &str) -> Described {
    Described {
        status: 500,
        outcome: "internal_error",
        slug: "internal",
        title: "Internal error",
        detail: format!("The gateway could not build the origin request ({what})."),
        extra: None,
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
    use crate::identity::customer_id::MissingIdentity;
    use crate::identity::identifiers::Ambiguity;
    use crate::identity::opaque::IntrospectionUnavailable;
    use crate::token::GrantError;

    fn json(p: &Problem) -> serde_json::Value {
        serde_json::from_slice(&p.body).unwrap()
    }

    #[test]
    fn a_missing_token_gets_a_bare_bearer_challenge() {
        let p = GatewayError::Identity(IdentityError::Jwt(JwtError::Missing)).to_problem("r1");
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
        let p = GatewayError::Identity(IdentityError::Jwt(JwtError::Expired)).to_problem("r");
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
        let p = GatewayError::Identity(IdentityError::InsufficientScope(vec![
            "profile:read".into(),
            "openid".into(),
        ]))
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
        let missing =
            GatewayError::Identity(IdentityError::Opaque(OpaqueError::Missing)).to_problem("r");
        assert_eq!(missing.status, 401);
        assert_eq!(
            missing.headers["www-authenticate"],
            "Bearer realm=\"edge-auth-proxy\""
        );
        let inactive =
            GatewayError::Identity(IdentityError::Opaque(OpaqueError::Inactive)).to_problem("r");
        assert_eq!(inactive.status, 401);
        assert!(inactive.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\""));
        let down = GatewayError::Identity(IdentityError::IntrospectionUnavailable(
            IntrospectionUnavailable {
                retry_after_secs: 4,
                cause: crate::identity::opaque::IntrospectionError::Timeout,
                called_endpoint: true,
            },
        ))
        .to_problem("r");
        assert_eq!(down.status, 503);
        assert_eq!(down.headers["retry-after"], "4");
        let no_sub = GatewayError::Identity(IdentityError::NoCustomerId(MissingIdentity::Sub))
            .to_problem("r");
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
            let err = GatewayError::Identity(IdentityError::Ambiguous(a));
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
