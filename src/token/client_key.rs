//! `private_key_jwt` (RFC 7523 §2.2, OpenID Connect Core §9): the gateway proves it is the
//! OAuth client with a short JWT signed by `CLIENT_PRIVATE_KEY` instead of a secret that
//! travels. The key is checked once at configuration; each token or introspection request gets
//! a fresh assertion, signed through the platform's `Signer` (WebCrypto in the Worker: the key
//! is imported once per isolate, not extractable).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::config::setting::{optional, ConfigError, Lookup};
use crate::identity::jwt::KeyFamily;
use crate::identity::signing::{
    jws_header, push_json_str, sign_compact, Needs, SignError, Signer, SigningKey,
};

/// The secret setting that holds the private JWK.
pub const KEY: &str = "CLIENT_PRIVATE_KEY";
/// Overrides the assertion's `aud` for both endpoints.
pub const AUDIENCE: &str = "TOKEN_ASSERTION_AUDIENCE";

/// `client_assertion_type` of RFC 7523 §2.2.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// `exp` - `iat`: RFC 7523 §3 asks for a short life; the assertion is used at once.
pub const LIFETIME_SECS: u64 = 60;

/// The client's private key and what every assertion it signs shares.
#[derive(Clone)]
pub struct ClientKey {
    key: SigningKey,
    /// The encoded JWS header (`alg`, `typ: JWT`, `kid` when the key has one), worked out once.
    header: String,
    /// `TOKEN_ASSERTION_AUDIENCE`; else each endpoint's URL without its query.
    audience: Option<String>,
}

impl std::fmt::Debug for ClientKey {
    // The key's `Debug` names its `kid` and `alg` only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey")
            .field("key", &self.key)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl ClientKey {
    /// `CLIENT_PRIVATE_KEY` (required) and `TOKEN_ASSERTION_AUDIENCE`: one private JWK, RSA,
    /// EC P-256 or Ed25519, naming its `alg`; a `kid` is optional (the header then names none).
    pub fn from_settings(get: Lookup<'_>) -> Result<Self, Vec<ConfigError>> {
        let key = match optional(get, KEY) {
            None => Err(ConfigError::new(
                KEY,
                "is required with TOKEN_CLIENT_AUTH=private_key_jwt: the client's private JWK (RSA, EC P-256 or Ed25519) with its alg",
            )),
            Some(raw) => SigningKey::from_setting(
                KEY,
                &raw,
                &[KeyFamily::Rsa, KeyFamily::EcP256, KeyFamily::OkpEd25519],
                Needs {
                    kid: false,
                    alg: true,
                },
            ),
        };
        let audience = match optional(get, AUDIENCE) {
            None => Ok(None),
            Some(raw) => audience(&raw).map(Some),
        };
        match (key, audience) {
            (Ok(key), Ok(audience)) => Ok(Self {
                header: jws_header(&key, Some("JWT")),
                key,
                audience,
            }),
            (key, audience) => Err([key.err(), audience.err()].into_iter().flatten().collect()),
        }
    }

    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// The `aud` of an assertion for `endpoint`: `TOKEN_ASSERTION_AUDIENCE`, else the
    /// endpoint's URL without its query and fragment (RFC 7523 §3: the token endpoint's URL;
    /// the introspection endpoint is addressed the same way).
    pub fn audience_for<'a>(&'a self, endpoint: &'a str) -> &'a str {
        self.audience
            .as_deref()
            .unwrap_or_else(|| endpoint.split(['?', '#']).next().unwrap_or(endpoint))
    }

    /// A fresh assertion for a request to `endpoint`: `iss` = `sub` = `client_id`, `aud`,
    /// `iat` = `now_secs`, `exp` 60 s later, a random `jti`.
    pub async fn assertion<S: Signer>(
        &self,
        signer: &S,
        client_id: &str,
        endpoint: &str,
        now_secs: u64,
    ) -> Result<String, SignError> {
        let mut claims = String::with_capacity(256);
        claims.push_str("{\"iss\":");
        push_json_str(&mut claims, client_id);
        claims.push_str(",\"sub\":");
        push_json_str(&mut claims, client_id);
        claims.push_str(",\"aud\":");
        push_json_str(&mut claims, self.audience_for(endpoint));
        let exp = now_secs + LIFETIME_SECS;
        // `jti` is base64url: no escaping needed.
        claims.push_str(&format!(
            ",\"jti\":\"{}\",\"iat\":{now_secs},\"exp\":{exp}}}",
            fresh_jti()?
        ));
        sign_compact(signer, &self.key, &self.header, claims.as_bytes()).await
    }
}

/// `TOKEN_ASSERTION_AUDIENCE`: the identifier the authorization server knows itself by
/// (usually its issuer URL), used as written; no whitespace or control characters.
fn audience(raw: &str) -> Result<String, ConfigError> {
    let raw = raw.trim();
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::new(
            AUDIENCE,
            "must be one identifier (usually the authorization server's issuer URL), without spaces",
        ));
    }
    Ok(raw.to_string())
}

/// 16 random bytes, base64url: a token endpoint may refuse an assertion whose `jti` it has
/// seen (RFC 7523 §3 item 7), so every request gets its own. Without entropy there is no
/// assertion.
fn fresh_jti() -> Result<String, SignError> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|_| SignError("no random jti".into()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}
