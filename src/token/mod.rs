//! The OAuth 2.0 client-credentials access token: its settings, the grant exchange, the cached
//! entry, when it is refreshed ahead of expiry, and the isolate's cache that decides when the
//! token endpoint is called.
//!
//! The token coordinator (`coordinator`, `protocol`) is the same cache run once for the whole
//! deployment, in a Durable Object, with the isolates asking it instead of the endpoint.
//!
//! No I/O of its own: the cache is handed the HTTP client, the store and the clock.

mod cache;
mod client_auth;
pub mod client_key;
pub mod coordinator;
mod entry;
mod grant;
mod params;
pub mod protocol;
pub mod refresh;
mod seal;
mod state;

pub use client_auth::{form as client_form, post_form, ClientAuth, PostError};
pub use client_key::ClientKey;
pub use entry::CachedToken;
pub(crate) use grant::decimal_string;
pub use grant::GrantError;
pub use protocol::Rejection;
pub use refresh::Jitter;
pub use seal::Sealer;
pub use state::{
    Obtained, RefreshAhead, RefreshOutcome, TokenCache, TokenSource, TokenUnavailable,
    COORDINATOR_GRACE_MS, REJECT_COOLDOWN_MS,
};

use crate::config::setting::{
    endpoint_url, number, optional, required, ConfigError, ConfigErrors, Lookup, Problems,
};

/// Settings of the token exchange, read once per isolate.
pub struct TokenConfig {
    /// `TOKEN_URL`, used verbatim (a query such as `?grant_type=client_credentials` stays).
    pub url: String,
    pub client_id: String,
    /// Empty with `private_key_jwt`, which never sends it.
    pub client_secret: String,
    /// `TOKEN_CLIENT_AUTH`. Defaults to `client_secret_post`.
    pub client_auth: ClientAuth,
    /// `TOKEN_SCOPE`, sent as `scope` when set.
    pub scope: Option<String>,
    /// `TOKEN_PARAMS`, decoded, sent after `grant_type` and `scope` in the token request.
    pub params: Vec<(String, String)>,
    /// `TOKEN_TIMEOUT_MS`: time allowed for the token endpoint's answer. Defaults to 5000.
    pub timeout_ms: u64,
    /// `TOKEN_ENCRYPTION_KEY`: when set, cached tokens are sealed with AES-256-GCM in KV.
    pub sealer: Option<Sealer>,
}

impl std::fmt::Debug for TokenConfig {
    // Hand-written so that a stray `{:?}` can never print the client secret or the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("client_auth", &self.client_auth)
            .field("scope", &self.scope)
            .field("params", &self.params)
            .field("timeout_ms", &self.timeout_ms)
            .field("encrypted_at_rest", &self.sealer.is_some())
            .finish_non_exhaustive()
    }
}

impl TokenConfig {
    /// Reads the token settings; every problem found.
    pub fn from_settings(get: Lookup<'_>) -> Result<Self, ConfigErrors> {
        let mut p = Problems::default();
        let url =
            p.take(required(get, "TOKEN_URL").and_then(|raw| {
                endpoint_url(&raw).map_err(|why| ConfigError::new("TOKEN_URL", why))
            }));
        let mode = optional(get, "TOKEN_CLIENT_AUTH");
        let client_auth = match mode.as_deref().map(str::trim) {
            None | Some("client_secret_post") => Some(ClientAuth::Post),
            Some("client_secret_basic") => Some(ClientAuth::Basic),
            Some("private_key_jwt") => match ClientKey::from_settings(get) {
                Ok(key) => Some(ClientAuth::PrivateKeyJwt(Box::new(key))),
                Err(problems) => {
                    problems.into_iter().for_each(|e| p.push(e));
                    None
                }
            },
            Some(_) => p.take(Err(ConfigError::new(
                "TOKEN_CLIENT_AUTH",
                "must be client_secret_post, client_secret_basic or private_key_jwt",
            ))),
        };
        // Known from the setting, not from the key's reading: a missing or broken key is its
        // own problem, and does not make CLIENT_SECRET required.
        let uses_key = mode.as_deref().map(str::trim) == Some("private_key_jwt");
        if client_auth.is_some() && !uses_key {
            // A key set for a mode that never sends it: the operator thinks the secret is no
            // longer sent while it is.
            for name in [client_key::KEY, client_key::AUDIENCE] {
                if optional(get, name).is_some() {
                    p.push(ConfigError::new(
                        name,
                        "is set but TOKEN_CLIENT_AUTH is not private_key_jwt: set TOKEN_CLIENT_AUTH=private_key_jwt, or remove it",
                    ));
                }
            }
        }
        let params = p.take(params::from_settings(get));
        let sealer = p.take(match optional(get, "TOKEN_ENCRYPTION_KEY") {
            None => Ok(None),
            Some(b64) => Sealer::from_base64(&b64).map(Some).ok_or_else(|| {
                ConfigError::new(
                    "TOKEN_ENCRYPTION_KEY",
                    "must be 32 bytes in base64 (openssl rand -base64 32)",
                )
            }),
        });
        let client_id = p.take(required(get, "CLIENT_ID"));
        // With private_key_jwt the secret is neither needed nor sent, even when set.
        let client_secret = if uses_key {
            Some(String::new())
        } else {
            p.take(required(get, "CLIENT_SECRET"))
        };
        let timeout_ms = p.take(number(get, "TOKEN_TIMEOUT_MS", 5_000, 1..=60_000));
        let scope = optional(get, "TOKEN_SCOPE").map(|s| s.trim().to_string());
        p.finish(|| {
            Some(Self {
                url: url?,
                client_id: client_id?,
                client_secret: client_secret?,
                client_auth: client_auth?,
                scope,
                params: params?,
                timeout_ms: timeout_ms?,
                sealer: sealer?,
            })
        })
    }

    /// What is set but has no effect, for `check-config` to note (not a problem): a
    /// `CLIENT_SECRET` that `private_key_jwt` never sends.
    pub fn notes(get: Lookup<'_>) -> Vec<String> {
        let mode = optional(get, "TOKEN_CLIENT_AUTH");
        if mode.as_deref().map(str::trim) == Some("private_key_jwt")
            && optional(get, "CLIENT_SECRET").is_some()
        {
            vec!["note: CLIENT_SECRET is set but never sent: TOKEN_CLIENT_AUTH is private_key_jwt (CLIENT_PRIVATE_KEY signs); remove it with wrangler secret delete CLIENT_SECRET".into()]
        } else {
            Vec::new()
        }
    }

    /// The KV key of this client's token. A digest of the settings that identify the token (the
    /// endpoint, the client, the scope, `TOKEN_PARAMS` when set: another `resource` is another
    /// token), so that two deployments sharing a namespace never read each other's token, and
    /// no secret, nor anything a query string might hold, is in the key.
    pub fn cache_key(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        let params = self
            .params
            .iter()
            .flat_map(|(name, value)| [name.as_str(), value.as_str()]);
        for part in [
            self.url.as_str(),
            self.client_id.as_str(),
            self.scope.as_deref().unwrap_or(""),
        ]
        .into_iter()
        .chain(params)
        {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        let digest = h.finalize();
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        format!("access-token:v1:{hex}")
    }
}
