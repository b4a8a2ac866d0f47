//! Opaque customer identifiers, natively: the introspection request, the parsing of real-world
//! answers, and the cache's decisions with a clock the test moves and a scripted endpoint that
//! counts its calls.

mod common;

use std::cell::Cell;
use std::rc::Rc;

use base64::Engine as _;
use common::{platform, FakeClock, FakeHttp, MemoryKv, Seen};
use edge_auth_proxy::identity::opaque::{
    parse_answer, request, Answer, Blame, IntrospectionError, IntrospectionSettings,
    IntrospectionSource, SessionCache, Unvouched, ACTIVE_MAX_MS, INACTIVE_MS, MAX_ANSWER_BYTES,
    MAX_BYTES, MAX_ENTRIES,
};
use edge_auth_proxy::io::HttpError;
use edge_auth_proxy::token::{ClientAuth, TokenConfig};
use futures::executor::block_on;
use futures::future::join_all;
use serde_json::{json, Value};

const NOW_MS: u64 = 1_700_000_000_000;
const NOW: u64 = NOW_MS / 1000;
const URL: &str = "https://idp.example/oauth2/introspect";

fn client(auth: ClientAuth) -> TokenConfig {
    TokenConfig {
        url: "https://idp.example/oauth2/token".into(),
        client_id: "gw client".into(),
        client_secret: "s&cr=t".into(),
        client_auth: auth,
        scope: None,
        params: Vec::new(),
        timeout_ms: 1000,
        sealer: None,
    }
}

fn settings() -> IntrospectionSettings {
    IntrospectionSettings {
        url: URL.into(),
        timeout_ms: 500,
    }
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn token_of(seen: &Seen) -> String {
    form(&seen.body)
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// the request

#[test]
fn the_request_is_rfc_7662_with_the_client_in_the_body() {
    let (headers, body) = request("sess ion/1+", &client(ClientAuth::Post));
    assert_eq!(headers["content-type"], "application/x-www-form-urlencoded");
    assert_eq!(headers["accept"], "application/json");
    assert!(!headers.contains_key("authorization"));
    let f = form(&body);
    assert_eq!(
        f,
        [
            ("token".to_string(), "sess ion/1+".to_string()),
            ("client_id".into(), "gw client".into()),
            ("client_secret".into(), "s&cr=t".into()),
        ]
    );
    assert!(
        String::from_utf8(body)
            .unwrap()
            .starts_with("token=sess+ion%2F1%2B&"),
        "form-urlencoded"
    );
}

#[test]
fn the_request_can_authenticate_with_http_basic() {
    let (headers, body) = request("s-1", &client(ClientAuth::Basic));
    let b64 = headers["authorization"]
        .to_str()
        .unwrap()
        .strip_prefix("Basic ")
        .unwrap()
        .to_string();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    assert_eq!(decoded, b"gw+client:s%26cr%3Dt", "RFC 6749 2.3.1 encoding");
    assert_eq!(form(&body), [("token".to_string(), "s-1".to_string())]);
}

// ---------------------------------------------------------------------------------------------
// the answers

fn parse(v: Value) -> Result<Answer, IntrospectionError> {
    parse_answer(200, v.to_string().as_bytes(), NOW)
}

fn active_claims(v: Value) -> (Value, Option<u64>) {
    match parse(v).expect("an answer") {
        Answer::Active { claims, exp_secs } => (Value::Object(claims.map().clone()), exp_secs),
        Answer::Inactive => panic!("inactive"),
    }
}

#[test]
fn a_keycloak_answer_keeps_every_member_as_claims() {
    // Keycloak 24's token introspection endpoint, shape as documented and observed.
    let answer = json!({
        "exp": NOW + 300, "iat": NOW - 60, "jti": "5c1f3f0e-…", "iss": "https://kc.example/realms/acme",
        "aud": "account", "sub": "f:3e5c:alice", "typ": "Bearer", "azp": "web-app",
        "session_state": "b0a6", "acr": "1", "realm_access": {"roles": ["customer"]},
        "scope": "openid profile email", "sid": "b0a6", "email_verified": true,
        "preferred_username": "alice", "client_id": "web-app", "username": "alice",
        "token_type": "Bearer", "active": true
    });
    let (claims, exp) = active_claims(answer.clone());
    assert_eq!(claims, answer);
    assert_eq!(exp, Some(NOW + 300));
}

#[test]
fn an_okta_answer_with_numbers_as_okta_sends_them() {
    let (claims, exp) = active_claims(json!({
        "active": true, "scope": "openid profile", "username": "john.doe@example.com",
        "exp": NOW + 3600, "iat": NOW, "sub": "john.doe@example.com",
        "aud": "https://acme.okta.com", "iss": "https://acme.okta.com/oauth2/default",
        "jti": "AT.7P4KlczBYVcWLkxduEuKeZfeiNYkZIC9uGJI1Q6g", "token_type": "Bearer",
        "client_id": "0oa1b2c3", "uid": "00uid4BxXw6I6TV4m0g3"
    }));
    assert_eq!(claims["uid"], "00uid4BxXw6I6TV4m0g3");
    assert_eq!(exp, Some(NOW + 3600));
}

#[test]
fn an_ory_answer_with_ext_and_fractional_times() {
    let (claims, exp) = active_claims(json!({
        "active": true, "client_id": "my-client", "exp": (NOW + 120) as f64 + 0.75,
        "iat": NOW, "nbf": NOW, "iss": "https://hydra.example/", "scope": "offline openid",
        "sub": "user-1", "token_type": "Bearer", "token_use": "access_token",
        "ext": {"org": {"id": "o-9"}}, "aud": []
    }));
    assert_eq!(claims["ext"]["org"]["id"], "o-9");
    assert_eq!(exp, Some(NOW + 120), "fractions dropped");
}

#[test]
fn active_is_the_only_member_required() {
    let (claims, exp) = active_claims(json!({"active": true}));
    assert_eq!(claims, json!({"active": true}));
    assert_eq!(exp, None);
    assert_eq!(
        parse(json!({"sub": "x", "scope": "a"})),
        Err(IntrospectionError::NoActive)
    );
}

#[test]
fn only_a_json_true_is_active() {
    assert_eq!(
        parse(json!({"active": false, "sub": "x"})),
        Ok(Answer::Inactive)
    );
    // Not a boolean: an answer about this identifier that cannot be used, which refuses it
    // (and only it: `Blame::Identifier`).
    for not_a_boolean in [
        json!("true"),
        json!(1),
        json!("yes"),
        json!(null),
        json!([true]),
    ] {
        let err = parse(json!({"active": not_a_boolean.clone(), "sub": "x"})).unwrap_err();
        assert_eq!(err, IntrospectionError::BadActive, "{not_a_boolean}");
        assert_eq!(err.blame(), Blame::Identifier);
    }
}

#[test]
fn an_answer_past_its_exp_or_before_its_nbf_is_inactive() {
    assert_eq!(
        parse(json!({"active": true, "exp": NOW})),
        Ok(Answer::Inactive),
        "exp is exclusive"
    );
    assert_eq!(
        parse(json!({"active": true, "exp": NOW - 1000})),
        Ok(Answer::Inactive)
    );
    assert_eq!(
        parse(json!({"active": true, "nbf": NOW + 10})),
        Ok(Answer::Inactive)
    );
    let (_, exp) = active_claims(json!({"active": true, "exp": (NOW + 60).to_string()}));
    assert_eq!(exp, Some(NOW + 60), "a numeric string is read");
}

#[test]
fn garbage_is_an_error_not_an_answer() {
    let p = |status: u16, body: &str| parse_answer(status, body.as_bytes(), NOW);
    assert_eq!(p(200, "<html>"), Err(IntrospectionError::NotJson));
    assert_eq!(p(200, "[true]"), Err(IntrospectionError::NotAnObject));
    assert_eq!(p(200, "\"active\""), Err(IntrospectionError::NotAnObject));
    assert_eq!(p(200, ""), Err(IntrospectionError::NotJson));
    assert_eq!(
        p(200, r#"{"active": true, "exp": "soon"}"#),
        Err(IntrospectionError::BadTime("exp"))
    );
    assert_eq!(
        p(200, r#"{"active": true, "exp": -1}"#),
        Err(IntrospectionError::BadTime("exp"))
    );
    assert_eq!(
        p(500, r#"{"active": true}"#),
        Err(IntrospectionError::Status(500))
    );
    let refused = p(401, r#"{"error": "invalid_client"}"#).unwrap_err();
    assert!(refused.is_client_misconfigured());
    assert_eq!(refused.code(), "introspection_client_rejected");
    let huge = format!(
        r#"{{"active": true, "x": "{}"}}"#,
        "a".repeat(MAX_ANSWER_BYTES)
    );
    assert_eq!(p(200, &huge), Err(IntrospectionError::TooLarge));
}

#[test]
fn whose_fault_a_failure_is_decides_what_it_costs() {
    use IntrospectionError as E;
    // The endpoint's own failures back it off for everyone.
    for e in [
        E::Timeout,
        E::Unreachable,
        E::NotJson,
        E::Status(500),
        E::Status(502),
        E::Status(503),
        E::Status(504),
        E::Status(429),
        E::Status(408),
    ] {
        assert_eq!(e.blame(), Blame::Endpoint, "{e:?}");
    }
    // Refused client credentials, or not an introspection endpoint: a configuration problem.
    for e in [
        E::Status(401),
        E::Status(403),
        E::Status(404),
        E::Status(405),
        E::Status(302),
        E::Status(204),
    ] {
        assert_eq!(e.blame(), Blame::Configuration, "{e:?}");
        assert!(e.config_problem().is_some());
    }
    // A problem with one identifier's answer costs only that identifier.
    for e in [
        E::TooLarge,
        E::NotAnObject,
        E::NoActive,
        E::BadActive,
        E::BadTime("exp"),
        E::BadTime("nbf"),
        E::Status(400),
        E::Status(409),
        E::Status(413),
        E::Status(422),
    ] {
        assert_eq!(e.blame(), Blame::Identifier, "{e:?}");
        assert!(e.config_problem().is_none());
    }
}

// ---------------------------------------------------------------------------------------------
// the cache

struct World {
    cache: SessionCache,
    http: FakeHttp,
    clock: FakeClock,
    client: TokenConfig,
    settings: IntrospectionSettings,
}

impl World {
    /// An endpoint that answers `answer(token)`.
    fn new(answer: impl Fn(&str) -> Result<Value, HttpError> + 'static) -> Self {
        let http = FakeHttp::default();
        http.on(URL, move |seen| {
            let v = answer(&token_of(seen))?;
            Ok((200, vec![], v.to_string().into_bytes()))
        });
        Self {
            cache: SessionCache::new(),
            http,
            clock: FakeClock::at(NOW_MS),
            client: client(ClientAuth::Post),
            settings: settings(),
        }
    }

    fn check(&self, id: &str) -> Result<(String, IntrospectionSource), Unvouched> {
        block_on(self.check_async(id))
    }

    async fn check_async(&self, id: &str) -> Result<(String, IntrospectionSource), Unvouched> {
        self.cache
            .check(
                id,
                &self.settings,
                &self.client,
                // The session cache reads no KV: an empty one.
                &platform(&self.http, &MemoryKv::default(), &self.clock),
            )
            .await
            .map(|v| (v.claims.str("sub").unwrap_or("").to_string(), v.source))
    }

    fn calls(&self) -> usize {
        self.http.calls_to(URL).len()
    }
}

fn active(sub: &str, exp: Option<u64>) -> Value {
    match exp {
        Some(exp) => json!({"active": true, "sub": sub, "exp": exp}),
        None => json!({"active": true, "sub": sub}),
    }
}

const MEMORY: IntrospectionSource = IntrospectionSource::Memory;
const ENDPOINT: IntrospectionSource = IntrospectionSource::Endpoint;

#[test]
fn an_active_answer_is_remembered_until_its_exp() {
    let w = World::new(|t| Ok(active(t, Some(NOW + 60))));
    assert_eq!(w.check("s-1"), Ok(("s-1".into(), ENDPOINT)));
    w.clock.advance(59_999);
    assert_eq!(w.check("s-1"), Ok(("s-1".into(), MEMORY)));
    assert_eq!(w.calls(), 1);
    w.clock.advance(1);
    assert_eq!(
        w.check("s-1"),
        Err(Unvouched::Inactive(ENDPOINT)),
        "at exp the entry is gone and the endpoint's own answer (past exp) is inactive"
    );
    assert_eq!(w.calls(), 2);
}

#[test]
fn an_active_answer_is_remembered_at_most_five_minutes() {
    for exp in [Some(NOW + 86_400), None] {
        let w = World::new(move |t| Ok(active(t, exp)));
        w.check("s-1").unwrap();
        w.clock.advance(ACTIVE_MAX_MS - 1);
        assert_eq!(w.check("s-1").unwrap().1, MEMORY);
        w.clock.advance(1);
        assert_eq!(
            w.check("s-1").unwrap().1,
            ENDPOINT,
            "asked again after 5 minutes"
        );
        assert_eq!(w.calls(), 2);
    }
}

#[test]
fn a_session_revoked_at_the_endpoint_stops_working_when_its_answer_expires() {
    let revoked = Rc::new(Cell::new(false));
    let r = revoked.clone();
    let w = World::new(move |t| {
        Ok(if r.get() {
            json!({"active": false})
        } else {
            active(t, None)
        })
    });
    w.check("s-1").unwrap();
    revoked.set(true);
    w.clock.advance(ACTIVE_MAX_MS);
    assert_eq!(w.check("s-1"), Err(Unvouched::Inactive(ENDPOINT)));
}

#[test]
fn an_inactive_answer_is_remembered_ten_seconds() {
    let w = World::new(|_| Ok(json!({"active": false})));
    assert_eq!(w.check("dead"), Err(Unvouched::Inactive(ENDPOINT)));
    w.clock.advance(INACTIVE_MS - 1);
    assert_eq!(w.check("dead"), Err(Unvouched::Inactive(MEMORY)));
    assert_eq!(w.calls(), 1);
    w.clock.advance(1);
    assert_eq!(w.check("dead"), Err(Unvouched::Inactive(ENDPOINT)));
    assert_eq!(w.calls(), 2);
}

#[test]
fn answers_are_per_identifier() {
    let w = World::new(|t| {
        Ok(if t == "good" {
            active(t, None)
        } else {
            json!({"active": false})
        })
    });
    assert_eq!(w.check("good").unwrap().0, "good");
    assert!(w.check("bad").is_err());
    assert!(
        w.check("good ").is_err(),
        "another string is another identifier"
    );
    assert_eq!(w.check("good").unwrap().1, MEMORY);
    assert_eq!(w.calls(), 3);
}

#[test]
fn concurrent_requests_for_one_identifier_cause_one_call() {
    let w = World::new(|t| Ok(active(t, None)));
    let results = block_on(join_all((0..10).map(|_| w.check_async("s-1"))));
    assert!(results.iter().all(|r| r.as_ref().unwrap().0 == "s-1"));
    assert_eq!(w.calls(), 1);
    assert_eq!(
        results
            .iter()
            .filter(|r| r.as_ref().unwrap().1 == ENDPOINT)
            .count(),
        1,
        "one request called; the others found its answer"
    );
    // Two identifiers at once: one call each, concurrently.
    let both = block_on(join_all(["a", "b", "a", "b"].map(|id| w.check_async(id))));
    assert!(both.iter().all(Result::is_ok));
    assert_eq!(w.calls(), 3);
}

#[test]
fn a_failing_endpoint_is_probed_by_one_request_at_a_time_and_nothing_is_let_through() {
    let down = Rc::new(Cell::new(true));
    let d = down.clone();
    let w = World::new(move |t| {
        if d.get() {
            Err(HttpError::Unreachable("refused".into()))
        } else {
            Ok(active(t, None))
        }
    });
    let Err(Unvouched::Unavailable(first)) = w.check("s-1") else {
        panic!("503 expected");
    };
    assert!(first.called_endpoint);
    assert_eq!(first.cause, IntrospectionError::Unreachable);
    assert_eq!(first.retry_after_secs, 1);
    // While it backs off, requests for this identifier and others: one probe for them all.
    let all = block_on(join_all(
        ["s-1", "s-2", "s-3", "s-2"].map(|id| w.check_async(id)),
    ));
    let mut probes = 0;
    for r in all {
        let Err(Unvouched::Unavailable(u)) = r else {
            panic!("503 expected, never an unchecked identifier");
        };
        assert_eq!(u.cause, IntrospectionError::Unreachable);
        assert!(u.retry_after_secs >= 1);
        probes += usize::from(u.called_endpoint);
    }
    assert_eq!((probes, w.calls()), (1, 2));
    // Back up: the next request is served by its probe, without waiting out a back-off.
    down.set(false);
    let before = w.clock.0.get();
    assert_eq!(w.check("s-2").unwrap().1, ENDPOINT, "back up: served again");
    assert!(w.clock.0.get() - before <= edge_auth_proxy::support::breaker::HOLD_MS);
    let served_at = w.clock.0.get();
    assert_eq!(w.check("s-3").unwrap().1, ENDPOINT, "and no back-off left");
    assert_eq!(w.clock.0.get(), served_at, "answered without waiting");
}

#[test]
fn a_slow_endpoint_is_a_timeout_and_concurrent_waiters_share_its_failure() {
    let w = World::new(|_| Err(HttpError::Timeout));
    let results = block_on(join_all((0..5).map(|_| w.check_async("s-1"))));
    assert_eq!(w.calls(), 1);
    for r in results {
        let Err(Unvouched::Unavailable(u)) = r else {
            panic!("503 expected");
        };
        assert_eq!(u.cause, IntrospectionError::Timeout);
    }
}

#[test]
fn remembered_answers_keep_serving_while_the_endpoint_is_down() {
    let down = Rc::new(Cell::new(false));
    let d = down.clone();
    let w = World::new(move |t| {
        if d.get() {
            Err(HttpError::Timeout)
        } else {
            Ok(active(t, None))
        }
    });
    w.check("known").unwrap();
    down.set(true);
    assert!(matches!(w.check("new"), Err(Unvouched::Unavailable(_))));
    assert_eq!(w.check("known").unwrap().1, MEMORY);
}

#[test]
fn the_cache_is_bounded_in_entries() {
    let w = World::new(|t| Ok(active(t, None)));
    for i in 0..MAX_ENTRIES + 500 {
        w.check(&format!("s-{i}")).unwrap();
        assert!(w.cache.len() <= MAX_ENTRIES);
    }
    assert_eq!(w.cache.len(), MAX_ENTRIES);
    let calls = w.calls();
    assert_eq!(
        w.check(&format!("s-{}", MAX_ENTRIES + 499)).unwrap().1,
        MEMORY,
        "the newest stay"
    );
    assert_eq!(w.check("s-0").unwrap().1, ENDPOINT, "the oldest went first");
    assert_eq!(w.calls(), calls + 1);
}

#[test]
fn the_cache_is_bounded_in_bytes() {
    let padding = "p".repeat(MAX_ANSWER_BYTES - 100);
    let w = World::new(move |t| Ok(json!({"active": true, "sub": t, "pad": padding})));
    for i in 0..300 {
        w.check(&format!("s-{i}")).unwrap();
        assert!(w.cache.bytes() <= MAX_BYTES);
    }
    assert!(w.cache.len() < 300);
    assert!(
        w.cache.bytes() > MAX_BYTES / 2,
        "the bound is used, not undercut"
    );
}

#[test]
fn the_identifier_is_posted_to_the_endpoint_only() {
    let w = World::new(|t| Ok(active(t, None)));
    w.check("secret-session-id").unwrap();
    let calls = w.http.seen.borrow();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].url, URL);
    assert_eq!(calls[0].method, http::Method::POST);
    assert_eq!(token_of(&calls[0]), "secret-session-id");
}
