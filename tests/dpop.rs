//! DPoP (RFC 9449) and certificate-bound tokens (RFC 8705) on the whole request path,
//! natively with a fixed clock: a token bound to a key (`cnf.jkt`) passes only with a fresh
//! proof signed by that key for this method and URL, and each hostile proof of the attacker's
//! checklist is refused, one at a time, with 401 and the `DPoP` challenge, never forwarded.
//! Then `cnf.x5t#S256` against the edge's client certificate, and routes whose
//! `sender_constraint` is `required`.

mod common;

use common::*;

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use edge_auth_proxy::identity::dpop::thumbprint;
use edge_auth_proxy::identity::jwt::{KeyFamily, RustCryptoVerifier};
use edge_auth_proxy::identity::signing::{SigningKey, SigningKeys};
use edge_auth_proxy::io::{Body, GatewayResponse, TlsClientAuth};
use edge_auth_proxy::proxy::log::RequestLog;
use edge_auth_proxy::proxy::Gateway;
use futures::executor::block_on;
use http::Method;
use jwt_compact::alg::{Hs256, Hs256Key};
use jwt_compact::{Algorithm, AlgorithmSignature};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Where the caller reached the gateway: the URL a proof's `htu` names.
const GATEWAY: &str = "https://api.example";
const FP: &str = "3f1c0e2a9b8d7c6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e";

fn keys() -> Value {
    serde_json::from_str(include_str!("fixtures/signing-keys.json")).unwrap()
}

/// One of the fixtures' private keys, as a client's DPoP key.
fn key(name: &str) -> SigningKey {
    let raw = keys()[name].to_string();
    let families = [KeyFamily::EcP256, KeyFamily::OkpEd25519, KeyFamily::Rsa];
    SigningKeys::from_setting("TEST_KEY", &raw, &families)
        .unwrap()
        .signing()
        .clone()
}

/// The public JWK a client puts in its proofs' header.
fn public_jwk(key: &SigningKey) -> Map<String, Value> {
    let mut jwk: Map<String, Value> = serde_json::from_str(&key.public_jwk_json()).unwrap();
    jwk.remove("kid");
    jwk.remove("use");
    jwk.remove("alg");
    jwk
}

fn jkt(key: &SigningKey) -> String {
    thumbprint(&public_jwk(key)).unwrap()
}

fn ath(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

fn b64(json: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(json).unwrap())
}

/// A compact JWS of `header` and `claims` signed with `key`.
fn sign(key: &SigningKey, header: &Value, claims: &Value) -> String {
    use edge_auth_proxy::identity::signing::Signer as _;
    let input = format!("{}.{}", b64(header), b64(claims));
    let sig = block_on(RustCryptoVerifier.sign(key, input.as_bytes())).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// A good proof's header and claims for `token` on `method` `url`, made at `NOW`.
fn parts(key: &SigningKey, method: &str, url: &str, token: &str, jti: &str) -> (Value, Value) {
    (
        json!({"typ": "dpop+jwt", "alg": key.alg().name(), "jwk": public_jwk(key)}),
        json!({"htm": method, "htu": url, "iat": NOW, "ath": ath(token), "jti": jti}),
    )
}

fn proof(key: &SigningKey, method: &str, url: &str, token: &str, jti: &str) -> String {
    let (h, c) = parts(key, method, url, token, jti);
    sign(key, &h, &c)
}

/// A customer JWT bound to `key` (`cnf.jkt`).
fn bound_token(key: &SigningKey) -> String {
    jwt(
        json!({"iss": ISSUER, "sub": "cust-1", "exp": NOW + 600, "iat": NOW,
               "cnf": {"jkt": jkt(key)}}),
    )
}

fn routes() -> String {
    json!([
        {"prefix": "/strict", "auth": "jwt", "sender_constraint": "required"},
        {"prefix": "/", "auth": "jwt"}
    ])
    .to_string()
}

fn world() -> (Gateway, Svc) {
    world_with(&[])
}

/// `world` with `extra` settings over its own.
fn world_with(extra: &[(&str, &str)]) -> (Gateway, Svc) {
    let routes = routes();
    let mut vars: HashMap<&str, &str> = [
        ("ORIGIN_URL", "https://origin.example/api"),
        ("TOKEN_URL", TOKEN_URL),
        ("CLIENT_ID", "client-1"),
        ("CLIENT_SECRET", CLIENT_SECRET),
        ("API_KEY", API_KEY),
        ("JWT_ALGORITHMS", "HS256"),
        ("JWT_HMAC_SECRET", HMAC_SECRET),
        ("JWT_ISSUER", ISSUER),
        ("JWT_LEEWAY_SECONDS", "5"),
        ("ROUTES", routes.as_str()),
    ]
    .into_iter()
    .collect();
    vars.extend(extra.iter().copied());
    let http = token_endpoint_and_origin();
    let gw = gateway(&vars);
    assert!(gw.config_error().is_none(), "{:?}", gw.config_error());
    (gw, services(http))
}

struct Sent {
    resp: GatewayResponse<Vec<u8>>,
    log: RequestLog,
}

/// Sends `method path` with `headers` to `gw` as received at `GATEWAY`.
fn send_to(
    gw: &Gateway,
    svc: &Svc,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    tls: Option<TlsClientAuth>,
) -> Sent {
    let mut req = request(method, path, headers, Body::Empty);
    req.tls_client_auth = tls;
    let served = block_on(gw.serve_at(svc, req, Some(GATEWAY)));
    Sent {
        resp: served.response,
        log: served.log,
    }
}

/// `send_to` for the common case: `GET path` without a client certificate.
fn get(gw: &Gateway, svc: &Svc, path: &str, headers: &[(&str, &str)]) -> Sent {
    send_to(gw, svc, Method::GET, path, headers, None)
}

fn origin_calls(svc: &Svc) -> usize {
    svc.http.calls_to(ORIGIN).len()
}

fn challenge(resp: &GatewayResponse<Vec<u8>>) -> String {
    resp.headers
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

fn problem(resp: &GatewayResponse<Vec<u8>>) -> Value {
    match &resp.body {
        Body::Bytes(b) => serde_json::from_slice(b).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// A fresh gateway: `token` sent as `Authorization: DPoP` with `proof` on `GET /account/x`.
fn dpop_get(token: &str, proof: &str) -> (Sent, usize) {
    let (gw, svc) = world();
    let auth = format!("DPoP {token}");
    let sent = get(
        &gw,
        &svc,
        "/account/x",
        &[("authorization", &auth), ("dpop", proof)],
    );
    let calls = origin_calls(&svc);
    (sent, calls)
}

#[track_caller]
fn assert_bad_proof(sent: (Sent, usize), code: &str) {
    let (sent, forwarded) = sent;
    assert_eq!(sent.resp.status, 401, "{}", problem(&sent.resp));
    let c = challenge(&sent.resp);
    assert!(c.starts_with("DPoP error=\"invalid_dpop_proof\""), "{c}");
    assert_eq!(sent.log.outcome, code);
    assert_eq!(forwarded, 0, "a refused request reaches no origin");
    assert!(problem(&sent.resp)["type"]
        .as_str()
        .unwrap()
        .ends_with("invalid-dpop-proof"));
}

const URL: &str = "https://api.example/account/x";

#[test]
fn a_good_proof_passes_with_either_scheme_and_the_proof_is_not_forwarded() {
    for name in ["es256_a", "ed25519", "rs256"] {
        let k = key(name);
        let token = bound_token(&k);
        let (sent, forwarded) = dpop_get(&token, &proof(&k, "GET", URL, &token, "j-1"));
        assert_eq!(sent.resp.status, 200, "{name}: {}", problem(&sent.resp));
        assert_eq!(forwarded, 1);
    }
    // In `customer-auth` too, and what reaches the origin: the token, not the proof.
    let k = key("es256_a");
    let token = bound_token(&k);
    let (gw, svc) = world();
    let ca = format!("JWT {token}");
    let p = proof(&k, "POST", "https://api.example/account/x", &token, "j-2");
    let sent = send_to(
        &gw,
        &svc,
        Method::POST,
        "/account/x",
        &[("customer-auth", &ca), ("dpop", &p)],
        None,
    );
    assert_eq!(sent.resp.status, 200, "{}", problem(&sent.resp));
    let seen = svc.http.calls_to("https://origin.example/");
    assert_eq!(seen[0].headers.get("customer-auth").unwrap(), ca.as_str());
    assert!(
        seen[0].headers.get("dpop").is_none(),
        "the proof stays at the gateway"
    );
}

#[test]
fn a_replayed_proof_is_refused() {
    let k = key("es256_a");
    let token = bound_token(&k);
    let (gw, svc) = world();
    let auth = format!("DPoP {token}");
    let p = proof(&k, "GET", URL, &token, "once");
    let headers = [("authorization", auth.as_str()), ("dpop", p.as_str())];
    let first = send_to(&gw, &svc, Method::GET, "/account/x", &headers, None);
    assert_eq!(first.resp.status, 200);
    // Later within the window, the verified-token memory holding the token.
    svc.clock.advance(10_000);
    let again = send_to(&gw, &svc, Method::GET, "/account/x", &headers, None);
    assert_bad_proof((again, origin_calls(&svc) - 1), "dpop_replayed");
    // A fresh proof for the same token passes.
    let fresh = proof(&k, "GET", URL, &token, "twice");
    let next = get(
        &gw,
        &svc,
        "/account/x",
        &[("authorization", &auth), ("dpop", &fresh)],
    );
    assert_eq!(next.resp.status, 200, "{}", problem(&next.resp));
}

#[test]
fn a_proof_for_another_method_is_refused() {
    let k = key("es256_a");
    let token = bound_token(&k);
    assert_bad_proof(
        dpop_get(&token, &proof(&k, "POST", URL, &token, "m")),
        "dpop_wrong_method",
    );
    assert_bad_proof(
        dpop_get(&token, &proof(&k, "get", URL, &token, "m")),
        "dpop_wrong_method",
    );
}

#[test]
fn a_proof_for_another_url_is_refused() {
    let k = key("es256_a");
    let token = bound_token(&k);
    for htu in [
        "https://evil.example/account/x",
        "http://api.example/account/x",
        "https://api.example:8443/account/x",
        "https://api.example/account/y",
        "https://api.example/account/x/",
        "https://api.example/account/x?q=1",
        "/account/x",
    ] {
        assert_bad_proof(
            dpop_get(&token, &proof(&k, "GET", htu, &token, "u")),
            "dpop_wrong_url",
        );
    }
    // RFC 3986 normalization on both sides: these name the same URL.
    for htu in [
        "HTTPS://API.EXAMPLE/account/x",
        "https://api.example:443/account/x",
        "https://api.example/account/%78",
        "https://api.example/account/./x",
        "https://api.example/other/../account/x",
    ] {
        let (sent, _) = dpop_get(&token, &proof(&k, "GET", htu, &token, "u"));
        assert_eq!(sent.resp.status, 200, "{htu}: {}", problem(&sent.resp));
    }
}

#[test]
fn htu_is_the_url_as_received_not_the_route_normalized_path() {
    let k = key("es256_a");
    let token = bound_token(&k);
    let auth = format!("DPoP {token}");
    // Received at `/account//x`: the gateway routes `/account/x`, but the client signed for
    // the URL it sent, and only that one matches.
    let (gw, svc) = world();
    let before = proof(&k, "GET", "https://api.example/account//x", &token, "n1");
    let sent = get(
        &gw,
        &svc,
        "/account//x",
        &[("authorization", &auth), ("dpop", &before)],
    );
    assert_eq!(sent.resp.status, 200, "{}", problem(&sent.resp));
    let after = proof(&k, "GET", "https://api.example/account/x", &token, "n2");
    let sent = get(
        &gw,
        &svc,
        "/account//x",
        &[("authorization", &auth), ("dpop", &after)],
    );
    assert_bad_proof((sent, 0), "dpop_wrong_url");
    // Received at `/account/%7e`: percent-encoding of an unreserved character is the same URL.
    let tilde = proof(&k, "GET", "https://api.example/account/~", &token, "n3");
    let sent = get(
        &gw,
        &svc,
        "/account/%7e",
        &[("authorization", &auth), ("dpop", &tilde)],
    );
    assert_eq!(sent.resp.status, 200, "{}", problem(&sent.resp));
}

#[test]
fn a_proof_for_another_token_is_refused() {
    let k = key("es256_a");
    let token = bound_token(&k);
    let other = jwt(json!({"iss": ISSUER, "sub": "cust-2", "exp": NOW + 600,
                          "cnf": {"jkt": jkt(&k)}}));
    assert_bad_proof(
        dpop_get(&token, &proof(&k, "GET", URL, &other, "a")),
        "dpop_wrong_ath",
    );
    let (h, mut c) = parts(&k, "GET", URL, &token, "a");
    c.as_object_mut().unwrap().remove("ath");
    assert_bad_proof(dpop_get(&token, &sign(&k, &h, &c)), "dpop_wrong_ath");
}

#[test]
fn a_proof_by_another_key_is_refused() {
    let k = key("es256_a");
    let thief = key("es256_b");
    let token = bound_token(&k);
    // The thief's own key, honestly in the header: not the token's key.
    assert_bad_proof(
        dpop_get(&token, &proof(&thief, "GET", URL, &token, "k")),
        "dpop_key_mismatch",
    );
    // The token's public key in the header, signed by the thief.
    let (h, c) = parts(&k, "GET", URL, &token, "k");
    assert_bad_proof(
        dpop_get(&token, &sign(&thief, &h, &c)),
        "dpop_bad_signature",
    );
    // No key at all.
    let (mut h, c) = parts(&k, "GET", URL, &token, "k");
    h.as_object_mut().unwrap().remove("jwk");
    assert_bad_proof(dpop_get(&token, &sign(&k, &h, &c)), "dpop_bad_key");
}

#[test]
fn unsigned_and_symmetric_proofs_are_refused() {
    let k = key("es256_a");
    let token = bound_token(&k);
    let (mut h, c) = parts(&k, "GET", URL, &token, "n");
    h["alg"] = json!("none");
    let unsigned = format!("{}.{}.", b64(&h), b64(&c));
    assert_bad_proof(dpop_get(&token, &unsigned), "dpop_alg_not_allowed");
    // HS256 keyed with the thumbprint, which anyone can compute from the token.
    h["alg"] = json!("HS256");
    let input = format!("{}.{}", b64(&h), b64(&c));
    let secret = jkt(&k);
    let mac = Hs256.sign(&Hs256Key::new(secret.as_bytes()), input.as_bytes());
    let hs = format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.as_bytes()));
    assert_bad_proof(dpop_get(&token, &hs), "dpop_alg_not_allowed");
    // An asymmetric algorithm outside DPOP_ALGORITHMS' default.
    h["alg"] = json!("ES384");
    assert_bad_proof(dpop_get(&token, &sign(&k, &h, &c)), "dpop_alg_not_allowed");
}

#[test]
fn a_proof_carrying_a_private_key_is_refused() {
    let k = key("es256_a");
    let token = bound_token(&k);
    let private = &keys()["es256_a"];
    for member in ["d", "p", "q", "dp", "dq", "qi", "k"] {
        let (mut h, c) = parts(&k, "GET", URL, &token, "p");
        h["jwk"][member] = private["d"].clone();
        assert_bad_proof(dpop_get(&token, &sign(&k, &h, &c)), "dpop_private_key");
    }
    // An `oct` key: a secret, whatever it is called.
    let (mut h, c) = parts(&k, "GET", URL, &token, "p");
    h["jwk"] = json!({"kty": "oct", "k": "c2VjcmV0"});
    assert_bad_proof(dpop_get(&token, &sign(&k, &h, &c)), "dpop_private_key");
}

#[test]
fn proofs_outside_the_window_are_refused() {
    let k = key("es256_a");
    let token = bound_token(&k);
    let with_iat = |iat: Value| {
        let (h, mut c) = parts(&k, "GET", URL, &token, "t");
        c["iat"] = iat;
        sign(&k, &h, &c)
    };
    // DPOP_MAX_AGE_SECONDS 60 by default, JWT_LEEWAY_SECONDS 5 here.
    assert_bad_proof(dpop_get(&token, &with_iat(json!(NOW - 66))), "dpop_too_old");
    assert_bad_proof(
        dpop_get(&token, &with_iat(json!(NOW + 6))),
        "dpop_issued_in_future",
    );
    assert_bad_proof(dpop_get(&token, &with_iat(json!("now"))), "dpop_bad_iat");
    assert_bad_proof(dpop_get(&token, &with_iat(Value::Null)), "dpop_bad_iat");
    for edge in [NOW - 65, NOW + 5] {
        let (sent, _) = dpop_get(&token, &with_iat(json!(edge)));
        assert_eq!(sent.resp.status, 200, "iat {edge}: {}", problem(&sent.resp));
    }
}

#[test]
fn oversize_malformed_and_mistyped_proofs_are_refused() {
    let k = key("es256_a");
    let token = bound_token(&k);
    let (h, mut c) = parts(&k, "GET", URL, &token, "o");
    c["pad"] = json!("x".repeat(5000));
    assert_bad_proof(dpop_get(&token, &sign(&k, &h, &c)), "dpop_too_large");
    assert_bad_proof(dpop_get(&token, "not.a.jws"), "dpop_malformed");
    let (mut h, c) = parts(&k, "GET", URL, &token, "o");
    h["typ"] = json!("JWT");
    assert_bad_proof(dpop_get(&token, &sign(&k, &h, &c)), "dpop_wrong_type");
    let (mut h, c) = parts(&k, "GET", URL, &token, "o");
    h["crit"] = json!(["exp"]);
    assert_bad_proof(dpop_get(&token, &sign(&k, &h, &c)), "dpop_critical_header");
    let (h, mut c) = parts(&k, "GET", URL, &token, "o");
    c.as_object_mut().unwrap().remove("jti");
    assert_bad_proof(dpop_get(&token, &sign(&k, &h, &c)), "dpop_bad_jti");
    // The JWS repeats a claim name: parsers disagree on which one wins.
    let good = proof(&k, "GET", URL, &token, "o");
    let (h, _) = parts(&k, "GET", URL, &token, "o");
    let dup = format!(
        r#"{{"htm":"GET","htm":"POST","htu":"{URL}","iat":{NOW},"ath":"{}","jti":"o"}}"#,
        ath(&token)
    );
    let input = format!("{}.{}", b64(&h), URL_SAFE_NO_PAD.encode(dup));
    use edge_auth_proxy::identity::signing::Signer as _;
    let sig = block_on(RustCryptoVerifier.sign(&k, input.as_bytes())).unwrap();
    let dup = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig));
    assert_bad_proof(dpop_get(&token, &dup), "dpop_malformed");
    assert_ne!(good, dup);
}

#[test]
fn a_bound_token_without_its_proof_or_with_two_is_refused() {
    let k = key("es256_a");
    let token = bound_token(&k);
    let (gw, svc) = world();
    let auth = format!("DPoP {token}");
    let sent = get(&gw, &svc, "/account/x", &[("authorization", &auth)]);
    assert_bad_proof((sent, origin_calls(&svc)), "dpop_missing");
    let (p1, p2) = (
        proof(&k, "GET", URL, &token, "1"),
        proof(&k, "GET", URL, &token, "2"),
    );
    let sent = get(
        &gw,
        &svc,
        "/account/x",
        &[("authorization", &auth), ("dpop", &p1), ("dpop", &p2)],
    );
    assert_bad_proof((sent, origin_calls(&svc)), "dpop_multiple");
}

#[test]
fn the_scheme_must_fit_the_token() {
    let k = key("es256_a");
    let token = bound_token(&k);
    let (gw, svc) = world();
    // A DPoP-bound token as a bearer token (RFC 9449 §7.2: a downgrade), proof or not.
    let bearer = format!("Bearer {token}");
    let p = proof(&k, "GET", URL, &token, "s1");
    let sent = get(
        &gw,
        &svc,
        "/account/x",
        &[("authorization", &bearer), ("dpop", &p)],
    );
    assert_eq!(sent.resp.status, 401);
    assert!(challenge(&sent.resp).starts_with("DPoP error=\"invalid_token\""));
    assert_eq!(sent.log.outcome, "dpop_bearer_scheme");
    // A bearer token with the DPoP scheme.
    let plain = jwt(json!({"iss": ISSUER, "sub": "c", "exp": NOW + 600}));
    let dpop = format!("DPoP {plain}");
    let sent = get(&gw, &svc, "/account/x", &[("authorization", &dpop)]);
    assert_eq!(sent.resp.status, 401);
    assert_eq!(sent.log.outcome, "dpop_not_bound");
    assert_eq!(origin_calls(&svc), 0);
    // The same bearer token as `Bearer`: passes as before.
    let ok = format!("Bearer {plain}");
    let sent = get(&gw, &svc, "/account/x", &[("authorization", &ok)]);
    assert_eq!(sent.resp.status, 200);
}

#[test]
fn a_dpop_bound_token_in_jwt_header_or_the_cookie_is_refused_like_a_bearer_token() {
    // `JWT_HEADER` (Cloudflare Access's header, say) and `JWT_COOKIE` carry a bare token: like
    // `Authorization: Bearer`, nothing says the sender holds the key, so a DPoP-bound token
    // there is a downgrade (RFC 9449 §7.2), refused even with a valid proof alongside.
    let k = key("es256_a");
    let token = bound_token(&k);
    let (gw, svc) = world_with(&[
        ("JWT_HEADER", "Cf-Access-Jwt-Assertion"),
        ("JWT_COOKIE", "id_token"),
    ]);
    let cookie = format!("id_token={token}");
    for (place, header) in [
        ("JWT_HEADER", ("cf-access-jwt-assertion", token.as_str())),
        ("JWT_COOKIE", ("cookie", cookie.as_str())),
    ] {
        for with_proof in [true, false] {
            let p = proof(&k, "GET", URL, &token, &format!("{place}-{with_proof}"));
            let mut headers = vec![header];
            if with_proof {
                headers.push(("dpop", p.as_str()));
            }
            let sent = send_to(&gw, &svc, Method::GET, "/account/x", &headers, None);
            let what = format!("{place}, proof {with_proof}");
            assert_eq!(sent.resp.status, 401, "{what}: {}", problem(&sent.resp));
            let c = challenge(&sent.resp);
            assert!(c.starts_with("DPoP error=\"invalid_token\""), "{what}: {c}");
            assert_eq!(sent.log.outcome, "dpop_bearer_scheme", "{what}");
            assert_eq!(origin_calls(&svc), 0, "{what}: reached the origin");
        }
    }
    // The same gateway takes the same token with the DPoP scheme and a proof...
    let auth = format!("DPoP {token}");
    let p = proof(&k, "GET", URL, &token, "scheme");
    let sent = get(
        &gw,
        &svc,
        "/account/x",
        &[("authorization", &auth), ("dpop", &p)],
    );
    assert_eq!(sent.resp.status, 200, "{}", problem(&sent.resp));
    // ...and a token bound to nothing in `JWT_HEADER`: the header itself works.
    let plain = jwt(json!({"iss": ISSUER, "sub": "c", "exp": NOW + 600}));
    let sent = get(
        &gw,
        &svc,
        "/account/x",
        &[("cf-access-jwt-assertion", &plain)],
    );
    assert_eq!(sent.resp.status, 200, "{}", problem(&sent.resp));
    assert_eq!(origin_calls(&svc), 2);
}

fn verified_cert(fp: &str) -> TlsClientAuth {
    verified_certificate("CN=partner", fp)
}

fn x5t(hex: &str) -> String {
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn a_certificate_bound_token_needs_that_certificate() {
    let token = jwt(json!({"iss": ISSUER, "sub": "c", "exp": NOW + 600,
                          "cnf": {"x5t#S256": x5t(FP)}}));
    let auth = format!("Bearer {token}");
    let (gw, svc) = world();
    let get = |tls| {
        send_to(
            &gw,
            &svc,
            Method::GET,
            "/account/x",
            &[("authorization", &auth)],
            tls,
        )
    };
    let ok = get(Some(verified_cert(FP)));
    assert_eq!(ok.resp.status, 200, "{}", problem(&ok.resp));
    let upper = get(Some(verified_cert(&FP.to_uppercase())));
    assert_eq!(upper.resp.status, 200);
    let other = "00".to_string() + &FP[2..];
    for (tls, code) in [
        (Some(verified_cert(&other)), "certificate_binding_mismatch"),
        (None, "certificate_binding_missing"),
        (
            Some(TlsClientAuth {
                cert_verified: "FAILED:expired".into(),
                ..verified_cert(FP)
            }),
            "certificate_binding_missing",
        ),
        (
            Some(TlsClientAuth {
                cert_revoked: "1".into(),
                ..verified_cert(FP)
            }),
            "certificate_binding_missing",
        ),
        (
            Some(TlsClientAuth {
                cert_presented: "0".into(),
                ..verified_cert(FP)
            }),
            "certificate_binding_missing",
        ),
    ] {
        let sent = get(tls);
        assert_eq!(sent.resp.status, 401);
        assert!(challenge(&sent.resp).contains("error=\"invalid_token\""));
        assert_eq!(sent.log.outcome, code);
    }
    assert_eq!(origin_calls(&svc), 2);
}

#[test]
fn a_fingerprint_that_is_not_hex_is_no_certificate() {
    // The edge reports 64 lower-case hex digits. Anything else says nothing usable of the
    // certificate, like no certificate: never a match, never a panic.
    let zero_high: String = FP
        .chars()
        .skip(1)
        .step_by(2)
        .flat_map(|c| ['0', c])
        .collect();
    let token = jwt(json!({"iss": ISSUER, "sub": "c", "exp": NOW + 600,
                          "cnf": {"x5t#S256": x5t(&zero_high)}}));
    let auth = format!("Bearer {token}");
    let (gw, svc) = world();
    let get = |fp: &str| {
        send_to(
            &gw,
            &svc,
            Method::GET,
            "/account/x",
            &[("authorization", &auth)],
            Some(verified_cert(fp)),
        )
    };
    assert_eq!(get(&zero_high).resp.status, 200);
    // `+f` is not two hex digits, though Rust's integer parser reads it as 0x0f.
    let signs: String = zero_high.replace('0', "+");
    // 64 bytes that are not 64 characters: cut in the middle of a character.
    let wide = format!("a{}b", "é".repeat(31));
    assert_eq!(wide.len(), 64);
    for fp in [signs.as_str(), wide.as_str()] {
        let sent = get(fp);
        assert_eq!(sent.resp.status, 401, "{fp}: {}", problem(&sent.resp));
        assert_eq!(sent.log.outcome, "certificate_binding_missing", "{fp}");
    }
    assert_eq!(origin_calls(&svc), 1);
}

#[test]
fn sender_constraint_required_refuses_bearer_tokens() {
    let (gw, svc) = world();
    let plain = jwt(json!({"iss": ISSUER, "sub": "c", "exp": NOW + 600}));
    let bearer = format!("Bearer {plain}");
    let sent = get(&gw, &svc, "/strict/a", &[("authorization", &bearer)]);
    assert_eq!(sent.resp.status, 401);
    assert!(challenge(&sent.resp).starts_with("Bearer "));
    assert!(challenge(&sent.resp).contains("error=\"invalid_token\""));
    assert_eq!(sent.log.outcome, "not_sender_constrained");
    // A `cnf` the gateway cannot check is no constraint.
    let odd = jwt(json!({"iss": ISSUER, "sub": "c", "exp": NOW + 600, "cnf": {"jwk": {}}}));
    let odd = format!("Bearer {odd}");
    let sent = get(&gw, &svc, "/strict/a", &[("authorization", &odd)]);
    assert_eq!(sent.log.outcome, "not_sender_constrained");
    assert_eq!(origin_calls(&svc), 0);
    // Both kinds of constrained token pass.
    let k = key("es256_a");
    let token = bound_token(&k);
    let p = proof(&k, "GET", "https://api.example/strict/a", &token, "c1");
    let auth = format!("DPoP {token}");
    let sent = get(
        &gw,
        &svc,
        "/strict/a",
        &[("authorization", &auth), ("dpop", &p)],
    );
    assert_eq!(sent.resp.status, 200, "{}", problem(&sent.resp));
    let cert =
        jwt(json!({"iss": ISSUER, "sub": "c", "exp": NOW + 600, "cnf": {"x5t#S256": x5t(FP)}}));
    let cert = format!("Bearer {cert}");
    let sent = send_to(
        &gw,
        &svc,
        Method::GET,
        "/strict/a",
        &[("authorization", &cert)],
        Some(verified_cert(FP)),
    );
    assert_eq!(sent.resp.status, 200, "{}", problem(&sent.resp));
}

#[test]
fn sender_constraint_is_a_jwt_routes_field() {
    for (routes, ok) in [
        (
            r#"[{"prefix": "/a", "sender_constraint": "required"}]"#,
            true,
        ),
        (
            r#"[{"prefix": "/a", "auth": "optional", "sender_constraint": "required"}]"#,
            true,
        ),
        (
            r#"[{"prefix": "/a", "auth": "public", "sender_constraint": "required"}]"#,
            false,
        ),
        (
            r#"[{"prefix": "/a", "auth": "opaque", "sender_constraint": "required"}]"#,
            false,
        ),
        (
            r#"[{"prefix": "/a", "sender_constraint": "optional"}]"#,
            false,
        ),
        (r#"[{"prefix": "/a", "sender_constraint": true}]"#, false),
    ] {
        let vars: HashMap<&str, &str> = [
            ("ORIGIN_URL", "https://origin.example/api"),
            ("TOKEN_URL", TOKEN_URL),
            ("CLIENT_ID", "client-1"),
            ("CLIENT_SECRET", CLIENT_SECRET),
            ("API_KEY", API_KEY),
            ("JWT_ALGORITHMS", "HS256"),
            ("JWT_HMAC_SECRET", HMAC_SECRET),
            ("INTROSPECTION_URL", INTROSPECT),
            ("ROUTES", routes),
        ]
        .into_iter()
        .collect();
        let gw = gateway(&vars);
        assert_eq!(
            gw.config_error().is_none(),
            ok,
            "{routes}: {:?}",
            gw.config_error()
        );
        if !ok {
            let e = gw
                .config_error()
                .unwrap()
                .iter()
                .next()
                .unwrap()
                .to_string();
            assert!(e.contains("ROUTES[0].sender_constraint"), "{e}");
        }
    }
}

#[test]
fn dpop_settings_are_checked() {
    for (name, value, ok) in [
        ("DPOP_ALGORITHMS", "ES256", true),
        ("DPOP_ALGORITHMS", "HS256", false),
        ("DPOP_ALGORITHMS", "none", false),
        ("DPOP_MAX_AGE_SECONDS", "30", true),
        ("DPOP_MAX_AGE_SECONDS", "0", false),
        ("DPOP_MAX_AGE_SECONDS", "soon", false),
    ] {
        let vars: HashMap<&str, &str> = [
            ("ORIGIN_URL", "https://origin.example/api"),
            ("TOKEN_URL", TOKEN_URL),
            ("CLIENT_ID", "client-1"),
            ("CLIENT_SECRET", CLIENT_SECRET),
            ("API_KEY", API_KEY),
            ("JWT_ALGORITHMS", "HS256"),
            ("JWT_HMAC_SECRET", HMAC_SECRET),
            (name, value),
        ]
        .into_iter()
        .collect();
        let gw = gateway(&vars);
        assert_eq!(gw.config_error().is_none(), ok, "{name}={value}");
    }
}

#[test]
fn dpop_algorithms_narrows_what_proofs_may_use() {
    let k = key("ed25519");
    let token = bound_token(&k);
    let vars: HashMap<&str, &str> = [
        ("ORIGIN_URL", "https://origin.example/api"),
        ("TOKEN_URL", TOKEN_URL),
        ("CLIENT_ID", "client-1"),
        ("CLIENT_SECRET", CLIENT_SECRET),
        ("API_KEY", API_KEY),
        ("JWT_ALGORITHMS", "HS256"),
        ("JWT_HMAC_SECRET", HMAC_SECRET),
        ("DPOP_ALGORITHMS", "ES256"),
    ]
    .into_iter()
    .collect();
    let gw = gateway(&vars);
    let http = FakeHttp::default();
    http.on(TOKEN_URL, |_| {
        Ok((
            200,
            vec![],
            br#"{"access_token":"a","expires_in":60}"#.to_vec(),
        ))
    });
    http.on("https://origin.example/", |_| Ok((200, vec![], vec![])));
    let svc = services(http);
    let auth = format!("DPoP {token}");
    let p = proof(&k, "GET", URL, &token, "e");
    let sent = get(
        &gw,
        &svc,
        "/account/x",
        &[("authorization", &auth), ("dpop", &p)],
    );
    assert_bad_proof((sent, origin_calls(&svc)), "dpop_alg_not_allowed");
}

#[test]
fn without_the_caller_url_no_proof_can_match() {
    let k = key("es256_a");
    let token = bound_token(&k);
    let (gw, svc) = world();
    let auth = format!("DPoP {token}");
    let p = proof(&k, "GET", URL, &token, "w");
    let req = request(
        Method::GET,
        "/account/x",
        &[("authorization", auth.as_str()), ("dpop", p.as_str())],
        Body::Empty,
    );
    let (resp, log) = block_on(gw.handle(&svc, req));
    assert_eq!(resp.status, 401);
    assert_eq!(log.outcome, "dpop_wrong_url");
}

#[test]
fn ecdsa_signatures_are_checked_not_assumed() {
    // The signature's bytes changed: the same header and claims no longer verify.
    let k = key("es256_a");
    let token = bound_token(&k);
    let good = proof(&k, "GET", URL, &token, "x");
    let (input, sig) = good.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    sig[10] ^= 1;
    let bad = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig));
    assert_bad_proof(dpop_get(&token, &bad), "dpop_bad_signature");
    let _ = <jwt_compact::alg::Es256 as Algorithm>::Signature::LENGTH;
}
