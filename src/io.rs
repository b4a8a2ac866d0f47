//! The small traits through which the core reaches time, storage and HTTP.
//!
//! The core never names `worker`: `src/platform/` implements these with `Date`, Workers KV and
//! `fetch`, and the native tests implement them with a fixed clock, a map and scripted servers.
//! Futures here are not `Send`: a Workers isolate runs one thread.

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::identity::jwt::SignatureVerifier;

/// Time: milliseconds since the Unix epoch, and waiting. In a Worker `now_ms` only advances
/// across I/O, which is all the precision the caches need.
#[allow(async_fn_in_trait)]
pub trait Clock {
    fn now_ms(&self) -> u64;

    /// Resumes after about `ms` milliseconds. Requests waiting on another request's work poll
    /// with this rather than await that work: on workerd a request resumed from another
    /// request's I/O runs in the wrong I/O context, and hangs for good if that request is
    /// cancelled.
    async fn sleep(&self, ms: u64);
}

/// Why a store operation failed, for the log line only (never carries a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

/// An eventually consistent key-value store: Workers KV in production.
#[allow(async_fn_in_trait)]
pub trait KeyValue {
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Writes `value` to expire after `ttl_secs` (Workers KV refuses less than 60).
    async fn put(&self, key: &str, value: &str, ttl_secs: u64) -> Result<(), StoreError>;
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// One page (at most `limit`) of the key names starting with `prefix`, from `cursor` (a
    /// previous page's `next`).
    async fn list(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<KeyPage, StoreError>;
}

/// A page of `KeyValue::list`: names, and `next` (the cursor) unless the listing is complete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPage {
    pub keys: Vec<String>,
    pub next: Option<String>,
}

/// A request or response body. `Stream` is the platform's own streaming body, passed through
/// untouched so that forwarding never buffers.
#[derive(Debug)]
pub enum Body<S> {
    Empty,
    Bytes(Vec<u8>),
    Stream(S),
}

/// Header fields the way a platform holds them, passed through on the origin's path (the
/// caller's request on its way to the origin, the origin's response on its way back) so that
/// what the gateway neither sets nor removes crosses as the platform received it, byte for
/// byte, without being copied field by field. The core reads only the names it needs
/// (`read`) and touches only the names the contract sets or removes. `HeaderMap` is one, for
/// the native tests; the Worker's is workerd's own `Headers` object.
///
/// `Clone` is an independent copy: changing it leaves the original as it was.
pub trait Fields: Clone {
    /// The named fields, as a map the core reads (names lower case). A platform that keeps a
    /// repeated field as one value joined with ", " (Fetch `Headers`) gives that one value.
    fn read(&self, names: &[HeaderName]) -> HeaderMap;
    /// Makes the changes `edit` lists, and no others.
    fn apply(&mut self, edit: &Edit<'_>);
    /// The gateway's own fields (its problem+json answers).
    fn from_map(map: HeaderMap) -> Self;
}

/// What the gateway changes in the platform's fields: the names to remove, then the values to
/// set (each replacing every value of its name). The core works it out (`crate::edge::headers`); the
/// platform applies it to its own object in one go (a Worker crosses into JavaScript once).
#[derive(Debug, Default)]
pub struct Edit<'a> {
    pub remove: Vec<&'a HeaderName>,
    pub set: Vec<(HeaderName, HeaderValue)>,
}

impl Fields for HeaderMap {
    fn read(&self, names: &[HeaderName]) -> HeaderMap {
        let mut out = HeaderMap::new();
        for name in names {
            for value in self.get_all(name) {
                out.append(name.clone(), value.clone());
            }
        }
        out
    }

    fn apply(&mut self, edit: &Edit<'_>) {
        for name in &edit.remove {
            self.remove(*name);
        }
        for (name, value) in &edit.set {
            self.insert(name.clone(), value.clone());
        }
    }

    fn from_map(map: HeaderMap) -> Self {
        map
    }
}

/// A request the core sends: `F` is `HeaderMap` for the requests it builds itself (token
/// endpoint, JWKS), the platform's `Fields` for the one it forwards to the origin.
#[derive(Debug)]
pub struct OutboundRequest<S, F = HeaderMap> {
    pub method: Method,
    pub url: String,
    pub headers: F,
    pub body: Body<S>,
    /// How long to wait for the response head; the body may stream for longer.
    pub timeout_ms: u64,
}

#[derive(Debug)]
pub struct InboundResponse<S, F = HeaderMap> {
    pub status: u16,
    pub headers: F,
    pub body: Body<S>,
}

/// How an HTTP exchange failed before a response head arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// No response head within the request's `timeout_ms`.
    Timeout,
    /// Connection refused, DNS, TLS, reset: the message is the platform's, for logs.
    Unreachable(String),
    /// A body could not be read (the connection broke off, say).
    Body(String),
    /// A body was larger than the caller's limit: the answer arrived, and it was too much.
    TooLarge,
}

/// A body read as far as a limit: whole when it fits, else handed back still streaming (with
/// what was read still in front).
#[derive(Debug)]
pub enum Bounded<S> {
    Fits(Vec<u8>),
    Longer(Body<S>),
}

#[allow(async_fn_in_trait)]
pub trait HttpClient {
    /// The platform's streaming body type.
    type Stream;
    /// The platform's own header fields, which the forwarded request and response carry.
    type Fields: Fields;

    /// Sends a request the core built itself (token endpoint, JWKS); headers as a map.
    async fn send(
        &self,
        request: OutboundRequest<Self::Stream>,
    ) -> Result<InboundResponse<Self::Stream>, HttpError>;

    /// Sends the caller's request on to the origin, its fields passed through as the platform
    /// holds them; the response's fields come back the same way.
    async fn forward(
        &self,
        request: OutboundRequest<Self::Stream, Self::Fields>,
    ) -> Result<InboundResponse<Self::Stream, Self::Fields>, HttpError>;

    /// Reads a whole body, refusing one larger than `limit` bytes.
    async fn read_body(&self, body: Body<Self::Stream>, limit: usize)
        -> Result<Vec<u8>, HttpError>;

    /// Reads `body` whole if it is at most `limit` bytes, without buffering more than that of a
    /// longer one. By default a stream is not read at all (its length is unknown) and comes
    /// back as it was; a platform that can read a prefix and put it back overrides this.
    async fn read_up_to(
        &self,
        body: Body<Self::Stream>,
        limit: usize,
    ) -> Result<Bounded<Self::Stream>, HttpError> {
        Ok(match body {
            Body::Empty => Bounded::Fits(Vec::new()),
            Body::Bytes(bytes) if bytes.len() <= limit => Bounded::Fits(bytes),
            other => Bounded::Longer(other),
        })
    }
}

// --- The token coordinator (issue 12) -------------------------------------------------------

/// How an exchange with the token coordinator failed: the isolate then works alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoordinatorError {
    /// No answer within the exchange's `timeout_ms`.
    Timeout,
    /// The binding failed, the object threw, or the answer was not the protocol's: the message
    /// is for debugging only (never logged with a value in it).
    Unreachable(String),
}

/// The deployment's one token coordinator (a Durable Object in production), reached by one
/// request and its answer, both small JSON documents (`crate::token::protocol`).
#[allow(async_fn_in_trait)]
pub trait Coordinator {
    /// Whether a coordinator is configured; when not, every isolate fills its own cache.
    fn is_bound(&self) -> bool;

    async fn exchange(&self, request: &str, timeout_ms: u64) -> Result<String, CoordinatorError>;
}

/// No coordinator: today's behaviour, each isolate fills its own cache.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCoordinator;

impl Coordinator for NoCoordinator {
    fn is_bound(&self) -> bool {
        false
    }

    async fn exchange(&self, _request: &str, _timeout_ms: u64) -> Result<String, CoordinatorError> {
        Err(CoordinatorError::Unreachable("no coordinator bound".into()))
    }
}

// --- The DPoP replay guard (issue 21) ---------------------------------------------------------

/// Why the replay guard could not answer: the proof is then refused (503), never let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayGuardError {
    /// No answer within the guard's time.
    Timeout,
    /// The binding failed or the answer was not the protocol's; for debugging only.
    Unreachable(String),
}

/// The deployment's memory of DPoP proofs (the `DPOP_REPLAY` Durable Object in production):
/// one answer per proof, the same in every isolate.
#[allow(async_fn_in_trait)]
pub trait ReplayGuard {
    /// Whether a guard is configured; when not, each isolate remembers the proofs it saw.
    fn is_bound(&self) -> bool;

    /// Records `key` (a digest, never a proof) as used until `until_ms`: `Ok(true)` when it
    /// was not already recorded.
    async fn first_use(&self, key: &str, until_ms: u64) -> Result<bool, ReplayGuardError>;
}

/// No guard bound: every isolate on its own (`identity::dpop::replay`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoReplayGuard;

impl ReplayGuard for NoReplayGuard {
    fn is_bound(&self) -> bool {
        false
    }

    async fn first_use(&self, _key: &str, _until_ms: u64) -> Result<bool, ReplayGuardError> {
        Err(ReplayGuardError::Unreachable(
            "no replay guard bound".into(),
        ))
    }
}

// --- Rate limiting (issue 12) ----------------------------------------------------------------

/// Why a rate-limit check could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateLimitError {
    /// No binding of that name: a configuration error naming `ROUTES`.
    NotBound,
    /// The binding failed; the message is the platform's, for debugging only.
    Failed(String),
}

/// Named rate limiters: Workers rate-limiting bindings (`[[ratelimits]]`) in production.
#[allow(async_fn_in_trait)]
pub trait RateLimiters {
    /// Counts one request under `key` against the limiter bound as `binding`: `true` while
    /// within the limit.
    async fn allow(&self, binding: &str, key: &str) -> Result<bool, RateLimitError>;
}

/// No rate-limiting bindings at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRateLimiters;

impl RateLimiters for NoRateLimiters {
    async fn allow(&self, _binding: &str, _key: &str) -> Result<bool, RateLimitError> {
        Err(RateLimitError::NotBound)
    }
}

// --- Metrics (issue 19) --------------------------------------------------------------------

/// One Workers Analytics Engine data point, as `writeDataPoint` takes it. Borrowed from the
/// log line it is built from (`crate::proxy::metrics`), so that writing one copies nothing.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DataPoint<'a> {
    pub indexes: Vec<&'a str>,
    pub blobs: Vec<&'a str>,
    pub doubles: Vec<f64>,
}

/// Where data points go: the `METRICS` dataset in production. Writing never fails a request:
/// a sink that cannot write drops the point (the dataset itself is best effort).
pub trait Metrics {
    fn write(&self, point: &DataPoint<'_>);
}

// --- The platform handle ----------------------------------------------------------------------

/// Everything the platform supplies, as one handle the core is passed by reference (the way
/// rustls hands its core one `CryptoProvider`): HTTP, the KV store, the clock, signature
/// checks and signing, the token coordinator, the rate limiters and the DPoP replay guard.
/// `Services` implements it (the Worker's, the token coordinator's, the gateway tests'); a part
/// that needs only the clock and store still takes the whole handle, so every signature reads
/// the same.
pub trait Platform {
    type Http: HttpClient;
    type Store: KeyValue;
    type Clock: Clock;
    type Verifier: crate::identity::jwt::SignatureVerifier;
    /// Signs with the gateway's own keys (`crate::identity::signing`): the gateway assertion.
    type Signer: crate::identity::signing::Signer;
    type Coordinator: Coordinator;
    type RateLimiters: RateLimiters;
    /// The DPoP replay guard (`DPOP_REPLAY`), or `NoReplayGuard`.
    type ReplayGuard: ReplayGuard;

    fn http(&self) -> &Self::Http;
    fn store(&self) -> &Self::Store;
    fn clock(&self) -> &Self::Clock;
    fn verifier(&self) -> &Self::Verifier;
    fn signer(&self) -> &Self::Signer;
    fn coordinator(&self) -> &Self::Coordinator;
    fn rate_limiters(&self) -> &Self::RateLimiters;
    fn replay_guard(&self) -> &Self::ReplayGuard;
}

/// The platform's streaming body type.
pub type StreamOf<P> = <<P as Platform>::Http as HttpClient>::Stream;
/// The platform's own header fields.
pub type FieldsOf<P> = <<P as Platform>::Http as HttpClient>::Fields;

/// A request as the gateway sees it; `S` is the platform's streaming body, `F` its header
/// fields (`io::Fields`), of which the core reads only `headers::CALLER_READS` (and a few more when a request needs
/// them).
#[derive(Debug)]
pub struct GatewayRequest<S, F = HeaderMap> {
    pub method: Method,
    /// The URL's path as the platform handed it over; the route phase normalizes it
    /// (`path::normalize`) before anything else looks at it.
    pub path: String,
    /// The URL's query without `?`; `None` when the URL had no `?`.
    pub query: Option<String>,
    pub headers: F,
    pub body: Body<S>,
    /// The client certificate as the edge reports it (`request.cf.tlsClientAuth`); `None`
    /// when the platform says nothing (no `request.cf`, or no TLS client authentication).
    pub tls_client_auth: Option<TlsClientAuth>,
}

/// What Cloudflare's edge says of the caller's TLS client certificate
/// (`request.cf.tlsClientAuth`), each field as the edge gives it: the core decides what they
/// mean (`identity::client_certificate`). Only the edge sets these; a caller cannot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsClientAuth {
    /// `certPresented`: `"1"` when the caller presented a certificate.
    pub cert_presented: String,
    /// `certVerified`: `"SUCCESS"`, or why not (`"FAILED:..."`, `"NONE"`).
    pub cert_verified: String,
    /// `certRevoked`: `"1"` when the certificate is revoked.
    pub cert_revoked: String,
    /// `certSubjectDNRFC2253`: the subject DN, RFC 2253 form (`CN=partner,O=Partner`).
    pub cert_subject_dn_rfc2253: String,
    /// `certFingerprintSHA256`: the certificate's SHA-256 fingerprint in hex.
    pub cert_fingerprint_sha256: String,
}

/// The origin's response with its fields passed through (`headers::downstream_headers`), or
/// the gateway's own answer.
#[derive(Debug)]
pub struct GatewayResponse<S, F = HeaderMap> {
    pub status: u16,
    pub headers: F,
    pub body: Body<S>,
}

/// What a request needs from the platform: the `io::Platform` handle the core is passed.
/// `coordinator`: the deployment's token coordinator (`TOKEN_COORDINATOR`), or
/// `NoCoordinator`; `rate_limiters`: the Workers rate-limiting bindings that routes'
/// `rate_limit` name; `replay_guard`: the DPoP replay guard (`DPOP_REPLAY`), or
/// `NoReplayGuard`.
pub struct Services<H, S, C, V, K = NoCoordinator, R = NoRateLimiters, G = NoReplayGuard> {
    pub http: H,
    pub store: S,
    pub clock: C,
    pub verifier: V,
    pub coordinator: K,
    pub rate_limiters: R,
    pub replay_guard: G,
}

impl<H, S, C, V, K, R, G> Platform for Services<H, S, C, V, K, R, G>
where
    H: HttpClient,
    S: KeyValue,
    C: Clock,
    V: SignatureVerifier + crate::identity::signing::Signer,
    K: Coordinator,
    R: RateLimiters,
    G: ReplayGuard,
{
    type Http = H;
    type Store = S;
    type Clock = C;
    type Verifier = V;
    // The platform's one crypto provider verifies and signs (as rustls' `CryptoProvider`).
    type Signer = V;
    type Coordinator = K;
    type RateLimiters = R;
    type ReplayGuard = G;

    fn http(&self) -> &H {
        &self.http
    }
    fn store(&self) -> &S {
        &self.store
    }
    fn clock(&self) -> &C {
        &self.clock
    }
    fn verifier(&self) -> &V {
        &self.verifier
    }
    fn signer(&self) -> &V {
        &self.verifier
    }
    fn coordinator(&self) -> &K {
        &self.coordinator
    }
    fn rate_limiters(&self) -> &R {
        &self.rate_limiters
    }
    fn replay_guard(&self) -> &G {
        &self.replay_guard
    }
}
