//! The gateway assertion: a short-lived JWT the gateway signs for every forwarded request
//! (`GATEWAY_ASSERTION_HEADER`, `GATEWAY_SIGNING_KEY`, `GATEWAY_ISSUER`), bound to that
//! request's method, origin URL and request id, so that an origin can tell a request that came
//! through the gateway from one sent around it, and one taken from another request; and the
//! gateway's own answer at `JWKS_PATH`, the public keys an origin checks it with.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::config::setting::ConfigError;
use crate::error::GatewayError;
use crate::identity::claims::Claims;
use crate::identity::signing::{push_json_str, sign_compact};
use crate::io::{Body, Clock, Fields, FieldsOf, GatewayResponse, Platform};
use crate::proxy::log::RequestLog;
use crate::proxy::{Response, Step};

pub mod settings;
use settings::KEY;
pub use settings::{AssertionSettings, TYP};

/// Where the gateway publishes its public keys. Every path under
/// `/.well-known/edge-auth-proxy/` is the gateway's own: answered here, never routed, so no
/// route (a catch-all `/` included) can shadow it and the origin never sees it.
pub const JWKS_PATH: &str = "/.well-known/edge-auth-proxy/jwks.json";
const OWN_PREFIX: &str = "/.well-known/edge-auth-proxy";

/// `exp` - `iat`.
pub const LIFETIME_SECS: u64 = 60;

/// How long callers may keep the key set: a key added to the set is seen by every origin
/// within this, which is how long a rotation waits before the new key signs.
pub const JWKS_MAX_AGE_SECS: u64 = 300;

/// What the assertion says about one forwarded request, apart from its times and `jti`: the
/// claims' JSON members, written once per request.
pub struct Assertion<'a> {
    settings: &'a AssertionSettings,
    /// `"iss":…,"aud":…,…` without braces.
    claims: String,
}

/// The request an assertion is made for.
pub struct Forwarded<'a> {
    /// `GATEWAY_ISSUER`'s default: the origin (`scheme://host[:port]`) of the URL the caller
    /// requested, when the platform knows it.
    pub caller_origin: Option<&'a str>,
    /// The origin base URL the request goes to (the route's `origin` or `ORIGIN_URL`).
    pub origin_base: &'a str,
    /// The URL it goes to, query included (dropped here).
    pub origin_url: &'a str,
    pub method: &'a Method,
    pub request_id: &'a str,
    /// The verified identity's claims, and the customer id when `CUSTOMER_ID_HEADER` is set.
    pub identity: Option<(&'a Claims, Option<&'a str>)>,
}

impl<'a> Assertion<'a> {
    /// `None` without the assertion's settings.
    pub fn prepare(settings: Option<&'a AssertionSettings>, req: &Forwarded<'_>) -> Option<Self> {
        let settings = settings?;
        let mut claims = String::with_capacity(256);
        let mut member = |name: &str, value: &str| {
            if !claims.is_empty() {
                claims.push(',');
            }
            push_json_str(&mut claims, name);
            claims.push(':');
            push_json_str(&mut claims, value);
        };
        let iss = settings
            .issuer
            .as_deref()
            .or(req.caller_origin)
            .unwrap_or(req.origin_base);
        member("iss", iss);
        member("aud", req.origin_base);
        member("rid", req.request_id);
        member("htm", req.method.as_str());
        member(
            "htu",
            req.origin_url.split(['?', '#']).next().unwrap_or_default(),
        );
        if let Some((verified, customer_id)) = req.identity {
            if let Some(sub) = customer_id.or_else(|| verified.str("sub")) {
                member("sub", sub);
            }
            if let Some(idp) = verified.str("iss") {
                member("idp", idp);
            }
            let scopes: Vec<&str> = verified.granted_scopes().collect();
            if !scopes.is_empty() {
                member("scope", &scopes.join(" "));
            }
        }
        Some(Self { settings, claims })
    }

    /// The signed assertion, as the header to set: fresh `iat`, `exp` and `jti` on every call
    /// (a replay after the origin's 401 is a new send, with the same `rid`).
    pub async fn sign<P: Platform>(
        &self,
        svc: &P,
    ) -> Result<(HeaderName, HeaderValue), GatewayError> {
        let iat = svc.clock().now_ms() / 1000;
        let exp = iat + LIFETIME_SECS;
        let jti = fresh_jti()?;
        // `jti` is base64url: no escaping needed.
        let payload = format!(
            "{{{},\"iat\":{iat},\"exp\":{exp},\"jti\":\"{jti}\"}}",
            self.claims
        );
        let key = self.settings.keys.signing();
        let jws = sign_compact(
            svc.signer(),
            key,
            &self.settings.jws_header,
            payload.as_bytes(),
        )
        .await
        .map_err(|_| unusable_key())?;
        let mut value = HeaderValue::from_str(&jws).map_err(|_| unusable_key())?;
        value.set_sensitive(true);
        Ok((self.settings.header.clone(), value))
    }
}

/// Signs an assertion when there is one to sign (for `proxy`'s sends).
pub async fn sign_for<P: Platform>(
    assertion: Option<&Assertion<'_>>,
    svc: &P,
) -> Result<Option<(HeaderName, HeaderValue)>, GatewayError> {
    match assertion {
        Some(a) => a.sign(svc).await.map(Some),
        None => Ok(None),
    }
}

/// The platform refused the key (WebCrypto checks what this build's parsing cannot, e.g. a
/// private scalar that does not match its public point): only an operator can fix it.
fn unusable_key() -> GatewayError {
    GatewayError::Config(
        ConfigError::new(
            KEY,
            "could not sign: the platform refused the key (check that d matches x and y)",
        )
        .into(),
    )
}

/// 16 random bytes, base64url: never the caller's, never repeated. Drawn from a pool that
/// `getrandom` refills 64 at a time (in a Worker each call is several calls into JavaScript).
fn fresh_jti() -> Result<String, GatewayError> {
    use std::cell::RefCell;
    const POOL: usize = 16 * 64;
    thread_local! {
        static RANDOM: RefCell<([u8; POOL], usize)> = const { RefCell::new(([0; POOL], POOL)) };
    }
    RANDOM.with_borrow_mut(|(pool, used)| {
        if *used == POOL {
            // Without entropy there is no assertion: an origin may rely on `jti` for replay
            // checks.
            getrandom::getrandom(pool).map_err(|_| GatewayError::Internal("random jti"))?;
            *used = 0;
        }
        let jti = URL_SAFE_NO_PAD.encode(&pool[*used..*used + 16]);
        *used += 16;
        Ok(jti)
    })
}

/// The gateway's own answer for a path under `/.well-known/edge-auth-proxy/`, or `None` for
/// every other path (routed as usual). `GET`/`HEAD` of `JWKS_PATH` with signing configured:
/// the public keys; another method: 405; without signing, or another path there: 404. None of
/// them is forwarded.
pub fn own_path(
    settings: Option<&AssertionSettings>,
    method: &Method,
    path: &str,
) -> Option<Result<(HeaderMap, Vec<u8>), GatewayError>> {
    let ours = path == OWN_PREFIX
        || path
            .strip_prefix(OWN_PREFIX)
            .is_some_and(|rest| rest.starts_with('/'));
    if !ours {
        return None;
    }
    let Some(settings) = settings.filter(|_| path == JWKS_PATH) else {
        return Some(Err(GatewayError::NoRoute));
    };
    if method != Method::GET && method != Method::HEAD {
        return Some(Err(GatewayError::MethodNotAllowed(vec![
            Method::GET,
            Method::HEAD,
        ])));
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={JWKS_MAX_AGE_SECS}")) {
        headers.insert(CACHE_CONTROL, v);
    }
    headers.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    let body = if method == Method::HEAD {
        Vec::new()
    } else {
        settings.keys.jwks_json().to_vec()
    };
    Some(Ok((headers, body)))
}

/// The own-path phase, between normalizing the path and routing it: the gateway's own answer
/// for a path under `/.well-known/edge-auth-proxy/` (`own_path`); any other path continues.
pub fn own_paths<P: Platform>(
    settings: Option<&AssertionSettings>,
    method: &Method,
    path: &str,
    log: &mut RequestLog,
) -> Result<Step<(), Response<P>>, GatewayError> {
    let Some(own) = own_path(settings, method, path) else {
        return Ok(Step::Continue(()));
    };
    log.outcome = "gateway_jwks";
    let (headers, body) = own?;
    Ok(Step::Respond(GatewayResponse {
        status: 200,
        headers: FieldsOf::<P>::from_map(headers),
        body: Body::Bytes(body),
    }))
}
