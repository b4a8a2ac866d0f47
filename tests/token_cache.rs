//! The isolate's token cache against a scripted token endpoint, an in-memory KV and a clock the
//! test moves: one endpoint call per lifetime, one per cold burst, none while KV holds a token,
//! a back-off during outages, and never a token past its margin.

mod common;

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;

use common::{platform, FakeClock, FakeHttp, MemoryKv};
use edge_auth_proxy::io::HttpError;
use edge_auth_proxy::token::{GrantError, TokenCache, TokenConfig, TokenSource};
use futures::executor::block_on;
use futures::future::join_all;

const TOKEN_URL: &str = "https://idp.example/oauth/access_token?grant_type=client_credentials";
const T0: u64 = 1_700_000_000_000;

fn config(extra: &[(&str, &str)]) -> Rc<TokenConfig> {
    let mut vars: HashMap<&str, &str> = [
        ("TOKEN_URL", TOKEN_URL),
        ("CLIENT_ID", "client-1"),
        ("CLIENT_SECRET", "s3cret-value"),
    ]
    .into_iter()
    .collect();
    vars.extend(extra.iter().copied());
    let get = |n: &str| vars.get(n).map(|v| v.to_string());
    Rc::new(TokenConfig::from_settings(&get).unwrap())
}

/// A token endpoint that issues `tok-1`, `tok-2`, … with the given `expires_in`.
fn issuing(http: &FakeHttp, expires_in: &'static str) -> Rc<Cell<u32>> {
    let issued = Rc::new(Cell::new(0));
    let n = issued.clone();
    http.on("https://idp.example/", move |_| {
        n.set(n.get() + 1);
        let body = format!(
            r#"{{"token_type":"Bearer","access_token":"tok-{}","expires_in":{expires_in}}}"#,
            n.get()
        );
        Ok((
            200,
            vec![("content-type", "application/json".into())],
            body.into_bytes(),
        ))
    });
    issued
}

#[test]
fn sequential_requests_share_one_token_per_lifetime() {
    let (http, kv, clock) = (FakeHttp::default(), MemoryKv::default(), FakeClock::at(T0));
    let issued = issuing(&http, "\"28799\"");
    let cache = TokenCache::new();
    let cfg = config(&[]);
    for i in 0..100 {
        let got = block_on(cache.get(&cfg, &platform(&http, &kv, &clock))).unwrap();
        assert_eq!(got.token.access_token(), "tok-1");
        let expected = if i == 0 {
            TokenSource::Endpoint
        } else {
            TokenSource::Memory
        };
        assert_eq!(got.source, expected);
        clock.advance(1_000);
    }
    assert_eq!(issued.get(), 1);
}

#[test]
fn a_cold_burst_causes_one_kv_read_and_one_endpoint_call() {
    let (http, kv, clock) = (FakeHttp::default(), MemoryKv::default(), FakeClock::at(T0));
    let issued = issuing(&http, "3600");
    let cache = TokenCache::new();
    let cfg = config(&[]);
    let p = platform(&http, &kv, &clock);
    let all = block_on(join_all((0..50).map(|_| cache.get(&cfg, &p))));
    assert!(all
        .iter()
        .all(|r| r.as_ref().unwrap().token.access_token() == "tok-1"));
    assert_eq!(issued.get(), 1);
    assert_eq!(kv.gets.get(), 1);
    assert_eq!(kv.puts.get(), 1);
}

#[test]
fn a_new_isolate_uses_the_token_in_kv() {
    let (http, kv, clock) = (FakeHttp::default(), MemoryKv::default(), FakeClock::at(T0));
    let issued = issuing(&http, "3600");
    let cfg = config(&[]);
    block_on(TokenCache::new().get(&cfg, &platform(&http, &kv, &clock))).unwrap();
    clock.advance(60_000);
    let second_isolate = TokenCache::new();
    let got = block_on(second_isolate.get(&cfg, &platform(&http, &kv, &clock))).unwrap();
    assert_eq!(got.source, TokenSource::Kv);
    assert_eq!(got.token.access_token(), "tok-1");
    assert_eq!(issued.get(), 1);
}

#[test]
fn kv_never_holds_a_secret_and_its_key_names_none() {
    let (http, kv, clock) = (FakeHttp::default(), MemoryKv::default(), FakeClock::at(T0));
    issuing(&http, "3600");
    let cfg = config(&[]);
    block_on(TokenCache::new().get(&cfg, &platform(&http, &kv, &clock))).unwrap();
    let entries = kv.entries.borrow();
    assert_eq!(entries.len(), 1);
    for (key, (value, ttl)) in entries.iter() {
        assert!(!key.contains("s3cret") && !key.contains("tok-1") && !key.contains("client-1"));
        assert!(!value.contains("s3cret-value"));
        assert_eq!(*ttl, 3_540, "KV keeps it until the margin, not longer");
    }
}

#[test]
fn with_an_encryption_key_kv_holds_no_token_in_clear_and_garbage_is_a_miss() {
    let (http, kv, clock) = (FakeHttp::default(), MemoryKv::default(), FakeClock::at(T0));
    let issued = issuing(&http, "3600");
    let key = [(
        "TOKEN_ENCRYPTION_KEY",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    )];
    let cfg = config(&key);
    block_on(TokenCache::new().get(&cfg, &platform(&http, &kv, &clock))).unwrap();
    assert!(kv
        .entries
        .borrow()
        .values()
        .all(|(v, _)| !v.contains("tok-1")));
    // A second isolate reads it back through the seal.
    let got = block_on(TokenCache::new().get(&cfg, &platform(&http, &kv, &clock))).unwrap();
    assert_eq!(
        (got.source, got.token.access_token()),
        (TokenSource::Kv, "tok-1")
    );
    // A corrupted value is a miss, not an error.
    for (v, _) in kv.entries.borrow_mut().values_mut() {
        v.push('x');
    }
    let got = block_on(TokenCache::new().get(&cfg, &platform(&http, &kv, &clock))).unwrap();
    assert_eq!(
        (got.source, got.token.access_token()),
        (TokenSource::Endpoint, "tok-2")
    );
    assert_eq!(issued.get(), 2);
}

#[test]
fn a_token_is_never_handed_out_inside_its_safety_margin() {
    let (http, kv, clock) = (FakeHttp::default(), MemoryKv::default(), FakeClock::at(T0));
    let issued = issuing(&http, "100");
    let cache = TokenCache::new();
    let cfg = config(&[]);
    block_on(cache.get(&cfg, &platform(&http, &kv, &clock))).unwrap();
    clock.advance(89_999); // margin is 10 s of a 100 s life
    assert_eq!(
        block_on(cache.get(&cfg, &platform(&http, &kv, &clock)))
            .unwrap()
            .token
            .access_token(),
        "tok-1"
    );
    clock.advance(1);
    let got = block_on(cache.get(&cfg, &platform(&http, &kv, &clock))).unwrap();
    assert_eq!(
        got.token.access_token(),
        "tok-2",
        "KV's copy is past its margin too"
    );
    assert_eq!(issued.get(), 2);
}

#[test]
fn an_outage_with_no_token_is_probed_once_for_a_burst_not_once_per_request() {
    let (http, kv, clock) = (FakeHttp::default(), MemoryKv::default(), FakeClock::at(T0));
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    http.on("https://idp.example/", move |_| {
        c.set(c.get() + 1);
        Err(HttpError::Unreachable("refused".into()))
    });
    let cache = TokenCache::new();
    let cfg = config(&[]);
    let p = platform(&http, &kv, &clock);
    let first = block_on(cache.get(&cfg, &p)).unwrap_err();
    assert_eq!(first.cause, GrantError::Unreachable);
    assert_eq!(first.retry_after_secs, 1);
    // A burst during the back-off: one probe for all of it, every request a 503.
    let burst = block_on(join_all((0..50).map(|_| cache.get(&cfg, &p))));
    assert!(burst.iter().all(|r| r
        .as_ref()
        .is_err_and(|u| u.retry_after_secs >= 1 && u.cause == GrantError::Unreachable)));
    let probes = burst
        .iter()
        .filter(|r| r.as_ref().is_err_and(|u| u.called_endpoint))
        .count();
    assert_eq!((probes, calls.get()), (1, 2));
    // Up again: the next request is served by its probe, not refused until a back-off ends.
    issuing(&http, "3600");
    let got = block_on(cache.get(&cfg, &p)).unwrap();
    assert_eq!(got.source, TokenSource::Endpoint);
}

#[test]
fn garbage_from_the_endpoint_is_a_failure_and_recovery_clears_the_back_off() {
    let (http, kv, clock) = (FakeHttp::default(), MemoryKv::default(), FakeClock::at(T0));
    http.on("https://idp.example/", |_| {
        Ok((200, vec![], b"<html>oops</html>".to_vec()))
    });
    let cache = TokenCache::new();
    let cfg = config(&[]);
    let err = block_on(cache.get(&cfg, &platform(&http, &kv, &clock))).unwrap_err();
    assert_eq!(err.cause, GrantError::NotJson);
    issuing(&http, "3600");
    clock.advance(2_000);
    let got = block_on(cache.get(&cfg, &platform(&http, &kv, &clock))).unwrap();
    assert_eq!(got.source, TokenSource::Endpoint);
}

#[test]
fn a_failing_kv_costs_an_endpoint_call_not_a_request() {
    let (http, kv, clock) = (FakeHttp::default(), MemoryKv::default(), FakeClock::at(T0));
    issuing(&http, "3600");
    kv.failing.set(true);
    let got = block_on(TokenCache::new().get(&config(&[]), &platform(&http, &kv, &clock))).unwrap();
    assert_eq!(got.source, TokenSource::Endpoint);
}

#[test]
fn the_request_follows_the_configured_client_authentication() {
    let (http, kv, clock) = (FakeHttp::default(), MemoryKv::default(), FakeClock::at(T0));
    issuing(&http, "3600");
    let cfg = config(&[
        ("TOKEN_CLIENT_AUTH", "client_secret_basic"),
        ("TOKEN_SCOPE", "profile:read"),
    ]);
    block_on(TokenCache::new().get(&cfg, &platform(&http, &kv, &clock))).unwrap();
    let seen = http.calls_to("https://idp.example/");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, http::Method::POST);
    assert_eq!(seen[0].url, TOKEN_URL, "TOKEN_URL is used verbatim");
    assert!(seen[0].headers["authorization"]
        .to_str()
        .unwrap()
        .starts_with("Basic "));
    let body = String::from_utf8(seen[0].body.clone()).unwrap();
    assert_eq!(body, "scope=profile%3Aread");
}

#[test]
fn bad_token_settings_name_the_setting() {
    let cases: [(&[(&str, &str)], &str); 5] = [
        (
            &[("TOKEN_CLIENT_AUTH", "private_key_jwt_please")],
            "TOKEN_CLIENT_AUTH",
        ),
        // Without its key, private_key_jwt names the key (not the secret it does not need).
        (
            &[("TOKEN_CLIENT_AUTH", "private_key_jwt")],
            "CLIENT_PRIVATE_KEY",
        ),
        (
            &[("TOKEN_ENCRYPTION_KEY", "c2hvcnQ=")],
            "TOKEN_ENCRYPTION_KEY",
        ),
        (&[("TOKEN_URL", "idp.example/token")], "TOKEN_URL"),
        (&[("TOKEN_TIMEOUT_MS", "0")], "TOKEN_TIMEOUT_MS"),
    ];
    for (extra, setting) in cases {
        let mut vars: HashMap<&str, &str> = [
            ("TOKEN_URL", TOKEN_URL),
            ("CLIENT_ID", "c"),
            ("CLIENT_SECRET", "s"),
        ]
        .into_iter()
        .collect();
        vars.extend(extra.iter().copied());
        let get = |n: &str| vars.get(n).map(|v| v.to_string());
        let err = TokenConfig::from_settings(&get).unwrap_err();
        assert_eq!(err.settings(), [setting]);
    }
    // Every problem at once, not one per deploy.
    let none = |_: &str| None;
    assert_eq!(
        TokenConfig::from_settings(&none).unwrap_err().settings(),
        ["TOKEN_URL", "CLIENT_ID", "CLIENT_SECRET"]
    );
}
