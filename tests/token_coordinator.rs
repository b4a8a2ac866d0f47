//! The token coordinator (`TOKEN_COORDINATOR`) with a clock the test moves: its state machine
//! (one endpoint call for concurrent askers from many isolates, refresh ahead, compare-before-
//! drop, the deployment's back-off, encryption at rest, corrupt storage), and the isolate side
//! (it asks on a miss, falls back to its own fill when the coordinator fails, and drops a
//! refused token through it).
//!
//! The coordinator runs in process behind a fake `Coordinator` link that can be switched to
//! fail; isolates are separate `TokenCache`s, each with its own KV namespace (the worst case of
//! KV propagation), all calling one scripted token endpoint.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use common::{platform, FakeClock, FakeHttp, MemoryKv, Parts};
use edge_auth_proxy::identity::jwt::RustCryptoVerifier;
use edge_auth_proxy::io::{
    Body, Coordinator, CoordinatorError, GatewayRequest, HttpError, Services,
};
use edge_auth_proxy::proxy::{Gateway, Served};
use edge_auth_proxy::support::breaker::PROBE_SPACING_MS;
use edge_auth_proxy::token::coordinator::{Mirrored, TokenCoordinator};
use edge_auth_proxy::token::protocol::{digest, Answer, Ask};
use edge_auth_proxy::token::refresh::refresh_from_ms;
use edge_auth_proxy::token::{
    CachedToken, GrantError, Jitter, Obtained, RefreshAhead, RefreshOutcome, Rejection, TokenCache,
    TokenConfig, TokenSource, TokenUnavailable, REJECT_COOLDOWN_MS,
};
use futures::executor::block_on;
use futures::future::join_all;
use http::{HeaderMap, Method};

const IDP: &str = "https://idp.example/";
const TOKEN_URL: &str = "https://idp.example/oauth/access_token?grant_type=client_credentials";
const T0: u64 = 1_700_000_000_000;
const SEAL_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

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

/// A token endpoint issuing `tok-1`, `tok-2`, … with `expires_in` seconds of life; `down`
/// makes it refuse connections. Counts every call.
struct Endpoint {
    calls: Rc<Cell<u32>>,
    down: Rc<Cell<bool>>,
}

fn endpoint(http: &FakeHttp, expires_in: u64) -> Endpoint {
    let ep = Endpoint {
        calls: Rc::default(),
        down: Rc::default(),
    };
    let (calls, down, issued) = (ep.calls.clone(), ep.down.clone(), Rc::new(Cell::new(0)));
    http.on(IDP, move |_| {
        calls.set(calls.get() + 1);
        if down.get() {
            return Err(HttpError::Unreachable("refused".into()));
        }
        issued.set(issued.get() + 1);
        let body = format!(
            r#"{{"token_type":"Bearer","access_token":"tok-{}","expires_in":{expires_in}}}"#,
            issued.get()
        );
        Ok((200, vec![], body.into_bytes()))
    });
    ep
}

#[derive(Clone, Copy, PartialEq)]
enum Link {
    Up,
    Unreachable,
    Slow,
    Garbage,
}

/// The coordinator object: its state machine, its storage, the KV namespace it writes to.
struct Object {
    core: RefCell<Rc<TokenCoordinator>>,
    cfg: Rc<TokenConfig>,
    http: FakeHttp,
    own: MemoryKv,
    kv: MemoryKv,
    clock: FakeClock,
    link: Cell<Link>,
    asks: RefCell<Vec<String>>,
    refreshes: RefCell<Vec<RefreshAhead>>,
}

impl Object {
    /// The object's store: its own storage, every write copied to KV.
    fn mirrored(&self) -> Mirrored<MemoryKv, MemoryKv> {
        Mirrored {
            own: self.own.clone(),
            kv: self.kv.clone(),
        }
    }
}

/// What an isolate holds: a handle on the one object.
#[derive(Clone)]
struct Stub(Rc<Object>);

impl Coordinator for Stub {
    fn is_bound(&self) -> bool {
        true
    }

    async fn exchange(&self, request: &str, _timeout_ms: u64) -> Result<String, CoordinatorError> {
        let o = &self.0;
        o.asks.borrow_mut().push(request.to_string());
        match o.link.get() {
            Link::Unreachable => return Err(CoordinatorError::Unreachable("gone".into())),
            Link::Slow => return Err(CoordinatorError::Timeout),
            Link::Garbage => return Ok("<html>502 Bad Gateway</html>".into()),
            Link::Up => {}
        }
        let core = o.core.borrow().clone();
        let answered = core
            .answer(&o.cfg, &platform(&o.http, &o.mirrored(), &o.clock), request)
            .await
            .expect("a well-formed ask");
        o.refreshes.borrow_mut().extend(answered.refresh);
        Ok(answered.body)
    }
}

impl Stub {
    /// Runs the refreshes ahead that answers claimed (the object's `wait_until`).
    fn run_refreshes(&self) -> Vec<RefreshOutcome> {
        let o = &self.0;
        let jobs: Vec<_> = o.refreshes.borrow_mut().drain(..).collect();
        let core = o.core.borrow().clone();
        jobs.into_iter()
            .map(|job| {
                block_on(core.refresh(job, &o.cfg, &platform(&o.http, &o.mirrored(), &o.clock)))
            })
            .collect()
    }

    /// The object evicted and started again: memory gone, storage kept.
    fn restart(&self) {
        *self.0.core.borrow_mut() = Rc::new(TokenCoordinator::new());
    }

    fn ask(&self, ask: &Ask) -> Answer {
        Answer::from_json(&block_on(self.exchange(&ask.to_json(), 1_000)).unwrap()).unwrap()
    }

    fn asks(&self) -> usize {
        self.0.asks.borrow().len()
    }
}

/// One deployment: a coordinator and `n` isolates, each with its own KV namespace (the
/// coordinator writes to the first one's), all calling one endpoint.
struct Fleet {
    cfg: Rc<TokenConfig>,
    http: FakeHttp,
    clock: FakeClock,
    ep: Endpoint,
    stub: Stub,
    isolates: Vec<(TokenCache, MemoryKv)>,
}

fn fleet(n: usize, expires_in: u64, extra: &[(&str, &str)]) -> Fleet {
    let (http, clock) = (FakeHttp::default(), FakeClock::at(T0));
    let ep = endpoint(&http, expires_in);
    let cfg = config(extra);
    let isolates: Vec<_> = (0..n)
        .map(|_| {
            (
                TokenCache::with_jitter(|| Jitter::NONE),
                MemoryKv::default(),
            )
        })
        .collect();
    let stub = Stub(Rc::new(Object {
        core: RefCell::new(Rc::new(TokenCoordinator::new())),
        cfg: cfg.clone(),
        http: http.clone(),
        own: MemoryKv::default(),
        kv: isolates[0].1.clone(),
        clock: clock.clone(),
        link: Cell::new(Link::Up),
        asks: RefCell::default(),
        refreshes: RefCell::default(),
    }));
    Fleet {
        cfg,
        http,
        clock,
        ep,
        stub,
        isolates,
    }
}

impl Fleet {
    /// The platform an isolate with KV namespace `kv` sees: the one endpoint, the one
    /// coordinator.
    fn on<'a>(
        &'a self,
        kv: &'a MemoryKv,
    ) -> Parts<'a, FakeHttp, MemoryKv, FakeClock, RustCryptoVerifier, Stub> {
        platform(&self.http, kv, &self.clock).with_coordinator(&self.stub)
    }

    fn get(&self, i: usize) -> Result<Obtained, TokenUnavailable> {
        let (cache, kv) = &self.isolates[i];
        block_on(cache.get(&self.cfg, &self.on(kv)))
    }

    /// `per_isolate` concurrent requests in every isolate at once.
    fn burst(&self, per_isolate: usize) -> Vec<Result<String, u64>> {
        let parts: Vec<_> = self.isolates.iter().map(|(_, kv)| self.on(kv)).collect();
        let futures = self
            .isolates
            .iter()
            .zip(&parts)
            .flat_map(|((cache, _), p)| (0..per_isolate).map(move |_| cache.get(&self.cfg, p)));
        block_on(join_all(futures))
            .into_iter()
            .map(|r| {
                r.map(|o| o.token.access_token().to_string())
                    .map_err(|u| u.retry_after_secs)
            })
            .collect()
    }
}

fn stored(kv: &MemoryKv) -> Vec<String> {
    kv.entries
        .borrow()
        .values()
        .map(|(v, _)| v.clone())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// the coordinator's state machine

#[test]
fn a_cold_burst_across_isolates_costs_one_endpoint_call_and_gives_everyone_one_token() {
    let f = fleet(4, 3_600, &[]);
    let got = f.burst(10);
    assert_eq!(got.len(), 40);
    assert!(got.iter().all(|r| r.as_deref() == Ok("tok-1")), "{got:?}");
    assert_eq!(f.ep.calls.get(), 1, "one call for the whole deployment");
    // Each isolate asked once (its own single flight), then served from memory.
    assert_eq!(f.stub.asks(), 4);
    let again = f.get(3).unwrap();
    assert_eq!(again.source, TokenSource::Memory);
    // The coordinator keeps it in its storage and writes it to KV for the isolates there.
    assert_eq!(stored(&f.stub.0.own).len(), 1);
    assert_eq!(stored(&f.isolates[0].1).len(), 1);
    // The isolates do not write what the coordinator gave them to their own KV.
    assert!(stored(&f.isolates[1].1).is_empty());
}

#[test]
fn an_isolate_that_asked_logs_the_coordinator_as_the_source() {
    let f = fleet(2, 3_600, &[]);
    let first = f.get(1).unwrap();
    assert_eq!(
        (first.source, first.coordinator, first.token.access_token()),
        (TokenSource::Coordinator, None, "tok-1")
    );
    assert_eq!(TokenSource::Coordinator.as_str(), "coordinator");
    // The isolate whose KV the coordinator writes finds it there without asking.
    let asks = f.stub.asks();
    let from_kv = f.get(0).unwrap();
    assert_eq!(from_kv.source, TokenSource::Kv);
    assert_eq!(
        f.stub.asks(),
        asks,
        "KV is read before the coordinator is asked"
    );
}

#[test]
fn the_coordinator_refreshes_ahead_once_for_every_isolate() {
    let f = fleet(4, 3_600, &[]);
    f.burst(1);
    let held = CachedToken::new("x".into(), T0, T0 + 3_600_000);
    // Into every isolate's refresh window (they draw no jitter; the coordinator the most).
    f.clock.advance(refresh_from_ms(&held) - T0 + 1_000);
    let mut outcomes = Vec::new();
    for (cache, kv) in &f.isolates {
        // Requests keep being served from memory meanwhile.
        let now = block_on(cache.get(&f.cfg, &f.on(kv))).unwrap();
        assert_eq!(now.token.access_token(), "tok-1");
        let job = cache.refresh_due(&f.cfg, f.clock.0.get()).expect("due");
        outcomes.push(block_on(cache.refresh(job, &f.cfg, &f.on(kv))));
    }
    assert!(
        outcomes.iter().all(
            |o| *o == RefreshOutcome::Refreshed(TokenSource::Coordinator)
                || *o == RefreshOutcome::Refreshed(TokenSource::Kv)
        ),
        "{outcomes:?}"
    );
    assert_eq!(f.ep.calls.get(), 2, "one refresh for the deployment");
    for i in 0..4 {
        assert_eq!(f.get(i).unwrap().token.access_token(), "tok-2");
    }
}

#[test]
fn a_plain_ask_in_the_window_is_answered_at_once_and_the_coordinator_refreshes_after() {
    let f = fleet(3, 3_600, &[]);
    f.get(1).unwrap();
    let held = CachedToken::new("x".into(), T0, T0 + 3_600_000);
    f.clock.advance(refresh_from_ms(&held) - T0);
    // A new isolate (empty memory and KV) asks: tok-1 is still usable, so it gets it now.
    let got = f.get(2).unwrap();
    assert_eq!(got.token.access_token(), "tok-1");
    assert_eq!(
        f.ep.calls.get(),
        1,
        "the answer did not wait for the endpoint"
    );
    let outcomes = f.stub.run_refreshes();
    assert_eq!(
        outcomes,
        vec![RefreshOutcome::Refreshed(TokenSource::Endpoint)]
    );
    assert_eq!(f.ep.calls.get(), 2);
    // The next isolate to ask gets the new token.
    let answer = f.stub.ask(&Ask::Get { fresh: false });
    assert!(matches!(answer, Answer::Token { ref token } if token.access_token() == "tok-2"));
}

#[test]
fn one_refusal_costs_the_deployment_one_new_token() {
    let f = fleet(3, 3_600, &[]);
    f.burst(2);
    let used: Vec<_> = (0..3).map(|i| f.get(i).unwrap().token).collect();
    assert!(used.iter().all(|t| t.access_token() == "tok-1"));
    // The origin refuses tok-1 in every isolate, one after the other.
    for (i, (cache, kv)) in f.isolates.iter().enumerate() {
        let r = block_on(cache.reject(&used[i], &f.cfg, &f.on(kv)));
        // The first isolate's drop is the coordinator's; the others find tok-2 in its place.
        let verdict = if i == 0 {
            Rejection::Dropped
        } else {
            Rejection::AlreadyReplaced
        };
        assert_eq!(r, verdict, "isolate {i}");
        let fresh = f.get(i).unwrap();
        assert_eq!(fresh.token.access_token(), "tok-2", "isolate {i}");
    }
    assert_eq!(f.ep.calls.get(), 2, "one new token for all three refusals");
    // The drop names the token by digest, never the token itself.
    let asks = f.stub.0.asks.borrow();
    let drops: Vec<_> = asks.iter().filter(|a| a.contains("\"drop\"")).collect();
    assert_eq!(drops.len(), 3);
    assert!(drops
        .iter()
        .all(|a| !a.contains("tok-1") && a.contains(&digest("tok-1"))));
}

/// The origin revokes every token it has seen at once (a key rotation on its side): an isolate
/// still holding the older token, while the coordinator already holds a newer one that is
/// refused too. Each refusal of a different token reaches the coordinator, which drops its own
/// once; the isolate's own ten-second cooldown does not hold the refused token back.
#[test]
fn after_a_mass_revocation_an_isolate_reaches_a_token_fetched_after_it() {
    let f = fleet(2, 3_600, &[]);
    let old = f.get(1).unwrap().token;
    assert_eq!(old.access_token(), "tok-1");
    // The coordinator moves on to tok-2 (another isolate's refusal of tok-1), which isolate 0
    // takes; isolate 1 still holds tok-1.
    assert_eq!(
        f.stub.ask(&Ask::Drop {
            digest: digest("tok-1")
        }),
        Answer::Dropped {
            rejection: Rejection::Dropped
        }
    );
    assert_eq!(f.get(0).unwrap().token.access_token(), "tok-2");
    // A moment later (past the coordinator's cooldown), the origin refuses both.
    f.clock.advance(REJECT_COOLDOWN_MS);
    let (cache, kv) = &f.isolates[1];
    let first = block_on(cache.reject(&old, &f.cfg, &f.on(kv)));
    assert_eq!(
        first,
        Rejection::AlreadyReplaced,
        "the coordinator's newer token was not fetched for this refusal"
    );
    let newer = f.get(1).unwrap().token;
    assert_eq!(newer.access_token(), "tok-2");
    // tok-2 is refused as well, at once: this drop is the deployment's first of tok-2.
    let second = block_on(cache.reject(&newer, &f.cfg, &f.on(kv)));
    assert_eq!(second, Rejection::Dropped);
    assert_eq!(f.get(1).unwrap().token.access_token(), "tok-3");
    assert_eq!(f.ep.calls.get(), 3);
}

/// An origin that refuses every token: the coordinator's cooldown keeps the token, and the
/// isolate remembers that, so that each further refusal costs no ask to the coordinator.
#[test]
fn a_token_the_coordinator_kept_is_not_asked_about_again_within_the_cooldown() {
    let f = fleet(1, 3_600, &[]);
    let (cache, kv) = &f.isolates[0];
    let t1 = f.get(0).unwrap().token;
    assert_eq!(
        block_on(cache.reject(&t1, &f.cfg, &f.on(kv))),
        Rejection::Dropped
    );
    let t2 = f.get(0).unwrap().token;
    assert_eq!(t2.access_token(), "tok-2");
    assert_eq!(
        block_on(cache.reject(&t2, &f.cfg, &f.on(kv))),
        Rejection::Kept,
        "the coordinator dropped tok-1 a moment ago"
    );
    let again = f.get(0).unwrap().token;
    assert_eq!(again.access_token(), "tok-2");
    let asks = f.stub.asks();
    for _ in 0..5 {
        assert_eq!(
            block_on(cache.reject(&again, &f.cfg, &f.on(kv))),
            Rejection::Kept
        );
        assert_eq!(f.get(0).unwrap().token.access_token(), "tok-2");
    }
    assert_eq!(f.stub.asks(), asks, "no ask per refused request");
    // After the cooldown, the next refusal is told to the coordinator again and costs one token.
    f.clock.advance(REJECT_COOLDOWN_MS);
    assert_eq!(
        block_on(cache.reject(&again, &f.cfg, &f.on(kv))),
        Rejection::Dropped
    );
    assert_eq!(f.get(0).unwrap().token.access_token(), "tok-3");
    assert_eq!(f.ep.calls.get(), 3);
}

#[test]
fn compare_before_drop_leaves_a_newer_token_and_survives_a_restart() {
    let f = fleet(1, 3_600, &[]);
    f.get(0).unwrap();
    // A drop naming some other token changes nothing.
    let other = f.stub.ask(&Ask::Drop {
        digest: digest("tok-0"),
    });
    assert_eq!(
        other,
        Answer::Dropped {
            rejection: Rejection::AlreadyReplaced
        }
    );
    assert_eq!(stored(&f.stub.0.own).len(), 1);
    // Evicted: memory is gone; the drop compares with storage.
    f.stub.restart();
    let dropped = f.stub.ask(&Ask::Drop {
        digest: digest("tok-1"),
    });
    assert_eq!(
        dropped,
        Answer::Dropped {
            rejection: Rejection::Dropped
        }
    );
    assert!(stored(&f.stub.0.own).is_empty());
    assert!(stored(&f.isolates[0].1).is_empty(), "and from KV");
    let next = f.stub.ask(&Ask::Get { fresh: false });
    assert!(matches!(next, Answer::Token { ref token } if token.access_token() == "tok-2"));
    // A refusal of the new token drops it too; a third within the cooldown keeps the token
    // that replaced it: an origin refusing every token must not turn the deployment's
    // requests into endpoint calls.
    let second = f.stub.ask(&Ask::Drop {
        digest: digest("tok-2"),
    });
    assert_eq!(
        second,
        Answer::Dropped {
            rejection: Rejection::Dropped
        }
    );
    f.stub.ask(&Ask::Get { fresh: false });
    let third = f.stub.ask(&Ask::Drop {
        digest: digest("tok-3"),
    });
    assert_eq!(
        third,
        Answer::Dropped {
            rejection: Rejection::Kept
        }
    );
    assert_eq!(f.ep.calls.get(), 3);
}

#[test]
fn a_dead_endpoint_sees_one_probe_at_a_time_for_the_whole_deployment() {
    let f = fleet(4, 3_600, &[]);
    f.ep.down.set(true);
    let first = f.burst(5);
    assert!(first.iter().all(|r| *r == Err(1)), "{first:?}");
    assert_eq!(f.ep.calls.get(), 1);
    // While it backs off, bursts in every isolate: each isolate asks once per probe of its own,
    // and the coordinator calls the endpoint at most once per half second for all of them.
    for _ in 0..3 {
        let (calls, asks, started) = (f.ep.calls.get(), f.stub.asks(), f.clock.0.get());
        let burst = f.burst(5);
        assert!(burst.iter().all(|r| *r == Err(1)), "{burst:?}");
        let elapsed = f.clock.0.get() - started;
        let calls = u64::from(f.ep.calls.get() - calls);
        assert!(
            (1..=1 + elapsed / PROBE_SPACING_MS).contains(&calls),
            "{calls} calls in {elapsed} ms"
        );
        let asks = (f.stub.asks() - asks) as u64;
        assert!(asks <= 4 * (1 + elapsed / PROBE_SPACING_MS), "{asks} asks");
        assert!(asks < 20, "not one ask per request");
    }
    // The endpoint recovers: the next burst is served everywhere, by one call.
    f.ep.down.set(false);
    let calls = f.ep.calls.get();
    assert!(f.burst(5).iter().all(|r| r.as_deref() == Ok("tok-1")));
    assert_eq!(f.ep.calls.get(), calls + 1);
}

#[test]
fn an_isolate_is_served_as_soon_as_the_coordinator_has_a_token_again() {
    // Isolates 1 and 2: their KV is not the one the coordinator writes to.
    let f = fleet(3, 3_600, &[]);
    f.ep.down.set(true);
    let told = f.get(2).unwrap_err();
    assert!(
        told.called_endpoint,
        "the coordinator tried the endpoint for it"
    );
    // The endpoint is back; another isolate's ask has the coordinator fetch a token.
    f.ep.down.set(false);
    assert_eq!(f.get(1).unwrap().token.access_token(), "tok-1");
    // The isolate told "unavailable" a moment ago does not wait out a back-off of its own.
    let got = f.get(2).unwrap();
    assert_eq!(
        (got.source, got.token.access_token()),
        (TokenSource::Coordinator, "tok-1")
    );
    assert_eq!(f.ep.calls.get(), 2);
}

#[test]
fn refused_credentials_keep_the_long_back_off_at_the_coordinator() {
    let f = fleet(2, 3_600, &[]);
    f.http.on(IDP, |_| {
        Ok((401, vec![], br#"{"error":"invalid_client"}"#.to_vec()))
    });
    let err = f.get(1).unwrap_err();
    assert_eq!(err.retry_after_secs, 60);
    assert!(err.cause.config_problem().is_some());
}

#[test]
fn the_coordinators_storage_and_kv_copy_are_sealed_and_read_back_after_a_restart() {
    let f = fleet(2, 3_600, &[("TOKEN_ENCRYPTION_KEY", SEAL_KEY)]);
    f.get(1).unwrap();
    for value in stored(&f.stub.0.own)
        .iter()
        .chain(&stored(&f.isolates[0].1))
    {
        assert!(
            value.starts_with("gcm1.") && !value.contains("tok-1"),
            "{value}"
        );
    }
    // Another isolate reads the KV copy through the seal.
    assert_eq!(f.get(0).unwrap().source, TokenSource::Kv);
    // Restarted, the coordinator reads its storage: no endpoint call.
    f.stub.restart();
    let answer = f.stub.ask(&Ask::Get { fresh: false });
    assert!(matches!(answer, Answer::Token { ref token } if token.access_token() == "tok-1"));
    assert_eq!(f.ep.calls.get(), 1);
}

#[test]
fn corrupt_or_unopenable_storage_is_a_miss() {
    for extra in [vec![], vec![("TOKEN_ENCRYPTION_KEY", SEAL_KEY)]] {
        let f = fleet(1, 3_600, &extra);
        f.get(0).unwrap();
        for (v, _) in f.stub.0.own.entries.borrow_mut().values_mut() {
            *v = if extra.is_empty() {
                "{\"t\":".into()
            } else {
                // Tampered with: does not open.
                let mut b = v.clone().into_bytes();
                let i = b.len() - 3;
                b[i] = if b[i] == b'A' { b'B' } else { b'A' };
                String::from_utf8(b).unwrap()
            };
        }
        f.stub.restart();
        let answer = f.stub.ask(&Ask::Get { fresh: false });
        assert!(matches!(answer, Answer::Token { ref token } if token.access_token() == "tok-2"));
        assert_eq!(f.ep.calls.get(), 2);
    }
    // Storage that fails outright is a miss too.
    let f = fleet(1, 3_600, &[]);
    f.stub.0.own.failing.set(true);
    assert_eq!(f.get(0).unwrap().token.access_token(), "tok-1");
}

// ---------------------------------------------------------------------------------------------
// the isolate side

#[test]
fn an_isolate_falls_back_to_its_own_single_fill_when_the_coordinator_fails() {
    for (link, logged) in [
        (Link::Unreachable, "unreachable"),
        (Link::Slow, "timeout"),
        (Link::Garbage, "unreachable"),
    ] {
        let f = fleet(2, 3_600, &[]);
        f.stub.0.link.set(link);
        let (cache, kv) = &f.isolates[1];
        let p = f.on(kv);
        let all = block_on(join_all((0..10).map(|_| cache.get(&f.cfg, &p))));
        let filled: Vec<_> = all
            .iter()
            .filter(|r| r.as_ref().unwrap().source == TokenSource::Endpoint)
            .collect();
        assert_eq!(filled.len(), 1);
        assert_eq!(filled[0].as_ref().unwrap().coordinator, Some(logged));
        assert!(all
            .iter()
            .all(|r| r.as_ref().unwrap().token.access_token() == "tok-1"));
        assert_eq!(f.ep.calls.get(), 1, "the isolate's own single flight");
        // Written to its own KV, as without a coordinator.
        assert_eq!(stored(kv).len(), 1);
    }
}

#[test]
fn a_cached_token_is_served_without_asking_a_failing_coordinator() {
    let f = fleet(2, 3_600, &[]);
    f.get(0).unwrap();
    f.stub.0.link.set(Link::Unreachable);
    let asks = f.stub.asks();
    assert_eq!(f.get(0).unwrap().source, TokenSource::Memory);
    let (fresh_isolate, kv0) = (TokenCache::new(), &f.isolates[0].1);
    let got = block_on(fresh_isolate.get(&f.cfg, &f.on(kv0))).unwrap();
    assert_eq!(got.source, TokenSource::Kv);
    assert_eq!(f.stub.asks(), asks);
    assert_eq!(f.ep.calls.get(), 1);
}

#[test]
fn a_refused_token_is_dropped_locally_even_when_the_coordinator_cannot_be_told() {
    let f = fleet(2, 3_600, &[]);
    let used = f.get(1).unwrap().token;
    f.stub.0.link.set(Link::Unreachable);
    let (cache, kv) = &f.isolates[1];
    let r = block_on(cache.reject(&used, &f.cfg, &f.on(kv)));
    assert_eq!(r, Rejection::Dropped);
    let fresh = f.get(1).unwrap();
    assert_eq!(
        (fresh.source, fresh.token.access_token(), fresh.coordinator),
        (TokenSource::Endpoint, "tok-2", Some("unreachable"))
    );
}

#[test]
fn the_coordinators_back_off_answer_is_a_503_that_names_the_endpoint_failure() {
    let f = fleet(1, 3_600, &[]);
    f.ep.down.set(true);
    let err = f.get(0).unwrap_err();
    assert_eq!(err.cause, GrantError::Unreachable);
    assert_eq!(err.retry_after_secs, 1);
    assert!(err.called_endpoint, "this ask made the coordinator call it");
    assert_eq!(err.coordinator, None);
}

// ---------------------------------------------------------------------------------------------
// through the gateway

type Svc = Services<FakeHttp, MemoryKv, FakeClock, RustCryptoVerifier, Stub>;

/// Isolate `i` of the fleet as a whole gateway with a public route; the origin is the fleet's
/// `https://origin.example/`.
fn gateway_on(f: &Fleet, i: usize) -> (Gateway, Svc) {
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
    let gw = common::gateway(&vars);
    let shared = common::services_over(f.http.clone(), f.isolates[i].1.clone(), f.clock.clone());
    let svc = common::with_coordinator(shared, f.stub.clone());
    (gw, svc)
}

fn post(gw: &Gateway, svc: &Svc) -> Served<Vec<u8>> {
    let mut headers = HeaderMap::new();
    headers.insert("content-length", 2.into());
    let req = GatewayRequest {
        method: Method::POST,
        path: "/orders".into(),
        query: None,
        headers,
        body: Body::Stream(b"{}".to_vec()),
        tls_client_auth: None,
    };
    block_on(gw.serve(svc, req))
}

/// An origin that answers 200, or `401 Bearer error="invalid_token"` to the tokens in the set.
fn refusing_origin(http: &FakeHttp) -> Rc<RefCell<Vec<String>>> {
    let refused: Rc<RefCell<Vec<String>>> = Rc::default();
    let set = refused.clone();
    http.on("https://origin.example/", move |seen| {
        let auth = seen.headers["authorization"].to_str().unwrap();
        let bearer = auth.strip_prefix("Bearer ").unwrap();
        if set.borrow().iter().any(|t| t == bearer) {
            let challenge = r#"Bearer error="invalid_token""#.to_string();
            return Ok((401, vec![("www-authenticate", challenge)], vec![]));
        }
        Ok((200, vec![], bearer.as_bytes().to_vec()))
    });
    refused
}

/// The soak's "origin refuses tokens": the origin revokes every token it has seen at once while
/// an isolate still holds an older token than the coordinator's. The isolate's replay carries
/// the coordinator's token, refused too; that one was not fetched for this refusal, so it is
/// dropped at the coordinator and the request is served with the token fetched after it.
#[test]
fn a_request_refused_twice_for_tokens_older_than_the_refusal_is_served_with_a_newer_one() {
    let f = fleet(2, 3_600, &[]);
    let refused = refusing_origin(&f.http);
    let (gw, svc) = gateway_on(&f, 1);
    let warm = post(&gw, &svc);
    assert_eq!(warm.response.status, 200, "{:?}", warm.log);
    // The coordinator moves on to tok-2 (isolate 0's refusal, say); isolate 1 holds tok-1.
    f.stub.ask(&Ask::Drop {
        digest: digest("tok-1"),
    });
    assert_eq!(f.get(0).unwrap().token.access_token(), "tok-2");
    f.clock.advance(REJECT_COOLDOWN_MS);
    refused
        .borrow_mut()
        .extend(["tok-1".into(), "tok-2".into()]);
    let origin_calls = f.http.calls_to("https://origin.example/").len();
    let served = post(&gw, &svc);
    assert_eq!(served.response.status, 200, "{:?}", served.log);
    let sent: Vec<_> = f.http.calls_to("https://origin.example/")[origin_calls..]
        .iter()
        .map(|c| c.headers["authorization"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(sent, ["Bearer tok-1", "Bearer tok-2", "Bearer tok-3"]);
    assert_eq!(served.log.replayed, Some(true));
    assert_eq!(f.ep.calls.get(), 3);
    // The next request is served at once with tok-3.
    assert_eq!(post(&gw, &svc).response.status, 200);
    assert_eq!(f.ep.calls.get(), 3);
}

/// An origin that refuses every token, the gateway's credentials' fault: the replay's token was
/// fetched for this refusal, so its refusal is a 502 and costs no third send.
#[test]
fn a_refused_token_fetched_for_the_refusal_is_502_without_a_second_replay() {
    let f = fleet(1, 3_600, &[]);
    let refused = refusing_origin(&f.http);
    let (gw, svc) = gateway_on(&f, 0);
    assert_eq!(post(&gw, &svc).response.status, 200);
    refused
        .borrow_mut()
        .extend(["tok-1".into(), "tok-2".into(), "tok-3".into()]);
    let origin_calls = f.http.calls_to("https://origin.example/").len();
    let served = post(&gw, &svc);
    assert_eq!(served.response.status, 502);
    assert_eq!(
        f.http.calls_to("https://origin.example/").len() - origin_calls,
        2
    );
    assert_eq!(f.ep.calls.get(), 2);
    // The next refusal (of tok-2) is told to the coordinator, whose cooldown keeps it; from
    // then on, within that cooldown, refusals cost no new token and no ask.
    assert_eq!(post(&gw, &svc).response.status, 502);
    let asks = f.stub.asks();
    for _ in 0..3 {
        assert_eq!(post(&gw, &svc).response.status, 502);
    }
    assert_eq!(f.ep.calls.get(), 2);
    assert_eq!(f.stub.asks(), asks);
}
