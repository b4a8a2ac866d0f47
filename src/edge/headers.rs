//! Which headers cross the gateway: hop-by-hop rules, caller-controlled credentials and
//! identity headers, and the headers the origin expects. The rules are applied to the
//! platform's own fields (`io::Fields`): a copy of what arrived, with only the names below
//! removed or set, so every other field crosses as the platform holds it, byte for byte, and is
//! never read.
//!
//! Every edit removes first and sets after (`io::Edit`): whatever a caller's `Connection` lists
//! is removed before the gateway's own fields are set, so it can never take one of them away.

use std::sync::LazyLock;

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::io::{Edit, Fields};

/// RFC 9110 §7.6.1 hop-by-hop fields, plus `Proxy-Connection` and `Proxy-Authorization`, which
/// are meant for the hop that receives them and must not reach the origin.
/// Parsed once, at compile time: removing by `&str` would parse each name on every request.
static HOP_BY_HOP: [HeaderName; 8] = [
    http::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHORIZATION,
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
];

pub const REQUEST_ID: &str = "x-request-id";
const REQUEST_ID_NAME: HeaderName = HeaderName::from_static(REQUEST_ID);
static HOST: HeaderName = http::header::HOST;
const CUSTOMER_AUTH: HeaderName = HeaderName::from_static("customer-auth");

/// The caller's fields the core reads on every request: the JWT's and session's sources, the
/// caller's request id, and `Connection` (the fields it names are removed). Only what a request
/// may need is read: `BODY_READS` when it has a body, `PREFLIGHT_READS` for an `OPTIONS`, and
/// `cf-connecting-ip` on a route limited by `ip`. Each name read is a call into the platform's
/// object (workerd's `Headers`): the set a plain `GET` needs is kept small. Nothing else of the
/// caller's is looked at.
pub const CALLER_READS: [HeaderName; 6] = [
    HeaderName::from_static("customer-auth"),
    http::header::AUTHORIZATION,
    // A DPoP proof (`identity::sender`).
    HeaderName::from_static("dpop"),
    http::header::COOKIE,
    REQUEST_ID_NAME,
    http::header::CONNECTION,
];

/// Read too when the request has a body: its declared length (for the replay).
pub const BODY_READS: [HeaderName; 1] = [http::header::CONTENT_LENGTH];

/// Read too for an `OPTIONS`: the two fields that make it a CORS preflight, and the two that
/// say it has a body (which makes it an ordinary request).
pub const PREFLIGHT_READS: [HeaderName; 4] = [
    http::header::ORIGIN,
    http::header::ACCESS_CONTROL_REQUEST_METHOD,
    http::header::CONTENT_LENGTH,
    http::header::TRANSFER_ENCODING,
];

/// The caller's address as Cloudflare's edge saw it (for a route limited by `ip`).
pub const CONNECTING_IP: HeaderName = HeaderName::from_static("cf-connecting-ip");

/// Caller-sent fields the origin never sees, in every spelling with `_` for any `-`
/// (`spellings`):
///
/// - the credentials only the gateway may set: a caller who could send them would choose
///   which identity the origin sees. CGI, WSGI, PHP and Rack servers turn both `api-key` and
///   `api_key` into `HTTP_API_KEY`, so an underscore spelling is the same header to them;
/// - the method-override headers, which frameworks honour to turn a `POST` into a `DELETE`
///   and so undo the route's `methods`;
/// - `x-request-id`, which the gateway always sets itself: an `x_request_id` next to it would
///   give a CGI-style origin a second id to log, one the caller chose and the gateway's log
///   line does not have. Only the real `x-request-id` is read as the caller's id.
///
/// - `DPoP`: a proof is for the gateway, bound to the URL the caller reached and spent there
///   (its `jti` is remembered); the origin has no use for it, and must never be handed one it
///   could take as its own.
///
/// A name added here is removed in all its spellings. Platforms hold names lower case (workerd
/// lowercases them, `HeaderName` too), so the lower-case spellings are all there are.
const REFUSED: [&str; 8] = [
    "authorization",
    "dpop",
    "customer-auth",
    "api-key",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    REQUEST_ID,
];

/// Every spelling of the lower-case `name` with each `-` either `-` or `_`: 2^k names for k
/// dashes, so for short names only. The removals are this fixed list (26 names for `REFUSED`)
/// rather than a look at every field the caller sent.
pub fn spellings(name: &str) -> Vec<HeaderName> {
    let dashes: Vec<usize> = (0..name.len())
        .filter(|&i| name.as_bytes()[i] == b'-')
        .collect();
    (0..1u32 << dashes.len())
        .filter_map(|mask| {
            let mut bytes = name.as_bytes().to_vec();
            for (bit, &i) in dashes.iter().enumerate() {
                if mask & (1 << bit) != 0 {
                    bytes[i] = b'_';
                }
            }
            HeaderName::from_bytes(&bytes).ok()
        })
        .collect()
}

/// `REFUSED` in every spelling, worked out once per isolate.
fn refused_spellings() -> &'static [HeaderName] {
    static SPELLINGS: LazyLock<Vec<HeaderName>> =
        LazyLock::new(|| REFUSED.iter().flat_map(|name| spellings(name)).collect());
    &SPELLINGS
}

/// Hop-by-hop fields: the fixed ones and every field that `Connection` names (RFC 9110 §7.6.1:
/// a sender may mark any field as hop-by-hop that way, e.g. `Connection: x-secret`).
fn hop_by_hop(listed: &[HeaderName]) -> impl Iterator<Item = &HeaderName> {
    listed.iter().chain(&HOP_BY_HOP)
}

/// The header names that carry an identity to the origin anywhere in the deployment: every
/// route's `claims_to_headers` and `CUSTOMER_ID_HEADER`, each in every spelling with `_` for any
/// `-`. Worked out once per isolate, and removed from every request on every route (public
/// routes and forwarded preflights included): an origin whose middleware trusts `x-user-email`
/// app-wide must never get a caller's copy, whichever route the request took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityHeaders {
    spellings: Vec<HeaderName>,
}

impl IdentityHeaders {
    /// Every spelling of each of `names` (compared with `_` read as `-`), once each.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a HeaderName>) -> Self {
        let mut spellings: Vec<HeaderName> = names
            .into_iter()
            .flat_map(|name| spellings(&name.as_str().replace('_', "-")))
            .collect();
        spellings.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        spellings.dedup();
        Self { spellings }
    }

    /// Every name a caller may not send.
    pub fn spellings(&self) -> &[HeaderName] {
        &self.spellings
    }
}

/// The fields `Connection` names. Allocates nothing when there is no `Connection` header, the
/// usual case for HTTP/2 callers and origins.
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|name| HeaderName::from_bytes(name.trim_ascii()).ok())
        .collect()
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
    /// The deployment's identity headers: every caller spelling removed, whatever the route.
    pub identity_headers: &'a IdentityHeaders,
    /// The gateway's values for some of them, for a verified caller: the customer id and the
    /// route's claim headers that have a value. Set after the removals.
    pub identity: &'a [(HeaderName, HeaderValue)],
}

/// Why credentials could not be put into headers: a value with bytes HTTP forbids (CR, LF, NUL).
/// Names the header only; the value may be a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidHeaderValue(pub &'static str);

/// A copy of the caller's fields minus what the caller must not control, plus the gateway's
/// credentials. `host` goes too: the origin host comes from configuration, never the request.
/// Every other field is left as the platform holds it (a Latin-1 value stays Latin-1).
pub fn upstream_headers<F: Fields>(
    caller: &F,
    creds: &Credentials<'_>,
) -> Result<F, InvalidHeaderValue> {
    let seen = caller.read(&[CUSTOMER_AUTH, http::header::CONNECTION]);
    let listed = connection_listed(&seen);
    // Checked before anything is copied; set after the removals, so a caller's copy of any of
    // these (in any spelling, or listed in `Connection`) never survives next to the gateway's.
    let mut set = Vec::with_capacity(4 + creds.identity.len());
    set.push(value(
        "authorization",
        &format!("Bearer {}", creds.access_token),
    )?);
    // The caller's own `customer-auth: JWT <token>`, when it is the one field with exactly the
    // value the gateway would set, is left in place rather than removed and set again: the
    // origin gets the same bytes, and the token (often a kilobyte) is not copied through the
    // platform. Never when `Connection` lists `customer-auth`: the removal of listed fields
    // would then take it away, and only a field the gateway sets survives `Connection`.
    let keep_callers = match creds.customer_auth {
        Some(CustomerAuth::Jwt(jwt)) => {
            is_only_jwt_value(&seen, jwt) && !listed.contains(&CUSTOMER_AUTH)
        }
        _ => false,
    };
    match creds.customer_auth {
        Some(CustomerAuth::Jwt(_)) if keep_callers => {}
        Some(CustomerAuth::Jwt(jwt)) => set.push(value("customer-auth", &format!("JWT {jwt}"))?),
        Some(CustomerAuth::Value(v)) => set.push(value("customer-auth", v)?),
        None => {}
    }
    set.extend(creds.identity.iter().cloned());
    set.push(value("api-key", creds.api_key)?);
    set.push(value(REQUEST_ID, creds.request_id)?);

    let mut remove: Vec<&HeaderName> = hop_by_hop(&listed).collect();
    remove.push(&HOST);
    remove.extend(
        refused_spellings()
            .iter()
            .filter(|name| !(keep_callers && **name == CUSTOMER_AUTH)),
    );
    remove.extend(creds.identity_headers.spellings());
    let mut headers = caller.clone();
    headers.apply(&Edit { remove, set });
    Ok(headers)
}

/// Whether the caller sent exactly one `customer-auth`, and it is exactly `JWT <jwt>`.
fn is_only_jwt_value(seen: &HeaderMap, jwt: &str) -> bool {
    let mut values = seen.get_all(CUSTOMER_AUTH).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => {
            let bytes = v.as_bytes();
            bytes.len() == 4 + jwt.len()
                && bytes.starts_with(b"JWT ")
                && &bytes[4..] == jwt.as_bytes()
        }
        _ => false,
    }
}

/// The headers of a forwarded CORS preflight (`cors_preflight: "forward"`): the caller's
/// fields minus everything `upstream_headers` removes, minus `Cookie`, and none of the three
/// credentials: a preflight carries no identity (browsers send none with it), so the origin
/// must see neither the caller's nor the gateway's.
pub fn preflight_headers<F: Fields>(
    caller: &F,
    request_id: &str,
    identity_headers: &IdentityHeaders,
) -> Result<F, InvalidHeaderValue> {
    let listed = connection_listed(&caller.read(&[http::header::CONNECTION]));
    let mut remove: Vec<&HeaderName> = hop_by_hop(&listed).collect();
    remove.push(&HOST);
    remove.push(&http::header::COOKIE);
    remove.extend(refused_spellings());
    remove.extend(identity_headers.spellings());
    let set = vec![value(REQUEST_ID, request_id)?];
    let mut headers = caller.clone();
    headers.apply(&Edit { remove, set });
    Ok(headers)
}

/// The origin's fields as the caller gets them: hop-by-hop fields removed, request id set.
pub fn downstream_headers<F: Fields>(origin: &F, request_id: &str) -> F {
    let listed = connection_listed(&origin.read(&[http::header::CONNECTION]));
    let mut edit = Edit {
        remove: hop_by_hop(&listed).collect(),
        set: Vec::with_capacity(1),
    };
    if let Ok(value) = HeaderValue::from_str(request_id) {
        edit.set.push((REQUEST_ID_NAME, value));
    }
    let mut headers = origin.clone();
    headers.apply(&edit);
    headers
}

fn value(name: &'static str, value: &str) -> Result<(HeaderName, HeaderValue), InvalidHeaderValue> {
    let mut value = HeaderValue::from_str(value).map_err(|_| InvalidHeaderValue(name))?;
    // Keeps the credential out of HTTP/2 header-compression tables on the way to the origin.
    value.set_sensitive(name != REQUEST_ID);
    Ok((HeaderName::from_static(name), value))
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

    static NO_IDENTITY_HEADERS: IdentityHeaders = IdentityHeaders {
        spellings: Vec::new(),
    };

    fn creds<'a>(jwt: Option<&'a str>) -> Credentials<'a> {
        Credentials {
            access_token: "at",
            customer_auth: jwt.map(CustomerAuth::Jwt),
            api_key: "key",
            request_id: "rid",
            identity_headers: &NO_IDENTITY_HEADERS,
            identity: &[],
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
    fn the_callers_own_customer_auth_is_kept_only_when_it_is_exactly_the_verified_jwt() {
        // The same value: left in place, once; the underscore alias still goes.
        let caller = map(&[
            ("customer-auth", "JWT j.w.t"),
            ("customer_auth", "JWT forged"),
        ]);
        let out = upstream_headers(&caller, &creds(Some("j.w.t"))).unwrap();
        assert_eq!(out.get_all("customer-auth").iter().count(), 1);
        assert_eq!(out["customer-auth"], "JWT j.w.t");
        assert!(!out.contains_key("customer_auth"));
        // Anything else, however close, is replaced.
        for sent in [
            "JWT j.w.tx",
            "jwt j.w.t",
            "JWT  j.w.t",
            "Bearer j.w.t",
            "JWT j.w",
        ] {
            let caller = map(&[("customer-auth", sent)]);
            let out = upstream_headers(&caller, &creds(Some("j.w.t"))).unwrap();
            assert_eq!(out.get_all("customer-auth").iter().count(), 1, "{sent}");
            assert_eq!(out["customer-auth"], "JWT j.w.t", "{sent}");
        }
        // A public route sends none, whatever the caller sent.
        let caller = map(&[("customer-auth", "JWT j.w.t")]);
        let out = upstream_headers(&caller, &creds(None)).unwrap();
        assert!(!out.contains_key("customer-auth"));
    }

    /// Every spelling a CGI/WSGI-style origin would read as a credential, an override or the
    /// request id; `HeaderName` lower-cases what the caller sent, so `API_KEY` is `api_key`.
    const ALIASES: [&str; 24] = [
        "Authorization",
        "AUTHORIZATION",
        "customer_auth",
        "Customer_Auth",
        "CUSTOMER_AUTH",
        "CUSTOMER-AUTH",
        "api_key",
        "API_KEY",
        "Api_Key",
        "API-KEY",
        "X-HTTP-Method-Override",
        "x_http_method_override",
        "X_HTTP-Method_Override",
        "X-HTTP-METHOD-OVERRIDE",
        "X-HTTP-Method",
        "x_http_method",
        "X_HTTP_METHOD",
        "X-Method-Override",
        "x_method_override",
        "X_METHOD-OVERRIDE",
        "x_request_id",
        "X_Request_Id",
        "X-Request-ID",
        "x-request_id",
    ];

    #[test]
    fn every_alias_and_method_override_is_removed() {
        for alias in ALIASES {
            let caller = map(&[(alias, "forged"), ("x-kept", "yes")]);
            let out = upstream_headers(&caller, &creds(None)).unwrap();
            for (name, value) in &out {
                assert_ne!(value, "forged", "{alias} reached the origin as {name}");
            }
            assert_eq!(out["x-kept"], "yes");
            assert_eq!(out["authorization"], "Bearer at", "{alias}");
            assert_eq!(out["api-key"], "key", "{alias}");
            assert_eq!(out[REQUEST_ID], "rid", "{alias}");
            assert_eq!(out.len(), 4, "{alias}: {out:?}");
        }
    }

    #[test]
    fn names_that_only_resemble_a_refused_one_pass() {
        for name in [
            "x-api-key",
            "apikey",
            "api-keys",
            "api__key",
            "customer-authx",
            "customerauth",
            "authorization2",
            "x-http-method-overrides",
            "x-method",
            "x-request-ids",
            "x-correlation-id",
        ] {
            let caller = map(&[(name, "kept")]);
            let out = upstream_headers(&caller, &creds(None)).unwrap();
            assert_eq!(out[name.to_ascii_lowercase().as_str()], "kept", "{name}");
        }
    }

    #[test]
    fn values_pass_as_the_bytes_they_are() {
        let mut caller = HeaderMap::new();
        let latin1 = HeaderValue::from_bytes(b"attachment; filename=\"r\xe9sum\xe9.pdf\"").unwrap();
        caller.append("x-file", latin1.clone());
        let out = upstream_headers(&caller, &creds(None)).unwrap();
        assert_eq!(out["x-file"].as_bytes(), latin1.as_bytes());
        let out = downstream_headers(&caller, "rid");
        assert_eq!(out["x-file"].as_bytes(), latin1.as_bytes());
    }

    #[test]
    fn public_routes_get_no_customer_auth_even_if_the_caller_sent_one() {
        let caller = map(&[("customer-auth", "JWT forged")]);
        let out = upstream_headers(&caller, &creds(None)).unwrap();
        assert!(!out.contains_key("customer-auth"));
        assert_eq!(out["authorization"], "Bearer at");
    }

    fn identity_headers(names: &[&'static str]) -> IdentityHeaders {
        let names: Vec<HeaderName> = names.iter().map(|n| HeaderName::from_static(n)).collect();
        IdentityHeaders::new(&names)
    }

    #[test]
    fn identity_headers_are_every_spelling_of_every_name_once() {
        let ids = identity_headers(&["x-customer-id", "x_user-email", "x-customer_id"]);
        let names: Vec<&str> = ids.spellings().iter().map(HeaderName::as_str).collect();
        assert_eq!(
            names,
            [
                "x-customer-id",
                "x-customer_id",
                "x-user-email",
                "x-user_email",
                "x_customer-id",
                "x_customer_id",
                "x_user-email",
                "x_user_email",
            ]
        );
    }

    #[test]
    fn identity_headers_are_removed_and_only_the_gateways_values_set() {
        let ids = identity_headers(&["x-customer-id", "x-user-email"]);
        let caller = map(&[
            ("x-customer-id", "forged"),
            ("x_customer_id", "forged"),
            ("X_User-Email", "forged"),
        ]);
        let set = [(
            HeaderName::from_static("x-customer-id"),
            HeaderValue::from_static("id-1"),
        )];
        let verified = Credentials {
            identity_headers: &ids,
            identity: &set,
            ..creds(Some("j"))
        };
        let out = upstream_headers(&caller, &verified).unwrap();
        assert_eq!(out.get_all("x-customer-id").iter().count(), 1);
        assert_eq!(out["x-customer-id"], "id-1");
        assert!(!out.contains_key("x_customer_id") && !out.contains_key("x_user-email"));
        // Without a verified caller (a public route), none of them goes.
        let public = Credentials {
            identity_headers: &ids,
            ..creds(None)
        };
        let out = upstream_headers(&caller, &public).unwrap();
        assert!(out.iter().all(|(_, v)| v != "forged"), "{out:?}");
        let out = preflight_headers(&caller, "rid", &ids).unwrap();
        assert!(out.iter().all(|(_, v)| v != "forged"), "{out:?}");
    }

    #[test]
    fn connection_never_removes_what_the_gateway_sets() {
        let ids = identity_headers(&["x-customer-id"]);
        let set = [(
            HeaderName::from_static("x-customer-id"),
            HeaderValue::from_static("id-1"),
        )];
        for connection in [
            "customer-auth",
            "Customer-Auth",
            "keep-alive, CUSTOMER-AUTH",
            "authorization, api-key, x-request-id, x-customer-id",
            ",customer-auth,",
        ] {
            for sent in ["JWT j.w.t", "JWT other"] {
                let caller = map(&[("customer-auth", sent), ("connection", connection)]);
                let c = Credentials {
                    identity_headers: &ids,
                    identity: &set,
                    ..creds(Some("j.w.t"))
                };
                let out = upstream_headers(&caller, &c).unwrap();
                assert_eq!(out["customer-auth"], "JWT j.w.t", "{connection} {sent}");
                assert_eq!(out["authorization"], "Bearer at", "{connection}");
                assert_eq!(out["api-key"], "key", "{connection}");
                assert_eq!(out[REQUEST_ID], "rid", "{connection}");
                assert_eq!(out["x-customer-id"], "id-1", "{connection}");
            }
        }
        // Two `customer-auth` fields, the first the verified one: both go, the gateway's is set.
        let mut caller = map(&[("customer-auth", "JWT j.w.t")]);
        caller.append("customer-auth", HeaderValue::from_static("JWT other"));
        let out = upstream_headers(&caller, &creds(Some("j.w.t"))).unwrap();
        assert_eq!(out.get_all("customer-auth").iter().count(), 1);
        assert_eq!(out["customer-auth"], "JWT j.w.t");
    }

    #[test]
    fn a_forwarded_preflight_carries_no_cookie_and_no_credential() {
        let caller = map(&[
            ("cookie", "sid=1"),
            ("authorization", "Bearer caller"),
            ("customer-auth", "JWT caller"),
            ("api_key", "caller"),
            ("origin", "https://app.example"),
        ]);
        let out = preflight_headers(&caller, "rid", &NO_IDENTITY_HEADERS).unwrap();
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out["origin"], "https://app.example");
        assert_eq!(out[REQUEST_ID], "rid");
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

    #[test]
    fn the_removal_list_is_every_spelling_of_every_refused_name() {
        let list = refused_spellings();
        assert_eq!(list.len(), 26);
        for alias in ALIASES {
            let name = HeaderName::from_bytes(alias.as_bytes()).unwrap();
            assert!(list.contains(&name), "{alias}");
        }
        assert!(list.contains(&HeaderName::from_static("x_http-method_override")));
        assert!(list.contains(&HeaderName::from_static("x-http_method-override")));
        assert_eq!(
            spellings("x-a-b"),
            ["x-a-b", "x_a-b", "x-a_b", "x_a_b"].map(HeaderName::from_static)
        );
    }
}
