//! The request path, as named phases in one function with one error exit:
//! route → rate limit by address → authenticate → rate limit by identity → upstream token →
//! rewrite → forward (replayed once after
//! the origin refuses the token, as `ORIGIN_TOKEN_REFUSAL` judges its 401s) → respond; and the
//! isolate's background work: the token refresh ahead of expiry that a request claims, and the
//! scheduled run.

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::auth::{AuthError, Authenticator};
use crate::config::{Config, ConfigErrors, Lookup};
use crate::error::GatewayError;
use crate::headers::{self, Credentials};
use crate::identity::{self, Presented, Verified};
use crate::io::{
    Body, Clock, Coordinator, Fields, FieldsOf, HttpClient, HttpError, InboundResponse, KeyValue,
    NoCoordinator, NoRateLimiters, OutboundRequest, Platform, RateLimiters, StreamOf,
};
use crate::jwt::{self, JwtError, SignatureVerifier};
use crate::log::{clip, RequestLog, TaskLog};
use crate::opaque::SessionCache;
use crate::policy::Defaults;
use crate::refusal::Judged;
use crate::replay::Outgoing;
use crate::routes::{AuthMode, Route, RouteError};
use crate::token::{Obtained, RefreshAhead, RefreshOutcome, Rejection, TokenCache};

/// The scheduled run refreshes `JWKS_URL`'s set when it would go stale within this: two runs
/// of the 5-minute cron in wrangler.toml, so one missed run does not leave requests to fetch.
pub const SCHEDULED_KEYS_AHEAD_MS: u64 = 10 * 60 * 1000;

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
}

/// The origin's response with its fields passed through (`headers::downstream_headers`), or
/// the gateway's own answer.
#[derive(Debug)]
pub struct GatewayResponse<S, F = HeaderMap> {
    pub status: u16,
    pub headers: F,
    pub body: Body<S>,
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

/// What a request needs from the platform: the `io::Platform` handle the core is passed.
/// `coordinator`: the deployment's token coordinator (`TOKEN_COORDINATOR`), or
/// `NoCoordinator`; `rate_limiters`: the Workers rate-limiting bindings that routes'
/// `rate_limit` name.
pub struct Services<H, S, C, V, K = NoCoordinator, R = NoRateLimiters> {
    pub http: H,
    pub store: S,
    pub clock: C,
    pub verifier: V,
    pub coordinator: K,
    pub rate_limiters: R,
}

impl<H, S, C, V, K, R> Platform for Services<H, S, C, V, K, R>
where
    H: HttpClient,
    S: KeyValue,
    C: Clock,
    V: SignatureVerifier + crate::signing::Signer,
    K: Coordinator,
    R: RateLimiters,
{
    type Http = H;
    type Store = S;
    type Clock = C;
    type Verifier = V;
    // The platform's one crypto provider verifies and signs (as rustls' `CryptoProvider`).
    type Signer = V;
    type Coordinator = K;
    type RateLimiters = R;

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
}

/// The isolate's gateway: configuration checked once, and the caches every request shares.
pub struct Gateway {
    config: Result<Config, ConfigErrors>,
    auth: Authenticator,
    tokens: TokenCache,
    sessions: SessionCache,
}

impl Gateway {
    pub fn new(get: Lookup<'_>) -> Self {
        Self::from_config(Config::from_settings(get))
    }

    pub fn from_config(config: Result<Config, ConfigErrors>) -> Self {
        Self {
            auth: Authenticator::for_providers(provider_count(&config)),
            config,
            tokens: TokenCache::new(),
            sessions: SessionCache::new(),
        }
    }

    /// Verifies every token in full, every time: only to measure what the verified-token
    /// memory saves (`baseline-verify` builds).
    pub fn without_verified_memory(mut self) -> Self {
        self.auth = Authenticator::for_providers(provider_count(&self.config)).forgetting();
        self
    }

    /// The configuration's problems, if any, for a log line at start-up.
    pub fn config_error(&self) -> Option<&ConfigErrors> {
        self.config.as_ref().err()
    }

    /// Serves one request: the origin's response or the gateway's own problem+json, and the
    /// request's log line. For callers that cannot run work after the response: the refresh
    /// ahead is not run, so the token is refreshed in the foreground once it stops being usable.
    pub async fn handle<P: Platform>(
        &self,
        svc: &P,
        req: GatewayRequest<StreamOf<P>, FieldsOf<P>>,
    ) -> (GatewayResponse<StreamOf<P>, FieldsOf<P>>, RequestLog) {
        let served = self.serve(svc, req).await;
        (served.response, served.log)
    }

    /// Serves one request, and claims the isolate's token refresh ahead of expiry when it is
    /// due: the caller runs `served.refresh` after answering.
    pub async fn serve<P: Platform>(
        &self,
        svc: &P,
        req: GatewayRequest<StreamOf<P>, FieldsOf<P>>,
    ) -> Served<StreamOf<P>, FieldsOf<P>> {
        self.serve_at(svc, req, None).await
    }

    /// `serve`, told the origin (`scheme://host[:port]`) of the URL the caller requested: the
    /// gateway assertion's default `iss` (the Worker's glue always says).
    pub async fn serve_at<P: Platform>(
        &self,
        svc: &P,
        req: GatewayRequest<StreamOf<P>, FieldsOf<P>>,
        caller_origin: Option<&str>,
    ) -> Served<StreamOf<P>, FieldsOf<P>> {
        let started = svc.clock().now_ms();
        // The few caller fields the core reads; the rest is only passed on.
        let mut names = headers::CALLER_READS.to_vec();
        if !matches!(req.body, Body::Empty) {
            names.extend(headers::BODY_READS);
        }
        if req.method == Method::OPTIONS {
            // `Content-Length` may be there already (a body); a name read twice reads twice.
            for name in headers::PREFLIGHT_READS {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        let seen = req.headers.read(&names);
        let request_id = request_id(&seen);
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
            Err(err) => {
                log.outcome = err.outcome();
                let problem = err.to_problem(&request_id);
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

    /// Runs the refresh ahead that a request claimed; requests meanwhile keep using the current
    /// token. Returns the task's log line.
    pub async fn refresh_ahead<P: Platform>(&self, job: RefreshAhead, svc: &P) -> TaskLog {
        let started = svc.clock().now_ms();
        let outcome = match &self.config {
            Ok(config) => self.tokens.refresh(job, &config.token, svc).await,
            // Unreachable in practice: a refresh is only claimed under a valid configuration.
            Err(_) => RefreshOutcome::Fresh,
        };
        task_log("token_refresh", &outcome, svc.clock().now_ms() - started)
    }

    /// The scheduled (cron) run: pre-warms the access token, so that the first request after a
    /// quiet spell finds one in KV instead of waiting for the endpoint. One log line.
    pub async fn on_schedule<P: Platform>(&self, svc: &P) -> TaskLog {
        let started = svc.clock().now_ms();
        let config = match &self.config {
            Ok(config) => config,
            Err(_) => {
                return TaskLog {
                    event: "scheduled",
                    token: "not_configured",
                    ..TaskLog::default()
                }
            }
        };
        let outcome = self.tokens.prewarm(&config.token, svc).await;
        // Each key source in turn (one per provider); the line names the last that did work.
        let sources: Vec<&crate::jwt::JwtSettings> = match &config.providers {
            None => vec![&config.jwt],
            Some(providers) => providers.list().iter().map(|p| &p.settings).collect(),
        };
        let mut jwks = None;
        for (id, settings) in sources.into_iter().enumerate() {
            let event = self
                .auth
                .refresh_provider_keys(id, settings, SCHEDULED_KEYS_AHEAD_MS, svc)
                .await;
            jwks = event.or(jwks);
        }
        TaskLog {
            jwks: jwks.map(|e| e.as_str()),
            ..task_log("scheduled", &outcome, svc.clock().now_ms() - started)
        }
    }

    async fn proxy<P: Platform>(
        &self,
        svc: &P,
        req: GatewayRequest<StreamOf<P>, FieldsOf<P>>,
        seen: &HeaderMap,
        request_id: &str,
        caller_origin: Option<&str>,
        log: &mut RequestLog,
    ) -> Result<GatewayResponse<StreamOf<P>, FieldsOf<P>>, GatewayError> {
        let config = self
            .config
            .as_ref()
            .map_err(|e| GatewayError::Config(e.clone()))?;

        // Route: before anything else, so unknown paths cost nothing and reach nobody. The
        // path is normalized first, and from here on only the normalized path exists: it is
        // what the routes match, what the log names and what the origin receives.
        let path = crate::path::normalize(&req.path).map_err(|e| {
            log.path_problem = Some(e.code());
            GatewayError::InvalidPath(e)
        })?;
        log.path = clip(&path);
        // The gateway's own paths (its public keys): answered here, before any route.
        if let Some(own) = crate::assertion::own_path(config.assertion.as_ref(), &req.method, &path)
        {
            log.outcome = "gateway_jwks";
            let (headers, body) = own?;
            return Ok(GatewayResponse {
                status: 200,
                headers: FieldsOf::<P>::from_map(headers),
                body: Body::Bytes(body),
            });
        }
        let route = config
            .routes
            .select(&req.method, &path)
            .map_err(|e| match e {
                RouteError::NoRoute => GatewayError::NoRoute,
                RouteError::MethodNotAllowed { allow } => GatewayError::MethodNotAllowed(allow),
            })?;
        log.route = Some(route.configured.clone());

        // Rate limit by address: before the identifier is verified or introspected, so that a
        // flood of bad tokens or random session ids from one address costs at most the limit;
        // preflights count too.
        let (by_address, by_identity) = match &route.rate_limit {
            Some(limit) if limit.by_address() => (Some(limit), None),
            limit => (None, limit.as_ref()),
        };
        if let Some(limit) = by_address {
            crate::rate_limit::count(svc, route, limit, None, &req.headers, log).await?;
        }

        // A CORS preflight, on a route that forwards them: it carries no identity, so it goes
        // on with none of the three credentials, and no token is fetched for it. Counted
        // under its address by an identity's limit (it has no identity).
        if route.policy.forward_preflight && is_preflight(&req.method, seen, &req.body) {
            if let Some(limit) = by_identity {
                crate::rate_limit::count(svc, route, limit, None, &req.headers, log).await?;
            }
            return self
                .forward_preflight(config, svc, req, route, &path, request_id, log)
                .await;
        }

        // Authenticate, then the route's policy and the customer id: on every verified
        // request, verified-token memory hits too. First, on every route that reads an
        // identifier (`report` included): one identifier per request.
        let cookies = match route.auth {
            AuthMode::Public => Default::default(),
            _ => identity::one_identifier(config, seen, log)?,
        };
        let (verified, customer_id) = match route.auth {
            AuthMode::Public => (None, None),
            AuthMode::Opaque => {
                let verified =
                    identity::vouch_opaque(&self.sessions, config, seen, cookies.session, svc, log)
                        .await?;
                let id = identity::admit(route, config, &verified, Defaults::default(), log)?;
                (Some(verified), id)
            }
            AuthMode::Jwt | AuthMode::Optional | AuthMode::Report => {
                let checked = match jwt::extract(seen, cookies.jwt) {
                    Ok(None) if route.auth == AuthMode::Optional => Ok(None),
                    Ok(None) => Err(GatewayError::Jwt(JwtError::Missing)),
                    Ok(Some(token)) => {
                        log.identity = Some("jwt");
                        self.verify_jwt(route, config, svc, token, log)
                            .await
                            .map(Some)
                    }
                    Err(e) => Err(GatewayError::Jwt(e)),
                };
                match (route.auth, checked) {
                    // Forwarded whatever the outcome; the identity only when it passed.
                    (AuthMode::Report, Ok(passed)) => {
                        log.report = Some("forwarded");
                        passed.map_or((None, None), |(v, id)| (Some(v), id))
                    }
                    (AuthMode::Report, Err(refused)) => {
                        log.report = Some(refused.outcome());
                        (None, None)
                    }
                    (_, checked) => checked?.map_or((None, None), |(v, id)| (Some(v), id)),
                }
            }
        };
        // Rate limit by identity: after authentication (an invalid token is refused before it
        // is counted), before anything costs a token or reaches the origin.
        if let Some(limit) = by_identity {
            let identity = verified.as_ref().map(|v| &v.claims);
            crate::rate_limit::count(svc, route, limit, identity, &req.headers, log).await?;
        }

        // Upstream token: memory, KV, or one shared call to the token endpoint.
        let token_started = svc.clock().now_ms();
        let obtained = self.token(config, svc, log).await?;
        log.token_ms = Some(svc.clock().now_ms().saturating_sub(token_started));

        // Rewrite: the origin comes from configuration only, never from the request; the
        // identity headers carry the gateway's values only.
        let url = origin_url(config, route, &path, req.query.as_deref());
        let mut identity = verified
            .as_ref()
            .map(|v| route.policy.claim_headers(&v.claims))
            .unwrap_or_default();
        if let (Some(ids), Some(id)) = (&config.customer_id, customer_id.as_deref()) {
            let id =
                HeaderValue::from_str(id).map_err(|_| GatewayError::Internal("customer id"))?;
            identity.push((ids.header().clone(), id));
        }
        // The gateway assertion, signed anew for each send (`GATEWAY_ASSERTION_HEADER`).
        let assertion = crate::assertion::Assertion::prepare(
            config.assertion.as_ref(),
            &crate::assertion::Forwarded {
                caller_origin,
                origin_base: route.origin.as_deref().unwrap_or(&config.origin),
                origin_url: &url,
                method: &req.method,
                request_id,
                identity: verified
                    .as_ref()
                    .map(|v| (&v.claims, customer_id.as_deref())),
            },
        );
        let upstream = |access_token: &str, signed: Option<(HeaderName, HeaderValue)>| {
            let with_assertion;
            let identity = match signed {
                None => &identity,
                Some(signed) => {
                    with_assertion = [identity.as_slice(), &[signed]].concat();
                    &with_assertion
                }
            };
            headers::upstream_headers(
                &req.headers,
                &Credentials {
                    access_token,
                    customer_auth: verified.as_ref().map(Verified::customer_auth),
                    api_key: &config.api_key,
                    request_id,
                    identity_headers: &config.identity_headers,
                    identity,
                },
            )
            .map_err(|e| GatewayError::Internal(e.0))
        };
        // A small body is kept so that the request can be sent again after a 401.
        let mut body = Outgoing::prepare(svc, seen, req.body)
            .await
            .map_err(|_| GatewayError::RequestBody)?;

        // Forward: method and body as received; a body too big to keep streams through. Each
        // send signs its own assertion (one future type for the three sends: awaited inline
        // at each, the signing would be copied into this function's state machine three times).
        let origin_started = svc.clock().now_ms();
        let (method, upstream, assertion) = (&req.method, &upstream, &assertion);
        let send = |access_token: &str, body: Body<StreamOf<P>>| {
            let access_token = access_token.to_owned();
            let url = url.clone();
            async move {
                let signed = crate::assertion::sign_for(assertion.as_ref(), svc).await?;
                svc.http()
                    .forward(OutboundRequest {
                        method: method.clone(),
                        url,
                        headers: upstream(&access_token, signed)?,
                        body,
                        timeout_ms: config.origin_timeout_ms,
                    })
                    .await
                    .map_err(origin_error)
            }
        };
        let first_body = body.next_send().unwrap_or(Body::Empty);
        let response = send(obtained.token.access_token(), first_body).await?;

        // A 401 the mode counts as a refusal of the token: drop it (if still cached), get one
        // new token for every request that hit this, and replay once. Any other 401 is the
        // origin's answer to the caller and goes back untouched (src/refusal.rs has the table).
        let mode = config.origin_token_refusal;
        let judged = (response.status == 401).then(|| mode.judge(&challenges(&response.headers)));
        log.origin_401 = judged.map(Judged::as_str);
        let response = if judged == Some(Judged::Refusal) {
            async {
                let rejection = self
                    .tokens
                    .reject(&obtained.token, &config.token, svc)
                    .await;
                if rejection == Rejection::Dropped {
                    log.token_refresh = Some("after_401");
                }
                let Some(again) = body.next_send() else {
                    skip_replay(log, "body_not_kept");
                    return match (mode.challenge_is_ours(), rejection) {
                        (false, _) => Ok(response),
                        // The cooldown kept the token: it is the one fetched after the last
                        // refusal, and a retry now would carry it again.
                        (true, Rejection::Kept) => Err(refused_again(log)),
                        (true, _) => Err(GatewayError::OriginRefusedUnreplayed),
                    };
                };
                let fresh = self.token(config, svc, log).await?;
                if fresh.token.access_token() == obtained.token.access_token() {
                    skip_replay(log, "no_new_token");
                    return if mode.challenge_is_ours() {
                        Err(refused_again(log))
                    } else {
                        Ok(response)
                    };
                }
                log.replayed = Some(true);
                let replayed = send(fresh.token.access_token(), again).await?;
                let refused = |r: &InboundResponse<StreamOf<P>, FieldsOf<P>>| {
                    mode.challenge_is_ours()
                        && r.status == 401
                        && mode.judge(&challenges(&r.headers)) == Judged::Refusal
                };
                if !refused(&replayed) {
                    return Ok(replayed);
                }
                // The replay carried a token someone else had already put in place, perhaps
                // before the origin started refusing (it revoked every token at once): that
                // one is dropped too, and the request gets one more replay only if a token
                // fetched after it can be had. A refused token fetched for this refusal is
                // the origin refusing the gateway's credentials.
                if rejection != Rejection::AlreadyReplaced {
                    return Err(refused_again(log));
                }
                if self.tokens.reject(&fresh.token, &config.token, svc).await == Rejection::Dropped
                {
                    log.token_refresh = Some("after_401");
                }
                let last = self.token(config, svc, log).await?;
                let (Some(again), false) = (
                    body.next_send(),
                    last.token.access_token() == fresh.token.access_token(),
                ) else {
                    return Err(refused_again(log));
                };
                let replayed = send(last.token.access_token(), again).await?;
                if refused(&replayed) {
                    return Err(refused_again(log));
                }
                Ok(replayed)
            }
            .await
        } else {
            Ok(response)
        };
        // Also when the gateway answers instead: the time went to the origin.
        log.origin_ms = Some(svc.clock().now_ms().saturating_sub(origin_started));
        let response = response?;

        // Respond: the origin's status and body, minus hop-by-hop headers.
        Ok(GatewayResponse {
            status: response.status,
            headers: headers::downstream_headers(&response.headers, request_id),
            body: response.body,
        })
    }

    /// The customer JWT checked for `route`: matched to its provider (with `JWT_PROVIDERS`),
    /// verified (or found in the verified-token memory), then the route's policy with the
    /// provider's or flat settings as defaults, and the customer id.
    async fn verify_jwt<'h, P: Platform>(
        &self,
        route: &Route,
        config: &Config,
        svc: &P,
        token: &'h str,
        log: &mut RequestLog,
    ) -> Result<(Verified<'h>, Option<String>), GatewayError> {
        let (provider, settings, defaults) = match &config.providers {
            None => (
                0,
                &config.jwt,
                Defaults {
                    issuers: &config.jwt_issuers,
                    audiences: &config.jwt_audiences,
                    max_lifetime_secs: None,
                },
            ),
            Some(providers) => {
                // The unverified `iss` only chooses whose keys to try.
                let (id, p) = providers.for_token(token).map_err(GatewayError::Jwt)?;
                if route
                    .policy
                    .issuers
                    .as_ref()
                    .is_some_and(|accepted| !accepted.contains(&p.issuer))
                {
                    log.policy = Some("issuers");
                    return Err(GatewayError::Jwt(JwtError::WrongIssuer));
                }
                (
                    id,
                    &p.settings,
                    Defaults {
                        issuers: std::slice::from_ref(&p.issuer),
                        audiences: &p.audiences,
                        max_lifetime_secs: p.max_lifetime_secs,
                    },
                )
            }
        };
        let (result, jwks) = self.auth.check_with(provider, token, settings, svc).await;
        log.jwks = jwks.map(|e| e.as_str());
        let authenticated = result.map_err(|e| match e {
            AuthError::Jwt(e) => GatewayError::Jwt(e),
            AuthError::KeysUnavailable(u) => GatewayError::KeysUnavailable(u),
        })?;
        log.jwt_check = Some(authenticated.check.as_str());
        log.kid = authenticated.claims.kid.as_deref().map(clip);
        log.iss = authenticated.claims.iss.as_deref().map(clip);
        let verified = Verified {
            presented: Presented::Jwt(token),
            claims: authenticated.claims.claims,
        };
        let customer_id = identity::admit(route, config, &verified, defaults, log)?;
        Ok((verified, customer_id))
    }

    /// Forwards a CORS preflight without a customer JWT and without any credentials.
    #[allow(clippy::too_many_arguments)]
    async fn forward_preflight<P: Platform>(
        &self,
        config: &Config,
        svc: &P,
        req: GatewayRequest<StreamOf<P>, FieldsOf<P>>,
        route: &Route,
        path: &str,
        request_id: &str,
        log: &mut RequestLog,
    ) -> Result<GatewayResponse<StreamOf<P>, FieldsOf<P>>, GatewayError> {
        log.cors_preflight = Some("forwarded");
        let headers =
            headers::preflight_headers(&req.headers, request_id, &config.identity_headers)
                .map_err(|e| GatewayError::Internal(e.0))?;
        let origin_started = svc.clock().now_ms();
        let response = svc
            .http()
            .forward(OutboundRequest {
                method: req.method,
                url: origin_url(config, route, path, req.query.as_deref()),
                headers,
                // A preflight has no body (`is_preflight`): at most an empty one.
                body: Body::Empty,
                timeout_ms: config.origin_timeout_ms,
            })
            .await;
        log.origin_ms = Some(svc.clock().now_ms().saturating_sub(origin_started));
        let response = response.map_err(origin_error)?;
        Ok(GatewayResponse {
            status: response.status,
            headers: headers::downstream_headers(&response.headers, request_id),
            body: response.body,
        })
    }

    /// The token phase: a token, and where it came from, in the log line; or 503.
    async fn token<P: Platform>(
        &self,
        config: &Config,
        svc: &P,
        log: &mut RequestLog,
    ) -> Result<Obtained, GatewayError> {
        match self.tokens.get(&config.token, svc).await {
            Ok(obtained) => {
                log.token_source = Some(obtained.source.as_str());
                log.coordinator = log.coordinator.or(obtained.coordinator);
                Ok(obtained)
            }
            Err(unavailable) => {
                log.coordinator = log.coordinator.or(unavailable.coordinator);
                if unavailable.called_endpoint {
                    log.token_error = Some(unavailable.cause.code());
                    log.config_error = unavailable.cause.config_problem();
                }
                Err(GatewayError::TokenUnavailable(unavailable))
            }
        }
    }
}

/// An origin 401's `WWW-Authenticate` fields: all that judging it reads.
fn challenges<F: Fields>(headers: &F) -> HeaderMap {
    headers.read(&[http::header::WWW_AUTHENTICATE])
}

/// One key set cache per provider, or one for the flat settings.
fn provider_count(config: &Result<Config, ConfigErrors>) -> usize {
    match config {
        Ok(Config {
            providers: Some(p), ..
        }) => p.list().len(),
        _ => 1,
    }
}

/// The route's origin (or `ORIGIN_URL`) + the normalized path + the query, untouched: the
/// origin comes from configuration only, never from the request.
fn origin_url(config: &Config, route: &Route, path: &str, query: Option<&str>) -> String {
    let base = route.origin.as_deref().unwrap_or(&config.origin);
    match query {
        Some(q) => format!("{base}{path}?{q}"),
        None => format!("{base}{path}"),
    }
}

/// A CORS preflight (Fetch standard): `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`, and no body. A plain `OPTIONS` is not one, and neither is
/// one with a body: browsers never send a body with a preflight, so a request that has one is
/// an ordinary request and needs what the route requires.
fn is_preflight<S>(method: &Method, seen: &HeaderMap, body: &Body<S>) -> bool {
    method == Method::OPTIONS
        && seen.contains_key(http::header::ORIGIN)
        && seen.contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
        && !has_body(seen, body)
}

/// Whether a request has a body, by any sign of one: `Transfer-Encoding`, a `Content-Length`
/// other than one `0`, or, without a declared length, a body the platform hands over (a
/// stream whose length nobody declared counts as a body).
fn has_body<S>(seen: &HeaderMap, body: &Body<S>) -> bool {
    if seen.contains_key(http::header::TRANSFER_ENCODING) {
        return true;
    }
    let mut declared = seen.get_all(http::header::CONTENT_LENGTH).iter();
    match (declared.next(), declared.next()) {
        (None, _) => match body {
            Body::Empty => false,
            Body::Bytes(bytes) => !bytes.is_empty(),
            Body::Stream(_) => true,
        },
        // Only a declared zero (`0`, `00`) says "no body"; anything else, a body.
        (Some(n), None) => n.is_empty() || n.as_bytes().iter().any(|&b| b != b'0'),
        _ => true,
    }
}

fn origin_error(e: HttpError) -> GatewayError {
    match e {
        HttpError::Timeout => GatewayError::OriginTimeout,
        _ => GatewayError::OriginUnreachable,
    }
}

/// The refused request is not sent again, for `why`.
fn skip_replay(log: &mut RequestLog, why: &'static str) {
    log.replayed = Some(false);
    log.replay_skipped = Some(why);
}

/// The origin refused the token that replaced a refused one (or no other could be had): the
/// gateway's credentials are wrong for this origin, which only an operator can fix.
fn refused_again(log: &mut RequestLog) -> GatewayError {
    log.config_error = Some("origin_refused_token");
    GatewayError::OriginRefusedToken
}

fn task_log(event: &'static str, outcome: &RefreshOutcome, total_ms: u64) -> TaskLog {
    TaskLog {
        event,
        token: outcome.as_str(),
        token_source: outcome.source().map(|s| s.as_str()),
        token_error: outcome.error().map(|e| e.code()),
        config_error: outcome.error().and_then(|e| e.config_problem()),
        jwks: None,
        total_ms,
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
    let bytes = random_bytes();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(32);
    for b in bytes {
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    id
}

/// 16 random bytes, drawn from a pool that `getrandom` refills 64 ids at a time: in a Worker
/// each `getrandom` call is four calls into JavaScript (`crypto.getRandomValues` on a fresh
/// typed array, then a copy).
fn random_bytes() -> [u8; 16] {
    use std::cell::RefCell;
    const POOL: usize = 16 * 64;
    thread_local! {
        static RANDOM: RefCell<([u8; POOL], usize)> = const { RefCell::new(([0; POOL], POOL)) };
    }
    RANDOM.with_borrow_mut(|(pool, used)| {
        if *used == POOL {
            // Ids only correlate log lines: without entropy an all-zero id beats failing the
            // request.
            if getrandom::getrandom(pool).is_err() {
                pool.fill(0);
            }
            *used = 0;
        }
        let mut out = [0u8; 16];
        out.copy_from_slice(&pool[*used..*used + 16]);
        *used += 16;
        out
    })
}
