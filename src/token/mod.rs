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
pub mod coordinator;
mod entry;
mod grant;
pub mod protocol;
pub mod refresh;
mod seal;
mod state;

pub use client_auth::{form as client_form, post_form, ClientAuth};
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
    /// Reads the token settings; every problem found.
    pub fn from_settings(get: Lookup<'_>) -> Result<Self, ConfigErrors> {
        let mut p = Problems::default();
        let url =
            p.take(required(get, "TOKEN_URL").and_then(|raw| {
                endpoint_url(&raw).map_err(|why| ConfigError::new("TOKEN_URL", why))
            }));
        let client_auth = p.take(
            match optional(get, "TOKEN_CLIENT_AUTH").as_deref().map(str::trim) {
                None | Some("client_secret_post") => Ok(ClientAuth::Post),
                Some("client_secret_basic") => Ok(ClientAuth::Basic),
                Some(_) => Err(ConfigError::new(
                    "TOKEN_CLIENT_AUTH",
                    "must be client_secret_post or client_secret_basic",
                )),
            },
        );
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
        let client_secret = p.take(required(get, "CLIENT_SECRET"));
        let timeout_ms = p.take(number(get, "TOKEN_TIMEOUT_MS", 5_000, 1..=60_000));
        let scope = optional(get, "TOKEN_SCOPE").map(|s| s.trim().to_string());
        p.finish(|| {
            Some(Self {
                url: url?,
                client_id: client_id?,
                client_secret: client_secret?,
                client_auth: client_auth?,
                scope,
                timeout_ms: timeout_ms?,
                sealer: sealer?,
            })
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
