//! The preflight phase: on a route that forwards them (`cors_preflight: "forward"`), a CORS
//! preflight goes to the origin without a customer identity, without any of the three
//! credentials and without `Cookie`; no token is fetched for it.

use http::{HeaderMap, Method};

use crate::edge::headers;
use crate::error::GatewayError;
use crate::io::{Body, Clock, HttpClient, OutboundRequest, Platform};
use crate::proxy::forward::{origin_error, origin_url};
use crate::proxy::log::RequestLog;
use crate::proxy::rate_limit::Limits;
use crate::proxy::{Request, Response, Routed, Step};

/// A forwarded preflight is answered by the origin here; any other request continues.
/// Counted under its address by an identity's limit (it has no identity). Reads the request
/// only: its body, if any, stays with it.
pub async fn phase<P: Platform>(
    at: &Routed<'_>,
    svc: &P,
    req: &Request<P>,
    limits: &Limits<'_>,
    log: &mut RequestLog,
) -> Result<Step<(), Response<P>>, GatewayError> {
    if !(at.route.requirement.policy.forward_preflight
        && is_preflight(&req.method, at.seen, &req.body))
    {
        return Ok(Step::Continue(()));
    }
    limits
        .by_identity(svc, at.route, None, &req.headers, log)
        .await?;
    log.cors_preflight = Some("forwarded");
    let config = at.config;
    let headers = headers::preflight_headers(&req.headers, at.request_id, &config.identity_headers)
        .map_err(|e| GatewayError::Internal(e.0))?;
    let origin_started = svc.clock().now_ms();
    let response = svc
        .http()
        .forward(OutboundRequest {
            method: req.method.clone(),
            url: origin_url(config, at.route, &at.path, req.query.as_deref()),
            headers,
            // A preflight has no body (`is_preflight`): at most an empty one.
            body: Body::Empty,
            timeout_ms: config.origin_timeout_ms,
        })
        .await;
    log.origin_ms = Some(svc.clock().now_ms().saturating_sub(origin_started));
    let response = response.map_err(origin_error)?;
    Ok(Step::Respond(crate::io::GatewayResponse {
        status: response.status,
        headers: headers::downstream_headers(&response.headers, at.request_id),
        body: response.body,
    }))
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
