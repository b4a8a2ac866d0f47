//! What an isolate and the token coordinator say to each other: one small JSON request, one
//! JSON answer. The access token travels only in an answer body, over the Durable Object
//! binding, never in a URL; a drop names the token by its SHA-256 digest.
//!
//! Anything the isolate cannot read as an answer is treated like an unreachable coordinator:
//! the isolate then fills its own cache, as it does without one.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::cache::Rejection;
use super::entry::CachedToken;
use super::grant::{bearer_safe, GrantError};

/// Most of an answer the isolate reads: a token answer is well under 4 KiB.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Ask {
    /// A token usable now. `fresh`: one not yet due for refresh (the asker is refreshing ahead
    /// of expiry), so the coordinator refreshes its own first when it is due.
    Get { fresh: bool },
    /// The origin refused the token whose digest is `digest`: drop it if it is still the
    /// coordinator's token.
    Drop { digest: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
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

impl Ask {
    pub fn to_json(&self) -> String {
        // An enum of strings and booleans always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Option<Self> {
        serde_json::from_slice(text.as_bytes()).ok()
    }
}

impl Answer {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The answer, if it is one: a token must be one the isolate could send (non-empty,
    /// header-safe), and a `Retry-After` sane.
    pub fn from_json(text: &str) -> Option<Self> {
        let answer: Self = serde_json::from_slice(text.as_bytes()).ok()?;
        match &answer {
            Answer::Token { token } => {
                let t = token.access_token();
                (!t.is_empty() && bearer_safe(t) && token.expires_at_ms() >= token.obtained_at_ms())
                    .then_some(answer)
            }
            Answer::Unavailable {
                retry_after_secs, ..
            } => (1..=3_600).contains(retry_after_secs).then_some(answer),
            Answer::Dropped { .. } => Some(answer),
        }
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
}
