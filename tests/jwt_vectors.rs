//! The shared test vectors (`tests/fixtures/jwt/vectors.json`, signed by jose) through
//! `jwt::validate` with the pure-Rust verifier. `tests/e2e/vectors.test.mjs` runs the same file
//! through the built Worker, so both paths must give the same answers.

#[path = "fixtures/jwt/support.rs"]
mod support;
#[path = "fixtures/jwt/vectors.rs"]
mod vectors;

use edge_auth_proxy::identity::jwt::{Alg, JwtError};
use serde_json::json;
use support::{check_at, settings_from};
use vectors::{settings_for, vectors, Vector, Vectors};

/// The vectors' `iat` plus an hour: within every token's lifetime.
fn now(v: &Vectors) -> u64 {
    v.iat + 3_600
}

#[test]
fn the_file_covers_every_algorithm_once() {
    let v = vectors();
    let names: Vec<&str> = v.algorithms.iter().map(|a| a.alg.as_str()).collect();
    let all: Vec<&str> = Alg::ALL.iter().map(|a| a.name()).collect();
    assert_eq!(names, all);
    for vector in &v.algorithms {
        let hmac = vector.alg.starts_with("HS");
        assert_eq!(vector.secret.is_some(), hmac, "{}", vector.alg);
        assert_eq!(vector.public_jwk.is_some(), !hmac, "{}", vector.alg);
        assert!(vector.tampered.len() >= 3, "{}", vector.alg);
    }
}

#[test]
fn every_valid_vector_verifies_with_its_own_key() {
    let v = vectors();
    for vector in &v.algorithms {
        let verified = check_at(&vector.valid, &settings_for(&v, vector), now(&v))
            .unwrap_or_else(|e| panic!("{}: {e:?}", vector.alg));
        assert_eq!(verified.alg.name(), vector.alg);
        assert_eq!(verified.kid.as_deref(), Some(vector.kid.as_str()));
        assert_eq!(verified.iss.as_deref(), Some(v.issuer.as_str()));
        assert_eq!(verified.exp, v.exp);
        assert_eq!(verified.iat, Some(v.iat));
    }
}

#[test]
fn every_tampered_vector_is_refused_with_its_code() {
    let v = vectors();
    for vector in &v.algorithms {
        let settings = settings_for(&v, vector);
        for t in &vector.tampered {
            let err = check_at(&t.token, &settings, now(&v))
                .map(|_| ())
                .expect_err(&format!("{} {}: accepted", vector.alg, t.name));
            assert_eq!(err.code(), t.error, "{} {}", vector.alg, t.name);
        }
    }
}

#[test]
fn no_vector_verifies_under_another_algorithms_key() {
    // Each token against every other vector's configuration: only its own may pass.
    let v = vectors();
    for config in &v.algorithms {
        let settings = settings_for(&v, config);
        for vector in &v.algorithms {
            let result = check_at(&vector.valid, &settings, now(&v));
            assert_eq!(
                result.is_ok(),
                config.alg == vector.alg,
                "{} token, {} configuration",
                vector.alg,
                config.alg
            );
        }
    }
}

#[test]
fn all_asymmetric_keys_in_one_set_still_verify_only_their_own_tokens() {
    // As the end-to-end suite configures one Worker: every public key in one inline JWKS.
    let v = vectors();
    let asymmetric: Vec<&Vector> = v
        .algorithms
        .iter()
        .filter(|a| a.public_jwk.is_some())
        .collect();
    let jwks = json!({"keys": asymmetric.iter().map(|a| a.public_jwk.clone()).collect::<Vec<_>>()})
        .to_string();
    let algs = asymmetric
        .iter()
        .map(|a| a.alg.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let settings = settings_from(&[
        ("JWT_ALGORITHMS", &algs),
        ("JWT_JWKS", &jwks),
        ("JWT_ISSUER", &v.issuer),
        ("JWT_AUDIENCE", &v.audience),
    ])
    .unwrap();
    for vector in asymmetric {
        assert!(
            check_at(&vector.valid, &settings, now(&v)).is_ok(),
            "{}",
            vector.alg
        );
        for t in &vector.tampered {
            assert_eq!(
                check_at(&t.token, &settings, now(&v)).map_err(|e| e.code()),
                Err(t.error.as_str()),
                "{} {}",
                vector.alg,
                t.name
            );
        }
    }
}

#[test]
fn valid_vectors_expire_on_time() {
    let v = vectors();
    for vector in &v.algorithms {
        let settings = settings_for(&v, vector);
        // The default leeway is 60 s.
        assert!(check_at(&vector.valid, &settings, v.exp + 59).is_ok());
        assert_eq!(
            check_at(&vector.valid, &settings, v.exp + 60).unwrap_err(),
            JwtError::Expired
        );
    }
}
