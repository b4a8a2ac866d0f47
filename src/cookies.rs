//! Reading one named cookie from a request, for every credential a cookie may carry (the JWT
//! cookie, the session cookie): bytes in, duplicates refused, so that the gateway never checks
//! one copy while the origin, which receives the cookies too, reads another.

use http::header::COOKIE;
use http::HeaderMap;

/// The named cookie appears more than once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duplicate;

/// The named cookie's raw value from every `Cookie` header; `None` when it is absent,
/// `Duplicate` when it appears twice (an empty copy counts). Read as bytes, so that a header
/// with a byte outside visible ASCII (someone else's cookie) can neither hide ours nor a second
/// copy of it.
pub fn named<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h [u8]>, Duplicate> {
    let mut found: Option<&[u8]> = None;
    let pairs = headers
        .get_all(COOKIE)
        .iter()
        // `,` separates too: workerd joins two `Cookie` lines into one value with ", ", and
        // RFC 6265 §4.1.1 keeps `,` out of cookie values, so no real value is cut by it.
        .flat_map(|v| v.as_bytes().split(|&b| b == b';' || b == b','));
    for pair in pairs {
        let Some(eq) = pair.iter().position(|&b| b == b'=') else {
            continue;
        };
        if pair[..eq].trim_ascii() != name.as_bytes() {
            continue;
        }
        if found.is_some() {
            return Err(Duplicate);
        }
        found = Some(pair[eq + 1..].trim_ascii());
    }
    Ok(found)
}

/// Surrounding double quotes removed, in pairs only (RFC 6265 §4.1.1 allows a quoted value).
pub fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookies(lines: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(COOKIE, http::HeaderValue::from_bytes(l).unwrap());
        }
        h
    }

    #[test]
    fn one_copy_is_found_and_a_second_anywhere_is_refused() {
        assert_eq!(named(&cookies(&[b"a=1; s=x"]), "s"), Ok(Some(&b"x"[..])));
        assert_eq!(named(&cookies(&[b"a=1"]), "s"), Ok(None));
        assert_eq!(named(&cookies(&[b"s=x; s=y"]), "s"), Err(Duplicate));
        assert_eq!(named(&cookies(&[b"s=x", b"s=y"]), "s"), Err(Duplicate));
        assert_eq!(named(&cookies(&[b"s=x, s=y"]), "s"), Err(Duplicate));
        assert_eq!(named(&cookies(&[b"s=; s=y"]), "s"), Err(Duplicate));
        assert_eq!(
            named(&cookies(&[b"z=\xe9; s=y", b"s=x"]), "s"),
            Err(Duplicate)
        );
        assert_eq!(named(&cookies(&[b"ss=1; s_=2"]), "s"), Ok(None));
    }

    #[test]
    fn quotes_are_removed_only_in_pairs() {
        assert_eq!(unquote("\"abc\""), "abc");
        assert_eq!(unquote("\"abc"), "\"abc");
        assert_eq!(unquote("\""), "\"");
        assert_eq!(unquote("abc"), "abc");
    }
}
