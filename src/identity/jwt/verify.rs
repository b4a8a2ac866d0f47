//! Signature verification: the trait a platform (WebCrypto) implements, and a pure-Rust one.

#[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
use jwt_compact::alg::{Ed25519, Es256, Rsa};
use jwt_compact::alg::{Hs256, Hs256Key, Hs384, Hs384Key, Hs512, Hs512Key};
use jwt_compact::{Algorithm, AlgorithmSignature};

use super::keys::Material;
#[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
use super::keys::NativeEcKey;
use super::{Alg, Key};

/// Checks a JWS signature. `signing_input` is the token text before its last `.`, byte for
/// byte; `signature` is the decoded third segment. Implementations answer `false` for any key
/// that is not of `alg`'s family, whatever the caller checked before.
#[allow(async_fn_in_trait)]
pub trait SignatureVerifier {
    async fn verify(&self, alg: Alg, key: &Key, signing_input: &[u8], signature: &[u8]) -> bool;
}

/// Verification with the RustCrypto implementations in jwt-compact: HMAC (compared in constant
/// time), RSA PKCS#1 v1.5 and PSS, ECDSA P-256 and Ed25519; ECDSA P-384 and P-521 with the
/// RustCrypto `p384` and `p521` crates, which jwt-compact does not cover.
///
/// The Worker (without `baseline-verify`) checks every signature with WebCrypto and does not
/// use this; compiled to wasm it would carry HMAC only and answer `false` for the asymmetric
/// algorithms, to keep the bundle small.
#[derive(Debug, Clone, Copy, Default)]
pub struct RustCryptoVerifier;

impl RustCryptoVerifier {
    /// The same check, without the `async` wrapper.
    pub fn verify_now(&self, alg: Alg, key: &Key, signing_input: &[u8], signature: &[u8]) -> bool {
        let (msg, sig) = (signing_input, signature);
        match (alg, key.material()) {
            (Alg::Hs256, Material::Hmac { secret }) => {
                check(&Hs256, &Hs256Key::new(secret), msg, sig)
            }
            (Alg::Hs384, Material::Hmac { secret }) => {
                check(&Hs384, &Hs384Key::new(secret), msg, sig)
            }
            (Alg::Hs512, Material::Hmac { secret }) => {
                check(&Hs512, &Hs512Key::new(secret), msg, sig)
            }
            #[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
            (Alg::Rs256, Material::Rsa { native, .. }) => check(&Rsa::rs256(), native, msg, sig),
            #[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
            (Alg::Rs384, Material::Rsa { native, .. }) => check(&Rsa::rs384(), native, msg, sig),
            #[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
            (Alg::Rs512, Material::Rsa { native, .. }) => check(&Rsa::rs512(), native, msg, sig),
            #[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
            (Alg::Ps256, Material::Rsa { native, .. }) => check(&Rsa::ps256(), native, msg, sig),
            #[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
            (Alg::Ps384, Material::Rsa { native, .. }) => check(&Rsa::ps384(), native, msg, sig),
            #[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
            (Alg::Ps512, Material::Rsa { native, .. }) => check(&Rsa::ps512(), native, msg, sig),
            #[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
            (
                Alg::Es256,
                Material::Ec {
                    native: NativeEcKey::P256(native),
                    ..
                },
            ) => check(&Es256, native, msg, sig),
            #[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
            (
                Alg::Es384,
                Material::Ec {
                    native: NativeEcKey::P384(native),
                    ..
                },
            ) => es384(native, msg, sig),
            #[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
            (
                Alg::Es512,
                Material::Ec {
                    native: NativeEcKey::P521(native),
                    ..
                },
            ) => es512(native, msg, sig),
            #[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
            (Alg::EdDsa, Material::Ed25519 { native, .. }) => check(&Ed25519, native, msg, sig),
            // RFC 8725 §3.1: a key is never used outside its family.
            _ => false,
        }
    }
}

impl SignatureVerifier for RustCryptoVerifier {
    async fn verify(&self, alg: Alg, key: &Key, signing_input: &[u8], signature: &[u8]) -> bool {
        self.verify_now(alg, key, signing_input, signature)
    }
}

fn check<A: Algorithm>(alg: &A, key: &A::VerifyingKey, msg: &[u8], sig: &[u8]) -> bool {
    // Some signature types copy into a fixed-size array and panic on another length.
    if A::Signature::LENGTH.is_some_and(|len| len.get() != sig.len()) {
        return false;
    }
    match A::Signature::try_from_slice(sig) {
        Ok(sig) => alg.verify_signature(&sig, key, msg),
        Err(_) => false,
    }
}

/// ES384: the JWS signature is r || s, 48 bytes each (RFC 7518 §3.4), not DER.
#[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
fn es384(key: &p384::ecdsa::VerifyingKey, msg: &[u8], sig: &[u8]) -> bool {
    use p384::ecdsa::signature::Verifier as _;
    sig.len() == 2 * 48
        && p384::ecdsa::Signature::from_slice(sig).is_ok_and(|sig| key.verify(msg, &sig).is_ok())
}

/// ES512: P-521 with SHA-512; r || s, 66 bytes each (RFC 7518 §3.4).
#[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
fn es512(key: &p521::ecdsa::VerifyingKey, msg: &[u8], sig: &[u8]) -> bool {
    use p521::ecdsa::signature::Verifier as _;
    sig.len() == 2 * 66
        && p521::ecdsa::Signature::from_slice(sig).is_ok_and(|sig| key.verify(msg, &sig).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_signatures_of_the_wrong_length_are_refused_not_a_panic() {
        let key = Key::hmac(b"0123456789abcdef0123456789abcdef");
        let good = Hs256.sign(&Hs256Key::new(b"0123456789abcdef0123456789abcdef"), b"m");
        let good = good.as_bytes();
        assert!(RustCryptoVerifier.verify_now(Alg::Hs256, &key, b"m", &good));
        assert!(!RustCryptoVerifier.verify_now(Alg::Hs256, &key, b"n", &good));
        for len in [0, 1, 31, 33, 64] {
            assert!(!RustCryptoVerifier.verify_now(Alg::Hs256, &key, b"m", &vec![0; len]));
        }
        assert!(!RustCryptoVerifier.verify_now(Alg::Hs512, &key, b"m", &[0; 63]));
        assert!(!RustCryptoVerifier.verify_now(Alg::EdDsa, &key, b"m", &[0; 64]));
        assert!(!RustCryptoVerifier.verify_now(Alg::Rs256, &key, b"m", &good));
    }
}
