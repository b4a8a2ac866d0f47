//! `TOKEN_CLIENT_AUTH=private_key_jwt` and `TOKEN_PARAMS`, natively, as the token and
//! introspection endpoints receive them: the form (never a client secret, even when one is
//! set), the assertion's header and claims checked against the client's public key, a fresh
//! `jti` per request, `aud` per endpoint or `TOKEN_ASSERTION_AUDIENCE`; and every
//! configuration mistake named without its value.

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
use edge_auth_proxy::proxy::Gateway;
use futures::executor::block_on;
use http::Method;
use serde_json::{json, Map, Value};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const ROUTES: &str = r#"[
  { "prefix": "/session", "auth": "opaque" },
  { "prefix": "/", "auth": "jwt" }
]"#;
/// `TOKEN_URL` with a query, as the harness's endpoints are configured: `aud` drops it.
const TOKEN_URL_Q: &str = "https://idp.example/oauth/access_token?grant_type=client_credentials";

fn keys() -> Value {
    serde_json::from_str(include_str!("fixtures/signing-keys.json")).unwrap()
}

/// Fixture key `name` with `alg` set (or removed when `None`) and `kid` as given.
fn client_key(name: &str, alg: Option<&str>, kid: Option<&str>) -> Map<String, Value> {
    let mut k = keys()[name].as_object().unwrap().clone();
    k.remove("alg");
    k.remove("kid");
    if let Some(alg) = alg {
        k.insert("alg".into(), alg.into());
    }
    if let Some(kid) = kid {
        k.insert("kid".into(), kid.into());
    }
    k
}

fn public_of(k: &Map<String, Value>) -> Value {
    let mut k = k.clone();
    for private in ["d", "p", "q", "dp", "dq", "qi"] {
        k.remove(private);
    }
    Value::Object(k)
}

fn vars(extra: &[(&'static str, String)]) -> HashMap<&'static str, String> {
    let mut vars: HashMap<&str, String> = [
        ("ORIGIN_URL", "https://origin.example/api"),
        ("TOKEN_URL", TOKEN_URL_Q),
        ("CLIENT_ID", "client-1"),
        // Set on purpose: with private_key_jwt it must never be sent.
        ("CLIENT_SECRET", CLIENT_SECRET),
        ("TOKEN_CLIENT_AUTH", "private_key_jwt"),
        ("API_KEY", API_KEY),
        ("JWT_ALGORITHMS", "HS256"),
        ("JWT_HMAC_SECRET", HMAC_SECRET),
        ("JWT_ISSUER", ISSUER),
        ("ROUTES", ROUTES),
        ("INTROSPECTION_URL", INTROSPECT),
        ("SESSION_COOKIE", "sid"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect();
    vars.insert(
        "CLIENT_PRIVATE_KEY",
        Value::Object(client_key("es256_a", Some("ES256"), Some("client-key-1"))).to_string(),
    );
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
    http.on(INTROSPECT, |_| {
        let answer = json!({"active": true, "iss": ISSUER, "sub": "alice", "exp": NOW + 600});
        Ok((200, vec![], answer.to_string().into_bytes()))
    });
    http.on(ORIGIN, |_| Ok((200, vec![], b"{}".to_vec())));
    common::services(http)
}

fn send(gw: &Gateway, svc: &Svc, path: &str, headers: &[(&str, &str)]) -> GatewayResponse<Vec<u8>> {
    let req = common::request(Method::GET, path, headers, Body::Empty);
    block_on(gw.serve_at(svc, req, Some("https://gateway.example"))).response
}

fn get_jwt_route(gw: &Gateway, svc: &Svc) -> GatewayResponse<Vec<u8>> {
    let now = svc.clock.0.get() / 1000;
    let customer = jwt(json!({"iss": ISSUER, "sub": "cust-1", "exp": now + 600}));
    send(
        gw,
        svc,
        "/account",
        &[("customer-auth", &format!("JWT {customer}"))],
    )
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn one<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    let values: Vec<&str> = form
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(values.len(), 1, "{name} exactly once in {form:?}");
    values[0]
}

/// The assertion's header and claims, its signature checked with `public` (the client's
/// public JWK, as the endpoint has it registered).
fn verified(jws: &str, public: &Value) -> (Value, Value) {
    let parts: Vec<&str> = jws.split('.').collect();
    assert_eq!(parts.len(), 3, "a compact JWS");
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    let alg = Alg::from_name(header["alg"].as_str().unwrap()).unwrap();
    let set = KeySet::from_jwks_json(&json!({ "keys": [public] }).to_string()).unwrap();
    let candidates = set.candidates(alg, header["kid"].as_str()).unwrap();
    let input = format!("{}.{}", parts[0], parts[1]);
    assert!(
        candidates
            .iter()
            .any(|k| RustCryptoVerifier.verify_now(alg, k, input.as_bytes(), &sig)),
        "the assertion checks with the client's public key"
    );
    (header, claims)
}

/// Every trace of a client secret in a request the gateway sent as the OAuth client.
fn assert_no_secret(seen: &common::Seen) {
    assert!(seen.headers.get("authorization").is_none(), "no HTTP Basic");
    let body = String::from_utf8_lossy(&seen.body);
    assert!(!body.contains("client_secret"), "{body}");
    assert!(!body.contains(CLIENT_SECRET), "{body}");
}

#[test]
fn every_key_type_signs_a_token_request_with_no_secret_and_the_contract_s_claims() {
    let cases = [
        ("rs256", "RS256", Some("rsa-client")),
        ("rs256", "PS256", None),
        ("es256_a", "ES256", Some("ec-client")),
        ("ed25519", "EdDSA", None),
    ];
    for (name, alg, kid) in cases {
        let key = client_key(name, Some(alg), kid);
        let v = vars(&[("CLIENT_PRIVATE_KEY", Value::Object(key.clone()).to_string())]);
        let (gw, svc) = (gateway(&v), services());
        let resp = get_jwt_route(&gw, &svc);
        assert_eq!(resp.status, 200, "{alg}");
        let calls = svc.http.calls_to("https://idp.example/oauth/");
        assert_eq!(calls.len(), 1);
        let seen = &calls[0];
        assert_eq!(seen.url, TOKEN_URL_Q);
        assert_no_secret(seen);
        let f = form(&seen.body);
        assert_eq!(one(&f, "client_id"), "client-1");
        assert_eq!(one(&f, "client_assertion_type"), ASSERTION_TYPE);
        let (header, claims) = verified(one(&f, "client_assertion"), &public_of(&key));
        assert_eq!(header["alg"], alg);
        assert_eq!(header["typ"], "JWT");
        match kid {
            Some(kid) => assert_eq!(header["kid"], kid),
            None => assert!(header.get("kid").is_none(), "no kid invented: {header}"),
        }
        assert_eq!(claims["iss"], "client-1");
        assert_eq!(claims["sub"], "client-1");
        assert_eq!(
            claims["aud"], TOKEN_URL,
            "the endpoint's URL without its query"
        );
        assert_eq!(claims["iat"], NOW);
        assert_eq!(claims["exp"], NOW + 60);
        let jti = claims["jti"].as_str().unwrap();
        assert_eq!(
            URL_SAFE_NO_PAD.decode(jti).unwrap().len(),
            16,
            "128 random bits"
        );
        let names: Vec<&String> = claims.as_object().unwrap().keys().collect();
        assert_eq!(names.len(), 6, "no claim beyond the contract's: {names:?}");
        // The origin got the endpoint's token.
        let origin = svc.http.calls_to(ORIGIN);
        assert_eq!(origin[0].headers["authorization"], "Bearer at-1");
    }
}

#[test]
fn each_token_request_gets_a_fresh_jti_and_a_fresh_iat() {
    let (gw, svc) = (gateway(&vars(&[])), services());
    assert_eq!(get_jwt_route(&gw, &svc).status, 200);
    // Past the token's life: the gateway asks the endpoint again.
    svc.clock.advance(3_600_000);
    assert_eq!(get_jwt_route(&gw, &svc).status, 200);
    let calls = svc.http.calls_to("https://idp.example/oauth/");
    assert_eq!(calls.len(), 2);
    let public = public_of(&client_key("es256_a", Some("ES256"), Some("client-key-1")));
    let claims: Vec<Value> = calls
        .iter()
        .map(|c| verified(one(&form(&c.body), "client_assertion"), &public).1)
        .collect();
    assert_ne!(claims[0]["jti"], claims[1]["jti"]);
    assert_eq!(claims[0]["iat"], NOW);
    assert_eq!(claims[1]["iat"], NOW + 3_600);
    assert_eq!(claims[1]["exp"], NOW + 3_660);
}

#[test]
fn introspection_is_authenticated_with_an_assertion_for_its_own_url() {
    let (gw, svc) = (gateway(&vars(&[])), services());
    let resp = send(&gw, &svc, "/session/me", &[("cookie", "sid=s-alice")]);
    assert_eq!(resp.status, 200);
    let calls = svc.http.calls_to(INTROSPECT);
    assert_eq!(calls.len(), 1);
    assert_no_secret(&calls[0]);
    let f = form(&calls[0].body);
    assert_eq!(one(&f, "token"), "s-alice");
    assert_eq!(one(&f, "client_id"), "client-1");
    assert_eq!(one(&f, "client_assertion_type"), ASSERTION_TYPE);
    let public = public_of(&client_key("es256_a", Some("ES256"), Some("client-key-1")));
    let (_, claims) = verified(one(&f, "client_assertion"), &public);
    assert_eq!(claims["aud"], INTROSPECT);
    assert_eq!(claims["iss"], "client-1");
    // The token request of the same request had its own assertion.
    let token_call = &svc.http.calls_to("https://idp.example/oauth/")[0];
    let (_, token_claims) = verified(one(&form(&token_call.body), "client_assertion"), &public);
    assert_ne!(token_claims["jti"], claims["jti"]);
    assert!(
        !String::from_utf8_lossy(&calls[0].body).contains("resource"),
        "TOKEN_PARAMS are the token request's only"
    );
}

#[test]
fn token_assertion_audience_is_the_aud_at_both_endpoints() {
    let v = vars(&[("TOKEN_ASSERTION_AUDIENCE", "https://idp.example/".into())]);
    let (gw, svc) = (gateway(&v), services());
    assert_eq!(
        send(&gw, &svc, "/session/me", &[("cookie", "sid=s-alice")]).status,
        200
    );
    let public = public_of(&client_key("es256_a", Some("ES256"), Some("client-key-1")));
    for endpoint in ["https://idp.example/oauth/", INTROSPECT] {
        let call = &svc.http.calls_to(endpoint)[0];
        let (_, claims) = verified(one(&form(&call.body), "client_assertion"), &public);
        assert_eq!(claims["aud"], "https://idp.example/", "{endpoint}");
    }
}

#[test]
fn client_secret_is_not_required_with_private_key_jwt() {
    let v = vars(&[("CLIENT_SECRET", String::new())]);
    let (gw, svc) = (gateway(&v), services());
    assert!(gw.config_error().is_none(), "{:?}", gw.config_error());
    assert_eq!(get_jwt_route(&gw, &svc).status, 200);
}

#[test]
fn token_params_reach_the_token_form_encoded_after_the_standard_ones() {
    let params = "resource=https%3A%2F%2Fa.example%2Fapi&resource=https%3A%2F%2Fb.example&audience=profile+api&x=%26%3D%25";
    for mode in ["private_key_jwt", "client_secret_post"] {
        let v = vars(&[
            ("TOKEN_PARAMS", params.into()),
            ("TOKEN_CLIENT_AUTH", mode.into()),
            ("TOKEN_SCOPE", "orders:read".into()),
            (
                "CLIENT_PRIVATE_KEY",
                if mode == "private_key_jwt" {
                    Value::Object(client_key("es256_a", Some("ES256"), None)).to_string()
                } else {
                    String::new()
                },
            ),
        ]);
        let (gw, svc) = (gateway(&v), services());
        assert_eq!(get_jwt_route(&gw, &svc).status, 200, "{mode}");
        let call = &svc.http.calls_to("https://idp.example/oauth/")[0];
        let f = form(&call.body);
        let names: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            &names[..5],
            ["scope", "resource", "resource", "audience", "x"],
            "{mode}"
        );
        assert_eq!(f[1].1, "https://a.example/api");
        assert_eq!(f[2].1, "https://b.example");
        assert_eq!(f[3].1, "profile api");
        assert_eq!(f[4].1, "&=%", "decoded once, encoded again: no injection");
        let body = String::from_utf8_lossy(&call.body);
        assert!(body.contains("&x=%26%3D%25"), "{body}");
        assert!(!names.contains(&"grant_type"), "TOKEN_URL carries it");
    }
}

#[test]
fn token_params_are_part_of_the_cache_key() {
    let kv_key = |params: &str| {
        let (gw, svc) = (
            gateway(&vars(&[("TOKEN_PARAMS", params.into())])),
            services(),
        );
        assert_eq!(get_jwt_route(&gw, &svc).status, 200);
        let keys: Vec<String> = svc.store.entries.borrow().keys().cloned().collect();
        assert_eq!(keys.len(), 1, "{keys:?}");
        keys[0].clone()
    };
    let none = kv_key("");
    let a = kv_key("resource=https%3A%2F%2Fa.example");
    let b = kv_key("resource=https%3A%2F%2Fb.example");
    assert_ne!(a, b, "another resource is another token");
    assert_ne!(none, a);
    assert!(!a.contains("a.example"));
}

/// The configuration's problems, as the 500's detail names them; nothing was sent anywhere.
fn problems(extra: &[(&'static str, String)]) -> String {
    let (gw, svc) = (gateway(&vars(extra)), services());
    let resp = get_jwt_route(&gw, &svc);
    assert_eq!(resp.status, 500, "{extra:?}");
    assert!(svc.http.seen.borrow().is_empty(), "nothing sent");
    let body = match &resp.body {
        Body::Bytes(b) | Body::Stream(b) => b.clone(),
        Body::Empty => Vec::new(),
    };
    let detail: Value = serde_json::from_slice(&body).unwrap();
    detail["detail"].as_str().unwrap().to_string()
}

fn edited(name: &str, edit: impl Fn(&mut Map<String, Value>)) -> String {
    let mut k = client_key(
        name,
        Some(if name == "ed25519" { "EdDSA" } else { "ES256" }),
        None,
    );
    edit(&mut k);
    Value::Object(k).to_string()
}

#[test]
fn every_unusable_client_key_is_a_configuration_error_naming_the_setting_not_the_value() {
    let es = client_key("es256_a", Some("ES256"), None);
    let cases: Vec<(&'static str, String, &str)> = vec![
        (
            "CLIENT_PRIVATE_KEY",
            edited("es256_a", |k| {
                k.remove("d");
            }),
            "is a public key",
        ),
        (
            "CLIENT_PRIVATE_KEY",
            json!({"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", "alg": "HS256"})
                .to_string(),
            "symmetric",
        ),
        (
            "CLIENT_PRIVATE_KEY",
            edited("es256_a", |k| {
                k.insert("alg".into(), "RS256".into());
            }),
            "\"alg\" that does not fit",
        ),
        (
            "CLIENT_PRIVATE_KEY",
            edited("es256_a", |k| {
                k.insert("alg".into(), "none".into());
            }),
            "\"alg\" that does not fit",
        ),
        (
            "CLIENT_PRIVATE_KEY",
            edited("es256_a", |k| {
                k.insert("alg".into(), "HS256".into());
            }),
            "\"alg\" that does not fit",
        ),
        (
            "CLIENT_PRIVATE_KEY",
            edited("ed25519", |k| {
                k.insert("alg".into(), "ES256".into());
            }),
            "\"alg\" that does not fit",
        ),
        (
            "CLIENT_PRIVATE_KEY",
            Value::Object(client_key("rs256", Some("ES256"), None)).to_string(),
            "\"alg\" that does not fit",
        ),
        (
            "CLIENT_PRIVATE_KEY",
            Value::Object(client_key("rs256", None, None)).to_string(),
            "has no \"alg\"",
        ),
        (
            "CLIENT_PRIVATE_KEY",
            edited("es256_a", |k| {
                k.remove("alg");
            }),
            "has no \"alg\"",
        ),
        (
            "CLIENT_PRIVATE_KEY",
            edited("es256_a", |k| {
                k.insert("kid".into(), "".into());
            }),
            "empty \"kid\"",
        ),
        (
            "CLIENT_PRIVATE_KEY",
            edited("es256_a", |k| {
                k.insert("crv".into(), "P-384".into());
            }),
            "curve other than P-256",
        ),
        (
            "CLIENT_PRIVATE_KEY",
            edited("es256_a", |k| {
                k.insert("d".into(), keys()["es256_b"]["d"].clone());
            }),
            "does not match",
        ),
        (
            "CLIENT_PRIVATE_KEY",
            json!({"keys": [es.clone()]}).to_string(),
            "one private JWK",
        ),
        (
            "CLIENT_PRIVATE_KEY",
            "not json".into(),
            "is not a JSON object",
        ),
        (
            "CLIENT_PRIVATE_KEY",
            String::new(),
            "is required with TOKEN_CLIENT_AUTH=private_key_jwt",
        ),
        (
            "TOKEN_ASSERTION_AUDIENCE",
            "two words".into(),
            "without spaces",
        ),
        ("TOKEN_CLIENT_AUTH", "private_key".into(), "private_key_jwt"),
    ];
    for (setting, value, expected) in cases {
        let detail = problems(&[(setting, value.clone())]);
        assert!(detail.contains(setting), "{detail}");
        assert!(detail.contains(expected), "{expected}: {detail}");
        for name in ["es256_a", "es256_b", "ed25519", "rs256"] {
            for member in ["d", "p", "q", "dp", "dq", "qi", "k"] {
                if let Some(v) = keys()[name][member].as_str() {
                    assert!(!detail.contains(v), "the value leaks: {detail}");
                }
            }
        }
        assert!(!detail.contains("c2VjcmV0"), "{detail}");
    }
}

#[test]
fn a_client_key_without_private_key_jwt_is_refused_not_silently_unused() {
    for (setting, value) in [
        (
            "CLIENT_PRIVATE_KEY",
            Value::Object(client_key("es256_a", Some("ES256"), None)).to_string(),
        ),
        (
            "TOKEN_ASSERTION_AUDIENCE",
            "https://idp.example/".to_string(),
        ),
    ] {
        for mode in ["client_secret_post", "client_secret_basic"] {
            let mut extra = vec![("TOKEN_CLIENT_AUTH", mode.to_string())];
            if setting != "CLIENT_PRIVATE_KEY" {
                extra.push(("CLIENT_PRIVATE_KEY", String::new()));
            }
            extra.push((setting, value.clone()));
            let detail = problems(&extra);
            assert!(
                detail.contains(setting) && detail.contains("is not private_key_jwt"),
                "{mode}: {detail}"
            );
        }
    }
}

#[test]
fn token_params_may_not_set_what_the_gateway_sends_nor_be_malformed() {
    let cases: Vec<(&str, &str)> = vec![
        ("grant_type=password", "\"grant_type\""),
        ("client_id=other", "\"client_id\""),
        ("client_secret=guess", "\"client_secret\""),
        ("client_assertion=x", "\"client_assertion\""),
        ("client_assertion_type=x", "\"client_assertion_type\""),
        (
            "client_assertion_whatever=x",
            "\"client_assertion_whatever\"",
        ),
        ("scope=admin", "\"scope\""),
        ("resource=a&Scope=admin", "\"Scope\""),
        ("GRANT_TYPE=password", "\"GRANT_TYPE\""),
        ("grant%5Ftype=password", "\"grant_type\""),
        ("client%5Fsecret=x", "\"client_secret\""),
        ("resource=%zz", "two hex digits"),
        ("resource=%4", "two hex digits"),
        ("resource=%+1", "two hex digits"),
        ("resource=a%", "two hex digits"),
        ("resource=%C3%28", "UTF-8"),
        ("resource", "name=value"),
        ("=value", "empty name"),
    ];
    for (params, expected) in cases {
        let detail = problems(&[("TOKEN_PARAMS", params.into())]);
        assert!(detail.contains("TOKEN_PARAMS"), "{params}: {detail}");
        assert!(detail.contains(expected), "{params}: {expected}: {detail}");
    }
}

/// A platform whose crypto refuses every key it is asked to sign with (as WebCrypto refuses a
/// key whose private part does not match): verification as usual.
#[derive(Clone, Copy, Default)]
struct RefusingSigner;

impl edge_auth_proxy::identity::jwt::SignatureVerifier for RefusingSigner {
    async fn verify(
        &self,
        alg: Alg,
        key: &edge_auth_proxy::identity::jwt::Key,
        input: &[u8],
        sig: &[u8],
    ) -> bool {
        RustCryptoVerifier.verify_now(alg, key, input, sig)
    }
}

impl edge_auth_proxy::identity::signing::Signer for RefusingSigner {
    async fn sign(
        &self,
        _key: &edge_auth_proxy::identity::signing::SigningKey,
        _input: &[u8],
    ) -> Result<Vec<u8>, edge_auth_proxy::identity::signing::SignError> {
        Err(edge_auth_proxy::identity::signing::SignError(
            "refused".into(),
        ))
    }
}

#[test]
fn a_key_the_platform_cannot_sign_with_sends_nothing_and_names_the_key_to_fix() {
    let gw = gateway(&vars(&[]));
    let base = services();
    let svc = edge_auth_proxy::io::Services {
        http: base.http.clone(),
        store: base.store.clone(),
        clock: base.clock.clone(),
        verifier: RefusingSigner,
        coordinator: edge_auth_proxy::io::NoCoordinator,
        rate_limiters: edge_auth_proxy::io::NoRateLimiters,
        replay_guard: edge_auth_proxy::io::NoReplayGuard,
    };
    let customer = jwt(json!({"iss": ISSUER, "sub": "cust-1", "exp": NOW + 600}));
    let auth = format!("JWT {customer}");
    let req = common::request(
        Method::GET,
        "/account",
        &[("customer-auth", auth.as_str())],
        Body::Empty,
    );
    let served = block_on(gw.serve_at(&svc, req, None));
    assert_eq!(served.response.status, 503);
    assert_eq!(served.log.token_error, Some("token_client_key_unusable"));
    let why = served.log.config_error.unwrap_or_default();
    assert!(why.contains("CLIENT_PRIVATE_KEY"), "{why}");
    let req = common::request(
        Method::GET,
        "/session/me",
        &[("cookie", "sid=s-alice")],
        Body::Empty,
    );
    let served = block_on(gw.serve_at(&svc, req, None));
    assert_eq!(served.response.status, 503);
    assert_eq!(
        served.log.introspection_error,
        Some("introspection_client_key_unusable")
    );
    assert!(base.http.seen.borrow().is_empty(), "no endpoint was called");
}
