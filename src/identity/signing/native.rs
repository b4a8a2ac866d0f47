//! The RustCrypto keys (natively, and in `baseline-verify` builds): built at configuration,
//! so a private part that does not match its public members is refused there; and the pure-Rust
//! signer of the native tests.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jwt_compact::alg::{Ed25519, Es256, Rsa, RsaPrivateKey};
use jwt_compact::jwk::JsonWebKey;
use jwt_compact::{Algorithm, AlgorithmSignature};
use serde_json::json;

use super::{Private, SignError, Signer, SigningKey};
use crate::identity::jwt::{Alg, RustCryptoVerifier};

#[derive(Clone)]
pub(crate) enum NativeKey {
    Rsa(Box<RsaPrivateKey>),
    P256(<Es256 as Algorithm>::SigningKey),
    Ed25519(<Ed25519 as Algorithm>::SigningKey),
}

impl NativeKey {
    pub(crate) fn from_private(private: &Private) -> Result<Self, String> {
        let b = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let jwk = match private {
            Private::Rsa {
                n,
                e,
                d,
                p,
                q,
                dp,
                dq,
                qi,
            } => json!({"kty": "RSA", "n": b(n), "e": b(e), "d": b(d), "p": b(p),
                        "q": b(q), "dp": b(dp), "dq": b(dq), "qi": b(qi)}),
            Private::Ec { x, y, d } => {
                json!({"kty": "EC", "crv": "P-256", "x": b(x), "y": b(y), "d": b(d)})
            }
            Private::Ed25519 { x, d } => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b(x), "d": b(d)})
            }
        };
        const MISMATCH: &str =
            "is not a usable private key (its private part does not match its public members)";
        let jwk: JsonWebKey<'_> = serde_json::from_value(jwk).map_err(|_| MISMATCH)?;
        Ok(match private {
            Private::Rsa { .. } => NativeKey::Rsa(Box::new(
                RsaPrivateKey::try_from(&jwk).map_err(|_| MISMATCH)?,
            )),
            Private::Ec { .. } => NativeKey::P256(
                <Es256 as Algorithm>::SigningKey::try_from(&jwk).map_err(|_| MISMATCH)?,
            ),
            Private::Ed25519 { .. } => NativeKey::Ed25519(
                <Ed25519 as Algorithm>::SigningKey::try_from(&jwk).map_err(|_| MISMATCH)?,
            ),
        })
    }
}

/// The pure-Rust crypto both verifies (`jwt::SignatureVerifier`) and signs: the native
/// tests' platform, and `baseline-verify` builds'.
impl Signer for RustCryptoVerifier {
    async fn sign(&self, key: &SigningKey, input: &[u8]) -> Result<Vec<u8>, SignError> {
        let sig = match (key.alg(), key.native()) {
            (Alg::Es256, NativeKey::P256(k)) => Es256.sign(k, input).as_bytes().into_owned(),
            (Alg::EdDsa, NativeKey::Ed25519(k)) => Ed25519.sign(k, input).as_bytes().into_owned(),
            (alg, NativeKey::Rsa(k)) => {
                let rsa = match alg {
                    Alg::Rs256 => Rsa::rs256(),
                    Alg::Rs384 => Rsa::rs384(),
                    Alg::Rs512 => Rsa::rs512(),
                    Alg::Ps256 => Rsa::ps256(),
                    Alg::Ps384 => Rsa::ps384(),
                    Alg::Ps512 => Rsa::ps512(),
                    _ => return Err(SignError("algorithm does not fit the key".into())),
                };
                rsa.sign(k, input).as_bytes().into_owned()
            }
            _ => return Err(SignError("algorithm does not fit the key".into())),
        };
        Ok(sig)
    }
}
