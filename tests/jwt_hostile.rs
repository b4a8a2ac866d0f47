//! Hostile tokens through `jwt::validate`: each is refused with its own error, without a panic,
//! and the cheap ones without a single signature check.

#[path = "fixtures/jwt/support.rs"]
mod support;

use std::cell::Cell;

use edge_auth_proxy::identity::jwt::{
    validate, Alg, JwtError, JwtSettings, Key, KeySet, RustCryptoVerifier, SignatureVerifier,
    MAX_TOKEN_BYTES,
};
use futures::executor::block_on;
use serde_json::{json, Value};
use support::*;

/// The pure-Rust verifier, counting how often it is asked: hostile input that the structure,
/// allow-list, header or key checks can refuse must never cost a signature check.
#[derive(Default)]
struct Counting {
    calls: Cell<usize>,
}

impl SignatureVerifier for Counting {
    async fn verify(&self, alg: Alg, key: &Key, signing_input: &[u8], signature: &[u8]) -> bool {
        self.calls.set(self.calls.get() + 1);
        RustCryptoVerifier.verify_now(alg, key, signing_input, signature)
    }
}

/// The error, and whether a signature was checked on the way to it.
fn refuse(token: &str, settings: &JwtSettings) -> (JwtError, bool) {
    let verifier = Counting::default();
    let result = block_on(validate(token, settings, settings.keys(), NOW, &verifier));
    let err = result.expect_err("a hostile token was accepted");
    (err, verifier.calls.get() > 0)
}

/// Refused with `expected` before any signature work.
fn refused_unsigned(token: &str, expected: JwtError) {
    refused_unsigned_with(token, expected, &settings(&[]));
}

fn refused_unsigned_with(token: &str, expected: JwtError, settings: &JwtSettings) {
    let (err, verified) = refuse(token, settings);
    assert_eq!(err, expected, "{}", printable(token));
    assert!(
        !verified,
        "a signature was checked for {}",
        printable(token)
    );
}

fn printable(token: &str) -> String {
    token
        .chars()
        .take(120)
        .flat_map(char::escape_default)
        .collect()
}

fn header_with(alg: &str, extra: Value) -> String {
    let mut h = json!({"alg": alg, "typ": "JWT"});
    h.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    h.to_string()
}

/// A correctly signed token with `header` and `claims` as raw JSON text.
fn signed(alg: &str, header: &str, claims: &str) -> String {
    raw_token(header, claims, |input| signature(alg, input))
}

fn valid_claims() -> String {
    claims(json!({})).to_string()
}

#[test]
fn alg_none_in_any_spelling_costs_no_signature_check() {
    for alg in [
        "none",
        "None",
        "NONE",
        "nOnE",
        "none ",
        " none",
        "NONE\u{0}",
    ] {
        for sig in ["", "e30", "AAAA"] {
            let head = b64(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes());
            let body = b64(valid_claims().as_bytes());
            refused_unsigned(
                &format!("{head}.{body}.{sig}"),
                JwtError::AlgorithmNotAllowed,
            );
        }
    }
    // `alg` missing, null or not a string is not an algorithm either: malformed.
    for header in [
        r#"{"typ":"JWT"}"#,
        r#"{"alg":null}"#,
        r#"{"alg":["RS256"]}"#,
    ] {
        refused_unsigned(
            &signed("HS256", header, &valid_claims()),
            JwtError::Malformed,
        );
    }
}

#[test]
fn hs256_keyed_with_the_rsa_public_key_never_verifies() {
    use base64::Engine as _;
    use jwt_compact::alg::{Hs256, Hs256Key};
    use jwt_compact::{Algorithm, AlgorithmSignature};

    let jwk = rsa_jwk(json!({"kid": "rsa-1"}));
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwk["n"].as_str().unwrap())
        .unwrap();
    let jwk_text = jwk.to_string();
    let jwks_text = jwks();
    let secrets: [&[u8]; 3] = [&n, jwk_text.as_bytes(), jwks_text.as_bytes()];
    let rsa_only = settings_from(&[("JWT_ALGORITHMS", "RS256"), ("JWT_JWKS", &jwks_text)]).unwrap();
    let both = settings(&[]);
    for secret in secrets {
        for kid in [json!("rsa-1"), Value::Null] {
            let header = if kid.is_null() {
                header_with("HS256", json!({}))
            } else {
                header_with("HS256", json!({"kid": kid}))
            };
            let t = raw_token(&header, &valid_claims(), |input| {
                Hs256
                    .sign(&Hs256Key::new(secret), input)
                    .as_bytes()
                    .to_vec()
            });
            refused_unsigned_with(&t, JwtError::AlgorithmNotAllowed, &rsa_only);
            // Where HS256 is allowed, only the configured secret is ever the HMAC key.
            assert_eq!(refuse(&t, &both).0, JwtError::BadSignature);
        }
    }
}

#[test]
fn kid_tricks_select_nothing() {
    let long = "k".repeat(4000);
    for kid in [
        "../../etc/passwd",
        "/etc/passwd",
        "..\\..\\windows\\win.ini",
        "http://127.0.0.1:9/x",
        "https://evil.example/jwks.json",
        "file:///etc/passwd",
        "rsa-1\u{0}",
        "rsa-1\r\nx-injected: 1",
        "rsa-1' OR '1'='1",
        "",
        long.as_str(),
    ] {
        let header = header_with("RS256", json!({ "kid": kid }));
        refused_unsigned(
            &signed("RS256", &header, &valid_claims()),
            JwtError::UnknownKid,
        );
    }
    // A kid that is not a string is a malformed header, not a lookup.
    for kid in [
        json!(7),
        json!({"kid": "rsa-1"}),
        json!(["rsa-1"]),
        json!(true),
    ] {
        let header = header_with("RS256", json!({ "kid": kid }));
        refused_unsigned(
            &signed("RS256", &header, &valid_claims()),
            JwtError::Malformed,
        );
    }
    // For HS*, the kid selects nothing either: the shared secret is the only HMAC key, and a
    // forged MAC fails against it.
    let header = header_with("HS256", json!({"kid": "../../etc/passwd"}));
    let forged = raw_token(&header, &valid_claims(), |_| vec![0; 32]);
    assert_eq!(refuse(&forged, &settings(&[])).0, JwtError::BadSignature);
}

#[test]
fn jku_x5u_jwk_and_x5c_are_never_used() {
    let settings = settings(&[]);
    let attacker = new_ec();
    let attacker_jwk = ec_jwk(&attacker, json!({"kid": "ec-1", "alg": "ES256"}));
    let sign_as_attacker = |header: &str| {
        raw_token(header, &valid_claims(), |input| {
            use jwt_compact::{alg::Es256, Algorithm, AlgorithmSignature};
            Es256.sign(&attacker, input).as_bytes().to_vec()
        })
    };
    for extra in [
        json!({"jwk": attacker_jwk}),
        json!({"kid": "ec-1", "jwk": attacker_jwk}),
        json!({"jku": "http://127.0.0.1:9/jwks.json"}),
        json!({"kid": "ec-1", "jku": "http://127.0.0.1:9/jwks.json"}),
        json!({"x5u": "http://127.0.0.1:9/cert.pem"}),
        json!({"x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]}),
    ] {
        let t = sign_as_attacker(&header_with("ES256", extra));
        assert_eq!(refuse(&t, &settings).0, JwtError::BadSignature, "{t}");
    }
    // A kid that names no configured key is unknown even when the header carries the key.
    let t = sign_as_attacker(&header_with(
        "ES256",
        json!({"kid": "attacker", "jwk": attacker_jwk}),
    ));
    refused_unsigned(&t, JwtError::UnknownKid);
    // URLs that are not strings are malformed.
    for extra in [json!({"jku": 1}), json!({"x5u": {"u": "x"}})] {
        refused_unsigned(
            &signed("HS256", &header_with("HS256", extra), &valid_claims()),
            JwtError::Malformed,
        );
    }
}

#[test]
fn crit_is_refused_before_any_key_is_looked_at() {
    for crit in [
        json!(["x-unknown"]),
        json!(["b64"]),
        json!(["exp"]),
        json!([]),
        json!("x"),
        json!(null),
    ] {
        let header = header_with(
            "RS256",
            json!({"kid": "rsa-1", "crit": crit, "x-unknown": 1}),
        );
        let t = signed("RS256", &header, &valid_claims());
        refused_unsigned(&t, JwtError::CriticalHeader);
        // Even with no keys at all: `crit` answers before key selection.
        let verifier = Counting::default();
        let result = block_on(validate(&t, &settings(&[]), &KeySet::new(), NOW, &verifier));
        assert_eq!(result.unwrap_err(), JwtError::CriticalHeader);
        assert_eq!(verifier.calls.get(), 0);
    }
}

#[test]
fn oversized_tokens_are_refused_unread() {
    let good = token("RS256", json!({"kid": "rsa-1"}), claims(json!({})));
    for t in [
        format!("{good}{}", "A".repeat(MAX_TOKEN_BYTES)),
        "a".repeat(MAX_TOKEN_BYTES + 1),
        ".".repeat(1 << 20),
        format!("{}.e30.", "e".repeat(MAX_TOKEN_BYTES)),
    ] {
        refused_unsigned(&t, JwtError::TooLarge);
    }
    assert_eq!(JwtError::TooLarge.description(), "The token is too large");
}

#[test]
fn segments_that_are_not_json_objects_are_malformed() {
    let claims = valid_claims();
    let header = header_with("HS256", json!({}));
    for bad_header in [
        "not json",
        "[]",
        "null",
        "\"HS256\"",
        "7",
        "",
        r#"{"alg":"HS256"} {}"#,
        r#"{"alg":"HS256"}x"#,
        r#"{"alg":"HS256""#,
    ] {
        refused_unsigned(&signed("HS256", bad_header, &claims), JwtError::Malformed);
    }
    for bad_payload in [
        "not json",
        "[]",
        "[1,2]",
        "null",
        "true",
        "\"exp\"",
        "",
        r#"{"exp":1} {"exp":2}"#,
        r#"{"exp":1e400}"#,
    ] {
        refused_unsigned(&signed("HS256", &header, bad_payload), JwtError::Malformed);
    }
    // Bytes that are not UTF-8.
    let head = b64(header.as_bytes());
    let t = format!("{head}.{}.AAAA", b64(b"{\"sub\":\"\xff\"}"));
    refused_unsigned(&t, JwtError::Malformed);
    // Nesting beyond serde_json's limit is an error, not a stack overflow.
    let deep = format!("{{\"x\":{}1{}}}", "[".repeat(2000), "]".repeat(2000));
    refused_unsigned(&signed("HS256", &header, &deep), JwtError::Malformed);
}

#[test]
fn duplicate_member_names_are_refused_before_the_signature() {
    let header = header_with("HS256", json!({}));
    let base = r#""iss":"https://login.example/","aud":"profile-api","exp":1700000600"#;
    for payload in [
        format!(r#"{{{base},"sub":"alice","sub":"admin"}}"#),
        format!(r#"{{{base},"exp":9999999999}}"#),
        format!(r#"{{{base},"aud":"other-api"}}"#),
        format!(r#"{{{base},"\u0073ub":"a","sub":"b"}}"#),
        format!(r#"{{{base},"roles":{{"admin":false,"admin":true}}}}"#),
    ] {
        refused_unsigned(
            &signed("HS256", &header, &payload),
            JwtError::DuplicateMember,
        );
    }
    for header in [
        r#"{"alg":"none","alg":"HS256"}"#,
        r#"{"alg":"HS256","alg":"HS256"}"#,
        r#"{"alg":"HS256","kid":"a","kid":"b"}"#,
        r#"{"alg":"HS256","crit":["x"],"crit":[]}"#,
    ] {
        refused_unsigned(
            &signed("HS256", header, &valid_claims()),
            JwtError::DuplicateMember,
        );
    }
    assert_eq!(JwtError::DuplicateMember.code(), "duplicate_member");
    assert!(!JwtError::DuplicateMember.is_request_error());
}

#[test]
fn wrong_claim_types_are_invalid_after_the_signature() {
    let settings = settings(&[]);
    for (name, value) in [
        ("exp", json!("1700000600")),
        ("exp", json!(true)),
        ("exp", json!({"t": 1})),
        ("exp", json!([1700000600])),
        ("exp", json!(-5)),
        ("nbf", json!("0")),
        ("iat", json!(null)),
        ("aud", json!(7)),
        ("aud", json!(["profile-api", null])),
        ("aud", json!({"profile-api": true})),
        ("iss", json!(["https://login.example/"])),
        ("sub", json!(42)),
    ] {
        let mut c = claims(json!({})).as_object().unwrap().clone();
        c.insert(name.to_string(), value.clone());
        let t = signed(
            "HS256",
            &header_with("HS256", json!({})),
            &Value::Object(c).to_string(),
        );
        assert_eq!(
            check(&t, &settings),
            Err(JwtError::InvalidClaim(name)),
            "{name}: {value}"
        );
    }
}

/// Flips the lowest bit of the last symbol: for a segment whose length is not a multiple of
/// four, that bit is padding and decodes to the same bytes in a lenient decoder.
fn stray_bit(segment: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let (head, last) = segment.split_at(segment.len() - 1);
    let i = ALPHABET
        .iter()
        .position(|&c| c == last.as_bytes()[0])
        .unwrap();
    format!("{head}{}", ALPHABET[i ^ 1] as char)
}

#[test]
fn trailing_data_and_other_spellings_are_malformed() {
    let good = token("HS256", json!({}), claims(json!({})));
    assert!(check(&good, &settings(&[])).is_ok());
    let [h, p, s]: [&str; 3] = good.split('.').collect::<Vec<_>>().try_into().unwrap();
    let mut cases = vec![
        format!("{good}."),
        format!("{good}.."),
        format!("{good}.x"),
        format!("{good}.{s}"),
        format!("{good} "),
        format!(" {good}"),
        format!("{good}\n"),
        format!("{good}\0"),
        format!("{good}="),
        format!("{good}=="),
        format!("{good}AA"),
        format!("{h}=.{p}.{s}"),
        format!("{h}.{p}=.{s}"),
        format!("{h}.{p} .{s}"),
        format!("{h}.{p}.{s}é"),
        format!("{h}.{p}"),
        format!("{h}..{s}"),
        format!(".{p}.{s}"),
        format!("{h}.{p}.{s}.{h}.{p}"),
        good.replace('-', "+").replace('_', "/"),
        "..".to_string(),
        String::new(),
    ];
    // The same bytes spelt with stray bits in the last symbol of each segment that has them.
    assert_eq!(s.len() % 4, 3, "an HS256 signature has 2 stray bits");
    cases.push(format!("{h}.{p}.{}", stray_bit(s)));
    for (i, seg) in [h, p].iter().enumerate() {
        if seg.len() % 4 != 0 {
            let parts: Vec<String> = [h, p, s]
                .iter()
                .enumerate()
                .map(|(j, x)| if i == j { stray_bit(x) } else { x.to_string() })
                .collect();
            cases.push(parts.join("."));
        }
    }
    for bad in &cases {
        if bad == &good {
            continue; // `replace` found nothing to replace
        }
        refused_unsigned(bad, JwtError::Malformed);
    }
    // Appended base64 that still spells whole bytes lengthens the signature itself, which
    // then fails to verify.
    for longer in [format!("{good}A"), format!("{good}AAAA")] {
        let (err, verified) = refuse(&longer, &settings(&[]));
        assert_eq!(err, JwtError::BadSignature);
        assert!(verified);
    }
}

#[test]
fn jwe_and_other_shapes_are_malformed() {
    let jwe_header = b64(br#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#);
    for t in [
        format!("{jwe_header}.a.b.c.d"),
        "not-a-jwt".to_string(),
        "a.b".to_string(),
        "a.b.c".to_string(),
        "e30.e30.".to_string(),
        "\u{feff}e30.e30.".to_string(),
    ] {
        refused_unsigned(&t, JwtError::Malformed);
    }
}

#[test]
fn ec_tokens_never_verify_with_a_key_of_another_curve() {
    // RFC 8725 §3.1 within ECDSA: the curve is part of the key's family. Each token is signed
    // correctly with its own curve's key; only the kid (or its absence) points elsewhere.
    let settings = settings(&[]);
    let body = valid_claims();
    for (alg, other_kid) in [
        ("ES384", "ec-1"),
        ("ES384", "ec521-1"),
        ("ES512", "ec-1"),
        ("ES512", "ec384-1"),
        ("ES256", "ec384-1"),
        ("ES256", "ec521-1"),
    ] {
        let t = signed(alg, &header_with(alg, json!({"kid": other_kid})), &body);
        refused_unsigned_with(&t, JwtError::KeyMismatch, &settings);
    }
    // Without a kid the curve alone picks the key, and the token verifies.
    for alg in ["ES256", "ES384", "ES512"] {
        let t = signed(alg, &header_with(alg, json!({})), &body);
        assert!(check(&t, &settings).is_ok(), "{alg}");
    }
    // A set with only a P-256 key cannot verify ES384 at all.
    let p256_only = json!({"keys": [ec_jwk(ec(), json!({"kid": "ec-1"}))]}).to_string();
    let p256_settings =
        settings_from(&[("JWT_ALGORITHMS", "ES256,ES384"), ("JWT_JWKS", &p256_only)]);
    assert_eq!(
        p256_settings.unwrap_err().settings(),
        ["JWT_JWKS"],
        "ES384 allowed with only a P-256 key"
    );
}

#[test]
fn ec_signatures_of_the_wrong_length_or_form_are_bad_signatures() {
    let settings = settings(&[]);
    let body = valid_claims();
    for (alg, len) in [("ES384", 96), ("ES512", 132)] {
        let header = header_with(alg, json!({"kid": kid_for(alg)}));
        let good = signature(
            alg,
            format!("{}.{}", b64(header.as_bytes()), b64(body.as_bytes())).as_bytes(),
        );
        assert_eq!(good.len(), len, "{alg}");
        assert!(check(&raw_token(&header, &body, |_| good.clone()), &settings).is_ok());
        // One byte short (an ES512 signature of 131 bytes) or long, a coordinate cut off, the
        // right length with r or s zero, and both coordinates doubled.
        let mut zero_r = good.clone();
        zero_r[..len / 2].fill(0);
        let mut zero_s = good.clone();
        zero_s[len / 2..].fill(0);
        let mut doubled = good.clone();
        doubled.extend_from_slice(&good);
        for bad in [
            good[..len - 1].to_vec(),
            [&good[..], &[0]].concat(),
            good[1..].to_vec(),
            good[..len / 2].to_vec(),
            zero_r,
            zero_s,
            doubled,
            vec![0xff; len],
            Vec::new(),
        ] {
            let t = raw_token(&header, &body, |_| bad.clone());
            assert_eq!(
                check(&t, &settings),
                Err(JwtError::BadSignature),
                "{alg}, {} bytes",
                bad.len()
            );
        }
    }
}
