//! The gateway as an OAuth client (`TOKEN_CLIENT_AUTH`, RFC 6749 §2.3.1): how it authenticates,
//! and the one form-encoded POST that both its token request and its introspection requests
//! are (RFC 7662 §2.1 asks for the same client authentication as the token endpoint's).

use std::future::Future;

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Method};

use super::TokenConfig;
use crate::io::{Body, HttpClient, HttpError, InboundResponse, OutboundRequest};

/// How the client authenticates to the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_id` and `client_secret` in the form body.
    Post,
    /// HTTP Basic with the id and secret form-urlencoded first.
    Basic,
}

/// The headers (form body, JSON answer) and body of a form-encoded POST of `pairs` by the
/// gateway as its OAuth client, with the client's authentication added per `TOKEN_CLIENT_AUTH`.
/// The token request and the introspection request are both this.
pub fn form(cfg: &TokenConfig, pairs: &[(&str, &str)]) -> (HeaderMap, Vec<u8>) {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    headers.insert(
        http::header::ACCEPT,
        HeaderValue::from_static("application/json"),
    );
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.extend_pairs(pairs);
    authenticate_client(cfg, &mut headers, &mut form);
    (headers, form.finish().into_bytes())
}

/// Adds the client's authentication per `TOKEN_CLIENT_AUTH` to a form-encoded request: the
/// token request, and the introspection request (RFC 7662 §2.1 asks for the same client
/// authentication as the token endpoint's).
fn authenticate_client(
    cfg: &TokenConfig,
    headers: &mut HeaderMap,
    form: &mut form_urlencoded::Serializer<'_, String>,
) {
    match cfg.client_auth {
        ClientAuth::Post => {
            form.append_pair("client_id", &cfg.client_id);
            form.append_pair("client_secret", &cfg.client_secret);
        }
        ClientAuth::Basic => {
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", enc(&cfg.client_id), enc(&cfg.client_secret));
            let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
            if let Ok(mut value) = HeaderValue::from_str(&format!("Basic {b64}")) {
                value.set_sensitive(true);
                headers.insert(http::header::AUTHORIZATION, value);
            }
        }
    }
}

/// POSTs `pairs` to `url` as the gateway's OAuth client (`form`), waiting `timeout_ms` for the
/// answer's head: the token request and every introspection request. Generic over the HTTP
/// client only, so that every platform handle shares one copy.
pub fn post_form<'h, H: HttpClient>(
    http: &'h H,
    cfg: &TokenConfig,
    url: &str,
    pairs: &[(&str, &str)],
    timeout_ms: u64,
) -> impl Future<Output = Result<InboundResponse<H::Stream>, HttpError>> + 'h {
    // The form is built now; the future only sends it (no state machine of its own).
    let (headers, body) = form(cfg, pairs);
    http.send(OutboundRequest {
        method: Method::POST,
        url: url.to_string(),
        headers,
        body: Body::Bytes(body),
        timeout_ms,
    })
}
