//! The rewrite and forward phases: the origin request built from configuration and the
//! gateway's credentials (`Rewrite`), sent with the method and body as received; and, when the
//! origin's 401 refuses the gateway's access token (as `ORIGIN_TOKEN_REFUSAL` judges it,
//! `edge::refusal`), the token dropped and the request replayed once with a new one, when its
//! body was kept (`replay`). Each send carries its own gateway assertion (`assertion`), signed
//! for it.

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::config::Config;
use crate::edge::headers::{self, Credentials};
use crate::edge::refusal::Judged;
use crate::error::GatewayError;
use crate::identity::Identity;
use crate::io::{
    Body, Clock, Fields, FieldsOf, HttpClient, HttpError, InboundResponse, OutboundRequest,
    Platform, StreamOf,
};
use crate::proxy::assertion::{self, Assertion, Forwarded};
use crate::proxy::credentials;
use crate::proxy::log::RequestLog;
use crate::proxy::replay::Outgoing;
use crate::proxy::route::Route;
use crate::proxy::{Request, Routed};
use crate::token::{Obtained, Rejection, TokenCache};

/// What the origin request is made of, besides the caller's fields and body: worked out once,
/// used for the first send and for a replay.
pub struct Rewrite<'a> {
    config: &'a Config,
    request_id: &'a str,
    /// The route's origin (or `ORIGIN_URL`) + the normalized path + the query.
    url: String,
    /// `customer-auth`, for a verified caller.
    identity: Option<&'a Identity<'a>>,
    /// The gateway's identity headers for a verified caller: the claim headers that have a
    /// value, and the customer id.
    identity_headers: Vec<(HeaderName, HeaderValue)>,
    /// The gateway assertion's claims for this request (`GATEWAY_ASSERTION_HEADER`), signed
    /// anew for each send.
    assertion: Option<Assertion<'a>>,
}

impl<'a> Rewrite<'a> {
    pub fn new(
        at: &Routed<'a>,
        method: &Method,
        query: Option<&str>,
        identity: Option<&'a Identity<'a>>,
    ) -> Result<Self, GatewayError> {
        let config = at.config;
        let mut identity_headers = identity
            .map(|i| {
                at.route
                    .requirement
                    .policy
                    .claim_headers(&i.verified.claims)
            })
            .unwrap_or_default();
        let customer_id = identity.and_then(|i| i.customer_id.as_deref());
        if let (Some(ids), Some(id)) = (&config.customer_id, customer_id) {
            let id =
                HeaderValue::from_str(id).map_err(|_| GatewayError::Internal("customer id"))?;
            identity_headers.push((ids.header().clone(), id));
        }
        let url = origin_url(config, at.route, &at.path, query);
        let assertion = Assertion::prepare(
            config.assertion.as_ref(),
            &Forwarded {
                caller_origin: at.caller_origin,
                origin_base: at.route.origin.as_deref().unwrap_or(&config.origin),
                origin_url: &url,
                method,
                request_id: at.request_id,
                identity: identity.map(|i| (&i.verified.claims, customer_id)),
            },
        );
        Ok(Self {
            config,
            request_id: at.request_id,
            url,
            identity,
            identity_headers,
            assertion,
        })
    }

    /// The caller's fields as the origin gets them with `access_token` (and the assertion
    /// `signed` for this send, if any).
    fn headers<F: Fields>(
        &self,
        caller: &F,
        access_token: &str,
        signed: Option<(HeaderName, HeaderValue)>,
    ) -> Result<F, GatewayError> {
        let with_assertion;
        let identity = match signed {
            None => &self.identity_headers,
            Some(signed) => {
                with_assertion = [self.identity_headers.as_slice(), &[signed]].concat();
                &with_assertion
            }
        };
        headers::upstream_headers(
            caller,
            &Credentials {
                access_token,
                customer_auth: self.identity.map(|i| i.verified.customer_auth()),
                api_key: &self.config.api_key,
                request_id: self.request_id,
                identity_headers: &self.config.identity_headers,
                identity,
            },
        )
        .map_err(|e| GatewayError::Internal(e.0))
    }
}

type Answer<P> = InboundResponse<StreamOf<P>, FieldsOf<P>>;

/// The forward phase: the request sent with `obtained`'s token; after a refusal of that token,
/// a new one and one replay. The origin's answer, or why the gateway answers instead.
pub async fn phase<P: Platform>(
    tokens: &TokenCache,
    at: &Routed<'_>,
    svc: &P,
    req: Request<P>,
    rewrite: &Rewrite<'_>,
    obtained: Obtained,
    log: &mut RequestLog,
) -> Result<Answer<P>, GatewayError> {
    let config = at.config;
    log.upstream = Some(crate::proxy::log::upstream(&rewrite.url));
    // A small body is kept so that the request can be sent again after a 401.
    let mut body = Outgoing::prepare(svc, at.seen, req.body)
        .await
        .map_err(|_| GatewayError::RequestBody)?;
    let (method, caller) = (req.method, req.headers);

    // Forward: method and body as received; a body too big to keep streams through. Each
    // send signs its own assertion (one future type for the three sends: awaited inline at
    // each, the signing would be copied into this function's state machine three times).
    let origin_started = svc.clock().now_ms();
    let (method, caller) = (&method, &caller);
    let send = |access_token: &str, body: Body<StreamOf<P>>| {
        let access_token = access_token.to_owned();
        async move {
            let signed = assertion::sign_for(rewrite.assertion.as_ref(), svc).await?;
            svc.http()
                .forward(OutboundRequest {
                    method: method.clone(),
                    url: rewrite.url.clone(),
                    headers: rewrite.headers(caller, &access_token, signed)?,
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
    // origin's answer to the caller and goes back untouched (src/edge/refusal.rs has the table).
    let mode = config.origin_token_refusal;
    let judged = (response.status == 401).then(|| mode.judge(&challenges(&response.headers)));
    log.origin_401 = judged.map(Judged::as_str);
    let response = if judged == Some(Judged::Refusal) {
        async {
            let rejection = tokens.reject(&obtained.token, &config.token, svc).await;
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
            let fresh = credentials::token(tokens, config, svc, log).await?;
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
            let refused = |r: &Answer<P>| {
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
            if tokens.reject(&fresh.token, &config.token, svc).await == Rejection::Dropped {
                log.token_refresh = Some("after_401");
            }
            let last = credentials::token(tokens, config, svc, log).await?;
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
    response
}

/// The route's origin (or `ORIGIN_URL`) + the normalized path + the query, untouched: the
/// origin comes from configuration only, never from the request.
pub fn origin_url(config: &Config, route: &Route, path: &str, query: Option<&str>) -> String {
    let base = route.origin.as_deref().unwrap_or(&config.origin);
    match query {
        Some(q) => format!("{base}{path}?{q}"),
        None => format!("{base}{path}"),
    }
}

/// An origin 401's `WWW-Authenticate` fields: all that judging it reads.
fn challenges<F: Fields>(headers: &F) -> HeaderMap {
    headers.read(&[http::header::WWW_AUTHENTICATE])
}

pub fn origin_error(e: HttpError) -> GatewayError {
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
