//! The gateway assertion, natively: its claims on jwt, opaque and public routes, checked with
//! the key set the gateway itself publishes; a fresh `jti` per send; the caller's copies of
//! the header removed; the gateway's own key-set path, never routed; and every configuration
//! mistake named without its value.

mod common;

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::{
    gateway, jwt, FakeHttp, Svc, API_KEY, CLIENT_SECRET, HMAC_SECRET, INTROSPECT, ISSUER, NOW,
    ORIGIN, TOKEN_URL,
};
use edge_auth_proxy::identity::jwt::{Alg, KeySet, RustCryptoVerifier};
use edge_auth_proxy::io::{Body, GatewayResponse};
use edge_auth_proxy::proxy::assertion::JWKS_PATH;
use edge_auth_proxy::proxy::Gateway;
use futures::executor::block_on;
use http::Method;
use serde_json::{json, Value};

const CUSTOMER_KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const HEADER: &str = "x-gateway-assertion";
const CALLER_ORIGIN: &str = "https://gateway.example";
const ROUTES: &str = r#"[
  { "prefix": "/public", "auth": "public", "cors_preflight": "forward" },
  { "prefix": "/session", "auth": "opaque" },
  { "prefix": "/partner", "auth": "jwt", "origin": "https://partner.example/v2" },
  { "prefix": "/", "auth": "jwt" }
]"#;

fn keys() -> Value {
    serde_json::from_str(include_str!("fixtures/signing-keys.json")).unwrap()
}

fn key(name: &str) -> String {
    keys()[name].to_string()
}

fn vars(extra: &[(&'static str, String)]) -> HashMap<&'static str, String> {
    let mut vars: HashMap<&str, String> = [
        ("ORIGIN_URL", "https://origin.example/api"),
        ("TOKEN_URL", TOKEN_URL),
        ("CLIENT_ID", "client-1"),
        ("CLIENT_SECRET", CLIENT_SECRET),
        ("API_KEY", API_KEY),
        ("JWT_ALGORITHMS", "HS256"),
        ("JWT_HMAC_SECRET", HMAC_SECRET),
        ("JWT_ISSUER", ISSUER),
        ("ROUTES", ROUTES),
        ("INTROSPECTION_URL", INTROSPECT),
        ("SESSION_COOKIE", "sid"),
        ("GATEWAY_ASSERTION_HEADER", HEADER),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect();
    vars.insert("GATEWAY_SIGNING_KEY", key("es256_a"));
    for (k, v) in extra {
        vars.insert(k, v.clone());
    }
    vars.retain(|_, v| !v.is_empty());
    vars
}

fn services() -> Svc {
    let http = FakeHttp::default();
    http.on("https://idp.example/oauth/", |_| {
        let body = r#"{"token_type":"Bearer","access_token":"at-1","expires_in":3600}"#;
        Ok((200, vec![], body.as_bytes().to_vec()))
    });
    http.on(INTROSPECT, |seen| {
        let token = form_urlencoded::parse(&seen.body)
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let answer = if token == "s-alice" {
            json!({"active": true, "iss": ISSUER, "sub": "alice", "scope": "profile:read orders",
                   "exp": NOW + 600})
        } else {
            json!({"active": false})
        };
        Ok((200, vec![], answer.to_string().into_bytes()))
    });
    http.on(ORIGIN, |_| Ok((200, vec![], b"{}".to_vec())));
    http.on("https://partner.example/", |_| {
        Ok((200, vec![], b"{}".to_vec()))
    });
    common::services(http)
}

fn customer_jwt(sub: &str, scope: &str) -> String {
    jwt(json!({"iss": ISSUER, "sub": sub, "scope": scope, "exp": NOW + 600}))
}

fn send(
    gw: &Gateway,
    svc: &Svc,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> GatewayResponse<Vec<u8>> {
    let req = common::request(method, path, headers, Body::Empty);
    block_on(gw.serve_at(svc, req, Some(CALLER_ORIGIN))).response
}

fn body(resp: &GatewayResponse<Vec<u8>>) -> Vec<u8> {
    match &resp.body {
        Body::Bytes(b) | Body::Stream(b) => b.clone(),
        Body::Empty => Vec::new(),
    }
}

/// The gateway's published key set, fetched from the gateway itself.
fn published(gw: &Gateway, svc: &Svc) -> KeySet {
    let resp = send(gw, svc, Method::GET, JWKS_PATH, &[]);
    assert_eq!(resp.status, 200);
    KeySet::from_jwks_json(std::str::from_utf8(&body(&resp)).unwrap()).unwrap()
}

/// The one assertion the origin got on its last call, checked against `keys`: (header, claims).
fn checked(jws: &str, keys: &KeySet) -> (Value, Value) {
    let parts: Vec<&str> = jws.split('.').collect();
    assert_eq!(parts.len(), 3, "a compact JWS");
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    let alg = Alg::from_name(header["alg"].as_str().unwrap()).unwrap();
    let candidates = keys.candidates(alg, header["kid"].as_str()).unwrap();
    let input = format!("{}.{}", parts[0], parts[1]);
    assert!(
        candidates
            .iter()
            .any(|k| RustCryptoVerifier.verify_now(alg, k, input.as_bytes(), &sig)),
        "the signature checks with the published key"
    );
    (header, claims)
}

fn last_assertion(svc: &Svc, origin: &str) -> Vec<String> {
    let seen = svc.http.calls_to(origin);
    let last = seen.last().expect("the origin was called");
    last.headers
        .get_all(HEADER)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_jwt_route_carries_every_claim_signed_with_the_published_key() {
    let (gw, svc) = (gateway(&vars(&[])), services());
    let jwt = customer_jwt("cust-42", "profile:read orders");
    let auth = format!("JWT {jwt}");
    let resp = send(
        &gw,
        &svc,
        Method::POST,
        "/account/profile?x=1&y=2",
        &[("customer-auth", &auth), ("x-request-id", "req-abc")],
    );
    assert_eq!(resp.status, 200);
    let values = last_assertion(&svc, ORIGIN);
    assert_eq!(values.len(), 1, "exactly one assertion");
    let (header, claims) = checked(&values[0], &published(&gw, &svc));
    assert_eq!(header["typ"], "gateway+jwt");
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["kid"], "gw-es256-a");
    assert_eq!(
        claims["iss"], CALLER_ORIGIN,
        "default: the caller's URL origin"
    );
    assert_eq!(claims["aud"], "https://origin.example/api");
    assert_eq!(claims["iat"], NOW);
    assert_eq!(claims["exp"], NOW + 60);
    assert_eq!(claims["rid"], "req-abc");
    assert_eq!(claims["htm"], "POST");
    assert_eq!(claims["htu"], "https://origin.example/api/account/profile");
    assert_eq!(claims["sub"], "cust-42");
    assert_eq!(claims["idp"], ISSUER);
    assert_eq!(claims["scope"], "profile:read orders");
    let jti = claims["jti"].as_str().unwrap();
    assert!(jti.len() >= 22 && jti != "req-abc");
    let names: Vec<&String> = claims.as_object().unwrap().keys().collect();
    assert_eq!(names.len(), 11, "no claim beyond the contract's: {names:?}");
}

#[test]
fn a_route_origin_is_the_audience_and_the_customer_id_is_the_subject() {
    let v = vars(&[
        ("CUSTOMER_ID_HEADER", "x-customer-id".into()),
        ("CUSTOMER_ID_KEY", CUSTOMER_KEY_B64.into()),
        ("GATEWAY_ISSUER", "https://gw.example.com".into()),
    ]);
    let (gw, svc) = (gateway(&v), services());
    let auth = format!("JWT {}", customer_jwt("cust-42", "profile:read"));
    let resp = send(
        &gw,
        &svc,
        Method::DELETE,
        "/partner/x/y?z",
        &[("customer-auth", &auth)],
    );
    assert_eq!(resp.status, 200);
    let (_, claims) = checked(
        &last_assertion(&svc, "https://partner.example/")[0],
        &published(&gw, &svc),
    );
    let seen = svc.http.calls_to("https://partner.example/");
    let customer_id = seen[0].headers["x-customer-id"].to_str().unwrap();
    assert_eq!(
        claims["sub"], customer_id,
        "the customer id, not the raw sub"
    );
    assert_ne!(claims["sub"], "cust-42");
    assert_eq!(
        claims["iss"], "https://gw.example.com",
        "GATEWAY_ISSUER as written"
    );
    assert_eq!(claims["aud"], "https://partner.example/v2");
    assert_eq!(claims["htu"], "https://partner.example/v2/partner/x/y");
    assert_eq!(claims["htm"], "DELETE");
}

#[test]
fn an_opaque_route_carries_the_introspected_identity() {
    let (gw, svc) = (gateway(&vars(&[])), services());
    let resp = send(
        &gw,
        &svc,
        Method::GET,
        "/session/me",
        &[("cookie", "sid=s-alice")],
    );
    assert_eq!(resp.status, 200);
    let (_, claims) = checked(&last_assertion(&svc, ORIGIN)[0], &published(&gw, &svc));
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["idp"], ISSUER);
    assert_eq!(claims["scope"], "profile:read orders");
    assert_eq!(claims["htu"], "https://origin.example/api/session/me");
}

#[test]
fn a_public_route_carries_no_identity_claims() {
    let (gw, svc) = (gateway(&vars(&[])), services());
    let resp = send(&gw, &svc, Method::GET, "/public/info", &[]);
    assert_eq!(resp.status, 200);
    let (_, claims) = checked(&last_assertion(&svc, ORIGIN)[0], &published(&gw, &svc));
    for absent in ["sub", "idp", "scope"] {
        assert!(claims.get(absent).is_none(), "{absent} on a public route");
    }
    assert_eq!(claims["htm"], "GET");
    assert_eq!(claims["htu"], "https://origin.example/api/public/info");
}

#[test]
fn every_send_has_its_own_jti_and_a_caller_never_chooses_it() {
    let (gw, svc) = (gateway(&vars(&[])), services());
    let keys = published(&gw, &svc);
    let mut jtis = Vec::new();
    for _ in 0..5 {
        let resp = send(
            &gw,
            &svc,
            Method::GET,
            "/public/a",
            &[("x-request-id", "same-id")],
        );
        assert_eq!(resp.status, 200);
        let (_, claims) = checked(&last_assertion(&svc, ORIGIN)[0], &keys);
        assert_eq!(
            claims["rid"], "same-id",
            "the caller's request id goes to rid"
        );
        assert_ne!(claims["jti"], "same-id");
        jtis.push(claims["jti"].as_str().unwrap().to_string());
    }
    jtis.sort();
    jtis.dedup();
    assert_eq!(jtis.len(), 5, "two requests never share a jti");
}

#[test]
fn a_replay_after_the_origins_401_is_signed_again_with_the_same_rid() {
    let (gw, svc) = (gateway(&vars(&[])), services());
    let refused = std::rc::Rc::new(std::cell::Cell::new(true));
    let once = refused.clone();
    svc.http.on(ORIGIN, move |_| {
        if once.replace(false) {
            let challenge = "Bearer error=\"invalid_token\"".to_string();
            Ok((401, vec![("www-authenticate", challenge)], Vec::new()))
        } else {
            Ok((200, vec![], b"{}".to_vec()))
        }
    });
    let tokens = std::rc::Rc::new(std::cell::Cell::new(0));
    let n = tokens.clone();
    svc.http.on("https://idp.example/oauth/", move |_| {
        n.set(n.get() + 1);
        let body = format!(
            r#"{{"token_type":"Bearer","access_token":"at-{}","expires_in":3600}}"#,
            n.get()
        );
        Ok((200, vec![], body.into_bytes()))
    });
    let resp = send(
        &gw,
        &svc,
        Method::GET,
        "/public/a",
        &[("x-request-id", "r-1")],
    );
    assert_eq!(resp.status, 200);
    let keys = published(&gw, &svc);
    let seen = svc.http.calls_to(ORIGIN);
    assert_eq!(seen.len(), 2, "sent, refused, replayed");
    let claims: Vec<Value> = seen
        .iter()
        .map(|s| checked(s.headers[HEADER].to_str().unwrap(), &keys).1)
        .collect();
    assert_eq!(
        (&claims[0]["rid"], &claims[1]["rid"]),
        (&json!("r-1"), &json!("r-1"))
    );
    assert_ne!(
        claims[0]["jti"], claims[1]["jti"],
        "a fresh jti for the replay"
    );
}

#[test]
fn a_callers_copy_is_removed_in_every_spelling_even_named_by_connection() {
    let (gw, svc) = (gateway(&vars(&[])), services());
    let forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.";
    let spellings = [
        "x-gateway-assertion",
        "x_gateway_assertion",
        "x-gateway_assertion",
        "x_gateway-assertion",
    ];
    for route in ["/public/a", "/session/me", "/account"] {
        let auth = format!("JWT {}", customer_jwt("cust-42", ""));
        for name in spellings {
            for connection in [None, Some(HEADER), Some(name)] {
                let mut headers = vec![(name, forged), (name, forged)];
                if let Some(c) = connection {
                    headers.push(("connection", c));
                }
                match route {
                    "/session/me" => headers.push(("cookie", "sid=s-alice")),
                    "/account" => headers.push(("customer-auth", &auth)),
                    _ => {}
                }
                let resp = send(&gw, &svc, Method::GET, route, &headers);
                assert_eq!(resp.status, 200, "{route} {name}");
                let seen = svc.http.calls_to(ORIGIN).pop().unwrap();
                let all: Vec<_> = seen
                    .headers
                    .iter()
                    .filter(|(n, _)| n.as_str().replace('_', "-") == HEADER)
                    .map(|(_, v)| v.to_str().unwrap().to_string())
                    .collect();
                assert_eq!(all.len(), 1, "{route} {name} {connection:?}: {all:?}");
                assert_ne!(all[0], forged);
                assert!(
                    seen.headers.contains_key(HEADER),
                    "the gateway's own survives"
                );
            }
        }
    }
}

#[test]
fn a_forwarded_preflight_carries_neither_the_callers_copy_nor_an_assertion() {
    let (gw, svc) = (gateway(&vars(&[])), services());
    let resp = send(
        &gw,
        &svc,
        Method::OPTIONS,
        "/public/a",
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "GET"),
            ("x_gateway_assertion", "forged"),
            (HEADER, "forged"),
        ],
    );
    assert_eq!(resp.status, 200);
    let seen = svc.http.calls_to(ORIGIN).pop().unwrap();
    assert!(seen
        .headers
        .keys()
        .all(|n| n.as_str().replace('_', "-") != HEADER));
}

#[test]
fn the_key_set_is_the_gateways_own_answer_never_routed_nor_forwarded() {
    // A catch-all public route: the path would otherwise go to the origin.
    let catch_all = r#"[{ "prefix": "/", "auth": "public" }]"#;
    let two = json!({"keys": [keys()["es256_a"], keys()["ed25519"]]}).to_string();
    let (gw, svc) = (
        gateway(&vars(&[
            ("ROUTES", catch_all.into()),
            ("GATEWAY_SIGNING_KEY", two),
        ])),
        services(),
    );
    let resp = send(&gw, &svc, Method::GET, JWKS_PATH, &[]);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.headers["content-type"], "application/jwk-set+json");
    assert_eq!(resp.headers["cache-control"], "public, max-age=300");
    let set: Value = serde_json::from_slice(&body(&resp)).unwrap();
    let kids: Vec<&str> = set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(
        kids,
        ["gw-es256-a", "gw-ed25519"],
        "every key, the signing one first"
    );
    for k in set["keys"].as_array().unwrap() {
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(k.get(private).is_none(), "no private member {private}");
        }
        assert_eq!(k["use"], "sig");
    }
    let text = String::from_utf8(body(&resp)).unwrap();
    for name in ["es256_a", "ed25519"] {
        let d = keys()[name]["d"].as_str().unwrap().to_string();
        assert!(!text.contains(&d));
    }
    // Dot segments and a HEAD reach the same answer; another method is 405; other paths
    // under the gateway's own prefix are 404. None reaches the origin.
    let head = send(&gw, &svc, Method::HEAD, JWKS_PATH, &[]);
    assert_eq!((head.status, body(&head).len()), (200, 0));
    let dotted = send(
        &gw,
        &svc,
        Method::GET,
        "/.well-known/edge-auth-proxy/x/../jwks.json",
        &[],
    );
    assert_eq!(dotted.status, 200);
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
        let resp = send(&gw, &svc, method.clone(), JWKS_PATH, &[]);
        assert_eq!(resp.status, 405, "{method}");
        assert_eq!(resp.headers["allow"], "GET, HEAD");
    }
    for other in [
        "/.well-known/edge-auth-proxy",
        "/.well-known/edge-auth-proxy/other.json",
    ] {
        assert_eq!(
            send(&gw, &svc, Method::GET, other, &[]).status,
            404,
            "{other}"
        );
    }
    assert!(
        svc.http.calls_to(ORIGIN).is_empty(),
        "the origin saw none of them"
    );
    // The second key is only published: the first signs.
    send(&gw, &svc, Method::GET, "/anything", &[]);
    let (header, _) = checked(&last_assertion(&svc, ORIGIN)[0], &published(&gw, &svc));
    assert_eq!(header["kid"], "gw-es256-a");
}

#[test]
fn without_signing_the_key_set_path_is_404_and_not_forwarded() {
    let catch_all = r#"[{ "prefix": "/", "auth": "public" }]"#;
    let v = vars(&[
        ("ROUTES", catch_all.into()),
        ("GATEWAY_ASSERTION_HEADER", String::new()),
        ("GATEWAY_SIGNING_KEY", String::new()),
    ]);
    let (gw, svc) = (gateway(&v), services());
    let resp = send(&gw, &svc, Method::GET, JWKS_PATH, &[]);
    assert_eq!(resp.status, 404);
    assert_eq!(resp.headers["content-type"], "application/problem+json");
    assert!(svc.http.calls_to(ORIGIN).is_empty());
    // And nothing is signed.
    send(&gw, &svc, Method::GET, "/a", &[(HEADER, "caller's")]);
    let seen = svc.http.calls_to(ORIGIN).pop().unwrap();
    assert_eq!(
        seen.headers[HEADER], "caller's",
        "not the gateway's header then"
    );
}

#[test]
fn an_ed25519_key_signs_eddsa() {
    let v = vars(&[("GATEWAY_SIGNING_KEY", key("ed25519"))]);
    let (gw, svc) = (gateway(&v), services());
    assert_eq!(send(&gw, &svc, Method::GET, "/public/a", &[]).status, 200);
    let (header, claims) = checked(&last_assertion(&svc, ORIGIN)[0], &published(&gw, &svc));
    assert_eq!(
        (header["alg"].as_str(), header["kid"].as_str()),
        (Some("EdDSA"), Some("gw-ed25519"))
    );
    assert_eq!(claims["htm"], "GET");
}

/// The configuration's problems, as the 500's detail names them.
fn problems(extra: &[(&'static str, String)]) -> String {
    let (gw, svc) = (gateway(&vars(extra)), services());
    let resp = send(&gw, &svc, Method::GET, "/public/a", &[]);
    assert_eq!(resp.status, 500, "{extra:?}");
    assert!(svc.http.calls_to(ORIGIN).is_empty());
    let detail: Value = serde_json::from_slice(&body(&resp)).unwrap();
    detail["detail"].as_str().unwrap().to_string()
}

fn with(name: &str, edit: impl Fn(&mut serde_json::Map<String, Value>)) -> String {
    let mut k = keys()[name].as_object().unwrap().clone();
    edit(&mut k);
    Value::Object(k).to_string()
}

#[test]
fn every_unusable_key_is_a_configuration_error_naming_the_setting_not_the_value() {
    let a = keys()["es256_a"].clone();
    let other = keys()["es256_b"].clone();
    let cases: Vec<(String, &str)> = vec![
        (with("es256_a", |k| { k.remove("d"); }), "is a public key"),
        (json!({"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", "kid": "s"}).to_string(), "symmetric"),
        (with("es256_a", |k| { k.insert("alg".into(), "RS256".into()); }), "\"alg\" that does not fit"),
        (with("es256_a", |k| { k.insert("alg".into(), "none".into()); }), "\"alg\" that does not fit"),
        (with("ed25519", |k| { k.insert("alg".into(), "ES256".into()); }), "\"alg\" that does not fit"),
        (with("es256_a", |k| { k.remove("kid"); }), "has no \"kid\""),
        (with("es256_a", |k| { k.insert("kid".into(), "".into()); }), "has no \"kid\""),
        (key("rs256"), "this setting takes an EC P-256 or an Ed25519"),
        (with("es256_a", |k| { k.insert("crv".into(), "P-384".into()); }), "curve other than P-256"),
        (with("es256_a", |k| { k.insert("d".into(), other["d"].clone()); }), "does not match"),
        (with("es256_a", |k| { k.insert("use".into(), "enc".into()); }), "\"use\""),
        ("not json".into(), "is not a JSON object"),
        ("[]".into(), "is not a JSON object"),
        (json!({"keys": []}).to_string(), "non-empty array"),
        (json!({"keys": [a.clone(), a.clone()]}).to_string(), "keys[1]: repeats the kid"),
        (json!({"keys": [a.clone(), with("es256_b", |k| { k.remove("d"); }).parse::<Value>().unwrap()]}).to_string(), "keys[1]: is a public key"),
    ];
    for (value, expected) in cases {
        let detail = problems(&[("GATEWAY_SIGNING_KEY", value.clone())]);
        assert!(detail.contains("GATEWAY_SIGNING_KEY"), "{detail}");
        assert!(detail.contains(expected), "{expected}: {detail}");
        for secret in ["d", "x", "y", "k"] {
            for name in ["es256_a", "es256_b", "ed25519"] {
                if let Some(v) = keys()[name][secret].as_str() {
                    assert!(!detail.contains(v), "the value leaks: {detail}");
                }
            }
        }
    }
}

#[test]
fn the_assertion_settings_need_each_other_and_a_good_issuer_and_header() {
    type Case = (Vec<(&'static str, String)>, &'static str, &'static str);
    let cases: Vec<Case> = vec![
        (
            vec![("GATEWAY_SIGNING_KEY", String::new())],
            "GATEWAY_SIGNING_KEY",
            "must be set with GATEWAY_ASSERTION_HEADER",
        ),
        (
            vec![("GATEWAY_ASSERTION_HEADER", String::new())],
            "GATEWAY_ASSERTION_HEADER",
            "must be set with GATEWAY_SIGNING_KEY",
        ),
        (
            vec![("GATEWAY_ISSUER", "gateway".into())],
            "GATEWAY_ISSUER",
            "",
        ),
        (
            vec![("GATEWAY_ISSUER", "ftp://gw.example".into())],
            "GATEWAY_ISSUER",
            "",
        ),
        (
            vec![("GATEWAY_ISSUER", "https://gw.example/?a=1".into())],
            "GATEWAY_ISSUER",
            "query",
        ),
        (
            vec![("GATEWAY_ASSERTION_HEADER", "authorization".into())],
            "GATEWAY_ASSERTION_HEADER",
            "controls",
        ),
        (
            vec![("GATEWAY_ASSERTION_HEADER", "API_KEY".into())],
            "GATEWAY_ASSERTION_HEADER",
            "controls",
        ),
        (
            vec![("GATEWAY_ASSERTION_HEADER", "bad header".into())],
            "GATEWAY_ASSERTION_HEADER",
            "not a valid header name",
        ),
        (
            vec![
                ("CUSTOMER_ID_HEADER", "x-gateway_assertion".into()),
                ("CUSTOMER_ID_KEY", CUSTOMER_KEY_B64.into()),
            ],
            "GATEWAY_ASSERTION_HEADER",
            "controls",
        ),
        (
            vec![
                ("GATEWAY_ASSERTION_HEADER", String::new()),
                ("GATEWAY_SIGNING_KEY", String::new()),
                ("GATEWAY_ISSUER", "https://gw.example".into()),
            ],
            "GATEWAY_ISSUER",
            "without",
        ),
    ];
    for (extra, setting, expected) in cases {
        let detail = problems(&extra);
        assert!(
            detail.contains(setting) && detail.contains(expected),
            "{extra:?}: {detail}"
        );
    }
}

#[test]
fn the_reference_shows_the_recipes_as_the_tested_files_hold_them() {
    let docs = include_str!("../docs/configuration.md");
    for (fence, file) in [
        (
            "```js\n",
            include_str!("../docs/recipes/gateway-assertion.mjs"),
        ),
        (
            "```python\n",
            include_str!("../docs/recipes/gateway_assertion.py"),
        ),
    ] {
        assert!(
            docs.contains(&format!("{fence}{file}```")),
            "docs/configuration.md must show {fence:?} exactly as the file holds it"
        );
    }
}

/// The seam `private_key_jwt` reuses: RSA (RS256 by default, PS256 when the JWK says so),
/// ES256 and EdDSA keys, signed natively, checked with the key set the seam publishes.
#[test]
fn the_signing_seam_signs_with_rsa_ec_and_ed25519_keys() {
    use edge_auth_proxy::identity::jwt::KeyFamily;
    use edge_auth_proxy::identity::signing::{sign_jwt, SigningKeys};
    let all = [KeyFamily::Rsa, KeyFamily::EcP256, KeyFamily::OkpEd25519];
    let ps256 = with("rs256", |k| {
        k.insert("alg".into(), "PS256".into());
    });
    for (raw, alg) in [
        (key("rs256"), "RS256"),
        (ps256, "PS256"),
        (key("es256_b"), "ES256"),
        (key("ed25519"), "EdDSA"),
    ] {
        let keys = SigningKeys::from_setting("CLIENT_PRIVATE_KEY", &raw, &all).unwrap();
        let claims = json!({"iss": "client-1", "sub": "client-1", "jti": "j"});
        let jws = block_on(sign_jwt(
            &RustCryptoVerifier,
            keys.signing(),
            None,
            claims.as_object().unwrap(),
        ))
        .unwrap();
        let set = KeySet::from_jwks_json(std::str::from_utf8(keys.jwks_json()).unwrap()).unwrap();
        let (header, got) = checked(&jws, &set);
        assert_eq!(header["alg"], alg);
        assert!(header.get("typ").is_none());
        assert_eq!(got, claims);
        let published: Value = serde_json::from_slice(keys.jwks_json()).unwrap();
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(
                published["keys"][0].get(private).is_none(),
                "{alg}: {private}"
            );
        }
    }
    // A setting may refuse a family the seam knows (the assertion takes no RSA key).
    let err = SigningKeys::from_setting("X", &key("rs256"), &[KeyFamily::EcP256]).unwrap_err();
    assert!(
        err.to_string().contains("this setting takes an EC P-256"),
        "{err}"
    );
}
