//! One identifier per request: on every route that reads a customer identifier, whichever kind
//! it verifies, every place one may come from (`customer-auth`, `Authorization: Bearer`, the
//! `JWT_HEADER` header, the `JWT_COOKIE` and `SESSION_COOKIE` cookies) is read, and two different identifiers, or either
//! cookie sent twice, are refused before anything is verified, introspected or forwarded.
//!
//! Why every source, not just the one the route uses: the origin receives the caller's cookies
//! as sent, and reads the ones it knows. A request whose `customer-auth` the gateway vouches for
//! while a cookie names someone else would have the origin act for the other one.

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName};

use crate::config::setting::{optional, ConfigError, Lookup};
use crate::edge::cookies::{self, CookieName, Duplicate};

/// A name, not a `&str`: looked up without being parsed on every request.
const CUSTOMER_AUTH: HeaderName = HeaderName::from_static("customer-auth");
pub const JWT_COOKIE: &str = "JWT_COOKIE";
pub const SESSION_COOKIE: &str = "SESSION_COOKIE";
pub const JWT_HEADER: &str = "JWT_HEADER";

/// Headers `JWT_HEADER` may not name: the gateway's own credentials and the other sources
/// (which have their own rules), the fields it sets or reads itself, and hop-by-hop fields
/// (which never reach it whole). Compared with `_` read as `-`.
const NOT_A_JWT_HEADER: [&str; 17] = [
    "authorization",
    "customer-auth",
    "api-key",
    "cookie",
    "host",
    "x-request-id",
    "content-length",
    "content-type",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "dpop",
];

/// The cookies that carry identifiers, names folded once (`cookies::CookieName`), and the
/// `JWT_HEADER` header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentifierCookies {
    jwt: Option<CookieName>,
    session: Option<CookieName>,
    jwt_header: Option<HeaderName>,
}

impl IdentifierCookies {
    /// `jwt_cookie` is `JWT_COOKIE` as the JWT settings read it; `SESSION_COOKIE` is read here,
    /// whether or not a route is `opaque`: on a `jwt` route the session cookie is still a second
    /// identifier the origin may act on.
    pub fn from_settings(get: Lookup<'_>, jwt_cookie: Option<&str>) -> Result<Self, ConfigError> {
        let session = optional(get, SESSION_COOKIE).map(|c| c.trim().to_string());
        if session.as_deref().is_some_and(|c| !cookies::is_name(c)) {
            return Err(ConfigError::new(
                SESSION_COOKIE,
                "must be a cookie name (letters, digits and !#$%&'*+-.^_`|~)",
            ));
        }
        let folded = |setting: &'static str, name: Option<&str>| {
            name.map(|n| {
                CookieName::new(n).ok_or_else(|| {
                    ConfigError::new(setting, "must name a cookie: it is empty once decoded")
                })
            })
            .transpose()
        };
        Ok(Self {
            jwt: folded(JWT_COOKIE, jwt_cookie)?,
            session: folded(SESSION_COOKIE, session.as_deref())?,
            jwt_header: jwt_header(get)?,
        })
    }

    /// For tests and tools: the names as given, unchecked.
    pub fn new(jwt: Option<&str>, session: Option<&str>) -> Self {
        Self {
            jwt: jwt.and_then(CookieName::new),
            session: session.and_then(CookieName::new),
            jwt_header: None,
        }
    }

    /// These names with `header` as `JWT_HEADER` (tests and tools).
    pub fn with_jwt_header(mut self, header: &str) -> Self {
        self.jwt_header = HeaderName::from_bytes(header.as_bytes()).ok();
        self
    }

    /// `JWT_HEADER`, lower case: one more header that may carry the bare JWT.
    pub fn jwt_header(&self) -> Option<&HeaderName> {
        self.jwt_header.as_ref()
    }
}

/// `JWT_HEADER`: a header name (RFC 9110 token, any case, held lower case), none of
/// `NOT_A_JWT_HEADER`.
fn jwt_header(get: Lookup<'_>) -> Result<Option<HeaderName>, ConfigError> {
    let Some(raw) = optional(get, JWT_HEADER) else {
        return Ok(None);
    };
    let name = HeaderName::from_bytes(raw.trim().as_bytes())
        .map_err(|_| ConfigError::new(JWT_HEADER, "must be a header name (an HTTP token)"))?;
    let dashed = name.as_str().replace('_', "-");
    if NOT_A_JWT_HEADER.contains(&dashed.as_str()) {
        return Err(ConfigError::new(
            JWT_HEADER,
            "must name a header of its own (not Authorization, customer-auth, api-key, Cookie, DPoP, or a header the gateway sets or a hop-by-hop one)",
        ));
    }
    Ok(Some(name))
}

/// A place an identifier may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    CustomerAuth,
    Authorization,
    /// The `JWT_HEADER` header.
    JwtHeader,
    JwtCookie,
    SessionCookie,
}

impl Source {
    /// For the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CustomerAuth => "customer-auth",
            Self::Authorization => "authorization",
            Self::JwtHeader => "jwt_header",
            Self::JwtCookie => "jwt_cookie",
            Self::SessionCookie => "session_cookie",
        }
    }

    /// For the caller.
    fn described(self) -> &'static str {
        match self {
            Self::CustomerAuth => "customer-auth",
            Self::Authorization => "Authorization",
            Self::JwtHeader => "the JWT header",
            Self::JwtCookie => "the JWT cookie",
            Self::SessionCookie => "the session cookie",
        }
    }
}

/// Why a request names its caller more than one way. Carries where, never what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ambiguity {
    /// The `JWT_COOKIE` cookie appears more than once (names folded).
    DuplicateJwtCookie,
    /// The `SESSION_COOKIE` cookie appears more than once (names folded).
    DuplicateSessionCookie,
    /// Two different identifiers: the first place found, then the one that disagrees (the
    /// same place when a header is sent twice with different values).
    TwoIdentifiers(Source, Source),
}

impl Ambiguity {
    /// RFC 6750 `error_description`: fixed text that fits a quoted header value.
    pub fn description(&self) -> &'static str {
        match self {
            Self::DuplicateJwtCookie => "The JWT cookie is sent more than once",
            Self::DuplicateSessionCookie => "The session cookie is sent more than once",
            Self::TwoIdentifiers(..) => "The request carries two different customer identifiers",
        }
    }

    /// The problem's `detail`: where, and what to do.
    pub fn detail(&self) -> String {
        match self {
            Self::DuplicateJwtCookie | Self::DuplicateSessionCookie => format!(
                "{} (cookie names that differ only in letter case or percent-encoding are the same cookie): send it once.",
                self.description()
            ),
            Self::TwoIdentifiers(a, b) if a == b => format!(
                "{}, in two {} headers: send one.",
                self.description(),
                a.described()
            ),
            Self::TwoIdentifiers(a, b) => format!(
                "{}, in {} and in {}: send one.",
                self.description(),
                a.described(),
                b.described()
            ),
        }
    }

    /// A stable snake_case id for the log line's `outcome`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::DuplicateJwtCookie => "duplicate_jwt_cookie",
            Self::DuplicateSessionCookie => "duplicate_session_cookie",
            Self::TwoIdentifiers(..) => "two_identifiers",
        }
    }

    /// The two places, for the log line (a repeated cookie: its name twice).
    pub fn sources(&self) -> [&'static str; 2] {
        match self {
            Self::DuplicateJwtCookie => [Source::JwtCookie.as_str(); 2],
            Self::DuplicateSessionCookie => [Source::SessionCookie.as_str(); 2],
            Self::TwoIdentifiers(a, b) => [a.as_str(), b.as_str()],
        }
    }
}

/// The identifier cookies' raw values (whitespace trimmed, quotes kept), each found at most
/// once: what the extractors read instead of scanning `Cookie` again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cookies<'h> {
    pub jwt: Option<&'h [u8]>,
    pub session: Option<&'h [u8]>,
}

/// Reads every source and refuses an ambiguous request; on success, the two cookies' values.
///
/// What each source yields as the identifier, compared byte for byte:
/// - every `customer-auth` field `<any scheme> <id>`: the id (`JWT x` yields `x`,
///   `Session L` yields `L`);
/// - every `Authorization: Bearer <id>` or `Authorization: DPoP <id>`: the id (other schemes
///   are no identifier);
/// - every `JWT_HEADER` field: its value, the bare token;
/// - each cookie: its value, surrounding quotes removed; an empty value is none (logged out).
///
/// A field that is not `<scheme> <id>` yields none here: the extractor of the route's kind
/// refuses it as malformed. The same identifier in several places is one identifier.
///
/// No allocation: with no `Cookie` field, this is four header lookups.
pub fn one_per_request<'h>(
    headers: &'h HeaderMap,
    names: &IdentifierCookies,
) -> Result<Cookies<'h>, Ambiguity> {
    let found = match cookies::find(headers, [names.jwt.as_ref(), names.session.as_ref()]) {
        Ok([jwt, session]) => Cookies { jwt, session },
        Err(Duplicate(0)) => return Err(Ambiguity::DuplicateJwtCookie),
        Err(_) => return Err(Ambiguity::DuplicateSessionCookie),
    };
    let mut held: Option<(Source, &[u8])> = None;
    let mut offer = |source: Source, id: &'h [u8]| match held {
        Some((first, h)) if h != id => Err(Ambiguity::TwoIdentifiers(first, source)),
        Some(_) => Ok(()),
        None => {
            held = Some((source, id));
            Ok(())
        }
    };
    for value in headers.get_all(&CUSTOMER_AUTH) {
        if let Some((_, id)) = credentials(value.as_bytes()) {
            offer(Source::CustomerAuth, id)?;
        }
    }
    for value in headers.get_all(AUTHORIZATION) {
        if let Some((scheme, id)) = credentials(value.as_bytes()) {
            if scheme.eq_ignore_ascii_case(b"Bearer") || scheme.eq_ignore_ascii_case(b"DPoP") {
                offer(Source::Authorization, id)?;
            }
        }
    }
    if let Some(name) = &names.jwt_header {
        for value in headers.get_all(name) {
            if let Some(id) = bare(value.as_bytes()) {
                offer(Source::JwtHeader, id)?;
            }
        }
    }
    if let Some(id) = found.jwt.and_then(cookie_identifier) {
        offer(Source::JwtCookie, id)?;
    }
    if let Some(id) = found.session.and_then(cookie_identifier) {
        offer(Source::SessionCookie, id)?;
    }
    Ok(found)
}

/// `<scheme> <id>`: a non-empty scheme, then one non-empty run without whitespace.
fn credentials(value: &[u8]) -> Option<(&[u8], &[u8])> {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let value = value.trim_ascii();
    let at = value.iter().position(blank)?;
    let (scheme, id) = (&value[..at], value[at..].trim_ascii());
    (!scheme.is_empty() && !id.is_empty() && !id.iter().any(blank)).then_some((scheme, id))
}

/// `JWT_HEADER`'s value as an identifier: one non-empty run without whitespace.
fn bare(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    (!value.is_empty() && !value.iter().any(|b| *b == b' ' || *b == b'\t')).then_some(value)
}

/// A cookie's value as an identifier: quotes removed; empty is none.
fn cookie_identifier(raw: &[u8]) -> Option<&[u8]> {
    Some(cookies::unquote(raw)).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn check(pairs: &[(&'static str, &[u8])]) -> Result<(), Ambiguity> {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_bytes(v).unwrap());
        }
        let names = IdentifierCookies::new(Some("jwt"), Some("sid"))
            .with_jwt_header("cf-access-jwt-assertion");
        one_per_request(&h, &names).map(|_| ())
    }

    use Source::*;

    #[test]
    fn each_source_yields_its_identifier() {
        assert_eq!(credentials(b"JWT x"), Some((&b"JWT"[..], &b"x"[..])));
        assert_eq!(
            credentials(b" Session \t L "),
            Some((&b"Session"[..], &b"L"[..]))
        );
        for none in [&b"JWT"[..], b"JWT ", b"x", b"JWT a b", b""] {
            assert_eq!(credentials(none), None, "{}", String::from_utf8_lossy(none));
        }
        assert_eq!(cookie_identifier(b"\"L\""), Some(&b"L"[..]));
        assert_eq!(cookie_identifier(b"\"\""), None);
        assert_eq!(cookie_identifier(b""), None);
    }

    #[test]
    fn every_pair_of_sources_with_different_identifiers_is_refused() {
        let sources: [(Source, &'static str, &str); 5] = [
            (CustomerAuth, "customer-auth", "Session "),
            (Authorization, "authorization", "Bearer "),
            (JwtHeader, "cf-access-jwt-assertion", ""),
            (JwtCookie, "cookie", "jwt="),
            (SessionCookie, "cookie", "sid="),
        ];
        for (i, (a, a_name, a_prefix)) in sources.iter().enumerate() {
            for (b, b_name, b_prefix) in &sources[i + 1..] {
                let one = format!("{a_prefix}one");
                let same = format!("{b_prefix}one");
                let other = format!("{b_prefix}two");
                assert_eq!(
                    check(&[(a_name, one.as_bytes()), (b_name, same.as_bytes())]),
                    Ok(()),
                    "{a:?} {b:?} same"
                );
                assert_eq!(
                    check(&[(a_name, one.as_bytes()), (b_name, other.as_bytes())]),
                    Err(Ambiguity::TwoIdentifiers(*a, *b)),
                    "{a:?} {b:?} different"
                );
            }
        }
        // One Cookie line holding both cookies.
        assert_eq!(check(&[("cookie", b"jwt=x; sid=x")]), Ok(()));
        assert_eq!(
            check(&[("cookie", b"jwt=x; sid=y")]),
            Err(Ambiguity::TwoIdentifiers(JwtCookie, SessionCookie))
        );
        // All four, all the same; then the last one different.
        let same = [
            ("customer-auth", &b"JWT x"[..]),
            ("authorization", b"bearer x"),
            ("cookie", b"jwt=\"x\"; SID=x"),
        ];
        assert_eq!(check(&same), Ok(()));
        assert_eq!(
            check(&[same[0], same[1], ("cookie", b"jwt=x; SID=y")]),
            Err(Ambiguity::TwoIdentifiers(CustomerAuth, SessionCookie))
        );
    }

    #[test]
    fn a_header_sent_twice_with_two_identifiers_is_refused() {
        assert_eq!(
            check(&[("customer-auth", b"JWT a"), ("customer-auth", b"JWT b")]),
            Err(Ambiguity::TwoIdentifiers(CustomerAuth, CustomerAuth))
        );
        assert_eq!(
            check(&[
                ("authorization", b"Bearer a"),
                ("authorization", b"Bearer b")
            ]),
            Err(Ambiguity::TwoIdentifiers(Authorization, Authorization))
        );
        // The same one twice is left to the extractor (a header sent twice is malformed).
        assert_eq!(
            check(&[("customer-auth", b"JWT a"), ("customer-auth", b"JWT a")]),
            Ok(())
        );
    }

    #[test]
    fn the_jwt_header_is_one_more_source() {
        assert_eq!(
            check(&[
                ("cf-access-jwt-assertion", b"a"),
                ("cf-access-jwt-assertion", b"b")
            ]),
            Err(Ambiguity::TwoIdentifiers(JwtHeader, JwtHeader))
        );
        assert_eq!(
            check(&[
                ("customer-auth", b"JWT a"),
                ("cf-access-jwt-assertion", b" a ")
            ]),
            Ok(())
        );
        assert_eq!(
            check(&[("cf-access-jwt-assertion", b"b"), ("cookie", b"sid=c")]),
            Err(Ambiguity::TwoIdentifiers(JwtHeader, SessionCookie))
        );
        // Not a bare token: none here; the JWT extractor refuses it as malformed.
        assert_eq!(
            check(&[
                ("customer-auth", b"JWT a"),
                ("cf-access-jwt-assertion", b"JWT b")
            ]),
            Ok(())
        );
    }

    #[test]
    fn the_jwt_header_setting_is_a_header_of_its_own() {
        let names = |v: &str| {
            let v = v.to_string();
            IdentifierCookies::from_settings(
                &move |n: &str| (n == JWT_HEADER).then(|| v.clone()),
                None,
            )
        };
        assert_eq!(
            names(" Cf-Access-Jwt-Assertion ")
                .unwrap()
                .jwt_header()
                .map(|h| h.as_str()),
            Some("cf-access-jwt-assertion")
        );
        for bad in [
            "Authorization",
            "customer_auth",
            "Cookie",
            "API-KEY",
            "x-request-id",
            "Connection",
            "transfer-encoding",
            "dpop",
            "a b",
            "x:y",
            "",
        ] {
            let err = names(bad).err();
            assert!(
                err.as_ref().is_some_and(|e| e.setting == JWT_HEADER) || bad.is_empty(),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn what_is_no_identifier_disagrees_with_nothing() {
        for quiet in [
            ("authorization", &b"Basic dXNlcjpwdw=="[..]),
            ("authorization", b"Bearer"),
            ("cookie", b"sid="),
            ("cookie", b"jwt=\"\""),
            ("cookie", b"other=two; SIDX=two; jwt_=two"),
            ("cookie", b"x=\xff\xfe"),
            ("customer_auth", b"JWT two"),
        ] {
            assert_eq!(
                check(&[("customer-auth", b"JWT one"), quiet]),
                Ok(()),
                "{quiet:?}"
            );
        }
    }

    #[test]
    fn a_repeated_cookie_is_refused_whichever_source_holds_the_identifier() {
        for lines in [
            &[("cookie", &b"sid=L; sid=L"[..])][..],
            &[("cookie", b"sid=L; SID=x")],
            &[("cookie", b"sid=L; s%69d=x")],
            &[("cookie", b"sid=L"), ("cookie", b"S%49D=x")],
            &[("cookie", b"sid=L, sid=")],
            &[("customer-auth", b"Session L"), ("cookie", b"sid=L; Sid=L")],
            &[
                ("authorization", b"Bearer L"),
                ("cookie", b"x=\xe9; sid=; sid="),
            ],
        ] {
            assert_eq!(
                check(lines),
                Err(Ambiguity::DuplicateSessionCookie),
                "{lines:?}"
            );
        }
        assert_eq!(
            check(&[("customer-auth", b"JWT x"), ("cookie", b"jwt=x; JWT=x")]),
            Err(Ambiguity::DuplicateJwtCookie)
        );
    }

    #[test]
    fn without_cookie_names_only_the_headers_are_compared() {
        let mut h = HeaderMap::new();
        h.append("customer-auth", HeaderValue::from_static("JWT a"));
        h.append("cookie", HeaderValue::from_static("jwt=b; sid=c; sid=d"));
        let none = IdentifierCookies::default();
        assert_eq!(one_per_request(&h, &none), Ok(Cookies::default()));
        h.append("authorization", HeaderValue::from_static("Bearer b"));
        assert_eq!(
            one_per_request(&h, &none),
            Err(Ambiguity::TwoIdentifiers(CustomerAuth, Authorization))
        );
    }

    #[test]
    fn settings_name_the_cookie_and_never_echo_it() {
        let get = |n: &str| (n == SESSION_COOKIE).then(|| "sid".to_string());
        let names = IdentifierCookies::from_settings(&get, Some("jwt")).unwrap();
        assert_eq!(names, IdentifierCookies::new(Some("jwt"), Some("sid")));
        for (bad, jwt) in [
            ("a=b", None),
            ("two words", None),
            ("%20", None),
            ("sid", Some("+")),
        ] {
            let get = |n: &str| (n == SESSION_COOKIE).then(|| bad.to_string());
            let err = IdentifierCookies::from_settings(&get, jwt).unwrap_err();
            let setting = if jwt.is_some() {
                JWT_COOKIE
            } else {
                SESSION_COOKIE
            };
            assert_eq!(err.setting, setting, "{bad}");
            assert!(!err.problem.contains(jwt.unwrap_or(bad)), "{bad}");
        }
    }

    #[test]
    fn descriptions_fit_in_a_quoted_header_value_and_details_name_no_value() {
        for a in [
            Ambiguity::DuplicateJwtCookie,
            Ambiguity::DuplicateSessionCookie,
            Ambiguity::TwoIdentifiers(CustomerAuth, SessionCookie),
            Ambiguity::TwoIdentifiers(Authorization, Authorization),
        ] {
            assert!(a
                .description()
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'));
            assert!(a.detail().ends_with("send one.") || a.detail().ends_with("send it once."));
        }
        assert_eq!(
            Ambiguity::TwoIdentifiers(CustomerAuth, SessionCookie).detail(),
            "The request carries two different customer identifiers, in customer-auth and in the session cookie: send one."
        );
    }
}
