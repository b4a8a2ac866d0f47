//! Which origin 401s refuse the gateway's own access token (`ORIGIN_TOKEN_REFUSAL`), and so
//! cost a token drop, a new token and a replay; every other 401 is the origin's answer to the
//! caller (a login's wrong password) and goes back untouched.
//!
//! Why not every 401: an origin answers 401 for its own reasons too, and a caller who can
//! provoke one at will (a wrong password on a public login route) could otherwise make the
//! gateway throw away a good token, call the token endpoint and send the request twice, and
//! while that endpoint is down turn the caller's 401 into a 503.
//!
//! What the proxy does with an origin 401, per mode (`src/proxy/forward.rs`):
//!
//! | mode | the 401 | first answer | replay refused again | body not kept | no new token | no token at all |
//! |---|---|---|---|---|---|---|
//! | `off` | any | as sent | – | – | – | – |
//! | `invalid_token` | no `Bearer error="invalid_token"` | as sent | – | – | – | – |
//! | `invalid_token` | `Bearer error="invalid_token"` | dropped, replayed | 502 + `config_error` | 503 `Retry-After: 1` (502 + `config_error` if the drop cooldown kept the token) | 502 + `config_error` | 503 `Retry-After` |
//! | `any_401` | any | dropped, replayed | as sent | as sent | as sent | 503 `Retry-After` |
//!
//! Under `invalid_token` the origin has said, in RFC 6750's words, that the gateway's token is
//! bad: relaying that challenge would tell the caller their customer JWT is bad, so the caller
//! gets the gateway's own answer instead. Under `any_401` the gateway cannot tell a refusal
//! from any other 401, so what it cannot replay goes back as the origin sent it.

use http::HeaderMap;

use crate::config::setting::{optional, ConfigError, Lookup};

pub const SETTING: &str = "ORIGIN_TOKEN_REFUSAL";

/// `ORIGIN_TOKEN_REFUSAL`: which origin 401s count as a refusal of the access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RefusalMode {
    /// Only a 401 carrying a `Bearer` challenge with `error="invalid_token"` (the default).
    #[default]
    InvalidToken,
    /// Every 401: for origins that refuse tokens without saying so.
    Any401,
    /// None: the access token is only ever replaced when it expires.
    Off,
}

/// How the origin's 401 was judged, for the log line's `origin_401`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judged {
    /// A refusal of the gateway's access token: drop, new token, replay.
    Refusal,
    /// The origin's answer to the caller: passed back as sent.
    Passed,
}

impl Judged {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refusal => "refusal",
            Self::Passed => "passed",
        }
    }
}

impl RefusalMode {
    /// Reads `ORIGIN_TOKEN_REFUSAL`; unset means `invalid_token`.
    pub fn from_settings(get: Lookup<'_>) -> Result<Self, ConfigError> {
        match optional(get, SETTING).as_deref().map(str::trim) {
            None | Some("invalid_token") => Ok(Self::InvalidToken),
            Some("any_401") => Ok(Self::Any401),
            Some("off") => Ok(Self::Off),
            Some(_) => Err(ConfigError::new(
                SETTING,
                "must be invalid_token, any_401 or off",
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidToken => "invalid_token",
            Self::Any401 => "any_401",
            Self::Off => "off",
        }
    }

    /// Judges an origin response of status 401 by its `WWW-Authenticate` fields.
    pub fn judge(self, headers: &HeaderMap) -> Judged {
        let refusal = match self {
            Self::InvalidToken => crate::edge::challenge::refuses_bearer_token(headers),
            Self::Any401 => true,
            Self::Off => false,
        };
        if refusal {
            Judged::Refusal
        } else {
            Judged::Passed
        }
    }

    /// Whether the origin's challenge is known to be about the gateway's own token, so that
    /// it must never reach the caller.
    pub fn challenge_is_ours(self) -> bool {
        self == Self::InvalidToken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(v: Option<&str>) -> Result<RefusalMode, ConfigError> {
        let get = |n: &str| (n == SETTING).then(|| v.map(String::from)).flatten();
        RefusalMode::from_settings(&get)
    }

    #[test]
    fn the_setting_has_three_values_and_a_default() {
        assert_eq!(mode(None).unwrap(), RefusalMode::InvalidToken);
        assert_eq!(mode(Some("")).unwrap(), RefusalMode::InvalidToken);
        assert_eq!(
            mode(Some("invalid_token")).unwrap(),
            RefusalMode::InvalidToken
        );
        assert_eq!(mode(Some(" any_401 ")).unwrap(), RefusalMode::Any401);
        assert_eq!(mode(Some("off")).unwrap(), RefusalMode::Off);
        for bad in ["ANY_401", "true", "invalid-token", "s3cret-looking"] {
            let err = mode(Some(bad)).unwrap_err();
            assert_eq!(err.setting, SETTING);
            assert!(!err.problem.contains(bad), "{bad}");
        }
    }

    #[test]
    fn each_mode_judges_a_401() {
        let mut refusal = HeaderMap::new();
        refusal.insert(
            http::header::WWW_AUTHENTICATE,
            "Bearer realm=\"api\", error=\"invalid_token\""
                .parse()
                .unwrap(),
        );
        let mut login = HeaderMap::new();
        login.insert(
            http::header::WWW_AUTHENTICATE,
            "Basic realm=\"api\"".parse().unwrap(),
        );
        let none = HeaderMap::new();
        use Judged::*;
        for (mode, expect) in [
            (RefusalMode::InvalidToken, [Refusal, Passed, Passed]),
            (RefusalMode::Any401, [Refusal, Refusal, Refusal]),
            (RefusalMode::Off, [Passed, Passed, Passed]),
        ] {
            let got = [&refusal, &login, &none].map(|h| mode.judge(h));
            assert_eq!(got, expect, "{}", mode.as_str());
        }
    }
}
