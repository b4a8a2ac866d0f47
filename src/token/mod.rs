//! The OAuth 2.0 client-credentials access token: its settings, the grant exchange, the cached
//! entry, when it is refreshed ahead of expiry, and the isolate's cache that decides when the
//! token endpoint is called.
//!
//! The token coordinator (`coordinator`, `protocol`) is the same cache run once for the whole
//! deployment, in a Durable Object, with the isolates asking it instead of the endpoint.
//!
//! No I/O of its own: the cache is handed the HTTP client, the store and the clock.

mod cache;
pub mod coordinator;
mod entry;
mod grant;
pub mod protocol;
pub mod refresh;
mod seal;

pub use cache::{
    Obtained, RefreshAhead, RefreshOutcome, Rejection, TokenCache, TokenSource, TokenUnavailable,
    COORDINATOR_GRACE_MS, REJECT_COOLDOWN_MS,
};
pub use entry::CachedToken;
pub(crate) use grant::decimal_string;
pub use grant::{client_form, ClientAuth, GrantError};
pub use refresh::Jitter;
pub use seal::Sealer;

use crate::setting::{endpoint_url, number, optional, required, ConfigError, Lookup};

/// Settings of the token exchange, read once per isolate.
pub struct TokenConfig {
    /// `TOKEN_URL`, used verbatim (a query such as `?grant_type=client_credentials` stays).
    pub url: String,
    pub client_id: String,
    pub client_secret: String,
    /// `TOKEN_CLIENT_AUTH`. Defaults to `client_secret_post`.
    pub client_auth: ClientAuth,
    /// `TOKEN_SCOPE`, sent as `scope` when set.
    pub scope: Option<String>,
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
            .field("timeout_ms", &self.timeout_ms)
            .field("encrypted_at_rest", &self.sealer.is_some())
            .finish_non_exhaustive()
    }
}

impl TokenConfig {
    pub fn from_settings(get: Lookup<'_>) -> Result<Self, ConfigError> {
        let url = endpoint_url(&required(get, "TOKEN_URL")?)
            .map_err(|why| ConfigError::new("TOKEN_URL", why))?;
        let client_auth = match optional(get, "TOKEN_CLIENT_AUTH").as_deref().map(str::trim) {
            None | Some("client_secret_post") => ClientAuth::Post,
            Some("client_secret_basic") => ClientAuth::Basic,
            Some(_) => {
                return Err(ConfigError::new(
                    "TOKEN_CLIENT_AUTH",
                    "must be client_secret_post or client_secret_basic",
                ))
            }
        };
        let sealer = match optional(get, "TOKEN_ENCRYPTION_KEY") {
            None => None,
            Some(b64) => Some(Sealer::from_base64(&b64).ok_or_else(|| {
                ConfigError::new(
                    "TOKEN_ENCRYPTION_KEY",
                    "must be 32 bytes in base64 (openssl rand -base64 32)",
                )
            })?),
        };
        Ok(Self {
            url,
            client_id: required(get, "CLIENT_ID")?,
            client_secret: required(get, "CLIENT_SECRET")?,
            client_auth,
            scope: optional(get, "TOKEN_SCOPE").map(|s| s.trim().to_string()),
            timeout_ms: number(get, "TOKEN_TIMEOUT_MS", 5_000, 1..=60_000)?,
            sealer,
        })
    }

    /// The KV key of this client's token. A digest of the settings that identify the token (the
    /// endpoint, the client, the scope), so that two deployments sharing a namespace never read
    /// each other's token, and no secret, nor anything a query string might hold, is in the key.
    pub fn cache_key(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [
            self.url.as_str(),
            self.client_id.as_str(),
            self.scope.as_deref().unwrap_or(""),
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        let digest = h.finalize();
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        format!("access-token:v1:{hex}")
    }
}
