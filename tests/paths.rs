//! The request path's normalization: a table of hostile and benign paths with the canonical form
//! or the refusal each must get; a property against a permissive origin's reading of what is
//! forwarded; and the whole gateway refusing a path before routing, a token or the origin.
//!
//! The property runs 2,000 cases unless `PROPTEST_CASES` says otherwise.

mod common;

use common::*;

use std::collections::HashMap;

use common::{FakeClock, FakeHttp, MemoryKv};
use edge_auth_proxy::edge::path::{normalize, PathError, MAX_PATH_BYTES};
use edge_auth_proxy::identity::jwt::RustCryptoVerifier;
use edge_auth_proxy::io::Body;
use edge_auth_proxy::io::{GatewayRequest, GatewayResponse, Services};
use edge_auth_proxy::proxy::route::RouteTable;
use edge_auth_proxy::proxy::Gateway;
use futures::executor::block_on;
use http::{HeaderMap, Method};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{json, Value};

use PathError::*;

// ---------------------------------------------------------------------------------------------
// the table

fn ok(p: &str) -> Result<String, PathError> {
    Ok(p.to_string())
}

#[test]
fn every_path_of_the_table_gets_its_canonical_form_or_its_refusal() {
    let long_ok = format!("/{}", "a".repeat(MAX_PATH_BYTES - 1));
    let long_bad = format!("/{}", "a".repeat(MAX_PATH_BYTES));
    let long_encoded = format!("/{}", "%61".repeat((MAX_PATH_BYTES - 1) / 3));
    let long_decoded = format!("/{}", "a".repeat((MAX_PATH_BYTES - 1) / 3));
    let table: Vec<(&str, Result<String, PathError>)> = vec![
        // root, plain, trailing slashes, empty segments
        ("/", ok("/")),
        ("", ok("/")),
        ("account", ok("/account")),
        ("/account/getprofile", ok("/account/getprofile")),
        ("/account/getprofile/", ok("/account/getprofile/")),
        ("//account//getprofile", ok("/account/getprofile")),
        ("///", ok("/")),
        ("/account//", ok("/account/")),
        // percent-encoded unreserved characters are decoded, in both hex cases
        ("/%61ccount/getprofile", ok("/account/getprofile")),
        ("/%41ccount", ok("/Account")),
        ("/%7e%2D%5f%2E%30", ok("/~-_.0")),
        // other escapes stay, in upper case; raw bytes a path cannot hold are encoded
        ("/a%20b", ok("/a%20b")),
        ("/a%2ab", ok("/a%2Ab")),
        ("/a b", ok("/a%20b")),
        ("/%7B%7d", ok("/%7B%7D")),
        ("/a/b?c", ok("/a/b%3Fc")),
        // unicode: UTF-8 stays (encoded), anything else is refused
        ("/caf%C3%A9", ok("/caf%C3%A9")),
        ("/caf%c3%a9", ok("/caf%C3%A9")),
        ("/café", ok("/caf%C3%A9")),
        ("/%C0%AE%C0%AE/account", Err(InvalidUtf8)),
        ("/%c0%ae./account", Err(InvalidUtf8)),
        ("/%C3", Err(InvalidUtf8)),
        ("/%ED%A0%80", Err(InvalidUtf8)),
        ("/%C3é", Err(InvalidUtf8)),
        // dot segments, raw and encoded
        ("/a/./b", ok("/a/b")),
        ("/a/../b", ok("/b")),
        ("/../../account", ok("/account")),
        ("/a/../../..", ok("/")),
        ("/a/%2e%2e/b", ok("/b")),
        ("/a/%2E%2E/b", ok("/b")),
        ("/a/.%2e/b", ok("/b")),
        ("/a/%2e./b", ok("/b")),
        ("/a/%2e/b", ok("/a/b")),
        ("/a/b/..", ok("/a/")),
        ("/a/.", ok("/a/")),
        ("/a/b/../../c/./d/", ok("/c/d/")),
        ("/%2e%2e/%2e%2e/account", ok("/account")),
        ("/a/...", ok("/a/...")),
        ("/a/..b", ok("/a/..b")),
        // dot segments with parameters, and parameters at all
        (
            "/auth/customer_authenticate/..;/..;/account/getprofile",
            Err(DotSegmentWithParameters),
        ),
        ("/a/..;x/b", Err(DotSegmentWithParameters)),
        ("/a/.;x/b", Err(DotSegmentWithParameters)),
        ("/a/.;", Err(DotSegmentWithParameters)),
        ("/a/%2e%2e;/b", Err(DotSegmentWithParameters)),
        ("/a/..%3B/b", Err(DotSegmentWithParameters)),
        ("/account;x/getprofile", Err(Semicolon)),
        ("/account;jsessionid=abc", Err(Semicolon)),
        ("/account/getprofile;", Err(Semicolon)),
        ("/account%3Bx/getprofile", Err(Semicolon)),
        ("/account%3bx", Err(Semicolon)),
        // encoded separators, raw and encoded backslashes
        (
            "/auth/customer_authenticate/..%2F..%2Faccount%2Fgetprofile",
            Err(EncodedSlash),
        ),
        ("/account%2fgetprofile", Err(EncodedSlash)),
        ("/%2Faccount/getprofile", Err(EncodedSlash)),
        ("/account/%2e%2e%2faccount", Err(EncodedSlash)),
        ("/a%5Cb", Err(EncodedBackslash)),
        ("/a%5cb", Err(EncodedBackslash)),
        ("/a\\b", Err(Backslash)),
        ("/..\\account", Err(Backslash)),
        // double encoding
        ("/a%252Fb", Err(EncodedPercent)),
        ("/a%252fb", Err(EncodedPercent)),
        ("/a%25%32%46", Err(EncodedPercent)),
        ("/%252e%252e/account", Err(EncodedPercent)),
        ("/a%25", Err(EncodedPercent)),
        // NUL and control characters
        ("/a%00b", Err(Nul)),
        ("/a\0b", Err(Nul)),
        ("/a%0Ab", Err(ControlCharacter)),
        ("/a%0d%0aSet-Cookie:x", Err(ControlCharacter)),
        ("/a%7F", Err(ControlCharacter)),
        ("/a%1f", Err(ControlCharacter)),
        ("/a\tb", Err(ControlCharacter)),
        // malformed escapes
        ("/a%", Err(MalformedEscape)),
        ("/a%4", Err(MalformedEscape)),
        ("/a%zz", Err(MalformedEscape)),
        ("/a%4g", Err(MalformedEscape)),
        ("/a%%2F", Err(MalformedEscape)),
        // length
        (&long_ok, Ok(long_ok.clone())),
        (&long_bad, Err(TooLong)),
        (&long_encoded, Ok(long_decoded.clone())),
    ];
    assert!(table.len() >= 40);
    let mut failures = Vec::new();
    for (raw, want) in &table {
        let got = normalize(raw);
        if &got != want {
            failures.push(format!("{raw:?}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn canonical_forms_are_fixed_points() {
    for raw in [
        "//a/./b/../%63/",
        "/%7e%41/caf%c3%a9",
        "/a b/%2e%2e/c",
        "/x/..",
    ] {
        let once = normalize(raw).unwrap();
        assert_eq!(normalize(&once).as_ref(), Ok(&once), "{raw}");
    }
}

#[test]
fn refusals_describe_the_class_without_the_path() {
    for e in [
        EncodedSlash,
        EncodedBackslash,
        EncodedPercent,
        Nul,
        Backslash,
        DotSegmentWithParameters,
        Semicolon,
        MalformedEscape,
        ControlCharacter,
        InvalidUtf8,
        TooLong,
    ] {
        assert!(!e.description().is_empty() && !e.code().is_empty());
    }
    assert_eq!(EncodedSlash.description(), "an encoded slash (%2F)");
}

// ---------------------------------------------------------------------------------------------
// the property: a permissive origin reads the forwarded path as the gateway matched it

/// How a permissive origin reads a path: every `%XX` decoded once (nginx, many frameworks),
/// `\` as `/` (IIS, Windows stacks), `;params` stripped from each segment (Tomcat, Jetty: `..;`
/// is `..`), empty segments merged, dot segments resolved (RFC 3986 §5.2.4, with the same
/// trailing-slash rule).
fn permissive(path: &str) -> String {
    let decoded = String::from_utf8_lossy(&decode_once(path)).replace('\\', "/");
    let mut kept: Vec<&str> = Vec::new();
    let mut trailing = false;
    let segments: Vec<&str> = decoded.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let segment = segment.split(';').next().unwrap_or("");
        let last = i + 1 == segments.len();
        match segment {
            "" | "." => trailing = last,
            ".." => {
                kept.pop();
                trailing = last;
            }
            s => {
                kept.push(s);
                trailing = false;
            }
        }
    }
    let mut out = format!("/{}", kept.join("/"));
    if trailing && !kept.is_empty() {
        out.push('/');
    }
    out
}

fn decode_once(path: &str) -> Vec<u8> {
    let hex = |b: u8| char::from(b).to_digit(16).map(|d| d as u8);
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(hi), Some(lo)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

const CONTRACT_ROUTES: &str = r#"[
  { "prefix": "/auth/customer_authenticate", "auth": "public", "methods": ["POST"] },
  { "prefix": "/account/", "auth": "jwt", "methods": ["POST", "GET"] }
]"#;
const CATCH_ALL_ROUTES: &str =
    r#"[{"prefix":"/account/","auth":"jwt"},{"prefix":"/","auth":"public"}]"#;

fn selected(table: &RouteTable, path: &str) -> Option<String> {
    table
        .select(&Method::POST, path)
        .ok()
        .map(|r| r.prefix.clone())
}

/// Pieces that build routes and dot segments, drawn three times as often as the hostile ones,
/// so that about half the paths are accepted and many of those reach a route.
const STRUCTURE: &[&str] = &[
    "/",
    "/",
    "/",
    "/",
    "/account/",
    "/auth/customer_authenticate/",
    "account/",
    "/%61ccount/",
    ".",
    "..",
    "%2e",
    "%2E",
    "%2e%2e",
    ".%2e",
    "account",
    "auth",
    "customer_authenticate",
    "getprofile",
    "%61",
    "a",
    "x",
];
const HOSTILE: &[&str] = &[
    "/",
    "/",
    "/",
    ".",
    "..",
    ";",
    "%",
    "2F",
    "2f",
    "5C",
    "5c",
    "2e",
    "2E",
    "25",
    "3B",
    "00",
    "\\",
    "a",
    "account",
    "auth",
    "customer_authenticate",
    "getprofile",
    "%2e",
    "%2E",
    "%2F",
    "%2f",
    "%5C",
    "%61",
    "%41",
    "%25",
    "%3B",
    "%C3%A9",
    "%C0%AE",
    "%0A",
    "%20",
    "0",
    "f",
    "x",
    "~",
    "é",
    " ",
    "-",
    "_",
];

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000);
    Config {
        cases,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn refused_or_read_by_a_permissive_origin_as_it_was_matched(
        parts in prop::collection::vec(
            prop_oneof![3 => prop::sample::select(STRUCTURE), 1 => prop::sample::select(HOSTILE)],
            0..24,
        ),
        rooted in any::<bool>(),
    ) {
        let raw = format!("{}{}", if rooted { "/" } else { "" }, parts.concat());
        let Ok(forwarded) = normalize(&raw) else {
            return Ok(());
        };
        let origin_reads = permissive(&forwarded);
        // What the origin serves is the normalized path, decoded: nothing left to reinterpret.
        prop_assert_eq!(
            &origin_reads,
            &String::from_utf8(decode_once(&forwarded)).unwrap(),
            "raw {:?} forwarded {:?}", raw, forwarded
        );
        // And normalizing changed nothing such an origin would have read differently.
        prop_assert_eq!(&origin_reads, &permissive(&raw), "raw {:?}", raw);
        for routes in [CONTRACT_ROUTES, CATCH_ALL_ROUTES] {
            let table = RouteTable::parse(routes).unwrap();
            prop_assert_eq!(
                selected(&table, &forwarded),
                selected(&table, &origin_reads),
                "raw {:?} forwarded {:?} read as {:?}", raw, forwarded, origin_reads
            );
        }
    }
}

#[test]
fn the_model_reads_the_issue_examples_as_the_attacks_they_are() {
    // Without normalization these would match the public route and be served as protected.
    for raw in [
        "/auth/customer_authenticate/..;/..;/account/getprofile",
        "/auth/customer_authenticate/..%2F..%2Faccount%2Fgetprofile",
    ] {
        assert_eq!(permissive(raw), "/account/getprofile", "{raw}");
        assert!(normalize(raw).is_err(), "{raw}");
    }
    for raw in ["//account/getprofile", "/%61ccount/getprofile"] {
        assert_eq!(permissive(raw), "/account/getprofile");
        assert_eq!(normalize(raw).unwrap(), "/account/getprofile");
    }
    assert_eq!(permissive("/account%2Fgetprofile"), "/account/getprofile");
    assert_eq!(normalize("/account%2Fgetprofile"), Err(EncodedSlash));
}

// ---------------------------------------------------------------------------------------------
// the gateway

fn gateway(routes: Option<&str>) -> Gateway {
    let mut vars: HashMap<&str, String> = [
        ("ORIGIN_URL", "https://origin.example/api"),
        ("TOKEN_URL", "https://idp.example/oauth/access_token"),
        ("CLIENT_ID", "client-1"),
        ("CLIENT_SECRET", "client-secret-value"),
        ("API_KEY", "api-key-value"),
        ("JWT_ALGORITHMS", "HS256"),
        ("JWT_HMAC_SECRET", HMAC_SECRET),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect();
    if let Some(r) = routes {
        vars.insert("ROUTES", r.to_string());
    }
    let get = |n: &str| vars.get(n).cloned();
    Gateway::new(&get)
}

fn services() -> Services<FakeHttp, MemoryKv, FakeClock, RustCryptoVerifier> {
    let http = FakeHttp::default();
    http.on("https://idp.example/", |_| {
        let body = r#"{"token_type":"Bearer","access_token":"at-1","expires_in":3600}"#;
        Ok((200, vec![], body.as_bytes().to_vec()))
    });
    http.on("https://origin.example/", |_| {
        Ok((200, vec![], b"{}".to_vec()))
    });
    common::services(http)
}

fn customer_auth() -> String {
    format!("JWT {}", jwt(json!({"sub": "cust-42", "exp": NOW + 600})))
}

fn request(method: Method, path: &str, query: Option<&str>, jwt: bool) -> GatewayRequest<Vec<u8>> {
    let mut headers = HeaderMap::new();
    if jwt {
        headers.insert("customer-auth", customer_auth().parse().unwrap());
    }
    GatewayRequest {
        method,
        path: path.to_string(),
        query: query.map(str::to_string),
        headers,
        body: Body::Empty,
        tls_client_auth: None,
    }
}

fn body_json(resp: &GatewayResponse<Vec<u8>>) -> Value {
    match &resp.body {
        Body::Bytes(b) | Body::Stream(b) => serde_json::from_slice(b).unwrap(),
        Body::Empty => Value::Null,
    }
}

#[test]
fn a_refused_path_is_400_problem_json_before_routing_and_reaches_no_one() {
    for routes in [Some(CONTRACT_ROUTES), Some(CATCH_ALL_ROUTES), None] {
        let gw = gateway(routes);
        for (path, class, detail) in [
            (
                "/auth/customer_authenticate/..;/..;/account/getprofile",
                "dot_segment_with_parameters",
                "The request path contains a dot segment with parameters (such as ..;).",
            ),
            (
                "/auth/customer_authenticate/..%2F..%2Faccount%2Fgetprofile",
                "encoded_slash",
                "The request path contains an encoded slash (%2F).",
            ),
            (
                "/account%2Fgetprofile",
                "encoded_slash",
                "The request path contains an encoded slash (%2F).",
            ),
            (
                "/account;x/getprofile",
                "semicolon",
                "The request path contains a semicolon (path parameters are not accepted).",
            ),
            // a path no route serves: refused the same way, not 404
            (
                "/nowhere%252F",
                "encoded_percent",
                "The request path contains an encoded percent sign (%25).",
            ),
        ] {
            // With a valid JWT too: the refusal does not depend on who asks.
            for jwt in [false, true] {
                let svc = services();
                let (resp, log) =
                    block_on(gw.handle(&svc, request(Method::POST, path, Some("q=1"), jwt)));
                assert_eq!(resp.status, 400, "{path}");
                assert_eq!(resp.headers["content-type"], "application/problem+json");
                let body = body_json(&resp);
                assert_eq!(body["type"], "urn:edge-auth-proxy:problem:invalid-request");
                assert_eq!(body["title"], "Invalid request");
                assert_eq!(body["status"], 400);
                assert_eq!(body["detail"], detail, "{path}");
                assert_eq!(log.outcome, "invalid_path");
                assert_eq!(log.path_problem, Some(class));
                assert_eq!(log.route, None);
                assert_eq!(log.token_source, None);
                assert!(
                    svc.http.seen.borrow().is_empty(),
                    "{path}: neither the token endpoint nor the origin may be called"
                );
                let line: Value = serde_json::from_str(&log.to_json()).unwrap();
                assert_eq!(line["path_problem"], class);
            }
        }
    }
}

#[test]
fn the_normalized_path_is_matched_logged_and_forwarded_with_the_query_untouched() {
    let gw = gateway(Some(CATCH_ALL_ROUTES));
    let svc = services();
    let (resp, log) = block_on(gw.handle(
        &svc,
        request(
            Method::GET,
            "//%61ccount//getprofile/./x/..",
            Some("next=%2F..%2Fadmin&a=%61"),
            true,
        ),
    ));
    assert_eq!(resp.status, 200);
    let seen = svc.http.calls_to("https://origin.example/");
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].url,
        "https://origin.example/api/account/getprofile/?next=%2F..%2Fadmin&a=%61"
    );
    assert!(seen[0].headers.contains_key("customer-auth"));
    assert_eq!(log.path, "/account/getprofile/");
    assert_eq!(log.route.as_deref(), Some("/account/"));
    assert_eq!(log.path_problem, None);
}

#[test]
fn an_encoded_detour_to_a_protected_route_needs_the_jwt() {
    // `/%61ccount/…` used to miss `/account/` and fall to the catch-all public route.
    let gw = gateway(Some(CATCH_ALL_ROUTES));
    let svc = services();
    for path in [
        "/%61ccount/getprofile",
        "//account/getprofile",
        "/public/%2e%2e/account/getprofile",
    ] {
        let (resp, log) = block_on(gw.handle(&svc, request(Method::POST, path, None, false)));
        assert_eq!(resp.status, 401, "{path}");
        assert_eq!(log.route.as_deref(), Some("/account/"), "{path}");
    }
    assert!(svc.http.seen.borrow().is_empty());
}

#[test]
fn a_routes_prefix_that_is_not_normalized_is_a_500_naming_routes() {
    for prefix in ["//account", "/auth/../account", "/%61ccount", "/account;x"] {
        let routes = format!(r#"[{{"prefix": "{prefix}", "auth": "public"}}]"#);
        let gw = gateway(Some(&routes));
        let svc = services();
        let (resp, log) = block_on(gw.handle(&svc, request(Method::GET, "/account", None, false)));
        assert_eq!(resp.status, 500, "{prefix}");
        assert_eq!(log.outcome, "config_error");
        let detail = body_json(&resp)["detail"].as_str().unwrap().to_string();
        assert!(
            detail.contains("ROUTES") && detail.contains("normalized"),
            "{detail}"
        );
        assert!(svc.http.seen.borrow().is_empty());
    }
}
