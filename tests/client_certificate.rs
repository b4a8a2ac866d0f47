//! `client_certificate` on the whole request path, natively: every state the edge reports of a
//! caller's TLS client certificate (`request.cf.tlsClientAuth`), the allow-lists, and how the
//! partner's certificate combines with the customer's JWT (both must hold; the certificate is
//! checked first). Each refusal is 403 `client-certificate-required` and never reaches the
//! origin.

mod common;

use common::*;

use std::collections::HashMap;

use edge_auth_proxy::io::{Body, GatewayResponse, TlsClientAuth};
use edge_auth_proxy::proxy::log::RequestLog;
use edge_auth_proxy::proxy::Gateway;
use futures::executor::block_on;
use http::Method;
use serde_json::{json, Value};

const PARTNER: &str = "CN=partner-prod,O=Partner";
const FP: &str = "3f1c0e2a9b8d7c6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e";
const OTHER_FP: &str = "0000000000000000000000000000000000000000000000000000000000000001";

fn routes() -> String {
    // The fingerprint configured with colons and in upper case, as a certificate viewer shows it.
    let colons = FP
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    json!([
        {"prefix": "/by-subject", "auth": "public",
         "client_certificate": {"required": true, "subjects": [PARTNER]}},
        {"prefix": "/by-fingerprint", "auth": "public",
         "client_certificate": {"required": true, "fingerprints_sha256": [colons]}},
        {"prefix": "/any", "auth": "public", "client_certificate": {"required": true}},
        {"prefix": "/customer", "auth": "jwt",
         "client_certificate": {"required": true, "subjects": [PARTNER]}},
        {"prefix": "/trial", "auth": "report",
         "client_certificate": {"required": true, "subjects": [PARTNER]}},
        {"prefix": "/", "auth": "public"}
    ])
    .to_string()
}

fn world() -> (Gateway, Svc) {
    let routes = routes();
    let vars: HashMap<&str, &str> = [
        ("ORIGIN_URL", "https://origin.example/api"),
        ("TOKEN_URL", TOKEN_URL),
        ("CLIENT_ID", "client-1"),
        ("CLIENT_SECRET", CLIENT_SECRET),
        ("API_KEY", API_KEY),
        ("JWT_ALGORITHMS", "HS256"),
        ("JWT_HMAC_SECRET", HMAC_SECRET),
        ("JWT_ISSUER", ISSUER),
        ("ROUTES", routes.as_str()),
    ]
    .into_iter()
    .collect();
    let http = common::token_endpoint_and_origin();
    let gw = gateway(&vars);
    assert!(gw.config_error().is_none(), "{:?}", gw.config_error());
    (gw, services(http))
}

fn send(
    path: &str,
    tls: Option<TlsClientAuth>,
    headers: &[(&str, &str)],
) -> (GatewayResponse<Vec<u8>>, RequestLog, usize) {
    let (gw, svc) = world();
    let mut req = request(Method::GET, path, headers, Body::Empty);
    req.tls_client_auth = tls;
    let (resp, log) = block_on(gw.handle(&svc, req));
    let forwarded = svc.http.calls_to("https://origin.example/").len();
    (resp, log, forwarded)
}

fn problem_type(resp: &GatewayResponse<Vec<u8>>) -> String {
    match &resp.body {
        Body::Bytes(b) => serde_json::from_slice::<Value>(b).unwrap()["type"]
            .as_str()
            .unwrap()
            .to_string(),
        _ => String::new(),
    }
}

#[track_caller]
fn assert_refused(sent: (GatewayResponse<Vec<u8>>, RequestLog, usize), reason: &str) {
    let (resp, log, forwarded) = sent;
    assert_eq!(resp.status, 403);
    assert!(
        problem_type(&resp).ends_with("client-certificate-required"),
        "{}",
        problem_type(&resp)
    );
    assert_eq!(log.outcome, "client_certificate_required");
    assert_eq!(log.client_certificate, Some(reason));
    assert_eq!(forwarded, 0);
}

#[track_caller]
fn assert_forwarded(sent: (GatewayResponse<Vec<u8>>, RequestLog, usize)) {
    assert_eq!(sent.0.status, 200, "{}", problem_type(&sent.0));
    assert_eq!(sent.2, 1);
}

fn state(presented: &str, verified: &str, revoked: &str) -> TlsClientAuth {
    TlsClientAuth {
        cert_presented: presented.into(),
        cert_verified: verified.into(),
        cert_revoked: revoked.into(),
        ..verified_certificate(PARTNER, FP)
    }
}

#[test]
fn every_state_the_edge_reports() {
    for path in ["/by-subject/x", "/by-fingerprint/x", "/any/x"] {
        assert_forwarded(send(path, Some(verified_certificate(PARTNER, FP)), &[]));
        // No `request.cf` at all (not on Cloudflare, or no mTLS on the hostname).
        assert_refused(send(path, None, &[]), "absent");
        // None presented: what the edge reports on an mTLS hostname without a certificate.
        assert_refused(send(path, Some(state("0", "NONE", "0")), &[]), "absent");
        assert_refused(send(path, Some(TlsClientAuth::default()), &[]), "absent");
        // Presented, and not verified: the edge's `FAILED:<reason>`, or anything else.
        for verdict in [
            "FAILED:self signed certificate",
            "FAILED:certificate has expired",
            "success",
            "",
        ] {
            assert_refused(
                send(path, Some(state("1", verdict, "0")), &[]),
                "not_verified",
            );
        }
        // Verified, and revoked.
        assert_refused(send(path, Some(state("1", "SUCCESS", "1")), &[]), "revoked");
    }
}

#[test]
fn subjects_compare_exactly_as_the_edge_writes_them() {
    for other in [
        "CN=partner-test,O=Partner",
        "CN=partner-prod,O=Partner,OU=x",
        "cn=partner-prod,o=Partner",
        "CN=partner-prod, O=Partner",
        "O=Partner,CN=partner-prod",
        "",
    ] {
        assert_refused(
            send("/by-subject/x", Some(verified_certificate(other, FP)), &[]),
            "not_listed",
        );
    }
}

#[test]
fn fingerprints_match_ignoring_case_and_colons() {
    let upper_colons = FP
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    for fp in [FP.to_string(), FP.to_uppercase(), upper_colons] {
        assert_forwarded(send(
            "/by-fingerprint/x",
            Some(verified_certificate("CN=whoever", &fp)),
            &[],
        ));
    }
    for fp in [OTHER_FP, &FP[..62], ""] {
        assert_refused(
            send(
                "/by-fingerprint/x",
                Some(verified_certificate(PARTNER, fp)),
                &[],
            ),
            "not_listed",
        );
    }
}

#[test]
fn with_no_list_any_verified_certificate_passes() {
    assert_forwarded(send(
        "/any/x",
        Some(verified_certificate("CN=anyone", OTHER_FP)),
        &[],
    ));
}

#[test]
fn both_the_partner_and_the_customer_must_hold_certificate_first() {
    let good = jwt(json!({"iss": ISSUER, "sub": "alice", "exp": NOW + 600}));
    let bad = jwt(json!({"iss": ISSUER, "sub": "alice", "exp": NOW - 600}));
    let bearer = |t: &str| format!("Bearer {t}");
    let partner = || Some(verified_certificate(PARTNER, FP));
    assert_forwarded(send(
        "/customer/x",
        partner(),
        &[("authorization", &bearer(&good))],
    ));
    // Certificate good, token bad: the customer's refusal, 401.
    let (resp, log, forwarded) = send(
        "/customer/x",
        partner(),
        &[("authorization", &bearer(&bad))],
    );
    assert_eq!((resp.status, forwarded), (401, 0));
    assert_eq!(log.client_certificate, None);
    // Certificate good, no token: 401.
    assert_eq!(send("/customer/x", partner(), &[]).0.status, 401);
    // Certificate bad, token good: 403, before the token is looked at.
    assert_refused(
        send(
            "/customer/x",
            Some(verified_certificate("CN=intruder", OTHER_FP)),
            &[("authorization", &bearer(&good))],
        ),
        "not_listed",
    );
    // Certificate absent, token bad: the partner is refused first.
    let (resp, log, _) = send("/customer/x", None, &[("authorization", &bearer(&bad))]);
    assert_eq!(resp.status, 403);
    assert_eq!(log.client_certificate, Some("absent"));
    assert_eq!(log.jwt_check, None);
}

#[test]
fn report_routes_still_require_the_certificate() {
    // `report` rolls out the customer's checks; the partner's certificate is not rolled out.
    assert_refused(send("/trial/x", None, &[]), "absent");
    let (resp, log, forwarded) = send("/trial/x", Some(verified_certificate(PARTNER, FP)), &[]);
    assert_eq!((resp.status, forwarded), (200, 1));
    assert_eq!(log.report, Some("missing_token"));
}

#[test]
fn routes_without_it_ignore_the_certificate() {
    assert_forwarded(send("/elsewhere", None, &[]));
    assert_forwarded(send(
        "/elsewhere",
        Some(state("1", "FAILED:whatever", "1")),
        &[],
    ));
}

#[test]
fn bad_rules_are_configuration_errors_naming_the_route() {
    for (rule, place) in [
        (
            json!({"required": false}),
            "ROUTES[0].client_certificate.required:",
        ),
        (json!({}), "ROUTES[0].client_certificate.required:"),
        (
            json!({"required": true, "subjects": []}),
            "ROUTES[0].client_certificate.subjects:",
        ),
        (
            json!({"required": true, "fingerprints_sha256": ["not-hex"]}),
            "ROUTES[0].client_certificate.fingerprints_sha256:",
        ),
        (
            json!({"required": true, "subject": ["x"]}),
            "ROUTES[0].client_certificate:",
        ),
        (json!(["CN=x"]), "ROUTES[0].client_certificate:"),
    ] {
        let routes =
            json!([{"prefix": "/a", "auth": "public", "client_certificate": rule}]).to_string();
        let vars: HashMap<&str, &str> = [
            ("ORIGIN_URL", "https://origin.example/api"),
            ("TOKEN_URL", TOKEN_URL),
            ("CLIENT_ID", "client-1"),
            ("CLIENT_SECRET", CLIENT_SECRET),
            ("API_KEY", API_KEY),
            ("ROUTES", routes.as_str()),
        ]
        .into_iter()
        .collect();
        let err = gateway(&vars).config_error().expect(&routes).to_string();
        assert!(err.contains(place), "{routes}: {err}");
        // The setting's values are never repeated (a fingerprint or DN is no secret, but the
        // rule is the same for every setting).
        assert!(!err.contains("not-hex"), "{err}");
    }
}
