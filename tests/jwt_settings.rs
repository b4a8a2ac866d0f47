//! `JwtSettings::from_settings`: each setting, its default, and the cross-checks between them.

#[path = "fixtures/jwt/support.rs"]
mod support;

use edge_auth_proxy::identity::jwt::{Alg, KeyFamily};
use serde_json::json;
use support::*;

fn ec_jwks() -> String {
    json!({"keys": [ec_jwk(ec(), json!({"kid": "ec-1"})), ed_jwk(json!({"kid": "ed-1"}))]})
        .to_string()
}

#[test]
fn a_minimal_hmac_configuration_gets_the_documented_defaults() {
    let s = settings_from(&[
        ("JWT_ALGORITHMS", "HS256"),
        ("JWT_HMAC_SECRET", HMAC_SECRET),
    ])
    .unwrap();
    assert_eq!(s.algorithms, vec![Alg::Hs256]);
    assert_eq!(s.leeway_secs, 60);
    assert_eq!(s.max_age_secs, None);
    assert_eq!(s.issuer, None);
    assert!(s.audiences.is_empty());
    assert_eq!(s.cookie, None);
    assert_eq!(s.jwks_url, None);
    assert_eq!(s.keys().len(), 1);
    assert!(s.keys().has_family(KeyFamily::Hmac));
    assert!(
        !format!("{s:?}").contains(HMAC_SECRET),
        "Debug never shows the secret"
    );
}

#[test]
fn every_optional_setting_is_read() {
    let jwks = ec_jwks();
    let s = settings_from(&[
        ("JWT_ALGORITHMS", " ES256 , EdDSA "),
        ("JWT_JWKS", &jwks),
        ("JWKS_URL", "https://login.example/.well-known/jwks.json"),
        ("JWT_ISSUER", "https://login.example/"),
        ("JWT_AUDIENCE", "a, b ,,c"),
        ("JWT_LEEWAY_SECONDS", "5"),
        ("JWT_MAX_AGE_SECONDS", "3600"),
        ("JWT_COOKIE", "__Host-session"),
    ])
    .unwrap();
    assert_eq!(s.algorithms, vec![Alg::Es256, Alg::EdDsa]);
    assert_eq!(
        s.jwks_url.as_deref(),
        Some("https://login.example/.well-known/jwks.json")
    );
    assert_eq!(s.issuer.as_deref(), Some("https://login.example/"));
    assert_eq!(s.audiences, vec!["a", "b", "c"]);
    assert_eq!(s.leeway_secs, 5);
    assert_eq!(s.max_age_secs, Some(3600));
    assert_eq!(s.cookie.as_deref(), Some("__Host-session"));
    assert_eq!(s.keys().len(), 2);
}

#[test]
fn errors_name_the_setting_and_never_its_value() {
    let ec_only = ec_jwks();
    let secret = HMAC_SECRET;
    let short_secret = "short-secret-value-of-40-bytes-xxxxxxxxx";
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("JWT_HMAC_SECRET", secret)], "JWT_ALGORITHMS"),
        (
            vec![("JWT_ALGORITHMS", "none"), ("JWT_HMAC_SECRET", secret)],
            "JWT_ALGORITHMS",
        ),
        (
            vec![
                ("JWT_ALGORITHMS", "HS256,None"),
                ("JWT_HMAC_SECRET", secret),
            ],
            "JWT_ALGORITHMS",
        ),
        (
            vec![
                ("JWT_ALGORITHMS", "HS256,XS999"),
                ("JWT_HMAC_SECRET", secret),
            ],
            "JWT_ALGORITHMS",
        ),
        (vec![("JWT_ALGORITHMS", ",")], "JWT_ALGORITHMS"),
        // No key source at all.
        (vec![("JWT_ALGORITHMS", "RS256")], "JWT_JWKS"),
        // HS* allowed without a secret, even with asymmetric keys.
        (
            vec![("JWT_ALGORITHMS", "HS256"), ("JWT_JWKS", &ec_only)],
            "JWT_HMAC_SECRET",
        ),
        (
            vec![("JWT_ALGORITHMS", "ES256,HS384"), ("JWT_JWKS", &ec_only)],
            "JWT_HMAC_SECRET",
        ),
        // An asymmetric algorithm with only a secret, or without a key of its family.
        (
            vec![
                ("JWT_ALGORITHMS", "HS256,RS256"),
                ("JWT_HMAC_SECRET", secret),
            ],
            "JWT_JWKS",
        ),
        (
            vec![("JWT_ALGORITHMS", "RS256"), ("JWT_JWKS", &ec_only)],
            "JWT_JWKS",
        ),
        // RFC 7518 §3.2 key lengths.
        (
            vec![
                ("JWT_ALGORITHMS", "HS512"),
                ("JWT_HMAC_SECRET", short_secret),
            ],
            "JWT_HMAC_SECRET",
        ),
        (
            vec![("JWT_ALGORITHMS", "HS256"), ("JWT_HMAC_SECRET", "tooshort")],
            "JWT_HMAC_SECRET",
        ),
        (
            vec![("JWT_ALGORITHMS", "ES256"), ("JWT_JWKS", "{not json")],
            "JWT_JWKS",
        ),
        (
            vec![
                ("JWT_ALGORITHMS", "ES256"),
                ("JWT_JWKS", r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#),
            ],
            "JWT_JWKS",
        ),
        (
            vec![
                ("JWT_ALGORITHMS", "ES256"),
                ("JWKS_URL", "ftp://keys.example/jwks"),
            ],
            "JWKS_URL",
        ),
        (
            vec![
                ("JWT_ALGORITHMS", "ES256"),
                ("JWKS_URL", "https://u:pw@keys.example/"),
            ],
            "JWKS_URL",
        ),
        (
            vec![
                ("JWT_ALGORITHMS", "HS256"),
                ("JWT_HMAC_SECRET", secret),
                ("JWT_LEEWAY_SECONDS", "-1"),
            ],
            "JWT_LEEWAY_SECONDS",
        ),
        (
            vec![
                ("JWT_ALGORITHMS", "HS256"),
                ("JWT_HMAC_SECRET", secret),
                ("JWT_LEEWAY_SECONDS", "86400"),
            ],
            "JWT_LEEWAY_SECONDS",
        ),
        (
            vec![
                ("JWT_ALGORITHMS", "HS256"),
                ("JWT_HMAC_SECRET", secret),
                ("JWT_MAX_AGE_SECONDS", "0"),
            ],
            "JWT_MAX_AGE_SECONDS",
        ),
        (
            vec![
                ("JWT_ALGORITHMS", "HS256"),
                ("JWT_HMAC_SECRET", secret),
                ("JWT_AUDIENCE", " , "),
            ],
            "JWT_AUDIENCE",
        ),
        (
            vec![
                ("JWT_ALGORITHMS", "HS256"),
                ("JWT_HMAC_SECRET", secret),
                ("JWT_COOKIE", "my session"),
            ],
            "JWT_COOKIE",
        ),
    ];
    for (vars, setting) in cases {
        let err = settings_from(&vars).expect_err(setting);
        assert_eq!(err.settings(), [setting], "{vars:?}: {err}");
        // Algorithm names are the contract's own vocabulary; every other value stays out.
        for (_, value) in vars.iter().filter(|(name, _)| *name != "JWT_ALGORITHMS") {
            if value.trim().len() > 2 {
                assert!(!err.to_string().contains(value), "{err} leaks {value}");
            }
        }
    }
}

#[test]
fn the_documented_error_texts() {
    let err = settings_from(&[("JWT_ALGORITHMS", "ES256"), ("JWT_JWKS", "[")]).unwrap_err();
    assert_eq!(err.to_string(), "JWT_JWKS is not a JSON Web Key Set");
    let err = settings_from(&[("JWT_ALGORITHMS", "ES256")]).unwrap_err();
    for name in ["JWKS_URL", "JWT_JWKS", "JWT_HMAC_SECRET"] {
        assert!(err.to_string().contains(name), "{err}");
    }
    let err =
        settings_from(&[("JWT_ALGORITHMS", "NoNe"), ("JWT_HMAC_SECRET", HMAC_SECRET)]).unwrap_err();
    assert!(err.to_string().contains("none"), "{err}");
}

#[test]
fn a_jwks_url_alone_allows_any_asymmetric_algorithm() {
    let s = settings_from(&[
        ("JWT_ALGORITHMS", "RS256,ES256,EdDSA"),
        ("JWKS_URL", "https://k.example/jwks"),
    ]);
    assert!(
        s.unwrap().keys().is_empty(),
        "the URL's keys are fetched elsewhere"
    );
}

#[test]
fn blank_settings_count_as_unset() {
    let s = settings_from(&[
        ("JWT_ALGORITHMS", "HS256"),
        ("JWT_HMAC_SECRET", HMAC_SECRET),
        ("JWT_JWKS", ""),
        ("JWKS_URL", " "),
        ("JWT_ISSUER", ""),
        ("JWT_COOKIE", ""),
        ("JWT_LEEWAY_SECONDS", ""),
    ])
    .unwrap();
    assert_eq!(
        (s.jwks_url, s.issuer, s.cookie, s.leeway_secs),
        (None, None, None, 60)
    );
}
