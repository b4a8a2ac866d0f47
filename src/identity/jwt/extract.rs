//! Finding the customer JWT in a request: `customer-auth`, then `Authorization`, then a cookie.
//! That no other source names someone else is `crate::identity::identifiers`' check, made first.

use http::header::AUTHORIZATION;
use http::HeaderMap;

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
/// 3. `cookie`: the `JWT_COOKIE` cookie's raw value, as `identifiers::one_per_request` found
///    it (once, across every `Cookie` header, names folded), surrounding double quotes removed
///    (RFC 6265 §4.1.1). An empty value counts as absent: it is how a logged-out session
///    usually looks.
///
/// Schemes are matched case-insensitively (RFC 9110 §11.1). `Ok(None)` when no source holds
/// a token.
pub fn extract<'h>(
    headers: &'h HeaderMap,
    cookie: Option<&'h [u8]>,
) -> Result<Option<&'h str>, JwtError> {
    Ok(locate(headers, cookie)?.map(|(token, _)| token))
}

/// How the customer JWT came: what a sender-constrained token is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presentation {
    CustomerAuth,
    Bearer,
    /// `Authorization: DPoP`.
    Dpop,
    Cookie,
}

/// `extract`, and where the token was found.
pub fn locate<'h>(
    headers: &'h HeaderMap,
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
