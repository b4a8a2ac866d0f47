//! The gateway assertion: a short-lived JWT the gateway signs for every forwarded request
//! (`GATEWAY_ASSERTION_HEADER`, `GATEWAY_SIGNING_KEY`, `GATEWAY_ISSUER`), bound to that
//! request's method, origin URL and request id, so that an origin can tell a request that came
//! through the gateway from one sent around it, and one taken from another request; and the
//! gateway's own answer at `JWKS_PATH`, the public keys an origin checks it with.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::claims::Claims;
use crate::error::GatewayError;
use crate::io::{Clock, Platform};
use crate::jwt::KeyFamily;
use crate::setting::{optional, ConfigError, ConfigErrors, Lookup, Problems};
use crate::signing::{jws_header, push_json_str, sign_compact, SigningKeys};

const HEADER: &str = "GATEWAY_ASSERTION_HEADER";
const KEY: &str = "GATEWAY_SIGNING_KEY";
const ISSUER: &str = "GATEWAY_ISSUER";

/// Where the gateway publishes its public keys. Every path under
/// `/.well-known/edge-auth-proxy/` is the gateway's own: answered here, never routed, so no
/// route (a catch-all `/` included) can shadow it and the origin never sees it.
pub const JWKS_PATH: &str = "/.well-known/edge-auth-proxy/jwks.json";
const OWN_PREFIX: &str = "/.well-known/edge-auth-proxy";

/// The JWT `typ` of the assertion (RFC 8725 §3.11: its own type, so it is never taken for an
/// access or ID token).
pub const TYP: &str = "gateway+jwt";

/// `exp` - `iat`.
pub const LIFETIME_SECS: u64 = 60;

/// How long callers may keep the key set: a key added to the set is seen by every origin
/// within this, which is how long a rotation waits before the new key signs.
pub const JWKS_MAX_AGE_SECS: u64 = 300;

/// The assertion's settings, checked once.
#[derive(Debug, Clone)]
pub struct AssertionSettings {
    header: HeaderName,
    keys: SigningKeys,
    issuer: Option<String>,
    /// The signing key's encoded JWS header, worked out once.
    jws_header: String,
}

impl AssertionSettings {
    /// `None` when neither `GATEWAY_ASSERTION_HEADER` nor `GATEWAY_SIGNING_KEY` is set; each
    /// needs the other.
    pub fn from_settings(
        get: Lookup<'_>,
        customer_id_header: Option<&HeaderName>,
    ) -> Result<Option<Self>, ConfigErrors> {
        let header = optional(get, HEADER).filter(|h| !h.trim().is_empty());
        let key = optional(get, KEY).filter(|k| !k.trim().is_empty());
        let issuer = optional(get, ISSUER);
        let mut p = Problems::default();
        let (header, key) = match (header, key) {
            (None, None) => {
                if issuer.is_some() {
                    p.push(ConfigError::new(
                        ISSUER,
                        "is set without GATEWAY_ASSERTION_HEADER and GATEWAY_SIGNING_KEY",
                    ));
                }
                return p.finish(|| Some(None));
            }
            (Some(_), None) => {
                p.push(ConfigError::new(
                    KEY,
                    "must be set with GATEWAY_ASSERTION_HEADER: a private JWK (EC P-256 or Ed25519) with a kid",
                ));
                return p.finish(|| None);
            }
            (None, Some(_)) => {
                p.push(ConfigError::new(
                    HEADER,
                    "must be set with GATEWAY_SIGNING_KEY: the header that carries the assertion (e.g. x-gateway-assertion)",
                ));
                return p.finish(|| None);
            }
            (Some(header), Some(key)) => (header, key),
        };
        let header = p.take(header_name(&header, customer_id_header));
        let keys = p.take(SigningKeys::from_setting(
            KEY,
            &key,
            &[KeyFamily::EcP256, KeyFamily::OkpEd25519],
        ));
        let issuer = match issuer {
            None => Some(None),
            Some(raw) => p.take(issuer_url(&raw)).map(Some),
        };
        p.finish(|| {
            let keys = keys?;
            Some(Some(Self {
                header: header?,
                jws_header: jws_header(keys.signing(), Some(TYP)),
                keys,
                issuer: issuer?,
            }))
        })
    }

    /// The header that carries the assertion: callers' copies, in every spelling, are removed
    /// from every request (`headers::IdentityHeaders`).
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    pub fn keys(&self) -> &SigningKeys {
        &self.keys
    }
}

/// A header name that neither HTTP nor the gateway controls, nor `CUSTOMER_ID_HEADER`.
fn header_name(raw: &str, customer_id: Option<&HeaderName>) -> Result<HeaderName, ConfigError> {
    let header = HeaderName::from_bytes(raw.trim().as_bytes())
        .map_err(|_| ConfigError::new(HEADER, "is not a valid header name"))?;
    let normal = |h: &str| h.to_ascii_lowercase().replace('_', "-");
    if crate::customer_id::is_reserved(header.as_str())
        || customer_id.is_some_and(|c| normal(c.as_str()) == normal(header.as_str()))
    {
        return Err(ConfigError::new(
            HEADER,
            "names a header the gateway or HTTP controls: choose another (e.g. x-gateway-assertion)",
        ));
    }
    if header
        .as_str()
        .bytes()
        .filter(|&b| b == b'-' || b == b'_')
        .count()
        > 6
    {
        return Err(ConfigError::new(
            HEADER,
            "has more than 6 '-' or '_': choose a shorter name (e.g. x-gateway-assertion)",
        ));
    }
    Ok(header)
}

/// `GATEWAY_ISSUER`: an absolute http(s) URL without query or fragment, used as written.
fn issuer_url(raw: &str) -> Result<String, ConfigError> {
    let raw = raw.trim();
    let url = crate::http_url::HttpUrl::parse(raw).map_err(|why| ConfigError::new(ISSUER, why))?;
    if url.has_query() || url.has_fragment() {
        return Err(ConfigError::new(
            ISSUER,
            "must not carry a query or fragment",
        ));
    }
    Ok(raw.to_string())
}

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
