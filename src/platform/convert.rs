//! The incoming Workers request as the core's request, and the core's response as a Workers
//! response.

use http::Method;
use wasm_bindgen::JsValue;
use web_sys::ReadableStream;

use crate::io::Body;
use crate::io::{GatewayRequest, GatewayResponse};

use super::fields::JsFields;

/// The incoming Workers request as the core's request. `None` for a method `http` cannot name.
pub fn to_gateway_request(
    raw: &web_sys::Request,
) -> Option<GatewayRequest<ReadableStream, JsFields>> {
    let method = Method::from_bytes(raw.method().as_bytes()).ok()?;
    let (path, query) = path_and_query(&raw.url())?;
    Some(GatewayRequest {
        method,
        path,
        query,
        headers: JsFields::new(raw.headers()),
        body: raw.body().map_or(Body::Empty, Body::Stream),
        tls_client_auth: super::cf::tls_client_auth(raw),
    })
}

/// The origin (`scheme://authority`) of the request's URL as workerd serialised it.
pub fn url_origin(url: &str) -> Option<&str> {
    let start = url.find("://")? + 3;
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    Some(&url[..end])
}

/// Path and query of the request's URL. workerd hands over a URL it has already parsed and
/// serialised (WHATWG): `scheme://authority/path?query#fragment`, where the authority holds no
/// `/`, `?` or `#` (userinfo percent-encodes them) and an `http(s)` path is never empty. So the
/// path is what runs from the first `/` after `://` to `?` or `#`, exactly what a URL parser
/// would give, without parsing the host again. Anything else goes through `http::Uri`.
///
/// The path is handed on as it is; the route phase normalizes it (`crate::edge::path`). What
/// workerd has already done to a raw request target (checked with raw request lines in
/// Miniflare, tests/e2e/paths.test.mjs): `\` becomes `/` and `.`, `..`, `%2e`, `.%2E`… dot
/// segments are resolved, as WHATWG parsing does for http(s); `//`, `..;`, `;x`, `%2F`, `%5c`,
/// `%61` and the hex case of escapes arrive as sent; `^` arrives as `%5E`; a raw byte that is
/// not UTF-8 arrives as `%EF%BF%BD` (U+FFFD); the fragment is dropped. So a raw backslash is
/// read here as a permissive origin reads it, and the normalizer's own refusal of `\` only
/// matters off workerd; everything else the normalizer refuses does reach it.
fn path_and_query(url: &str) -> Option<(String, Option<String>)> {
    let serialised = url
        .find("://")
        .map(|i| &url[i + 3..])
        .and_then(|rest| rest.find('/').map(|i| &rest[i..]));
    let Some(rest) = serialised else {
        let url = url.split_once('#').map_or(url, |(before, _)| before);
        let uri: http::Uri = url.parse().ok()?;
        return Some((uri.path().to_string(), uri.query().map(str::to_string)));
    };
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    Some(match rest.split_once('?') {
        Some((path, query)) => (path.to_string(), Some(query.to_string())),
        None => (rest.to_string(), None),
    })
}

/// The core's response as a Workers response; a streamed origin body passes through untouched.
pub fn to_worker_response(
    resp: GatewayResponse<ReadableStream, JsFields>,
) -> Result<web_sys::Response, JsValue> {
    let init = web_sys::ResponseInit::new();
    init.set_status(resp.status);
    init.set_headers(&resp.headers.headers);
    let raw = match resp.body {
        Body::Empty => web_sys::Response::new_with_opt_str_and_init(None, &init)?,
        Body::Bytes(mut bytes) => {
            web_sys::Response::new_with_opt_u8_array_and_init(Some(&mut bytes[..]), &init)?
        }
        Body::Stream(stream) => {
            web_sys::Response::new_with_opt_readable_stream_and_init(Some(&stream), &init)?
        }
    };
    Ok(raw)
}
