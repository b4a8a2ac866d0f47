//! One identifier per request, through the whole gateway, natively: on every route that reads
//! a customer identifier (`jwt`, `optional`, `report`, `opaque`), every pair of sources
//! (`customer-auth`, `Authorization`, the `JWT_COOKIE` cookie, the `SESSION_COOKIE` cookie)
//! holding two different identifiers is 400, and the same identifier is fine; the identifier
//! cookies sent twice, in every spelling an origin folds to one name, are 400. A refusal costs
//! no token, no introspection call and no origin request, and names no identifier.
//!
//! Written against the gateway's public request API and its log line's JSON, so that it runs
//! unchanged against a build from before the check.

mod common;

use common::*;

use std::collections::HashMap;

use common::FakeHttp;
use edge_auth_proxy::io::Body;
use edge_auth_proxy::io::GatewayResponse;
use edge_auth_proxy::proxy::log::RequestLog;
use edge_auth_proxy::proxy::Gateway;
use futures::executor::block_on;
use http::Method;
use serde_json::{json, Value};

const ROUTES: &str = r#"[
  { "prefix": "/public", "auth": "public" },
  { "prefix": "/maybe", "auth": "optional" },
  { "prefix": "/report", "auth": "report" },
  { "prefix": "/session", "auth": "opaque" },
  { "prefix": "/account", "auth": "jwt" }
]"#;

/// Sessions the scripted introspection endpoint knows to be active; any other is inactive.
const ACTIVE: [&str; 2] = ["sess-alice-1", "sess-bob-22"];
const REVOKED: &str = "sess-revoked-3";

fn gateway() -> Gateway {
    let vars: HashMap<&str, &str> = [
        ("ORIGIN_URL", "https://origin.example/api"),
        ("TOKEN_URL", TOKEN_URL),
        ("CLIENT_ID", "client-1"),
        ("CLIENT_SECRET", "client-secret-value"),
        ("API_KEY", "api-key-value"),
        ("JWT_ALGORITHMS", "HS256"),
        ("JWT_HMAC_SECRET", HMAC_SECRET),
        ("JWT_ISSUER", ISSUER),
        ("JWT_COOKIE", "jwt"),
        ("ROUTES", ROUTES),
        ("INTROSPECTION_URL", INTROSPECT),
        ("SESSION_COOKIE", "sid"),
    ]
    .into_iter()
    .collect();
    let get = |n: &str| vars.get(n).map(|v| v.to_string());
    Gateway::new(&get)
}

fn services() -> Svc {
    let http = FakeHttp::default();
    http.on(TOKEN_URL, |_| {
        let body = r#"{"token_type":"Bearer","access_token":"at-1","expires_in":3600}"#;
        Ok((200, vec![], body.as_bytes().to_vec()))
    });
    http.on(INTROSPECT, move |seen| {
        let token = form_urlencoded::parse(&seen.body)
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let answer = if ACTIVE.contains(&token.as_str()) {
            json!({"active": true, "iss": ISSUER, "sub": token, "exp": NOW + 600})
        } else {
            json!({"active": false})
        };
        Ok((200, vec![], answer.to_string().into_bytes()))
    });
    http.on(ORIGIN, |_| Ok((200, vec![], b"{}".to_vec())));
    common::services(http)
}

fn customer_jwt(sub: &str) -> String {
    jwt(json!({"iss": ISSUER, "sub": sub, "exp": NOW + 600}))
}

struct Answer {
    status: u16,
    body: String,
    log: Value,
}

fn send(gw: &Gateway, svc: &Svc, path: &str, headers: &[(&str, &[u8])]) -> Answer {
    let req = request(Method::GET, path, headers, Body::Empty);
    let (resp, log): (GatewayResponse<Vec<u8>>, RequestLog) = block_on(gw.handle(svc, req));
    let body = match resp.body {
        Body::Bytes(b) | Body::Stream(b) => String::from_utf8_lossy(&b).into_owned(),
        Body::Empty => String::new(),
    };
    Answer {
        status: resp.status,
        body,
        log: serde_json::from_str(&log.to_json()).unwrap(),
    }
}

/// How many calls each dependency got: token endpoint, introspection, origin.
fn calls(svc: &Svc) -> (usize, usize, usize) {
    (
        svc.http.calls_to(TOKEN_URL).len(),
        svc.http.calls_to(INTROSPECT).len(),
        svc.http.calls_to(ORIGIN).len(),
    )
}

/// A 400 `invalid_request` problem that names neither identifier, reached nobody, and logged
/// `outcome` and, for two identifiers, the two places.
#[track_caller]
fn assert_refused(
    answer: &Answer,
    svc: &Svc,
    outcome: &str,
    conflict: [&str; 2],
    secrets: &[&str],
    case: &str,
) {
    assert_eq!(answer.status, 400, "{case}: {}", answer.body);
    let problem: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(
        problem["type"], "urn:edge-auth-proxy:problem:invalid-request",
        "{case}"
    );
    assert_eq!(answer.log["outcome"], outcome, "{case}");
    assert_eq!(answer.log["identifier_conflict"], json!(conflict), "{case}");
    for secret in secrets {
        assert!(!answer.body.contains(secret), "{case}: the answer names it");
        assert!(
            !answer.log.to_string().contains(secret),
            "{case}: the log names it"
        );
    }
    assert_eq!(
        calls(svc),
        (0, 0, 0),
        "{case}: no token, no introspection, no origin"
    );
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Src {
    CustomerAuth,
    Authorization,
    JwtCookie,
    SessionCookie,
}

const SOURCES: [Src; 4] = [
    Src::CustomerAuth,
    Src::Authorization,
    Src::JwtCookie,
    Src::SessionCookie,
];

impl Src {
    fn log(self) -> &'static str {
        match self {
            Src::CustomerAuth => "customer-auth",
            Src::Authorization => "authorization",
            Src::JwtCookie => "jwt_cookie",
            Src::SessionCookie => "session_cookie",
        }
    }

    /// The field carrying `id` from this source; `customer-auth` with the scheme the route's
    /// kind expects.
    fn field(self, id: &str, opaque: bool) -> (&'static str, Vec<u8>) {
        match self {
            Src::CustomerAuth if opaque => ("customer-auth", format!("Session {id}").into()),
            Src::CustomerAuth => ("customer-auth", format!("JWT {id}").into()),
            Src::Authorization => ("authorization", format!("Bearer {id}").into()),
            Src::JwtCookie => ("cookie", format!("jwt={id}").into()),
            Src::SessionCookie => ("cookie", format!("sid={id}").into()),
        }
    }
}

/// Each route that reads an identifier, and two good identifiers of its kind.
fn kinds() -> Vec<(&'static str, bool, [String; 2])> {
    let jwts = [customer_jwt("alice"), customer_jwt("bob")];
    let sessions = [ACTIVE[0].to_string(), ACTIVE[1].to_string()];
    vec![
        ("/account/profile", false, jwts.clone()),
        ("/maybe/profile", false, jwts.clone()),
        ("/report/profile", false, jwts),
        ("/session/profile", true, sessions),
    ]
}

/// A request's fields, owned.
type Fields = Vec<(&'static str, Vec<u8>)>;

fn headers_of<'a>(fields: &'a [(&'static str, Vec<u8>)]) -> Vec<(&'static str, &'a [u8])> {
    fields.iter().map(|(k, v)| (*k, v.as_slice())).collect()
}

// ---------------------------------------------------------------------------------------------
// the issue's reproductions

#[test]
fn the_issue_reproductions_are_refused() {
    let gw = gateway();
    let (alice, other) = (ACTIVE[0], customer_jwt("mallory"));
    let cases: [(&str, &str, Fields, &str, [&str; 2]); 4] = [
        (
            "opaque: customer-auth Session L, Cookie sid=one; sid=two",
            "/session/x",
            vec![
                ("customer-auth", format!("Session {alice}").into()),
                ("cookie", b"sid=one; sid=two".to_vec()),
            ],
            "duplicate_session_cookie",
            ["session_cookie", "session_cookie"],
        ),
        (
            "opaque: customer-auth Session L, Cookie sid=<revoked>",
            "/session/x",
            vec![
                ("customer-auth", format!("Session {alice}").into()),
                ("cookie", format!("sid={REVOKED}").into()),
            ],
            "two_identifiers",
            ["customer-auth", "session_cookie"],
        ),
        (
            "jwt: customer-auth JWT <valid>, Cookie jwt=<another token>",
            "/account/x",
            vec![
                (
                    "customer-auth",
                    format!("JWT {}", customer_jwt("alice")).into(),
                ),
                ("cookie", format!("jwt={other}").into()),
            ],
            "two_identifiers",
            ["customer-auth", "jwt_cookie"],
        ),
        (
            "opaque: sid=L; SID=x",
            "/session/x",
            vec![("cookie", format!("sid={alice}; SID={REVOKED}").into())],
            "duplicate_session_cookie",
            ["session_cookie", "session_cookie"],
        ),
    ];
    for (case, path, fields, outcome, conflict) in cases {
        let svc = services();
        let answer = send(&gw, &svc, path, &headers_of(&fields));
        assert_refused(&answer, &svc, outcome, conflict, &[alice, REVOKED], case);
    }
}

// ---------------------------------------------------------------------------------------------
// every pair of sources, on every kind of route

#[test]
fn two_different_identifiers_in_any_two_sources_are_400_on_every_reading_route() {
    let gw = gateway();
    for (path, opaque, [one, two]) in kinds() {
        for (i, &a) in SOURCES.iter().enumerate() {
            for &b in &SOURCES[i + 1..] {
                // Each order: the good identifier first, then second.
                for (x, y) in [(&one, &two), (&two, &one)] {
                    let svc = services();
                    let fields = [a.field(x, opaque), b.field(y, opaque)];
                    let answer = send(&gw, &svc, path, &headers_of(&fields));
                    let case = format!("{path} {a:?}={x:.12} {b:?}={y:.12}");
                    assert_refused(
                        &answer,
                        &svc,
                        "two_identifiers",
                        [a.log(), b.log()],
                        &[&one, &two],
                        &case,
                    );
                }
            }
        }
    }
}

#[test]
fn the_same_identifier_in_any_two_sources_or_all_four_is_one() {
    let gw = gateway();
    for (path, opaque, [one, _]) in kinds() {
        let mut subsets: Vec<Vec<Src>> = Vec::new();
        for (i, &a) in SOURCES.iter().enumerate() {
            for &b in &SOURCES[i + 1..] {
                subsets.push(vec![a, b]);
            }
        }
        subsets.push(SOURCES.to_vec());
        for subset in subsets {
            let svc = services();
            let fields: Vec<_> = subset.iter().map(|s| s.field(&one, opaque)).collect();
            let answer = send(&gw, &svc, path, &headers_of(&fields));
            let case = format!("{path} {subset:?}");
            assert_eq!(answer.status, 200, "{case}: {}", answer.body);
            assert_eq!(answer.log["outcome"], "forwarded", "{case}");
            assert_eq!(answer.log["identifier_conflict"], Value::Null, "{case}");
            if !path.starts_with("/report") {
                let want = if opaque { "opaque" } else { "jwt" };
                assert_eq!(answer.log["identity"], want, "{case}: verified");
            }
            assert_eq!(calls(&svc).2, 1, "{case}");
        }
    }
}

#[test]
fn a_bad_identifier_beside_a_good_one_is_refused_before_it_is_checked() {
    // The other one need not be valid to be refused: a revoked session or a forged JWT next
    // to a good one is the attack. Neither is looked at.
    let gw = gateway();
    for (path, opaque, [good, _]) in kinds() {
        let bad = if opaque {
            REVOKED.to_string()
        } else {
            format!("{}x", customer_jwt("mallory"))
        };
        for &other in &SOURCES[1..] {
            let svc = services();
            let fields = [
                Src::CustomerAuth.field(&good, opaque),
                other.field(&bad, opaque),
            ];
            let answer = send(&gw, &svc, path, &headers_of(&fields));
            let case = format!("{path} customer-auth + {other:?}");
            assert_refused(
                &answer,
                &svc,
                "two_identifiers",
                ["customer-auth", other.log()],
                &[&good, &bad],
                &case,
            );
        }
    }
}

#[test]
fn a_header_repeated_with_two_identifiers_is_400_on_report_routes_too() {
    let gw = gateway();
    let (a, b) = (customer_jwt("alice"), customer_jwt("bob"));
    for (name, scheme, log) in [
        ("customer-auth", "JWT", "customer-auth"),
        ("authorization", "Bearer", "authorization"),
    ] {
        let svc = services();
        let fields = [
            (name, format!("{scheme} {a}").into_bytes()),
            (name, format!("{scheme} {b}").into_bytes()),
        ];
        let answer = send(&gw, &svc, "/report/x", &headers_of(&fields));
        assert_refused(
            &answer,
            &svc,
            "two_identifiers",
            [log, log],
            &[&a, &b],
            name,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// an identifier cookie sent twice

/// Every way of sending the cookie `name` twice, the first copy holding `id`.
fn twice(name: &str, id: &str) -> Vec<Vec<Vec<u8>>> {
    let upper = name.to_ascii_uppercase();
    let mixed: String = name
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    let escaped: String = name.bytes().map(|b| format!("%{b:02x}")).collect();
    let escaped_upper: String = name.bytes().map(|b| format!("%{b:02X}")).collect();
    let first_escaped = format!("%{:02X}{}", name.as_bytes()[0], &upper[1..]);
    let lines = |v: &[String]| v.iter().map(|l| l.clone().into_bytes()).collect::<Vec<_>>();
    vec![
        lines(&[format!("{name}={id}; {name}={id}")]),
        lines(&[format!("{name}={id}; {name}=other")]),
        lines(&[format!("{name}={id}; {upper}=other")]),
        lines(&[format!("{name}={id}; {mixed}=other")]),
        lines(&[format!("{name}={id}; {escaped}=other")]),
        lines(&[format!("{name}={id}; {escaped_upper}=other")]),
        lines(&[format!("{name}={id}; {first_escaped}=other")]),
        lines(&[format!("{name}={id}; {name}=")]),
        lines(&[format!("{name}=; {name}={id}")]),
        lines(&[format!("{name}={id}; \"{name}\"=x; {name}=\"\"")]),
        lines(&[format!("{name}={id}; {name}")]),
        lines(&[format!(" {name} ={id};{name}= other ")]),
        lines(&[format!("{name}={id}; +{name}=other")]),
        lines(&[format!("{name}={id}; %20{name}=other")]),
        lines(&[format!("{name}={id}, {upper}=other")]),
        lines(&[format!("theme=dark; {name}={id}"), format!("{upper}=other")]),
        lines(&[
            format!("{name}={id}"),
            "lang=en".to_string(),
            format!("{escaped}="),
        ]),
        lines(&[format!("a%zz=1; {name}={id}; b%=2; %=3; {mixed}=other")]),
        // Bytes outside ASCII in another cookie hide nothing.
        {
            let mut l = lines(&[format!("{name}={id}")]);
            let mut odd = b"z=\xe9\xff; ".to_vec();
            odd.extend(format!("{upper}=other").into_bytes());
            l.push(odd);
            l
        },
    ]
}

#[test]
fn an_identifier_cookie_sent_twice_in_any_spelling_is_400_whichever_source_holds_it() {
    let gw = gateway();
    for (path, opaque, [good, _]) in kinds() {
        for (cookie, outcome, log) in [
            ("jwt", "duplicate_jwt_cookie", "jwt_cookie"),
            ("sid", "duplicate_session_cookie", "session_cookie"),
        ] {
            for lines in twice(cookie, &good) {
                // The identifier in the cookie itself, or in a header next to it.
                for holder in [None, Some(Src::CustomerAuth), Some(Src::Authorization)] {
                    let svc = services();
                    let mut fields: Vec<(&str, Vec<u8>)> =
                        holder.iter().map(|s| s.field(&good, opaque)).collect();
                    fields.extend(lines.iter().map(|l| ("cookie", l.clone())));
                    let answer = send(&gw, &svc, path, &headers_of(&fields));
                    let case = format!(
                        "{path} {holder:?} {:?}",
                        lines
                            .iter()
                            .map(|l| String::from_utf8_lossy(l).replace(good.as_str(), "<id>"))
                            .collect::<Vec<_>>()
                    );
                    assert_refused(&answer, &svc, outcome, [log, log], &[&good], &case);
                }
            }
        }
    }
}

#[test]
fn other_cookies_and_lookalike_names_are_not_copies() {
    let gw = gateway();
    for (path, opaque, [good, _]) in kinds() {
        for line in [
            "theme=a; theme=b",
            "sid_=x; xsid=y; sidx=z; jwt_=x; xjwt=y",
            "s%zzid=x; sid%=y; s%69=z; s%2569d=w; %2Bsid=v",
            "si+d=x; j%20wt=y; =sid; =jwt",
        ] {
            let svc = services();
            let fields = [
                Src::CustomerAuth.field(&good, opaque),
                ("cookie", line.as_bytes().to_vec()),
            ];
            let answer = send(&gw, &svc, path, &headers_of(&fields));
            assert_eq!(answer.status, 200, "{path} {line}: {}", answer.body);
        }
    }
}

#[test]
fn a_cookie_name_spelled_another_way_is_the_cookie() {
    // What an origin folds to `sid` is the session cookie: the gateway checks it, and compares
    // it with the other sources.
    let gw = gateway();
    let alice = ACTIVE[0];
    for spelling in ["SID", "Sid", "s%69d", "S%49D", "%73%69%64"] {
        let svc = services();
        let line = format!("{spelling}={alice}");
        let answer = send(&gw, &svc, "/session/x", &[("cookie", line.as_bytes())]);
        assert_eq!(answer.status, 200, "{spelling}: {}", answer.body);
        assert_eq!(answer.log["identity"], "opaque", "{spelling}: vouched for");

        let (gw, svc) = (gateway(), services());
        let header = format!("Session {}", ACTIVE[1]);
        let answer = send(
            &gw,
            &svc,
            "/session/x",
            &[
                ("customer-auth", header.as_bytes()),
                ("cookie", line.as_bytes()),
            ],
        );
        assert_refused(
            &answer,
            &svc,
            "two_identifiers",
            ["customer-auth", "session_cookie"],
            &[alice, ACTIVE[1]],
            spelling,
        );
    }
}

#[test]
fn public_routes_read_no_identifier_and_refuse_none() {
    let gw = gateway();
    let svc = services();
    let answer = send(
        &gw,
        &svc,
        "/public/x",
        &[
            ("customer-auth", b"JWT a"),
            ("authorization", b"Bearer b"),
            ("cookie", b"sid=c; SID=d; jwt=e; jwt=f"),
        ],
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[test]
fn an_optional_route_without_an_identifier_is_still_forwarded() {
    let gw = gateway();
    let svc = services();
    let answer = send(&gw, &svc, "/maybe/x", &[("cookie", b"theme=dark")]);
    assert_eq!(answer.status, 200);
    // A session cookie alone is one identifier, not a JWT: the route stays anonymous.
    let answer = send(&gw, &svc, "/maybe/x", &[("cookie", b"sid=whatever")]);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.log["identity"], Value::Null);
}
