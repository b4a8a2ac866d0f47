//! `bind` (object-level authorization) on the whole request path, natively, as an attacker's
//! checklist: a valid token for `alice` tries to reach what is not hers through every way a
//! path segment or a header can be written, and what is hers must still pass. Each refusal is
//! 403 `binding-mismatch` and never reaches the origin.

mod common;

use common::*;

use std::collections::HashMap;

use edge_auth_proxy::io::{Body, GatewayResponse};
use edge_auth_proxy::proxy::log::RequestLog;
use edge_auth_proxy::proxy::Gateway;
use futures::executor::block_on;
use http::Method;
use serde_json::{json, Value};

const ROUTES: &str = r#"[
  { "prefix": "/accounts", "auth": "jwt", "bind": {"path_segment": 2, "claim": "sub"} },
  { "prefix": "/orgs", "auth": "jwt", "bind": {"path_segment": 2, "claim": "orgs"} },
  { "prefix": "/tenant", "auth": "jwt", "bind": {"header": "X-Account-Id", "claim": "accounts"} },
  { "prefix": "/both", "auth": "jwt",
    "bind": [{"path_segment": 2, "claim": "sub"}, {"header": "x-tenant", "claim": "tenant"}] },
  { "prefix": "/maybe", "auth": "optional", "bind": {"path_segment": 2, "claim": "sub"} },
  { "prefix": "/trial", "auth": "report", "bind": {"path_segment": 2, "claim": "sub"} },
  { "prefix": "/scoped", "auth": "jwt", "scopes": ["profile:read"],
    "bind": {"path_segment": 2, "claim": "sub"} },
  { "prefix": "/", "auth": "public" }
]"#;

fn vars() -> HashMap<&'static str, &'static str> {
    [
        ("ORIGIN_URL", "https://origin.example/api"),
        ("TOKEN_URL", TOKEN_URL),
        ("CLIENT_ID", "client-1"),
        ("CLIENT_SECRET", CLIENT_SECRET),
        ("API_KEY", API_KEY),
        ("JWT_ALGORITHMS", "HS256"),
        ("JWT_HMAC_SECRET", HMAC_SECRET),
        ("JWT_ISSUER", ISSUER),
        ("ROUTES", ROUTES),
    ]
    .into_iter()
    .collect()
}

struct World {
    gw: Gateway,
    svc: Svc,
}

fn world() -> World {
    let http = common::token_endpoint_and_origin();
    let gw = gateway(&vars());
    assert!(gw.config_error().is_none(), "{:?}", gw.config_error());
    World {
        gw,
        svc: services(http),
    }
}

fn token(extra: Value) -> String {
    let mut claims = json!({"iss": ISSUER, "sub": "alice", "exp": NOW + 600});
    claims
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    jwt(claims)
}

impl World {
    fn send(&self, path: &str, headers: &[(&str, &str)]) -> (GatewayResponse<Vec<u8>>, RequestLog) {
        block_on(
            self.gw
                .handle(&self.svc, request(Method::GET, path, headers, Body::Empty)),
        )
    }

    /// `path` with `token` in `Authorization` and `headers`.
    fn call(
        &self,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
    ) -> (GatewayResponse<Vec<u8>>, RequestLog) {
        let bearer = format!("Bearer {token}");
        let mut all = vec![("authorization", bearer.as_str())];
        all.extend_from_slice(headers);
        self.send(path, &all)
    }

    fn origin_paths(&self) -> Vec<String> {
        self.svc
            .http
            .calls_to("https://origin.example/")
            .into_iter()
            .map(|s| s.url)
            .collect()
    }
}

fn problem(resp: &GatewayResponse<Vec<u8>>) -> Value {
    match &resp.body {
        Body::Bytes(b) => serde_json::from_slice(b).unwrap(),
        _ => Value::Null,
    }
}

/// 403 `binding-mismatch` with `reason` in the log line, and nothing sent on.
#[track_caller]
fn assert_refused(w: &World, (resp, log): (GatewayResponse<Vec<u8>>, RequestLog), reason: &str) {
    assert_eq!(resp.status, 403, "{:?}", problem(&resp));
    let p = problem(&resp);
    assert!(
        p["type"].as_str().unwrap().ends_with("binding-mismatch"),
        "{p}"
    );
    assert_eq!(log.outcome, "binding_mismatch");
    assert_eq!(log.binding, Some(reason));
    assert!(
        w.origin_paths().is_empty(),
        "forwarded: {:?}",
        w.origin_paths()
    );
}

#[track_caller]
fn assert_forwarded(w: &World, (resp, _): (GatewayResponse<Vec<u8>>, RequestLog), to: &str) {
    assert_eq!(resp.status, 200, "{:?}", problem(&resp));
    assert_eq!(w.origin_paths().last().map(String::as_str), Some(to));
}

#[test]
fn the_path_segment_must_be_the_callers_own() {
    let alice = token(json!({}));
    let w = world();
    assert_forwarded(
        &w,
        w.call("/accounts/alice/profile", &alice, &[]),
        "https://origin.example/api/accounts/alice/profile",
    );
    let w = world();
    assert_refused(&w, w.call("/accounts/bob/profile", &alice, &[]), "mismatch");
}

#[test]
fn percent_encoding_is_decoded_once_on_the_normalized_path() {
    let alice = token(json!({}));
    // `%69` is `i`: the same account, and what the origin receives is the normalized path.
    for path in ["/accounts/al%69ce/profile", "/accounts/%61%6C%69%63%65/x"] {
        let w = world();
        let (resp, _) = w.call(path, &alice, &[]);
        assert_eq!(resp.status, 200, "{path}");
    }
    let w = world();
    assert_forwarded(
        &w,
        w.call("/accounts/al%69ce/profile", &alice, &[]),
        "https://origin.example/api/accounts/alice/profile",
    );
    // Encoded into someone else's id: refused.
    let w = world();
    assert_refused(
        &w,
        w.call("/accounts/b%6Fb/profile", &alice, &[]),
        "mismatch",
    );
    // A non-ASCII id, decoded from its UTF-8 escapes.
    let cafe = token(json!({"sub": "café"}));
    let w = world();
    let (resp, _) = w.call("/accounts/caf%C3%A9/x", &cafe, &[]);
    assert_eq!(resp.status, 200);
}

#[test]
fn an_encoded_slash_never_reaches_the_binding() {
    // `alice%2Fbob` could be one segment here and two at the origin: refused before routing.
    let alice = token(json!({"sub": "alice/bob"}));
    for path in [
        "/accounts/alice%2Fbob/x",
        "/accounts/alice%2fbob/x",
        "/accounts/alice%252Fbob/x",
    ] {
        let w = world();
        let (resp, log) = w.call(path, &alice, &[]);
        assert_eq!(resp.status, 400, "{path}");
        assert!(log.path_problem.is_some(), "{path}");
        assert!(w.origin_paths().is_empty());
    }
}

#[test]
fn dot_segments_are_resolved_before_the_segment_is_read() {
    let alice = token(json!({}));
    // `/accounts/alice/../bob/` is `/accounts/bob/`: bob's, whatever it started as.
    for path in [
        "/accounts/alice/../bob/profile",
        "/accounts/alice/%2E%2E/bob/profile",
        "/accounts/./bob/profile",
        "//accounts//bob/profile",
    ] {
        let w = world();
        assert_refused(&w, w.call(path, &alice, &[]), "mismatch");
    }
    let w = world();
    assert_forwarded(
        &w,
        w.call("/accounts/bob/../alice/profile", &alice, &[]),
        "https://origin.example/api/accounts/alice/profile",
    );
}

#[test]
fn a_missing_segment_is_refused() {
    let alice = token(json!({}));
    for path in ["/accounts", "/accounts/", "/accounts//"] {
        let w = world();
        assert_refused(&w, w.call(path, &alice, &[]), "absent_segment");
    }
}

#[test]
fn ids_compare_exactly() {
    let alice = token(json!({}));
    for path in [
        "/accounts/Alice/profile",
        "/accounts/ALICE/profile",
        "/accounts/alice%20/profile",
        "/accounts/alic/profile",
        "/accounts/alicee/profile",
    ] {
        let w = world();
        assert_refused(&w, w.call(path, &alice, &[]), "mismatch");
    }
}

#[test]
fn array_and_numeric_claims() {
    let member = token(json!({"orgs": ["acme", "beta", 42]}));
    for (path, ok) in [
        ("/orgs/acme/x", true),
        ("/orgs/beta/x", true),
        ("/orgs/42/x", true),
        ("/orgs/gamma/x", false),
        ("/orgs/Acme/x", false),
        ("/orgs/042/x", false),
    ] {
        let w = world();
        let (resp, _) = w.call(path, &member, &[]);
        assert_eq!(resp.status, if ok { 200 } else { 403 }, "{path}");
    }
    let numeric = token(json!({"orgs": 1234}));
    let w = world();
    assert_eq!(w.call("/orgs/1234/x", &numeric, &[]).0.status, 200);
    let w = world();
    assert_refused(&w, w.call("/orgs/1234.0/x", &numeric, &[]), "mismatch");
    // A float has no one decimal text: it binds to nothing.
    let float = token(json!({"orgs": 1.5}));
    let w = world();
    assert_refused(&w, w.call("/orgs/1.5/x", &float, &[]), "mismatch");
}

#[test]
fn a_missing_claim_is_refused() {
    let no_orgs = token(json!({}));
    let w = world();
    assert_refused(&w, w.call("/orgs/acme/x", &no_orgs, &[]), "absent_claim");
    let null = token(json!({"orgs": null}));
    let w = world();
    assert_refused(&w, w.call("/orgs/acme/x", &null, &[]), "absent_claim");
}

#[test]
fn header_bindings_once_and_in_one_spelling() {
    let alice = token(json!({"accounts": ["a-1", "a-2"]}));
    let w = world();
    assert_forwarded(
        &w,
        w.call("/tenant/x", &alice, &[("x-account-id", "a-2")]),
        "https://origin.example/api/tenant/x",
    );
    let cases: [(&[(&str, &str)], &str); 7] = [
        (&[("x-account-id", "a-3")], "mismatch"),
        (&[("x-account-id", "A-1")], "mismatch"),
        (&[], "absent_header"),
        (&[("x-account-id", "")], "absent_header"),
        (
            &[("x-account-id", "a-1"), ("x-account-id", "a-9")],
            "repeated_header",
        ),
        (
            &[("x-account-id", "a-1"), ("x_account_id", "a-9")],
            "repeated_header",
        ),
        (&[("x-account-id", "a-1, a-9")], "repeated_header"),
    ];
    for (headers, reason) in cases {
        let w = world();
        assert_refused(&w, w.call("/tenant/x", &alice, headers), reason);
    }
    // The same id twice is still twice: the origin may read either copy.
    let w = world();
    assert_refused(
        &w,
        w.call(
            "/tenant/x",
            &alice,
            &[("x-account-id", "a-1"), ("x-account-id", "a-1")],
        ),
        "repeated_header",
    );
}

#[test]
fn with_a_list_every_binding_must_hold() {
    let alice = token(json!({"tenant": "t1"}));
    let w = world();
    assert_eq!(
        w.call("/both/alice/x", &alice, &[("x-tenant", "t1")])
            .0
            .status,
        200
    );
    for (path, tenant) in [("/both/bob/x", "t1"), ("/both/alice/x", "t2")] {
        let w = world();
        assert_refused(
            &w,
            w.call(path, &alice, &[("x-tenant", tenant)]),
            "mismatch",
        );
    }
    let w = world();
    assert_refused(&w, w.call("/both/alice/x", &alice, &[]), "absent_header");
}

#[test]
fn optional_routes_refuse_an_anonymous_caller_and_report_routes_report() {
    let w = world();
    assert_refused(&w, w.send("/maybe/alice/x", &[]), "no_identity");
    let alice = token(json!({}));
    let w = world();
    assert_eq!(w.call("/maybe/alice/x", &alice, &[]).0.status, 200);
    let w = world();
    assert_refused(&w, w.call("/maybe/bob/x", &alice, &[]), "mismatch");
    // `report`: forwarded without the identity, and the refusal logged.
    let w = world();
    let (resp, log) = w.call("/trial/bob/x", &alice, &[]);
    assert_eq!(resp.status, 200);
    assert_eq!(log.report, Some("binding_mismatch"));
    assert_eq!(log.binding, Some("mismatch"));
    let sent = w.svc.http.calls_to("https://origin.example/");
    assert!(sent[0].headers.get("customer-auth").is_none());
}

#[test]
fn the_policy_answers_before_the_binding_and_memory_hits_are_bound_too() {
    // No scope: 403 insufficient_scope, whose object it is does not matter yet.
    let alice = token(json!({"scope": "openid"}));
    let w = world();
    let (resp, _) = w.call("/scoped/bob/x", &alice, &[]);
    assert_eq!(resp.status, 403);
    assert!(problem(&resp)["type"]
        .as_str()
        .unwrap()
        .ends_with("insufficient-scope"));
    // One token, two requests on one gateway: the second (a verified-token memory hit) is bound.
    let alice = token(json!({}));
    let w = world();
    assert_eq!(w.call("/accounts/alice/x", &alice, &[]).0.status, 200);
    let (resp, log) = w.call("/accounts/bob/x", &alice, &[]);
    assert_eq!(resp.status, 403);
    assert_eq!(log.binding, Some("mismatch"));
    assert_eq!(w.origin_paths().len(), 1);
}

#[test]
fn bad_bindings_are_configuration_errors_naming_the_route() {
    for (routes, place) in [
        (
            r#"[{"prefix": "/a", "auth": "public", "bind": {"path_segment": 1, "claim": "sub"}}]"#,
            "ROUTES[0].bind:",
        ),
        (
            r#"[{"prefix": "/a", "bind": {"path_segment": 0, "claim": "sub"}}]"#,
            "ROUTES[0].bind.path_segment:",
        ),
        (
            r#"[{"prefix": "/a"}, {"prefix": "/b", "bind": {"header": "x-a", "claim": ""}}]"#,
            "ROUTES[1].bind.claim:",
        ),
        (
            r#"[{"prefix": "/a", "bind": {"header": "bad header", "claim": "sub"}}]"#,
            "ROUTES[0].bind.header:",
        ),
        (
            r#"[{"prefix": "/a", "bind": {"heder": "x-a", "claim": "sub"}}]"#,
            "ROUTES[0].bind:",
        ),
        (
            r#"[{"prefix": "/a", "bind": [{"path_segment": 1, "claim": "sub"}, {"path_segment": 2}]}]"#,
            "ROUTES[0].bind[1].claim:",
        ),
        (r#"[{"prefix": "/a", "bnd": {}}]"#, "ROUTES[0]:"),
    ] {
        let mut v = vars();
        v.insert("ROUTES", routes);
        let gw = gateway(&v);
        let err = gw.config_error().expect(routes).to_string();
        assert!(err.contains(place), "{routes}: {err}");
    }
}
