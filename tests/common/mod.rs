//! Shared fakes for the native black-box tests: a clock the test moves, an in-memory KV that
//! records writes, and scripted HTTP servers that count calls and can suspend once so that
//! concurrent requests really overlap.

#![allow(dead_code)]

mod gateway;
#[allow(unused_imports)]
pub use gateway::*;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use edge_auth_proxy::identity::jwt::{RustCryptoVerifier, SignatureVerifier};
use edge_auth_proxy::io::{
    Body, Bounded, Clock, Coordinator, HttpClient, HttpError, InboundResponse, KeyPage, KeyValue,
    NoCoordinator, NoRateLimiters, NoReplayGuard, OutboundRequest, Platform, StoreError,
};
use http::HeaderMap;

#[derive(Clone, Default)]
pub struct FakeClock(pub Rc<Cell<u64>>);

impl FakeClock {
    pub fn at(ms: u64) -> Self {
        Self(Rc::new(Cell::new(ms)))
    }
    pub fn advance(&self, ms: u64) {
        self.0.set(self.0.get() + ms);
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> u64 {
        self.0.get()
    }
    async fn sleep(&self, ms: u64) {
        self.advance(ms);
        YieldOnce(false).await;
    }
}

#[derive(Clone, Default)]
pub struct MemoryKv {
    pub entries: Rc<RefCell<HashMap<String, (String, u64)>>>,
    pub puts: Rc<Cell<usize>>,
    pub gets: Rc<Cell<usize>>,
    pub failing: Rc<Cell<bool>>,
    pub lists: Rc<Cell<usize>>,
    /// Every key read, in order.
    pub got: Rc<RefCell<Vec<String>>>,
    /// `list` fails while `get`, `put` and `delete` still work.
    pub list_failing: Rc<Cell<bool>>,
    /// `list` suspends once before answering, so that concurrent requests overlap it.
    pub list_yields: Rc<Cell<bool>>,
}

impl KeyValue for MemoryKv {
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.gets.set(self.gets.get() + 1);
        self.got.borrow_mut().push(key.to_string());
        if self.failing.get() {
            return Err(StoreError("down".into()));
        }
        Ok(self.entries.borrow().get(key).map(|(v, _)| v.clone()))
    }
    async fn put(&self, key: &str, value: &str, ttl_secs: u64) -> Result<(), StoreError> {
        assert!(ttl_secs >= 60, "Workers KV refuses expirationTtl under 60");
        self.puts.set(self.puts.get() + 1);
        if self.failing.get() {
            return Err(StoreError("down".into()));
        }
        self.entries
            .borrow_mut()
            .insert(key.to_string(), (value.to_string(), ttl_secs));
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.entries.borrow_mut().remove(key);
        Ok(())
    }
    /// Pages in key order, as Workers KV; the cursor is the last name given.
    async fn list(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<KeyPage, StoreError> {
        assert!(
            (1..=1000).contains(&limit),
            "Workers KV lists 1 to 1000 keys a page"
        );
        self.lists.set(self.lists.get() + 1);
        if self.list_yields.get() {
            YieldOnce(false).await;
        }
        if self.failing.get() || self.list_failing.get() {
            return Err(StoreError("down".into()));
        }
        let mut names: Vec<String> = (self.entries.borrow().keys())
            .filter(|k| k.starts_with(prefix) && cursor.is_none_or(|c| k.as_str() > c))
            .cloned()
            .collect();
        names.sort();
        let next = (names.len() > limit).then(|| names[limit - 1].clone());
        names.truncate(limit);
        Ok(KeyPage { keys: names, next })
    }
}

/// A platform handle over fakes the test keeps, and looks into: `platform(&http, &kv, &clock)`,
/// then `.with_verifier(&v)` or `.with_coordinator(&k)` where a test needs its own.
#[derive(Clone, Copy)]
pub struct Parts<'a, H, S, C, V = RustCryptoVerifier, K = NoCoordinator> {
    pub http: &'a H,
    pub store: &'a S,
    pub clock: &'a C,
    pub verifier: &'a V,
    pub coordinator: &'a K,
}

pub fn platform<'a, H, S, C>(http: &'a H, store: &'a S, clock: &'a C) -> Parts<'a, H, S, C> {
    Parts {
        http,
        store,
        clock,
        verifier: &RustCryptoVerifier,
        coordinator: &NoCoordinator,
    }
}

impl<'a, H, S, C, V, K> Parts<'a, H, S, C, V, K> {
    pub fn with_verifier<W>(self, verifier: &'a W) -> Parts<'a, H, S, C, W, K> {
        let Parts {
            http,
            store,
            clock,
            coordinator,
            ..
        } = self;
        Parts {
            http,
            store,
            clock,
            verifier,
            coordinator,
        }
    }

    pub fn with_coordinator<L>(self, coordinator: &'a L) -> Parts<'a, H, S, C, V, L> {
        let Parts {
            http,
            store,
            clock,
            verifier,
            ..
        } = self;
        Parts {
            http,
            store,
            clock,
            verifier,
            coordinator,
        }
    }
}

impl<H, S, C, V, K> Platform for Parts<'_, H, S, C, V, K>
where
    H: HttpClient,
    S: KeyValue,
    C: Clock,
    V: SignatureVerifier,
    K: Coordinator,
{
    type Http = H;
    type Store = S;
    type Clock = C;
    type Verifier = V;
    type Signer = RustCryptoVerifier;
    type Coordinator = K;
    type RateLimiters = NoRateLimiters;
    type ReplayGuard = NoReplayGuard;

    fn http(&self) -> &H {
        self.http
    }
    fn store(&self) -> &S {
        self.store
    }
    fn clock(&self) -> &C {
        self.clock
    }
    fn verifier(&self) -> &V {
        self.verifier
    }
    fn signer(&self) -> &RustCryptoVerifier {
        &RustCryptoVerifier
    }
    fn coordinator(&self) -> &K {
        self.coordinator
    }
    fn rate_limiters(&self) -> &NoRateLimiters {
        &NoRateLimiters
    }
    fn replay_guard(&self) -> &NoReplayGuard {
        &NoReplayGuard
    }
}

/// What a scripted server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: http::Method,
    pub url: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

pub type Reply = Result<(u16, Vec<(&'static str, String)>, Vec<u8>), HttpError>;
type Handler = Rc<dyn Fn(&Seen) -> Reply>;

/// Routes requests by URL prefix to scripted handlers; records every request.
#[derive(Clone, Default)]
pub struct FakeHttp {
    handlers: Rc<RefCell<Vec<(String, Handler)>>>,
    pub seen: Rc<RefCell<Vec<Seen>>>,
}

impl FakeHttp {
    pub fn on(&self, url_prefix: &str, handler: impl Fn(&Seen) -> Reply + 'static) {
        self.handlers
            .borrow_mut()
            .insert(0, (url_prefix.to_string(), Rc::new(handler)));
    }

    pub fn calls_to(&self, url_prefix: &str) -> Vec<Seen> {
        self.seen
            .borrow()
            .iter()
            .filter(|s| s.url.starts_with(url_prefix))
            .cloned()
            .collect()
    }
}

/// Pending once, then ready: lets every concurrent request start before any finishes.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

impl HttpClient for FakeHttp {
    type Stream = Vec<u8>;
    type Fields = HeaderMap;

    async fn send(
        &self,
        request: OutboundRequest<Vec<u8>>,
    ) -> Result<InboundResponse<Vec<u8>>, HttpError> {
        YieldOnce(false).await;
        let body = match request.body {
            Body::Empty => Vec::new(),
            Body::Bytes(b) | Body::Stream(b) => b,
        };
        let seen = Seen {
            method: request.method,
            url: request.url,
            headers: request.headers,
            body,
        };
        self.seen.borrow_mut().push(seen.clone());
        let handler = self
            .handlers
            .borrow()
            .iter()
            .find(|(prefix, _)| seen.url.starts_with(prefix.as_str()))
            .map(|(_, h)| h.clone());
        let (status, headers, body) = match handler {
            Some(h) => h(&seen)?,
            None => return Err(HttpError::Unreachable("connection refused".into())),
        };
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(k, v.parse().unwrap());
        }
        Ok(InboundResponse {
            status,
            headers: map,
            body: Body::Stream(body),
        })
    }

    /// The origin is one more scripted server: its request is recorded like any other.
    async fn forward(
        &self,
        request: OutboundRequest<Vec<u8>>,
    ) -> Result<InboundResponse<Vec<u8>>, HttpError> {
        self.send(request).await
    }

    async fn read_body(&self, body: Body<Vec<u8>>, limit: usize) -> Result<Vec<u8>, HttpError> {
        let bytes = match body {
            Body::Empty => Vec::new(),
            Body::Bytes(b) | Body::Stream(b) => b,
        };
        if bytes.len() > limit {
            return Err(HttpError::TooLarge);
        }
        Ok(bytes)
    }

    /// Like the Worker's: a stream of any declared length is read up to the limit.
    async fn read_up_to(
        &self,
        body: Body<Vec<u8>>,
        limit: usize,
    ) -> Result<Bounded<Vec<u8>>, HttpError> {
        Ok(match body {
            Body::Empty => Bounded::Fits(Vec::new()),
            Body::Bytes(b) | Body::Stream(b) if b.len() <= limit => Bounded::Fits(b),
            longer => Bounded::Longer(longer),
        })
    }
}
