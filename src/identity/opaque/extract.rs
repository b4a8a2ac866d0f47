//! Finding the opaque customer identifier: `customer-auth`, then `Authorization`, then the
//! session cookie; and what `customer-auth` carries to the origin for each. That no other
//! source names someone else is `crate::identity::identifiers`' check, made first.

use http::header::AUTHORIZATION;
use http::HeaderMap;

use super::OpaqueError;

const CUSTOMER_AUTH: &str = "customer-auth";

/// The longest identifier accepted: session ids are tens of bytes; this bounds the hashing
/// and the introspection request an unauthenticated caller can cause.
pub const MAX_IDENTIFIER_BYTES: usize = 4 * 1024;

/// Where the identifier was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentifierSource {
    CustomerAuth,
    Bearer,
    Cookie,
}

impl IdentifierSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CustomerAuth => "customer-auth",
            Self::Bearer => "authorization",
            Self::Cookie => "cookie",
        }
    }
}

/// An identifier as the caller sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identifier<'h> {
    /// What is introspected.
    pub id: &'h str,
    pub source: IdentifierSource,
    /// The `customer-auth` value the origin gets: the caller's own `customer-auth` value,
    /// unchanged; `Bearer <id>` for an identifier sent as `Authorization: Bearer` (the
    /// gateway's access token takes `Authorization`, so the caller's value moves here); and
    /// `Cookie <id>` for one found in the cookie (which also reaches the origin in `Cookie`,
    /// as sent).
    pub customer_auth: String,
}

/// The identifier from the first source present, in the contract's order:
///
/// 1. `customer-auth: <scheme> <id>`, any scheme. Once this header is present it is the
///    source: no identifier, two of them, or a second `customer-auth` is `MalformedHeader`.
/// 2. `Authorization: Bearer <id>`. Another scheme is not a source (the search goes on);
///    `Bearer` alone, or two `Authorization` headers, is `MalformedHeader`.
/// 3. `cookie`: the `SESSION_COOKIE` cookie's raw value, as `identifiers::one_per_request`
///    found it (once, across every `Cookie` header, names folded), surrounding double quotes
///    removed. An empty value counts as absent (a logged-out session).
///
/// `Ok(None)` when no source holds an identifier.
pub fn extract<'h>(
    headers: &'h HeaderMap,
    cookie: Option<&'h [u8]>,
) -> Result<Option<Identifier<'h>>, OpaqueError> {
    let found = if let Some(value) = single(headers, CUSTOMER_AUTH)? {
        let (_, id) = scheme_and_id(value).ok_or(OpaqueError::MalformedHeader)?;
        Some(Identifier {
            id,
            source: IdentifierSource::CustomerAuth,
            customer_auth: value.to_string(),
        })
    } else {
        let bearer = single(headers, AUTHORIZATION.as_str())?.filter(|v| {
            let scheme = v.trim().split([' ', '\t']).next().unwrap_or("");
            scheme.eq_ignore_ascii_case("Bearer")
        });
        match bearer {
            Some(value) => {
                let (_, id) = scheme_and_id(value).ok_or(OpaqueError::MalformedHeader)?;
                Some(Identifier {
                    id,
                    source: IdentifierSource::Bearer,
                    customer_auth: format!("Bearer {id}"),
                })
            }
            None => cookie_value(cookie)?.map(|id| Identifier {
                id,
                source: IdentifierSource::Cookie,
                customer_auth: format!("Cookie {id}"),
            }),
        }
    };
    match found {
        Some(found) if found.id.len() > MAX_IDENTIFIER_BYTES => Err(OpaqueError::TooLarge),
        other => Ok(other),
    }
}

/// The value of a header that must appear at most once, as visible ASCII.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, OpaqueError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(OpaqueError::MalformedHeader);
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| OpaqueError::MalformedHeader)
}

/// `<scheme> <id>`: a non-empty scheme, then one non-empty run without whitespace.
fn scheme_and_id(value: &str) -> Option<(&str, &str)> {
    let value = value.trim();
    let (scheme, rest) = value.split_once([' ', '\t'])?;
    let id = rest.trim();
    (!scheme.is_empty() && !id.is_empty() && !id.contains([' ', '\t'])).then_some((scheme, id))
}

/// The cookie's value, surrounding quotes removed; a value that is not text is
/// `MalformedHeader`.
fn cookie_value(raw: Option<&[u8]>) -> Result<Option<&str>, OpaqueError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let value = std::str::from_utf8(crate::edge::cookies::unquote(raw))
        .map_err(|_| OpaqueError::MalformedHeader)?;
    Ok(Some(value).filter(|v| !v.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn found(
        pairs: &[(&'static str, &str)],
    ) -> Result<Option<(String, &'static str, String)>, OpaqueError> {
        let h = headers(pairs);
        let sid = crate::edge::cookies::CookieName::new("sid").unwrap();
        let [cookie] = crate::edge::cookies::find(&h, [Some(&sid)]).expect("one session cookie");
        extract(&h, cookie)
            .map(|o| o.map(|i| (i.id.to_string(), i.source.as_str(), i.customer_auth)))
    }

    #[test]
    fn sources_in_the_contract_order() {
        let all = [
            ("customer-auth", "Session s-1"),
            ("authorization", "Bearer s-2"),
            ("cookie", "sid=s-3"),
        ];
        assert_eq!(
            found(&all),
            Ok(Some(("s-1".into(), "customer-auth", "Session s-1".into())))
        );
        assert_eq!(
            found(&all[1..]),
            Ok(Some(("s-2".into(), "authorization", "Bearer s-2".into())))
        );
        assert_eq!(
            found(&all[2..]),
            Ok(Some(("s-3".into(), "cookie", "Cookie s-3".into())))
        );
        assert_eq!(found(&[]), Ok(None));
    }

    #[test]
    fn customer_auth_takes_any_scheme_and_is_forwarded_as_sent() {
        assert_eq!(
            found(&[("customer-auth", "JWT  opaque-1 ")]),
            Ok(Some((
                "opaque-1".into(),
                "customer-auth",
                "JWT  opaque-1 ".into()
            )))
        );
        for bad in ["Session", "Session ", "a b c", "opaque-only"] {
            assert_eq!(
                found(&[("customer-auth", bad), ("cookie", "sid=s")]),
                Err(OpaqueError::MalformedHeader),
                "{bad}"
            );
        }
        assert_eq!(
            found(&[("customer-auth", "S a"), ("customer-auth", "S b")]),
            Err(OpaqueError::MalformedHeader)
        );
    }

    #[test]
    fn authorization_other_than_bearer_falls_through_to_the_cookie() {
        assert_eq!(
            found(&[("authorization", "Basic Zm9v"), ("cookie", "sid=s-3")]),
            Ok(Some(("s-3".into(), "cookie", "Cookie s-3".into())))
        );
        for bad in ["bearer", "Bearer ", "Bearer a b"] {
            assert_eq!(
                found(&[("authorization", bad), ("cookie", "sid=s")]),
                Err(OpaqueError::MalformedHeader),
                "{bad}"
            );
        }
        assert_eq!(
            found(&[("authorization", "bearer x"), ("authorization", "Bearer y")]),
            Err(OpaqueError::MalformedHeader)
        );
    }

    #[test]
    fn the_cookie_is_read_unquoted_and_an_empty_one_is_none() {
        assert_eq!(
            found(&[("cookie", "a=1; sid=\"s-q\"; b=2")]),
            Ok(Some(("s-q".into(), "cookie", "Cookie s-q".into())))
        );
        assert_eq!(
            found(&[("cookie", "a=1; SID=s-f")]),
            Ok(Some(("s-f".into(), "cookie", "Cookie s-f".into()))),
            "a folded name is the same cookie"
        );
        assert_eq!(found(&[("cookie", "sid=")]), Ok(None));
        assert_eq!(found(&[("cookie", "sid=\"\"")]), Ok(None));
        assert_eq!(found(&[("cookie", "xsid=1; sidx=2")]), Ok(None));
        let h = headers(&[("cookie", "sid=s")]);
        assert_eq!(extract(&h, None), Ok(None), "no SESSION_COOKIE: no cookie");
        assert_eq!(
            extract(&h, Some(&b"s\xe9"[..])),
            Err(OpaqueError::MalformedHeader),
            "not text"
        );
    }

    #[test]
    fn an_oversized_identifier_is_refused() {
        let long = format!("S {}", "x".repeat(MAX_IDENTIFIER_BYTES + 1));
        assert_eq!(
            found(&[("customer-auth", &long)]),
            Err(OpaqueError::TooLarge)
        );
    }
}
