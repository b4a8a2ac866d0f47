//! What an isolate and the token coordinator say to each other: one small JSON request, one
//! JSON answer. The access token travels only in an answer body, over the Durable Object
//! binding, never in a URL; a drop names the token by its SHA-256 digest.
//!
//! Anything the isolate cannot read as an answer is treated like an unreachable coordinator:
//! the isolate then fills its own cache, as it does without one.
//!
//! The JSON is read and written by hand, in the shape serde's derives gave it (`op`/`answer`
//! tags inside the object, snake_case names, `GrantError` externally tagged): the derived
//! internally tagged enums buffered every answer through serde's `Content` machinery, about
//! 20 KB of wasm (issue 13), for two messages of a few members each.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::entry::CachedToken;
use super::grant::{bearer_safe, GrantError};

/// Most of an answer the isolate reads: a token answer is well under 4 KiB.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// What `reject` did with a token the origin refused. Travels in a coordinator answer by its
/// snake_case name (`rejection_name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// It was the cached token: dropped from memory, and from KV if KV still held it.
    Dropped,
    /// The cache already holds another token (or none): nothing dropped.
    AlreadyReplaced,
    /// It is the cached token, but a token was dropped after a 401 less than
    /// `REJECT_COOLDOWN_MS` ago: an origin that refuses every token must not turn each request
    /// into an endpoint call, so this one is kept.
    Kept,
}

/// `{"op":"get","fresh":…}` or `{"op":"drop","digest":…}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// A token usable now. `fresh`: one not yet due for refresh (the asker is refreshing ahead
    /// of expiry), so the coordinator refreshes its own first when it is due.
    Get { fresh: bool },
    /// The origin refused the token whose digest is `digest`: drop it if it is still the
    /// coordinator's token.
    Drop { digest: String },
}

/// `{"answer":"token","token":{…}}`, `{"answer":"unavailable","retry_after_secs":…,
/// "error":…,"called":…}` or `{"answer":"dropped","rejection":…}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Token {
        token: CachedToken,
    },
    /// No usable token: the endpoint failed (`called`: for this ask) or is being backed off.
    Unavailable {
        retry_after_secs: u64,
        error: GrantError,
        called: bool,
    },
    Dropped {
        rejection: Rejection,
    },
}

/// The SHA-256 of an access token in hex: names it in a drop without carrying it.
pub fn digest(access_token: &str) -> String {
    Sha256::digest(access_token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A JSON object, or nothing.
fn object(text: &str) -> Option<Map<String, Value>> {
    serde_json::from_slice(text.as_bytes()).ok()
}

/// A JSON string literal of `s`, escaped as serde_json escapes it.
fn quoted(s: &str) -> Value {
    Value::from(s)
}

impl Ask {
    pub fn to_json(&self) -> String {
        match self {
            Ask::Get { fresh } => format!(r#"{{"op":"get","fresh":{fresh}}}"#),
            Ask::Drop { digest } => format!(r#"{{"op":"drop","digest":{}}}"#, quoted(digest)),
        }
    }

    pub fn from_json(text: &str) -> Option<Self> {
        let o = object(text)?;
        match o.get("op")?.as_str()? {
            "get" => Some(Ask::Get {
                fresh: o.get("fresh")?.as_bool()?,
            }),
            "drop" => Some(Ask::Drop {
                digest: o.get("digest")?.as_str()?.to_owned(),
            }),
            _ => None,
        }
    }
}

impl Answer {
    pub fn to_json(&self) -> String {
        match self {
            Answer::Token { token } => {
                format!(r#"{{"answer":"token","token":{}}}"#, token.to_json())
            }
            Answer::Unavailable {
                retry_after_secs,
                error,
                called,
            } => format!(
                r#"{{"answer":"unavailable","retry_after_secs":{retry_after_secs},"error":{},"called":{called}}}"#,
                grant_error_json(error)
            ),
            Answer::Dropped { rejection } => format!(
                r#"{{"answer":"dropped","rejection":"{}"}}"#,
                rejection_name(*rejection)
            ),
        }
    }

    /// The answer, if it is one: a token must be one the isolate could send (non-empty,
    /// header-safe), and a `Retry-After` sane.
    pub fn from_json(text: &str) -> Option<Self> {
        let o = object(text)?;
        match o.get("answer")?.as_str()? {
            "token" => {
                let token = CachedToken::from_json_object(o.get("token")?.as_object()?)?;
                let t = token.access_token();
                (!t.is_empty() && bearer_safe(t) && token.expires_at_ms() >= token.obtained_at_ms())
                    .then_some(Answer::Token { token })
            }
            "unavailable" => {
                let retry_after_secs = o.get("retry_after_secs")?.as_u64()?;
                let error = grant_error_from(o.get("error")?)?;
                let called = o.get("called")?.as_bool()?;
                (1..=3_600)
                    .contains(&retry_after_secs)
                    .then_some(Answer::Unavailable {
                        retry_after_secs,
                        error,
                        called,
                    })
            }
            "dropped" => Some(Answer::Dropped {
                rejection: rejection_from(o.get("rejection")?.as_str()?)?,
            }),
            _ => None,
        }
    }
}

fn rejection_name(r: Rejection) -> &'static str {
    match r {
        Rejection::Dropped => "dropped",
        Rejection::AlreadyReplaced => "already_replaced",
        Rejection::Kept => "kept",
    }
}

fn rejection_from(name: &str) -> Option<Rejection> {
    [
        Rejection::Dropped,
        Rejection::AlreadyReplaced,
        Rejection::Kept,
    ]
    .into_iter()
    .find(|r| rejection_name(*r) == name)
}

/// The grant errors without data, by their JSON names.
const UNIT_GRANT_ERRORS: [(GrantError, &str); 8] = [
    (GrantError::Timeout, "timeout"),
    (GrantError::Unreachable, "unreachable"),
    (GrantError::NotJson, "not_json"),
    (GrantError::NoAccessToken, "no_access_token"),
    (GrantError::BadAccessToken, "bad_access_token"),
    (GrantError::WrongTokenType, "wrong_token_type"),
    (GrantError::BadExpiry, "bad_expiry"),
    (GrantError::ClientKey, "client_key"),
];

/// A unit variant as its name, `Status` as `{"status":{"status":…,"oauth_error":…}}`.
fn grant_error_json(e: &GrantError) -> String {
    match e {
        GrantError::Status {
            status,
            oauth_error,
        } => format!(
            r#"{{"status":{{"status":{status},"oauth_error":{}}}}}"#,
            oauth_error.as_deref().map_or(Value::Null, quoted)
        ),
        unit => UNIT_GRANT_ERRORS
            .iter()
            .find(|(u, _)| u == unit)
            .map_or_else(String::new, |(_, name)| format!(r#""{name}""#)),
    }
}

fn grant_error_from(v: &Value) -> Option<GrantError> {
    match v {
        Value::String(name) => UNIT_GRANT_ERRORS
            .iter()
            .find(|(_, n)| n == name)
            .map(|(e, _)| e.clone()),
        Value::Object(o) if o.len() == 1 => {
            let s = o.get("status")?.as_object()?;
            Some(GrantError::Status {
                status: u16::try_from(s.get("status")?.as_u64()?).ok()?,
                oauth_error: match s.get("oauth_error") {
                    None | Some(Value::Null) => None,
                    Some(e) => Some(e.as_str()?.to_owned()),
                },
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_and_answers_round_trip_and_garbage_is_refused() {
        let ask = Ask::Drop {
            digest: digest("tok"),
        };
        assert_eq!(Ask::from_json(&ask.to_json()), Some(ask));
        assert!(!Ask::Drop {
            digest: digest("secret-token")
        }
        .to_json()
        .contains("secret-token"));
        let token = Answer::Token {
            token: CachedToken::new("tok".into(), 1, 2),
        };
        assert_eq!(Answer::from_json(&token.to_json()), Some(token));
        let down = Answer::Unavailable {
            retry_after_secs: 2,
            error: GrantError::Unreachable,
            called: true,
        };
        assert_eq!(Answer::from_json(&down.to_json()), Some(down));
        assert_eq!(
            Answer::from_json(r#"{"answer":"token","token":{"t":"a b","o":1,"e":2}}"#),
            None
        );
        assert_eq!(
            Answer::from_json(r#"{"answer":"token","token":{"t":"","o":1,"e":2}}"#),
            None
        );
        assert_eq!(Answer::from_json("<html>"), None);
    }

    #[test]
    fn the_wire_format_is_the_one_serdes_derives_wrote() {
        // Isolates and the coordinator of two versions meet during a rollout: same bytes.
        let cases: [(Answer, &str); 4] = [
            (
                Answer::Token {
                    token: CachedToken::new("t\"k".into(), 1, 2),
                },
                r#"{"answer":"token","token":{"t":"t\"k","o":1,"e":2}}"#,
            ),
            (
                Answer::Unavailable {
                    retry_after_secs: 2,
                    error: GrantError::Status {
                        status: 500,
                        oauth_error: None,
                    },
                    called: true,
                },
                r#"{"answer":"unavailable","retry_after_secs":2,"error":{"status":{"status":500,"oauth_error":null}},"called":true}"#,
            ),
            (
                Answer::Unavailable {
                    retry_after_secs: 60,
                    error: GrantError::Status {
                        status: 401,
                        oauth_error: Some("invalid_client".into()),
                    },
                    called: false,
                },
                r#"{"answer":"unavailable","retry_after_secs":60,"error":{"status":{"status":401,"oauth_error":"invalid_client"}},"called":false}"#,
            ),
            (
                Answer::Dropped {
                    rejection: Rejection::AlreadyReplaced,
                },
                r#"{"answer":"dropped","rejection":"already_replaced"}"#,
            ),
        ];
        for (answer, json) in cases {
            assert_eq!(answer.to_json(), json);
            assert_eq!(Answer::from_json(json), Some(answer));
        }
        for (ask, json) in [
            (Ask::Get { fresh: true }, r#"{"op":"get","fresh":true}"#),
            (
                Ask::Drop {
                    digest: "ab".into(),
                },
                r#"{"op":"drop","digest":"ab"}"#,
            ),
        ] {
            assert_eq!(ask.to_json(), json);
            assert_eq!(Ask::from_json(json), Some(ask));
        }
        for (error, name) in UNIT_GRANT_ERRORS {
            let answer = Answer::Unavailable {
                retry_after_secs: 1,
                error,
                called: false,
            };
            let json = answer.to_json();
            assert!(json.contains(&format!(r#""error":"{name}""#)), "{json}");
            assert_eq!(Answer::from_json(&json), Some(answer));
        }
        for rejection in [
            Rejection::Dropped,
            Rejection::AlreadyReplaced,
            Rejection::Kept,
        ] {
            let answer = Answer::Dropped { rejection };
            assert_eq!(Answer::from_json(&answer.to_json()), Some(answer));
        }
        assert_eq!(Ask::from_json(r#"{"op":"get"}"#), None);
        assert_eq!(Ask::from_json(r#"{"op":"put","fresh":true}"#), None);
        assert_eq!(
            Answer::from_json(r#"{"answer":"dropped","rejection":"gone"}"#),
            None
        );
        assert_eq!(
            Answer::from_json(
                r#"{"answer":"unavailable","retry_after_secs":0,"error":"timeout","called":true}"#
            ),
            None
        );
    }
}
