//! The whole request path for verified identities, natively: route `scopes` on JWT and opaque
//! routes (memory hits included), `opaque` routes against a scripted introspection endpoint,
//! and the customer id for the origin.

mod common;

use common::*;

use std::collections::HashMap;

use common::FakeHttp;
use edge_auth_proxy::io::GatewayResponse;
use edge_auth_proxy::io::{Body, HttpError};
use edge_auth_proxy::proxy::Gateway;
use futures::executor::block_on;
use http::Method;
use serde_json::{json, Value};

const KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const ROUTES: &str = r#"[
  { "prefix": "/public", "auth": "public" },
  { "prefix": "/scoped", "auth": "jwt", "scopes": ["profile:read"] },
  { "prefix": "/session/scoped", "auth": "opaque", "scopes": ["profile:read"] },
  { "prefix": "/session", "auth": "opaque" },
  { "prefix": "/", "auth": "jwt" }
]"#;

fn vars(extra: &[(&'static str, &'static str)]) -> HashMap<&'static str, &'static str> {
    let mut vars: HashMap<&str, &str> = [
        ("ORIGIN_URL", "https://origin.example/api"),
        ("TOKEN_URL", "https://idp.example/oauth/access_token"),
        ("CLIENT_ID", "client-1"),
        ("CLIENT_SECRET", "client-secret-value"),
        ("API_KEY", "api-key-value"),
        ("JWT_ALGORITHMS", "HS256"),
        ("JWT_HMAC_SECRET", HMAC_SECRET),
        ("JWT_ISSUER", ISSUER),
        ("ROUTES", ROUTES),
        ("INTROSPECTION_URL", INTROSPECT),
        ("SESSION_COOKIE", "sid"),
        ("CUSTOMER_ID_HEADER", "X-Customer-Id"),
        ("CUSTOMER_ID_KEY", KEY_B64),
    ]
    .into_iter()
    .collect();
    vars.extend(extra.iter().copied());
    vars
}

/// Sessions the scripted introspection endpoint knows: id → its answer.
fn services(sessions: &[(&'static str, Value)]) -> Svc {
    let http = FakeHttp::default();
    http.on("https://idp.example/oauth/", |_| {
        let body = r#"{"token_type":"Bearer","access_token":"at-1","expires_in":3600}"#;
        Ok((200, vec![], body.as_bytes().to_vec()))
    });
    let known: HashMap<String, Value> = sessions
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    http.on(INTROSPECT, move |seen| {
        let token = form_urlencoded::parse(&seen.body)
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let answer = known
            .get(&token)
            .cloned()
            .unwrap_or(json!({"active": false}));
        Ok((200, vec![], answer.to_string().into_bytes()))
    });
    http.on(ORIGIN, |_| Ok((200, vec![], b"{}".to_vec())));
    common::services(http)
}

fn customer_jwt(sub: &str, scope: &str) -> String {
    jwt(json!({"iss": ISSUER, "sub": sub, "scope": scope, "exp": NOW + 600, "jti": rand_jti()}))
}

/// Two tokens of one customer differ by `jti`.
fn rand_jti() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("jti-{}", N.fetch_add(1, Ordering::Relaxed))
}

fn session(sub: &str, scope: &str) -> Value {
    json!({"active": true, "iss": ISSUER, "sub": sub, "scope": scope, "exp": NOW + 600})
}

fn send(
    gw: &Gateway,
    svc: &Svc,
    path: &str,
    headers: &[(&str, &str)],
) -> (
    GatewayResponse<Vec<u8>>,
    edge_auth_proxy::proxy::log::RequestLog,
) {
    block_on(gw.handle(svc, request(Method::GET, path, headers, Body::Empty)))
}

fn detail(resp: &GatewayResponse<Vec<u8>>) -> String {
    match &resp.body {
        Body::Bytes(b) => serde_json::from_slice::<Value>(b).unwrap()["detail"]
            .as_str()
            .unwrap()
            .to_string(),
        _ => String::new(),
    }
}

fn origin_calls(svc: &Svc) -> Vec<common::Seen> {
    svc.http.calls_to(ORIGIN)
}

const INSUFFICIENT: &str =
    "Bearer realm=\"edge-auth-proxy\", error=\"insufficient_scope\", scope=\"profile:read\"";

// ---------------------------------------------------------------------------------------------
// scopes

#[test]
fn a_jwt_without_the_route_scopes_gets_403_every_time_even_from_memory() {
    let (gw, svc) = (gateway(&vars(&[])), services(&[]));
    let lacking = format!("JWT {}", customer_jwt("c1", "profile openid"));
    for _ in 0..2 {
        let (resp, log) = send(&gw, &svc, "/scoped/x", &[("customer-auth", &lacking)]);
        assert_eq!(resp.status, 403);
        assert_eq!(resp.headers["www-authenticate"], INSUFFICIENT);
        assert_eq!(resp.headers["content-type"], "application/problem+json");
        assert_eq!(log.policy, Some("scopes"));
        assert_eq!(log.outcome, "insufficient_scope");
    }
    let (_, log) = send(&gw, &svc, "/scoped/x", &[("customer-auth", &lacking)]);
    assert_eq!(log.jwt_check, Some("cache"), "a memory hit was checked too");
    assert!(origin_calls(&svc).is_empty());

    // The same token is fine where no scope is required.
    let (resp, _) = send(&gw, &svc, "/other", &[("customer-auth", &lacking)]);
    assert_eq!(resp.status, 200);

    let granted = format!("JWT {}", customer_jwt("c1", "openid profile:read"));
    for _ in 0..2 {
        let (resp, log) = send(&gw, &svc, "/scoped/x", &[("customer-auth", &granted)]);
        assert_eq!(resp.status, 200);
        assert_eq!(log.policy, None);
    }
}

#[test]
fn scopes_may_come_from_scp() {
    let (gw, svc) = (gateway(&vars(&[])), services(&[]));
    let token = jwt(json!({"iss": ISSUER, "sub": "c", "exp": NOW + 60, "scp": ["profile:read"]}));
    let (resp, _) = send(
        &gw,
        &svc,
        "/scoped",
        &[("authorization", &format!("Bearer {token}"))],
    );
    assert_eq!(resp.status, 200);
}

// ---------------------------------------------------------------------------------------------
// opaque routes

#[test]
fn an_active_session_is_forwarded_with_the_identifier_as_it_came() {
    let svc = services(&[("s-alice", session("alice", "profile:read"))]);
    let gw = gateway(&vars(&[]));
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[("customer-auth", "Session s-alice")], "Session s-alice"),
        (&[("authorization", "Bearer s-alice")], "Bearer s-alice"),
        (&[("cookie", "theme=dark; sid=s-alice")], "Cookie s-alice"),
    ];
    for (headers, customer_auth) in cases {
        let (resp, log) = send(&gw, &svc, "/session/profile", headers);
        assert_eq!(resp.status, 200, "{headers:?}");
        assert_eq!(log.identity, Some("opaque"));
        let o = origin_calls(&svc).pop().unwrap();
        assert_eq!(o.headers["customer-auth"], customer_auth);
        assert_eq!(o.headers["authorization"], "Bearer at-1");
        assert_eq!(o.headers["api-key"], "api-key-value");
        if customer_auth.starts_with("Cookie") {
            assert_eq!(o.headers["cookie"], "theme=dark; sid=s-alice", "as sent");
        }
    }
    assert_eq!(
        svc.http.calls_to(INTROSPECT).len(),
        1,
        "one call, then memory"
    );
    let (_, log) = send(
        &gw,
        &svc,
        "/session/x",
        &[("authorization", "Bearer s-alice")],
    );
    assert_eq!(log.introspection, Some("memory"));
}

#[test]
fn no_identifier_or_an_inactive_one_is_401() {
    let (gw, svc) = (gateway(&vars(&[])), services(&[]));
    let (resp, log) = send(&gw, &svc, "/session/x", &[]);
    assert_eq!(resp.status, 401);
    assert_eq!(
        resp.headers["www-authenticate"],
        "Bearer realm=\"edge-auth-proxy\""
    );
    assert_eq!(log.outcome, "missing_identifier");

    let (resp, log) = send(&gw, &svc, "/session/x", &[("cookie", "sid=unknown")]);
    assert_eq!(resp.status, 401);
    assert!(resp.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("error=\"invalid_token\""));
    assert_eq!(
        (log.outcome, log.introspection),
        ("identifier_inactive", Some("endpoint"))
    );

    let (resp, _) = send(&gw, &svc, "/session/x", &[("cookie", "sid=a; sid=b")]);
    assert_eq!(resp.status, 400);
    assert!(origin_calls(&svc).is_empty());
}

#[test]
fn an_unreachable_endpoint_is_503_with_retry_after_and_nothing_forwarded() {
    let gw = gateway(&vars(&[]));
    let svc = services(&[]);
    svc.http.on(INTROSPECT, |_| {
        Err(HttpError::Unreachable("refused".into()))
    });
    let (resp, log) = send(&gw, &svc, "/session/x", &[("cookie", "sid=s-1")]);
    assert_eq!(resp.status, 503);
    assert_eq!(resp.headers["retry-after"], "1");
    assert_eq!(log.introspection_error, Some("introspection_unreachable"));
    // The next request waits for the next probe (its own, half a second later): 503 again.
    let (resp, log) = send(&gw, &svc, "/session/x", &[("cookie", "sid=s-2")]);
    assert_eq!(resp.status, 503);
    assert_eq!(resp.headers["retry-after"], "1");
    assert_eq!(log.introspection_error, Some("introspection_unreachable"));
    assert_eq!(svc.http.calls_to(INTROSPECT).len(), 2);
    assert!(origin_calls(&svc).is_empty());
}

#[test]
fn a_bad_introspection_answer_refuses_that_session_only_and_costs_no_one_else_anything() {
    let svc = services(&[
        ("s-good", session("g", "profile")),
        (
            "s-bad",
            json!({"active": true, "iss": ISSUER, "sub": "b", "exp": "soon"}),
        ),
    ]);
    let gw = gateway(&vars(&[]));
    let (resp, log) = send(&gw, &svc, "/session/x", &[("cookie", "sid=s-bad")]);
    assert_eq!(resp.status, 401);
    assert!(resp.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer realm=\"edge-auth-proxy\", error=\"invalid_token\""));
    assert_eq!(log.introspection_error, Some("introspection_bad_time"));
    assert_eq!(log.config_error, None);
    // Another session in the same instant: served, nothing backed off.
    let (resp, log) = send(&gw, &svc, "/session/x", &[("cookie", "sid=s-good")]);
    assert_eq!(resp.status, 200);
    assert_eq!(log.introspection, Some("endpoint"));
    assert_eq!(
        origin_calls(&svc).len(),
        1,
        "only the good one reached the origin"
    );
}

#[test]
fn scopes_from_the_introspection_answer_are_enforced() {
    let svc = services(&[
        ("s-reader", session("r", "openid profile:read")),
        ("s-other", session("o", "profile")),
    ]);
    let gw = gateway(&vars(&[]));
    let (resp, _) = send(&gw, &svc, "/session/scoped", &[("cookie", "sid=s-reader")]);
    assert_eq!(resp.status, 200);
    for _ in 0..2 {
        let (resp, log) = send(&gw, &svc, "/session/scoped", &[("cookie", "sid=s-other")]);
        assert_eq!(resp.status, 403);
        assert_eq!(resp.headers["www-authenticate"], INSUFFICIENT);
        assert_eq!(log.policy, Some("scopes"));
    }
    assert_eq!(origin_calls(&svc).len(), 1);
}

#[test]
fn the_log_line_never_carries_the_identifier() {
    let svc = services(&[("very-secret-session-id", session("alice", ""))]);
    let gw = gateway(&vars(&[]));
    for path in ["/session/x", "/session/scoped"] {
        let (_, log) = send(&gw, &svc, path, &[("cookie", "sid=very-secret-session-id")]);
        assert!(!log.to_json().contains("very-secret"), "{}", log.to_json());
    }
}

// ---------------------------------------------------------------------------------------------
// the customer id

fn customer_id_for(gw: &Gateway, svc: &Svc, path: &str, headers: &[(&str, &str)]) -> String {
    let (resp, _) = send(gw, svc, path, headers);
    assert_eq!(resp.status, 200, "{}", detail(&resp));
    let o = origin_calls(svc).pop().unwrap();
    assert_eq!(o.headers.get_all("x-customer-id").iter().count(), 1);
    o.headers["x-customer-id"].to_str().unwrap().to_string()
}

#[test]
fn the_customer_id_is_one_per_customer_across_tokens_and_channels() {
    let svc = services(&[("s-alice", session("alice", ""))]);
    let gw = gateway(&vars(&[]));
    let a1 = format!("JWT {}", customer_jwt("alice", ""));
    let a2 = format!("JWT {}", customer_jwt("alice", "other"));
    let b = format!("JWT {}", customer_jwt("bob", ""));
    let id_a1 = customer_id_for(&gw, &svc, "/x", &[("customer-auth", &a1)]);
    let id_a2 = customer_id_for(&gw, &svc, "/x", &[("customer-auth", &a2)]);
    let id_a1_again = customer_id_for(&gw, &svc, "/x", &[("customer-auth", &a1)]);
    let id_b = customer_id_for(&gw, &svc, "/x", &[("customer-auth", &b)]);
    let id_session = customer_id_for(&gw, &svc, "/session/x", &[("cookie", "sid=s-alice")]);
    assert_eq!(id_a1, id_a2, "two tokens of one customer");
    assert_eq!(id_a1, id_a1_again, "a memory hit gives the same id");
    assert_eq!(id_a1, id_session, "a JWT and a session of one customer");
    assert_ne!(id_a1, id_b, "two customers");
    assert!(!id_a1.contains("alice"));
}

#[test]
fn a_caller_sent_customer_id_is_removed_on_every_route() {
    let (gw, svc) = (gateway(&vars(&[])), services(&[]));
    let forged = [("x-customer-id", "forged"), ("x_customer_id", "forged")];
    let (resp, _) = send(&gw, &svc, "/public/x", &forged);
    assert_eq!(resp.status, 200);
    let o = origin_calls(&svc).pop().unwrap();
    assert!(!o.headers.contains_key("x-customer-id") && !o.headers.contains_key("x_customer_id"));

    let auth = format!("JWT {}", customer_jwt("alice", ""));
    let mut headers = forged.to_vec();
    headers.push(("customer-auth", &auth));
    let id = customer_id_for(&gw, &svc, "/x", &headers);
    assert_ne!(id, "forged");
    assert!(!origin_calls(&svc)
        .pop()
        .unwrap()
        .headers
        .contains_key("x_customer_id"));
}

#[test]
fn an_identity_without_sub_is_refused_when_a_customer_id_is_due() {
    let svc = services(&[("s-nosub", json!({"active": true, "iss": ISSUER}))]);
    let gw = gateway(&vars(&[]));
    let no_sub = format!("JWT {}", jwt(json!({"iss": ISSUER, "exp": NOW + 60})));
    let (resp, log) = send(&gw, &svc, "/x", &[("customer-auth", &no_sub)]);
    assert_eq!(resp.status, 401);
    assert_eq!(log.outcome, "no_sub_claim");
    assert!(detail(&resp).contains("no sub claim"));
    let (resp, _) = send(&gw, &svc, "/session/x", &[("cookie", "sid=s-nosub")]);
    assert_eq!(resp.status, 401);
    assert!(origin_calls(&svc).is_empty());

    // Without CUSTOMER_ID_HEADER nothing needs `sub`.
    let mut without = vars(&[]);
    without.remove("CUSTOMER_ID_HEADER");
    let (resp, _) = send(
        &gateway(&without),
        &svc,
        "/x",
        &[("customer-auth", &no_sub)],
    );
    assert_eq!(resp.status, 200);
}

// ---------------------------------------------------------------------------------------------
// configuration

#[test]
fn settings_problems_are_500_naming_the_setting() {
    let cases: [(&str, Option<&'static str>, &str); 5] = [
        ("INTROSPECTION_URL", None, "INTROSPECTION_URL"),
        ("INTROSPECTION_URL", Some("ftp://x"), "INTROSPECTION_URL"),
        ("CUSTOMER_ID_KEY", None, "CUSTOMER_ID_KEY"),
        ("CUSTOMER_ID_KEY", Some("c2hvcnQ="), "CUSTOMER_ID_KEY"),
        ("CUSTOMER_ID_HEADER", Some("api-key"), "CUSTOMER_ID_HEADER"),
    ];
    for (name, value, named) in cases {
        let mut v = vars(&[]);
        match value {
            Some(value) => {
                v.insert(name, value);
            }
            None => {
                v.remove(name);
            }
        }
        let (resp, _) = send(&gateway(&v), &services(&[]), "/public", &[]);
        assert_eq!(resp.status, 500, "{name}");
        let d = detail(&resp);
        assert!(d.contains(named), "{d}");
        assert!(!d.contains(KEY_B64) && !d.contains("c2hvcnQ"), "{d}");
    }
    let routes = r#"[{"prefix": "/", "auth": "jwt", "scopes": "profile"}]"#;
    let (resp, _) = send(
        &gateway(&vars(&[("ROUTES", routes)])),
        &services(&[]),
        "/",
        &[],
    );
    assert_eq!(resp.status, 500);
    assert!(detail(&resp).contains("ROUTES"));
}
