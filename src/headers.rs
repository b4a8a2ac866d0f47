//! Which headers cross the gateway: hop-by-hop rules, caller-controlled credentials, and the
//! three headers the origin expects.

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// RFC 9110 §7.6.1 hop-by-hop fields, plus `Proxy-Connection` and `Proxy-Authorization`, which
/// are meant for the hop that receives them and must not reach the origin.
/// Parsed once, at compile time: removing by `&str` would parse each name on every request.
const HOP_BY_HOP: [HeaderName; 8] = [
    http::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHORIZATION,
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
];

/// Credentials only the gateway may set: a caller who could send them would choose which
/// identity the origin sees.
const GATEWAY_CONTROLLED: [HeaderName; 3] = [
    http::header::AUTHORIZATION,
    HeaderName::from_static("customer-auth"),
    HeaderName::from_static("api-key"),
];

pub const REQUEST_ID: &str = "x-request-id";

/// Removes hop-by-hop fields, including every field that `Connection` names (RFC 9110 §7.6.1:
/// a sender may mark any field as hop-by-hop that way, e.g. `Connection: x-secret`).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// What `customer-auth` carries to the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomerAuth<'a> {
    /// `JWT <the validated token, byte for byte>`.
    Jwt(&'a str),
    /// A whole value, as `opaque` routes build it from the caller's identifier.
    Value(&'a str),
}

/// What the gateway attaches to the origin request.
pub struct Credentials<'a> {
    pub access_token: &'a str,
    /// `None` on public routes.
    pub customer_auth: Option<CustomerAuth<'a>>,
    pub api_key: &'a str,
    pub request_id: &'a str,
    /// `CUSTOMER_ID_HEADER`, when set: every caller spelling of it is removed, and the
    /// verified request's id (`Some`) is set.
    pub customer_id: Option<(&'a HeaderName, Option<&'a str>)>,
}

/// Why credentials could not be put into headers: a value with bytes HTTP forbids (CR, LF, NUL).
/// Names the header only; the value may be a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidHeaderValue(pub &'static str);

/// The caller's end-to-end headers, minus what the caller must not control, plus the gateway's
/// credentials. `host` goes too: the origin host comes from configuration, never the request.
pub fn upstream_headers(
    caller: &HeaderMap,
    creds: &Credentials<'_>,
) -> Result<HeaderMap, InvalidHeaderValue> {
    let mut headers = caller.clone();
    strip_hop_by_hop(&mut headers);
    for name in &GATEWAY_CONTROLLED {
        headers.remove(name);
    }
    headers.remove(http::header::HOST);
    set(
        &mut headers,
        "authorization",
        &format!("Bearer {}", creds.access_token),
    )?;
    match creds.customer_auth {
        Some(CustomerAuth::Jwt(jwt)) => set(&mut headers, "customer-auth", &format!("JWT {jwt}"))?,
        Some(CustomerAuth::Value(value)) => set(&mut headers, "customer-auth", value)?,
        None => {}
    }
    if let Some((name, id)) = creds.customer_id {
        crate::customer_id::remove_spellings(&mut headers, name);
        if let Some(id) = id {
            let value = HeaderValue::from_str(id).map_err(|_| InvalidHeaderValue("customer id"))?;
            headers.insert(name.clone(), value);
        }
    }
    set(&mut headers, "api-key", creds.api_key)?;
    set(&mut headers, REQUEST_ID, creds.request_id)?;
    Ok(headers)
}

/// The origin's headers as the caller gets them: hop-by-hop fields removed, request id added.
pub fn downstream_headers(origin: &HeaderMap, request_id: &str) -> HeaderMap {
    let mut headers = origin.clone();
    strip_hop_by_hop(&mut headers);
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID, value);
    }
    headers
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) -> Result<(), InvalidHeaderValue> {
    let mut value = HeaderValue::from_str(value).map_err(|_| InvalidHeaderValue(name))?;
    // Keeps the credential out of HTTP/2 header-compression tables on the way to the origin.
    value.set_sensitive(name != REQUEST_ID);
    headers.insert(HeaderName::from_static(name), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn creds<'a>(jwt: Option<&'a str>) -> Credentials<'a> {
        Credentials {
            access_token: "at",
            customer_auth: jwt.map(CustomerAuth::Jwt),
            api_key: "key",
            request_id: "rid",
            customer_id: None,
        }
    }

    #[test]
    fn fields_named_by_connection_are_removed() {
        let caller = map(&[
            ("connection", "close, X-Secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic Zm9v"),
            ("x-kept", "yes"),
        ]);
        let out = upstream_headers(&caller, &creds(Some("j"))).unwrap();
        for gone in [
            "connection",
            "x-secret",
            "keep-alive",
            "te",
            "upgrade",
            "proxy-authorization",
        ] {
            assert!(!out.contains_key(gone), "{gone} reached the origin");
        }
        assert_eq!(out["x-kept"], "yes");
    }

    #[test]
    fn caller_credentials_are_replaced_not_merged() {
        let caller = map(&[
            ("authorization", "Bearer caller"),
            ("api-key", "caller-key"),
            ("customer-auth", "JWT caller"),
            ("host", "evil.example"),
        ]);
        let out = upstream_headers(&caller, &creds(Some("j.w.t"))).unwrap();
        assert_eq!(out.get_all("authorization").iter().count(), 1);
        assert_eq!(out["authorization"], "Bearer at");
        assert_eq!(out["api-key"], "key");
        assert_eq!(out["customer-auth"], "JWT j.w.t");
        assert!(!out.contains_key("host"));
    }

    #[test]
    fn public_routes_get_no_customer_auth_even_if_the_caller_sent_one() {
        let caller = map(&[("customer-auth", "JWT forged")]);
        let out = upstream_headers(&caller, &creds(None)).unwrap();
        assert!(!out.contains_key("customer-auth"));
        assert_eq!(out["authorization"], "Bearer at");
    }

    #[test]
    fn the_customer_id_replaces_every_caller_spelling() {
        let name = HeaderName::from_static("x-customer-id");
        let caller = map(&[("x-customer-id", "forged"), ("x_customer_id", "forged")]);
        let verified = Credentials {
            customer_id: Some((&name, Some("id-1"))),
            ..creds(Some("j"))
        };
        let out = upstream_headers(&caller, &verified).unwrap();
        assert_eq!(out.get_all("x-customer-id").iter().count(), 1);
        assert_eq!(out["x-customer-id"], "id-1");
        assert!(!out.contains_key("x_customer_id"));
        let public = Credentials {
            customer_id: Some((&name, None)),
            ..creds(None)
        };
        let out = upstream_headers(&caller, &public).unwrap();
        assert!(!out.contains_key("x-customer-id") && !out.contains_key("x_customer_id"));
    }

    #[test]
    fn an_opaque_customer_auth_goes_as_given() {
        let c = Credentials {
            customer_auth: Some(CustomerAuth::Value("Session s-1")),
            ..creds(None)
        };
        let out = upstream_headers(&map(&[("customer-auth", "Session s-1")]), &c).unwrap();
        assert_eq!(out["customer-auth"], "Session s-1");
    }

    #[test]
    fn an_api_key_with_a_newline_is_refused_by_name() {
        let c = Credentials {
            api_key: "a\r\nb",
            ..creds(None)
        };
        assert_eq!(
            upstream_headers(&HeaderMap::new(), &c),
            Err(InvalidHeaderValue("api-key"))
        );
    }

    #[test]
    fn responses_lose_hop_by_hop_and_gain_the_request_id() {
        let origin = map(&[("transfer-encoding", "chunked"), ("x-origin", "1")]);
        let out = downstream_headers(&origin, "rid-1");
        assert!(!out.contains_key("transfer-encoding"));
        assert_eq!(out["x-origin"], "1");
        assert_eq!(out[REQUEST_ID], "rid-1");
    }
}
