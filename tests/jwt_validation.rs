//! `jwt::validate` as a black box: each rule with the case that breaks it, on real keys.

#[path = "fixtures/jwt/support.rs"]
mod support;

use edge_auth_proxy::identity::jwt::{
    Alg, JwtError, KeySet, RustCryptoVerifier, MAX_KEY_TRIES, MAX_TOKEN_BYTES,
};
use serde_json::{json, Value};
use support::*;

fn hs256(claims: Value) -> String {
    token("HS256", json!({}), claims)
}

#[test]
fn every_algorithm_verifies_with_and_without_a_kid() {
    let settings = settings(&[]);
    for alg in Alg::ALL {
        let name = alg.name();
        let kid = kid_for(name);
        let header = if kid.is_null() {
            json!({})
        } else {
            json!({"kid": kid})
        };
        let verified = check(&token(name, header, claims(json!({}))), &settings)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(verified.alg, alg);
        assert_eq!(verified.kid.as_deref(), kid.as_str());
        assert_eq!(verified.iss.as_deref(), Some(ISSUER));
        assert_eq!(verified.sub.as_deref(), Some("cust-42"));
        assert_eq!(verified.exp, NOW + 600);
        assert_eq!(verified.nbf, Some(NOW - 5));
        assert_eq!(verified.iat, Some(NOW - 5));

        // Without a kid the key is found by its family.
        let verified = check(&token(name, json!({}), claims(json!({}))), &settings)
            .unwrap_or_else(|e| panic!("{name} without kid: {e:?}"));
        assert_eq!(verified.kid, None);
    }
}

#[test]
fn a_tampered_payload_breaks_the_signature_for_every_family() {
    let settings = settings(&[]);
    for alg in [
        "HS256", "RS256", "PS256", "ES256", "ES384", "ES512", "EdDSA",
    ] {
        let good = token(alg, json!({}), claims(json!({})));
        let forged_claims = b64(claims(json!({"sub": "admin"})).to_string().as_bytes());
        let parts: Vec<&str> = good.split('.').collect();
        let tampered = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
        assert_eq!(
            check(&tampered, &settings),
            Err(JwtError::BadSignature),
            "{alg}"
        );

        // And a signature from another message does not transfer either.
        let other = token(alg, json!({}), claims(json!({"sub": "other"})));
        let swapped = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            other.rsplit('.').next().unwrap()
        );
        assert_eq!(
            check(&swapped, &settings),
            Err(JwtError::BadSignature),
            "{alg}"
        );
    }
}

#[test]
fn exp_is_required_and_honours_the_leeway_to_the_second() {
    let settings = settings(&[]); // leeway 60 by default
    assert_eq!(
        check(&hs256(claims(json!({"exp": NOW - 61}))), &settings),
        Err(JwtError::Expired)
    );
    assert_eq!(
        check(&hs256(claims(json!({"exp": NOW - 60}))), &settings),
        Err(JwtError::Expired)
    );
    assert!(check(&hs256(claims(json!({"exp": NOW - 59}))), &settings).is_ok());

    let strict = support::settings(&[("JWT_LEEWAY_SECONDS", "0")]);
    assert_eq!(
        check(&hs256(claims(json!({"exp": NOW}))), &strict),
        Err(JwtError::Expired)
    );
    assert!(check(&hs256(claims(json!({"exp": NOW + 1}))), &strict).is_ok());

    assert_eq!(
        check(&hs256(claims(json!({"exp": null}))), &settings),
        Err(JwtError::MissingClaim("exp"))
    );
    for bad in [
        json!("1700000600"),
        json!(-1),
        json!(true),
        json!([NOW + 600]),
    ] {
        assert_eq!(
            check(&hs256(claims(json!({"exp": bad}))), &settings),
            Err(JwtError::InvalidClaim("exp")),
            "{bad}"
        );
    }
    // A fractional NumericDate is valid (RFC 7519 §2).
    assert!(check(
        &hs256(claims(json!({"exp": (NOW + 600) as f64 + 0.5}))),
        &settings
    )
    .is_ok());
}

#[test]
fn nbf_and_iat_may_not_be_in_the_future_beyond_the_leeway() {
    let settings = settings(&[]);
    assert_eq!(
        check(&hs256(claims(json!({"nbf": NOW + 61}))), &settings),
        Err(JwtError::NotYetValid)
    );
    assert!(check(&hs256(claims(json!({"nbf": NOW + 60}))), &settings).is_ok());
    assert_eq!(
        check(&hs256(claims(json!({"iat": NOW + 61}))), &settings),
        Err(JwtError::IssuedInFuture)
    );
    assert!(check(&hs256(claims(json!({"iat": NOW + 60}))), &settings).is_ok());
    assert!(check(&hs256(claims(json!({"iat": null, "nbf": null}))), &settings).is_ok());
    assert_eq!(
        check(&hs256(claims(json!({"nbf": "soon"}))), &settings),
        Err(JwtError::InvalidClaim("nbf"))
    );
    assert_eq!(
        check(&hs256(claims(json!({"iat": {}}))), &settings),
        Err(JwtError::InvalidClaim("iat"))
    );
}

#[test]
fn max_age_requires_a_recent_iat() {
    let settings = settings(&[("JWT_MAX_AGE_SECONDS", "300")]);
    // 300 s plus the 60 s leeway.
    assert!(check(&hs256(claims(json!({"iat": NOW - 360}))), &settings).is_ok());
    assert_eq!(
        check(&hs256(claims(json!({"iat": NOW - 361}))), &settings),
        Err(JwtError::TooOld)
    );
    assert_eq!(
        check(&hs256(claims(json!({"iat": null}))), &settings),
        Err(JwtError::MissingClaim("iat"))
    );
    // Without the setting, age does not matter.
    assert!(check(
        &hs256(claims(json!({"iat": NOW - 86_400}))),
        &support::settings(&[])
    )
    .is_ok());
}

#[test]
fn audience_must_contain_one_of_ours() {
    let settings = settings(&[("JWT_AUDIENCE", "profile-api, other-api")]);
    assert!(check(&hs256(claims(json!({"aud": "other-api"}))), &settings).is_ok());
    assert!(check(
        &hs256(claims(json!({"aud": ["x", "profile-api"]}))),
        &settings
    )
    .is_ok());
    assert_eq!(
        check(&hs256(claims(json!({"aud": ["x", "y"]}))), &settings),
        Err(JwtError::WrongAudience)
    );
    assert_eq!(
        check(&hs256(claims(json!({"aud": []}))), &settings),
        Err(JwtError::WrongAudience)
    );
    assert_eq!(
        check(&hs256(claims(json!({"aud": "Profile-API"}))), &settings),
        Err(JwtError::WrongAudience)
    );
    assert_eq!(
        check(&hs256(claims(json!({"aud": null}))), &settings),
        Err(JwtError::MissingClaim("aud"))
    );
    for bad in [
        json!(1),
        json!(["profile-api", 2]),
        json!({"aud": "profile-api"}),
    ] {
        assert_eq!(
            check(&hs256(claims(json!({"aud": bad}))), &settings),
            Err(JwtError::InvalidClaim("aud"))
        );
    }
}

#[test]
fn issuer_must_match_exactly() {
    let settings = settings(&[]);
    assert_eq!(
        check(
            &hs256(claims(json!({"iss": "https://evil.example/"}))),
            &settings
        ),
        Err(JwtError::WrongIssuer)
    );
    assert_eq!(
        check(
            &hs256(claims(json!({"iss": "https://login.example"}))),
            &settings
        ),
        Err(JwtError::WrongIssuer)
    );
    assert_eq!(
        check(&hs256(claims(json!({"iss": null}))), &settings),
        Err(JwtError::MissingClaim("iss"))
    );
    assert_eq!(
        check(&hs256(claims(json!({"iss": 7}))), &settings),
        Err(JwtError::InvalidClaim("iss"))
    );
    assert_eq!(
        check(&hs256(claims(json!({"sub": 7}))), &settings),
        Err(JwtError::InvalidClaim("sub"))
    );
}

#[test]
fn without_issuer_or_audience_settings_those_claims_are_not_required() {
    let jwks = jwks();
    let settings = settings_from(&[("JWT_ALGORITHMS", "ES256"), ("JWT_JWKS", &jwks)]).unwrap();
    let t = token(
        "ES256",
        json!({"kid": "ec-1"}),
        claims(json!({"iss": null, "aud": null})),
    );
    assert!(check(&t, &settings).is_ok());
}

#[test]
fn none_in_any_spelling_is_refused_before_keys_are_consulted() {
    let settings = settings(&[]);
    let body = claims(json!({})).to_string();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({"alg": alg}).to_string();
        for sig in [Vec::new(), b"x".to_vec(), signature("HS256", b"anything")] {
            let t = raw_token(&header, &body, |_| sig.clone());
            assert_eq!(
                check(&t, &settings),
                Err(JwtError::AlgorithmNotAllowed),
                "{alg}"
            );
            // Even against an empty key set: the allow-list answers first.
            assert_eq!(
                check_with(&t, &settings, &KeySet::new()),
                Err(JwtError::AlgorithmNotAllowed)
            );
        }
    }
}

#[test]
fn algorithms_outside_the_allow_list_are_refused() {
    let jwks = jwks();
    let settings = settings_from(&[("JWT_ALGORITHMS", "RS256"), ("JWT_JWKS", &jwks)]).unwrap();
    assert!(check(
        &token("RS256", json!({"kid": "rsa-1"}), claims(json!({}))),
        &settings
    )
    .is_ok());
    for alg in [
        "PS256", "ES256", "ES384", "ES512", "EdDSA", "HS256", "RS512",
    ] {
        let t = token(alg, json!({"kid": kid_for(alg)}), claims(json!({})));
        assert_eq!(
            check(&t, &settings),
            Err(JwtError::AlgorithmNotAllowed),
            "{alg}"
        );
    }
    // `alg` is case-sensitive, and names we do not implement are not allowed.
    for alg in ["rs256", "Rs256", "es384", "ES256K", "HS1", ""] {
        let t = raw_token(
            &json!({"alg": alg}).to_string(),
            &claims(json!({})).to_string(),
            |i| signature("RS256", i),
        );
        assert_eq!(
            check(&t, &settings),
            Err(JwtError::AlgorithmNotAllowed),
            "{alg}"
        );
    }
}

#[test]
fn an_hmac_token_never_verifies_with_an_rsa_key() {
    // RFC 8725 §3.1: the classic attack signs HS256 with the RSA public key as the secret.
    let n = b64_decode(rsa_jwk(json!({}))["n"].as_str().unwrap());
    let rsa_jwk_text = rsa_jwk(json!({"kid": "rsa-1"})).to_string();
    let secrets: [&[u8]; 2] = [&n, rsa_jwk_text.as_bytes()];
    let rsa_only =
        KeySet::from_jwks_json(&json!({"keys": [rsa_jwk(json!({"kid": "rsa-1"}))]}).to_string())
            .unwrap();

    for secret in secrets {
        let forge = |kid: Value| {
            let header = if kid.is_null() {
                json!({"alg": "HS256"})
            } else {
                json!({"alg": "HS256", "kid": kid})
            };
            raw_token(
                &header.to_string(),
                &claims(json!({})).to_string(),
                |input| {
                    use jwt_compact::{
                        alg::{Hs256, Hs256Key},
                        Algorithm, AlgorithmSignature,
                    };
                    Hs256
                        .sign(&Hs256Key::new(secret), input)
                        .as_bytes()
                        .to_vec()
                },
            )
        };
        for t in [forge(Value::Null), forge(json!("rsa-1"))] {
            // An RSA-only deployment does not allow HS256 at all.
            let jwks = jwks();
            let rs_only =
                settings_from(&[("JWT_ALGORITHMS", "RS256"), ("JWT_JWKS", &jwks)]).unwrap();
            assert_eq!(check(&t, &rs_only), Err(JwtError::AlgorithmNotAllowed));
            // Where HS256 is allowed, a key set with only RSA keys has no key for it.
            let both = settings(&[]);
            assert_eq!(check_with(&t, &both, &rsa_only), Err(JwtError::KeyMismatch));
            // And the real secret is not the RSA key.
            assert_eq!(check(&t, &both), Err(JwtError::BadSignature));
        }
    }
    // The verifier itself refuses, whatever key selection did.
    let rsa_key = &rsa_only.keys()[0];
    let input = b"header.payload";
    let mac = signature("HS256", input);
    assert!(!RustCryptoVerifier.verify_now(Alg::Hs256, rsa_key, input, &mac));
}

fn b64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

#[test]
fn a_kid_that_is_not_in_the_set_is_unknown() {
    let settings = settings(&[]);
    let t = token("RS256", json!({"kid": "rsa-2"}), claims(json!({})));
    assert_eq!(check(&t, &settings), Err(JwtError::UnknownKid));
    // A kid naming a key of another family is a mismatch, not a reason to try other keys.
    let t = token("RS256", json!({"kid": "ec-1"}), claims(json!({})));
    assert_eq!(check(&t, &settings), Err(JwtError::KeyMismatch));
    // The HMAC secret belongs to no key set: an HS256 token's kid does not select it.
    let t = token("HS256", json!({"kid": "session-key-7"}), claims(json!({})));
    assert_eq!(
        check(&t, &settings).unwrap().kid.as_deref(),
        Some("session-key-7")
    );
}

#[test]
fn a_jwk_alg_binds_the_key_to_that_algorithm() {
    let set = json!({"keys": [rsa_jwk(json!({"kid": "r", "alg": "RS256"}))]}).to_string();
    let settings = settings_from(&[("JWT_ALGORITHMS", "RS256,PS256"), ("JWT_JWKS", &set)]).unwrap();
    assert!(check(
        &token("RS256", json!({"kid": "r"}), claims(json!({}))),
        &settings
    )
    .is_ok());
    let t = token("PS256", json!({"kid": "r"}), claims(json!({})));
    assert_eq!(check(&t, &settings), Err(JwtError::KeyMismatch));
}

#[test]
fn without_a_kid_a_few_keys_of_the_family_are_tried() {
    let keys: Vec<_> = (0..=MAX_KEY_TRIES).map(|_| new_ec()).collect();
    let set =
        json!({"keys": keys.iter().map(|k| ec_jwk(k, json!({}))).collect::<Vec<_>>()}).to_string();
    let settings = settings_from(&[("JWT_ALGORITHMS", "ES256"), ("JWT_JWKS", &set)]).unwrap();
    let body = claims(json!({})).to_string();
    let header = json!({"alg": "ES256"}).to_string();
    let signed_by = |key: &EcSigningKey| {
        raw_token(&header, &body, |input| {
            use jwt_compact::{alg::Es256, Algorithm, AlgorithmSignature};
            Es256.sign(key, input).as_bytes().to_vec()
        })
    };
    for key in &keys[..MAX_KEY_TRIES] {
        assert!(check(&signed_by(key), &settings).is_ok());
    }
    // The work an unauthenticated token can cause is bounded: later keys need a kid.
    assert_eq!(
        check(&signed_by(&keys[MAX_KEY_TRIES]), &settings),
        Err(JwtError::BadSignature)
    );
}

#[test]
fn a_fetched_key_set_can_be_merged_with_the_configured_one() {
    let jwks = jwks();
    let settings = settings_from(&[
        ("JWT_ALGORITHMS", "ES256,HS256"),
        ("JWKS_URL", "https://login.example/.well-known/jwks.json"),
        ("JWT_HMAC_SECRET", HMAC_SECRET),
    ])
    .unwrap();
    let t = token(
        "ES256",
        json!({"kid": "ec-1"}),
        claims(json!({"iss": ISSUER, "aud": AUDIENCE})),
    );
    assert_eq!(check(&t, &settings), Err(JwtError::UnknownKid));
    let mut fetched = KeySet::from_jwks_json(&jwks).unwrap();
    fetched.extend(settings.keys());
    assert!(check_with(&t, &settings, &fetched).is_ok());
    assert!(check_with(&hs256(claims(json!({}))), &settings, &fetched).is_ok());
}

#[test]
fn the_header_cannot_bring_its_own_key() {
    let settings = settings(&[]);
    let attacker = new_ec();
    let attacker_jwk = ec_jwk(&attacker, json!({}));
    for extra in [
        json!({"jwk": attacker_jwk}),
        json!({"jku": "https://evil.example/jwks.json"}),
        json!({"x5u": "https://evil.example/cert.pem"}),
        json!({"kid": "ec-1", "jwk": attacker_jwk}),
    ] {
        let mut header = json!({"alg": "ES256"});
        header
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let t = raw_token(
            &header.to_string(),
            &claims(json!({})).to_string(),
            |input| {
                use jwt_compact::{alg::Es256, Algorithm, AlgorithmSignature};
                Es256.sign(&attacker, input).as_bytes().to_vec()
            },
        );
        assert_eq!(
            check(&t, &settings),
            Err(JwtError::BadSignature),
            "{header}"
        );
    }
}

#[test]
fn critical_header_extensions_are_refused() {
    let settings = settings(&[]);
    for crit in [json!(["exp"]), json!(["b64"]), json!([])] {
        let t = token(
            "HS256",
            json!({"crit": crit, "b64": false}),
            claims(json!({})),
        );
        assert_eq!(check(&t, &settings), Err(JwtError::CriticalHeader));
    }
}

#[test]
fn structure_is_three_base64url_segments_of_json() {
    let settings = settings(&[]);
    let good = hs256(claims(json!({})));
    let cases = [
        format!("{good}.x"),
        format!("{good}."),
        format!("{good} "),
        format!("{good}=="),
        good.rsplit_once('.').unwrap().0.to_string(),
        "not-a-jwt".to_string(),
        String::new(),
        "..".to_string(),
        raw_token("not json", &claims(json!({})).to_string(), |i| {
            signature("HS256", i)
        }),
        raw_token("{}", &claims(json!({})).to_string(), |i| {
            signature("HS256", i)
        }),
        raw_token(r#"{"alg":256}"#, &claims(json!({})).to_string(), |i| {
            signature("HS256", i)
        }),
        raw_token(
            r#"{"alg":"HS256","cty":"CBOR"}"#,
            &claims(json!({})).to_string(),
            |i| signature("HS256", i),
        ),
        good.replacen('e', "+", 1),
    ];
    for bad in &cases {
        assert_eq!(check(bad, &settings), Err(JwtError::Malformed), "{bad}");
    }
    // Signed, but the payload is not a JSON object.
    for payload in ["not json", "[1,2]", "\"exp\""] {
        let t = raw_token(r#"{"alg":"HS256"}"#, payload, |i| signature("HS256", i));
        assert_eq!(check(&t, &settings), Err(JwtError::Malformed), "{payload}");
    }
    // Extra bytes in the signature segment decode to a longer signature, which fails.
    let padded = format!("{good}AAAA");
    assert_eq!(check(&padded, &settings), Err(JwtError::BadSignature));
}

#[test]
fn tokens_over_8_kib_are_refused_unread() {
    let settings = settings(&[]);
    let with_filler = |n: usize| hs256(claims(json!({"filler": "x".repeat(n)})));
    let base = with_filler(0).len();
    // Base64 grows 4 per 3 bytes: find filler that lands exactly on the limit.
    let mut n = (MAX_TOKEN_BYTES - base) * 3 / 4;
    while with_filler(n).len() < MAX_TOKEN_BYTES {
        n += 1;
    }
    while with_filler(n).len() > MAX_TOKEN_BYTES {
        n -= 1;
    }
    let at_limit = with_filler(n);
    assert!(at_limit.len() <= MAX_TOKEN_BYTES && at_limit.len() > MAX_TOKEN_BYTES - 3);
    assert!(check(&at_limit, &settings).is_ok());
    let over = with_filler(n + 3);
    assert!(over.len() > MAX_TOKEN_BYTES);
    assert_eq!(check(&over, &settings), Err(JwtError::TooLarge));
    assert_eq!(
        check(&"a".repeat(MAX_TOKEN_BYTES + 1), &settings),
        Err(JwtError::TooLarge)
    );
}

#[test]
fn jwt_types_admit_only_the_listed_kinds_of_token_before_any_signature_work() {
    let at = settings(&[("JWT_TYPES", "at+jwt")]);
    for typ in [
        "at+jwt",
        "AT+JWT",
        "application/at+jwt",
        "Application/At+Jwt",
    ] {
        let t = token("ES256", json!({"typ": typ}), claims(json!({})));
        assert!(check(&t, &at).is_ok(), "{typ}");
    }
    // An ID token (typ JWT), an untyped token, a null typ and near misses: the same claims, the
    // same key, refused as of the wrong kind.
    for header in [
        json!({"typ": "JWT"}),
        json!({}),
        json!({"typ": null}),
        json!({"typ": "at+jwt "}),
        json!({"typ": "text/at+jwt"}),
        json!({"typ": "application/jwt"}),
        json!({"typ": "dpop+jwt"}),
    ] {
        let t = token("ES256", header.clone(), claims(json!({})));
        assert_eq!(check(&t, &at), Err(JwtError::WrongType), "{header}");
    }
    // Refused on the header alone: a forged signature is not even looked at.
    let forged = token("ES256", json!({"typ": "JWT"}), claims(json!({})));
    let forged = format!("{}.{}", forged.rsplit_once('.').unwrap().0, b64(&[0u8; 64]));
    assert_eq!(check(&forged, &at), Err(JwtError::WrongType));
    // A typ that is not a string stays malformed.
    let t = token("ES256", json!({"typ": 1}), claims(json!({})));
    assert_eq!(check(&t, &at), Err(JwtError::Malformed));
    // Unset, every kind passes (the behaviour before JWT_TYPES).
    let any = settings(&[]);
    for header in [json!({"typ": "JWT"}), json!({})] {
        let t = token("ES256", header, claims(json!({})));
        assert!(check(&t, &any).is_ok());
    }
}
