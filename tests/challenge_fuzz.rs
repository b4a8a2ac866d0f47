//! The `WWW-Authenticate` parser against generated input: random bytes never make it panic,
//! and fields written from random challenges (schemes and names in any case, token or quoted
//! values with escapes and commas, token68, whitespace, several fields) are read back as
//! written, so a refusal is found exactly when one was written.

use edge_auth_proxy::edge::challenge::{self, refuses_bearer_token};
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Param {
    name: String,
    value: String,
    quoted: bool,
}

#[derive(Debug, Clone)]
enum Rest {
    Nothing,
    Token68(String),
    Params(Vec<Param>),
}

#[derive(Debug, Clone)]
struct Written {
    scheme: String,
    rest: Rest,
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn any_case(word: &'static str) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<bool>(), word.len()).prop_map(move |upper| {
        word.chars()
            .zip(upper)
            .map(|(c, u)| {
                if u {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    })
}

fn scheme() -> impl Strategy<Value = String> {
    prop_oneof![
        any_case("Bearer"),
        any_case("Basic"),
        any_case("Negotiate"),
        any_case("DPoP"),
        Just("Bearer".to_string()),
    ]
}

fn param() -> impl Strategy<Value = Param> {
    let name = prop_oneof![
        any_case("error"),
        any_case("realm"),
        Just("scope".to_string()),
        Just("error_description".to_string()),
        Just("error".to_string()),
    ];
    let value = prop_oneof![
        Just("invalid_token".to_string()),
        Just("INVALID_TOKEN".to_string()),
        Just("insufficient_scope".to_string()),
        Just("invalid_request".to_string()),
        Just("a, b".to_string()),
        Just(r#"Bearer error="invalid_token""#.to_string()),
        Just(String::new()),
        "[ -~]{0,24}",
    ];
    (name, value, any::<bool>()).prop_map(|(name, value, quoted)| {
        let quoted = quoted || !is_token(&value);
        Param {
            name,
            value,
            quoted,
        }
    })
}

fn written() -> impl Strategy<Value = Written> {
    let rest = prop_oneof![
        Just(Rest::Nothing),
        "[A-Za-z0-9._~+/-]{1,20}={0,2}".prop_map(Rest::Token68),
        proptest::collection::vec(param(), 1..4).prop_map(Rest::Params),
    ];
    (scheme(), rest).prop_map(|(scheme, rest)| Written { scheme, rest })
}

fn ows() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just(""), Just(" "), Just("\t"), Just("  ")]
}

fn quote(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Writes challenges as one field, with `gaps[i]` as optional whitespace around separators.
fn write(challenges: &[Written], gaps: &[&str]) -> String {
    let mut gap = gaps.iter().cycle();
    let mut out = String::new();
    for (i, c) in challenges.iter().enumerate() {
        if i > 0 {
            out.push_str(gap.next().unwrap());
            out.push(',');
            out.push_str(gap.next().unwrap());
        }
        out.push_str(&c.scheme);
        match &c.rest {
            Rest::Nothing => {}
            Rest::Token68(t) => {
                out.push(' ');
                out.push_str(t);
            }
            Rest::Params(params) => {
                out.push(' ');
                for (j, p) in params.iter().enumerate() {
                    if j > 0 {
                        out.push_str(gap.next().unwrap());
                        out.push(',');
                        out.push_str(gap.next().unwrap());
                    }
                    out.push_str(&p.name);
                    out.push_str(gap.next().unwrap());
                    out.push('=');
                    out.push_str(gap.next().unwrap());
                    if p.quoted {
                        out.push_str(&quote(&p.value));
                    } else {
                        out.push_str(&p.value);
                    }
                }
            }
        }
    }
    out
}

/// RFC 6750 §3.1's refusal, judged on what was written.
fn is_refusal(c: &Written) -> bool {
    let Rest::Params(params) = &c.rest else {
        return false;
    };
    let errors: Vec<&Param> = params
        .iter()
        .filter(|p| p.name.eq_ignore_ascii_case("error"))
        .collect();
    c.scheme.eq_ignore_ascii_case("bearer")
        && errors.len() == 1
        && errors[0].value == "invalid_token"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let parsed = challenge::parse(&bytes);
        prop_assert!(parsed.len() <= bytes.len());
        if let Ok(v) = HeaderValue::from_bytes(&bytes) {
            let mut h = HeaderMap::new();
            h.insert(http::header::WWW_AUTHENTICATE, v);
            let _ = refuses_bearer_token(&h);
        }
    }

    #[test]
    fn random_bytes_from_the_header_alphabet_never_panic(s in r#"[A-Za-z =,"\\\t_/+]{0,200}"#) {
        let _ = challenge::parse(s.as_bytes());
    }

    #[test]
    fn written_challenges_are_read_back_and_refusals_found_exactly(
        challenges in proptest::collection::vec(written(), 1..5),
        gaps in proptest::collection::vec(ows(), 1..8),
        fields in 1usize..4,
    ) {
        // Split into up to `fields` header fields: the same list either way (RFC 9110 §5.3).
        let per = challenges.len().div_ceil(fields);
        let mut headers = HeaderMap::new();
        for part in challenges.chunks(per) {
            let text = write(part, &gaps);
            headers.append(http::header::WWW_AUTHENTICATE, HeaderValue::from_str(&text).unwrap());
        }
        let read: Vec<_> = challenge::all(&headers).collect();
        prop_assert_eq!(read.len(), challenges.len(), "{:?}", headers);
        for (got, want) in read.iter().zip(&challenges) {
            prop_assert_eq!(got.scheme, want.scheme.as_bytes());
            match &want.rest {
                Rest::Nothing => {
                    prop_assert!(got.token68.is_none() && got.params.is_empty());
                }
                Rest::Token68(t) => prop_assert_eq!(got.token68, Some(t.as_bytes())),
                Rest::Params(params) => {
                    prop_assert_eq!(got.params.len(), params.len(), "{:?}", headers);
                    for ((name, value), p) in got.params.iter().zip(params) {
                        prop_assert_eq!(*name, p.name.as_bytes());
                        prop_assert_eq!(value.as_ref(), p.value.as_bytes());
                    }
                }
            }
        }
        let expected = challenges.iter().any(is_refusal);
        prop_assert_eq!(refuses_bearer_token(&headers), expected, "{:?}", headers);
    }
}
