//! Discovery through the JWT mechanism's key lookup: an issuer configured alone, its discovery
//! document served (and broken) by a scripted server, an in-memory KV and a clock the test
//! moves. The attacker's checklist: another issuer, an http `jwks_uri` to a public host, an
//! oversize document, a redirect, the document down with and without a held copy, the RFC 8414
//! fallback, one fetch at a time, the `Cache-Control` bounds, the scheduled refresh.

mod common;
#[path = "fixtures/jwt/support.rs"]
mod support;

use std::cell::RefCell;
use std::rc::Rc;

use common::{platform, FakeClock, FakeHttp, MemoryKv, Parts};
use edge_auth_proxy::identity::jwks::{read_document, JwksEvent, JwksFailure, MAX_DISCOVERY_BYTES};
use edge_auth_proxy::identity::jwt::JwtSettings;
use edge_auth_proxy::identity::mechanism::jwt::{AuthError, Authenticator, Check};
use edge_auth_proxy::io::HttpError;
use futures::executor::block_on;
use futures::future::join_all;
use serde_json::{json, Value};
use support::{claims, ec_jwk, raw_token, signature};

const ISSUER: &str = "https://idp.example/tenant";
const OPENID: &str = "https://idp.example/tenant/.well-known/openid-configuration";
const OAUTH: &str = "https://idp.example/.well-known/oauth-authorization-server/tenant";
const KEYS: &str = "https://keys.idp.example/jwks";
const NOW_MS: u64 = support::NOW * 1000;

type Answer = Result<(u16, Vec<(&'static str, String)>, Vec<u8>), HttpError>;

/// The provider: what each well-known location answers, which the test changes as it runs.
#[derive(Clone)]
struct Idp {
    http: FakeHttp,
    openid: Rc<RefCell<Answer>>,
    oauth: Rc<RefCell<Answer>>,
}

fn document(issuer: &str, jwks_uri: &str) -> Vec<u8> {
    json!({"issuer": issuer, "jwks_uri": jwks_uri, "token_endpoint": "https://idp.example/token"})
        .to_string()
        .into_bytes()
}

fn ok(body: Vec<u8>, cache_control: &str) -> Answer {
    Ok((
        200,
        vec![("cache-control", cache_control.to_string())],
        body,
    ))
}

fn status(code: u16) -> Answer {
    Ok((
        code,
        vec![("location", "https://elsewhere.example/x".into())],
        Vec::new(),
    ))
}

impl Idp {
    fn new() -> Self {
        let idp = Idp {
            http: FakeHttp::default(),
            openid: Rc::new(RefCell::new(ok(document(ISSUER, KEYS), "max-age=300"))),
            oauth: Rc::new(RefCell::new(status(404))),
        };
        let (a, b) = (idp.openid.clone(), idp.oauth.clone());
        idp.http.on(OPENID, move |_| a.borrow().clone());
        idp.http.on(OAUTH, move |_| b.borrow().clone());
        idp.http.on(KEYS, |_| {
            let keys = json!({"keys": [ec_jwk(support::ec(), json!({"kid": "k1"}))]});
            Ok((
                200,
                vec![("cache-control", "max-age=86400".into())],
                keys.to_string().into_bytes(),
            ))
        });
        idp
    }

    fn set_openid(&self, answer: Answer) {
        *self.openid.borrow_mut() = answer;
    }

    fn hits(&self, url: &str) -> usize {
        self.http.calls_to(url).len()
    }
}

struct World {
    idp: Idp,
    kv: MemoryKv,
    clock: FakeClock,
    settings: JwtSettings,
    auth: Authenticator,
}

impl World {
    fn new() -> Self {
        let settings =
            support::settings_from(&[("JWT_ALGORITHMS", "ES256"), ("JWT_ISSUER", ISSUER)]).unwrap();
        assert_eq!(settings.discovery.as_deref(), Some(ISSUER));
        World {
            idp: Idp::new(),
            kv: MemoryKv::default(),
            clock: FakeClock::at(NOW_MS),
            settings,
            auth: Authenticator::new(),
        }
    }

    fn platform(&self) -> Parts<'_, FakeHttp, MemoryKv, FakeClock> {
        platform(&self.idp.http, &self.kv, &self.clock)
    }

    fn check(&self) -> (Result<Check, AuthError>, Option<JwksEvent>) {
        let (r, e) = block_on(self.auth.check(&token(), &self.settings, &self.platform()));
        (r.map(|a| a.check), e)
    }

    fn refused_for(&self) -> JwksFailure {
        match self.check().0 {
            Err(AuthError::KeysUnavailable(u)) => u.cause,
            other => panic!("expected 503, got {other:?}"),
        }
    }

    fn advance_secs(&self, secs: u64) {
        self.clock.advance(secs * 1000);
    }
}

/// A fresh token each time, so the verified-token memory never answers for the key lookup.
fn token() -> String {
    thread_local!(static N: std::cell::Cell<u64> = const { std::cell::Cell::new(0) });
    let n = N.with(|n| {
        n.set(n.get() + 1);
        n.get()
    });
    let header = json!({"alg": "ES256", "kid": "k1"}).to_string();
    let body: Value = claims(json!({"iss": ISSUER, "n": n, "exp": support::NOW + 100_000}));
    raw_token(&header, &body.to_string(), |m| signature("ES256", m))
}

#[test]
fn the_issuer_alone_finds_the_keys_and_the_document_is_held_while_fresh() {
    let w = World::new();
    assert!(w.check().0.is_ok());
    assert_eq!(
        (w.idp.hits(OPENID), w.idp.hits(OAUTH), w.idp.hits(KEYS)),
        (1, 0, 1)
    );
    for _ in 0..5 {
        assert!(w.check().0.is_ok());
    }
    assert_eq!(w.idp.hits(OPENID), 1, "held while fresh (max-age=300)");
    w.advance_secs(301);
    assert!(w.check().0.is_ok());
    assert_eq!(w.idp.hits(OPENID), 2, "refetched once stale");
}

#[test]
fn rfc_8414_is_asked_when_the_openid_location_is_404_and_only_then() {
    let w = World::new();
    w.idp.set_openid(status(404));
    *w.idp.oauth.borrow_mut() = ok(document(ISSUER, KEYS), "max-age=300");
    assert!(w.check().0.is_ok());
    assert_eq!((w.idp.hits(OPENID), w.idp.hits(OAUTH)), (1, 1));
    // A 500 at the OpenID location is a failure, not a reason to look elsewhere.
    let w = World::new();
    w.idp.set_openid(status(500));
    *w.idp.oauth.borrow_mut() = ok(document(ISSUER, KEYS), "max-age=300");
    assert_eq!(w.refused_for(), JwksFailure::DiscoveryStatus(500));
    assert_eq!(w.idp.hits(OAUTH), 0);
    // Both 404: refused.
    let w = World::new();
    w.idp.set_openid(status(404));
    assert_eq!(w.refused_for(), JwksFailure::DiscoveryStatus(404));
}

#[test]
fn hostile_documents_are_refused_and_no_key_set_is_fetched() {
    let cases: Vec<(Answer, JwksFailure)> = vec![
        // Mix-up: another issuer, or the same one spelt differently.
        (
            ok(document("https://evil.example/tenant", KEYS), "max-age=300"),
            JwksFailure::DiscoveryIssuerMismatch,
        ),
        (
            ok(document("https://idp.example/tenant/", KEYS), "max-age=300"),
            JwksFailure::DiscoveryIssuerMismatch,
        ),
        (
            ok(document("https://IDP.example/tenant", KEYS), "max-age=300"),
            JwksFailure::DiscoveryIssuerMismatch,
        ),
        // jwks_uri over http to a public host, or absent.
        (
            ok(
                document(ISSUER, "http://keys.idp.example/jwks"),
                "max-age=300",
            ),
            JwksFailure::DiscoveryJwksUri,
        ),
        (
            ok(json!({"issuer": ISSUER}).to_string().into_bytes(), ""),
            JwksFailure::DiscoveryJwksUri,
        ),
        // Oversize, garbage, redirects (never followed), timeouts.
        (
            ok(vec![b' '; MAX_DISCOVERY_BYTES + 1], ""),
            JwksFailure::DiscoveryTooLarge,
        ),
        (
            ok(b"<html>".to_vec(), ""),
            JwksFailure::DiscoveryNotADocument,
        ),
        (status(302), JwksFailure::DiscoveryStatus(302)),
        (status(301), JwksFailure::DiscoveryStatus(301)),
        (status(307), JwksFailure::DiscoveryStatus(307)),
        (Err(HttpError::Timeout), JwksFailure::DiscoveryTimeout),
        (
            Err(HttpError::Unreachable("refused".into())),
            JwksFailure::DiscoveryUnreachable,
        ),
    ];
    for (answer, failure) in cases {
        let w = World::new();
        w.idp.set_openid(answer);
        assert_eq!(w.refused_for(), failure);
        assert_eq!(w.idp.hits(KEYS), 0, "{failure:?}: no key set fetched");
        assert_eq!(
            w.idp.hits("https://elsewhere.example"),
            0,
            "no redirect followed"
        );
        assert!(
            w.idp.http.calls_to("http://keys.idp.example").is_empty(),
            "no plaintext fetch"
        );
    }
}

#[test]
fn a_held_document_serves_while_the_provider_is_down_but_not_after_it_names_another_issuer() {
    let w = World::new();
    assert!(w.check().0.is_ok());
    // Down: the held document (and key set) keep serving, stale, for up to 24 hours.
    w.idp.set_openid(Err(HttpError::Unreachable("down".into())));
    w.advance_secs(301);
    let (result, event) = w.check();
    assert!(result.is_ok());
    assert_eq!(
        event,
        Some(JwksEvent::Failed(JwksFailure::DiscoveryUnreachable))
    );
    w.advance_secs(23 * 3600);
    assert!(w.check().0.is_ok());
    w.advance_secs(3600);
    assert_eq!(
        w.refused_for(),
        JwksFailure::DiscoveryUnreachable,
        "past 24 h stale"
    );

    // Up again, then the document names another issuer: refused at once, the held copy dropped.
    let w = World::new();
    assert!(w.check().0.is_ok());
    w.idp
        .set_openid(ok(document("https://evil.example/", KEYS), "max-age=300"));
    w.advance_secs(301);
    assert_eq!(w.refused_for(), JwksFailure::DiscoveryIssuerMismatch);
    w.advance_secs(1);
    assert_eq!(w.refused_for(), JwksFailure::DiscoveryIssuerMismatch);
    // Fixed: accepted again at the next probe.
    w.idp.set_openid(ok(document(ISSUER, KEYS), "max-age=300"));
    w.advance_secs(1);
    assert!(w.check().0.is_ok());
}

#[test]
fn concurrent_cold_requests_share_one_document_fetch() {
    let w = World::new();
    let p = w.platform();
    let tokens: Vec<String> = (0..20).map(|_| token()).collect();
    let results = block_on(join_all(
        tokens.iter().map(|t| w.auth.check(t, &w.settings, &p)),
    ));
    assert!(results.iter().all(|(r, _)| r.is_ok()));
    assert_eq!(w.idp.hits(OPENID), 1);
    assert_eq!(w.idp.hits(KEYS), 1);
}

#[test]
fn the_documents_cache_control_is_kept_between_a_minute_and_a_day() {
    for (cache_control, held_secs) in [
        ("max-age=5", 60),
        ("no-store", 60),
        ("max-age=999999", 86_400),
    ] {
        let w = World::new();
        w.idp.set_openid(ok(document(ISSUER, KEYS), cache_control));
        assert!(w.check().0.is_ok());
        w.advance_secs(held_secs - 1);
        assert!(w.check().0.is_ok());
        assert_eq!(w.idp.hits(OPENID), 1, "{cache_control}: held {held_secs} s");
        w.advance_secs(2);
        assert!(w.check().0.is_ok());
        assert_eq!(
            w.idp.hits(OPENID),
            2,
            "{cache_control}: refetched after {held_secs} s"
        );
    }
}

#[test]
fn the_scheduled_run_refreshes_the_document_ahead_of_staleness() {
    let w = World::new();
    assert!(w.check().0.is_ok());
    let p = w.platform();
    // Fresh for 300 s; a refresh 600 s ahead finds it due.
    let event = block_on(w.auth.refresh_keys(&w.settings, 600_000, &p));
    assert_eq!(w.idp.hits(OPENID), 2, "{event:?}");
    // Fresh well beyond 60 s ahead: nothing to do.
    assert_eq!(block_on(w.auth.refresh_keys(&w.settings, 60_000, &p)), None);
    assert_eq!(w.idp.hits(OPENID), 2);
    // A failing document refresh is reported.
    w.idp.set_openid(status(503));
    w.advance_secs(400);
    let event = block_on(w.auth.refresh_keys(&w.settings, 600_000, &p));
    assert_eq!(
        event,
        Some(JwksEvent::Failed(JwksFailure::DiscoveryStatus(503)))
    );
}

#[test]
fn a_new_isolate_starts_from_the_kv_copy_and_a_mismatch_clears_it() {
    let w = World::new();
    assert!(w.check().0.is_ok());
    let stored: Vec<String> = w.kv.entries.borrow().keys().cloned().collect();
    let key = stored
        .iter()
        .find(|k| k.starts_with("discovery:v1:"))
        .expect("the document is kept in KV")
        .clone();
    assert!(!key.contains("idp"), "the key is a digest");
    let value = w.kv.entries.borrow()[&key].0.clone();
    assert_eq!(
        serde_json::from_str::<Value>(&value).unwrap()["jwks_uri"],
        KEYS
    );
    // Another isolate: no document fetch (its key set comes from KV too).
    let other = Authenticator::new();
    let (r, _) = block_on(other.check(&token(), &w.settings, &w.platform()));
    assert!(r.is_ok());
    assert_eq!(w.idp.hits(OPENID), 1);

    // A KV copy that is not what this version writes, or names a plaintext public jwks_uri,
    // is a miss: the provider is asked.
    for planted in [
        json!({"fresh_until_ms": NOW_MS + 100_000, "jwks_uri": "http://keys.evil.example/jwks"}),
        json!({"fresh_until_ms": "soon", "jwks_uri": KEYS}),
        json!({"jwks_uri": KEYS}),
    ] {
        let w = World::new();
        w.kv.entries
            .borrow_mut()
            .insert(key.clone(), (planted.to_string(), 60));
        assert!(w.check().0.is_ok(), "{planted}");
        assert_eq!(w.idp.hits(OPENID), 1, "{planted}: fetched");
        assert!(w.idp.http.calls_to("http://keys.evil.example").is_empty());
    }
    // A copy claiming freshness far beyond what a fetch gives is not believed.
    let w = World::new();
    let far = json!({"fresh_until_ms": NOW_MS + 400 * 86_400_000u64, "jwks_uri": KEYS});
    w.kv.entries
        .borrow_mut()
        .insert(key.clone(), (far.to_string(), 60));
    assert!(w.check().0.is_ok());
    assert_eq!(w.idp.hits(OPENID), 1);

    // The provider names another issuer: memory and KV copies go.
    let w = World::new();
    assert!(w.check().0.is_ok());
    w.idp
        .set_openid(ok(document("https://evil.example/", KEYS), "max-age=300"));
    w.advance_secs(301);
    assert_eq!(w.refused_for(), JwksFailure::DiscoveryIssuerMismatch);
    assert!(
        !w.kv.entries.borrow().contains_key(&key),
        "the KV copy is cleared"
    );
    let other = Authenticator::new();
    let (r, _) = block_on(other.check(&token(), &w.settings, &w.platform()));
    assert!(
        matches!(r, Err(AuthError::KeysUnavailable(u)) if u.cause == JwksFailure::DiscoveryIssuerMismatch),
        "a new isolate does not start from the cleared copy"
    );
}

#[test]
fn the_document_is_read_strictly() {
    let iss = "https://idp.example";
    let doc = |v: Value| v.to_string().into_bytes();
    assert_eq!(
        read_document(
            &doc(json!({"issuer": iss, "jwks_uri": "https://idp.example/keys"})),
            iss
        ),
        Ok("https://idp.example/keys".into())
    );
    for other in [
        json!("https://idp.example/"),
        json!("https://IDP.example"),
        json!("https://evil.example"),
        json!(""),
        json!(1),
        json!(null),
    ] {
        assert_eq!(
            read_document(
                &doc(json!({"issuer": other, "jwks_uri": "https://idp.example/k"})),
                iss
            ),
            Err(JwksFailure::DiscoveryIssuerMismatch),
            "{other}"
        );
    }
    assert_eq!(
        read_document(&doc(json!({"jwks_uri": "https://idp.example/k"})), iss),
        Err(JwksFailure::DiscoveryIssuerMismatch)
    );
    for uri in [
        json!("http://idp.example/k"),
        json!("http://10.0.0.1/k"),
        json!("ftp://idp.example/k"),
        json!("/k"),
        json!(null),
        json!(["https://idp.example/k"]),
    ] {
        assert_eq!(
            read_document(&doc(json!({"issuer": iss, "jwks_uri": uri})), iss),
            Err(JwksFailure::DiscoveryJwksUri),
            "{uri}"
        );
    }
    // The loopback allowance the jwks_url setting makes (tests, the demo).
    assert_eq!(
        read_document(
            &doc(json!({"issuer": iss, "jwks_uri": "http://127.0.0.1:9/k"})),
            iss
        ),
        Ok("http://127.0.0.1:9/k".into())
    );
    assert_eq!(
        read_document(b"[1]", iss),
        Err(JwksFailure::DiscoveryNotADocument)
    );
}
