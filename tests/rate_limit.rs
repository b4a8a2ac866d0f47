//! A route's `rate_limit`, natively, with fake rate-limiting bindings: over the limit a caller
//! gets 429 problem+json with `Retry-After` and nothing reaches the origin or the token
//! endpoint, while another caller is served; the key is the JWT's `sub` or `client_id`, or the
//! caller's `cf-connecting-ip`; a binding named in `ROUTES` but not bound is a 500 naming
//! `ROUTES`.

mod common;

use common::*;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use common::FakeHttp;
use edge_auth_proxy::io::GatewayRequest;
use edge_auth_proxy::io::{Body, RateLimitError, RateLimiters};
use edge_auth_proxy::proxy::Gateway;
use futures::executor::block_on;
use http::Method;
use serde_json::{json, Value};

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

type Svc = common::Svc<FakeLimits>;

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
    common::with_rate_limiters(common::services(http), limits)
}

/// A customer JWT with `claims` and an `exp` ten minutes ahead.
fn customer_jwt(claims: Value) -> String {
    let mut claims = claims;
    claims["exp"] = json!(NOW + 600);
    jwt(claims)
}

fn get_request(path: &str, headers: &[(&str, String)]) -> GatewayRequest<Vec<u8>> {
    request(Method::GET, path, headers, Body::Empty)
}

fn as_caller(sub: &str) -> Vec<(&'static str, String)> {
    vec![(
        "customer-auth",
        format!(
            "JWT {}",
            customer_jwt(json!({ "sub": sub, "client_id": format!("app-of-{sub}") }))
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
        let (resp, _) = block_on(gw.handle(&svc, get_request("/account/x", &as_caller("alice"))));
        assert_eq!(resp.status, 200);
    }
    assert_eq!(origin_calls(&svc), 3);
    let (resp, log) = block_on(gw.handle(&svc, get_request("/account/x", &as_caller("alice"))));
    assert_eq!(resp.status, 429);
    assert_eq!(resp.headers["content-type"], "application/problem+json");
    assert_eq!(resp.headers["retry-after"], "10");
    assert_eq!(
        (log.outcome, log.rate_limit),
        ("rate_limited", Some("limited"))
    );
    assert_eq!(origin_calls(&svc), 3, "never forwarded");
    // Bob has his own count.
    let (resp, _) = block_on(gw.handle(&svc, get_request("/account/x", &as_caller("bob"))));
    assert_eq!(resp.status, 200);
    assert_eq!(origin_calls(&svc), 4);
    // A route without a rate limit does not count at all.
    let asked = svc.rate_limiters.keys.borrow().len();
    let (resp, _) = block_on(gw.handle(&svc, get_request("/free/x", &as_caller("alice"))));
    assert_eq!(resp.status, 200);
    assert_eq!(svc.rate_limiters.keys.borrow().len(), asked);
    // Keys name the kind, never the JWT or the value in clear.
    let keys = svc.rate_limiters.keys.borrow();
    assert!(keys.iter().all(|(b, _)| b == "PER_CUSTOMER"));
    assert!(keys.iter().all(|(_, k)| k.starts_with("sub:")));
    assert!(keys
        .iter()
        .all(|(_, k)| !k.contains('.') && !k.contains("alice")));
}

#[test]
fn a_caller_over_the_limit_costs_no_token_call() {
    let (gw, svc) = (
        gateway(BY_SUB),
        services(FakeLimits::with("PER_CUSTOMER", 0)),
    );
    let (resp, _) = block_on(gw.handle(&svc, get_request("/account/x", &as_caller("alice"))));
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
    let (resp, _) = block_on(gw.handle(&svc, get_request("/account/x", &forged)));
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
        block_on(gw.handle(&svc, get_request(path, headers)))
            .0
            .status
    };
    assert_eq!(status("/app/x", &as_caller("alice")), 200);
    assert_eq!(status("/app/x", &as_caller("alice")), 429);
    assert_eq!(status("/app/x", &as_caller("bob")), 200);
    let from = |ip: &str| vec![("cf-connecting-ip", ip.to_string())];
    assert_eq!(status("/login", &from("203.0.113.7")), 200);
    assert_eq!(status("/login", &from("203.0.113.7")), 429);
    assert_eq!(status("/login", &from("198.51.100.1")), 200);
    let keys = svc.rate_limiters.keys.borrow();
    assert!(keys
        .iter()
        .any(|(b, k)| b == "PER_APP" && k.starts_with("client_id:")));
    assert!(keys.contains(&("PER_IP".into(), "ip:203.0.113.7".into())));
}

#[test]
fn a_claim_path_key_counts_every_caller_of_one_organisation_together() {
    let routes = r#"[{"prefix": "/org", "rate_limit": {"binding": "PER_ORG", "key": "org.id"}}]"#;
    let (gw, svc) = (gateway(routes), services(FakeLimits::with("PER_ORG", 2)));
    let of = |sub: &str, org: Value| {
        vec![(
            "customer-auth",
            format!(
                "JWT {}",
                customer_jwt(json!({ "sub": sub, "org": { "id": org } }))
            ),
        )]
    };
    let status = |headers: &[(&str, String)]| {
        block_on(gw.handle(&svc, get_request("/org/x", headers)))
            .0
            .status
    };
    // Two customers of one organisation share its bucket; another organisation has its own.
    assert_eq!(status(&of("alice", json!("acme"))), 200);
    assert_eq!(status(&of("bob", json!("acme"))), 200);
    assert_eq!(status(&of("carol", json!("acme"))), 429);
    assert_eq!(status(&of("dave", json!("globex"))), 200);
    // A number counts as its JSON text: 42 and "42" are one organisation.
    assert_eq!(status(&of("erin", json!(42))), 200);
    assert_eq!(status(&of("frank", json!("42"))), 200);
    assert_eq!(status(&of("grace", json!(42))), 429);
    let keys = svc.rate_limiters.keys.borrow();
    assert!(keys.iter().all(|(_, k)| k.starts_with("claim:")));
    assert_eq!(
        origin_calls(&svc),
        5,
        "a limited request reached the origin"
    );
}

#[test]
fn a_binding_named_in_routes_but_not_bound_is_a_500_naming_routes() {
    let (gw, svc) = (gateway(BY_SUB), services(FakeLimits::default()));
    let (resp, log) = block_on(gw.handle(&svc, get_request("/account/x", &as_caller("alice"))));
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
    let (resp, log) = block_on(gw.handle(&svc, get_request("/account/x", &as_caller("alice"))));
    assert_eq!(resp.status, 200);
    assert_eq!(log.rate_limit, Some("error"));
}

// ------------------------------------------------------------------------------------------
// Issue 17: buckets that say whose identity it is, and who is calling

/// A gateway with `extra` settings over the usual ones (no `JWT_ISSUER`: any issuer signed
/// with the key is accepted, so two issuers can name the same `sub`).
fn gateway_with(routes: &str, extra: &[(&str, String)]) -> Gateway {
    let mut vars: HashMap<String, String> = [
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
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in extra {
        vars.insert(k.to_string(), v.clone());
    }
    let get = |n: &str| vars.get(n).cloned();
    Gateway::new(&get)
}

fn send(gw: &Gateway, svc: &Svc, path: &str, headers: &[(&str, String)]) -> u16 {
    block_on(gw.handle(svc, get_request(path, headers)))
        .0
        .status
}

fn from_ip(ip: &str, mut headers: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
    headers.push(("cf-connecting-ip", ip.to_string()));
    headers
}

fn token_of(iss: &str, sub: &str, extra: Value) -> Vec<(&'static str, String)> {
    let mut claims =
        json!({"iss": iss, "sub": sub, "client_id": "shared-app", "org": {"id": "acme"}});
    claims
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    vec![("customer-auth", format!("JWT {}", customer_jwt(claims)))]
}

#[test]
fn the_same_sub_client_id_or_claim_from_two_issuers_is_two_buckets() {
    for key in ["sub", "client_id", "org.id"] {
        let routes =
            format!(r#"[{{"prefix": "/", "rate_limit": {{"binding": "LIMIT", "key": "{key}"}}}}]"#);
        let (gw, svc) = (
            gateway_with(&routes, &[]),
            services(FakeLimits::with("LIMIT", 3)),
        );
        let b_alice = token_of("https://b.example/", "alice", json!({}));
        let a_alice = token_of("https://a.example/", "alice", json!({}));
        for _ in 0..3 {
            assert_eq!(
                send(&gw, &svc, "/x", &from_ip("203.0.113.1", b_alice.clone())),
                200
            );
        }
        assert_eq!(
            send(&gw, &svc, "/x", &b_alice),
            429,
            "{key}: B's alice is over"
        );
        assert_eq!(
            send(&gw, &svc, "/x", &from_ip("203.0.113.1", a_alice.clone())),
            200,
            "{key}: A's alice has her own bucket"
        );
        // An issuer that is a prefix of another, or a value that moves the boundary between
        // issuer and value, is still another bucket.
        let shifted = token_of("https://b.example", "/alice", json!({}));
        assert_eq!(
            send(&gw, &svc, "/x", &shifted),
            200,
            "{key}: shifted boundary"
        );
    }
}

#[test]
fn keys_are_short_and_never_carry_the_token_or_a_long_value_in_clear() {
    let routes = r#"[{"prefix": "/", "rate_limit": {"binding": "LIMIT", "key": "sub"}}]"#;
    let (gw, svc) = (
        gateway_with(routes, &[]),
        services(FakeLimits::with("LIMIT", 9)),
    );
    let long_sub = "s".repeat(400);
    let long_iss = format!("https://{}.example/", "i".repeat(300));
    let caller = token_of(&long_iss, &long_sub, json!({}));
    assert_eq!(send(&gw, &svc, "/x", &caller), 200);
    assert_eq!(send(&gw, &svc, "/x", &caller), 200);
    let keys = svc.rate_limiters.keys.borrow();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], keys[1], "one caller, one key");
    let key = &keys[0].1;
    assert!(key.len() <= 64, "{key}");
    assert!(!key.contains(&long_sub[..40]) && !key.contains("i.example"));
    assert!(!key.contains(&caller[0].1[4..40]));
}

#[test]
fn a_request_without_the_keys_value_is_counted_under_the_callers_ip_never_in_one_bucket() {
    let routes = r#"[
      {"prefix": "/report", "auth": "report", "rate_limit": {"binding": "LIMIT", "key": "sub"}},
      {"prefix": "/optional", "auth": "optional", "rate_limit": {"binding": "LIMIT", "key": "client_id"}},
      {"prefix": "/org", "rate_limit": {"binding": "LIMIT", "key": "org.id"}}
    ]"#;
    let (gw, svc) = (
        gateway_with(routes, &[]),
        services(FakeLimits::with("LIMIT", 2)),
    );
    let anonymous = |ip: &str| from_ip(ip, vec![]);
    let no_org = |ip: &str| {
        let mut h = token_of("https://a.example/", "bob", json!({}));
        h[0].1 = format!(
            "JWT {}",
            customer_jwt(json!({"iss": "https://a.example/", "sub": "bob"}))
        );
        from_ip(ip, h)
    };
    // Both routes count in one binding: each takes its own addresses.
    for (n, path) in ["/report/x", "/optional/x"].into_iter().enumerate() {
        // Anonymous traffic from many addresses never produces a 429 for anyone.
        for i in 0..6 {
            let ip = format!("198.51.10{n}.{i}");
            assert_eq!(send(&gw, &svc, path, &anonymous(&ip)), 200, "{path} {ip}");
        }
        // One address is limited like one identity, and only that address.
        let ip = format!("203.0.113.{n}");
        assert_eq!(send(&gw, &svc, path, &anonymous(&ip)), 200);
        assert_eq!(send(&gw, &svc, path, &anonymous(&ip)), 200);
        assert_eq!(send(&gw, &svc, path, &anonymous(&ip)), 429, "{path}");
        assert_eq!(
            send(&gw, &svc, path, &anonymous("203.0.113.10")),
            200,
            "{path}"
        );
        // A report route's failing token has no identity either.
        if path == "/report/x" {
            let bad = from_ip("192.0.2.1", vec![("customer-auth", "JWT a.b.c".into())]);
            assert_eq!(send(&gw, &svc, path, &bad), 200);
        }
    }
    // A verified identity without the claim.
    assert_eq!(send(&gw, &svc, "/org/x", &no_org("192.0.2.7")), 200);
    assert_eq!(send(&gw, &svc, "/org/x", &no_org("192.0.2.7")), 200);
    assert_eq!(send(&gw, &svc, "/org/x", &no_org("192.0.2.7")), 429);
    assert_eq!(send(&gw, &svc, "/org/x", &no_org("192.0.2.8")), 200);
    // An identity's bucket and an address's bucket are different buckets.
    let keys = svc.rate_limiters.keys.borrow();
    assert!(
        keys.iter().all(|(_, k)| !k.ends_with(':')),
        "no empty value: {keys:?}"
    );
}

#[test]
fn without_the_value_or_an_address_requests_share_the_no_address_bucket_and_say_so() {
    let routes = r#"[{"prefix": "/", "auth": "optional", "rate_limit": {"binding": "LIMIT", "key": "sub"}}]"#;
    let (gw, svc) = (
        gateway_with(routes, &[]),
        services(FakeLimits::with("LIMIT", 2)),
    );
    let (resp, log) = block_on(gw.handle(&svc, get_request("/x", &[])));
    assert_eq!((resp.status, log.rate_key), (200, Some("no_address")));
    assert_eq!(send(&gw, &svc, "/x", &[]), 200);
    assert_eq!(send(&gw, &svc, "/x", &[]), 429);
    // An address is its own bucket.
    assert_eq!(send(&gw, &svc, "/x", &from_ip("203.0.113.1", vec![])), 200);
    let (_, log) = block_on(gw.handle(&svc, get_request("/x", &from_ip("203.0.113.2", vec![]))));
    assert_eq!(log.rate_key, Some("ip"));
    let (_, log) = block_on(gw.handle(&svc, get_request("/x", &as_caller("alice"))));
    assert_eq!(log.rate_key, None, "counted by its own value");
}

#[test]
fn an_ip_limit_is_counted_before_a_token_is_verified() {
    let routes = r#"[{"prefix": "/", "rate_limit": {"binding": "PER_IP", "key": "ip"}}]"#;
    let (gw, svc) = (
        gateway_with(routes, &[]),
        services(FakeLimits::with("PER_IP", 3)),
    );
    let forged = |i: usize| {
        from_ip(
            "203.0.113.66",
            vec![(
                "customer-auth",
                format!("JWT eyJhbGciOiJIUzI1NiJ9.e30.forged{i}"),
            )],
        )
    };
    let statuses: Vec<u16> = (0..10).map(|i| send(&gw, &svc, "/x", &forged(i))).collect();
    assert_eq!(statuses, [401, 401, 401, 429, 429, 429, 429, 429, 429, 429]);
    // Another address is not affected, and a good token from it is served.
    assert_eq!(
        send(
            &gw,
            &svc,
            "/x",
            &from_ip("198.51.100.1", as_caller("alice"))
        ),
        200
    );
    // Not bound: found before anything is verified.
    let (gw, svc) = (gateway_with(routes, &[]), services(FakeLimits::default()));
    let (resp, log) = block_on(gw.handle(&svc, get_request("/x", &[])));
    assert_eq!((resp.status, log.outcome), (500, "config_error"));
}

#[test]
fn an_ip_limit_throttles_random_session_ids_before_introspection() {
    let routes =
        r#"[{"prefix": "/s", "auth": "opaque", "rate_limit": {"binding": "PER_IP", "key": "ip"}}]"#;
    let gw = gateway_with(
        routes,
        &[
            ("INTROSPECTION_URL", "https://idp.example/introspect".into()),
            ("SESSION_COOKIE", "sid".into()),
        ],
    );
    let svc = services(FakeLimits::with("PER_IP", 5));
    svc.http.on("https://idp.example/introspect", |_| {
        Ok((200, vec![], br#"{"active": false}"#.to_vec()))
    });
    let mut limited = 0;
    for i in 0..200 {
        let cookie = vec![("cookie", format!("sid=random-{i:04}"))];
        match send(&gw, &svc, "/s/x", &from_ip("203.0.113.77", cookie)) {
            401 => {}
            429 => limited += 1,
            other => panic!("{other}"),
        }
    }
    assert_eq!(limited, 195);
    assert_eq!(
        svc.http.calls_to("https://idp.example/introspect").len(),
        5,
        "200 random identifiers from one address cost 5 introspection calls"
    );
}

#[test]
fn preflights_are_counted_by_the_routes_limit() {
    let routes = r#"[
      {"prefix": "/ip", "cors_preflight": "forward", "rate_limit": {"binding": "LIMIT", "key": "ip"}},
      {"prefix": "/sub", "cors_preflight": "forward", "rate_limit": {"binding": "LIMIT", "key": "sub"}}
    ]"#;
    for path in ["/ip/x", "/sub/x"] {
        let (gw, svc) = (
            gateway_with(routes, &[]),
            services(FakeLimits::with("LIMIT", 2)),
        );
        let preflight = |ip: &str| {
            let mut r = get_request(
                path,
                &from_ip(
                    ip,
                    vec![
                        ("origin", "https://app.example".into()),
                        ("access-control-request-method", "POST".into()),
                    ],
                ),
            );
            r.method = Method::OPTIONS;
            block_on(gw.handle(&svc, r))
        };
        let (r, log) = preflight("203.0.113.5");
        assert_eq!(
            (r.status, log.cors_preflight),
            (200, Some("forwarded")),
            "{path}"
        );
        assert_eq!(preflight("203.0.113.5").0.status, 200);
        let (r, log) = preflight("203.0.113.5");
        assert_eq!((r.status, log.outcome), (429, "rate_limited"), "{path}");
        assert_eq!(origin_calls(&svc), 2, "{path}: the third was not forwarded");
        assert_eq!(preflight("198.51.100.5").0.status, 200, "{path}");
    }
}
