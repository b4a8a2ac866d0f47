//! Verification keys: JWKS parsing, the HMAC secret, and which keys may verify a token.

use std::fmt;

use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use jwt_compact::alg::{Ed25519, Es256, RsaPublicKey, SecretBytes};
use jwt_compact::jwk::JsonWebKey;
use jwt_compact::Algorithm;
use serde::Deserialize;

use super::{Alg, JwtError, KeyFamily};

/// The most keys one token is tried against when its header does not name one. Each RSA check
/// costs real CPU, and the token is unauthenticated until one succeeds, so a caller must not be
/// able to make us try a whole key set.
pub const MAX_KEY_TRIES: usize = 3;

/// RFC 7518 §3.3: RSA keys of fewer bits MUST NOT be used.
const MIN_RSA_BITS: usize = 2048;

/// JWK members are base64url without padding (RFC 7517 §2), but some publishers pad them;
/// padding carries no meaning, so both are read.
const JWK_BASE64: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

type P256PublicKey = <Es256 as Algorithm>::VerifyingKey;
type Ed25519PublicKey = <Ed25519 as Algorithm>::VerifyingKey;

/// One verification key: parsed once, when its key set is built, both into the form the
/// pure-Rust verifier uses and into raw public components for a platform verifier (WebCrypto
/// imports a JWK built from them).
#[derive(Clone)]
pub struct Key {
    kid: Option<String>,
    alg: Option<Alg>,
    material: Material,
}

#[derive(Clone)]
pub(crate) enum Material {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
        native: RsaPublicKey,
    },
    EcP256 {
        x: Vec<u8>,
        y: Vec<u8>,
        native: P256PublicKey,
    },
    Ed25519 {
        native: Ed25519PublicKey,
    },
    /// Zeroed on drop, and never printed.
    Hmac {
        secret: SecretBytes<'static>,
    },
}

/// A key's raw public parameters (big-endian, unpadded as in a JWK), or the HMAC secret.
#[derive(Clone, Copy)]
pub enum KeyComponents<'a> {
    Rsa { n: &'a [u8], e: &'a [u8] },
    EcP256 { x: &'a [u8], y: &'a [u8] },
    Ed25519 { x: &'a [u8] },
    Hmac { secret: &'a [u8] },
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
            Material::EcP256 { .. } => KeyFamily::EcP256,
            Material::Ed25519 { .. } => KeyFamily::OkpEd25519,
            Material::Hmac { .. } => KeyFamily::Hmac,
        }
    }

    pub fn components(&self) -> KeyComponents<'_> {
        match &self.material {
            Material::Rsa { n, e, .. } => KeyComponents::Rsa { n, e },
            Material::EcP256 { x, y, .. } => KeyComponents::EcP256 { x, y },
            Material::Ed25519 { native } => KeyComponents::Ed25519 { x: &native[..] },
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
    keys: Vec<Key>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// The JWK members we read; all others (including any private `d`) are ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    key_ops: Option<Vec<String>>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

impl KeySet {
    pub fn new() -> KeySet {
        KeySet::default()
    }

    /// Reads a JWKS. Keys this gateway cannot use are skipped rather than failing the whole
    /// set, so that an issuer publishing, say, an encryption key or a P-384 key next to its
    /// signing keys does not lock every caller out: unknown `kty` or curve, `use` other than
    /// `sig`, `key_ops` without `verify`, an `alg` that is not one of ours or not the key's
    /// family, members of the wrong type, invalid parameters, RSA under 2048 bits, and
    /// symmetric (`oct`) keys, since a key set is usually published and a published HMAC key
    /// would let anyone sign.
    pub fn from_jwks_json(json: &str) -> Result<KeySet, JwksError> {
        let jwks: Jwks = serde_json::from_str(json).map_err(|_| JwksError::NotAKeySet)?;
        let keys = jwks
            .keys
            .into_iter()
            .filter_map(|member| {
                serde_json::from_value::<RawJwk>(serde_json::Value::Object(member)).ok()
            })
            .filter_map(usable_key)
            .collect();
        Ok(KeySet { keys })
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

fn usable_key(raw: RawJwk) -> Option<Key> {
    if raw.use_.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    if raw
        .key_ops
        .as_ref()
        .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
    {
        return None;
    }
    let alg = match raw.alg.as_deref() {
        None => None,
        Some(name) => Some(Alg::from_name(name)?),
    };
    let material = match (raw.kty.as_str(), raw.crv.as_deref()) {
        ("RSA", _) => rsa(raw.n.as_deref()?, raw.e.as_deref()?)?,
        ("EC", Some("P-256")) => ec_p256(raw.x.as_deref()?, raw.y.as_deref()?)?,
        ("OKP", Some("Ed25519")) => ed25519(raw.x.as_deref()?)?,
        _ => return None,
    };
    let key = Key {
        kid: raw.kid,
        alg,
        material,
    };
    match key.alg {
        Some(alg) if alg.family() != key.family() => None,
        _ => Some(key),
    }
}

fn decode(member: &str) -> Option<Vec<u8>> {
    JWK_BASE64.decode(member).ok()
}

fn rsa(n: &str, e: &str) -> Option<Material> {
    let (n, e) = (decode(n)?, decode(e)?);
    if bit_len(&n) < MIN_RSA_BITS {
        return None;
    }
    let native = RsaPublicKey::try_from(&JsonWebKey::Rsa {
        modulus: n.as_slice().into(),
        public_exponent: e.as_slice().into(),
        private_parts: None,
    })
    .ok()?;
    Some(Material::Rsa { n, e, native })
}

fn ec_p256(x: &str, y: &str) -> Option<Material> {
    let (x, y) = (decode(x)?, decode(y)?);
    // Checks the coordinates' length and that the point is on the curve.
    let native = P256PublicKey::try_from(&JsonWebKey::EllipticCurve {
        curve: "P-256".into(),
        x: x.as_slice().into(),
        y: y.as_slice().into(),
        secret: None,
    })
    .ok()?;
    Some(Material::EcP256 { x, y, native })
}

fn ed25519(x: &str) -> Option<Material> {
    let x = decode(x)?;
    let jwk = JsonWebKey::KeyPair {
        curve: "Ed25519".into(),
        x: x.as_slice().into(),
        secret: None,
    };
    let native = Ed25519PublicKey::try_from(&jwk).ok()?;
    Some(Material::Ed25519 { native })
}

/// Significant bits of a big-endian unsigned integer.
fn bit_len(be: &[u8]) -> usize {
    let mut digits = be.iter().skip_while(|&&b| b == 0);
    match digits.next() {
        Some(&top) => digits.count() * 8 + (8 - top.leading_zeros() as usize),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_length_ignores_leading_zero_bytes() {
        assert_eq!(bit_len(&[]), 0);
        assert_eq!(bit_len(&[0, 0]), 0);
        assert_eq!(bit_len(&[1]), 1);
        assert_eq!(bit_len(&[0, 0x80, 0]), 16);
        assert_eq!(bit_len(&[0xff; 256]), 2048);
    }

    #[test]
    fn a_document_that_is_not_a_key_set_is_an_error() {
        for bad in ["", "nope", "[]", "{}", r#"{"keys":{}}"#, r#"{"keys":[1]}"#] {
            assert_eq!(
                KeySet::from_jwks_json(bad).unwrap_err(),
                JwksError::NotAKeySet,
                "{bad}"
            );
        }
        assert!(KeySet::from_jwks_json(r#"{"keys":[]}"#).unwrap().is_empty());
    }

    #[test]
    fn unusable_keys_are_skipped() {
        // A valid Ed25519 public key (RFC 8037 A.2), then variants of it that must be skipped.
        let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        let jwks = format!(
            r#"{{"keys":[
              {{"kty":"OKP","crv":"Ed25519","x":"{x}","kid":"ok"}},
              {{"kty":"OKP","crv":"Ed25519","x":"{x}","use":"enc"}},
              {{"kty":"OKP","crv":"Ed25519","x":"{x}","key_ops":["encrypt"]}},
              {{"kty":"OKP","crv":"Ed25519","x":"{x}","alg":"ES384"}},
              {{"kty":"OKP","crv":"Ed25519","x":"{x}","alg":"RS256"}},
              {{"kty":"OKP","crv":"X25519","x":"{x}"}},
              {{"kty":"OKP","crv":"Ed25519","x":"***"}},
              {{"kty":"OKP","crv":"Ed25519","x":"{x}","kid":7}},
              {{"kty":"oct","k":"c2VjcmV0"}},
              {{"kty":"RSA","n":"AQAB","e":"AQAB"}},
              {{"kty":"EC","crv":"P-384","x":"{x}","y":"{x}"}},
              {{"kty":"XYZ"}},
              {{"kid":"no-kty"}}
            ]}}"#
        );
        let set = KeySet::from_jwks_json(&jwks).unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(set.keys()[0].kid(), Some("ok"));
        assert_eq!(set.keys()[0].family(), KeyFamily::OkpEd25519);
    }

    #[test]
    fn the_hmac_secret_never_prints() {
        let set = KeySet::new().with_hmac_secret(b"very-secret-bytes");
        assert!(!format!("{set:?}").contains("very-secret"));
        assert!(
            matches!(set.keys()[0].components(), KeyComponents::Hmac { secret } if secret == b"very-secret-bytes")
        );
    }

    #[test]
    fn hmac_tokens_use_the_secret_whatever_their_kid() {
        let set = KeySet::new().with_hmac_secret(b"s");
        assert_eq!(set.candidates(Alg::Hs256, Some("k1")).unwrap().len(), 1);
        assert_eq!(set.candidates(Alg::Hs512, None).unwrap().len(), 1);
        assert_eq!(
            set.candidates(Alg::Rs256, None).unwrap_err(),
            JwtError::KeyMismatch
        );
        assert_eq!(
            set.candidates(Alg::Rs256, Some("k1")).unwrap_err(),
            JwtError::UnknownKid
        );
    }
}
