//! Reading the cookies that carry credentials (the JWT cookie, the session cookie) from a
//! request: names compared the ways origins compare them, bytes in, a second copy refused, so
//! that the gateway never checks one copy while the origin, which receives the cookies too,
//! reads another.

use http::header::COOKIE;
use http::HeaderMap;

/// A configured cookie name, folded once the ways origins read the names a caller sends, so
/// that every name an origin would take for it is found:
///
/// - ASCII case ignored (ASP.NET reads cookies into a case-insensitive dictionary);
/// - percent-escapes decoded (ASP.NET Core and PHP unescape names: `s%69d` is `sid`); an
///   escape that is not `%` and two hex digits stays as it is, as both leave it;
/// - ASCII whitespace around the name ignored, before and after decoding (PHP drops the
///   leading spaces of a decoded name: `%20sid` is `sid`);
/// - and, as a second reading, `+` as a space (PHP's form decoding: `+sid` is `sid` there,
///   while `%2B` stays `+` in both readings).
///
/// A name that either reading takes for ours is ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieName {
    /// Decoded as a URI (`+` is `+`), trimmed, lower case.
    uri: Vec<u8>,
    /// Decoded as a form (`+` is a space), trimmed, lower case.
    form: Vec<u8>,
}

impl CookieName {
    /// `None` when the name folds to nothing (`%20`): it would match every empty pair.
    pub fn new(name: &str) -> Option<Self> {
        let folded = |form| {
            let mut v: Vec<u8> = fold(name.as_bytes(), form).collect();
            v.truncate(v.trim_ascii_end().len());
            v
        };
        let (uri, form) = (folded(false), folded(true));
        (!uri.is_empty() && !form.is_empty()).then_some(Self { uri, form })
    }

    /// Whether a name as the caller sent it is this cookie's. Compares as it decodes: no
    /// allocation, and a byte outside ASCII only ever equals itself.
    pub fn matches(&self, raw: &[u8]) -> bool {
        same(&self.uri, raw, false) || same(&self.form, raw, true)
    }
}

/// `raw` trimmed, percent-decoded (`+` as a space when `form`), leading whitespace dropped,
/// ASCII lower case. Trailing whitespace is left for the caller, which compares lazily.
fn fold(raw: &[u8], form: bool) -> impl Iterator<Item = u8> + '_ {
    Decode {
        rest: raw.trim_ascii(),
        form,
    }
    .skip_while(u8::is_ascii_whitespace)
    .map(|b| b.to_ascii_lowercase())
}

fn same(folded: &[u8], raw: &[u8], form: bool) -> bool {
    let mut got = fold(raw, form);
    folded.iter().all(|&want| got.next() == Some(want)) && got.all(|b| b.is_ascii_whitespace())
}

/// Percent-decoding, one byte at a time; a `%` not followed by two hex digits is itself.
struct Decode<'a> {
    rest: &'a [u8],
    form: bool,
}

impl Iterator for Decode<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let (&b, tail) = self.rest.split_first()?;
        if b == b'%' {
            if let [h, l, more @ ..] = tail {
                if let (Some(h), Some(l)) = (hex(*h), hex(*l)) {
                    self.rest = more;
                    return Some((h << 4) | l);
                }
            }
        }
        self.rest = tail;
        Some(if self.form && b == b'+' { b' ' } else { b })
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// A named cookie appears more than once; the index of the name in the list asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duplicate(pub usize);

/// Each named cookie's raw value (whitespace around it trimmed) from every `Cookie` header, in
/// one pass; `None` for a name that is absent, `Duplicate` for the first name seen twice (an
/// empty copy counts, and so does a bare name without `=`, which PHP reads as an empty
/// cookie). Names that fold to the same (`JWT_COOKIE` equal to `SESSION_COOKIE`) are one
/// cookie found for both. Read as bytes, so that a header with a byte outside visible ASCII
/// (someone else's cookie) can neither hide ours nor a second copy of it.
pub fn find<'h, const N: usize>(
    headers: &'h HeaderMap,
    names: [Option<&CookieName>; N],
) -> Result<[Option<&'h [u8]>; N], Duplicate> {
    let mut found = [None; N];
    if names.iter().all(Option::is_none) {
        return Ok(found);
    }
    let pairs = headers
        .get_all(COOKIE)
        .iter()
        // `,` separates too: workerd joins two `Cookie` lines into one value with ", ", and
        // RFC 6265 §4.1.1 keeps `,` out of cookie values, so no real value is cut by it.
        .flat_map(|v| v.as_bytes().split(|&b| b == b';' || b == b','));
    for pair in pairs {
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        for (i, wanted) in names.iter().enumerate() {
            if !wanted.is_some_and(|w| w.matches(name)) {
                continue;
            }
            if found[i].is_some() {
                return Err(Duplicate(i));
            }
            found[i] = Some(value.trim_ascii());
        }
    }
    Ok(found)
}

/// Surrounding double quotes removed, in pairs only (RFC 6265 §4.1.1 allows a quoted value).
pub fn unquote(value: &[u8]) -> &[u8] {
    value
        .strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .unwrap_or(value)
}

/// RFC 6265 §4.1.1: a cookie name is an RFC 9110 token.
pub fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
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

    fn named<'h>(h: &'h HeaderMap, name: &str) -> Result<Option<&'h [u8]>, Duplicate> {
        find(h, [Some(&CookieName::new(name).unwrap())]).map(|[v]| v)
    }

    #[test]
    fn one_copy_is_found_and_a_second_anywhere_is_refused() {
        let one = |l: &[u8]| named(&cookies(&[l]), "s").map(|v| v.map(<[u8]>::to_vec));
        assert_eq!(one(b"a=1; s=x"), Ok(Some(b"x".to_vec())));
        assert_eq!(one(b"a=1"), Ok(None));
        assert_eq!(one(b"s=x; s=y"), Err(Duplicate(0)));
        assert_eq!(one(b"s=x, s=y"), Err(Duplicate(0)));
        assert_eq!(one(b"s=; s=y"), Err(Duplicate(0)));
        assert_eq!(one(b"s; s=y"), Err(Duplicate(0)), "a bare name is a copy");
        assert_eq!(one(b"ss=1; s_=2; =s; s%=3"), Ok(None));
        assert_eq!(named(&cookies(&[b"s=x", b"s=y"]), "s"), Err(Duplicate(0)));
        assert_eq!(
            named(&cookies(&[b"z=\xe9; s=y", b"s=x"]), "s"),
            Err(Duplicate(0))
        );
    }

    #[test]
    fn names_fold_by_case_percent_escapes_and_surrounding_space() {
        let sid = CookieName::new("sid").unwrap();
        for same in [
            &b"sid"[..],
            b"SID",
            b"Sid",
            b"s%69d",
            b"s%69D",
            b"S%49D",
            b"%73%69%64",
            b" sid ",
            b"\tsid",
            b"%20sid",
            b"sid%20",
            b"%09sid",
            b"+sid",
            b"sid+",
        ] {
            assert!(sid.matches(same), "{}", String::from_utf8_lossy(same));
        }
        for other in [
            &b"sid_"[..],
            b"xsid",
            b"si d",
            b"si%64x",
            b"s%6",
            b"s%zzid",
            b"sid%",
            b"sid%2",
            b"s%%69d",
            b"s%2569d",
            b"%2Bsid",
            b"s\xe9d",
            b"",
            b"s",
        ] {
            assert!(!sid.matches(other), "{}", String::from_utf8_lossy(other));
        }
        // `+` and `%2B` in a configured name: each reading finds its own spelling.
        let plus = CookieName::new("a+b").unwrap();
        for same in [&b"a+b"[..], b"a%2Bb", b"A%2bB", b"a b", b"a%20b"] {
            assert!(plus.matches(same), "{}", String::from_utf8_lossy(same));
        }
        // Bytes outside ASCII only ever equal themselves.
        let latin = CookieName::new("s%E9").unwrap();
        assert!(latin.matches(b"s\xe9") && latin.matches(b"S%e9"));
        assert!(!latin.matches(b"s\xc9"));
        // A name that folds to nothing is refused.
        assert_eq!(CookieName::new("%20"), None);
        assert_eq!(CookieName::new("+"), None);
    }

    #[test]
    fn folded_spellings_are_copies_of_one_cookie() {
        let dup = Err(Duplicate(0));
        for line in [
            &b"sid=L; SID=x"[..],
            b"sid=L; s%69d=x",
            b"sid=L; S%49D=x",
            b"sid=L, Sid=x",
            b"sid=L; +sid=x",
            b"sid=L; %20sid=x",
            b"s%zz=1; sid=L; SID=x",
            b"sid=L; s%=1; sId=",
            b"x=\xff\xfe; sid=L; SID=x",
        ] {
            assert_eq!(
                named(&cookies(&[line]), "sid"),
                dup,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(named(&cookies(&[b"sid=L", b"SID=x"]), "sid"), dup);
        // A bad escape in another name neither crashes nor hides ours.
        assert_eq!(
            named(&cookies(&[b"a%=1; b%z=2; %=3; sid=L"]), "sid"),
            Ok(Some(&b"L"[..]))
        );
        assert_eq!(
            named(&cookies(&[b"SID=\"L\""]), "sid"),
            Ok(Some(&b"\"L\""[..]))
        );
    }

    #[test]
    fn two_names_in_one_pass() {
        let jwt = CookieName::new("jwt").unwrap();
        let sid = CookieName::new("sid").unwrap();
        let h = cookies(&[b"jwt=a; theme=x; sid=b"]);
        assert_eq!(
            find(&h, [Some(&jwt), Some(&sid)]),
            Ok([Some(&b"a"[..]), Some(&b"b"[..])])
        );
        assert_eq!(find(&h, [None, Some(&sid)]), Ok([None, Some(&b"b"[..])]));
        let h = cookies(&[b"jwt=a; SID=b; sid=c"]);
        assert_eq!(find(&h, [Some(&jwt), Some(&sid)]), Err(Duplicate(1)));
        // The same name twice is one cookie found for both, not a copy of itself.
        let h = cookies(&[b"sid=a"]);
        assert_eq!(
            find(&h, [Some(&sid), Some(&sid)]),
            Ok([Some(&b"a"[..]), Some(&b"a"[..])])
        );
    }

    #[test]
    fn quotes_are_removed_only_in_pairs() {
        assert_eq!(unquote(b"\"abc\""), b"abc");
        assert_eq!(unquote(b"\"abc"), b"\"abc");
        assert_eq!(unquote(b"\""), b"\"");
        assert_eq!(unquote(b"abc"), b"abc");
    }

    #[test]
    fn names_are_tokens() {
        assert!(is_name("__Host-session"));
        assert!(!is_name("a b"));
        assert!(!is_name("a=b"));
        assert!(!is_name("a;b"));
        assert!(!is_name(""));
    }
}
