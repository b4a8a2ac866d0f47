//! The request path, as named phases run in order by one function (`Gateway::proxy`, the
//! conductor) with one error exit: route (the gateway's own paths first) → rate limit by
//! address → preflight → authenticate → rate limit by identity → token → rewrite → forward
//! (replayed once after the origin refuses the token) → respond. Each phase lives in the file named for it and says whether the request
//! goes on (`Step::Continue`) or is answered now (`Step::Respond`, or an error); the isolate's
//! background work (the refresh ahead of expiry, the scheduled run) is in `background`; the log
//! line is `log`, and the `METRICS` data points built from it `metrics`.

pub mod assertion;
pub mod background;
pub mod credentials;
pub mod forward;
pub mod log;
pub mod metrics;
pub mod preflight;
pub mod rate_limit;
pub mod replay;
pub mod route;

use http::{HeaderMap, Method};

use crate::config::{Config, ConfigErrors, Lookup};
use crate::edge::headers;
use crate::error::GatewayError;
use crate::identity::{Asked, Identities};
use crate::io::{
    Body, Clock, Fields, FieldsOf, GatewayRequest, GatewayResponse, Platform, StreamOf,
};
use crate::proxy::log::{clip, RequestLog};
use crate::proxy::rate_limit::Limits;
use crate::proxy::route::Route;
use crate::token::{RefreshAhead, TokenCache};

/// The request as the platform hands it to the core.
pub type Request<P> = GatewayRequest<StreamOf<P>, FieldsOf<P>>;
/// The answer the core hands back: the origin's, or the gateway's own.
pub type Response<P> = GatewayResponse<StreamOf<P>, FieldsOf<P>>;

/// What a phase decided: go on to the next phase with `T`, or answer now with `R`. (A phase
/// that refuses returns its `GatewayError`, the conductor's one error exit.)
pub enum Step<T, R> {
    Continue(T),
    Respond(R),
}

/// What the phases after routing know of the request: its configuration, route, normalized
/// path, the caller's fields the core reads, and its id.
pub struct Routed<'a> {
    pub config: &'a Config,
    pub route: &'a Route,
    /// The normalized path: what the route matched, what the log names and what the origin
    /// receives.
    pub path: String,
    pub seen: &'a HeaderMap,
    pub request_id: &'a str,
    /// The origin (`scheme://host[:port]`) of the URL the caller requested, when the platform
    /// says: the gateway assertion's default `iss`.
    pub caller_origin: Option<&'a str>,
}

/// A served request: the answer, its log line, and the work it claimed for after the answer.
#[derive(Debug)]
pub struct Served<S, F = HeaderMap> {
    pub response: GatewayResponse<S, F>,
    pub log: RequestLog,
    /// The isolate's refresh ahead of expiry, claimed by this request: run it with
    /// `Gateway::refresh_ahead` once the response is on its way (`ctx.wait_until`).
    pub refresh: Option<RefreshAhead>,
}

/// The isolate's gateway: configuration checked once, and the caches every request shares.
pub struct Gateway {
    config: Result<Config, ConfigErrors>,
    identities: Identities,
    tokens: TokenCache,
}

impl Gateway {
    pub fn new(get: Lookup<'_>) -> Self {
        Self::from_config(Config::from_settings(get))
    }

    pub fn from_config(config: Result<Config, ConfigErrors>) -> Self {
        Self {
            identities: Identities::new(&config),
            config,
            tokens: TokenCache::new(),
        }
    }

    /// Verifies every token in full, every time: only to measure what the verified-token
    /// memory saves (`baseline-verify` builds).
    pub fn without_verified_memory(mut self) -> Self {
        self.identities = Identities::new(&self.config).forgetting();
        self
    }

    /// The configuration's problems, if any, for a log line at start-up.
    pub fn config_error(&self) -> Option<&ConfigErrors> {
        self.config.as_ref().err()
    }

    /// Serves one request: the origin's response or the gateway's own problem+json, and the
    /// request's log line. For callers that cannot run work after the response: the refresh
    /// ahead is not run, so the token is refreshed in the foreground once it stops being usable.
    pub async fn handle<P: Platform>(&self, svc: &P, req: Request<P>) -> (Response<P>, RequestLog) {
        let served = self.serve(svc, req).await;
        (served.response, served.log)
    }

    /// Serves one request, and claims the isolate's token refresh ahead of expiry when it is
    /// due: the caller runs `served.refresh` after answering.
    pub async fn serve<P: Platform>(
        &self,
        svc: &P,
        req: Request<P>,
    ) -> Served<StreamOf<P>, FieldsOf<P>> {
        self.serve_at(svc, req, None).await
    }

    /// `serve`, told the origin (`scheme://host[:port]`) of the URL the caller requested: the
    /// gateway assertion's default `iss` (the Worker's glue always says).
    pub async fn serve_at<P: Platform>(
        &self,
        svc: &P,
        req: Request<P>,
        caller_origin: Option<&str>,
    ) -> Served<StreamOf<P>, FieldsOf<P>> {
        let started = svc.clock().now_ms();
        let jwt_header = self
            .config
            .as_ref()
            .ok()
            .and_then(|c| c.identifier_cookies.jwt_header());
        let seen = req
            .headers
            .read(&read_names(&req.method, &req.body, jwt_header));
        let request_id = log::request_id(&seen);
        let mut log = RequestLog {
            request_id: request_id.clone(),
            method: req.method.to_string(),
            path: clip(&req.path),
            outcome: "forwarded",
            ..RequestLog::default()
        };
        let response = match self
            .proxy(svc, req, &seen, &request_id, caller_origin, &mut log)
            .await
        {
            Ok(response) => response,
            // The one error exit: every refusal becomes problem+json here.
            Err(err) => {
                let problem = err.to_problem(&request_id);
                log.outcome = problem.outcome;
                GatewayResponse {
                    status: problem.status,
                    headers: FieldsOf::<P>::from_map(problem.headers),
                    body: Body::Bytes(problem.body),
                }
            }
        };
        // Only a request that used a token looks at its refresh: unknown paths cost nothing.
        let refresh = match (&self.config, log.token_source) {
            (Ok(config), Some(_)) => self.tokens.refresh_due(&config.token, svc.clock().now_ms()),
            _ => None,
        };
        if refresh.is_some() {
            log.token_refresh.get_or_insert("ahead");
        }
        log.status = response.status;
        log.total_ms = svc.clock().now_ms().saturating_sub(started);
        Served {
            response,
            log,
            refresh,
        }
    }

    /// The conductor: each phase in order; `?` is the one error exit.
    async fn proxy<P: Platform>(
        &self,
        svc: &P,
        req: Request<P>,
        seen: &HeaderMap,
        request_id: &str,
        caller_origin: Option<&str>,
        log: &mut RequestLog,
    ) -> Result<Response<P>, GatewayError> {
        let config = self
            .config
            .as_ref()
            .map_err(|e| GatewayError::Config(e.clone()))?;

        // Route: before anything else, so unknown paths cost nothing and reach nobody; from
        // here on only the normalized path exists.
        let path = route::normalize(&req.path, log)?;
        // The gateway's own paths (its public keys): answered here, before any route, so that
        // no route (a catch-all `/` included) shadows them and none is forwarded.
        if let Step::Respond(response) =
            assertion::own_paths::<P>(config.assertion.as_ref(), &req.method, &path, log)?
        {
            return Ok(response);
        }
        let route = route::phase(&config.routes, &req.method, &path, log)?;
        let at = Routed {
            config,
            route,
            path,
            seen,
            request_id,
            caller_origin,
        };

        // Rate limit by address: before the identifier is verified or introspected, so that a
        // flood of bad tokens or random session ids from one address costs at most the limit;
        // preflights count too.
        let limits = Limits::of(route);
        limits.by_address(svc, route, &req.headers, log).await?;

        // Preflight: on a route that forwards them, a CORS preflight goes on with no identity
        // and none of the three credentials, and no token is fetched for it.
        if let Step::Respond(response) = preflight::phase(&at, svc, &req, &limits, log).await? {
            return Ok(response);
        }

        // Authenticate: the route's requirement, on every request that reads an identity
        // (verified-token memory hits too): mechanism, policy, customer id.
        // The URL as received (a DPoP proof's `htu`), not the normalized path.
        let url = caller_origin.map(|origin| format!("{origin}{}", req.path));
        let asked = Asked {
            path: &at.path,
            fields: &req.headers,
            tls_client_auth: req.tls_client_auth.as_ref(),
            method: &req.method,
            url: url.as_deref(),
        };
        let identity = self
            .identities
            .authenticate(&route.requirement, config, seen, &asked, svc, log)
            .await?;

        // Rate limit by identity: after authentication (an invalid token is refused before it
        // is counted), before anything costs a token or reaches the origin.
        let claims = identity.as_ref().map(|i| &i.verified.claims);
        limits
            .by_identity(svc, route, claims, &req.headers, log)
            .await?;

        // Token: memory, KV, or one shared call to the token endpoint.
        let obtained = credentials::phase(&self.tokens, config, svc, log).await?;

        // Rewrite: the origin comes from configuration only; the identity headers carry the
        // gateway's values only.
        let rewrite =
            forward::Rewrite::new(&at, &req.method, req.query.as_deref(), identity.as_ref())?;

        // Forward, and replay once after the origin refuses the token.
        let response = forward::phase(&self.tokens, &at, svc, req, &rewrite, obtained, log).await?;

        // Respond: the origin's status and body, minus hop-by-hop headers.
        Ok(GatewayResponse {
            status: response.status,
            headers: headers::downstream_headers(&response.headers, request_id),
            body: response.body,
        })
    }
}

/// The few caller fields the core reads; the rest is only passed on.
/// `jwt_header`: `JWT_HEADER`, when set, one more source of the customer JWT.
fn read_names<S>(
    method: &Method,
    body: &Body<S>,
    jwt_header: Option<&http::HeaderName>,
) -> Vec<http::HeaderName> {
    let mut names = headers::CALLER_READS.to_vec();
    names.extend(jwt_header.cloned());
    if !matches!(body, Body::Empty) {
        names.extend(headers::BODY_READS);
    }
    if method == Method::OPTIONS {
        // `Content-Length` may be there already (a body); a name read twice reads twice.
        for name in headers::PREFLIGHT_READS {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}
