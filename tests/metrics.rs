//! The `METRICS` data points, natively: the point of each outcome (blob by blob, double by
//! double) as the gateway's own log line makes it, the dependency events beside it, the
//! background runs' points, what is clipped, and an attacker's checklist: a planted value in
//! every place a request, a token answer or a setting can put one, never in any point.

mod common;

use std::cell::RefCell;
use std::collections::HashMap;

use common::{gateway, jwt, request, FakeHttp, HMAC_SECRET, INTROSPECT, ISSUER, NOW, TOKEN_URL};
use edge_auth_proxy::io::{Body, DataPoint, Metrics, RateLimitError, RateLimiters};
use edge_auth_proxy::proxy::log::{RequestLog, TaskLog};
use edge_auth_proxy::proxy::metrics::{
    self, record_request, request_events, request_point, task_points,
};
use edge_auth_proxy::proxy::Gateway;
use futures::executor::block_on;
use http::Method;
use serde_json::json;

const ROUTES: &str = r#"[
  { "prefix": "/public", "auth": "public" },
  { "prefix": "/limited/", "auth": "jwt", "rate_limit": { "binding": "LIMIT", "key": "sub" } },
  { "prefix": "/cors/", "auth": "jwt", "cors_preflight": "forward" },
  { "prefix": "/session/", "auth": "opaque" },
  { "prefix": "/account/", "auth": "jwt" }
]"#;

/// A rate limiter that refuses every request.
#[derive(Default)]
struct Refusing;

impl RateLimiters for Refusing {
    async fn allow(&self, _binding: &str, _key: &str) -> Result<bool, RateLimitError> {
        Ok(false)
    }
}

type Svc = common::Svc<Refusing>;

fn settings(extra: &[(&'static str, &str)]) -> HashMap<&'static str, String> {
    let mut vars: HashMap<&str, String> = [
        ("ORIGIN_URL", "https://origin.example/api"),
        ("TOKEN_URL", TOKEN_URL),
        ("CLIENT_ID", "client-1"),
        ("CLIENT_SECRET", "client-secret-value"),
        ("API_KEY", "api-key-value"),
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
    for (k, v) in extra {
        vars.insert(k, v.to_string());
    }
    vars
}

/// The token endpoint answers `access_token` (or `status` with no token); the introspection
/// endpoint vouches for `good-session` only; the origin answers 200.
fn services(access_token: &str, token_status: u16) -> Svc {
    let http = FakeHttp::default();
    let answer = json!({"token_type": "Bearer", "access_token": access_token, "expires_in": 3600});
    http.on(TOKEN_URL, move |_| match token_status {
        200 => Ok((200, vec![], answer.to_string().into_bytes())),
        status => Ok((status, vec![], b"{}".to_vec())),
    });
    http.on(INTROSPECT, |seen| {
        let token = form_urlencoded::parse(&seen.body)
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let answer = if token == "good-session" {
            json!({"active": true, "iss": ISSUER, "sub": "session-sub", "exp": NOW + 600})
        } else {
            json!({"active": false})
        };
        Ok((200, vec![], answer.to_string().into_bytes()))
    });
    http.on("https://origin.example/", |_| {
        Ok((200, vec![], b"{}".to_vec()))
    });
    common::with_rate_limiters(common::services(http), Refusing)
}

fn good_jwt() -> String {
    jwt(json!({"iss": ISSUER, "sub": "cust-42", "exp": NOW + 600}))
}

fn send(
    gw: &Gateway,
    svc: &Svc,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> RequestLog {
    let (_, log) = block_on(gw.handle(svc, request(method, path, headers, Body::Empty)));
    log
}

/// Records every point written, as the e2e recorder does.
#[derive(Default)]
struct Recorder(RefCell<Vec<Written>>);

/// A point as written: indexes, blobs, doubles.
type Written = (Vec<String>, Vec<String>, Vec<f64>);

impl Metrics for Recorder {
    fn write(&self, p: &DataPoint<'_>) {
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        self.0
            .borrow_mut()
            .push((owned(&p.indexes), owned(&p.blobs), p.doubles.clone()));
    }
}

fn blobs<'a>(p: &'a DataPoint<'_>) -> Vec<&'a str> {
    p.blobs.to_vec()
}

// --------------------------------------------------------------- one point per outcome

#[test]
fn a_forwarded_request_s_point_names_route_identity_token_and_timings() {
    let (gw, svc) = (gateway(&settings(&[])), services("at-1", 200));
    let token = good_jwt();
    let mut log = send(
        &gw,
        &svc,
        Method::POST,
        "/account/get",
        &[("authorization", &format!("Bearer {token}"))],
    );
    log.colo = Some("AMS".into());
    let p = request_point(&log);
    assert_eq!(p.indexes, ["/account/"]);
    assert_eq!(
        blobs(&p),
        [
            "forwarded",
            "/account/",
            "POST",
            "jwt",
            "endpoint",
            "signature",
            ISSUER,
            "AMS",
            "-"
        ]
    );
    assert_eq!(p.doubles.len(), 5);
    assert_eq!(p.doubles[0], 200.0);
    assert_eq!(p.doubles[1], log.total_ms as f64);
    assert_eq!(p.doubles[2], log.token_ms.unwrap() as f64);
    assert_eq!(p.doubles[3], log.origin_ms.unwrap() as f64);
    assert_eq!(
        p.doubles[4],
        log.auth_ms.expect("auth_ms in the log line") as f64
    );

    // The second request: token from memory, the JWT from the verified-token memory.
    let log = send(
        &gw,
        &svc,
        Method::GET,
        "/account/get",
        &[("authorization", &format!("Bearer {token}"))],
    );
    assert_eq!(
        blobs(&request_point(&log)),
        [
            "forwarded",
            "/account/",
            "GET",
            "jwt",
            "memory",
            "cache",
            ISSUER,
            "-",
            "-"
        ]
    );
    assert_eq!(request_events(&log), [], "nothing beyond memory: no event");
}

#[test]
fn a_refused_jwt_names_the_refusal_and_no_token_phase() {
    let (gw, svc) = (gateway(&settings(&[])), services("at-1", 200));
    let expired = jwt(json!({"iss": ISSUER, "sub": "cust-42", "exp": NOW - 3600}));
    let log = send(
        &gw,
        &svc,
        Method::GET,
        "/account/get",
        &[("customer-auth", &format!("JWT {expired}"))],
    );
    let p = request_point(&log);
    assert_eq!(
        blobs(&p),
        [
            "token_expired",
            "/account/",
            "GET",
            "jwt",
            "-",
            "-",
            "-",
            "-",
            "-"
        ]
    );
    assert_eq!(p.doubles[0], 401.0);
    assert_eq!(
        (p.doubles[2], p.doubles[3]),
        (0.0, 0.0),
        "no token, no origin"
    );

    let wrong_iss = jwt(json!({"iss": "https://other.example/", "sub": "x", "exp": NOW + 600}));
    let log = send(
        &gw,
        &svc,
        Method::GET,
        "/account/get",
        &[("customer-auth", &format!("JWT {wrong_iss}"))],
    );
    let p = request_point(&log);
    assert_eq!(p.blobs[0], "wrong_issuer");
    assert_eq!(
        p.blobs[6], "-",
        "an issuer the gateway refused is not written"
    );

    let log = send(&gw, &svc, Method::GET, "/account/get", &[]);
    assert_eq!(
        blobs(&request_point(&log))[..4],
        ["missing_token", "/account/", "GET", "-"]
    );
}

#[test]
fn a_rate_limited_request_says_so_in_outcome_and_reason() {
    let (gw, svc) = (gateway(&settings(&[])), services("at-1", 200));
    let token = good_jwt();
    let log = send(
        &gw,
        &svc,
        Method::GET,
        "/limited/x",
        &[("customer-auth", &format!("JWT {token}"))],
    );
    let p = request_point(&log);
    assert_eq!(p.indexes, ["/limited/"]);
    assert_eq!(
        blobs(&p),
        [
            "rate_limited",
            "/limited/",
            "GET",
            "jwt",
            "-",
            "signature",
            ISSUER,
            "-",
            "limited"
        ]
    );
    assert_eq!(p.doubles[0], 429.0);
}

#[test]
fn a_503_for_the_access_token_names_the_endpoint_s_failure_and_writes_its_event() {
    let (gw, svc) = (gateway(&settings(&[])), services("at-1", 500));
    let token = good_jwt();
    let log = send(
        &gw,
        &svc,
        Method::GET,
        "/account/get",
        &[("customer-auth", &format!("JWT {token}"))],
    );
    let p = request_point(&log);
    assert_eq!(p.doubles[0], 503.0);
    assert_eq!(
        blobs(&p),
        [
            "token_endpoint_status",
            "/account/",
            "GET",
            "jwt",
            "-",
            "signature",
            ISSUER,
            "-",
            "token_endpoint_status"
        ]
    );
    let events = request_events(&log);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].indexes, ["event:token_refresh"]);
    assert_eq!(
        blobs(&events[0]),
        [
            "event:token_refresh",
            "token_endpoint_status",
            "request",
            "endpoint",
            "/account/",
            "-"
        ]
    );
    assert_eq!(events[0].doubles, [503.0, log.token_ms.unwrap() as f64]);
}

#[test]
fn a_configuration_error_is_written_without_a_route() {
    let vars = settings(&[("ROUTES", "[{\"prefix\": 3}]")]);
    let (gw, svc) = (gateway(&vars), services("at-1", 200));
    let log = send(&gw, &svc, Method::GET, "/account/get", &[]);
    let p = request_point(&log);
    assert_eq!(p.indexes, ["-"]);
    assert_eq!(
        blobs(&p),
        ["config_error", "-", "GET", "-", "-", "-", "-", "-", "-"]
    );
    assert_eq!(p.doubles[0], 500.0);
}

#[test]
fn a_forwarded_preflight_and_a_public_request_have_no_identity_and_no_token() {
    let (gw, svc) = (gateway(&settings(&[])), services("at-1", 200));
    let log = send(
        &gw,
        &svc,
        Method::OPTIONS,
        "/cors/x",
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
        ],
    );
    let p = request_point(&log);
    assert_eq!(
        blobs(&p),
        [
            "forwarded",
            "/cors/",
            "OPTIONS",
            "-",
            "-",
            "-",
            "-",
            "-",
            "-"
        ]
    );
    assert_eq!(p.doubles[0], 200.0);
    assert!(log.origin_ms.is_some());

    let log = send(&gw, &svc, Method::GET, "/public/ping", &[]);
    let p = request_point(&log);
    assert_eq!(p.indexes, ["/public"]);
    assert_eq!(
        blobs(&p)[..5],
        ["forwarded", "/public", "GET", "-", "endpoint"]
    );
    assert_eq!(blobs(&p)[5..], ["-", "-", "-", "-"]);

    let log = send(&gw, &svc, Method::GET, "/nowhere", &[]);
    assert_eq!(
        blobs(&request_point(&log)),
        ["no_route", "-", "GET", "-", "-", "-", "-", "-", "-"]
    );
}

#[test]
fn an_opaque_session_writes_its_introspection_call() {
    let (gw, svc) = (gateway(&settings(&[])), services("at-1", 200));
    let log = send(
        &gw,
        &svc,
        Method::GET,
        "/session/me",
        &[("cookie", "sid=good-session")],
    );
    let p = request_point(&log);
    assert_eq!(
        blobs(&p),
        [
            "forwarded",
            "/session/",
            "GET",
            "opaque",
            "endpoint",
            "endpoint",
            ISSUER,
            "-",
            "-"
        ]
    );
    assert_eq!(p.doubles[4], log.auth_ms.unwrap() as f64);
    let events = request_events(&log);
    let names: Vec<&str> = events.iter().map(|e| e.blobs[0]).collect();
    assert_eq!(names, ["event:introspection", "event:token_refresh"]);
    assert_eq!(events[0].blobs[1..4], ["ok", "request", "endpoint"]);

    // Answered from memory the second time: no call, no event.
    let log = send(
        &gw,
        &svc,
        Method::GET,
        "/session/me",
        &[("cookie", "sid=good-session")],
    );
    assert_eq!(request_point(&log).blobs[5], "memory");
    assert_eq!(request_events(&log), []);

    let log = send(
        &gw,
        &svc,
        Method::GET,
        "/session/me",
        &[("cookie", "sid=unknown")],
    );
    assert_eq!(request_point(&log).blobs[0], "identifier_inactive");
    assert_eq!(
        request_events(&log)[0].blobs[..2],
        ["event:introspection", "ok"]
    );
}

#[test]
fn key_set_and_coordinator_events_come_from_the_line_s_fields() {
    let log = RequestLog {
        outcome: "jwks_unreachable",
        status: 503,
        method: "GET".into(),
        route: Some("/account/".into()),
        identity: Some("jwt"),
        jwks: Some("jwks_unreachable"),
        auth_ms: Some(12),
        colo: Some("AMS".into()),
        ..RequestLog::default()
    };
    assert_eq!(request_point(&log).blobs[8], "jwks_unreachable");
    let events = request_events(&log);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].indexes, ["event:jwks_fetch"]);
    assert_eq!(
        blobs(&events[0]),
        [
            "event:jwks_fetch",
            "jwks_unreachable",
            "request",
            "endpoint",
            "/account/",
            "AMS"
        ]
    );
    assert_eq!(events[0].doubles, [503.0, 12.0]);

    let log = RequestLog {
        outcome: "forwarded",
        jwks: Some("kv"),
        coordinator: Some("timeout"),
        token_source: Some("endpoint"),
        token_ms: Some(40),
        ..RequestLog::default()
    };
    let events = request_events(&log);
    let got: Vec<Vec<&str>> = events.iter().map(|e| e.blobs[..4].to_vec()).collect();
    assert_eq!(
        got,
        [
            vec!["event:jwks_fetch", "ok", "request", "kv"],
            vec!["event:coordinator", "timeout", "request", "-"],
            vec!["event:token_refresh", "ok", "request", "endpoint"],
        ]
    );

    let log = RequestLog {
        outcome: "forwarded",
        token_source: Some("coordinator"),
        ..RequestLog::default()
    };
    let got: Vec<(&str, &str)> = request_events(&log)
        .iter()
        .map(|e| (e.blobs[0], e.blobs[1]))
        .collect();
    assert_eq!(
        got,
        [("event:coordinator", "ok"), ("event:token_refresh", "ok")]
    );
}

// --------------------------------------------------------------- background runs

#[test]
fn the_refresh_ahead_and_the_scheduled_run_write_their_events() {
    let (gw, svc) = (gateway(&settings(&[])), services("at-1", 200));
    let log = block_on(gw.on_schedule(&svc));
    let points = task_points(&log);
    assert_eq!(points.len(), 1, "no key set to refresh: JWT_HMAC_SECRET");
    assert_eq!(points[0].indexes, ["event:token_refresh"]);
    assert_eq!(
        blobs(&points[0]),
        [
            "event:token_refresh",
            "ok",
            "scheduled",
            "endpoint",
            "-",
            "-"
        ]
    );
    assert_eq!(points[0].doubles, [0.0, log.total_ms as f64]);
    // Again: the token is fresh, nothing called.
    let log = block_on(gw.on_schedule(&svc));
    assert_eq!(
        task_points(&log)[0].blobs[1..4],
        ["fresh", "scheduled", "-"]
    );

    // The refresh ahead, as the Worker runs it after a request claimed it.
    let (gw, svc) = (gateway(&settings(&[])), services("at-1", 200));
    let token = good_jwt();
    send(
        &gw,
        &svc,
        Method::GET,
        "/account/x",
        &[("customer-auth", &format!("JWT {token}"))],
    );
    svc.clock.advance(3_000_000);
    let served = block_on(gw.serve(
        &svc,
        request(
            Method::GET,
            "/account/x",
            &[(
                "customer-auth",
                format!(
                    "JWT {}",
                    jwt(json!({"iss": ISSUER, "sub": "c", "exp": NOW + 7200}))
                ),
            )],
            Body::Empty,
        ),
    ));
    let job = served.refresh.expect("the refresh ahead is claimed");
    let log = block_on(gw.refresh_ahead(job, &svc));
    assert_eq!(
        blobs(&task_points(&log)[0]),
        ["event:token_refresh", "ok", "ahead", "endpoint", "-", "-"]
    );

    let failed = TaskLog {
        event: "token_refresh",
        token: "failed",
        token_error: Some("token_endpoint_timeout"),
        jwks: None,
        total_ms: 5,
        ..TaskLog::default()
    };
    assert_eq!(task_points(&failed)[0].blobs[1], "token_endpoint_timeout");
    let scheduled = TaskLog {
        event: "scheduled",
        token: "backing_off",
        token_error: Some("token_endpoint_timeout"),
        jwks: Some("jwks_timeout"),
        ..TaskLog::default()
    };
    let got: Vec<Vec<&str>> = task_points(&scheduled)
        .iter()
        .map(|p| p.blobs[..4].to_vec())
        .collect();
    assert_eq!(
        got,
        [
            vec!["event:token_refresh", "backing_off", "scheduled", "-"],
            vec!["event:jwks_fetch", "jwks_timeout", "scheduled", "endpoint"],
        ]
    );
}

// --------------------------------------------------------------- clipping

#[test]
fn the_index_is_cut_to_96_bytes_the_issuer_to_128_and_other_methods_are_other() {
    let route = format!("/{}", "é".repeat(100)); // 201 bytes
    let issuer = format!("https://{}", "i".repeat(300));
    let log = RequestLog {
        outcome: "forwarded",
        method: "PROPFIND".into(),
        route: Some(route.clone()),
        iss: Some(issuer.clone()),
        colo: Some("AMS".into()),
        ..RequestLog::default()
    };
    let p = request_point(&log);
    assert!(p.indexes[0].len() <= metrics::INDEX_BYTES && p.indexes[0].len() >= 95);
    assert!(route.starts_with(p.indexes[0]));
    assert_eq!(p.blobs[1], route, "the route blob holds up to 256 bytes");
    assert_eq!(p.blobs[2], "OTHER");
    assert_eq!(p.blobs[6].len(), metrics::ISSUER_BYTES);
    assert!(issuer.starts_with(p.blobs[6]));

    let longer = format!("/{}", "r".repeat(400));
    let log = RequestLog {
        route: Some(longer),
        ..log
    };
    assert_eq!(request_point(&log).blobs[1].len(), metrics::BLOB_BYTES);
}

// --------------------------------------------------------------- an attacker's checklist

/// Every place a caller, the token endpoint or a setting can put a value: none is ever in a
/// point (index or blob), whatever the outcome.
#[test]
fn no_point_ever_carries_a_token_identifier_sub_secret_customer_id_or_query() {
    const P: &str = "PLANTED";
    let vars = settings(&[
        ("CLIENT_SECRET", "PLANTED-client-secret"),
        ("API_KEY", "PLANTED-api-key"),
        ("CUSTOMER_ID_HEADER", "x-customer-id"),
        (
            "CUSTOMER_ID_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        ),
    ]);
    let gw = gateway(&vars);
    let svc = services("PLANTED-access-token", 200);
    let good = jwt(
        json!({"iss": ISSUER, "sub": "PLANTED-sub", "exp": NOW + 600,
                          "PLANTED-claim": "PLANTED-claim-value", "kid": "x"}),
    );
    let expired = jwt(json!({"iss": ISSUER, "sub": "PLANTED-sub-2", "exp": NOW - 600}));
    let foreign =
        jwt(json!({"iss": "https://PLANTED-issuer/", "sub": "PLANTED-sub-3", "exp": NOW + 600}));
    let unsigned = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJQTEFOVEVEIn0.";
    let recorder = Recorder::default();
    let mut customer_ids = Vec::new();
    let paths = [
        "/account/PLANTED-path?PLANTED-query=PLANTED-value",
        "/limited/PLANTED",
        "/session/PLANTED?access_token=PLANTED",
        "/public/PLANTED?PLANTED",
        "/PLANTED-no-route",
        "/account/%2FPLANTED",
    ];
    let methods = [
        Method::GET,
        Method::POST,
        Method::from_bytes(b"PLANTED").unwrap(),
    ];
    let headers: Vec<Vec<(&str, String)>> = vec![
        vec![("customer-auth", format!("JWT {good}"))],
        vec![
            ("authorization", format!("Bearer {good}")),
            ("x-request-id", "PLANTED-request-id".into()),
        ],
        vec![("cookie", "sid=PLANTED-session; other=PLANTED".into())],
        vec![
            ("cookie", "sid=good-session".into()),
            ("x-customer-id", "PLANTED-customer".into()),
        ],
        vec![("customer-auth", format!("JWT {expired}"))],
        vec![("customer-auth", format!("JWT {foreign}"))],
        vec![("customer-auth", format!("JWT {unsigned}"))],
        vec![("customer-auth", "JWT PLANTED.PLANTED.PLANTED".into())],
        vec![
            ("customer-auth", format!("JWT {good}")),
            ("authorization", "Bearer PLANTED-second".into()),
        ],
        vec![
            ("origin", "https://PLANTED"),
            ("access-control-request-method", "PLANTED"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect(),
        vec![
            ("cf-ray", "PLANTED-AMS".into()),
            ("cf-connecting-ip", "PLANTED".into()),
            ("user-agent", "PLANTED".into()),
        ],
    ];
    let mut n = 0;
    for path in paths {
        for method in &methods {
            for h in &headers {
                let refs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let log = send(&gw, &svc, method.clone(), path, &refs);
                record_request(&recorder, &log);
                n += 1;
            }
        }
    }
    for seen in svc.http.calls_to("https://origin.example/") {
        if let Some(id) = seen.headers.get("x-customer-id") {
            customer_ids.push(id.to_str().unwrap().to_string());
        }
    }
    assert!(
        !customer_ids.is_empty(),
        "a customer id was derived and sent"
    );
    record_request(&recorder, &RequestLog::default());
    metrics::record_task(&recorder, &block_on(gw.on_schedule(&svc)));

    let points = recorder.0.borrow();
    assert!(
        points.len() > n,
        "{} points for {n} requests (events too)",
        points.len()
    );
    let outcomes: std::collections::BTreeSet<&str> =
        points.iter().map(|(_, b, _)| b[0].as_str()).collect();
    for expected in [
        "forwarded",
        "token_expired",
        "wrong_issuer",
        "identifier_inactive",
        "two_identifiers",
        "rate_limited",
        "no_route",
        "invalid_path",
        "event:token_refresh",
        "event:introspection",
    ] {
        assert!(
            outcomes.contains(expected),
            "{expected} not exercised: {outcomes:?}"
        );
    }
    let mut forbidden: Vec<String> = vec![
        P.into(),
        P.to_lowercase(),
        good.clone(),
        good.split('.').nth(1).unwrap().into(),
        "client-secret".into(),
        "good-session".into(),
        "cust-42".into(),
        "at-1".into(),
    ];
    forbidden.extend(customer_ids);
    for (indexes, blobs, _) in points.iter() {
        for value in indexes.iter().chain(blobs) {
            for bad in &forbidden {
                assert!(
                    !value.contains(bad.as_str()),
                    "{bad:?} in a point: {value:?}"
                );
            }
        }
    }
}
