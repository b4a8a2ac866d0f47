//! `jwt::extract` after `identifiers::one_per_request`, as the gateway runs them: the source
//! order, which malformed headers are refused, not skipped, and the JWT cookie read once.

use edge_auth_proxy::identity::identifiers::{one_per_request, Ambiguity, IdentifierCookies};
use edge_auth_proxy::identity::jwt::{extract, JwtError};
use http::{HeaderMap, HeaderName, HeaderValue};

/// Why a request got no token: the JWT extractor's error, or the request's ambiguity.
#[derive(Debug, PartialEq, Eq)]
enum Refused {
    Jwt(JwtError),
    Ambiguous(Ambiguity),
}

/// The token the gateway would check, with `JWT_COOKIE` = `cookie`.
fn token_in(map: &HeaderMap, cookie: Option<&str>) -> Result<Option<String>, Refused> {
    let cookies =
        one_per_request(map, &IdentifierCookies::new(cookie, None)).map_err(Refused::Ambiguous)?;
    extract(map, None, cookies.jwt)
        .map(|t| t.map(str::to_string))
        .map_err(Refused::Jwt)
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn found(pairs: &[(&str, &str)], cookie: Option<&str>) -> Result<Option<String>, Refused> {
    token_in(&headers(pairs), cookie)
}

fn ok(token: &str) -> Result<Option<String>, Refused> {
    Ok(Some(token.to_string()))
}

const MALFORMED: Result<Option<String>, Refused> = Err(Refused::Jwt(JwtError::MalformedHeader));

#[test]
fn each_source_alone_and_all_three_agreeing() {
    let all = [
        ("cookie", "session=t1"),
        ("authorization", "Bearer t1"),
        ("customer-auth", "JWT t1"),
    ];
    for n in 1..=3 {
        assert_eq!(found(&all[..n], Some("session")), ok("t1"), "{n}");
        assert_eq!(found(&all[n - 1..n], Some("session")), ok("t1"), "{n}");
    }
    assert_eq!(
        found(&all[..1], None),
        Ok(None),
        "no JWT_COOKIE: cookies are not a source"
    );
    assert_eq!(found(&[], Some("session")), Ok(None));
}

#[test]
fn customer_auth_beats_authorization_beats_the_cookie() {
    // The order shows where the first source is present but unusable: it is refused, never
    // passed over for the next one.
    assert_eq!(
        found(
            &[("customer-auth", "JWT"), ("authorization", "Bearer t1")],
            None
        ),
        MALFORMED
    );
    assert_eq!(
        found(
            &[("authorization", "Bearer"), ("cookie", "session=t1")],
            Some("session")
        ),
        MALFORMED
    );
}

#[test]
fn two_different_tokens_are_refused_whichever_sources_hold_them() {
    let two = |a, b| Err(Refused::Ambiguous(Ambiguity::TwoIdentifiers(a, b)));
    use edge_auth_proxy::identity::identifiers::Source::*;
    let name = Some("session");
    for (pairs, expected) in [
        (
            [("customer-auth", "JWT a"), ("authorization", "Bearer b")],
            two(CustomerAuth, Authorization),
        ),
        (
            [("customer-auth", "JWT a"), ("cookie", "session=b")],
            two(CustomerAuth, JwtCookie),
        ),
        (
            [("authorization", "Bearer a"), ("cookie", "session=b")],
            two(Authorization, JwtCookie),
        ),
        (
            [("customer-auth", "JWT a"), ("customer-auth", "JWT b")],
            two(CustomerAuth, CustomerAuth),
        ),
        (
            [("authorization", "Bearer a"), ("authorization", "Bearer b")],
            two(Authorization, Authorization),
        ),
    ] {
        assert_eq!(found(&pairs, name), expected, "{pairs:?}");
    }
}

#[test]
fn schemes_are_case_insensitive_and_spacing_tolerant() {
    for value in [
        "JWT t1", "jwt t1", "Jwt t1", "JWT   t1", " JWT t1 ", "JWT\tt1",
    ] {
        assert_eq!(
            found(&[("customer-auth", value)], None),
            ok("t1"),
            "{value:?}"
        );
    }
    for value in ["Bearer t2", "bearer t2", "BEARER t2", "Bearer  t2"] {
        assert_eq!(
            found(&[("authorization", value)], None),
            ok("t2"),
            "{value:?}"
        );
    }
}

#[test]
fn a_present_customer_auth_must_be_well_formed() {
    // Next to an Authorization holding the same identifier (a different one would be two
    // identifiers, refused first).
    for value in [
        "Bearer t1",
        "JWT",
        "JWT ",
        "JWTt1",
        "t1",
        "JWT a b",
        "Basic t1",
    ] {
        assert_eq!(
            found(
                &[("customer-auth", value), ("authorization", "Bearer t1")],
                Some("s")
            ),
            MALFORMED,
            "{value:?} must not fall through"
        );
    }
    let twice = [("customer-auth", "JWT t1"), ("customer-auth", "JWT t1")];
    assert_eq!(found(&twice, None), MALFORMED);
}

#[test]
fn a_non_bearer_authorization_falls_through_to_the_cookie() {
    let basic = ("authorization", "Basic dXNlcjpwdw==");
    assert_eq!(
        found(&[basic, ("cookie", "session=c1")], Some("session")),
        ok("c1")
    );
    assert_eq!(found(&[basic], Some("session")), Ok(None));
    for value in ["Bearer", "Bearer ", "Bearer a b"] {
        assert_eq!(
            found(
                &[("authorization", value), ("cookie", "session=c1")],
                Some("session")
            ),
            MALFORMED,
            "{value:?}"
        );
    }
    let twice = [("authorization", "Bearer a"), ("authorization", "bearer a")];
    assert_eq!(found(&twice, None), MALFORMED);
}

#[test]
fn the_cookie_is_found_among_several_and_across_headers() {
    let name = Some("session");
    assert_eq!(
        found(&[("cookie", "theme=dark; session=c1; lang=en")], name),
        ok("c1")
    );
    assert_eq!(
        found(&[("cookie", "theme=dark;session=c1")], name),
        ok("c1")
    );
    assert_eq!(
        found(&[("cookie", "theme=dark"), ("cookie", "session=c2")], name),
        ok("c2")
    );
    assert_eq!(found(&[("cookie", "session=\"c3\"")], name), ok("c3"));
    // Names are compared as origins compare them: case and percent-escapes folded, so another
    // spelling is the same cookie; a longer or shorter name is another cookie.
    assert_eq!(
        found(&[("cookie", "xsession=no; session_=no; sessio=no")], name),
        Ok(None)
    );
    for spelling in ["Session", "SESSION", "s%65ssion", "S%45SSION", " session"] {
        assert_eq!(
            found(&[("cookie", &format!("{spelling}=c4"))], name),
            ok("c4"),
            "{spelling}"
        );
    }
    // An emptied session cookie is no token.
    assert_eq!(found(&[("cookie", "session=; theme=dark")], name), Ok(None));
    assert_eq!(found(&[("cookie", "session=\"\"")], name), Ok(None));
    // JWT text contains no '=', but a value may; only the first '=' splits.
    assert_eq!(found(&[("cookie", "session=a.b.c==")], name), ok("a.b.c=="));
}

#[test]
fn a_non_ascii_cookie_header_does_not_hide_ours() {
    let mut map = headers(&[("cookie", "session=c1")]);
    map.insert("cookie", HeaderValue::from_bytes(b"x=\xff").unwrap());
    map.append("cookie", HeaderValue::from_static("session=c1"));
    assert_eq!(token_in(&map, Some("session")), ok("c1"));
}

#[test]
fn a_jwt_cookie_sent_twice_is_refused_not_validated_first() {
    let name = Some("session");
    let dup = Err(Refused::Ambiguous(Ambiguity::DuplicateJwtCookie));
    // In one header, in two headers, one empty and one not (either order), both empty.
    for pairs in [
        &[("cookie", "session=valid; session=forged")][..],
        &[("cookie", "session=valid;session=valid")],
        &[(
            "cookie",
            "theme=dark; session=valid; lang=en; session=forged",
        )],
        &[("cookie", "session=valid"), ("cookie", "session=forged")],
        &[
            ("cookie", "theme=dark; session=valid"),
            ("cookie", "lang=en; session=forged"),
        ],
        &[("cookie", "session=; session=valid")],
        &[("cookie", "session=valid"), ("cookie", "session=")],
        &[("cookie", "session=\"\""), ("cookie", "session=valid")],
        &[("cookie", "session=; session=")],
        &[("cookie", " session =valid; session= forged")],
        // Two Cookie lines, as workerd hands them over: joined with ", ".
        &[("cookie", "session=valid, session=forged")],
        &[("cookie", "theme=dark, session=valid; session=forged")],
        // Names folded as origins fold them (ASP.NET: case; ASP.NET Core, PHP: escapes).
        &[("cookie", "session=valid; SESSION=forged")],
        &[("cookie", "session=valid; %73ession=forged")],
        &[("cookie", "session=valid"), ("cookie", "Sess%69on=forged")],
        &[("cookie", "session=valid, SeSsIoN=forged")],
        &[("cookie", "session=valid; +session=forged")],
        &[("cookie", "s%zz=1; session=valid; bad%=2; Session=forged")],
    ] {
        assert_eq!(found(pairs, name), dup, "{pairs:?}");
    }
    // Whichever source holds the token: the cookies reach the origin either way.
    for source in [("customer-auth", "JWT t1"), ("authorization", "Bearer t1")] {
        assert_eq!(
            found(&[source, ("cookie", "session=a; session=b")], name),
            dup,
            "{source:?}"
        );
    }
    // Other cookies may repeat; without JWT_COOKIE no cookie is looked at.
    assert_eq!(
        found(&[("cookie", "theme=a; theme=b; session=c1")], name),
        ok("c1")
    );
    assert_eq!(found(&[("cookie", "session=a; session=b")], None), Ok(None));
}

#[test]
fn a_non_ascii_cookie_header_cannot_hide_a_second_jwt_cookie() {
    let mut map = headers(&[("cookie", "session=valid")]);
    map.append(
        "cookie",
        HeaderValue::from_bytes(b"x=\xe9; session=forged").unwrap(),
    );
    assert_eq!(
        token_in(&map, Some("session")),
        Err(Refused::Ambiguous(Ambiguity::DuplicateJwtCookie))
    );
    // Our own cookie with a byte no JWT has is a malformed token, never skipped.
    let mut map = HeaderMap::new();
    map.append(
        "cookie",
        HeaderValue::from_bytes(b"session=a\xe9b").unwrap(),
    );
    assert_eq!(
        token_in(&map, Some("session")),
        Err(Refused::Jwt(JwtError::Malformed))
    );
}

#[test]
fn underscore_aliases_are_never_a_jwt_source() {
    // The gateway removes them before the origin; it never reads a token from them either.
    for alias in [
        ("customer_auth", "JWT t1"),
        ("Customer_Auth", "JWT t1"),
        ("authorization_", "Bearer t1"),
        ("x_authorization", "Bearer t1"),
    ] {
        assert_eq!(found(&[alias], Some("session")), Ok(None), "{alias:?}");
        assert_eq!(
            found(&[alias, ("authorization", "Bearer real")], None),
            ok("real"),
            "{alias:?}"
        );
    }
}
