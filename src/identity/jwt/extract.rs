//! Finding the customer JWT in a request: `customer-auth`, then `Authorization`, then the
//! `JWT_HEADER` header, then a cookie.
//! That no other source names someone else is `crate::identity::identifiers`' check, made first.

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName};

use super::JwtError;

const CUSTOMER_AUTH: &str = "customer-auth";

/// The customer JWT from the first source present, in the contract's order:
///
/// 1. `customer-auth: JWT <token>`. Once this header is present it is the source: another
///    scheme, an empty token or a second `customer-auth` is `MalformedHeader` (400), never a
///    fall-through to a source the caller did not mean.
/// 2. `Authorization: Bearer <token>` or `Authorization: DPoP <token>` (RFC 9449 §7.1: a
///    DPoP-bound token; the scheme is checked against the token by `identity::sender`).
///    Another scheme (`Basic ...`) is not a JWT source, so
///    the search goes on to the cookie; the origin never sees it either way, since the
///    gateway sets its own `Authorization`. `Bearer` with no token, or two `Authorization`
///    headers, is `MalformedHeader`.
/// 3. `jwt_header`: the `JWT_HEADER` header (e.g. `Cf-Access-Jwt-Assertion`), its whole value
///    the bare token. Present, it is the source: empty, holding whitespace inside, or sent
///    twice is `MalformedHeader`.
/// 4. `cookie`: the `JWT_COOKIE` cookie's raw value, as `identifiers::one_per_request` found
///    it (once, across every `Cookie` header, names folded), surrounding double quotes removed
///    (RFC 6265 §4.1.1). An empty value counts as absent: it is how a logged-out session
///    usually looks.
///
/// Schemes are matched case-insensitively (RFC 9110 §11.1). `Ok(None)` when no source holds
/// a token.
pub fn extract<'h>(
    headers: &'h HeaderMap,
    jwt_header: Option<&HeaderName>,
    cookie: Option<&'h [u8]>,
) -> Result<Option<&'h str>, JwtError> {
    Ok(locate(headers, jwt_header, cookie)?.map(|(token, _)| token))
}

/// How the customer JWT came: what a sender-constrained token is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presentation {
    CustomerAuth,
    Bearer,
    /// `Authorization: DPoP`.
    Dpop,
    /// The `JWT_HEADER` header.
    Header,
    Cookie,
}

/// `extract`, and where the token was found.
pub fn locate<'h>(
    headers: &'h HeaderMap,
    jwt_header: Option<&HeaderName>,
    cookie: Option<&'h [u8]>,
) -> Result<Option<(&'h str, Presentation)>, JwtError> {
    if let Some(value) = single(headers, CUSTOMER_AUTH)? {
        return match credentials(value) {
            ("JWT", Some(token)) => Ok(Some((token, Presentation::CustomerAuth))),
            _ => Err(JwtError::MalformedHeader),
        };
    }
    if let Some(value) = single(headers, AUTHORIZATION.as_str())? {
        match credentials(value) {
            ("Bearer", Some(token)) => return Ok(Some((token, Presentation::Bearer))),
            ("DPoP", Some(token)) => return Ok(Some((token, Presentation::Dpop))),
            ("Bearer" | "DPoP", None) => return Err(JwtError::MalformedHeader),
            _ => {}
        }
    }
    if let Some(name) = jwt_header {
        if let Some(value) = single(headers, name.as_str())? {
            let token = value.trim();
            if token.is_empty() || token.contains([' ', '\t']) {
                return Err(JwtError::MalformedHeader);
            }
            return Ok(Some((token, Presentation::Header)));
        }
    }
    from_cookie(cookie)
}

/// The `JWT_COOKIE` cookie's value as `identifiers` found it.
fn from_cookie(cookie: Option<&[u8]>) -> Result<Option<(&str, Presentation)>, JwtError> {
    match cookie.map(|raw| std::str::from_utf8(crate::edge::cookies::unquote(raw))) {
        None => Ok(None),
        Some(Ok(value)) => Ok(Some(value)
            .filter(|v| !v.is_empty())
            .map(|v| (v, Presentation::Cookie))),
        // A JWT is visible ASCII; a cookie holding any other byte cannot be one.
        Some(Err(_)) => Err(JwtError::Malformed),
    }
}

/// The value of a header that must appear at most once, as visible ASCII.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, JwtError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        // Two credentials: which one the origin would honour is anyone's guess.
        return Err(JwtError::MalformedHeader);
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| JwtError::MalformedHeader)
}

/// `<scheme> <token>`: the scheme, normalised to `JWT`, `Bearer` or `DPoP` when it is one of them in
/// any case, and the token when it is one non-empty run without whitespace.
fn credentials(value: &str) -> (&'static str, Option<&str>) {
    let value = value.trim();
    let (scheme, rest) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    let token = rest.trim();
    let token = (!token.is_empty() && !token.contains([' ', '\t'])).then_some(token);
    let scheme = ["JWT", "Bearer", "DPoP"]
        .into_iter()
        .find(|known| scheme.eq_ignore_ascii_case(known))
        .unwrap_or("");
    (scheme, token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found<'h>(h: &'h HeaderMap, cookie: Option<&'h [u8]>) -> Result<Option<&'h str>, JwtError> {
        static CF: HeaderName = HeaderName::from_static("cf-access-jwt-assertion");
        extract(h, Some(&CF), cookie)
    }

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_jwt_header_comes_after_authorization_and_before_the_cookie() {
        let cf = "cf-access-jwt-assertion";
        assert_eq!(found(&map(&[(cf, " t1 ")]), None), Ok(Some("t1")));
        assert_eq!(found(&map(&[(cf, "t1")]), Some(b"c")), Ok(Some("t1")));
        assert_eq!(
            found(&map(&[("authorization", "Bearer a"), (cf, "t1")]), None),
            Ok(Some("a"))
        );
        assert_eq!(
            found(&map(&[("authorization", "Basic a"), (cf, "t1")]), None),
            Ok(Some("t1"))
        );
        assert_eq!(
            found(&map(&[("customer-auth", "JWT c"), (cf, "t1")]), None),
            Ok(Some("c"))
        );
        for bad in ["", " ", "a b", "Bearer a"] {
            assert_eq!(
                found(&map(&[(cf, bad)]), Some(b"c")),
                Err(JwtError::MalformedHeader),
                "{bad:?}"
            );
        }
        assert_eq!(
            found(&map(&[(cf, "a"), (cf, "a")]), None),
            Err(JwtError::MalformedHeader)
        );
        assert_eq!(found(&map(&[]), Some(b"c")), Ok(Some("c")));
        // Without JWT_HEADER the header is no source.
        assert_eq!(extract(&map(&[(cf, "t1")]), None, None), Ok(None));
    }

    #[test]
    fn credentials_split_scheme_and_token() {
        assert_eq!(credentials("JWT abc"), ("JWT", Some("abc")));
        assert_eq!(credentials(" jwt \t abc "), ("JWT", Some("abc")));
        assert_eq!(credentials("bEaReR abc"), ("Bearer", Some("abc")));
        assert_eq!(credentials("Basic abc"), ("", Some("abc")));
        assert_eq!(credentials("dpop abc"), ("DPoP", Some("abc")));
        assert_eq!(credentials("JWTabc"), ("", None));
        assert_eq!(credentials("JWT"), ("JWT", None));
        assert_eq!(credentials("JWT "), ("JWT", None));
        assert_eq!(credentials("Bearer a b"), ("Bearer", None));
    }
}
