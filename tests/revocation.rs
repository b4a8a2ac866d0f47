//! Revocation, as an attacker's checklist, natively with a clock the test moves: a provider's
//! `introspect` (RFC 7662 asked about each verified JWT, the answer remembered by digest for at
//! most `max_age_seconds` and the token's life, a remembered answer serving while the endpoint
//! is down, 503 without one) and the subject-wide cut-off in KV (`revoked:v1:<digest>`, read
//! through a memory of at most 60 s, 503 when KV fails and nothing was read before).

mod common;

use common::*;
#[path = "fixtures/jwt/support.rs"]
mod support;

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use edge_auth_proxy::io::{Body, GatewayResponse, HttpError};
use edge_auth_proxy::proxy::log::RequestLog;
use edge_auth_proxy::proxy::Gateway;
use futures::executor::block_on;
use http::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The provider's RFC 7662 endpoint.
const REVOKE_URL: &str = "https://idp.example/jwt-introspect";
const SUB: &str = "cust-1";

fn providers(introspect: Option<Value>, leeway: u64) -> String {
    let mut p = json!({
        "issuer": ISSUER,
        "jwks": {"keys": [support::ec_jwk(support::ec(), json!({"kid": "ec-1"}))]},
        "leeway_seconds": leeway,
    });
    if let Some(i) = introspect {
        p["introspect"] = i;
    }
    json!([p]).to_string()
}

fn vars_with(providers: &str) -> HashMap<&str, String> {
    [
        ("ORIGIN_URL", "https://origin.example/api"),
        ("TOKEN_URL", TOKEN_URL),
        ("CLIENT_ID", "client-1"),
        ("CLIENT_SECRET", CLIENT_SECRET),
        ("API_KEY", API_KEY),
        ("JWT_ALGORITHMS", "ES256"),
        ("JWT_PROVIDERS", providers),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect()
}

/// What the fake endpoint answers: `Some(active)`, or `None` for "down".
#[derive(Clone)]
struct Endpoint {
    answer: Rc<Cell<Option<bool>>>,
}

fn world_with(introspect: Option<Value>, leeway: u64) -> (Gateway, Svc, Endpoint) {
    let gw = gateway(&vars_with(&providers(introspect, leeway)));
    assert!(gw.config_error().is_none(), "{:?}", gw.config_error());
    let http = FakeHttp::default();
    http.on(TOKEN_URL, |_| {
        let body = r#"{"token_type":"Bearer","access_token":"at-1","expires_in":3600}"#;
        Ok((200, vec![], body.as_bytes().to_vec()))
    });
    http.on("https://origin.example/", |_| {
        Ok((200, vec![], b"{}".to_vec()))
    });
    let endpoint = Endpoint {
        answer: Rc::new(Cell::new(Some(true))),
    };
    let answer = endpoint.answer.clone();
    http.on(REVOKE_URL, move |_| match answer.get() {
        Some(active) => Ok((
            200,
            vec![("content-type", "application/json".into())],
            json!({"active": active}).to_string().into_bytes(),
        )),
        None => Err(HttpError::Unreachable("connection refused".into())),
    });
    (gw, services(http), endpoint)
}

/// A gateway whose provider introspects, with `max_age_seconds` 60.
fn world() -> (Gateway, Svc, Endpoint) {
    world_with(Some(json!({"url": REVOKE_URL, "max_age_seconds": 60})), 0)
}

/// A customer JWT signed ES256 with the provider's key.
fn jwt(claims: Value) -> String {
    support::token("ES256", json!({"kid": "ec-1"}), claims)
}

fn token_at(iat: Option<u64>, exp: u64) -> String {
    let mut claims = json!({"iss": ISSUER, "sub": SUB, "exp": exp});
    if let Some(iat) = iat {
        claims["iat"] = iat.into();
    }
    jwt(claims)
}

fn token() -> String {
    token_at(Some(NOW - 10), NOW + 3600)
}

struct Sent {
    resp: GatewayResponse<Vec<u8>>,
    log: RequestLog,
}

fn send(gw: &Gateway, svc: &Svc, token: &str) -> Sent {
    let auth = format!("Bearer {token}");
    let req = request(
        Method::GET,
        "/orders",
        &[("authorization", auth.as_str())],
        Body::Empty,
    );
    let served = block_on(gw.serve(svc, req));
    Sent {
        resp: served.response,
        log: served.log,
    }
}

fn calls(svc: &Svc) -> usize {
    svc.http.calls_to(REVOKE_URL).len()
}

fn origin_calls(svc: &Svc) -> usize {
    svc.http.calls_to("https://origin.example/").len()
}

fn problem(resp: &GatewayResponse<Vec<u8>>) -> Value {
    match &resp.body {
        Body::Bytes(b) => serde_json::from_slice(b).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

fn header(resp: &GatewayResponse<Vec<u8>>, name: &str) -> String {
    resp.headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[track_caller]
fn assert_revoked(sent: &Sent, outcome: &str) {
    assert_eq!(sent.resp.status, 401, "{}", problem(&sent.resp));
    assert_eq!(sent.log.outcome, outcome);
    assert_eq!(problem(&sent.resp)["detail"], "The token has been revoked.");
    let challenge = header(&sent.resp, "www-authenticate");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
}

/// Nothing the gateway keeps or says holds the token: not KV keys or values, not the log line.
#[track_caller]
fn assert_token_nowhere(svc: &Svc, sent: &Sent, token: &str) {
    let digest = URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()));
    let signature = token.rsplit('.').next().unwrap();
    for (k, (v, _)) in svc.store.entries.borrow().iter() {
        for needle in [token, signature, digest.as_str()] {
            assert!(!k.contains(needle) && !v.contains(needle), "in KV: {k}");
        }
    }
    let line = sent.log.to_json();
    assert!(!line.contains(signature), "in the log line: {line}");
    let body = String::from_utf8_lossy(match &sent.resp.body {
        Body::Bytes(b) => b,
        _ => &[],
    })
    .to_string();
    assert!(!body.contains(signature));
}

// --- introspection ---------------------------------------------------------------------------

#[test]
fn a_token_the_endpoint_calls_inactive_is_refused_and_not_forwarded() {
    let (gw, svc, endpoint) = world();
    endpoint.answer.set(Some(false));
    let sent = send(&gw, &svc, &token());
    assert_revoked(&sent, "token_revoked");
    assert_eq!(origin_calls(&svc), 0);
    assert_eq!(calls(&svc), 1);
    assert_token_nowhere(&svc, &sent, &token());
}

#[test]
fn an_active_token_passes_and_the_endpoint_is_asked_as_rfc_7662_says() {
    let (gw, svc, _) = world();
    let t = token();
    let sent = send(&gw, &svc, &t);
    assert_eq!(sent.resp.status, 200, "{}", problem(&sent.resp));
    assert_eq!(sent.log.introspection, Some("endpoint"));
    let seen = &svc.http.calls_to(REVOKE_URL)[0];
    assert_eq!(seen.method, Method::POST);
    let form: HashMap<String, String> = form_urlencoded::parse(&seen.body).into_owned().collect();
    assert_eq!(form["token"], t);
    // TOKEN_CLIENT_AUTH's default: the client in the body.
    assert_eq!(form["client_id"], "client-1");
    assert_eq!(form["client_secret"], CLIENT_SECRET);
    assert_token_nowhere(&svc, &sent, &t);
}

#[test]
fn the_answer_is_remembered_one_call_for_many_requests() {
    let (gw, svc, _) = world();
    for _ in 0..5 {
        let sent = send(&gw, &svc, &token());
        assert_eq!(sent.resp.status, 200);
        svc.clock.advance(10_000);
    }
    assert_eq!(calls(&svc), 1, "within max_age_seconds, memory answers");
}

#[test]
fn a_revocation_takes_effect_within_max_age_seconds() {
    let (gw, svc, endpoint) = world();
    assert_eq!(send(&gw, &svc, &token()).resp.status, 200);
    endpoint.answer.set(Some(false));
    svc.clock.advance(59_000);
    let sent = send(&gw, &svc, &token());
    assert_eq!(sent.resp.status, 200, "remembered for up to 60 s");
    assert_eq!(sent.log.introspection, Some("memory"));
    svc.clock.advance(1_000);
    assert_revoked(&send(&gw, &svc, &token()), "token_revoked");
    assert_eq!(calls(&svc), 2);
}

#[test]
fn the_answer_is_not_remembered_past_the_tokens_exp() {
    // A leeway lets the token pass validation 15 s after its `exp`; the answer must not.
    let (gw, svc, endpoint) =
        world_with(Some(json!({"url": REVOKE_URL, "max_age_seconds": 600})), 30);
    let t = token_at(Some(NOW - 10), NOW + 10);
    assert_eq!(send(&gw, &svc, &t).resp.status, 200);
    svc.clock.advance(5_000);
    assert_eq!(send(&gw, &svc, &t).resp.status, 200);
    assert_eq!(calls(&svc), 1);
    endpoint.answer.set(Some(false));
    svc.clock.advance(10_000);
    assert_revoked(&send(&gw, &svc, &t), "token_revoked");
    assert_eq!(calls(&svc), 2, "asked again once the token's exp passed");
}

#[test]
fn endpoint_down_a_remembered_answer_serves() {
    let (gw, svc, endpoint) = world();
    assert_eq!(send(&gw, &svc, &token()).resp.status, 200);
    endpoint.answer.set(None);
    svc.clock.advance(30_000);
    let sent = send(&gw, &svc, &token());
    assert_eq!(sent.resp.status, 200);
    assert_eq!(sent.log.introspection, Some("memory"));
}

#[test]
fn endpoint_down_without_an_answer_is_503_never_let_through() {
    let (gw, svc, endpoint) = world();
    endpoint.answer.set(None);
    let sent = send(&gw, &svc, &token());
    assert_eq!(sent.resp.status, 503, "{}", problem(&sent.resp));
    assert!(problem(&sent.resp)["type"]
        .as_str()
        .unwrap()
        .ends_with("introspection-unavailable"));
    assert!(!header(&sent.resp, "retry-after").is_empty());
    assert_eq!(
        sent.log.introspection_error,
        Some("introspection_unreachable")
    );
    assert_eq!(origin_calls(&svc), 0);
    // Once the remembered answer is older than max_age_seconds, the same.
    let (gw, svc, endpoint) = world();
    assert_eq!(send(&gw, &svc, &token()).resp.status, 200);
    endpoint.answer.set(None);
    svc.clock.advance(61_000);
    assert_eq!(send(&gw, &svc, &token()).resp.status, 503);
}

#[test]
fn an_unusable_answer_vouches_for_nothing() {
    let (gw, svc, _) = world();
    svc.http.on(REVOKE_URL, |_| {
        Ok((200, vec![], br#"{"active": "true"}"#.to_vec()))
    });
    let sent = send(&gw, &svc, &token());
    assert_revoked(&sent, "token_not_vouched");
    assert_eq!(
        sent.log.introspection_error,
        Some("introspection_bad_active")
    );
}

#[test]
fn a_token_from_the_verified_memory_is_still_introspected() {
    let (gw, svc, endpoint) = world();
    assert_eq!(send(&gw, &svc, &token()).resp.status, 200);
    endpoint.answer.set(Some(false));
    svc.clock.advance(61_000);
    let sent = send(&gw, &svc, &token());
    assert_eq!(sent.log.jwt_check, Some("cache"));
    assert_revoked(&sent, "token_revoked");
}

#[test]
fn providers_without_introspect_are_not_introspected() {
    let (gw, svc, endpoint) = world_with(None, 0);
    endpoint.answer.set(Some(false));
    assert_eq!(send(&gw, &svc, &token()).resp.status, 200);
    assert_eq!(calls(&svc), 0);
}

#[test]
fn introspect_is_checked_at_configuration_time() {
    let cases = [
        // No url, and no discovery document to name one (the provider gives jwks).
        (
            json!({"max_age_seconds": 60}),
            "JWT_PROVIDERS[0].introspect: has no url",
        ),
        (
            json!({"url": "http://idp.example/i"}),
            "JWT_PROVIDERS[0].introspect.url: must be an https URL",
        ),
        (
            json!({"url": REVOKE_URL, "max_age_seconds": 0}),
            "JWT_PROVIDERS[0].introspect.max_age_seconds",
        ),
        (
            json!({"url": REVOKE_URL, "max_age_seconds": 3601}),
            "JWT_PROVIDERS[0].introspect.max_age_seconds",
        ),
        (
            json!({"url": REVOKE_URL, "max_age": 60}),
            "JWT_PROVIDERS[0].introspect: unknown field \"max_age\"",
        ),
        (
            json!("yes"),
            "JWT_PROVIDERS[0].introspect: must be an object",
        ),
    ];
    for (introspect, expected) in cases {
        let gw = gateway(&vars_with(&providers(Some(introspect.clone()), 0)));
        let err = gw.config_error().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(expected), "{introspect}: {err}");
    }
    // With discovery (the issuer alone), `url` may be left out.
    let discovered = json!([{"issuer": "https://login.example/", "introspect": {}}]).to_string();
    let gw = gateway(&vars_with(&discovered));
    assert!(gw.config_error().is_none(), "{:?}", gw.config_error());
}

// --- the subject-wide cut-off ----------------------------------------------------------------

/// The contract's key, computed here on its own: `revoked:v1:` and the unpadded base64url
/// SHA-256 of `iss "\n" sub`.
fn cutoff_key(iss: &str, sub: &str) -> String {
    let digest = Sha256::digest(format!("{iss}\n{sub}").as_bytes());
    format!("revoked:v1:{}", URL_SAFE_NO_PAD.encode(digest))
}

fn cut_off(svc: &Svc, at: u64) {
    svc.store
        .entries
        .borrow_mut()
        .insert(cutoff_key(ISSUER, SUB), (at.to_string(), 0));
}

/// A gateway without introspection: the cut-off alone.
fn plain() -> (Gateway, Svc) {
    let (gw, svc, _) = world_with(None, 0);
    (gw, svc)
}

#[test]
fn the_key_is_the_contracts() {
    assert_eq!(
        edge_auth_proxy::identity::revocation::cutoff::kv_key(ISSUER, SUB),
        cutoff_key(ISSUER, SUB)
    );
    // The subject's name is not in it.
    assert!(!cutoff_key(ISSUER, SUB).contains(SUB));
}

#[test]
fn tokens_issued_before_the_cut_off_are_refused_at_or_after_pass() {
    for (iat, status) in [(NOW - 101, 401), (NOW - 100, 200), (NOW - 99, 200)] {
        let (gw, svc) = plain();
        cut_off(&svc, NOW - 100);
        let sent = send(&gw, &svc, &token_at(Some(iat), NOW + 600));
        assert_eq!(sent.resp.status, status, "iat {iat}");
        if status == 401 {
            assert_revoked(&sent, "subject_cut_off");
            assert_eq!(origin_calls(&svc), 0);
        }
    }
}

#[test]
fn another_subject_is_not_cut_off() {
    let (gw, svc) = plain();
    cut_off(&svc, NOW);
    let other = jwt(json!({"iss": ISSUER, "sub": "cust-2", "exp": NOW + 600, "iat": NOW - 10}));
    assert_eq!(send(&gw, &svc, &other).resp.status, 200);
}

#[test]
fn a_token_without_iat_is_refused_when_its_subject_has_a_cut_off() {
    let (gw, svc) = plain();
    assert_eq!(
        send(&gw, &svc, &token_at(None, NOW + 600)).resp.status,
        200,
        "no cut-off"
    );
    let (gw, svc) = plain();
    cut_off(&svc, NOW - 1000);
    assert_revoked(
        &send(&gw, &svc, &token_at(None, NOW + 600)),
        "cut_off_without_iat",
    );
}

#[test]
fn an_unreadable_entry_refuses_every_token_of_the_subject() {
    let (gw, svc) = plain();
    svc.store
        .entries
        .borrow_mut()
        .insert(cutoff_key(ISSUER, SUB), ("tomorrow".into(), 0));
    let sent = send(&gw, &svc, &token());
    assert_revoked(&sent, "subject_cut_off");
    assert!(sent.log.config_error.is_some());
}

#[test]
fn a_cut_off_is_read_through_memory_for_at_most_60_s() {
    let (gw, svc) = plain();
    assert_eq!(send(&gw, &svc, &token()).resp.status, 200);
    let gets = svc.store.gets.get();
    // Written after the isolate read "no entry": memory answers for up to 60 s.
    cut_off(&svc, NOW);
    svc.clock.advance(59_000);
    let sent = send(&gw, &svc, &token());
    assert_eq!(sent.resp.status, 200);
    assert_eq!(sent.log.cutoff, Some("memory"));
    assert_eq!(svc.store.gets.get(), gets, "no KV read within 60 s");
    svc.clock.advance(1_000);
    let sent = send(&gw, &svc, &token());
    assert_revoked(&sent, "subject_cut_off");
    assert_eq!(sent.log.cutoff, Some("kv"));
    // Removed: the refusal too lasts at most 60 s more.
    svc.store.entries.borrow_mut().clear();
    svc.clock.advance(30_000);
    assert_eq!(send(&gw, &svc, &token()).resp.status, 401);
    svc.clock.advance(30_000);
    assert_eq!(send(&gw, &svc, &token()).resp.status, 200);
}

#[test]
fn kv_down_a_cut_off_read_before_serves() {
    let (gw, svc) = plain();
    cut_off(&svc, NOW);
    assert_eq!(send(&gw, &svc, &token()).resp.status, 401);
    svc.store.failing.set(true);
    svc.clock.advance(120_000);
    let sent = send(&gw, &svc, &token());
    assert_revoked(&sent, "subject_cut_off");
    assert_eq!(sent.log.cutoff, Some("stale"));
}

#[test]
fn kv_down_with_nothing_read_before_is_503() {
    let (gw, svc) = plain();
    // The gateway's own token first, so that only the cut-off depends on KV.
    svc.store.failing.set(true);
    let sent = send(&gw, &svc, &token());
    assert_eq!(sent.resp.status, 503, "{}", problem(&sent.resp));
    assert_eq!(sent.log.outcome, "revocation_list_unavailable");
    assert_eq!(header(&sent.resp, "retry-after"), "1");
    assert_eq!(origin_calls(&svc), 0);
}

#[test]
fn the_cut_off_is_checked_before_introspection_and_both_apply() {
    let (gw, svc, _) = world();
    cut_off(&svc, NOW);
    assert_revoked(&send(&gw, &svc, &token()), "subject_cut_off");
    assert_eq!(
        calls(&svc),
        0,
        "a cut-off token costs no introspection call"
    );
}

// --- the endpoint named by discovery ---------------------------------------------------------

const TENANT: &str = "https://idp.example/tenant";
const DISCOVERED: &str = "https://idp.example/tenant/introspect";

/// A provider configured by its issuer alone, `introspect` without `url`; the discovery
/// document names `introspection` as its endpoint (or none).
fn discovering(introspection: Option<&str>, store: MemoryKv) -> (Gateway, Svc) {
    let providers = json!([{"issuer": TENANT, "introspect": {"max_age_seconds": 60}}]).to_string();
    let gw = gateway(&vars_with(&providers));
    assert!(gw.config_error().is_none(), "{:?}", gw.config_error());
    let http = FakeHttp::default();
    let mut doc = json!({"issuer": TENANT, "jwks_uri": "https://idp.example/tenant/jwks"});
    if let Some(url) = introspection {
        doc["introspection_endpoint"] = url.into();
    }
    http.on(
        &format!("{TENANT}/.well-known/openid-configuration"),
        move |_| Ok((200, vec![], doc.to_string().into_bytes())),
    );
    http.on("https://idp.example/tenant/jwks", |_| {
        let keys = json!({"keys": [support::ec_jwk(support::ec(), json!({"kid": "ec-1"}))]});
        Ok((200, vec![], keys.to_string().into_bytes()))
    });
    http.on(DISCOVERED, |_| {
        Ok((200, vec![], br#"{"active": false}"#.to_vec()))
    });
    http.on(TOKEN_URL, |_| {
        let body = r#"{"token_type":"Bearer","access_token":"at-1","expires_in":3600}"#;
        Ok((200, vec![], body.as_bytes().to_vec()))
    });
    http.on("https://origin.example/", |_| {
        Ok((200, vec![], b"{}".to_vec()))
    });
    (gw, services_over(http, store, FakeClock::at(NOW_MS)))
}

#[test]
fn without_url_the_discovery_documents_introspection_endpoint_is_asked() {
    let t = jwt(json!({"iss": TENANT, "sub": SUB, "exp": NOW + 600, "iat": NOW - 10}));
    let kv = MemoryKv::default();
    let (gw, svc) = discovering(Some(DISCOVERED), kv.clone());
    assert_revoked(&send(&gw, &svc, &t), "token_revoked");
    assert_eq!(svc.http.calls_to(DISCOVERED).len(), 1);
    // Another isolate, starting from the document the first one put in KV.
    let (gw, svc) = discovering(None, kv);
    assert_revoked(&send(&gw, &svc, &t), "token_revoked");
    assert_eq!(
        svc.http.calls_to(DISCOVERED).len(),
        1,
        "the KV copy names it too"
    );
}

#[test]
fn a_discovery_document_without_introspection_endpoint_is_503_and_a_config_error() {
    let t = jwt(json!({"iss": TENANT, "sub": SUB, "exp": NOW + 600, "iat": NOW - 10}));
    let (gw, svc) = discovering(None, MemoryKv::default());
    let sent = send(&gw, &svc, &t);
    assert_eq!(sent.resp.status, 503, "{}", problem(&sent.resp));
    assert_eq!(
        sent.log.introspection_error,
        Some("introspection_no_endpoint")
    );
    assert!(sent.log.config_error.is_some());
    assert_eq!(origin_calls(&svc), 0);
}
