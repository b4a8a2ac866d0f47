//! `JWKS_URL` and the verified-token memory, through the authenticate phase, with a scripted
//! key server that counts its hits, an in-memory KV and a clock the test moves.

mod common;
#[path = "fixtures/jwt/support.rs"]
mod support;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use common::{platform, FakeClock, FakeHttp, MemoryKv, Parts};
use edge_auth_proxy::identity::claims::Claims;
use edge_auth_proxy::identity::jwks::{self, JwksEvent, JwksFailure, KID_REFETCH_INTERVAL_MS};
use edge_auth_proxy::identity::jwt::{
    Alg, JwtError, JwtSettings, Key, RustCryptoVerifier, SignatureVerifier, TokenDigest,
    VerifiedCache, VerifiedToken, MAX_VERIFIED_BYTES, MAX_VERIFIED_CLAIMS_BYTES,
    MAX_VERIFIED_ENTRIES,
};
use edge_auth_proxy::identity::mechanism::jwt::{AuthError, Authenticator, Check};
use edge_auth_proxy::io::HttpError;
use futures::executor::block_on;
use futures::future::join_all;
use jwt_compact::alg::Es256;
use jwt_compact::{Algorithm, AlgorithmSignature};
use serde_json::{json, Map, Value};
use support::{b64, claims, ec_jwk, new_ec, raw_token, rsa_jwk, signature, EcSigningKey};

const URL: &str = "https://login.example/.well-known/jwks.json";
const NOW_MS: u64 = support::NOW * 1000;

/// Counts signature checks, so a test can tell a verification from a memory hit.
#[derive(Clone, Default)]
struct Counting(Rc<Cell<usize>>);

impl SignatureVerifier for Counting {
    async fn verify(&self, alg: Alg, key: &Key, input: &[u8], sig: &[u8]) -> bool {
        self.0.set(self.0.get() + 1);
        RustCryptoVerifier.verify_now(alg, key, input, sig)
    }
}

/// A key server whose document and answer the test changes while it runs.
#[derive(Clone)]
struct KeyServer {
    http: FakeHttp,
    document: Rc<RefCell<String>>,
    cache_control: Rc<RefCell<&'static str>>,
    down: Rc<Cell<bool>>,
}

impl KeyServer {
    fn new(keys: Vec<Value>) -> Self {
        let server = KeyServer {
            http: FakeHttp::default(),
            document: Rc::new(RefCell::new(json!({ "keys": keys }).to_string())),
            cache_control: Rc::new(RefCell::new("max-age=300")),
            down: Rc::new(Cell::new(false)),
        };
        let s = server.clone();
        server.http.on(URL, move |_| {
            if s.down.get() {
                return Err(HttpError::Unreachable("connection refused".into()));
            }
            let doc = s.document.borrow().clone().into_bytes();
            let cc = s.cache_control.borrow().to_string();
            Ok((200, vec![("cache-control", cc)], doc))
        });
        server
    }

    fn publish(&self, keys: Vec<Value>) {
        *self.document.borrow_mut() = json!({ "keys": keys }).to_string();
    }

    fn hits(&self) -> usize {
        self.http.calls_to(URL).len()
    }
}

struct World {
    server: KeyServer,
    kv: MemoryKv,
    clock: FakeClock,
    verifier: Counting,
    settings: JwtSettings,
    auth: Authenticator,
}

impl World {
    fn new(keys: Vec<Value>) -> Self {
        World::with(keys, &[])
    }

    fn with(keys: Vec<Value>, extra: &[(&str, &str)]) -> Self {
        let mut vars: Vec<(&str, &str)> = vec![
            ("JWT_ALGORITHMS", "RS256,ES256"),
            ("JWKS_URL", URL),
            ("JWT_ISSUER", support::ISSUER),
            ("JWT_AUDIENCE", support::AUDIENCE),
        ];
        for (name, value) in extra {
            vars.retain(|(n, _)| n != name);
            vars.push((name, value));
        }
        World {
            server: KeyServer::new(keys),
            kv: MemoryKv::default(),
            clock: FakeClock::at(NOW_MS),
            verifier: Counting::default(),
            settings: support::settings_from(&vars).unwrap(),
            auth: Authenticator::new(),
        }
    }

    /// The same servers and KV seen from a new isolate.
    fn new_isolate(&self) -> Authenticator {
        Authenticator::new()
    }

    fn check_in(
        &self,
        auth: &Authenticator,
        token: &str,
    ) -> (Result<Check, AuthError>, Option<JwksEvent>) {
        let (result, event) = block_on(auth.check(token, &self.settings, &self.platform()));
        (result.map(|a| a.check), event)
    }

    fn check(&self, token: &str) -> Result<Check, AuthError> {
        self.check_in(&self.auth, token).0
    }

    fn platform(&self) -> Parts<'_, FakeHttp, MemoryKv, FakeClock, Counting> {
        platform(&self.server.http, &self.kv, &self.clock).with_verifier(&self.verifier)
    }

    fn verifications(&self) -> usize {
        self.verifier.0.get()
    }
}

fn rsa_key(kid: &str) -> Value {
    rsa_jwk(json!({ "kid": kid, "use": "sig" }))
}

/// A token signed by the fixtures' RSA key, naming `kid`, valid at the fixtures' `NOW` for
/// ten minutes (`extra` claims merged in).
fn rsa_token(kid: &str, extra: Value) -> String {
    let header = json!({"alg": "RS256", "kid": kid}).to_string();
    raw_token(&header, &claims(extra).to_string(), |m| {
        signature("RS256", m)
    })
}

/// The fixtures' P-256 key as a JWK named `kid`. Most tests use it: signing with RSA in a
/// debug build takes a noticeable fraction of a second per token.
fn es_key(kid: &str) -> Value {
    ec_jwk(support::ec(), json!({ "kid": kid }))
}

fn es_token(kid: &str, extra: Value) -> String {
    let header = json!({"alg": "ES256", "kid": kid}).to_string();
    raw_token(&header, &claims(extra).to_string(), |m| {
        signature("ES256", m)
    })
}

fn ec_token(key: &EcSigningKey, kid: &str) -> String {
    let header = json!({"alg": "ES256", "kid": kid}).to_string();
    raw_token(&header, &claims(json!({})).to_string(), |m| {
        Es256.sign(key, m).as_bytes().to_vec()
    })
}

fn invalid_token(e: JwtError) -> Result<Check, AuthError> {
    Err(AuthError::Jwt(e))
}

#[test]
fn the_key_set_is_fetched_once_and_a_repeated_token_is_verified_once() {
    let w = World::new(vec![rsa_key("k1")]);
    let token = rsa_token("k1", json!({}));
    assert_eq!(w.check(&token), Ok(Check::Verified));
    for _ in 0..20 {
        assert_eq!(w.check(&token), Ok(Check::Cached));
    }
    assert_eq!(w.server.hits(), 1);
    assert_eq!(
        w.verifications(),
        1,
        "a repeated token is not verified again"
    );
    // Another token with the same claims but its own string is verified on its own.
    let other = rsa_token("k1", json!({"sub": "someone-else"}));
    assert_eq!(w.check(&other), Ok(Check::Verified));
    assert_eq!(w.verifications(), 2);
}

#[test]
fn concurrent_cold_requests_share_one_fetch() {
    let w = World::new(vec![es_key("k1")]);
    let token = es_token("k1", json!({}));
    let p = w.platform();
    let results = block_on(join_all(
        (0..50).map(|_| w.auth.check(&token, &w.settings, &p)),
    ));
    assert!(results.iter().all(|(r, _)| r.is_ok()));
    assert_eq!(w.server.hits(), 1);
}

#[test]
fn a_new_isolate_reads_the_set_from_kv_until_it_goes_stale() {
    let w = World::new(vec![es_key("k1")]);
    let token = es_token("k1", json!({}));
    assert_eq!(w.check_in(&w.auth, &token).1, Some(JwksEvent::Fetched));
    let stored = w.kv.entries.borrow();
    let (key, (value, ttl)) = stored.iter().next().expect("the set is written to KV");
    assert_eq!(key, &jwks::kv_key(URL));
    assert!(!key.contains("login.example"));
    let value: Value = serde_json::from_str(value).unwrap();
    assert!(value["jwks"].as_str().unwrap().contains("\"keys\""));
    assert!(*ttl >= 60);
    drop(stored);

    let second = w.new_isolate();
    assert_eq!(
        w.check_in(&second, &token),
        (Ok(Check::Verified), Some(JwksEvent::Kv))
    );
    assert_eq!(w.server.hits(), 1, "KV served the new isolate");

    // Past the 300 s the server allowed, neither memory nor KV is fresh: one new fetch.
    w.clock.advance(301_000);
    let fresh = es_token("k1", json!({"exp": support::NOW + 900}));
    assert_eq!(w.check_in(&second, &fresh).1, Some(JwksEvent::Fetched));
    assert_eq!(w.server.hits(), 2);
}

#[test]
fn the_response_lifetime_is_kept_within_bounds() {
    let w = World::new(vec![es_key("k1")]);
    *w.server.cache_control.borrow_mut() = "no-store";
    let token = es_token("k1", json!({"exp": support::NOW + 3600}));
    w.check(&token).unwrap();
    // no-store is raised to a minute: no fetch per request.
    w.clock.advance(59_000);
    w.check(&es_token("k1", json!({"exp": support::NOW + 3601})))
        .unwrap();
    assert_eq!(w.server.hits(), 1);
    w.clock.advance(2_000);
    w.check(&es_token("k1", json!({"exp": support::NOW + 3602})))
        .unwrap();
    assert_eq!(w.server.hits(), 2);
}

#[test]
fn unknown_kids_cause_at_most_one_refetch_per_interval() {
    let w = World::new(vec![es_key("k1")]);
    w.check(&es_token("k1", json!({}))).unwrap();
    assert_eq!(w.server.hits(), 1);

    // 200 made-up kids over 20 s: one refetch per 10 s at most.
    for i in 0..200 {
        let token = es_token(&format!("made-up-{i}"), json!({}));
        assert_eq!(w.check(&token), invalid_token(JwtError::UnknownKid));
        w.clock.advance(100);
    }
    let refetches = w.server.hits() - 1;
    assert!(
        (1..=2).contains(&refetches),
        "{refetches} refetches for 200 unknown kids over 20 s"
    );

    // A kid found unknown by a refetch is refused without asking again for a while, even
    // once the rate limit would allow another refetch.
    let before = w.server.hits();
    w.clock.advance(KID_REFETCH_INTERVAL_MS);
    let stranger = es_token("made-up-199", json!({"exp": support::NOW + 3600}));
    assert_eq!(w.check(&stranger), invalid_token(JwtError::UnknownKid));
    assert!(w.server.hits() - before <= 1);
    let after_first = w.server.hits();
    w.clock.advance(KID_REFETCH_INTERVAL_MS);
    assert_eq!(w.check(&stranger), invalid_token(JwtError::UnknownKid));
    assert_eq!(
        w.server.hits(),
        after_first,
        "the kid is remembered as unknown"
    );
}

#[test]
fn concurrent_unknown_kids_wait_on_one_refetch() {
    let w = World::new(vec![es_key("k1")]);
    w.check(&es_token("k1", json!({}))).unwrap();
    let tokens: Vec<String> = (0..30)
        .map(|i| es_token(&format!("x-{i}"), json!({})))
        .collect();
    let p = w.platform();
    let results = block_on(join_all(
        tokens.iter().map(|t| w.auth.check(t, &w.settings, &p)),
    ));
    assert!(results
        .iter()
        .all(|(r, _)| *r == Err(AuthError::Jwt(JwtError::UnknownKid))));
    assert_eq!(w.server.hits(), 2, "one refetch for all of them");
}

#[test]
fn a_rotated_key_is_picked_up_and_a_removed_one_stops_vouching() {
    let old = new_ec();
    let new = new_ec();
    let w = World::new(vec![ec_jwk(&old, json!({"kid": "2024"}))]);
    let old_token = ec_token(&old, "2024");
    assert_eq!(w.check(&old_token), Ok(Check::Verified));
    assert_eq!(w.check(&old_token), Ok(Check::Cached));

    // The provider publishes the new key next to the old one: one refetch finds it.
    w.server.publish(vec![
        ec_jwk(&old, json!({"kid": "2024"})),
        ec_jwk(&new, json!({"kid": "2025"})),
    ]);
    let new_token = ec_token(&new, "2025");
    assert_eq!(w.check(&new_token), Ok(Check::Verified));
    assert_eq!(w.server.hits(), 2);
    assert_eq!(
        w.check(&old_token),
        Ok(Check::Verified),
        "a new set means verifying again"
    );

    // The old key leaves; once the set is refreshed, its tokens fail even though remembered.
    w.server.publish(vec![ec_jwk(&new, json!({"kid": "2025"}))]);
    w.clock.advance(301_000);
    assert_eq!(w.check(&new_token), Ok(Check::Verified));
    assert_eq!(w.server.hits(), 3);
    assert_eq!(w.check(&old_token), invalid_token(JwtError::UnknownKid));
}

#[test]
fn with_the_provider_down_the_last_good_set_keeps_serving() {
    let w = World::new(vec![es_key("k1")]);
    w.check(&es_token("k1", json!({}))).unwrap();
    w.server.down.set(true);
    let mut failures_logged = 0;
    // An hour past freshness, one request a second: all pass, few fetch attempts.
    let token = es_token("k1", json!({"exp": support::NOW + 7200}));
    for i in 0..3600u64 {
        w.clock.advance(1_000);
        let (result, event) = w.check_in(&w.auth, &token);
        assert!(result.is_ok(), "second {i}: {result:?}");
        if event == Some(JwksEvent::Failed(JwksFailure::Unreachable)) {
            failures_logged += 1;
        }
    }
    let attempts = w.server.hits() - 1;
    assert!(failures_logged >= 1, "the failure is in the log");
    assert_eq!(failures_logged, attempts);
    assert!(
        attempts <= 3300 / 60 + 6,
        "{attempts} attempts: backed off to one a minute"
    );
    // Back up: the next allowed attempt refreshes the set.
    w.server.down.set(false);
    w.clock.advance(61_000);
    let (_, event) = w.check_in(
        &w.auth,
        &es_token("k1", json!({"exp": support::NOW + 7200})),
    );
    assert_eq!(event, Some(JwksEvent::Fetched));
}

#[test]
fn with_no_set_at_all_the_request_gets_503_and_the_provider_is_left_alone() {
    let w = World::with(
        vec![es_key("k1")],
        &[
            ("JWT_ALGORITHMS", "ES256,HS256"),
            ("JWT_HMAC_SECRET", support::HMAC_SECRET),
        ],
    );
    w.server.down.set(true);
    let token = es_token("k1", json!({}));
    let Err(AuthError::KeysUnavailable(u)) = w.check(&token) else {
        panic!("expected keys unavailable");
    };
    assert_eq!(u.cause, JwksFailure::Unreachable);
    assert!(u.retry_after_secs >= 1);
    // A burst while it backs off: one probe for all of it, not one fetch per request.
    let p = w.platform();
    let burst = block_on(join_all(
        (0..20).map(|_| w.auth.check(&token, &w.settings, &p)),
    ));
    assert!(burst
        .iter()
        .all(|(r, _)| matches!(r, Err(AuthError::KeysUnavailable(_)))));
    assert_eq!(w.server.hits(), 2, "one probe for the burst");
    // The configured HMAC secret still checks HS256 tokens.
    let hs = support::token("HS256", json!({}), claims(json!({})));
    assert_eq!(w.check(&hs), Ok(Check::Verified));
    // A token refused before any key is looked at is still the caller's fault: 401.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none"}"#),
        b64(claims(json!({})).to_string().as_bytes())
    );
    assert_eq!(w.check(&none), invalid_token(JwtError::AlgorithmNotAllowed));
}

#[test]
fn a_broken_key_set_is_a_failed_fetch_not_an_empty_set() {
    for (status, body) in [
        (200, "not json".to_string()),
        (200, r#"{"keys":[]}"#.to_string()),
        (
            200,
            r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#.to_string(),
        ),
        (500, r#"{"keys":[]}"#.to_string()),
        (
            200,
            format!(
                r#"{{"keys":[],"pad":"{}"}}"#,
                "x".repeat(jwks::MAX_JWKS_BYTES)
            ),
        ),
    ] {
        let w = World::new(vec![es_key("k1")]);
        let token = es_token("k1", json!({}));
        w.check(&token).unwrap();
        w.server.http.on(URL, move |_| {
            Ok((status, vec![], body.clone().into_bytes()))
        });
        w.clock.advance(301_000);
        let later = es_token("k1", json!({"exp": support::NOW + 3600}));
        let (result, event) = w.check_in(&w.auth, &later);
        assert_eq!(result, Ok(Check::Verified), "the last good set serves");
        assert!(matches!(event, Some(JwksEvent::Failed(_))), "{event:?}");
    }
}

#[test]
fn the_scheduled_refresh_fetches_only_when_the_set_would_go_stale() {
    let w = World::new(vec![es_key("k1")]);
    let refresh = |ahead_ms| block_on(w.auth.refresh_keys(&w.settings, ahead_ms, &w.platform()));
    assert_eq!(
        refresh(60_000),
        Some(JwksEvent::Fetched),
        "nothing cached yet"
    );
    assert_eq!(refresh(60_000), None, "fresh for 300 s");
    w.clock.advance(250_000);
    assert_eq!(refresh(60_000), Some(JwksEvent::Fetched));
    assert_eq!(w.server.hits(), 2);
    // Requests after a refresh find the set in memory.
    w.check(&es_token("k1", json!({"exp": support::NOW + 3600})))
        .unwrap();
    assert_eq!(w.server.hits(), 2);
}

#[test]
fn remembered_tokens_are_rechecked_for_time_on_every_use() {
    let w = World::with(vec![es_key("k1")], &[("JWT_MAX_AGE_SECONDS", "120")]);
    let token = es_token("k1", json!({"exp": support::NOW + 600}));
    assert_eq!(w.check(&token), Ok(Check::Verified));
    assert_eq!(w.check(&token), Ok(Check::Cached));
    // iat is NOW - 5: past 120 s + 60 s leeway the token is too old, remembered or not.
    w.clock.advance(180_000);
    assert_eq!(w.check(&token), invalid_token(JwtError::TooOld));

    let w = World::new(vec![es_key("k1")]);
    let token = es_token("k1", json!({"exp": support::NOW + 100}));
    assert_eq!(w.check(&token), Ok(Check::Verified));
    w.clock.advance(159_000);
    assert_eq!(w.check(&token), Ok(Check::Cached), "within the leeway");
    w.clock.advance(2_000);
    assert_eq!(w.check(&token), invalid_token(JwtError::Expired));
}

#[test]
fn the_verified_memory_is_bounded_in_entries_and_bytes() {
    let cache = VerifiedCache::new();
    let settings = support::settings(&[]);
    let long = "i".repeat(4000);
    let verified = VerifiedToken {
        kid: Some(long.clone()),
        iss: Some(long.clone()),
        sub: Some(long),
        exp: u64::MAX,
        nbf: None,
        iat: None,
        alg: Alg::Rs256,
        claims: Claims::new(Map::new(), MAX_VERIFIED_CLAIMS_BYTES),
    };
    for i in 0..3 * MAX_VERIFIED_ENTRIES {
        cache.insert(&TokenDigest::of(&format!("token-{i}")), 1, &verified);
        assert!(cache.len() <= MAX_VERIFIED_ENTRIES);
        assert!(cache.bytes() <= MAX_VERIFIED_BYTES);
    }
    let last = format!("token-{}", 3 * MAX_VERIFIED_ENTRIES - 1);
    let hit = cache
        .get(&TokenDigest::of(&last), 1, &settings, support::NOW)
        .unwrap();
    assert_eq!(
        hit.sub.unwrap().len(),
        4000,
        "kept whole: the customer id is derived from it"
    );
    assert_eq!(hit.claims.bytes(), MAX_VERIFIED_CLAIMS_BYTES);
    assert!(cache
        .get(&TokenDigest::of("token-0"), 1, &settings, support::NOW)
        .is_none());
    assert!(
        cache
            .get(&TokenDigest::of(&last), 2, &settings, support::NOW)
            .is_none(),
        "another key set"
    );
    assert!(cache
        .get(
            &TokenDigest::of(&format!("{last} ")),
            1,
            &settings,
            support::NOW
        )
        .is_none());
}

#[test]
fn a_token_with_a_large_payload_is_checked_in_full_every_time() {
    let w = World::new(vec![es_key("k1")]);
    let padding = "p".repeat(MAX_VERIFIED_CLAIMS_BYTES);
    let big = es_token("k1", json!({ "padding": padding }));
    assert_eq!(w.check(&big), Ok(Check::Verified));
    assert_eq!(w.check(&big), Ok(Check::Verified), "not remembered");
    let small = es_token("k1", json!({"scope": "a b"}));
    assert_eq!(w.check(&small), Ok(Check::Verified));
    assert_eq!(w.check(&small), Ok(Check::Cached));
}

#[test]
fn a_kid_with_path_or_url_tricks_never_reaches_the_key_server_url() {
    let w = World::new(vec![es_key("k1")]);
    w.check(&es_token("k1", json!({}))).unwrap();
    for kid in [
        "../../etc/passwd",
        "http://127.0.0.1:1/x",
        "k1/../k2",
        "%2e%2e/",
    ] {
        assert_eq!(
            w.check(&es_token(kid, json!({}))),
            invalid_token(JwtError::UnknownKid)
        );
    }
    for seen in w.server.http.seen.borrow().iter() {
        assert_eq!(seen.url, URL, "only the configured URL is fetched");
    }
}

#[test]
fn a_rotation_that_shortens_max_age_is_picked_up_after_one_refetch() {
    let a = new_ec();
    let b = new_ec();
    let w = World::new(vec![ec_jwk(&a, json!({"kid": "A"}))]);
    *w.server.cache_control.borrow_mut() = "max-age=3600";
    assert_eq!(w.check(&ec_token(&a, "A")), Ok(Check::Verified));
    assert_eq!(w.server.hits(), 1);

    // The provider rotates to B and, at the same time, asks for a minute's freshness only.
    w.server.publish(vec![ec_jwk(&b, json!({"kid": "B"}))]);
    *w.server.cache_control.borrow_mut() = "max-age=60";
    w.clock.advance(5_000);
    assert_eq!(w.check(&ec_token(&b, "B")), Ok(Check::Verified));
    assert_eq!(w.server.hits(), 2, "exactly one refetch");
    // The fetched set replaced the held one: A is gone, not kept alongside.
    assert_eq!(
        w.check(&ec_token(&a, "A")),
        invalid_token(JwtError::UnknownKid)
    );
    assert_eq!(w.server.hits(), 2, "within the refetch interval");
    // And its own, shorter lifetime is the one that counts now.
    w.clock.advance(61_000);
    let (result, event) = w.check_in(&w.auth, &ec_token(&b, "B"));
    assert_eq!(result, Ok(Check::Cached));
    assert_eq!(event, Some(JwksEvent::Fetched));
    assert_eq!(w.server.hits(), 3);
}

/// Writes the KV copy another isolate (or something else) left, claiming `fresh_until_ms`.
fn plant_kv_copy(w: &World, keys: Vec<Value>, fresh_until_ms: u64) {
    let value = json!({
        "fresh_until_ms": fresh_until_ms,
        "jwks": json!({ "keys": keys }).to_string(),
    });
    w.kv.entries
        .borrow_mut()
        .insert(jwks::kv_key(URL), (value.to_string(), 86_400));
}

fn kv_fresh_until(w: &World) -> u64 {
    let entries = w.kv.entries.borrow();
    let (value, _) = &entries[&jwks::kv_key(URL)];
    serde_json::from_str::<Value>(value).unwrap()["fresh_until_ms"]
        .as_u64()
        .unwrap()
}

#[test]
fn a_kv_copy_claiming_freshness_a_year_ahead_is_not_trusted() {
    const YEAR_MS: u64 = 365 * 86_400_000;
    // The provider has rotated to k2; KV still holds k1, "fresh" for a year.
    let w = World::new(vec![es_key("k2")]);
    plant_kv_copy(&w, vec![es_key("k1")], NOW_MS + YEAR_MS);
    let (result, event) = w.check_in(&w.auth, &es_token("k2", json!({})));
    assert_eq!(result, Ok(Check::Verified));
    assert_eq!(event, Some(JwksEvent::Fetched), "the provider is asked");
    assert_eq!(w.server.hits(), 1);
    assert!(
        kv_fresh_until(&w) <= NOW_MS + 300_000,
        "KV now holds the provider's answer"
    );

    // With the provider down, the copy still serves (stale-if-error), and the provider is
    // tried again after the back-off, not in a year.
    let w = World::new(vec![es_key("k1")]);
    w.server.down.set(true);
    plant_kv_copy(&w, vec![es_key("k1")], NOW_MS + YEAR_MS);
    let (result, event) = w.check_in(&w.auth, &es_token("k1", json!({})));
    assert_eq!(result, Ok(Check::Verified));
    assert_eq!(event, Some(JwksEvent::Failed(JwksFailure::Unreachable)));
    w.server.down.set(false);
    w.clock.advance(10 * 60_000);
    let (_, event) = w.check_in(
        &w.auth,
        &es_token("k1", json!({"exp": support::NOW + 3600})),
    );
    assert_eq!(event, Some(JwksEvent::Fetched));
    assert_eq!(w.server.hits(), 2);
}

#[test]
fn a_kv_copy_is_fresh_for_at_most_max_fresh_secs_from_now() {
    let max_fresh_ms = jwks::MAX_FRESH_SECS * 1000;
    let w = World::new(vec![es_key("k1")]);
    // Just past the bound, within the skew allowed between isolates' clocks: cut to it.
    plant_kv_copy(&w, vec![es_key("k1")], NOW_MS + max_fresh_ms + 30_000);
    let (result, event) = w.check_in(&w.auth, &es_token("k1", json!({})));
    assert_eq!(result, Ok(Check::Verified));
    assert_eq!(event, Some(JwksEvent::Kv));
    assert_eq!(w.server.hits(), 0);
    // One second past the bound (29 s before what the copy claimed), the set held in memory
    // is no longer fresh: the isolate looks again (KV, which still vouches for 29 s).
    w.clock.advance(max_fresh_ms + 1_000);
    let later = es_token("k1", json!({"exp": support::NOW + 86_400 + 3600}));
    let (_, event) = w.check_in(&w.auth, &later);
    assert_eq!(event, Some(JwksEvent::Kv), "held past MAX_FRESH_SECS");
    // Once the copy's own claim has run out too, the provider is asked.
    w.clock.advance(30_000);
    let later = es_token("k1", json!({"exp": support::NOW + 86_400 + 3601}));
    let (_, event) = w.check_in(&w.auth, &later);
    assert_eq!(event, Some(JwksEvent::Fetched));
    assert_eq!(w.server.hits(), 1);
}
