//! The access token's lifecycle with a clock the test moves: the refresh window and its jitter,
//! the safety margin, the refresh ahead that requests do not wait for, outages with and without
//! a usable token, the compare-before-drop after an origin 401 and the replay, and the
//! scheduled pre-warm.

mod common;

use common::*;

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;

use common::{platform, FakeClock, FakeHttp, MemoryKv};
use edge_auth_proxy::io::GatewayRequest;
use edge_auth_proxy::io::{Body, HttpError};
use edge_auth_proxy::proxy::replay::REPLAY_BODY_LIMIT;
use edge_auth_proxy::proxy::Gateway;
use edge_auth_proxy::support::breaker::PROBE_SPACING_MS;
use edge_auth_proxy::token::refresh::{
    max_jitter_ms, refresh_at_ms, refresh_from_ms, window_ms, MIN_WINDOW_MS,
};
use edge_auth_proxy::token::{
    CachedToken, GrantError, Jitter, RefreshOutcome, Rejection, TokenCache, TokenConfig,
    TokenSource, REJECT_COOLDOWN_MS,
};
use futures::executor::block_on;
use http::{HeaderMap, Method};

const IDP: &str = "https://idp.example/";
const TOKEN_URL: &str = "https://idp.example/oauth/access_token?grant_type=client_credentials";
const T0: u64 = 1_700_000_000_000;
const HOUR: u64 = 3_600_000;

fn config() -> TokenConfig {
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

/// What the scripted token endpoint does; switchable during a test.
#[derive(Clone, Copy, PartialEq)]
enum Idp {
    Up,
    Down,
    RefusesClient,
}

struct Endpoint {
    issued: Rc<Cell<u32>>,
    calls: Rc<Cell<u32>>,
    mode: Rc<Cell<Idp>>,
}

/// A token endpoint issuing `tok-1`, `tok-2`, … with `expires_in` seconds of life.
fn endpoint(http: &FakeHttp, expires_in: u64) -> Endpoint {
    let ep = Endpoint {
        issued: Rc::default(),
        calls: Rc::default(),
        mode: Rc::new(Cell::new(Idp::Up)),
    };
    let (issued, calls, mode) = (ep.issued.clone(), ep.calls.clone(), ep.mode.clone());
    http.on(IDP, move |_| {
        calls.set(calls.get() + 1);
        match mode.get() {
            Idp::Down => Err(HttpError::Unreachable("refused".into())),
            Idp::RefusesClient => Ok((401, vec![], br#"{"error":"invalid_client"}"#.to_vec())),
            Idp::Up => {
                issued.set(issued.get() + 1);
                let body = format!(
                    r#"{{"token_type":"Bearer","access_token":"tok-{}","expires_in":{expires_in}}}"#,
                    issued.get()
                );
                Ok((200, vec![], body.into_bytes()))
            }
        }
    });
    ep
}

fn token(obtained: u64, life_ms: u64) -> CachedToken {
    CachedToken::new("t".into(), obtained, obtained + life_ms)
}

// ---------------------------------------------------------------------------------------------
// the refresh window, the margin, the jitter

#[test]
fn the_window_is_a_fifth_of_the_life_at_least_a_minute_at_most_half_the_usable_span() {
    // The documented 28799 s token: margin 60 s, window a fifth of the life.
    let long = token(0, 28_799_000);
    assert_eq!(long.usable_until_ms(), 28_739_000);
    assert_eq!(window_ms(&long), 5_759_800);
    assert_eq!(refresh_from_ms(&long), 28_739_000 - 5_759_800);
    // Five minutes: a fifth is one minute, the minimum.
    let five = token(0, 300_000);
    assert_eq!(window_ms(&five), MIN_WINDOW_MS);
    // Ninety seconds: the minimum would be most of its life, so half the usable span.
    let short = token(0, 90_000);
    assert_eq!(short.margin_ms(), 9_000);
    assert_eq!(window_ms(&short), 40_500);
    assert_eq!(refresh_from_ms(&short), 40_500);
}

#[test]
fn jitter_moves_the_refresh_earlier_by_at_most_a_quarter_of_the_window() {
    for life in [1_000, 30_000, 300_000, HOUR, 28_799_000, 365 * 24 * HOUR] {
        let t = token(T0, life);
        let from = refresh_from_ms(&t);
        let max = max_jitter_ms(&t);
        assert_eq!(max, window_ms(&t) / 100 * 25);
        assert_eq!(refresh_at_ms(&t, Jitter::NONE), from);
        assert!(refresh_at_ms(&t, Jitter::MAX) >= from - max);
        for _ in 0..1_000 {
            let at = refresh_at_ms(&t, Jitter::random());
            assert!((from - max..=from).contains(&at), "life {life}: {at}");
            // Always after it was obtained, always before it stops being usable.
            assert!(at >= T0 && at < t.usable_until_ms());
        }
    }
    // Random draws do spread.
    let t = token(T0, HOUR);
    let draws: std::collections::HashSet<u64> = (0..50)
        .map(|_| refresh_at_ms(&t, Jitter::random()))
        .collect();
    assert!(draws.len() > 40);
}

// ---------------------------------------------------------------------------------------------
// the refresh ahead

#[test]
fn a_token_in_its_window_is_refreshed_once_in_the_background_while_requests_keep_using_it() {
    let (http, kv, clock) = (FakeHttp::default(), MemoryKv::default(), FakeClock::at(T0));
    let ep = endpoint(&http, 3_600);
    let cache = TokenCache::with_jitter(|| Jitter::NONE);
    let cfg = config();
    let first = block_on(cache.get(&cfg, &platform(&http, &kv, &clock))).unwrap();
    let refresh_from = refresh_from_ms(&first.token);
    assert_eq!(refresh_from, T0 + 3_540_000 - 720_000);

    clock.0.set(refresh_from - 1);
    assert!(cache.refresh_due(&cfg, clock.0.get()).is_none(), "not yet");
    clock.0.set(refresh_from);
    let job = cache.refresh_due(&cfg, clock.0.get()).expect("due");
    assert!(
        cache.refresh_due(&cfg, clock.0.get()).is_none(),
        "one refresh at a time"
    );
    // While the refresh is claimed (in flight), requests use the current token at once.
    let during = block_on(cache.get(&cfg, &platform(&http, &kv, &clock))).unwrap();
    assert_eq!(
        (during.source, during.token.access_token()),
        (TokenSource::Memory, "tok-1")
    );
    assert_eq!(ep.calls.get(), 1);

    let outcome = block_on(cache.refresh(job, &cfg, &platform(&http, &kv, &clock)));
    assert_eq!(outcome, RefreshOutcome::Refreshed(TokenSource::Endpoint));
    let after = block_on(cache.get(&cfg, &platform(&http, &kv, &clock))).unwrap();
    assert_eq!(after.token.access_token(), "tok-2");
    assert!(cache.refresh_due(&cfg, clock.0.get()).is_none());
    assert_eq!(ep.calls.get(), 2);
}

#[test]
fn a_dropped_refresh_claim_is_released() {
    let (http, kv, clock) = (FakeHttp::default(), MemoryKv::default(), FakeClock::at(T0));
    endpoint(&http, 3_600);
    let cache = TokenCache::with_jitter(|| Jitter::NONE);
    let cfg = config();
    let t = block_on(cache.get(&cfg, &platform(&http, &kv, &clock)))
        .unwrap()
        .token;
    clock.0.set(refresh_from_ms(&t));
    drop(cache.refresh_due(&cfg, clock.0.get()).unwrap());
    assert!(cache.refresh_due(&cfg, clock.0.get()).is_some());
}

#[test]
fn a_refresh_takes_the_newer_token_another_isolate_put_in_kv() {
    let (http, kv, clock) = (FakeHttp::default(), MemoryKv::default(), FakeClock::at(T0));
    let ep = endpoint(&http, 3_600);
    let cfg = config();
    // Isolate B refreshes with the most jitter (earliest), isolate A with none.
    let a = TokenCache::with_jitter(|| Jitter::NONE);
    let b = TokenCache::with_jitter(|| Jitter::MAX);
    let t = block_on(a.get(&cfg, &platform(&http, &kv, &clock)))
        .unwrap()
        .token;
    let got = block_on(b.get(&cfg, &platform(&http, &kv, &clock))).unwrap();
    assert_eq!(got.source, TokenSource::Kv);

    clock.0.set(refresh_at_ms(&t, Jitter::MAX));
    assert!(a.refresh_due(&cfg, clock.0.get()).is_none());
    let job = b.refresh_due(&cfg, clock.0.get()).unwrap();
    assert_eq!(
        block_on(b.refresh(job, &cfg, &platform(&http, &kv, &clock))),
        RefreshOutcome::Refreshed(TokenSource::Endpoint)
    );
    clock.0.set(refresh_from_ms(&t));
    let job = a.refresh_due(&cfg, clock.0.get()).unwrap();
    assert_eq!(
        block_on(a.refresh(job, &cfg, &platform(&http, &kv, &clock))),
        RefreshOutcome::Refreshed(TokenSource::Kv),
        "A found B's token in KV"
    );
    assert_eq!(
        ep.calls.get(),
        2,
        "two isolates, two lifetimes' worth: two calls"
    );
    let a_now = block_on(a.get(&cfg, &platform(&http, &kv, &clock))).unwrap();
    assert_eq!(a_now.token.access_token(), "tok-2");
}

// ---------------------------------------------------------------------------------------------
// outages, the margin, the back-off

#[test]
fn with_the_endpoint_down_the_cached_token_serves_until_its_margin_and_never_after() {
    let (http, kv, clock) = (FakeHttp::default(), MemoryKv::default(), FakeClock::at(T0));
    let ep = endpoint(&http, 3_600);
    let cache = TokenCache::with_jitter(|| Jitter::NONE);
    let cfg = config();
    let t = block_on(cache.get(&cfg, &platform(&http, &kv, &clock)))
        .unwrap()
        .token;
    ep.mode.set(Idp::Down);

    // Walk through the window: every request gets the token; refreshes fail and back off.
    clock.0.set(refresh_from_ms(&t));
    let mut refreshes = 0;
    while clock.0.get() < t.usable_until_ms() {
        let got = block_on(cache.get(&cfg, &platform(&http, &kv, &clock))).unwrap();
        assert_eq!(got.token.access_token(), "tok-1");
        if let Some(job) = cache.refresh_due(&cfg, clock.0.get()) {
            refreshes += 1;
            let outcome = block_on(cache.refresh(job, &cfg, &platform(&http, &kv, &clock)));
            assert_eq!(outcome, RefreshOutcome::Failed(GrantError::Unreachable));
        }
        clock.advance(1_000);
    }
    // 720 s of window; back-off 2, 4, … 60 s: about 16 attempts, not 720.
    assert!((10..=20).contains(&refreshes), "{refreshes} refreshes");
    assert_eq!(ep.calls.get(), 1 + refreshes);

    // At expiry minus the margin it is not sent any more: 503 territory.
    clock.0.set(t.usable_until_ms());
    let err = block_on(cache.get(&cfg, &platform(&http, &kv, &clock))).unwrap_err();
    assert!(err.retry_after_secs >= 1);
}

#[test]
fn a_back_off_never_outlasts_the_cached_token() {
    let (http, kv, clock) = (FakeHttp::default(), MemoryKv::default(), FakeClock::at(T0));
    let ep = endpoint(&http, 20);
    let cache = TokenCache::with_jitter(|| Jitter::NONE);
    let cfg = config();
    let t = block_on(cache.get(&cfg, &platform(&http, &kv, &clock)))
        .unwrap()
        .token;
    assert_eq!(t.usable_until_ms(), T0 + 18_000);
    ep.mode.set(Idp::Down);
    // Refreshes from 9 s fail: back-off 2, 4, 8 s would reach past 18 s.
    clock.0.set(refresh_from_ms(&t));
    while clock.0.get() < t.usable_until_ms() {
        if let Some(job) = cache.refresh_due(&cfg, clock.0.get()) {
            block_on(cache.refresh(job, &cfg, &platform(&http, &kv, &clock)));
        }
        clock.advance(100);
    }
    assert_eq!(ep.calls.get(), 1 + 3, "attempts at 9, 11 and 15 s");
    // The endpoint is back; the first request past the usable time fills at once.
    ep.mode.set(Idp::Up);
    clock.0.set(t.usable_until_ms());
    let got = block_on(cache.get(&cfg, &platform(&http, &kv, &clock))).unwrap();
    assert_eq!(
        (got.source, got.token.access_token()),
        (TokenSource::Endpoint, "tok-2")
    );
}

#[test]
fn with_nothing_cached_one_call_per_half_second_at_most_and_the_first_good_answer_serves() {
    let (http, kv, clock) = (FakeHttp::default(), MemoryKv::default(), FakeClock::at(T0));
    let ep = endpoint(&http, 3_600);
    ep.mode.set(Idp::Down);
    let cache = TokenCache::new();
    let cfg = config();
    let mut calls_at = Vec::new();
    // A request every 100 ms for 30 s (each one that finds the endpoint backing off waits for
    // the next probe, which moves this clock too).
    while clock.0.get() < T0 + 30_000 {
        let err = block_on(cache.get(&cfg, &platform(&http, &kv, &clock))).unwrap_err();
        assert_eq!(err.retry_after_secs, 1);
        if err.called_endpoint {
            calls_at.push(clock.0.get());
        }
        clock.advance(100);
    }
    assert_eq!(ep.calls.get() as usize, calls_at.len());
    assert!(
        calls_at.windows(2).all(|w| w[1] - w[0] >= PROBE_SPACING_MS),
        "{calls_at:?}"
    );
    assert!(calls_at.len() as u64 <= 30_000 / PROBE_SPACING_MS + 1);
    // The endpoint is back: the next request is served, no back-off to wait out.
    ep.mode.set(Idp::Up);
    let got = block_on(cache.get(&cfg, &platform(&http, &kv, &clock))).unwrap();
    assert_eq!(got.source, TokenSource::Endpoint);
}

#[test]
fn a_refused_client_is_a_configuration_error_retried_once_a_minute() {
    let (http, kv, clock) = (FakeHttp::default(), MemoryKv::default(), FakeClock::at(T0));
    let ep = endpoint(&http, 3_600);
    ep.mode.set(Idp::RefusesClient);
    let cache = TokenCache::new();
    let cfg = config();
    let err = block_on(cache.get(&cfg, &platform(&http, &kv, &clock))).unwrap_err();
    assert_eq!(err.retry_after_secs, 60);
    assert!(err
        .cause
        .config_problem()
        .unwrap()
        .contains("CLIENT_SECRET"));
    // Answered at once, without a call, for a minute (the request at 59 s waits for the next
    // try, a second later, like any request within a second of a due probe).
    for _ in 0..58 {
        clock.advance(1_000);
        let again = block_on(cache.get(&cfg, &platform(&http, &kv, &clock))).unwrap_err();
        assert!(!again.called_endpoint);
    }
    assert_eq!(ep.calls.get(), 1);
    clock.advance(1_000);
    assert!(block_on(cache.get(&cfg, &platform(&http, &kv, &clock))).is_err());
    assert_eq!(ep.calls.get(), 2);
    assert_eq!(clock.0.get(), T0 + 60_000, "tried again a minute after");
}

// ---------------------------------------------------------------------------------------------
// compare-before-drop

#[test]
fn a_refused_token_is_dropped_only_while_it_is_the_cached_one() {
    let (http, kv, clock) = (FakeHttp::default(), MemoryKv::default(), FakeClock::at(T0));
    let ep = endpoint(&http, 3_600);
    let cache = TokenCache::new();
    let cfg = config();
    let t1 = block_on(cache.get(&cfg, &platform(&http, &kv, &clock)))
        .unwrap()
        .token;
    assert_eq!(kv.entries.borrow().len(), 1);

    assert_eq!(
        block_on(cache.reject(&t1, &cfg, &platform(&http, &kv, &clock))),
        Rejection::Dropped
    );
    assert!(kv.entries.borrow().is_empty(), "KV held it: deleted");
    // A second request that used the same token finds it already gone.
    assert_eq!(
        block_on(cache.reject(&t1, &cfg, &platform(&http, &kv, &clock))),
        Rejection::AlreadyReplaced
    );
    let t2 = block_on(cache.get(&cfg, &platform(&http, &kv, &clock))).unwrap();
    assert_eq!(
        (t2.source, t2.token.access_token()),
        (TokenSource::Endpoint, "tok-2")
    );
    // And after the new token is in place, a late 401 on tok-1 leaves it alone.
    assert_eq!(
        block_on(cache.reject(&t1, &cfg, &platform(&http, &kv, &clock))),
        Rejection::AlreadyReplaced
    );
    assert_eq!(
        block_on(cache.get(&cfg, &platform(&http, &kv, &clock)))
            .unwrap()
            .token
            .access_token(),
        "tok-2"
    );
    assert_eq!(ep.calls.get(), 2);
}

#[test]
fn kv_keeps_another_isolates_token_and_never_gives_back_the_refused_one() {
    let (http, kv, clock) = (FakeHttp::default(), MemoryKv::default(), FakeClock::at(T0));
    let ep = endpoint(&http, 3_600);
    let cfg = config();
    let a = TokenCache::new();
    let t1 = block_on(a.get(&cfg, &platform(&http, &kv, &clock)))
        .unwrap()
        .token;
    // Another isolate has since put its own token in KV: it stays.
    block_on(TokenCache::new().prewarm(&cfg, &platform(&http, &kv, &clock)));
    let b = TokenCache::new();
    let other = block_on(b.get(&cfg, &platform(&http, &kv, &clock))).unwrap();
    assert_eq!(other.source, TokenSource::Kv);
    let before = kv.entries.borrow().clone();
    {
        // Make KV hold a different token, as if written by yet another isolate.
        let key = cfg.cache_key();
        let t9 = CachedToken::new("tok-9".into(), T0, T0 + HOUR);
        kv.entries
            .borrow_mut()
            .insert(key.clone(), (t9.to_kv(None, &key).unwrap(), 3_540));
    }
    assert_eq!(
        block_on(a.reject(&t1, &cfg, &platform(&http, &kv, &clock))),
        Rejection::Dropped
    );
    assert_eq!(kv.entries.borrow().len(), 1, "tok-9 is not ours to delete");
    let got = block_on(a.get(&cfg, &platform(&http, &kv, &clock))).unwrap();
    assert_eq!(
        (got.source, got.token.access_token()),
        (TokenSource::Kv, "tok-9")
    );

    // If KV still shows the refused token (its delete not visible yet), it is not taken back.
    *kv.entries.borrow_mut() = before;
    let c = TokenCache::new();
    let t = block_on(c.get(&cfg, &platform(&http, &kv, &clock)))
        .unwrap()
        .token;
    assert_eq!(t.access_token(), "tok-1");
    kv.failing.set(true); // the delete cannot happen
    assert_eq!(
        block_on(c.reject(&t, &cfg, &platform(&http, &kv, &clock))),
        Rejection::Dropped
    );
    kv.failing.set(false);
    let got = block_on(c.get(&cfg, &platform(&http, &kv, &clock))).unwrap();
    assert_eq!(got.source, TokenSource::Endpoint);
    assert_ne!(got.token.access_token(), "tok-1");
    assert_eq!(ep.calls.get(), 2);
}

#[test]
fn an_origin_refusing_every_token_costs_one_endpoint_call_per_cooldown() {
    let (http, kv, clock) = (FakeHttp::default(), MemoryKv::default(), FakeClock::at(T0));
    let ep = endpoint(&http, 3_600);
    let cache = TokenCache::new();
    let cfg = config();
    let t1 = block_on(cache.get(&cfg, &platform(&http, &kv, &clock)))
        .unwrap()
        .token;
    assert_eq!(
        block_on(cache.reject(&t1, &cfg, &platform(&http, &kv, &clock))),
        Rejection::Dropped
    );
    let t2 = block_on(cache.get(&cfg, &platform(&http, &kv, &clock)))
        .unwrap()
        .token;
    clock.advance(REJECT_COOLDOWN_MS - 1);
    assert_eq!(
        block_on(cache.reject(&t2, &cfg, &platform(&http, &kv, &clock))),
        Rejection::Kept
    );
    clock.advance(1);
    assert_eq!(
        block_on(cache.reject(&t2, &cfg, &platform(&http, &kv, &clock))),
        Rejection::Dropped
    );
    assert_eq!(ep.calls.get(), 2);
}

// ---------------------------------------------------------------------------------------------
// the scheduled pre-warm

#[test]
fn the_scheduled_prewarm_fills_kv_then_leaves_a_fresh_token_alone() {
    let (http, kv, clock) = (FakeHttp::default(), MemoryKv::default(), FakeClock::at(T0));
    let ep = endpoint(&http, 3_600);
    let cfg = config();
    let cron = TokenCache::with_jitter(|| Jitter::NONE);
    assert_eq!(
        block_on(cron.prewarm(&cfg, &platform(&http, &kv, &clock))),
        RefreshOutcome::Refreshed(TokenSource::Endpoint)
    );
    clock.advance(300_000);
    assert_eq!(
        block_on(cron.prewarm(&cfg, &platform(&http, &kv, &clock))),
        RefreshOutcome::Fresh
    );
    // A new isolate after a quiet spell: the token is in KV, no endpoint call.
    let got = block_on(TokenCache::new().get(&cfg, &platform(&http, &kv, &clock))).unwrap();
    assert_eq!(got.source, TokenSource::Kv);
    // Another cron isolate, cold, finds KV's token fresh and takes it.
    assert_eq!(
        block_on(TokenCache::new().prewarm(&cfg, &platform(&http, &kv, &clock))),
        RefreshOutcome::Refreshed(TokenSource::Kv)
    );
    // In the window, the cron refreshes.
    clock.0.set(T0 + 3_540_000 - 720_000);
    assert_eq!(
        block_on(cron.prewarm(&cfg, &platform(&http, &kv, &clock))),
        RefreshOutcome::Refreshed(TokenSource::Endpoint)
    );
    assert_eq!(ep.calls.get(), 2);
    // A refused client: failed, then backing off without calls.
    ep.mode.set(Idp::RefusesClient);
    let cold = TokenCache::new();
    kv.entries.borrow_mut().clear();
    let failed = block_on(cold.prewarm(&cfg, &platform(&http, &kv, &clock)));
    assert!(matches!(failed, RefreshOutcome::Failed(ref e) if e.config_problem().is_some()));
    assert!(matches!(
        block_on(cold.prewarm(&cfg, &platform(&http, &kv, &clock))),
        RefreshOutcome::BackingOff(_)
    ));
    assert_eq!(ep.calls.get(), 3);
}

// ---------------------------------------------------------------------------------------------
// the gateway: replay after a 401, the claimed refresh, the scheduled run

fn gateway() -> Gateway {
    let vars: HashMap<&str, &str> = [
        ("ORIGIN_URL", "https://origin.example"),
        ("TOKEN_URL", TOKEN_URL),
        ("CLIENT_ID", "client-1"),
        ("CLIENT_SECRET", "s3cret-value"),
        ("API_KEY", "api-key-value"),
        ("JWT_ALGORITHMS", "HS256"),
        ("JWT_HMAC_SECRET", "an-hmac-secret-of-decent-length!"),
        ("ROUTES", r#"[{"prefix":"/","auth":"public"}]"#),
    ]
    .into_iter()
    .collect();
    let get = |n: &str| vars.get(n).map(|v| v.to_string());
    Gateway::new(&get)
}

fn services() -> (Svc, Endpoint) {
    let http = FakeHttp::default();
    let ep = endpoint(&http, 3_600);
    let svc = common::services_at(http, T0);
    (svc, ep)
}

/// An origin that refuses the token of the first `refusals` requests (401 with RFC 6750's
/// `Bearer error="invalid_token"`), then answers 200 echoing the token.
fn origin(http: &FakeHttp, refusals: u32) -> Rc<Cell<u32>> {
    let left = Rc::new(Cell::new(refusals));
    let l = left.clone();
    http.on("https://origin.example/", move |seen| {
        if l.get() > 0 {
            l.set(l.get() - 1);
            return Ok((
                401,
                vec![("www-authenticate", r#"Bearer error="invalid_token""#.into())],
                b"no".to_vec(),
            ));
        }
        let auth = seen.headers["authorization"].to_str().unwrap().to_string();
        Ok((200, vec![], auth.into_bytes()))
    });
    left
}

fn post(body: Vec<u8>, content_length: bool) -> GatewayRequest<Vec<u8>> {
    let mut headers = HeaderMap::new();
    if content_length {
        headers.insert("content-length", body.len().into());
    }
    GatewayRequest {
        method: Method::POST,
        path: "/account/getprofile".into(),
        query: None,
        headers,
        body: Body::Stream(body),
        tls_client_auth: None,
    }
}

fn text(body: Body<Vec<u8>>) -> String {
    match body {
        Body::Empty => String::new(),
        Body::Bytes(b) | Body::Stream(b) => String::from_utf8(b).unwrap(),
    }
}

#[test]
fn an_origin_401_is_replayed_once_with_a_new_token_and_the_same_body() {
    let (svc, ep) = services();
    origin(&svc.http, 1);
    let gw = gateway();
    let served = block_on(gw.serve(&svc, post(b"{\"a\":1}".to_vec(), true)));
    assert_eq!(served.response.status, 200);
    assert_eq!(text(served.response.body), "Bearer tok-2");
    assert_eq!(served.log.replayed, Some(true));
    assert_eq!(served.log.token_refresh, Some("after_401"));
    assert_eq!(served.log.token_source, Some("endpoint"));
    let sent = svc.http.calls_to("https://origin.example/");
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].body, sent[1].body);
    assert_eq!(sent[1].body, b"{\"a\":1}");
    assert_eq!(ep.calls.get(), 2);
}

#[test]
fn a_small_body_of_unknown_length_is_kept_and_replayed() {
    let (svc, _) = services();
    origin(&svc.http, 1);
    let served = block_on(gateway().serve(&svc, post(vec![b'y'; REPLAY_BODY_LIMIT], false)));
    assert_eq!(served.response.status, 200);
    assert_eq!(served.log.replayed, Some(true));
    let sent = svc.http.calls_to("https://origin.example/");
    assert_eq!(sent[1].body.len(), REPLAY_BODY_LIMIT);
}

#[test]
fn a_second_refusal_is_502_and_the_origins_challenge_stays_with_the_gateway() {
    let (svc, _) = services();
    origin(&svc.http, 2);
    let served = block_on(gateway().serve(&svc, post(Vec::new(), true)));
    assert_eq!(served.response.status, 502);
    assert!(served.response.headers.get("www-authenticate").is_none());
    assert!(!text(served.response.body).contains("invalid_token"));
    assert_eq!(served.log.config_error, Some("origin_refused_token"));
    assert_eq!(svc.http.calls_to("https://origin.example/").len(), 2);
}

#[test]
fn a_body_over_the_limit_streams_and_is_not_replayed() {
    for (body, content_length) in [
        (vec![b'x'; REPLAY_BODY_LIMIT + 1], true),
        (vec![b'x'; REPLAY_BODY_LIMIT + 1], false),
    ] {
        let (svc, ep) = services();
        origin(&svc.http, 1);
        let gw = gateway();
        let served = block_on(gw.serve(&svc, post(body, content_length)));
        // The refusal cannot be replayed: the caller is asked to retry, never shown the
        // origin's challenge about the gateway's token.
        assert_eq!(served.response.status, 503);
        assert_eq!(served.response.headers["retry-after"], "1");
        assert_eq!(served.log.replayed, Some(false));
        assert_eq!(served.log.replay_skipped, Some("body_not_kept"));
        assert_eq!(svc.http.calls_to("https://origin.example/").len(), 1);
        // The refused token is still dropped: the next request gets a new one.
        let next = block_on(gw.serve(&svc, post(Vec::new(), true)));
        assert_eq!(text(next.response.body), "Bearer tok-2");
        assert_eq!(ep.calls.get(), 2);
    }
}

#[test]
fn requests_in_the_window_claim_one_refresh_and_the_schedule_prewarms() {
    let (svc, ep) = services();
    origin(&svc.http, 0);
    let gw = gateway();
    let first = block_on(gw.serve(&svc, post(Vec::new(), true)));
    assert!(first.refresh.is_none());
    assert_eq!(first.log.token_refresh, None);
    // 50 minutes later every token is inside its window (it opens at 47 min at the latest).
    svc.clock.advance(50 * 60_000);
    let claimed = block_on(gw.serve(&svc, post(Vec::new(), true)));
    assert_eq!(claimed.log.token_refresh, Some("ahead"));
    assert_eq!(claimed.log.token_source, Some("memory"));
    let other = block_on(gw.serve(&svc, post(Vec::new(), true)));
    assert!(other.refresh.is_none(), "one refresh at a time");
    assert_eq!(text(other.response.body), "Bearer tok-1");
    let task = block_on(gw.refresh_ahead(claimed.refresh.unwrap(), &svc));
    assert_eq!(
        (task.event, task.token, task.token_source),
        ("token_refresh", "refreshed", Some("endpoint"))
    );
    let after = block_on(gw.serve(&svc, post(Vec::new(), true)));
    assert_eq!(text(after.response.body), "Bearer tok-2");
    assert_eq!(ep.calls.get(), 2);
    let scheduled = block_on(gw.on_schedule(&svc));
    assert_eq!((scheduled.event, scheduled.token), ("scheduled", "fresh"));
    assert!(scheduled.to_json().starts_with(r#"{"event":"scheduled""#));
}
