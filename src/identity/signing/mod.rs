//! The gateway's own private keys and what it signs with them: a private JWK (RSA, EC P-256 or
//! Ed25519) or a JWK set whose first key signs and whose others are only published, checked
//! once at configuration; the public JWK set the gateway publishes; and the compact JWS,
//! signed through the platform's `Signer` (WebCrypto in the Worker, RustCrypto natively).
//!
//! The seam is shared: the gateway assertion (`crate::proxy::assertion`) signs with it, and so
//! does the `private_key_jwt` client assertion (`crate::token::client_key`: RS256/PS256,
//! ES256, EdDSA; its key may have no `kid`, and must name its `alg`).
//!
//! Key material never reaches an error, a log line or `Debug`: errors name the setting and
//! the member, never a value.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::config::setting::ConfigError;
use crate::identity::jwt::{Alg, KeyFamily};

/// Signs a JWS signing input with a private key: `crypto.subtle.sign` in the Worker, RustCrypto
/// natively. ECDSA signatures are `r || s` (RFC 7518 §3.4), as WebCrypto gives them.
#[allow(async_fn_in_trait)]
pub trait Signer {
    async fn sign(&self, key: &SigningKey, input: &[u8]) -> Result<Vec<u8>, SignError>;
}

/// Why a signature could not be made: the platform's message, for the log line only (never
/// key material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignError(pub String);

/// A private key, checked: its `kid`, the algorithm it signs with, its members (for the
/// platform's import) and, natively, the RustCrypto key.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    alg: Alg,
    private: Private,
    /// `alg`, `kid` and the public members, worked out once: what a platform knows an imported
    /// key by (a key rotated under a reused `kid` is another key).
    identity: String,
    #[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
    native: native::NativeKey,
}

/// The private JWK's members, decoded.
#[derive(Clone)]
pub enum Private {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
        d: Vec<u8>,
        p: Vec<u8>,
        q: Vec<u8>,
        dp: Vec<u8>,
        dq: Vec<u8>,
        qi: Vec<u8>,
    },
    /// P-256 only.
    Ec {
        x: Vec<u8>,
        y: Vec<u8>,
        d: Vec<u8>,
    },
    Ed25519 {
        x: Vec<u8>,
        d: Vec<u8>,
    },
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> Alg {
        self.alg
    }

    pub fn private(&self) -> &Private {
        &self.private
    }

    /// What tells this key from any other: `alg`, `kid` and the public JWK.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The private JWK the platform imports (`kty`, curve, public and private members), as
    /// JSON, every member base64url without padding.
    pub fn private_jwk_json(&self) -> String {
        let mut members = self.public_members();
        match &self.private {
            Private::Rsa {
                d,
                p,
                q,
                dp,
                dq,
                qi,
                ..
            } => {
                for (name, v) in [
                    ("d", d),
                    ("p", p),
                    ("q", q),
                    ("dp", dp),
                    ("dq", dq),
                    ("qi", qi),
                ] {
                    members.push((name, URL_SAFE_NO_PAD.encode(v)));
                }
            }
            Private::Ec { d, .. } | Private::Ed25519 { d, .. } => {
                members.push(("d", URL_SAFE_NO_PAD.encode(d)));
            }
        }
        json_object(&members)
    }

    /// The public JWK the gateway publishes, as JSON: type, curve and public members, `kid`,
    /// `alg` and `use: "sig"`.
    pub fn public_jwk_json(&self) -> String {
        let mut members = self.public_members();
        members.push(("kid", self.kid.clone()));
        members.push(("alg", self.alg.name().to_string()));
        members.push(("use", "sig".to_string()));
        json_object(&members)
    }

    fn public_members(&self) -> Vec<(&'static str, String)> {
        let b = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        match &self.private {
            Private::Rsa { n, e, .. } => vec![("kty", "RSA".into()), ("n", b(n)), ("e", b(e))],
            Private::Ec { x, y, .. } => vec![
                ("kty", "EC".into()),
                ("crv", "P-256".into()),
                ("x", b(x)),
                ("y", b(y)),
            ],
            Private::Ed25519 { x, .. } => {
                vec![
                    ("kty", "OKP".into()),
                    ("crv", "Ed25519".into()),
                    ("x", b(x)),
                ]
            }
        }
    }

    #[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
    pub(crate) fn native(&self) -> &native::NativeKey {
        &self.native
    }
}

/// A setting's keys: the first signs, every one is published (`GATEWAY_SIGNING_KEY` may hold
/// a JWK set during a rotation).
#[derive(Debug, Clone)]
pub struct SigningKeys {
    keys: Vec<SigningKey>,
    /// `{"keys": [...]}` of the public JWKs, serialised once.
    jwks_json: Vec<u8>,
}

impl SigningKeys {
    /// Reads `raw` (one private JWK, or `{"keys": [...]}` of them) for `setting`. `families`
    /// lists the key types the setting takes; every key must be private, have a `kid` (unique
    /// in the set) and, when it names one, an `alg` of its type.
    pub fn from_setting(
        setting: &'static str,
        raw: &str,
        families: &[KeyFamily],
    ) -> Result<Self, ConfigError> {
        // Read as `jwt::keys` and `jwks::stored` read theirs (`from_slice` into a map): one
        // JSON reader in the wasm for all of them.
        let value: Map<String, Value> =
            serde_json::from_slice(raw.trim().as_bytes()).map_err(|_| {
                ConfigError::new(
                    setting,
                    "is not a JSON object: a private JWK (or {\"keys\": [...]}) is expected",
                )
            })?;
        let single = Value::Object(value);
        let members = match single.get("keys") {
            Some(Value::Array(keys)) if !keys.is_empty() => {
                keys.iter().enumerate().map(|(i, k)| (Some(i), k)).collect()
            }
            Some(_) => {
                return Err(ConfigError::new(
                    setting,
                    "has a \"keys\" member that is not a non-empty array of private JWKs",
                ))
            }
            None => vec![(None, &single)],
        };
        let mut keys: Vec<SigningKey> = Vec::with_capacity(members.len());
        for (index, jwk) in members {
            let at = |problem: String| match index {
                Some(i) => ConfigError::at(setting, format!(".keys[{i}]"), problem),
                None => ConfigError::new(setting, problem),
            };
            let key = jwk::parse_key(jwk, families, GATEWAY_KEY).map_err(at)?;
            if keys.iter().any(|k| k.kid == key.kid) {
                return Err(at("repeats the kid of an earlier key".into()));
            }
            keys.push(key);
        }
        let public: Vec<String> = keys.iter().map(SigningKey::public_jwk_json).collect();
        let jwks_json = format!("{{\"keys\":[{}]}}", public.join(",")).into_bytes();
        Ok(Self { keys, jwks_json })
    }

    /// The key that signs: the first.
    pub fn signing(&self) -> &SigningKey {
        &self.keys[0]
    }

    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    /// The public JWK set, `{"keys": [...]}`, every key in the setting's order.
    pub fn jwks_json(&self) -> &[u8] {
        &self.jwks_json
    }
}

/// The gateway's own keys: each with a `kid` (the origin finds it in the published set), `alg`
/// from the JWK or the type's one algorithm.
const GATEWAY_KEY: Needs = Needs {
    kid: true,
    alg: false,
};

impl SigningKey {
    /// Reads `raw`, one private JWK, for `setting`: of one of `families`, with what `needs`
    /// asks (`CLIENT_PRIVATE_KEY`: an `alg`, and a `kid` only if the key has one).
    pub fn from_setting(
        setting: &'static str,
        raw: &str,
        families: &[KeyFamily],
        needs: Needs,
    ) -> Result<Self, ConfigError> {
        // Into a map, as `SigningKeys` reads: one JSON reader in the wasm.
        let value: Map<String, Value> =
            serde_json::from_slice(raw.trim().as_bytes()).map_err(|_| {
                ConfigError::new(setting, "is not a JSON object: a private JWK is expected")
            })?;
        if value.contains_key("keys") {
            return Err(ConfigError::new(
                setting,
                "is a JWK set: one private JWK is expected",
            ));
        }
        jwk::parse_key(&Value::Object(value), families, needs)
            .map_err(|problem| ConfigError::new(setting, problem))
    }
}

/// The encoded JWS header for `key`: `alg`, `typ` when given, `kid` when the key has one.
/// Worked out once by a caller that signs often (it never changes for a key).
pub fn jws_header(key: &SigningKey, typ: Option<&str>) -> String {
    let mut json = String::from("{\"alg\":");
    push_json_str(&mut json, key.alg().name());
    if let Some(typ) = typ {
        json.push_str(",\"typ\":");
        push_json_str(&mut json, typ);
    }
    if !key.kid().is_empty() {
        json.push_str(",\"kid\":");
        push_json_str(&mut json, key.kid());
    }
    json.push('}');
    URL_SAFE_NO_PAD.encode(json)
}

/// A compact JWS: `header` (from `jws_header`), then `payload` (the claims' JSON), signed with
/// `key` by the platform.
pub async fn sign_compact<S: Signer>(
    signer: &S,
    key: &SigningKey,
    header: &str,
    payload: &[u8],
) -> Result<String, SignError> {
    let mut jws = String::with_capacity(header.len() + payload.len() * 4 / 3 + 100);
    jws.push_str(header);
    jws.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut jws);
    let signature = signer.sign(key, jws.as_bytes()).await?;
    jws.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut jws);
    Ok(jws)
}

/// A compact JWS of `claims` under `key`, header `alg`, `kid` and, when given, `typ`: for a
/// caller that signs rarely (a client assertion per token request).
pub async fn sign_jwt<S: Signer>(
    signer: &S,
    key: &SigningKey,
    typ: Option<&str>,
    claims: &Map<String, Value>,
) -> Result<String, SignError> {
    let payload = serde_json::to_vec(claims)
        .map_err(|_| SignError("claims could not be serialised".into()))?;
    sign_compact(signer, key, &jws_header(key, typ), &payload).await
}

/// `{"name":"value",...}`, the values JSON strings.
fn json_object(members: &[(&str, String)]) -> String {
    let mut json = String::from("{");
    for (i, (name, value)) in members.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        push_json_str(&mut json, name);
        json.push(':');
        push_json_str(&mut json, value);
    }
    json.push('}');
    json
}

/// `s` as a JSON string (quoted and escaped), appended to `out`.
pub fn push_json_str(out: &mut String, s: &str) {
    // A `str` always serialises.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// The Worker's wasm carries no pure-Rust signing (WebCrypto signs): like its verification of
/// the asymmetric algorithms, this answers no. Only the token coordinator's platform holds a
/// `RustCryptoVerifier` there, and it never signs.
#[cfg(all(target_arch = "wasm32", not(feature = "baseline-verify")))]
impl Signer for crate::identity::jwt::RustCryptoVerifier {
    async fn sign(&self, _key: &SigningKey, _input: &[u8]) -> Result<Vec<u8>, SignError> {
        Err(SignError("this build signs with WebCrypto only".into()))
    }
}

mod jwk;
pub use jwk::Needs;
#[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
mod native;
