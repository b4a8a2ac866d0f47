//! The gateway as an OAuth client (`TOKEN_CLIENT_AUTH`, RFC 6749 §2.3.1, RFC 7523 §2.2): how it
//! authenticates, and the one form-encoded POST that both its token request and its
//! introspection requests are (RFC 7662 §2.1 asks for the same client authentication as the
//! token endpoint's).

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Method};

use super::client_key::{ClientKey, ASSERTION_TYPE};
use super::TokenConfig;
use crate::identity::signing::Signer;
use crate::io::{Body, HttpClient, HttpError, InboundResponse, OutboundRequest};

/// How the client authenticates to the token endpoint (RFC 6749 §2.3.1, RFC 7523 §2.2).
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// `client_id` and `client_secret` in the form body.
    Post,
    /// HTTP Basic with the id and secret form-urlencoded first.
    Basic,
    /// `client_id`, `client_assertion_type` and a `client_assertion` signed with
    /// `CLIENT_PRIVATE_KEY`, fresh for each request; no secret is ever sent.
    PrivateKeyJwt(Box<ClientKey>),
}

/// Why a form could not be posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostError {
    Http(HttpError),
    /// `private_key_jwt`: the platform could not sign with `CLIENT_PRIVATE_KEY` (it refused
    /// the key): only an operator can fix it.
    ClientKey,
}

/// The headers (form body, JSON answer) and body of a form-encoded POST of `pairs` by the
/// gateway as its OAuth client, with the client's authentication added per `TOKEN_CLIENT_AUTH`.
/// The token request and the introspection request are both this. With `private_key_jwt`,
/// `assertion` is the signed client assertion (`post_form` signs it).
pub fn form(
    cfg: &TokenConfig,
    pairs: &[(&str, &str)],
    assertion: Option<&str>,
) -> (HeaderMap, Vec<u8>) {
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
    match &cfg.client_auth {
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
        ClientAuth::PrivateKeyJwt(_) => {
            // RFC 7523 §3.2 allows `client_id` beside the assertion, and some servers look the
            // client up by it.
            form.append_pair("client_id", &cfg.client_id);
            form.append_pair("client_assertion_type", ASSERTION_TYPE);
            form.append_pair("client_assertion", assertion.unwrap_or_default());
        }
    }
    (headers, form.finish().into_bytes())
}

/// POSTs `pairs` to `url` as the gateway's OAuth client (`form`), waiting `timeout_ms` for the
/// answer's head: the token request and every introspection request. With `private_key_jwt`
/// the assertion is signed first, by `signer`, at `now_ms`, for `url`.
pub async fn post_form<H: HttpClient, S: Signer>(
    http: &H,
    signer: &S,
    now_ms: u64,
    cfg: &TokenConfig,
    url: &str,
    pairs: &[(&str, &str)],
    timeout_ms: u64,
) -> Result<InboundResponse<H::Stream>, PostError> {
    let assertion = match &cfg.client_auth {
        ClientAuth::PrivateKeyJwt(key) => Some(
            key.assertion(signer, &cfg.client_id, url, now_ms / 1000)
                .await
                .map_err(|_| PostError::ClientKey)?,
        ),
        _ => None,
    };
    let (headers, body) = form(cfg, pairs, assertion.as_deref());
    http.send(OutboundRequest {
        method: Method::POST,
        url: url.to_string(),
        headers,
        body: Body::Bytes(body),
        timeout_ms,
    })
    .await
    .map_err(PostError::Http)
}
