//! Revocation by introspection, as an attacker's checklist, natively with a clock the test
//! moves: a provider's `introspect` (RFC 7662 asked about each verified JWT, the answer
//! remembered by digest for at most `max_age_seconds` and the token's life, a remembered answer
//! serving while the endpoint is down, 503 without one), and the endpoint its discovery
//! document names. The subject-wide cut-off is tests/revocation_cutoff.rs.

mod common;
#[path = "fixtures/jwt/support.rs"]
mod support;
#[path = "fixtures/revocation.rs"]
mod world;

use common::*;
use world::*;

use std::collections::HashMap;

use edge_auth_proxy::proxy::Gateway;
use http::Method;
use serde_json::json;

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
    let t = es_jwt(json!({"iss": TENANT, "sub": SUB, "exp": NOW + 600, "iat": NOW - 10}));
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
    let t = es_jwt(json!({"iss": TENANT, "sub": SUB, "exp": NOW + 600, "iat": NOW - 10}));
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
