//! The whole request path, natively: a customer JWT in, the origin request out, and every
//! gateway answer of the contract's table, with scripted origin and token endpoint.

mod common;

use std::collections::HashMap;

use common::{gateway, jwt, FakeHttp, Svc, API_KEY, CLIENT_SECRET, HMAC_SECRET, NOW};
use edge_auth_proxy::io::{Body, HttpError};
use edge_auth_proxy::io::{GatewayRequest, GatewayResponse};
use futures::executor::block_on;
use futures::future::join_all;
use http::Method;
use serde_json::{json, Value};

fn settings(extra: &[(&'static str, &'static str)]) -> HashMap<&'static str, &'static str> {
    let mut vars: HashMap<&str, &str> = [
        ("ORIGIN_URL", "https://origin.example/api"),
        ("TOKEN_URL", "https://idp.example/oauth/access_token"),
        ("CLIENT_ID", "client-1"),
        ("CLIENT_SECRET", CLIENT_SECRET),
        ("API_KEY", API_KEY),
        ("JWT_ALGORITHMS", "HS256"),
        ("JWT_HMAC_SECRET", HMAC_SECRET),
        ("JWT_ISSUER", "https://login.example/"),
        ("JWT_AUDIENCE", "profile-api"),
        ("ORIGIN_TIMEOUT_MS", "1000"),
    ]
    .into_iter()
    .collect();
    vars.extend(extra.iter().copied());
    vars
}

fn services() -> Svc {
    let http = FakeHttp::default();
    http.on("https://idp.example/", |_| {
        let body = r#"{"token_type":"Bearer","access_token":"at-1","expires_in":"28799"}"#;
        Ok((200, vec![], body.as_bytes().to_vec()))
    });
    http.on("https://origin.example/", |seen| {
        Ok((
            200,
            vec![
                ("content-type", "application/json".into()),
                ("connection", "close".into()),
            ],
            format!(r#"{{"echo":{}}}"#, seen.body.len()).into_bytes(),
        ))
    });
    common::services(http)
}

fn good_jwt() -> String {
    jwt(
        json!({"sub": "cust-42", "iss": "https://login.example/", "aud": "profile-api",
               "exp": NOW + 600, "iat": NOW - 5}),
    )
}

fn request(
    method: Method,
    path_and_query: &str,
    headers: &[(&str, &str)],
) -> GatewayRequest<Vec<u8>> {
    common::request(
        method,
        path_and_query,
        headers,
        Body::Stream(b"{\"q\":1}".to_vec()),
    )
}

fn body_json(resp: &GatewayResponse<Vec<u8>>) -> Value {
    match &resp.body {
        Body::Bytes(b) | Body::Stream(b) => serde_json::from_slice(b).unwrap(),
        Body::Empty => Value::Null,
    }
}

#[test]
fn a_good_request_reaches_the_origin_with_exactly_the_three_credentials() {
    let (gw, svc) = (gateway(&settings(&[])), services());
    let token = good_jwt();
    let auth = format!("JWT {token}");
    let req = request(
        Method::POST,
        "/account/getprofile?x=1&y=%20",
        &[
            ("customer-auth", &auth),
            // Not a second identifier (a Bearer token would be), but still the caller's.
            ("authorization", "Basic Y2FsbGVyOnB3"),
            ("api-key", "caller-key"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            ("x-request-id", "req-123"),
            ("content-type", "application/json"),
        ],
    );
    let (resp, log) = block_on(gw.handle(&svc, req));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.headers["x-request-id"], "req-123");
    assert!(!resp.headers.contains_key("connection"));
    let seen = svc.http.calls_to("https://origin.example/");
    assert_eq!(seen.len(), 1);
    let o = &seen[0];
    assert_eq!(
        o.url,
        "https://origin.example/api/account/getprofile?x=1&y=%20"
    );
    assert_eq!(o.method, Method::POST);
    assert_eq!(o.body, b"{\"q\":1}");
    assert_eq!(
        o.headers
            .get_all("authorization")
            .iter()
            .collect::<Vec<_>>(),
        ["Bearer at-1"]
    );
    assert_eq!(o.headers["customer-auth"], auth.as_str());
    assert_eq!(
        o.headers.get_all("api-key").iter().collect::<Vec<_>>(),
        [API_KEY]
    );
    assert_eq!(o.headers["x-request-id"], "req-123");
    assert_eq!(o.headers["content-type"], "application/json");
    assert!(!o.headers.contains_key("x-hop") && !o.headers.contains_key("connection"));
    assert_eq!(
        (log.status, log.outcome, log.token_source),
        (200, "forwarded", Some("endpoint"))
    );
}

#[test]
fn the_log_line_never_carries_a_credential() {
    let (gw, svc) = (gateway(&settings(&[])), services());
    let token = good_jwt();
    let auth = format!("JWT {token}");
    let (_, log) = block_on(gw.handle(
        &svc,
        request(
            Method::GET,
            "/a?access_token=zzz",
            &[("customer-auth", &auth)],
        ),
    ));
    let line = log.to_json();
    for secret in [
        token.as_str(),
        "at-1",
        CLIENT_SECRET,
        API_KEY,
        HMAC_SECRET,
        "zzz",
    ] {
        assert!(!line.contains(secret), "log line leaks {secret}: {line}");
    }
    let parsed: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(parsed["path"], "/a");
    assert_eq!(parsed["status"], 200);
}

#[test]
fn invalid_jwts_get_401_and_never_reach_the_origin() {
    let (gw, svc) = (gateway(&settings(&[])), services());
    let expired =
        jwt(json!({"iss": "https://login.example/", "aud": "profile-api", "exp": NOW - 61}));
    let wrong_aud =
        jwt(json!({"iss": "https://login.example/", "aud": ["other"], "exp": NOW + 60}));
    let wrong_iss =
        jwt(json!({"iss": "https://evil.example/", "aud": "profile-api", "exp": NOW + 60}));
    let mut tampered = good_jwt();
    tampered.insert(tampered.len() - 3, 'A');
    tampered.pop();
    for bad in [expired, wrong_aud, wrong_iss, tampered, "not-a-jwt".into()] {
        let auth = format!("JWT {bad}");
        let (resp, log) = block_on(gw.handle(
            &svc,
            request(Method::GET, "/x", &[("customer-auth", &auth)]),
        ));
        assert_eq!(resp.status, 401, "{bad}");
        let challenge = resp.headers["www-authenticate"].to_str().unwrap();
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        assert_eq!(resp.headers["content-type"], "application/problem+json");
        let body = body_json(&resp);
        assert_eq!(body["status"], 401);
        assert!(!body.to_string().contains(&bad));
        assert_ne!(log.outcome, "forwarded");
    }
    let (resp, _) = block_on(gw.handle(&svc, request(Method::GET, "/x", &[])));
    assert_eq!(resp.status, 401);
    assert_eq!(
        resp.headers["www-authenticate"],
        "Bearer realm=\"edge-auth-proxy\""
    );
    assert!(
        svc.http.seen.borrow().is_empty(),
        "neither origin nor token endpoint was called"
    );
}

#[test]
fn the_jwt_is_found_in_authorization_and_in_the_configured_cookie() {
    let (gw, svc) = (gateway(&settings(&[("JWT_COOKIE", "session")])), services());
    let token = good_jwt();
    let bearer = format!("Bearer {token}");
    let cookie = format!("theme=dark; session={token}");
    for headers in [
        [("authorization", bearer.as_str())],
        [("cookie", cookie.as_str())],
    ] {
        let (resp, _) = block_on(gw.handle(&svc, request(Method::GET, "/x", &headers)));
        assert_eq!(resp.status, 200);
    }
    for o in svc.http.calls_to("https://origin.example/") {
        assert_eq!(
            o.headers["authorization"], "Bearer at-1",
            "the caller's Bearer is replaced"
        );
        assert_eq!(o.headers["customer-auth"], format!("JWT {token}").as_str());
    }
}

#[test]
fn concurrent_cold_requests_cause_one_token_request() {
    let (gw, svc) = (gateway(&settings(&[])), services());
    let auth = format!("JWT {}", good_jwt());
    let all = block_on(join_all((0..50).map(|_| {
        gw.handle(
            &svc,
            request(Method::GET, "/x", &[("customer-auth", &auth)]),
        )
    })));
    assert!(all.iter().all(|(r, _)| r.status == 200));
    assert_eq!(svc.http.calls_to("https://idp.example/").len(), 1);
    assert_eq!(svc.http.calls_to("https://origin.example/").len(), 50);
}

#[test]
fn routes_decide_404_405_public_and_per_route_origins() {
    let routes = r#"[
      { "prefix": "/auth/customer_authenticate", "auth": "public", "methods": ["POST"] },
      { "prefix": "/account", "auth": "jwt", "methods": ["POST", "GET"] },
      { "prefix": "/other", "origin": "https://other.example/" }
    ]"#;
    let vars = settings(&[("ROUTES", Box::leak(routes.to_string().into_boxed_str()))]);
    let (gw, svc) = (gateway(&vars), services());
    svc.http
        .on("https://other.example/", |_| Ok((204, vec![], vec![])));
    let auth = format!("JWT {}", good_jwt());

    let (resp, _) = block_on(gw.handle(
        &svc,
        request(Method::GET, "/accounts", &[("customer-auth", &auth)]),
    ));
    assert_eq!(resp.status, 404);
    let (resp, _) = block_on(gw.handle(
        &svc,
        request(Method::DELETE, "/account/x", &[("customer-auth", &auth)]),
    ));
    assert_eq!(resp.status, 405);
    assert_eq!(resp.headers["allow"], "POST, GET");
    assert!(svc.http.seen.borrow().is_empty());

    let (resp, _) = block_on(gw.handle(
        &svc,
        request(
            Method::POST,
            "/auth/customer_authenticate",
            &[("customer-auth", "JWT forged")],
        ),
    ));
    assert_eq!(resp.status, 200);
    let o = &svc.http.calls_to("https://origin.example/")[0];
    assert_eq!(o.headers["authorization"], "Bearer at-1");
    assert_eq!(o.headers["api-key"], API_KEY);
    assert!(!o.headers.contains_key("customer-auth"));

    let (resp, _) = block_on(gw.handle(
        &svc,
        request(Method::GET, "/other/y", &[("customer-auth", &auth)]),
    ));
    assert_eq!(resp.status, 204);
    assert_eq!(
        svc.http.calls_to("https://other.example/")[0].url,
        "https://other.example/other/y"
    );
}

#[test]
fn upstream_failures_map_to_502_503_504() {
    let gw = gateway(&settings(&[]));
    let auth = format!("JWT {}", good_jwt());
    let req = || request(Method::GET, "/x", &[("customer-auth", auth.as_str())]);

    let svc = services();
    svc.http.on("https://origin.example/", |_| {
        Err(HttpError::Unreachable("refused".into()))
    });
    let (resp, _) = block_on(gw.handle(&svc, req()));
    assert_eq!(resp.status, 502);
    assert_eq!(resp.headers["content-type"], "application/problem+json");

    svc.http
        .on("https://origin.example/", |_| Err(HttpError::Timeout));
    let (resp, _) = block_on(gw.handle(&svc, req()));
    assert_eq!(resp.status, 504);

    let gw = gateway(&settings(&[]));
    let svc = services();
    svc.http.on("https://idp.example/", |_| {
        Ok((500, vec![], b"oops".to_vec()))
    });
    let (resp, log) = block_on(gw.handle(&svc, req()));
    assert_eq!(resp.status, 503);
    assert!(
        resp.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(log.outcome, "token_endpoint_status");
    assert!(svc.http.calls_to("https://origin.example/").is_empty());
}

#[test]
fn missing_or_invalid_settings_give_500_naming_the_setting_not_its_value() {
    let mut vars = settings(&[]);
    vars.remove("API_KEY");
    let (resp, log) = block_on(gateway(&vars).handle(&services(), request(Method::GET, "/x", &[])));
    assert_eq!(resp.status, 500);
    assert_eq!(log.outcome, "config_error");
    assert!(body_json(&resp)["detail"]
        .as_str()
        .unwrap()
        .contains("API_KEY"));

    let vars = settings(&[("ORIGIN_URL", "not a url secret-ish")]);
    let (resp, _) = block_on(gateway(&vars).handle(&services(), request(Method::GET, "/x", &[])));
    let detail = body_json(&resp)["detail"].as_str().unwrap().to_string();
    assert!(
        detail.contains("ORIGIN_URL") && !detail.contains("secret-ish"),
        "{detail}"
    );

    let vars = settings(&[("JWT_ALGORITHMS", "none")]);
    let (resp, _) = block_on(gateway(&vars).handle(&services(), request(Method::GET, "/x", &[])));
    assert_eq!(resp.status, 500);
    assert!(body_json(&resp)["detail"]
        .as_str()
        .unwrap()
        .contains("JWT_ALGORITHMS"));
}

#[test]
fn a_caller_request_id_that_is_not_a_plain_identifier_is_replaced() {
    let (gw, svc) = (gateway(&settings(&[])), services());
    let auth = format!("JWT {}", good_jwt());
    let (resp, log) = block_on(gw.handle(
        &svc,
        request(
            Method::GET,
            "/x",
            &[("customer-auth", &auth), ("x-request-id", "a b<script>")],
        ),
    ));
    let id = resp.headers["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 32);
    assert_eq!(log.request_id, id);
    let (resp, _) = block_on(gw.handle(
        &svc,
        request(Method::GET, "/x", &[("customer-auth", &auth)]),
    ));
    assert_ne!(
        resp.headers["x-request-id"].to_str().unwrap(),
        id,
        "a fresh id per request"
    );
}

/// What a CGI/WSGI-style origin would read as `customer-auth`, `api-key`, `authorization`, a
/// method override or the request id: the caller's values must never arrive.
const FORGED: [(&str, &str); 9] = [
    ("customer_auth", "JWT forged-customer"),
    ("Customer_Auth", "JWT forged-customer"),
    ("api_key", "forged-key"),
    ("API_KEY", "forged-key"),
    ("X-HTTP-Method-Override", "DELETE"),
    ("x_http_method_override", "DELETE"),
    ("X-HTTP-Method", "DELETE"),
    ("X-Method-Override", "DELETE"),
    ("x_request_id", "forged-id"),
];

#[test]
fn aliases_and_method_overrides_never_reach_the_origin_on_public_or_jwt_routes() {
    let routes = r#"[
      { "prefix": "/auth/customer_authenticate", "auth": "public", "methods": ["POST"] },
      { "prefix": "/account", "auth": "jwt", "methods": ["POST"] }
    ]"#;
    let vars = settings(&[("ROUTES", Box::leak(routes.to_string().into_boxed_str()))]);
    let (gw, svc) = (gateway(&vars), services());
    let auth = format!("JWT {}", good_jwt());
    for (path, jwt) in [
        ("/auth/customer_authenticate", None),
        ("/account/getprofile", Some(auth.as_str())),
    ] {
        let mut headers: Vec<(&str, &str)> = FORGED.to_vec();
        headers.push(("x-kept", "yes"));
        if let Some(jwt) = jwt {
            headers.push(("customer-auth", jwt));
        }
        let (resp, _) = block_on(gw.handle(&svc, request(Method::POST, path, &headers)));
        assert_eq!(resp.status, 200, "{path}");
        let seen = svc.http.calls_to("https://origin.example/");
        let o = seen.last().unwrap();
        assert_eq!(o.method, Method::POST, "{path}");
        for (name, value) in &o.headers {
            for (_, forged) in FORGED {
                assert_ne!(
                    value, forged,
                    "{path}: the caller's {name} reached the origin"
                );
            }
        }
        assert_eq!(o.headers["x-kept"], "yes");
        assert_eq!(o.headers["api-key"], API_KEY);
        assert_eq!(o.headers.get_all("authorization").iter().count(), 1);
        assert_eq!(o.headers.get_all("x-request-id").iter().count(), 1);
        assert_eq!(
            o.headers.get("customer-auth").map(|v| v.to_str().unwrap()),
            jwt,
            "{path}"
        );
    }
}

#[test]
fn a_jwt_cookie_sent_twice_is_400_and_never_reaches_the_origin() {
    let (gw, svc) = (gateway(&settings(&[("JWT_COOKIE", "session")])), services());
    let token = good_jwt();
    let one = format!("session={token}; session=forged");
    let auth = format!("JWT {token}");
    let first = format!("session={token}");
    for headers in [
        vec![("cookie", one.as_str())],
        vec![("cookie", first.as_str()), ("cookie", "session=forged")],
        vec![("cookie", "session="), ("cookie", first.as_str())],
        // customer-auth is the source, but the origin would still get both cookies.
        vec![("customer-auth", auth.as_str()), ("cookie", one.as_str())],
    ] {
        let (resp, log) = block_on(gw.handle(&svc, request(Method::GET, "/x", &headers)));
        assert_eq!(resp.status, 400, "{headers:?}");
        assert_eq!(resp.headers["content-type"], "application/problem+json");
        assert!(resp.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_request\""));
        assert_eq!(log.outcome, "duplicate_jwt_cookie");
        let body = serde_json::to_string(&body_json(&resp)).unwrap();
        assert!(!body.contains(&token) && !body.contains("forged"));
    }
    assert!(svc.http.seen.borrow().is_empty(), "no token, no origin");
}

#[test]
fn an_api_key_that_cannot_be_a_header_value_is_500_naming_it() {
    for bad in [
        "Zq9-key\u{a0}",
        "Zq9\tkey",
        "Zq9-key\r",
        "Zq9\u{7f}key",
        " Zq9-key",
        "Zq9\nkey",
    ] {
        let vars = settings(&[("API_KEY", Box::leak(bad.to_string().into_boxed_str()))]);
        let svc = services();
        let auth = format!("JWT {}", good_jwt());
        let (resp, log) = block_on(gateway(&vars).handle(
            &svc,
            request(Method::GET, "/x", &[("customer-auth", &auth)]),
        ));
        assert_eq!(resp.status, 500, "{bad:?}");
        assert_eq!(log.outcome, "config_error");
        let body = serde_json::to_string(&body_json(&resp)).unwrap();
        assert!(body.contains("API_KEY"), "{body}");
        assert!(!body.contains("Zq9"), "{bad:?} echoed: {body}");
        assert!(
            svc.http.seen.borrow().is_empty(),
            "{bad:?}: nothing is sent"
        );
    }
}

#[test]
fn an_access_token_that_cannot_follow_bearer_is_a_garbage_answer() {
    for token in ["at 1", "at\\u00e91", "at\\t1", "at\\u00001", "at\\u007f1"] {
        let (gw, svc) = (gateway(&settings(&[])), services());
        let body = format!(r#"{{"token_type":"Bearer","access_token":"{token}"}}"#);
        svc.http.on("https://idp.example/", move |_| {
            Ok((200, vec![], body.clone().into_bytes()))
        });
        let auth = format!("JWT {}", good_jwt());
        let (resp, log) = block_on(gw.handle(
            &svc,
            request(Method::GET, "/x", &[("customer-auth", &auth)]),
        ));
        assert_eq!(resp.status, 503, "{token}");
        assert!(resp.headers.contains_key("retry-after"));
        assert_eq!(log.outcome, "token_response_bad_access_token", "{token}");
        assert!(
            svc.http.calls_to("https://origin.example/").is_empty(),
            "{token}: no header-less request to the origin"
        );
    }
}
