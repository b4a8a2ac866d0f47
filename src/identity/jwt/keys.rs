//! Verification keys: the key set, the HMAC secret, and which keys may verify a token. Reading
//! a JWKS into keys is `jwk`'s.

use std::fmt;

use jwt_compact::alg::SecretBytes;
#[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
use jwt_compact::{
    alg::{Ed25519, Es256, RsaPublicKey},
    Algorithm,
};

use super::{Alg, JwtError, KeyFamily};

/// The most keys one token is tried against when its header does not name one. Each RSA check
/// costs real CPU, and the token is unauthenticated until one succeeds, so a caller must not be
/// able to make us try a whole key set.
pub const MAX_KEY_TRIES: usize = 3;

#[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
pub(super) type P256PublicKey = <Es256 as Algorithm>::VerifyingKey;
#[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
pub(super) type Ed25519PublicKey = <Ed25519 as Algorithm>::VerifyingKey;

/// One verification key: parsed once, when its key set is built, into raw public components
/// for a platform verifier (WebCrypto imports a JWK built from them) and, natively and in
/// `baseline-verify` builds, also into the form the pure-Rust verifier uses.
///
/// What a key must pass to be kept differs by build, since the Worker's wasm carries no
/// pure-Rust RSA, P-256 or Ed25519 (they were most of its bundle):
/// - every build: the structural checks below (RSA: 2048 to 4096 bits, odd modulus, odd
///   exponent from 3 to 2^33-1, the `rsa` crate's own limits; EC x and y exactly 32 (P-256),
///   48 (P-384) or 66 (P-521) bytes; Ed25519 x exactly 32 bytes);
/// - natively and in `baseline-verify`: also the curve crate's parse (jwt-compact's for P-256,
///   `p384`, `p521`), which refuses a point that is not on the curve (or a coordinate not
///   below the field prime).
///
/// So the Worker keeps such an off-curve EC key in its set, and WebCrypto refuses it when
/// it is imported for the first token naming it: that token fails as a bad signature
/// (`invalid_token`) instead of finding no usable key. Either way the token is refused. An
/// Ed25519 key that is not a valid point is refused by every build only at verification time.
#[derive(Clone)]
pub struct Key {
    pub(super) kid: Option<String>,
    pub(super) alg: Option<Alg>,
    pub(super) material: Material,
}

#[derive(Clone)]
pub(crate) enum Material {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
        #[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
        native: RsaPublicKey,
    },
    /// One variant for the three curves, so the Worker's wasm has one path for them all.
    Ec {
        curve: Curve,
        x: Vec<u8>,
        y: Vec<u8>,
        #[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
        native: NativeEcKey,
    },
    Ed25519 {
        x: Vec<u8>,
        #[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
        native: Ed25519PublicKey,
    },
    /// Zeroed on drop, and never printed.
    Hmac { secret: SecretBytes<'static> },
}

/// The NIST curves of `ES256`, `ES384` and `ES512`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    P521,
}

impl Curve {
    pub(super) fn from_name(crv: &str) -> Option<Curve> {
        match crv {
            "P-256" => Some(Curve::P256),
            "P-384" => Some(Curve::P384),
            "P-521" => Some(Curve::P521),
            _ => None,
        }
    }

    /// The JWK `crv` (RFC 7518 §6.2.1.1), which is also WebCrypto's `namedCurve`.
    pub fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
        }
    }

    /// The length of x, y, r and s: the field size, leading zeros kept (RFC 7518 §6.2.1.2,
    /// §3.4).
    pub fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }

    fn family(self) -> KeyFamily {
        match self {
            Curve::P256 => KeyFamily::EcP256,
            Curve::P384 => KeyFamily::EcP384,
            Curve::P521 => KeyFamily::EcP521,
        }
    }
}

/// An EC key in the form its pure-Rust verifier takes.
#[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
#[derive(Clone)]
pub(crate) enum NativeEcKey {
    P256(P256PublicKey),
    P384(p384::ecdsa::VerifyingKey),
    P521(p521::ecdsa::VerifyingKey),
}

/// A key's raw public parameters (big-endian, unpadded as in a JWK), or the HMAC secret.
#[derive(Clone, Copy)]
pub enum KeyComponents<'a> {
    Rsa {
        n: &'a [u8],
        e: &'a [u8],
    },
    Ec {
        curve: Curve,
        x: &'a [u8],
        y: &'a [u8],
    },
    Ed25519 {
        x: &'a [u8],
    },
    Hmac {
        secret: &'a [u8],
    },
}

impl Key {
    /// The shared secret for `HS*`, used as its bytes. It has no `kid`: it is not a member of
    /// any published key set.
    pub fn hmac(secret: &[u8]) -> Key {
        Key {
            kid: None,
            alg: None,
            material: Material::Hmac {
                secret: SecretBytes::owned(secret.to_vec()),
            },
        }
    }

    /// The JWK's `kid`, if it had one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The JWK's `alg`, if it had one; such a key verifies only that algorithm.
    pub fn alg(&self) -> Option<Alg> {
        self.alg
    }

    pub fn family(&self) -> KeyFamily {
        match self.material {
            Material::Rsa { .. } => KeyFamily::Rsa,
            Material::Ec { curve, .. } => curve.family(),
            Material::Ed25519 { .. } => KeyFamily::OkpEd25519,
            Material::Hmac { .. } => KeyFamily::Hmac,
        }
    }

    pub fn components(&self) -> KeyComponents<'_> {
        match &self.material {
            Material::Rsa { n, e, .. } => KeyComponents::Rsa { n, e },
            Material::Ec { curve, x, y, .. } => KeyComponents::Ec {
                curve: *curve,
                x,
                y,
            },
            Material::Ed25519 { x, .. } => KeyComponents::Ed25519 { x },
            Material::Hmac { secret } => KeyComponents::Hmac { secret },
        }
    }

    pub(crate) fn material(&self) -> &Material {
        &self.material
    }

    /// RFC 8725 §3.1: the key's family must be the algorithm's, and a JWK that names its
    /// algorithm is used for that algorithm only.
    pub fn can_verify(&self, alg: Alg) -> bool {
        self.family() == alg.family() && self.alg.is_none_or(|own| own == alg)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("family", &self.family())
            .finish_non_exhaustive()
    }
}

/// Why a JWKS document could not be read at all. Individual keys that cannot be used are
/// skipped instead (see `KeySet::from_jwks_json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwksError {
    /// Not JSON, or not an object whose `keys` is an array of objects.
    NotAKeySet,
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksError::NotAKeySet => f.write_str("is not a JSON Web Key Set"),
        }
    }
}

impl std::error::Error for JwksError {}

/// The keys a token may be verified with: a JWKS's usable signature keys and, optionally, the
/// HMAC secret.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    pub(super) keys: Vec<Key>,
}

impl KeySet {
    pub fn new() -> KeySet {
        KeySet::default()
    }

    /// This set plus the `HS*` shared secret.
    pub fn with_hmac_secret(mut self, secret: &[u8]) -> KeySet {
        self.keys.push(Key::hmac(secret));
        self
    }

    /// Adds `other`'s keys after this set's: e.g. a freshly fetched JWKS merged with the
    /// configured inline keys and secret.
    pub fn extend(&mut self, other: &KeySet) {
        self.keys.extend(other.keys.iter().cloned());
    }

    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn has_family(&self, family: KeyFamily) -> bool {
        self.keys.iter().any(|k| k.family() == family)
    }

    /// The keys to try for a token with this `alg` and header `kid`, at most `MAX_KEY_TRIES`.
    ///
    /// - `HS*`: the HMAC keys, whatever the `kid`: a shared secret belongs to no key set, and
    ///   issuers that sign with one often still set a `kid`.
    /// - Otherwise, with a `kid`: only keys with exactly that `kid`; none is `UnknownKid`
    ///   (the answer a JWKS refetch keys on). Without a `kid`: every key.
    ///
    /// Of those, only keys that `can_verify` the algorithm remain; none is `KeyMismatch`.
    pub fn candidates(&self, alg: Alg, kid: Option<&str>) -> Result<Vec<&Key>, JwtError> {
        let named: Vec<&Key> = match kid {
            Some(kid) if alg.family() != KeyFamily::Hmac => {
                let named: Vec<&Key> = self.keys.iter().filter(|k| k.kid() == Some(kid)).collect();
                if named.is_empty() {
                    return Err(JwtError::UnknownKid);
                }
                named
            }
            _ => self.keys.iter().collect(),
        };
        let usable: Vec<&Key> = named
            .into_iter()
            .filter(|k| k.can_verify(alg))
            .take(MAX_KEY_TRIES)
            .collect();
        if usable.is_empty() {
            return Err(JwtError::KeyMismatch);
        }
        Ok(usable)
    }
}
