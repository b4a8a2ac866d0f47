//! The one way a native test builds a gateway: a settings map → `Gateway`, its platform over
//! the fakes (`services`), customer JWTs signed with the one test secret (`jwt`), and requests
//! (`request`). The constants every gateway test shares live here.

use std::collections::HashMap;

use edge_auth_proxy::identity::jwt::RustCryptoVerifier;
use edge_auth_proxy::io::{
    Body, GatewayRequest, NoCoordinator, NoRateLimiters, NoReplayGuard, Services,
};
use edge_auth_proxy::proxy::Gateway;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use jwt_compact::alg::{Hs256, Hs256Key};
use jwt_compact::{AlgorithmExt, Claims, Header};
use serde_json::Value;

use super::{FakeClock, FakeHttp, MemoryKv};

/// The tests' "now": every fake clock starts here, every token is dated from it.
pub const NOW_MS: u64 = 1_700_000_000_000;
pub const NOW: u64 = NOW_MS / 1000;
/// `JWT_HMAC_SECRET`: what `jwt` signs with.
pub const HMAC_SECRET: &str = "an-hmac-secret-of-decent-length!";
pub const ISSUER: &str = "https://login.example/";
pub const ORIGIN: &str = "https://origin.example/";
pub const TOKEN_URL: &str = "https://idp.example/oauth/access_token";
pub const INTROSPECT: &str = "https://idp.example/introspect";
pub const CLIENT_SECRET: &str = "client-secret-value";
pub const API_KEY: &str = "api-key-value";

/// The platform of a native test: scripted HTTP, an in-memory KV, a clock the test moves,
/// the pure-Rust verifier, no coordinator; `R` the rate limiters (none unless a test needs
/// them).
pub type Svc<R = NoRateLimiters> =
    Services<FakeHttp, MemoryKv, FakeClock, RustCryptoVerifier, NoCoordinator, R>;

/// The upstream most gateway tests need: the token endpoint at `TOKEN_URL` issuing `at-1` for
/// an hour, and the origin answering 200 `{}`.
pub fn token_endpoint_and_origin() -> FakeHttp {
    let http = FakeHttp::default();
    http.on(TOKEN_URL, |_| {
        let body = r#"{"token_type":"Bearer","access_token":"at-1","expires_in":3600}"#;
        Ok((200, vec![], body.as_bytes().to_vec()))
    });
    http.on(ORIGIN, |_| Ok((200, vec![], b"{}".to_vec())));
    http
}

/// The gateway the settings `vars` make, as the Worker makes it from its environment.
pub fn gateway<V: AsRef<str>>(vars: &HashMap<&str, V>) -> Gateway {
    let get = |n: &str| vars.get(n).map(|v| v.as_ref().to_string());
    Gateway::new(&get)
}

/// A platform over `http`, with a fresh KV and a clock at `NOW_MS`.
pub fn services(http: FakeHttp) -> Svc {
    services_at(http, NOW_MS)
}

/// A platform over `http`, with a fresh KV and a clock at `now_ms`.
pub fn services_at(http: FakeHttp, now_ms: u64) -> Svc {
    services_over(http, MemoryKv::default(), FakeClock::at(now_ms))
}

/// A platform over fakes the test shares with others (a fleet's clock, an isolate's KV).
pub fn services_over(http: FakeHttp, store: MemoryKv, clock: FakeClock) -> Svc {
    Services {
        http,
        store,
        clock,
        verifier: RustCryptoVerifier,
        coordinator: NoCoordinator,
        rate_limiters: NoRateLimiters,
        replay_guard: NoReplayGuard,
    }
}

/// `svc` with the token coordinator `coordinator` (`TOKEN_COORDINATOR` bound).
pub fn with_coordinator<K, R>(
    svc: Svc<R>,
    coordinator: K,
) -> Services<FakeHttp, MemoryKv, FakeClock, RustCryptoVerifier, K, R> {
    let Services {
        http,
        store,
        clock,
        verifier,
        rate_limiters,
        replay_guard,
        ..
    } = svc;
    Services {
        http,
        store,
        clock,
        verifier,
        coordinator,
        rate_limiters,
        replay_guard,
    }
}

/// `svc` with the Workers rate-limiting bindings `limiters`.
pub fn with_rate_limiters<R>(svc: Svc, limiters: R) -> Svc<R> {
    let Services {
        http,
        store,
        clock,
        verifier,
        coordinator,
        replay_guard,
        ..
    } = svc;
    Services {
        http,
        store,
        clock,
        verifier,
        coordinator,
        rate_limiters: limiters,
        replay_guard,
    }
}

/// A customer JWT: `claims` signed HS256 with `HMAC_SECRET`, no `kid`.
pub fn jwt(claims: Value) -> String {
    let key = Hs256Key::new(HMAC_SECRET.as_bytes());
    Hs256
        .token(&Header::empty(), &Claims::new(claims), &key)
        .unwrap()
}

/// A request for `path_and_query` (split at its first `?`) with `headers` (values as bytes,
/// repeated names kept) and `body`.
pub fn request<V: AsRef<[u8]>>(
    method: Method,
    path_and_query: &str,
    headers: &[(&str, V)],
    body: Body<Vec<u8>>,
) -> GatewayRequest<Vec<u8>> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (path_and_query.to_string(), None),
    };
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_bytes(v.as_ref()).unwrap(),
        );
    }
    GatewayRequest {
        method,
        path,
        query,
        headers: map,
        body,
        tls_client_auth: None,
    }
}

/// What the edge reports of a certificate it verified (`request.cf.tlsClientAuth`), with
/// `subject` and `fingerprint`: set it as a request's `tls_client_auth`, changing the states a
/// test is about.
pub fn verified_certificate(
    subject: &str,
    fingerprint: &str,
) -> edge_auth_proxy::io::TlsClientAuth {
    edge_auth_proxy::io::TlsClientAuth {
        cert_presented: "1".into(),
        cert_verified: "SUCCESS".into(),
        cert_revoked: "0".into(),
        cert_subject_dn_rfc2253: subject.into(),
        cert_fingerprint_sha256: fingerprint.into(),
    }
}
