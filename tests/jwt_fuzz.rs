//! Property tests over token parsing and validation: arbitrary text, arbitrary segments,
//! signed tokens with arbitrary JSON, and mutations of the shared vectors. `validate` must
//! never panic, and a mutated token must never validate unless it equals the original.
//!
//! Bounded by a case count so that `cargo test` stays quick: 2,000 cases per property unless
//! `PROPTEST_CASES` says otherwise (a few seconds in a debug build). For a longer run:
//!
//! ```text
//! PROPTEST_CASES=200000 cargo test --release --test jwt_fuzz
//! ```
//!
//! A failing case is shrunk and printed, and saved under `proptest-regressions/` so that the
//! next run tries it first.

#[path = "fixtures/jwt/support.rs"]
mod support;
#[path = "fixtures/jwt/vectors.rs"]
mod vectors;

use edge_auth_proxy::identity::jwt::{JwtError, JwtSettings, MAX_TOKEN_BYTES};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{json, Map, Value};
use support::{b64, check_at, settings_from, signature, HMAC_SECRET};
use vectors::{settings_for, vectors};

const DEFAULT_CASES: u32 = 2_000;

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    Config {
        cases,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------------
// the shared vectors, each with the settings that accept it

struct Case {
    token: String,
    settings: JwtSettings,
}

/// Every vector's valid token with a configuration for its algorithm alone; built once.
fn cases() -> &'static (Vec<Case>, u64) {
    static CASES: std::sync::OnceLock<(Vec<Case>, u64)> = std::sync::OnceLock::new();
    CASES.get_or_init(|| {
        let v = vectors();
        let cases = v
            .algorithms
            .iter()
            .map(|vector| Case {
                token: vector.valid.clone(),
                settings: settings_for(&v, vector),
            })
            .collect();
        (cases, v.iat + 3_600)
    })
}

/// HMAC only (no RSA key to generate in a debug build), every claim check configured.
fn hmac_settings() -> &'static JwtSettings {
    static SETTINGS: std::sync::OnceLock<JwtSettings> = std::sync::OnceLock::new();
    SETTINGS.get_or_init(|| {
        settings_from(&[
            ("JWT_ALGORITHMS", "HS256,HS384,HS512"),
            ("JWT_HMAC_SECRET", HMAC_SECRET),
            ("JWT_ISSUER", support::ISSUER),
            ("JWT_AUDIENCE", support::AUDIENCE),
            ("JWT_MAX_AGE_SECONDS", "3600"),
        ])
        .unwrap()
    })
}

// ---------------------------------------------------------------------------------------------
// strategies

/// One edit of a token's text.
#[derive(Debug, Clone)]
enum Mutation {
    /// Flip bit `bit` of the byte at `at` (modulo the length).
    FlipBit { at: usize, bit: u8 },
    /// Swap two of the dot-separated segments.
    SwapSegments(usize, usize),
    /// Replace segment `segment` with the same segment of another vector.
    Transplant { from: usize, segment: usize },
    /// Keep the first `keep` bytes (modulo the length).
    Truncate { keep: usize },
    /// Insert `text` at `at` (modulo the length).
    Insert { at: usize, text: String },
    /// Remove `len` bytes at `at`.
    Delete { at: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        1 => (0usize..3, 0usize..3).prop_map(|(a, b)| Mutation::SwapSegments(a, b)),
        1 => (any::<usize>(), 0usize..3)
            .prop_map(|(from, segment)| Mutation::Transplant { from, segment }),
        1 => any::<usize>().prop_map(|keep| Mutation::Truncate { keep }),
        2 => (
            any::<usize>(),
            prop_oneof![
                Just(".".to_string()),
                Just("=".to_string()),
                Just(" ".to_string()),
                Just("A".to_string()),
                Just("AAAA".to_string()),
                Just("\0".to_string()),
                "[A-Za-z0-9_=.+/-]{1,6}",
                any::<String>(),
            ]
        )
            .prop_map(|(at, text)| Mutation::Insert { at, text }),
        1 => (any::<usize>(), 1usize..8).prop_map(|(at, len)| Mutation::Delete { at, len }),
    ]
}

/// `m` applied to the token's bytes (an insertion may bring non-ASCII text, so later edits can
/// split a character: invalid UTF-8 becomes U+FFFD, still a different token).
fn apply(token: &str, m: &Mutation, others: &[Case]) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let n = bytes.len().max(1);
    match m {
        Mutation::FlipBit { at, bit } => {
            if !bytes.is_empty() {
                bytes[at % n] ^= 1 << bit;
            }
        }
        Mutation::SwapSegments(i, j) => {
            let mut parts: Vec<&str> = token.split('.').collect();
            let len = parts.len();
            parts.swap(i % len, j % len);
            bytes = parts.join(".").into_bytes();
        }
        Mutation::Transplant { from, segment } => {
            let donor = &others[from % others.len()].token;
            let mut parts: Vec<&str> = token.split('.').collect();
            let donor_parts: Vec<&str> = donor.split('.').collect();
            let len = parts.len();
            parts[segment % len] = donor_parts[segment % donor_parts.len()];
            bytes = parts.join(".").into_bytes();
        }
        Mutation::Truncate { keep } => bytes.truncate(keep % n),
        Mutation::Insert { at, text } => {
            let at = at % (bytes.len() + 1);
            bytes.splice(at..at, text.bytes());
        }
        Mutation::Delete { at, len } => {
            let at = (at % n).min(bytes.len());
            let end = (at + len).min(bytes.len());
            bytes.drain(at..end);
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// JSON values of a few levels, with the types claims are most often wrong with.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[ -~]{0,12}".prop_map(Value::String),
        Just(json!(support::ISSUER)),
        Just(json!(support::AUDIENCE)),
        (support::NOW - 4_000..support::NOW + 4_000).prop_map(|n| json!(n)),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object with up to two of `names` and up to two other members. A value is a string
/// (the usual type of a header member) or anything at all.
fn json_object(names: &'static [&'static str]) -> impl Strategy<Value = Map<String, Value>> {
    let value = || {
        prop_oneof![
            1 => "[ -~]{0,12}".prop_map(Value::String),
            2 => json_value(),
        ]
    };
    (
        prop::collection::vec((prop::sample::select(names), value()), 0..3),
        prop::collection::btree_map("[a-z]{1,6}", value(), 0..3),
    )
        .prop_map(|(known, other)| {
            let mut m: Map<String, Value> = other.into_iter().collect();
            for (k, v) in known {
                m.insert(k.to_string(), v);
            }
            m
        })
}

const HEADER_NAMES: &[&str] = &["kid", "typ", "cty", "crit", "jku", "x5u", "jwk", "b64"];
const CLAIM_NAMES: &[&str] = &["exp", "nbf", "iat", "iss", "aud", "sub"];

fn header_alg() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::sample::select(&["HS256", "HS384", "HS512"][..]).prop_map(|a| json!(a)),
        1 => prop::sample::select(&["none", "None", "RS256", "hs256", "EdDSA", ""][..])
            .prop_map(|a| json!(a)),
        1 => json_value(),
    ]
}

// ---------------------------------------------------------------------------------------------
// properties

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_text_never_panics_nor_validates(token in prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_.=-]{0,400}",
        "[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,60}",
    ]) {
        for case in &cases().0 {
            prop_assert!(check_at(&token, &case.settings, cases().1).is_err());
        }
    }

    #[test]
    fn arbitrary_segments_never_panic_nor_validate(
        header in prop::collection::vec(any::<u8>(), 0..160),
        payload in prop::collection::vec(any::<u8>(), 0..160),
        sig in prop::collection::vec(any::<u8>(), 0..300),
        json_header in any::<bool>(),
    ) {
        // Half the time a JSON header whose alg is real, so that more cases get further in.
        let header = if json_header {
            let mut h = header.clone();
            h.splice(0..0, br#"{"alg":"HS256","x":""#.iter().copied());
            h.extend_from_slice(br#""}"#);
            h
        } else {
            header
        };
        let token = format!("{}.{}.{}", b64(&header), b64(&payload), b64(&sig));
        for case in &cases().0 {
            prop_assert!(check_at(&token, &case.settings, cases().1).is_err());
        }
    }

    #[test]
    fn signed_arbitrary_json_never_panics_and_passes_only_sound_claims(
        alg in header_alg(),
        header in json_object(HEADER_NAMES),
        claims in json_object(CLAIM_NAMES),
        duplicate in prop::option::weighted(0.1, (0usize..2, "[a-z]{1,4}")),
    ) {
        let mut header = header;
        header.insert("alg".to_string(), alg.clone());
        // Valid claims with arbitrary members written over them: often one wrong value,
        // sometimes none, so that both sides of each check are reached.
        let mut all_claims = support::claims(json!({})).as_object().unwrap().clone();
        all_claims.extend(claims);
        let claims = all_claims;
        let mut header_text = Value::Object(header).to_string();
        let mut claims_text = Value::Object(claims.clone()).to_string();
        // Sometimes a member named twice, which no JSON map can hold.
        if let Some((which, name)) = &duplicate {
            let text = if *which == 0 { &mut header_text } else { &mut claims_text };
            text.insert_str(1, &format!(r#""{name}":1,"{name}":2,"#));
        }
        let sign_with = alg.as_str().filter(|a| a.starts_with("HS") && a.len() == 5).unwrap_or("HS256");
        let input = format!("{}.{}", b64(header_text.as_bytes()), b64(claims_text.as_bytes()));
        let token = format!("{input}.{}", b64(&signature(sign_with, input.as_bytes())));

        let settings = hmac_settings();
        let now = support::NOW;
        if let Ok(v) = check_at(&token, settings, now) {
            // Whatever got through is signed, unrepeated and within its dates.
            prop_assert!(duplicate.is_none());
            prop_assert!(v.exp.saturating_add(settings.leeway_secs) > now);
            prop_assert!(v.nbf.is_none_or(|nbf| nbf <= now + settings.leeway_secs));
            prop_assert!(v.iat.is_some_and(|iat| iat <= now + settings.leeway_secs));
            prop_assert_eq!(v.iss.as_deref(), Some(support::ISSUER));
            let aud = &claims["aud"];
            prop_assert!(aud == support::AUDIENCE || aud.as_array().is_some_and(|a| a.contains(&json!(support::AUDIENCE))));
            prop_assert_eq!(v.alg.name(), alg.as_str().unwrap());
        }
    }

    #[test]
    fn a_mutated_vector_never_validates_unless_unchanged(
        which in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let (all, now) = cases();
        let case = which.get(all);
        let mut token = case.token.clone();
        for m in &mutations {
            token = apply(&token, m, all);
        }
        let result = check_at(&token, &case.settings, *now);
        if token != case.token {
            prop_assert!(result.is_err(), "mutated token validated: {:?}", mutations);
        } else {
            prop_assert!(result.is_ok());
        }
        if token.len() > MAX_TOKEN_BYTES {
            prop_assert_eq!(result.unwrap_err(), JwtError::TooLarge);
        }
    }
}

#[test]
fn the_vectors_validate_unmutated() {
    let (all, now) = cases();
    for case in all {
        assert!(check_at(&case.token, &case.settings, *now).is_ok());
    }
}
