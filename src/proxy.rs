//! The request path, as named phases in one function with one error exit:
//! route → authenticate → upstream token → rewrite → forward → respond.

use http::{HeaderMap, Method};

use crate::auth::{AuthError, Authenticator};
use crate::config::{Config, ConfigError, Lookup};
use crate::error::GatewayError;
use crate::headers::{self, Credentials};
use crate::io::{Body, Clock, HttpClient, HttpError, KeyValue, OutboundRequest};
use crate::jwt::{self, JwtError, SignatureVerifier};
use crate::log::{clip, RequestLog};
use crate::routes::{AuthMode, RouteError};
use crate::token::TokenCache;

/// A request as the gateway sees it; `S` is the platform's streaming body.
#[derive(Debug)]
pub struct GatewayRequest<S> {
    pub method: Method,
    /// The URL's path, as the platform parsed it (percent-encoded, dot segments resolved).
    pub path: String,
    /// The URL's query without `?`; `None` when the URL had no `?`.
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Body<S>,
}

#[derive(Debug)]
pub struct GatewayResponse<S> {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Body<S>,
}

/// What a request needs from the platform.
pub struct Services<H, S, C, V> {
    pub http: H,
    pub store: S,
    pub clock: C,
    pub verifier: V,
}

/// The isolate's gateway: configuration checked once, and the caches every request shares.
pub struct Gateway {
    config: Result<Config, ConfigError>,
    auth: Authenticator,
    tokens: TokenCache,
}

impl Gateway {
    pub fn new(get: Lookup<'_>) -> Self {
        Self::from_config(Config::from_settings(get))
    }

    pub fn from_config(config: Result<Config, ConfigError>) -> Self {
        Self {
            config,
            auth: Authenticator::new(),
            tokens: TokenCache::new(),
        }
    }

    /// Verifies every token in full, every time: only to measure what the verified-token
    /// memory saves (`baseline-verify` builds).
    pub fn without_verified_memory(mut self) -> Self {
        self.auth = Authenticator::without_verified_memory();
        self
    }

    /// The configuration problem, if any, for a log line at start-up.
    pub fn config_error(&self) -> Option<&ConfigError> {
        self.config.as_ref().err()
    }

    /// Serves one request: the origin's response or the gateway's own problem+json, and the
    /// request's log line.
    pub async fn handle<H, S, C, V>(
        &self,
        svc: &Services<H, S, C, V>,
        req: GatewayRequest<H::Stream>,
    ) -> (GatewayResponse<H::Stream>, RequestLog)
    where
        H: HttpClient,
        S: KeyValue,
        C: Clock,
        V: SignatureVerifier,
    {
        let started = svc.clock.now_ms();
        let request_id = request_id(&req.headers);
        let mut log = RequestLog {
            request_id: request_id.clone(),
            method: req.method.to_string(),
            path: clip(&req.path),
            outcome: "forwarded",
            ..RequestLog::default()
        };
        let response = match self.proxy(svc, req, &request_id, &mut log).await {
            Ok(response) => response,
            Err(err) => {
                log.outcome = err.outcome();
                let problem = err.to_problem(&request_id);
                GatewayResponse {
                    status: problem.status,
                    headers: problem.headers,
                    body: Body::Bytes(problem.body),
                }
            }
        };
        log.status = response.status;
        log.total_ms = svc.clock.now_ms().saturating_sub(started);
        (response, log)
    }

    async fn proxy<H, S, C, V>(
        &self,
        svc: &Services<H, S, C, V>,
        req: GatewayRequest<H::Stream>,
        request_id: &str,
        log: &mut RequestLog,
    ) -> Result<GatewayResponse<H::Stream>, GatewayError>
    where
        H: HttpClient,
        S: KeyValue,
        C: Clock,
        V: SignatureVerifier,
    {
        let config = self
            .config
            .as_ref()
            .map_err(|e| GatewayError::Config(e.clone()))?;

        // Route: before anything else, so unknown paths cost nothing and reach nobody.
        let route = config
            .routes
            .select(&req.method, &req.path)
            .map_err(|e| match e {
                RouteError::NoRoute => GatewayError::NoRoute,
                RouteError::MethodNotAllowed { allow } => GatewayError::MethodNotAllowed(allow),
            })?;
        log.route = Some(route.prefix.clone());

        // Authenticate: the customer JWT, on `jwt` routes only.
        let customer_jwt = match route.auth {
            AuthMode::Public => None,
            AuthMode::Jwt => {
                let token = jwt::extract(&req.headers, config.jwt.cookie.as_deref())
                    .map_err(GatewayError::Jwt)?
                    .ok_or(GatewayError::Jwt(JwtError::Missing))?;
                let (result, jwks) = self
                    .auth
                    .check(
                        token,
                        &config.jwt,
                        &svc.http,
                        &svc.store,
                        &svc.clock,
                        &svc.verifier,
                    )
                    .await;
                log.jwks = jwks.map(|e| e.as_str());
                let authenticated = result.map_err(|e| match e {
                    AuthError::Jwt(e) => GatewayError::Jwt(e),
                    AuthError::KeysUnavailable(u) => GatewayError::KeysUnavailable(u),
                })?;
                log.jwt_check = Some(authenticated.check.as_str());
                log.kid = authenticated.claims.kid.as_deref().map(clip);
                log.iss = authenticated.claims.iss.as_deref().map(clip);
                Some(token)
            }
        };

        // Upstream token: memory, KV, or one shared call to the token endpoint.
        let token_started = svc.clock.now_ms();
        let obtained = self
            .tokens
            .get(&config.token, &svc.http, &svc.store, &svc.clock)
            .await
            .map_err(GatewayError::TokenUnavailable)?;
        log.token_source = Some(obtained.source.as_str());
        log.token_ms = Some(svc.clock.now_ms().saturating_sub(token_started));

        // Rewrite: the origin comes from configuration only, never from the request.
        let base = route.origin.as_deref().unwrap_or(&config.origin);
        let url = match &req.query {
            Some(q) => format!("{base}{}?{q}", req.path),
            None => format!("{base}{}", req.path),
        };
        let headers = headers::upstream_headers(
            &req.headers,
            &Credentials {
                access_token: obtained.token.access_token(),
                customer_jwt,
                api_key: &config.api_key,
                request_id,
            },
        )
        .map_err(|e| GatewayError::Internal(e.0))?;

        // Forward: method and body as received; the body streams through.
        let origin_started = svc.clock.now_ms();
        let response = svc
            .http
            .send(OutboundRequest {
                method: req.method,
                url,
                headers,
                body: req.body,
                timeout_ms: config.origin_timeout_ms,
            })
            .await
            .map_err(|e| match e {
                HttpError::Timeout => GatewayError::OriginTimeout,
                _ => GatewayError::OriginUnreachable,
            })?;
        log.origin_ms = Some(svc.clock.now_ms().saturating_sub(origin_started));

        // Respond: the origin's status and body, minus hop-by-hop headers.
        Ok(GatewayResponse {
            status: response.status,
            headers: headers::downstream_headers(&response.headers, request_id),
            body: response.body,
        })
    }
}

/// The caller's `x-request-id` when it is a sane identifier, else a fresh random one: the id
/// goes into headers and logs, so arbitrary caller text is not copied.
fn request_id(headers: &HeaderMap) -> String {
    let from_caller = headers
        .get(headers::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| {
            (1..=128).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(&b))
        });
    match from_caller {
        Some(id) => id.to_string(),
        None => random_id(),
    }
}

fn random_id() -> String {
    let mut bytes = [0u8; 16];
    // Ids only correlate log lines: without entropy an all-zero id beats failing the request.
    let _ = getrandom::getrandom(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
