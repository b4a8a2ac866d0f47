//! Dependencies that fail, and recover: the token endpoint, the key set at `JWKS_URL` and the
//! introspection endpoint, natively, with a clock the test moves. Written as an attacker's
//! checklist: every way the dependency itself can fail, and every way one identifier's answer
//! can be bad; for each, what everyone else gets:
//!
//! - while it backs off, one probe for a burst of requests (never one call per request), the
//!   others 503 with `Retry-After`;
//! - the first good answer serves the next request at once (no back-off to wait out), and every
//!   request that was waiting on it;
//! - a problem with one identifier's answer refuses that identifier only (401), and costs no
//!   other request anything;
//! - a token whose `kid` the held set lacks is 503 while the set cannot be fetched (the
//!   gateway's keys are missing, not the caller's token at fault), and is accepted as soon as the
//!   set can be fetched again.
//!
//! The coordinator's share of this (one probe for the deployment, an isolate served as soon as
//! the coordinator has a token again) is in `token_coordinator.rs`, next to its fakes.

mod common;
#[path = "fixtures/jwt/support.rs"]
mod support;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use common::{platform, FakeClock, FakeHttp, MemoryKv, Reply, Seen};
use edge_auth_proxy::identity::jwt::{JwtError, JwtSettings};
use edge_auth_proxy::identity::mechanism::jwt::{AuthError, Authenticator, Check};
use edge_auth_proxy::identity::opaque::{
    Blame, IntrospectionSettings, IntrospectionSource, SessionCache, Unvouched, MAX_ANSWER_BYTES,
};
use edge_auth_proxy::io::HttpError;
use edge_auth_proxy::support::breaker::HOLD_MS;
use edge_auth_proxy::token::{ClientAuth, TokenCache, TokenConfig, TokenSource};
use futures::executor::block_on;
use futures::future::join_all;
use serde_json::{json, Value};
use support::{claims, ec_jwk, raw_token, signature};

const NOW_MS: u64 = support::NOW * 1000;

/// How a dependency fails.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Connection refused.
    Refused,
    /// No answer within the deadline, at once (the platform's deadline fired).
    Timeout,
    /// No answer within the deadline, after 5 s of the test's clock: a probe in flight that long.
    SlowTimeout,
    Status(u16),
    /// 200 with an HTML page.
    Html,
}

const FAULTS: [Fault; 9] = [
    Fault::Refused,
    Fault::Timeout,
    Fault::SlowTimeout,
    Fault::Status(500),
    Fault::Status(502),
    Fault::Status(503),
    Fault::Status(504),
    Fault::Status(429),
    Fault::Html,
];

fn fail(fault: Fault, clock: &FakeClock) -> Reply {
    match fault {
        Fault::Refused => Err(HttpError::Unreachable("connection refused".into())),
        Fault::Timeout => Err(HttpError::Timeout),
        Fault::SlowTimeout => {
            clock.advance(5_000);
            Err(HttpError::Timeout)
        }
        Fault::Status(status) => Ok((
            status,
            vec![],
            b"{\"error\":\"temporarily_unavailable\"}".to_vec(),
        )),
        Fault::Html => Ok((200, vec![], b"<html>Service unavailable</html>".to_vec())),
    }
}

/// A dependency that answers `ok(request)`, or fails with the fault set; counts its calls.
#[derive(Clone)]
struct Dependency {
    fault: Rc<Cell<Option<Fault>>>,
    calls: Rc<Cell<usize>>,
}

impl Dependency {
    fn at(
        http: &FakeHttp,
        clock: &FakeClock,
        url: &str,
        ok: impl Fn(&Seen) -> Reply + 'static,
    ) -> Self {
        let d = Dependency {
            fault: Rc::default(),
            calls: Rc::default(),
        };
        let (fault, calls, clock) = (d.fault.clone(), d.calls.clone(), clock.clone());
        http.on(url, move |seen| {
            calls.set(calls.get() + 1);
            match fault.get() {
                Some(f) => fail(f, &clock),
                None => ok(seen),
            }
        });
        d
    }

    fn down(&self, fault: Fault) {
        self.fault.set(Some(fault));
    }

    fn up(&self) {
        self.fault.set(None);
    }

    fn calls(&self) -> usize {
        self.calls.get()
    }
}

// ---------------------------------------------------------------------------------------------
// the token endpoint

const TOKEN_URL: &str = "https://idp.example/oauth/access_token";

fn token_config() -> TokenConfig {
    let vars: HashMap<&str, &str> = [
        ("TOKEN_URL", TOKEN_URL),
        ("CLIENT_ID", "client-1"),
        ("CLIENT_SECRET", "s3cret-value"),
    ]
    .into_iter()
    .collect();
    let get = |n: &str| vars.get(n).map(|v| v.to_string());
    TokenConfig::from_settings(&get).unwrap()
}

fn token_endpoint(http: &FakeHttp, clock: &FakeClock) -> Dependency {
    let issued = Rc::new(Cell::new(0));
    Dependency::at(http, clock, TOKEN_URL, move |_| {
        issued.set(issued.get() + 1);
        let body = format!(
            r#"{{"token_type":"Bearer","access_token":"tok-{}","expires_in":3600}}"#,
            issued.get()
        );
        Ok((200, vec![], body.into_bytes()))
    })
}

#[test]
fn each_token_endpoint_failure_is_probed_by_one_request_while_the_others_get_503() {
    for fault in FAULTS {
        let (http, kv, clock) = (
            FakeHttp::default(),
            MemoryKv::default(),
            FakeClock::at(NOW_MS),
        );
        let ep = token_endpoint(&http, &clock);
        let (cache, cfg) = (TokenCache::new(), token_config());
        let p = platform(&http, &kv, &clock);
        ep.down(fault);
        let first = block_on(cache.get(&cfg, &p)).unwrap_err();
        assert!(first.called_endpoint, "{fault:?}");
        assert!(!first.cause.is_client_misconfigured(), "{fault:?}");
        // A burst while it backs off: exactly one of them calls the endpoint.
        let burst = block_on(join_all((0..30).map(|_| cache.get(&cfg, &p))));
        let probes = burst
            .iter()
            .map(|r| r.as_ref().expect_err("no token to give"))
            .inspect(|u| assert!(u.retry_after_secs >= 1, "{fault:?}"))
            .filter(|u| u.called_endpoint)
            .count();
        assert_eq!((probes, ep.calls()), (1, 2), "{fault:?}");
        // It recovers: the next request is served by its probe, and everyone after from memory.
        ep.up();
        let got = block_on(cache.get(&cfg, &p)).unwrap();
        assert_eq!(got.source, TokenSource::Endpoint, "{fault:?}");
        let after = block_on(join_all((0..30).map(|_| cache.get(&cfg, &p))));
        assert!(after
            .iter()
            .all(|r| r.as_ref().is_ok_and(|o| o.source == TokenSource::Memory)));
        assert_eq!(ep.calls(), 3, "{fault:?}");
    }
}

#[test]
fn the_first_good_answer_serves_every_request_waiting_on_the_probe() {
    for fault in FAULTS {
        let (http, kv, clock) = (
            FakeHttp::default(),
            MemoryKv::default(),
            FakeClock::at(NOW_MS),
        );
        let ep = token_endpoint(&http, &clock);
        let (cache, cfg) = (TokenCache::new(), token_config());
        let p = platform(&http, &kv, &clock);
        ep.down(fault);
        block_on(cache.get(&cfg, &p)).unwrap_err();
        // Back at once: a burst arriving now is not refused for an old failure.
        ep.up();
        let started = clock.0.get();
        let burst = block_on(join_all((0..30).map(|_| cache.get(&cfg, &p))));
        assert!(
            burst
                .iter()
                .all(|r| r.as_ref().is_ok_and(|o| o.token.access_token() == "tok-1")),
            "{fault:?}"
        );
        assert_eq!(ep.calls(), 2, "one probe for the burst ({fault:?})");
        assert!(clock.0.get() - started <= HOLD_MS, "{fault:?}");
    }
}

#[test]
fn refused_client_credentials_are_answered_at_once_without_calling() {
    let (http, kv, clock) = (
        FakeHttp::default(),
        MemoryKv::default(),
        FakeClock::at(NOW_MS),
    );
    http.on(TOKEN_URL, |_| {
        Ok((401, vec![], br#"{"error":"invalid_client"}"#.to_vec()))
    });
    let (cache, cfg) = (TokenCache::new(), token_config());
    let p = platform(&http, &kv, &clock);
    let first = block_on(cache.get(&cfg, &p)).unwrap_err();
    assert!(first.cause.is_client_misconfigured());
    // A configuration problem: no probe per half second, and nobody is held.
    let burst = block_on(join_all((0..30).map(|_| cache.get(&cfg, &p))));
    assert!(burst
        .iter()
        .all(|r| r.as_ref().is_err_and(|u| u.retry_after_secs == 60)));
    assert_eq!(http.calls_to(TOKEN_URL).len(), 1);
    assert_eq!(clock.0.get(), NOW_MS, "answered without waiting");
}

// ---------------------------------------------------------------------------------------------
// the key set

const JWKS_URL: &str = "https://login.example/.well-known/jwks.json";

fn key(kid: &str) -> Value {
    ec_jwk(support::ec(), json!({ "kid": kid }))
}

/// A valid token signed with the fixtures' P-256 key, naming `kid`.
fn token(kid: &str) -> String {
    let header = json!({"alg": "ES256", "kid": kid}).to_string();
    raw_token(&header, &claims(json!({})).to_string(), |m| {
        signature("ES256", m)
    })
}

struct Keys {
    http: FakeHttp,
    kv: MemoryKv,
    clock: FakeClock,
    provider: Dependency,
    published: Rc<RefCell<Vec<Value>>>,
    /// A broken document served with 200 while set.
    broken: Rc<Cell<Option<&'static str>>>,
    settings: JwtSettings,
    auth: Authenticator,
}

impl Keys {
    /// A provider publishing `keys`, fresh for five minutes.
    fn new(keys: Vec<Value>) -> Self {
        let (http, clock) = (FakeHttp::default(), FakeClock::at(NOW_MS));
        let published = Rc::new(RefCell::new(keys));
        let broken: Rc<Cell<Option<&'static str>>> = Rc::default();
        let (doc, bad) = (published.clone(), broken.clone());
        let provider = Dependency::at(&http, &clock, JWKS_URL, move |_| {
            if let Some(body) = bad.get() {
                return Ok((200, vec![], body.as_bytes().to_vec()));
            }
            let body = json!({ "keys": *doc.borrow() }).to_string();
            Ok((
                200,
                vec![("cache-control", "max-age=300".into())],
                body.into_bytes(),
            ))
        });
        let settings = support::settings_from(&[
            ("JWT_ALGORITHMS", "ES256"),
            ("JWKS_URL", JWKS_URL),
            ("JWT_ISSUER", support::ISSUER),
            ("JWT_AUDIENCE", support::AUDIENCE),
        ])
        .unwrap();
        Keys {
            http,
            kv: MemoryKv::default(),
            clock,
            provider,
            published,
            broken,
            settings,
            auth: Authenticator::new(),
        }
    }

    fn publish(&self, keys: Vec<Value>) {
        *self.published.borrow_mut() = keys;
    }

    /// The provider failing with `fault`, or, with `body`, answering 200 with that broken set.
    fn fail_with(&self, fault: Fault, body: Option<&'static str>) {
        match body {
            None => self.provider.down(fault),
            Some(body) => self.broken.set(Some(body)),
        }
    }

    fn up(&self) {
        self.provider.up();
        self.broken.set(None);
    }

    async fn check_async(&self, token: &str) -> Result<Check, AuthError> {
        let p = platform(&self.http, &self.kv, &self.clock);
        self.auth
            .check(token, &self.settings, &p)
            .await
            .0
            .map(|a| a.check)
    }

    fn check(&self, token: &str) -> Result<Check, AuthError> {
        block_on(self.check_async(token))
    }
}

fn keys_unavailable(r: &Result<Check, AuthError>) -> bool {
    matches!(r, Err(AuthError::KeysUnavailable(u)) if u.retry_after_secs >= 1)
}

/// The key set failures: the provider's own, and a document that is no usable key set.
fn key_set_faults() -> Vec<(Fault, Option<&'static str>)> {
    let mut all: Vec<_> = FAULTS.iter().map(|f| (*f, None)).collect();
    for broken in [r#"{"keys":[]}"#, r#"{"keys":"k2"}"#, "[]"] {
        all.push((Fault::Status(200), Some(broken)));
    }
    all
}

#[test]
fn an_unknown_kid_while_the_key_set_cannot_be_fetched_is_503_never_401() {
    for (fault, body) in key_set_faults() {
        let w = Keys::new(vec![key("k1")]);
        assert_eq!(w.check(&token("k1")), Ok(Check::Verified));
        // The provider rotates in k2 and goes down; tokens signed with k2 arrive.
        w.publish(vec![key("k1"), key("k2")]);
        w.fail_with(fault, body);
        let first = w.check(&token("k2"));
        assert!(keys_unavailable(&first), "{fault:?} {body:?}: {first:?}");
        // A burst of them: one probe, every one 503, none 401.
        let tokens: Vec<String> = (0..20).map(|_| token("k2")).collect();
        let burst = block_on(join_all(tokens.iter().map(|t| w.check_async(t))));
        assert!(burst.iter().all(keys_unavailable), "{fault:?} {body:?}");
        assert_eq!(w.provider.calls(), 3, "{fault:?} {body:?}");
        // Tokens with the held keys are still served meanwhile.
        assert_eq!(
            w.check(&token("k1")),
            Ok(Check::Cached),
            "{fault:?} {body:?}"
        );
    }
}

#[test]
fn a_key_rotated_in_during_an_outage_is_accepted_as_soon_as_the_set_is_back() {
    for (fault, body) in key_set_faults() {
        let w = Keys::new(vec![key("k1")]);
        w.check(&token("k1")).unwrap();
        w.publish(vec![key("k1"), key("k2")]);
        w.fail_with(fault, body);
        assert!(keys_unavailable(&w.check(&token("k2"))));
        // Back, well within the 10 s between unknown-kid refetches: accepted now, not 13 s on.
        w.up();
        let started = w.clock.0.get();
        assert_eq!(
            w.check(&token("k2")),
            Ok(Check::Verified),
            "{fault:?} {body:?}"
        );
        assert!(w.clock.0.get() - started <= HOLD_MS);
        // A kid the provider, answering, does not have is the caller's fault: 401.
        assert_eq!(
            w.check(&token("k9")),
            Err(AuthError::Jwt(JwtError::UnknownKid)),
            "{fault:?} {body:?}"
        );
    }
}

#[test]
fn with_no_key_set_yet_the_first_good_fetch_serves_at_once() {
    for fault in FAULTS {
        let w = Keys::new(vec![key("k1")]);
        w.provider.down(fault);
        assert!(keys_unavailable(&w.check(&token("k1"))), "{fault:?}");
        w.provider.up();
        let started = w.clock.0.get();
        assert_eq!(w.check(&token("k1")), Ok(Check::Verified), "{fault:?}");
        assert!(w.clock.0.get() - started <= HOLD_MS, "{fault:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// the introspection endpoint

const INTROSPECT: &str = "https://idp.example/oauth2/introspect";

fn form_token(seen: &Seen) -> String {
    form_urlencoded::parse(&seen.body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

struct Sessions {
    http: FakeHttp,
    clock: FakeClock,
    endpoint: Dependency,
    cache: SessionCache,
    settings: IntrospectionSettings,
    client: TokenConfig,
}

impl Sessions {
    /// An endpoint that answers `bad` (status, body) for the identifier `s-bad`, and active
    /// for every other.
    fn new(bad: (u16, String)) -> Self {
        let (http, clock) = (FakeHttp::default(), FakeClock::at(NOW_MS));
        let endpoint = Dependency::at(&http, &clock, INTROSPECT, move |seen| {
            let id = form_token(seen);
            if id == "s-bad" {
                return Ok((bad.0, vec![], bad.1.clone().into_bytes()));
            }
            let body = json!({"active": true, "sub": id, "exp": support::NOW + 600});
            Ok((200, vec![], body.to_string().into_bytes()))
        });
        Sessions {
            http,
            clock,
            endpoint,
            cache: SessionCache::new(),
            settings: IntrospectionSettings {
                url: INTROSPECT.into(),
                timeout_ms: 5_000,
            },
            client: TokenConfig {
                url: TOKEN_URL.into(),
                client_id: "client-1".into(),
                client_secret: "s3cret-value".into(),
                client_auth: ClientAuth::Post,
                scope: None,
                params: Vec::new(),
                timeout_ms: 5_000,
                sealer: None,
            },
        }
    }

    async fn check_async(&self, id: &str) -> Result<IntrospectionSource, Unvouched> {
        let kv = MemoryKv::default();
        let p = platform(&self.http, &kv, &self.clock);
        self.cache
            .check(id, &self.settings, &self.client, &p)
            .await
            .map(|v| v.source)
    }

    fn check(&self, id: &str) -> Result<IntrospectionSource, Unvouched> {
        block_on(self.check_async(id))
    }
}

/// Every kind of answer about one identifier that cannot be used.
fn bad_answers() -> Vec<(u16, String)> {
    let big = format!(
        r#"{{"active": true, "sub": "s-bad", "blob": "{}"}}"#,
        "a".repeat(MAX_ANSWER_BYTES)
    );
    let mut all = vec![(200, big)];
    for body in [
        json!([true]),
        json!("active"),
        json!({}),
        json!({"sub": "s-bad"}),
        json!({"active": "true"}),
        json!({"active": 1}),
        json!({"active": null}),
        json!({"active": true, "exp": "soon"}),
        json!({"active": true, "exp": -1}),
        json!({"active": true, "exp": {"at": 1}}),
        json!({"active": true, "nbf": "later"}),
        json!({"active": true, "exp": support::NOW + 600, "nbf": [1]}),
    ] {
        all.push((200, body.to_string()));
    }
    for status in [400, 409, 413, 422] {
        all.push((status, r#"{"error":"invalid_request"}"#.to_string()));
    }
    all
}

#[test]
fn a_bad_answer_about_one_identifier_refuses_that_identifier_only() {
    for bad in bad_answers() {
        let what = format!("{} {:.60}", bad.0, bad.1);
        let s = Sessions::new(bad);
        // The bad one and a good one in the same instant: the good one is served.
        let (bad_one, good_one) = block_on(futures::future::join(
            s.check_async("s-bad"),
            s.check_async("s-good"),
        ));
        let Err(Unvouched::Unusable(cause)) = bad_one else {
            panic!("{what}: {bad_one:?}");
        };
        assert_eq!(cause.blame(), Blame::Identifier, "{what}");
        assert_eq!(good_one, Ok(IntrospectionSource::Endpoint), "{what}");
        // Nothing backs off: the next new session is asked about at once.
        assert_eq!(
            s.check("s-other"),
            Ok(IntrospectionSource::Endpoint),
            "{what}"
        );
        assert_eq!(s.clock.0.get(), NOW_MS, "nobody waited ({what})");
        // The bad one is remembered as inactive (no call per retry).
        assert_eq!(
            s.check("s-bad"),
            Err(Unvouched::Inactive(IntrospectionSource::Memory)),
            "{what}"
        );
        assert_eq!(s.endpoint.calls(), 3, "{what}");
    }
}

#[test]
fn each_introspection_endpoint_failure_is_probed_by_one_request_and_recovery_is_immediate() {
    for fault in FAULTS {
        let s = Sessions::new((200, "{}".into()));
        s.endpoint.down(fault);
        let Err(Unvouched::Unavailable(first)) = s.check("s-1") else {
            panic!("{fault:?}: 503 expected");
        };
        assert!(first.called_endpoint);
        // A burst of different sessions: one probe; each a 503, none let through.
        let ids: Vec<String> = (0..20).map(|i| format!("s-{i}")).collect();
        let burst = block_on(join_all(ids.iter().map(|id| s.check_async(id))));
        for r in &burst {
            let Err(Unvouched::Unavailable(u)) = r else {
                panic!("{fault:?}: {r:?}");
            };
            assert!(u.retry_after_secs >= 1);
            assert_eq!(u.cause.blame(), Blame::Endpoint, "{fault:?}");
        }
        assert_eq!(s.endpoint.calls(), 2, "{fault:?}");
        // Back: the next session is vouched for by its probe.
        s.endpoint.up();
        let started = s.clock.0.get();
        assert_eq!(
            s.check("s-new"),
            Ok(IntrospectionSource::Endpoint),
            "{fault:?}"
        );
        assert!(s.clock.0.get() - started <= HOLD_MS, "{fault:?}");
        let all = block_on(join_all(ids.iter().map(|id| s.check_async(id))));
        assert!(all.iter().all(Result::is_ok), "{fault:?}: no back-off left");
    }
}

#[test]
fn refused_client_credentials_at_introspection_answer_at_once_for_a_minute() {
    let s = Sessions::new((200, "{}".into()));
    s.endpoint.down(Fault::Status(401));
    let Err(Unvouched::Unavailable(first)) = s.check("s-1") else {
        panic!("503 expected");
    };
    assert!(first.cause.config_problem().is_some());
    assert_eq!(first.retry_after_secs, 60);
    let burst = block_on(join_all(["s-2", "s-3", "s-4"].map(|id| s.check_async(id))));
    assert!(burst
        .iter()
        .all(|r| matches!(r, Err(Unvouched::Unavailable(u)) if !u.called_endpoint)));
    assert_eq!(s.endpoint.calls(), 1);
    assert_eq!(s.clock.0.get(), NOW_MS, "answered without waiting");
}
