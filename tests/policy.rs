//! Per-route policy and identity providers: the compiler (every field checked once, errors
//! naming `ROUTES` or `JWT_PROVIDERS`), the matcher (each rule with the case that breaks it),
//! and the whole request path: providers matched by `iss`, per-route requirements on memory
//! hits, `optional` and `report`, claims to headers, CORS preflights.

mod common;

use common::*;
#[path = "fixtures/jwt/support.rs"]
mod support;

use std::collections::HashMap;

use common::FakeHttp;
use edge_auth_proxy::config::{Config, ConfigErrors};
use edge_auth_proxy::identity::claims::Claims;
use edge_auth_proxy::identity::jwt::{JwtError, TokenDigest};
use edge_auth_proxy::identity::policy::{Defaults, Refusal};
use edge_auth_proxy::io::Body;
use edge_auth_proxy::io::{GatewayRequest, GatewayResponse};
use edge_auth_proxy::proxy::log::RequestLog;
use edge_auth_proxy::proxy::route::RouteTable;
use edge_auth_proxy::proxy::Gateway;
use futures::executor::block_on;
use http::{HeaderMap, Method};
use jwt_compact::alg::Es256;
use jwt_compact::{Algorithm, AlgorithmSignature};
use serde_json::{json, Value};
use support::{ec_jwk, new_ec, raw_token, EcSigningKey};

const NOW: u64 = support::NOW;
const ISS: &str = support::ISSUER;

// ---------------------------------------------------------------- the matcher, table-driven

fn claims(v: Value) -> Claims {
    let text = v.to_string();
    match v {
        Value::Object(m) => Claims::new(m, text.len()),
        _ => unreachable!(),
    }
}

/// The policy of a one-route table whose route carries `fields`.
fn policy(fields: Value) -> edge_auth_proxy::identity::policy::Policy {
    let mut route = json!({"prefix": "/p"});
    route
        .as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    let table = RouteTable::parse(&json!([route]).to_string()).unwrap();
    table.routes()[0].requirement.policy.clone()
}

#[test]
fn each_rule_passes_its_case_and_fails_the_case_that_breaks_it() {
    let none = Defaults::default();
    // (route fields, claims that pass, claims that fail, the refusal)
    let table: Vec<(Value, Value, Value, Refusal)> = vec![
        (
            json!({"scopes": ["profile:read"]}),
            json!({"scope": "openid profile:read"}),
            json!({"scope": "openid profile"}),
            Refusal::Scopes,
        ),
        (
            json!({"scopes": ["profile"]}),
            json!({"scope": "profile"}),
            json!({"scope": "profile:read"}),
            Refusal::Scopes,
        ),
        (
            json!({"scopes": ["a", "b"]}),
            json!({"scp": ["a", "b"]}),
            json!({"scp": ["a"]}),
            Refusal::Scopes,
        ),
        (
            json!({"scopes": ["a", "b"]}),
            json!({"scp": "b a"}),
            json!({"scp": "a"}),
            Refusal::Scopes,
        ),
        (
            json!({"claims": {"email_verified": true}}),
            json!({"email_verified": true}),
            json!({"email_verified": "true"}),
            Refusal::Claims,
        ),
        (
            json!({"claims": {"tier": "gold"}}),
            json!({"tier": "gold"}),
            json!({"tier": "Gold"}),
            Refusal::Claims,
        ),
        (
            json!({"claims": {"level": 2}}),
            json!({"level": 2.0}),
            json!({"level": "2"}),
            Refusal::Claims,
        ),
        (
            json!({"claims": {"tier": ["gold", "silver"]}}),
            json!({"tier": "silver"}),
            json!({"tier": "bronze"}),
            Refusal::Claims,
        ),
        (
            json!({"claims": {"org.id": "o-7"}}),
            json!({"org": {"id": "o-7"}}),
            json!({"org": "o-7"}),
            Refusal::Claims,
        ),
        (
            json!({"claims": {"org.unit.id": "u1"}}),
            json!({"org": {"unit": {"id": "u1"}}}),
            json!({"org": {"unit": ["u1"]}}),
            Refusal::Claims,
        ),
        (
            json!({"claims": {"roles": ["admin", "ops"]}}),
            json!({"roles": ["viewer", "ops"]}),
            json!({"roles": ["viewer", "guest"]}),
            Refusal::Claims,
        ),
        (
            json!({"claims": {"roles": "admin"}}),
            json!({"roles": ["admin"]}),
            json!({"roles": []}),
            Refusal::Claims,
        ),
        (
            json!({"claims": {"tier": "gold"}}),
            json!({"tier": "gold"}),
            json!({}),
            Refusal::Claims,
        ),
        (
            json!({"issuers": ["https://a/", "https://b/"]}),
            json!({"iss": "https://b/"}),
            json!({"iss": "https://b"}),
            Refusal::Issuers(JwtError::WrongIssuer),
        ),
        (
            json!({"issuers": ["https://a/"]}),
            json!({"iss": "https://a/"}),
            json!({}),
            Refusal::Issuers(JwtError::MissingClaim("iss")),
        ),
        (
            json!({"audiences": ["api-1", "api-2"]}),
            json!({"aud": ["x", "api-2"]}),
            json!({"aud": ["x", "api-3"]}),
            Refusal::Audiences(JwtError::WrongAudience),
        ),
        (
            json!({"audiences": ["api-1"]}),
            json!({"aud": "api-1"}),
            json!({"aud": 1}),
            Refusal::Audiences(JwtError::InvalidClaim("aud")),
        ),
        (
            json!({"max_lifetime_seconds": 300}),
            json!({"iat": 1000, "exp": 1300}),
            json!({"iat": 1000, "exp": 1301}),
            Refusal::MaxLifetime(JwtError::LifetimeTooLong),
        ),
        (
            json!({"max_lifetime_seconds": 300}),
            json!({"iat": 1000, "exp": 1300}),
            json!({"exp": 1300}),
            Refusal::MaxLifetime(JwtError::MissingClaim("iat")),
        ),
    ];
    for (fields, pass, fail, refusal) in table {
        let p = policy(fields.clone());
        assert_eq!(
            p.check(&claims(pass.clone()), none),
            Ok(()),
            "{fields} {pass}"
        );
        assert_eq!(
            p.check(&claims(fail.clone()), none),
            Err(refusal),
            "{fields} {fail}"
        );
    }
}

#[test]
fn defaults_apply_only_where_the_route_sets_nothing() {
    let issuers = vec!["https://global/".to_string()];
    let audiences = vec!["global-api".to_string()];
    let defaults = Defaults {
        issuers: &issuers,
        audiences: &audiences,
        max_lifetime_secs: Some(60),
    };
    let c = claims(json!({"iss": "https://route/", "aud": "route-api", "iat": 0, "exp": 600}));
    assert_eq!(
        policy(json!({})).check(&c, defaults),
        Err(Refusal::Issuers(JwtError::WrongIssuer))
    );
    let own = policy(json!({"issuers": ["https://route/"], "audiences": ["route-api"]}));
    assert_eq!(
        own.check(&c, defaults),
        Err(Refusal::MaxLifetime(JwtError::LifetimeTooLong)),
        "the route replaced issuers and audiences, not the lifetime"
    );
    let all = policy(
        json!({"issuers": ["https://route/"], "audiences": ["route-api"],
                            "max_lifetime_seconds": 600}),
    );
    assert_eq!(all.check(&c, defaults), Ok(()));
}

#[test]
fn claims_become_header_values_as_the_contract_says() {
    let p = policy(json!({"claims_to_headers": {
        "x-sub": "sub", "x-level": "level", "x-ok": "verified", "x-roles": "roles",
        "x-org": "org.id", "x-absent": "nope", "x-obj": "org", "x-mixed": "mixed",
        "x-ctl": "ctl"
    }}));
    let c = claims(json!({"sub": "u-1", "level": 3, "verified": false,
        "roles": ["a", "b c"], "org": {"id": "o-7"}, "mixed": ["a", 1], "ctl": "a\nb"}));
    let got: HashMap<String, String> = p
        .claim_headers(&c)
        .into_iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    assert_eq!(got["x-sub"], "u-1");
    assert_eq!(got["x-level"], "3");
    assert_eq!(got["x-ok"], "false");
    assert_eq!(got["x-roles"], "a,b c");
    assert_eq!(got["x-org"], "o-7");
    for absent in ["x-absent", "x-obj", "x-mixed", "x-ctl"] {
        assert!(!got.contains_key(absent), "{absent}");
    }
    assert_eq!(got.len(), 5);
}

// ---------------------------------------------------------------- the compiler

#[test]
fn bad_route_policies_are_refused_naming_routes() {
    for bad in [
        json!({"auth": "strict"}),
        json!({"scope": ["a"]}),
        json!({"scopes": "a"}),
        json!({"scopes": ["a", 1]}),
        json!({"scopes": []}),
        json!({"scopes": ["a b"]}),
        json!({"issuers": []}),
        json!({"issuers": "https://a/"}),
        json!({"audiences": [""]}),
        json!({"claims": {}}),
        json!({"claims": {"a": null}}),
        json!({"claims": {"a": {"b": 1}}}),
        json!({"claims": {"a": [[1]]}}),
        json!({"claims": {"a": []}}),
        json!({"claims": {"": "x"}}),
        json!({"max_lifetime_seconds": 0}),
        json!({"max_lifetime_seconds": -1}),
        json!({"max_lifetime_seconds": "60"}),
        json!({"claims_to_headers": {"x bad": "sub"}}),
        json!({"claims_to_headers": {"authorization": "sub"}}),
        json!({"claims_to_headers": {"Customer_Auth": "sub"}}),
        json!({"claims_to_headers": {"api-key": "sub"}}),
        json!({"claims_to_headers": {"x-request-id": "sub"}}),
        json!({"claims_to_headers": {"host": "sub"}}),
        json!({"claims_to_headers": {"connection": "sub"}}),
        json!({"claims_to_headers": {"transfer-encoding": "sub"}}),
        json!({"claims_to_headers": {"x-a": "sub", "x_a": "iss"}}),
        json!({"claims_to_headers": {"x-a": ""}}),
        json!({"claims_to_headers": {"x-a": 1}}),
        json!({"cors_preflight": "allow"}),
        json!({"auth": "public", "claims": {"a": 1}}),
        json!({"auth": "public", "claims_to_headers": {"x-a": "sub"}}),
        json!({"auth": "public", "issuers": ["https://a/"]}),
    ] {
        let mut route = json!({"prefix": "/p"});
        route
            .as_object_mut()
            .unwrap()
            .extend(bad.as_object().unwrap().clone());
        let err = RouteTable::parse(&json!([route]).to_string()).unwrap_err();
        assert_eq!(err.settings(), ["ROUTES"], "{bad}");
    }
    for good in [
        json!({"auth": "optional", "scopes": ["a"]}),
        json!({"auth": "report", "claims": {"a": [1, "x", true]}}),
        json!({"auth": "public", "cors_preflight": "forward"}),
        json!({"auth": "opaque", "claims_to_headers": {"x-sub": "sub"}}),
    ] {
        let mut route = json!({"prefix": "/p"});
        route
            .as_object_mut()
            .unwrap()
            .extend(good.as_object().unwrap().clone());
        RouteTable::parse(&json!([route]).to_string()).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
}

fn base_vars() -> Vec<(String, String)> {
    [
        ("ORIGIN_URL", "https://origin.example"),
        ("TOKEN_URL", "https://idp.example/token"),
        ("CLIENT_ID", "c"),
        ("CLIENT_SECRET", "s"),
        ("API_KEY", "k"),
        ("JWT_ALGORITHMS", "ES256"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn config(extra: &[(&str, String)]) -> Result<Config, ConfigErrors> {
    let mut vars: HashMap<String, String> = base_vars().into_iter().collect();
    for (k, v) in extra {
        vars.insert(k.to_string(), v.clone());
    }
    let get = |n: &str| vars.get(n).cloned();
    Config::from_settings(&get)
}

fn jwks_of(key: &EcSigningKey, kid: &str) -> Value {
    json!({"keys": [ec_jwk(key, json!({"kid": kid}))]})
}

#[test]
fn bad_providers_are_refused_naming_jwt_providers() {
    let key = new_ec();
    let jwks = jwks_of(&key, "a");
    let ok = json!([{"issuer": "https://a/", "jwks": jwks}]);
    config(&[("JWT_PROVIDERS", ok.to_string())]).unwrap();
    // The issuer alone: discovery.
    let discovered = json!([{"issuer": "https://a/"}]);
    config(&[("JWT_PROVIDERS", discovered.to_string())]).unwrap();
    for bad in [
        json!({}),
        json!([]),
        json!([{"jwks": jwks}]),
        json!([{"issuer": "", "jwks": jwks}]),
        // No key source is discovery, which needs an https issuer without query or fragment.
        json!([{"issuer": "http://a.example/"}]),
        json!([{"issuer": "https://a/?x=1"}]),
        json!([{"issuer": "https://a/", "jwks": jwks, "types": []}]),
        json!([{"issuer": "https://a/", "jwks": jwks, "types": ["a b"]}]),
        json!([{"issuer": "https://a/", "jwks": jwks, "leeway_seconds": 3601}]),
        json!([{"issuer": "https://a/", "jwks": jwks, "audience": ["x"]}]),
        json!([{"issuer": "https://a/", "jwks": jwks, "audiences": []}]),
        json!([{"issuer": "https://a/", "jwks": "{}"}]),
        json!([{"issuer": "https://a/", "jwks": {"keys": []}}]),
        json!([{"issuer": "https://a/", "jwks_url": "ftp://k/"}]),
        json!([{"issuer": "https://a/", "jwks": jwks, "algorithms": ["HS256"]}]),
        json!([{"issuer": "https://a/", "jwks": jwks, "algorithms": ["none"]}]),
        json!([{"issuer": "https://a/", "jwks": jwks, "algorithms": ["RS256"]}]),
        json!([{"issuer": "https://a/", "jwks": jwks, "max_lifetime_seconds": 0}]),
        json!([{"issuer": "https://a/", "jwks": jwks}, {"issuer": "https://a/", "jwks": jwks}]),
    ] {
        let err = config(&[("JWT_PROVIDERS", bad.to_string())]).unwrap_err();
        assert_eq!(err.settings(), ["JWT_PROVIDERS"], "{bad}");
        assert!(!err.to_string().contains("https://a/"), "echoed: {err}");
    }
    for flat in [
        "JWT_ISSUER",
        "JWT_AUDIENCE",
        "JWKS_URL",
        "JWT_JWKS",
        "JWT_HMAC_SECRET",
    ] {
        let err = config(&[
            ("JWT_PROVIDERS", ok.to_string()),
            (flat, "https://x.example/".to_string()),
        ])
        .unwrap_err();
        assert_eq!(err.settings(), ["JWT_PROVIDERS"], "{flat}");
    }
    let unknown_issuer = config(&[
        ("JWT_PROVIDERS", ok.to_string()),
        (
            "ROUTES",
            json!([{"prefix": "/", "issuers": ["https://b/"]}]).to_string(),
        ),
    ])
    .unwrap_err();
    assert_eq!(unknown_issuer.settings(), ["ROUTES"]);
    let customer_id = config(&[
        ("JWT_PROVIDERS", ok.to_string()),
        ("CUSTOMER_ID_HEADER", "x-customer-id".into()),
        (
            "CUSTOMER_ID_KEY",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into(),
        ),
        (
            "ROUTES",
            json!([{"prefix": "/", "claims_to_headers": {"x_customer_id": "sub"}}]).to_string(),
        ),
    ])
    .unwrap_err();
    assert_eq!(customer_id.settings(), ["ROUTES"]);
}

#[test]
fn the_memory_key_holds_the_provider() {
    let t = "a.b.c";
    assert!(TokenDigest::for_provider(0, t) == TokenDigest::of(t));
    assert!(TokenDigest::for_provider(1, t) != TokenDigest::for_provider(0, t));
    assert!(TokenDigest::for_provider(1, t) != TokenDigest::for_provider(2, t));
}

// ---------------------------------------------------------------- the request path

struct World {
    gw: Gateway,
    svc: Svc,
    a: EcSigningKey,
    b: EcSigningKey,
}

const A: &str = "https://a.example/";
const B: &str = "https://b.example/";
const B_JWKS: &str = "https://b.example/jwks";

/// Two providers: A with inline keys, B with a `jwks_url`; and the routes given.
fn world(routes: Value) -> World {
    let (a, b) = (new_ec(), new_ec());
    let providers = json!([
        {"issuer": A, "jwks": jwks_of(&a, "a-1"), "audiences": ["api"]},
        {"issuer": B, "jwks_url": B_JWKS, "max_lifetime_seconds": 3600},
    ]);
    let cfg = config(&[
        ("JWT_PROVIDERS", providers.to_string()),
        ("ROUTES", routes.to_string()),
    ]);
    let http = FakeHttp::default();
    let b_jwks = jwks_of(&b, "b-1").to_string();
    http.on(B_JWKS, move |_| {
        Ok((
            200,
            vec![("cache-control", "max-age=300".into())],
            b_jwks.clone().into_bytes(),
        ))
    });
    http.on("https://idp.example/", |_| {
        let body = r#"{"token_type":"Bearer","access_token":"at-1","expires_in":3600}"#;
        Ok((200, vec![], body.as_bytes().to_vec()))
    });
    http.on("https://origin.example/", |_| {
        Ok((200, vec![], b"ok".to_vec()))
    });
    World {
        gw: Gateway::from_config(cfg),
        svc: common::services(http),
        a,
        b,
    }
}

fn es(key: &EcSigningKey, kid: &str, claims: Value) -> String {
    let header = json!({"alg": "ES256", "kid": kid}).to_string();
    raw_token(&header, &claims.to_string(), |m| {
        Es256.sign(key, m).as_bytes().to_vec()
    })
}

fn std_claims(iss: &str, extra: Value) -> Value {
    let mut c =
        json!({"iss": iss, "sub": "cust-1", "aud": "api", "iat": NOW - 5, "exp": NOW + 600});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c.as_object_mut().unwrap().insert(k.clone(), v.clone());
        }
    }
    c
}

impl World {
    fn token_a(&self, extra: Value) -> String {
        es(&self.a, "a-1", std_claims(A, extra))
    }
    fn token_b(&self, extra: Value) -> String {
        es(&self.b, "b-1", std_claims(B, extra))
    }

    fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (GatewayResponse<Vec<u8>>, RequestLog) {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let req = GatewayRequest {
            method,
            path: path.to_string(),
            query: None,
            headers: map,
            body: Body::Empty,
            tls_client_auth: None,
        };
        block_on(self.gw.handle(&self.svc, req))
    }

    fn get(&self, path: &str, token: Option<&str>) -> (GatewayResponse<Vec<u8>>, RequestLog) {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        self.send(Method::GET, path, &headers)
    }

    fn origin_calls(&self) -> Vec<common::Seen> {
        self.svc.http.calls_to("https://origin.example/")
    }
}

#[test]
fn each_token_is_accepted_only_with_its_own_providers_keys() {
    let w = world(json!([{"prefix": "/"}]));
    let (ra, la) = w.get("/x", Some(&w.token_a(json!({}))));
    assert_eq!((ra.status, la.iss.as_deref()), (200, Some(A)));
    let (rb, lb) = w.get("/x", Some(&w.token_b(json!({"aud": null}))));
    assert_eq!((rb.status, lb.iss.as_deref()), (200, Some(B)));
    assert_eq!(lb.jwks, Some("endpoint"));

    // B's key signing a token that says it is A's: checked with A's keys only.
    let forged = es(&w.b, "a-1", std_claims(A, json!({})));
    let (r, log) = w.get("/x", Some(&forged));
    assert_eq!((r.status, log.outcome), (401, "bad_signature"));
    let forged = es(&w.b, "b-1", std_claims(A, json!({})));
    assert_eq!(w.get("/x", Some(&forged)).1.outcome, "unknown_kid");

    let stranger = es(&w.a, "a-1", std_claims("https://c.example/", json!({})));
    assert_eq!(w.get("/x", Some(&stranger)).1.outcome, "wrong_issuer");
    let no_iss = es(&w.a, "a-1", std_claims(A, json!({"iss": null})));
    assert_eq!(w.get("/x", Some(&no_iss)).0.status, 401);

    // The provider's own audiences and lifetime.
    let other_aud = w.token_a(json!({"aud": "elsewhere"}));
    assert_eq!(w.get("/x", Some(&other_aud)).1.outcome, "wrong_audience");
    let long = w.token_b(json!({"exp": NOW + 7200}));
    let (r, log) = w.get("/x", Some(&long));
    assert_eq!(
        (r.status, log.outcome, log.policy),
        (401, "token_lifetime_too_long", Some("max_lifetime"))
    );
    assert_eq!(
        w.origin_calls().len(),
        2,
        "only the two good tokens reached the origin"
    );
}

#[test]
fn a_route_naming_one_provider_refuses_the_other() {
    let w = world(json!([{"prefix": "/b-only", "issuers": [B]}, {"prefix": "/"}]));
    let (r, log) = w.get("/b-only", Some(&w.token_a(json!({}))));
    assert_eq!(
        (r.status, log.outcome, log.policy),
        (401, "wrong_issuer", Some("issuers"))
    );
    assert_eq!(w.get("/b-only", Some(&w.token_b(json!({})))).0.status, 200);
    assert_eq!(w.get("/other", Some(&w.token_a(json!({})))).0.status, 200);
}

#[test]
fn a_memory_hit_still_meets_every_routes_own_requirements() {
    let w = world(json!([
        {"prefix": "/api", "audiences": ["api"]},
        {"prefix": "/admin", "audiences": ["admin-api"]},
        {"prefix": "/scoped", "scopes": ["profile:write"]},
        {"prefix": "/gold", "claims": {"tier": "gold"}},
    ]));
    let token = w.token_a(json!({"scope": "profile:read", "tier": "silver"}));
    let (r, log) = w.get("/api", Some(&token));
    assert_eq!((r.status, log.jwt_check), (200, Some("signature")));
    // Envoy's #24184: the memory must not skip the next route's own audience check.
    let (r, log) = w.get("/admin", Some(&token));
    assert_eq!(
        (r.status, log.jwt_check, log.outcome),
        (401, Some("cache"), "wrong_audience")
    );
    assert_eq!(log.policy, Some("audiences"));
    let (r, log) = w.get("/scoped", Some(&token));
    assert_eq!(
        (r.status, log.jwt_check, log.policy),
        (403, Some("cache"), Some("scopes"))
    );
    assert!(r.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("scope=\"profile:write\""));
    let (r, log) = w.get("/gold", Some(&token));
    assert_eq!(
        (r.status, log.outcome, log.policy),
        (403, "claims_refused", Some("claims"))
    );
    assert_eq!(r.headers["content-type"], "application/problem+json");
    let (r, log) = w.get("/api", Some(&token));
    assert_eq!((r.status, log.jwt_check), (200, Some("cache")));
    assert_eq!(
        w.origin_calls().len(),
        2,
        "no refused request was forwarded"
    );
}

#[test]
fn optional_routes_forward_the_anonymous_and_refuse_a_bad_token() {
    let w = world(json!([{"prefix": "/", "auth": "optional"}]));
    let (r, _) = w.get("/x", None);
    assert_eq!(r.status, 200);
    let seen = w.origin_calls();
    assert_eq!(seen[0].headers["authorization"], "Bearer at-1");
    assert_eq!(seen[0].headers["api-key"], "k");
    assert!(!seen[0].headers.contains_key("customer-auth"));

    let expired = w.token_a(json!({"exp": NOW - 3600, "iat": NOW - 4000}));
    let (r, log) = w.get("/x", Some(&expired));
    assert_eq!((r.status, log.outcome), (401, "token_expired"));
    assert_eq!(w.origin_calls().len(), 1);

    let good = w.token_a(json!({}));
    assert_eq!(w.get("/x", Some(&good)).0.status, 200);
    let seen = w.origin_calls();
    assert_eq!(
        seen[1].headers["customer-auth"],
        format!("JWT {good}").as_str()
    );
}

#[test]
fn report_routes_forward_whatever_the_outcome_and_say_what_would_have_happened() {
    let w = world(json!([{"prefix": "/", "auth": "report", "scopes": ["orders:read"]}]));
    let cases = [
        (None, "missing_token", None),
        (
            Some(w.token_a(json!({"exp": NOW - 3600, "iat": NOW - 4000}))),
            "token_expired",
            None,
        ),
        (
            Some(w.token_a(json!({"scope": "profile"}))),
            "insufficient_scope",
            Some("scopes"),
        ),
        (
            Some(w.token_a(json!({"scope": "orders:read"}))),
            "forwarded",
            None,
        ),
    ];
    for (i, (token, report, policy)) in cases.iter().enumerate() {
        let (r, log) = w.get("/x", token.as_deref());
        assert_eq!((r.status, log.outcome), (200, "forwarded"), "{report}");
        assert_eq!((log.report, log.policy), (Some(*report), *policy));
        let seen = &w.origin_calls()[i];
        assert_eq!(seen.headers["api-key"], "k");
        assert_eq!(
            seen.headers.contains_key("customer-auth"),
            *report == "forwarded",
            "customer-auth only when the token passed: {report}"
        );
    }
}

#[test]
fn claims_go_to_the_origin_and_caller_copies_never_do() {
    let w = world(json!([{"prefix": "/", "claims_to_headers": {
        "x-sub": "sub", "x-roles": "roles", "x-org-id": "org.id", "x-level": "level",
        "x-missing": "nope"
    }}]));
    let token = w.token_a(json!({"roles": ["a", "b"], "org": {"id": "o-7"}, "level": 3}));
    let auth = format!("Bearer {token}");
    let (r, _) = w.send(
        Method::GET,
        "/x",
        &[
            ("authorization", &auth),
            ("x-sub", "forged"),
            ("x_sub", "forged"),
            ("X-Missing", "forged"),
        ],
    );
    assert_eq!(r.status, 200);
    let h = &w.origin_calls()[0].headers;
    assert_eq!(h.get_all("x-sub").iter().collect::<Vec<_>>(), ["cust-1"]);
    assert!(!h.contains_key("x_sub"));
    assert_eq!(h["x-roles"], "a,b");
    assert_eq!(h["x-org-id"], "o-7");
    assert_eq!(h["x-level"], "3");
    assert!(
        !h.contains_key("x-missing"),
        "absent claim: no header, and the caller's removed"
    );
}

#[test]
fn a_cors_preflight_is_forwarded_bare_while_a_plain_options_needs_a_token() {
    let w = world(json!([{"prefix": "/", "cors_preflight": "forward",
                          "claims_to_headers": {"x-sub": "sub"}}]));
    let (r, log) = w.send(
        Method::OPTIONS,
        "/x",
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
            ("authorization", "Bearer caller"),
            ("api_key", "caller"),
            ("x-sub", "forged"),
        ],
    );
    assert_eq!((r.status, log.cors_preflight), (200, Some("forwarded")));
    let seen = w.origin_calls();
    let h = &seen[0].headers;
    for gone in [
        "authorization",
        "customer-auth",
        "api-key",
        "api_key",
        "x-sub",
    ] {
        assert!(!h.contains_key(gone), "{gone} reached the origin");
    }
    assert_eq!(h["origin"], "https://app.example");
    assert!(
        w.svc.http.calls_to("https://idp.example/").is_empty(),
        "no token fetched"
    );

    let (r, log) = w.send(Method::OPTIONS, "/x", &[("origin", "https://app.example")]);
    assert_eq!((r.status, log.outcome), (401, "missing_token"));
    assert_eq!(w.origin_calls().len(), 1);
}

#[test]
fn without_providers_a_route_replaces_the_flat_issuer_and_audience() {
    let secret = support::HMAC_SECRET;
    let routes = json!([
        {"prefix": "/partner", "issuers": ["https://partner.example/"], "audiences": ["partner-api"]},
        {"prefix": "/"}
    ]);
    let cfg = config(&[
        ("JWT_ALGORITHMS", "HS256".into()),
        ("JWT_HMAC_SECRET", secret.into()),
        ("JWT_ISSUER", ISS.into()),
        ("JWT_AUDIENCE", support::AUDIENCE.into()),
        ("ROUTES", routes.to_string()),
    ]);
    let w = World {
        gw: Gateway::from_config(cfg),
        ..world(json!([{"prefix": "/"}]))
    };
    let hs = |iss: &str, aud: &str| {
        support::token(
            "HS256",
            json!({}),
            support::claims(json!({"iss": iss, "aud": aud,
            "iat": NOW - 5, "exp": NOW + 600})),
        )
    };
    let flat = hs(ISS, support::AUDIENCE);
    let partner = hs("https://partner.example/", "partner-api");
    assert_eq!(w.get("/x", Some(&flat)).0.status, 200);
    assert_eq!(w.get("/x", Some(&partner)).1.outcome, "wrong_issuer");
    assert_eq!(w.get("/partner", Some(&partner)).0.status, 200);
    let (r, log) = w.get("/partner", Some(&flat));
    assert_eq!(
        (r.status, log.policy, log.jwt_check),
        (401, Some("issuers"), Some("cache"))
    );
}

#[test]
fn the_scheduled_run_refreshes_each_providers_key_set() {
    let w = world(json!([{"prefix": "/"}]));
    let task = block_on(w.gw.on_schedule(&w.svc));
    assert_eq!(task.jwks, Some("endpoint"));
    assert_eq!(w.svc.http.calls_to(B_JWKS).len(), 1);
    let (r, log) = w.get("/x", Some(&w.token_b(json!({}))));
    assert_eq!(
        (r.status, log.jwks),
        (200, None),
        "the request found B's keys in memory"
    );
    assert_eq!(w.svc.http.calls_to(B_JWKS).len(), 1);
}
