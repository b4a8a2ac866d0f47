//! The edge rules of "no ambiguity about who is calling", natively, as an attacker's checklist:
//! `Connection` never removes a field the gateway sets (every spelling, list position and
//! repetition, on every kind of route, and on the way back); identity headers (every route's
//! `claims_to_headers` and `CUSTOMER_ID_HEADER`) are removed from every request on every route;
//! a CORS preflight is an `OPTIONS` without a body, and is forwarded without cookies or
//! credentials; the log names a route's prefix as configured.

mod common;

use common::*;

use std::collections::HashMap;

use common::{FakeHttp, Seen};
use edge_auth_proxy::io::Body;
use edge_auth_proxy::io::GatewayResponse;
use edge_auth_proxy::proxy::log::RequestLog;
use edge_auth_proxy::proxy::Gateway;
use futures::executor::block_on;
use http::{HeaderMap, Method};
use serde_json::{json, Value};

const SESSION: &str = "sess-0123456789";

/// One route of each kind; two of them map claims to headers, and the customer id is on.
const ROUTES: &str = r#"[
  { "prefix": "/public/", "auth": "public", "cors_preflight": "forward" },
  { "prefix": "/account/", "auth": "jwt", "cors_preflight": "forward",
    "claims_to_headers": { "x-user-email": "email" } },
  { "prefix": "/optional", "auth": "optional" },
  { "prefix": "/report", "auth": "report" },
  { "prefix": "/session/", "auth": "opaque", "claims_to_headers": { "X-Tenant-Id": "tenant" } },
  { "prefix": "/other", "auth": "jwt" },
  { "prefix": "/", "auth": "public" }
]"#;

type Headers<'a> = Vec<(&'a str, &'a str)>;

fn gateway() -> Gateway {
    let vars: HashMap<&str, &str> = [
        ("ORIGIN_URL", "https://origin.example"),
        ("TOKEN_URL", "https://idp.example/oauth/access_token"),
        ("CLIENT_ID", "client-1"),
        ("CLIENT_SECRET", "client-secret-value"),
        ("API_KEY", API_KEY),
        ("JWT_ALGORITHMS", "HS256"),
        ("JWT_HMAC_SECRET", HMAC_SECRET),
        ("JWT_ISSUER", ISSUER),
        ("ROUTES", ROUTES),
        ("INTROSPECTION_URL", INTROSPECT),
        ("SESSION_COOKIE", "sid"),
        ("CUSTOMER_ID_HEADER", "X-Customer-Id"),
        (
            "CUSTOMER_ID_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        ),
    ]
    .into_iter()
    .collect();
    let get = |n: &str| vars.get(n).map(|v| v.to_string());
    Gateway::new(&get)
}

/// The origin answers with `origin_headers`; the introspection endpoint knows `SESSION`.
fn services(origin_headers: Vec<(&'static str, String)>) -> Svc {
    let http = FakeHttp::default();
    http.on("https://idp.example/oauth/", |_| {
        let body = r#"{"token_type":"Bearer","access_token":"at-1","expires_in":3600}"#;
        Ok((200, vec![], body.as_bytes().to_vec()))
    });
    http.on(INTROSPECT, |seen| {
        let token = form_urlencoded::parse(&seen.body)
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned());
        let answer = if token.as_deref() == Some(SESSION) {
            json!({"active": true, "iss": ISSUER, "sub": "cust-7", "tenant": "acme",
                   "exp": NOW + 600})
        } else {
            json!({"active": false})
        };
        Ok((200, vec![], answer.to_string().into_bytes()))
    });
    http.on(ORIGIN, move |_| {
        Ok((200, origin_headers.clone(), b"{}".to_vec()))
    });
    common::services(http)
}

fn customer_jwt() -> String {
    let claims = json!({"iss": ISSUER, "sub": "cust-42", "email": "alice@example.com",
                        "exp": NOW + 600});
    jwt(claims)
}

fn send(
    gw: &Gateway,
    svc: &Svc,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Body<Vec<u8>>,
) -> (GatewayResponse<Vec<u8>>, RequestLog) {
    block_on(gw.handle(svc, request(method, path, headers, body)))
}

fn last_origin_call(svc: &Svc) -> Seen {
    svc.http
        .calls_to(ORIGIN)
        .pop()
        .expect("the origin was called")
}

fn values<'a>(h: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    h.get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

// ------------------------------------------------------------------------------------------
// Connection never removes what the gateway sets

/// Every way a caller can list a field in `Connection`: case, list position, whitespace, empty
/// list members, repeated `Connection` lines, the underscore spelling.
fn connection_variants(name: &str) -> Vec<Vec<String>> {
    let upper = name.to_ascii_uppercase();
    let title: String = name
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-");
    vec![
        vec![name.to_string()],
        vec![upper.clone()],
        vec![title.clone()],
        vec![format!("keep-alive, {title}")],
        vec![format!("close,{name}")],
        vec![format!("x-a, {upper} ,x-b")],
        vec![format!(",,{name},")],
        vec![format!("  {name}\t")],
        vec!["keep-alive".into(), title],
        vec![name.to_string(), "close".into()],
        vec![name.replace('-', "_")],
    ]
}

/// The fields the gateway sets on the way to the origin.
const GATEWAY_FIELDS: [&str; 6] = [
    "authorization",
    "customer-auth",
    "api-key",
    "x-request-id",
    "x-customer-id",
    "x-user-email",
];

/// What the origin must receive whatever `Connection` says, per kind of request.
struct Case {
    what: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    customer_auth: Option<String>,
    /// Whether the customer id and the route's claim header are set.
    identity: bool,
    claim_header: Option<(&'static str, &'static str)>,
}

fn cases(jwt: &str) -> Vec<Case> {
    vec![
        Case {
            what: "jwt route, customer-auth: JWT (the value the gateway would set itself)",
            path: "/account/x",
            headers: vec![("customer-auth", format!("JWT {jwt}"))],
            customer_auth: Some(format!("JWT {jwt}")),
            identity: true,
            claim_header: Some(("x-user-email", "alice@example.com")),
        },
        Case {
            what: "jwt route, Authorization: Bearer",
            path: "/account/x",
            headers: vec![("authorization", format!("Bearer {jwt}"))],
            customer_auth: Some(format!("JWT {jwt}")),
            identity: true,
            claim_header: Some(("x-user-email", "alice@example.com")),
        },
        Case {
            what: "optional route with a JWT",
            path: "/optional/x",
            headers: vec![("customer-auth", format!("JWT {jwt}"))],
            customer_auth: Some(format!("JWT {jwt}")),
            identity: true,
            claim_header: None,
        },
        Case {
            what: "report route with a JWT",
            path: "/report/x",
            headers: vec![("customer-auth", format!("JWT {jwt}"))],
            customer_auth: Some(format!("JWT {jwt}")),
            identity: true,
            claim_header: None,
        },
        Case {
            what: "opaque route, session cookie",
            path: "/session/x",
            headers: vec![("cookie", format!("sid={SESSION}"))],
            customer_auth: Some(format!("Cookie {SESSION}")),
            identity: true,
            claim_header: Some(("x-tenant-id", "acme")),
        },
        Case {
            what: "opaque route, customer-auth: Session",
            path: "/session/x",
            headers: vec![("customer-auth", format!("Session {SESSION}"))],
            customer_auth: Some(format!("Session {SESSION}")),
            identity: true,
            claim_header: Some(("x-tenant-id", "acme")),
        },
        Case {
            what: "public route",
            path: "/public/x",
            headers: vec![],
            customer_auth: None,
            identity: false,
            claim_header: None,
        },
    ]
}

#[test]
fn connection_never_removes_a_field_the_gateway_sets() {
    let gw = gateway();
    let svc = services(vec![]);
    let jwt = customer_jwt();
    let mut checked = 0;
    for case in cases(&jwt) {
        let mut listed: Vec<String> = GATEWAY_FIELDS.iter().map(|s| s.to_string()).collect();
        listed.push(GATEWAY_FIELDS.join(", "));
        for field in listed {
            for connection in connection_variants(&field) {
                let mut headers: Vec<(&str, &str)> =
                    case.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                headers.extend(connection.iter().map(|c| ("connection", c.as_str())));
                headers.push(("x-request-id", "rid-connection-1"));
                let (resp, log) = send(&gw, &svc, Method::GET, case.path, &headers, Body::Empty);
                let at = format!("{}: Connection {connection:?}", case.what);
                assert_eq!(resp.status, 200, "{at}: {}", log.outcome);
                let h = last_origin_call(&svc).headers;
                assert_eq!(values(&h, "authorization"), ["Bearer at-1"], "{at}");
                assert_eq!(values(&h, "api-key"), [API_KEY], "{at}");
                assert_eq!(values(&h, "x-request-id"), ["rid-connection-1"], "{at}");
                let customer_auth = values(&h, "customer-auth");
                assert_eq!(
                    customer_auth,
                    case.customer_auth.as_slice(),
                    "{at}: customer-auth"
                );
                assert_eq!(
                    values(&h, "x-customer-id").len(),
                    usize::from(case.identity),
                    "{at}: the customer id"
                );
                if let Some((name, value)) = case.claim_header {
                    assert_eq!(values(&h, name), [value], "{at}");
                }
                assert!(!h.contains_key("connection"), "{at}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 7 * 7 * 11);
}

#[test]
fn connection_still_removes_the_hop_by_hop_fields_the_caller_sent() {
    let gw = gateway();
    let svc = services(vec![]);
    let jwt = customer_jwt();
    let auth = format!("JWT {jwt}");
    let (resp, _) = send(
        &gw,
        &svc,
        Method::GET,
        "/account/x",
        &[
            ("customer-auth", &auth),
            ("connection", "X-Hop, customer-auth"),
            ("connection", "x_other_hop"),
            ("x-hop", "1"),
            ("x_other_hop", "1"),
            ("x-kept", "1"),
        ],
        Body::Empty,
    );
    assert_eq!(resp.status, 200);
    let h = last_origin_call(&svc).headers;
    assert!(!h.contains_key("x-hop") && !h.contains_key("x_other_hop"));
    assert_eq!(values(&h, "x-kept"), ["1"]);
    assert_eq!(values(&h, "customer-auth"), [auth.as_str()]);
}

#[test]
fn the_origins_connection_never_removes_the_request_id_on_the_way_back() {
    for connection in [
        "x-request-id",
        "X-Request-ID",
        "close, X-Request-Id",
        "x_request_id",
    ] {
        let gw = gateway();
        let svc = services(vec![
            ("connection", connection.to_string()),
            ("x-request-id", "origin-chosen".to_string()),
            ("x-origin-hop", "1".to_string()),
        ]);
        let (resp, _) = send(
            &gw,
            &svc,
            Method::GET,
            "/public/x",
            &[("x-request-id", "rid-back-1")],
            Body::Empty,
        );
        assert_eq!(resp.status, 200);
        assert_eq!(
            values(&resp.headers, "x-request-id"),
            ["rid-back-1"],
            "{connection}"
        );
        assert!(!resp.headers.contains_key("connection"));
    }
}

// ------------------------------------------------------------------------------------------
// identity headers belong to the gateway on every route

/// Caller copies of every identity header of the deployment: both routes' claim headers and
/// the customer id, in the spellings CGI-style origins read as the same header.
const FORGED_IDENTITY: [(&str, &str); 9] = [
    ("x-user-email", "victim@example.com"),
    ("X_User_Email", "victim2@example.com"),
    ("x-user_email", "victim3@example.com"),
    ("X-TENANT-ID", "forged-tenant"),
    ("x_tenant_id", "forged-tenant-2"),
    ("x-tenant_id", "forged-tenant-3"),
    ("x-customer-id", "forged-customer"),
    ("X_CUSTOMER_ID", "forged-customer-2"),
    ("x_customer-id", "forged-customer-3"),
];

fn assert_no_forged_identity(h: &HeaderMap, at: &str) {
    for (name, value) in h {
        assert!(
            !FORGED_IDENTITY.iter().any(|(_, forged)| value == forged),
            "{at}: the caller's {name}: {value:?} reached the origin"
        );
    }
}

#[test]
fn identity_headers_are_removed_on_every_route_whatever_the_route_maps() {
    let gw = gateway();
    let svc = services(vec![]);
    let jwt = customer_jwt();
    let with_jwt = format!("JWT {jwt}");
    let with_session = format!("sid={SESSION}");
    let preflight = [
        ("origin", "https://app.example"),
        ("access-control-request-method", "POST"),
    ];
    let requests: Vec<(&str, Method, &str, Headers)> = vec![
        ("public route", Method::GET, "/public/x", vec![]),
        ("public catch-all", Method::POST, "/anything", vec![]),
        (
            "jwt route without claims_to_headers",
            Method::GET,
            "/other/x",
            vec![("customer-auth", &with_jwt)],
        ),
        (
            "jwt route with its own claim header",
            Method::GET,
            "/account/x",
            vec![("customer-auth", &with_jwt)],
        ),
        (
            "optional route, anonymous",
            Method::GET,
            "/optional/x",
            vec![],
        ),
        (
            "report route, failing token",
            Method::GET,
            "/report/x",
            vec![("customer-auth", "JWT a.b.c")],
        ),
        (
            "opaque route",
            Method::GET,
            "/session/x",
            vec![("cookie", &with_session)],
        ),
        (
            "forwarded preflight, jwt route",
            Method::OPTIONS,
            "/account/x",
            preflight.to_vec(),
        ),
        (
            "forwarded preflight, public route",
            Method::OPTIONS,
            "/public/x",
            preflight.to_vec(),
        ),
    ];
    for (what, method, path, mut headers) in requests {
        headers.extend(FORGED_IDENTITY);
        let calls = svc.http.calls_to(ORIGIN).len();
        let (resp, log) = send(&gw, &svc, method.clone(), path, &headers, Body::Empty);
        assert_eq!(resp.status, 200, "{what}: {}", log.outcome);
        assert_eq!(svc.http.calls_to(ORIGIN).len(), calls + 1, "{what}");
        let h = last_origin_call(&svc).headers;
        assert_no_forged_identity(&h, what);
        // The gateway's own values, where it has them.
        if path == "/account/x" && method == Method::GET {
            assert_eq!(values(&h, "x-user-email"), ["alice@example.com"], "{what}");
            assert_eq!(values(&h, "x-customer-id").len(), 1, "{what}");
        }
        if path == "/session/x" {
            assert_eq!(values(&h, "x-tenant-id"), ["acme"], "{what}");
        }
    }
}

// ------------------------------------------------------------------------------------------
// a CORS preflight has no body, and carries no cookie and no credential

const PREFLIGHT: [(&str, &str); 2] = [
    ("origin", "https://app.example"),
    ("access-control-request-method", "DELETE"),
];

#[test]
fn a_preflight_is_forwarded_without_cookies_or_credentials() {
    let gw = gateway();
    let svc = services(vec![]);
    let jwt = format!("Bearer {}", customer_jwt());
    let session = format!("sid={SESSION}; theme=dark");
    // Two ways the platform hands over "no body": none at all, or an empty stream that says
    // `Content-Length: 0`.
    for (declared, body) in [
        (None, Body::Empty),
        (Some("0"), Body::Stream(Vec::new())),
        (Some("0"), Body::Empty),
    ] {
        let mut headers = PREFLIGHT.to_vec();
        headers.extend([
            ("authorization", jwt.as_str()),
            ("cookie", session.as_str()),
            ("Cookie", "second=line"),
            ("api-key", "caller-key"),
            ("customer_auth", "JWT caller"),
            ("access-control-request-headers", "authorization"),
        ]);
        if let Some(n) = declared {
            headers.push(("content-length", n));
        }
        let (resp, log) = send(&gw, &svc, Method::OPTIONS, "/account/x", &headers, body);
        assert_eq!(
            (resp.status, log.cors_preflight),
            (200, Some("forwarded")),
            "{declared:?}"
        );
        let seen = last_origin_call(&svc);
        assert_eq!(seen.method, Method::OPTIONS);
        for gone in [
            "cookie",
            "authorization",
            "customer-auth",
            "customer_auth",
            "api-key",
        ] {
            assert!(
                !seen.headers.contains_key(gone),
                "{gone} reached the origin"
            );
        }
        assert_eq!(values(&seen.headers, "origin"), ["https://app.example"]);
        assert_eq!(
            values(&seen.headers, "access-control-request-headers"),
            ["authorization"]
        );
        assert!(seen.body.is_empty());
    }
    assert!(
        svc.http.calls_to("https://idp.example/oauth/").is_empty(),
        "no access token fetched for a preflight"
    );
}

#[test]
fn an_options_with_a_body_is_an_ordinary_request_that_needs_a_token() {
    let gw = gateway();
    let svc = services(vec![]);
    // Every way a body can be announced or handed over.
    let with_bodies: Vec<(&str, Headers, Body<Vec<u8>>)> = vec![
        (
            "declared length and a stream",
            vec![("content-length", "5")],
            Body::Stream(b"x=1&y".to_vec()),
        ),
        (
            "declared length, bytes",
            vec![("content-length", "3")],
            Body::Bytes(b"a=b".to_vec()),
        ),
        (
            "chunked stream",
            vec![("transfer-encoding", "chunked")],
            Body::Stream(b"hello".to_vec()),
        ),
        (
            "Transfer-Encoding without a stream",
            vec![("transfer-encoding", "chunked")],
            Body::Empty,
        ),
        (
            "a non-zero Content-Length without a stream",
            vec![("content-length", "12")],
            Body::Empty,
        ),
        (
            "a stream the platform gave no length for",
            vec![],
            Body::Stream(b"x".to_vec()),
        ),
        (
            "Content-Length: 0 next to Transfer-Encoding",
            vec![("content-length", "0"), ("transfer-encoding", "chunked")],
            Body::Stream(b"abc".to_vec()),
        ),
        (
            "a Content-Length that is not a number",
            vec![("content-length", "0x10")],
            Body::Stream(b"0123456789abcdef".to_vec()),
        ),
    ];
    for (what, extra, body) in with_bodies {
        let mut headers = PREFLIGHT.to_vec();
        headers.push(("cookie", "sid=abc"));
        headers.extend(extra);
        let (resp, log) = send(&gw, &svc, Method::OPTIONS, "/account/x", &headers, body);
        assert_eq!(
            (resp.status, log.outcome, log.cors_preflight),
            (401, "missing_token", None),
            "{what}"
        );
    }
    assert!(svc.http.calls_to(ORIGIN).is_empty(), "nothing forwarded");

    // With a valid JWT it is an ordinary request: forwarded with its body and credentials.
    let auth = format!("JWT {}", customer_jwt());
    let mut headers = PREFLIGHT.to_vec();
    headers.extend([("customer-auth", auth.as_str()), ("content-length", "3")]);
    let (resp, log) = send(
        &gw,
        &svc,
        Method::OPTIONS,
        "/account/x",
        &headers,
        Body::Stream(b"a=b".to_vec()),
    );
    assert_eq!((resp.status, log.cors_preflight), (200, None));
    let seen = last_origin_call(&svc);
    assert_eq!(seen.body, b"a=b");
    assert_eq!(values(&seen.headers, "authorization"), ["Bearer at-1"]);
}

// ------------------------------------------------------------------------------------------
// the log names the route as configured

#[test]
fn the_log_names_each_routes_prefix_exactly_as_configured() {
    let gw = gateway();
    let svc = services(vec![]);
    for (path, configured) in [
        ("/public/x", "/public/"),
        ("/public", "/public/"),
        ("/optional/x", "/optional"),
        ("/anything/else", "/"),
    ] {
        let (_, log) = send(&gw, &svc, Method::GET, path, &[], Body::Empty);
        assert_eq!(log.route.as_deref(), Some(configured), "{path}");
    }
    let (_, log) = send(&gw, &svc, Method::GET, "/account/x", &[], Body::Empty);
    assert_eq!(
        (log.route.as_deref(), log.outcome),
        (Some("/account/"), "missing_token")
    );
    let json: Value = serde_json::from_str(&log.to_json()).unwrap();
    assert_eq!(json["route"], "/account/");
}
