//! A route's `rate_limit`, natively, with fake rate-limiting bindings: over the limit a caller
//! gets 429 problem+json with `Retry-After` and nothing reaches the origin or the token
//! endpoint, while another caller is served; the key is the JWT's `sub` or `client_id`, or the
//! caller's `cf-connecting-ip`; a binding named in `ROUTES` but not bound is a 500 naming
//! `ROUTES`.

mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use common::{FakeClock, FakeHttp, MemoryKv};
use edge_auth_proxy::io::{Body, NoCoordinator, RateLimitError, RateLimiters};
use edge_auth_proxy::jwt::RustCryptoVerifier;
use edge_auth_proxy::proxy::{Gateway, GatewayRequest, Services};
use futures::executor::block_on;
use http::{HeaderMap, Method};
use jwt_compact::alg::{Hs256, Hs256Key};
use jwt_compact::{AlgorithmExt, Claims, Header};
use serde_json::{json, Value};

const NOW_MS: u64 = 1_700_000_000_000;
const NOW: u64 = NOW_MS / 1000;
const HMAC_SECRET: &str = "an-hmac-secret-of-decent-length!";

/// Per binding: its limit, and the count per key.
type Bound = HashMap<String, (u32, HashMap<String, u32>)>;

/// Bindings that allow `limit` requests per key, and remember every key they were asked.
#[derive(Clone, Default)]
struct FakeLimits {
    bound: Rc<RefCell<Bound>>,
    keys: Rc<RefCell<Vec<(String, String)>>>,
    failing: bool,
}

impl FakeLimits {
    fn with(binding: &str, limit: u32) -> Self {
        let me = Self::default();
        me.bound
            .borrow_mut()
            .insert(binding.into(), (limit, HashMap::new()));
        me
    }
}

impl RateLimiters for FakeLimits {
    async fn allow(&self, binding: &str, key: &str) -> Result<bool, RateLimitError> {
        self.keys.borrow_mut().push((binding.into(), key.into()));
        if self.failing {
            return Err(RateLimitError::Failed("limiter down".into()));
        }
        let mut bound = self.bound.borrow_mut();
        let (limit, counts) = bound.get_mut(binding).ok_or(RateLimitError::NotBound)?;
        let n = counts.entry(key.into()).or_default();
        *n += 1;
        Ok(*n <= *limit)
    }
}

type Svc = Services<FakeHttp, MemoryKv, FakeClock, RustCryptoVerifier, NoCoordinator, FakeLimits>;

fn gateway(routes: &str) -> Gateway {
    let vars: HashMap<&str, String> = [
        ("ORIGIN_URL", "https://origin.example".to_string()),
        ("TOKEN_URL", "https://idp.example/oauth/access_token".into()),
        ("CLIENT_ID", "client-1".into()),
        ("CLIENT_SECRET", "client-secret".into()),
        ("API_KEY", "api-key".into()),
        ("JWT_ALGORITHMS", "HS256".into()),
        ("JWT_HMAC_SECRET", HMAC_SECRET.into()),
        ("ROUTES", routes.into()),
    ]
    .into_iter()
    .collect();
    let get = |n: &str| vars.get(n).cloned();
    Gateway::new(&get)
}

fn services(limits: FakeLimits) -> Svc {
    let http = FakeHttp::default();
    http.on("https://idp.example/", |_| {
        let body = r#"{"token_type":"Bearer","access_token":"at-1","expires_in":3600}"#;
        Ok((200, vec![], body.as_bytes().to_vec()))
    });
    http.on("https://origin.example/", |_| {
        Ok((200, vec![], b"{}".to_vec()))
    });
    Services {
        http,
        store: MemoryKv::default(),
        clock: FakeClock::at(NOW_MS),
        verifier: RustCryptoVerifier,
        coordinator: NoCoordinator,
        rate_limiters: limits,
    }
}

fn jwt(claims: Value) -> String {
    let mut claims = claims;
    claims["exp"] = json!(NOW + 600);
    let key = Hs256Key::new(HMAC_SECRET.as_bytes());
    Hs256
        .token(&Header::empty(), &Claims::new(claims), &key)
        .unwrap()
}

fn request(path: &str, headers: &[(&str, String)]) -> GatewayRequest<Vec<u8>> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    GatewayRequest {
        method: Method::GET,
        path: path.into(),
        query: None,
        headers: map,
        body: Body::Empty,
    }
}

fn as_caller(sub: &str) -> Vec<(&'static str, String)> {
    vec![(
        "customer-auth",
        format!(
            "JWT {}",
            jwt(json!({ "sub": sub, "client_id": format!("app-of-{sub}") }))
        ),
    )]
}

fn origin_calls(svc: &Svc) -> usize {
    svc.http.calls_to("https://origin.example/").len()
}

const BY_SUB: &str = r#"[{"prefix": "/account", "rate_limit": {"binding": "PER_CUSTOMER", "key": "sub"}},
                         {"prefix": "/free"}]"#;

#[test]
fn the_limit_reached_by_one_sub_is_429_and_not_forwarded_while_another_sub_is_served() {
    let (gw, svc) = (
        gateway(BY_SUB),
        services(FakeLimits::with("PER_CUSTOMER", 3)),
    );
    for _ in 0..3 {
        let (resp, _) = block_on(gw.handle(&svc, request("/account/x", &as_caller("alice"))));
        assert_eq!(resp.status, 200);
    }
    assert_eq!(origin_calls(&svc), 3);
    let (resp, log) = block_on(gw.handle(&svc, request("/account/x", &as_caller("alice"))));
    assert_eq!(resp.status, 429);
    assert_eq!(resp.headers["content-type"], "application/problem+json");
    assert_eq!(resp.headers["retry-after"], "10");
    assert_eq!(
        (log.outcome, log.rate_limit),
        ("rate_limited", Some("limited"))
    );
    assert_eq!(origin_calls(&svc), 3, "never forwarded");
    // Bob has his own count.
    let (resp, _) = block_on(gw.handle(&svc, request("/account/x", &as_caller("bob"))));
    assert_eq!(resp.status, 200);
    assert_eq!(origin_calls(&svc), 4);
    // A route without a rate limit does not count at all.
    let asked = svc.rate_limiters.keys.borrow().len();
    let (resp, _) = block_on(gw.handle(&svc, request("/free/x", &as_caller("alice"))));
    assert_eq!(resp.status, 200);
    assert_eq!(svc.rate_limiters.keys.borrow().len(), asked);
    // Keys name the kind and the value, never the JWT.
    let keys = svc.rate_limiters.keys.borrow();
    assert!(keys.iter().all(|(b, _)| b == "PER_CUSTOMER"));
    assert!(keys.iter().any(|(_, k)| k == "sub:alice"));
    assert!(keys.iter().all(|(_, k)| !k.contains('.')));
}

#[test]
fn a_caller_over_the_limit_costs_no_token_call() {
    let (gw, svc) = (
        gateway(BY_SUB),
        services(FakeLimits::with("PER_CUSTOMER", 0)),
    );
    let (resp, _) = block_on(gw.handle(&svc, request("/account/x", &as_caller("alice"))));
    assert_eq!(resp.status, 429);
    assert!(
        svc.http.seen.borrow().is_empty(),
        "neither origin nor token endpoint"
    );
}

#[test]
fn an_invalid_jwt_is_refused_before_it_is_counted() {
    let (gw, svc) = (
        gateway(BY_SUB),
        services(FakeLimits::with("PER_CUSTOMER", 1)),
    );
    let forged = vec![("customer-auth", "JWT a.b.c".to_string())];
    let (resp, _) = block_on(gw.handle(&svc, request("/account/x", &forged)));
    assert_eq!(resp.status, 401);
    assert!(svc.rate_limiters.keys.borrow().is_empty());
}

#[test]
fn client_id_and_ip_keys() {
    let routes = r#"[{"prefix": "/app", "rate_limit": {"binding": "PER_APP", "key": "client_id"}},
                     {"prefix": "/login", "auth": "public", "rate_limit": {"binding": "PER_IP", "key": "ip"}}]"#;
    let limits = FakeLimits::with("PER_APP", 1);
    limits
        .bound
        .borrow_mut()
        .insert("PER_IP".into(), (1, HashMap::new()));
    let (gw, svc) = (gateway(routes), services(limits));
    let status = |path: &str, headers: &[(&str, String)]| {
        block_on(gw.handle(&svc, request(path, headers))).0.status
    };
    assert_eq!(status("/app/x", &as_caller("alice")), 200);
    assert_eq!(status("/app/x", &as_caller("alice")), 429);
    assert_eq!(status("/app/x", &as_caller("bob")), 200);
    let from = |ip: &str| vec![("cf-connecting-ip", ip.to_string())];
    assert_eq!(status("/login", &from("203.0.113.7")), 200);
    assert_eq!(status("/login", &from("203.0.113.7")), 429);
    assert_eq!(status("/login", &from("198.51.100.1")), 200);
    let keys = svc.rate_limiters.keys.borrow();
    assert!(keys.contains(&("PER_APP".into(), "client_id:app-of-alice".into())));
    assert!(keys.contains(&("PER_IP".into(), "ip:203.0.113.7".into())));
}

#[test]
fn a_claim_path_key_counts_every_caller_of_one_organisation_together() {
    let routes = r#"[{"prefix": "/org", "rate_limit": {"binding": "PER_ORG", "key": "org.id"}}]"#;
    let (gw, svc) = (gateway(routes), services(FakeLimits::with("PER_ORG", 2)));
    let of = |sub: &str, org: Value| {
        vec![(
            "customer-auth",
            format!("JWT {}", jwt(json!({ "sub": sub, "org": { "id": org } }))),
        )]
    };
    let status = |headers: &[(&str, String)]| {
        block_on(gw.handle(&svc, request("/org/x", headers)))
            .0
            .status
    };
    // Two customers of one organisation share its bucket; another organisation has its own.
    assert_eq!(status(&of("alice", json!("acme"))), 200);
    assert_eq!(status(&of("bob", json!("acme"))), 200);
    assert_eq!(status(&of("carol", json!("acme"))), 429);
    assert_eq!(status(&of("dave", json!("globex"))), 200);
    // A number counts as its JSON text.
    assert_eq!(status(&of("erin", json!(42))), 200);
    let keys = svc.rate_limiters.keys.borrow();
    assert!(keys.contains(&("PER_ORG".into(), "org.id:acme".into())));
    assert!(keys.contains(&("PER_ORG".into(), "org.id:42".into())));
    assert_eq!(
        origin_calls(&svc),
        4,
        "the limited request reached the origin"
    );
}

#[test]
fn a_binding_named_in_routes_but_not_bound_is_a_500_naming_routes() {
    let (gw, svc) = (gateway(BY_SUB), services(FakeLimits::default()));
    let (resp, log) = block_on(gw.handle(&svc, request("/account/x", &as_caller("alice"))));
    assert_eq!(resp.status, 500);
    let body: Value = match &resp.body {
        Body::Bytes(b) => serde_json::from_slice(b).unwrap(),
        _ => panic!("problem+json"),
    };
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("ROUTES") && detail.contains("PER_CUSTOMER"),
        "{detail}"
    );
    assert_eq!(log.outcome, "config_error");
    assert_eq!(origin_calls(&svc), 0);
}

#[test]
fn a_failing_limiter_serves_the_request_and_says_so() {
    let limits = FakeLimits {
        failing: true,
        ..FakeLimits::with("PER_CUSTOMER", 0)
    };
    let (gw, svc) = (gateway(BY_SUB), services(limits));
    let (resp, log) = block_on(gw.handle(&svc, request("/account/x", &as_caller("alice"))));
    assert_eq!(resp.status, 200);
    assert_eq!(log.rate_limit, Some("error"));
}
