//! Verification keys: JWKS parsing, the HMAC secret, and which keys may verify a token.

use std::fmt;

use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use jwt_compact::alg::SecretBytes;
#[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
use jwt_compact::{
    alg::{Ed25519, Es256, RsaPublicKey},
    jwk::JsonWebKey,
    Algorithm,
};
use serde::Deserialize;

use super::{Alg, JwtError, KeyFamily};

/// The most keys one token is tried against when its header does not name one. Each RSA check
/// costs real CPU, and the token is unauthenticated until one succeeds, so a caller must not be
/// able to make us try a whole key set.
pub const MAX_KEY_TRIES: usize = 3;

/// RFC 7518 §3.3: RSA keys of fewer bits MUST NOT be used.
const MIN_RSA_BITS: usize = 2048;
/// The largest modulus the `rsa` crate takes (`RsaPublicKey::MAX_SIZE`): the native build
/// refuses bigger keys, so every build does, and verifying with one would be costly.
const MAX_RSA_BITS: usize = 4096;
/// The largest public exponent the `rsa` crate takes (`RsaPublicKey::MAX_PUB_EXPONENT`).
const MAX_RSA_EXPONENT: u64 = (1 << 33) - 1;
/// Ed25519 public keys are exactly this long (RFC 8037 §2); EC coordinates, see
/// `Curve::coordinate_len`.
const KEY_BYTES_32: usize = 32;

/// JWK members are base64url without padding (RFC 7517 §2), but some publishers pad them;
/// padding carries no meaning, so both are read.
const JWK_BASE64: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
type P256PublicKey = <Es256 as Algorithm>::VerifyingKey;
#[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
type Ed25519PublicKey = <Ed25519 as Algorithm>::VerifyingKey;

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
    kid: Option<String>,
    alg: Option<Alg>,
    material: Material,
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
    fn from_name(crv: &str) -> Option<Curve> {
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
    keys: Vec<Key>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// The JWK members we read; all others (including any private `d`) are ignored.
struct RawJwk {
    kty: String,
    kid: Option<String>,
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

impl RawJwk {
    /// Read by hand as a derived `Deserialize` read it through `serde_json::from_value`, which
    /// brought serde_json's whole owned-`Value` deserializer into the wasm (issue 13): `kty` a
    /// string; every other member absent, `null` or a string (`key_ops` an array of strings);
    /// a member of another type makes the key unreadable, so skipped.
    fn from_member(member: &serde_json::Map<String, serde_json::Value>) -> Option<RawJwk> {
        use serde_json::Value;
        let text = |name: &str| match member.get(name) {
            None | Some(Value::Null) => Some(None),
            Some(Value::String(s)) => Some(Some(s.clone())),
            Some(_) => None,
        };
        let key_ops = match member.get("key_ops") {
            None | Some(Value::Null) => None,
            Some(Value::Array(ops)) => Some(
                ops.iter()
                    .map(|op| op.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()?,
            ),
            Some(_) => return None,
        };
        Some(RawJwk {
            kty: text("kty")??,
            kid: text("kid")?,
            use_: text("use")?,
            key_ops,
            alg: text("alg")?,
            crv: text("crv")?,
            n: text("n")?,
            e: text("e")?,
            x: text("x")?,
            y: text("y")?,
        })
    }
}

impl KeySet {
    pub fn new() -> KeySet {
        KeySet::default()
    }

    /// Reads a JWKS. Keys this gateway cannot use are skipped rather than failing the whole
    /// set, so that an issuer publishing, say, an encryption key or a secp256k1 key next to its
    /// signing keys does not lock every caller out: unknown `kty` or curve, `use` other than
    /// `sig`, `key_ops` without `verify`, an `alg` that is not one of ours or not the key's
    /// family, members of the wrong type, invalid parameters, RSA under 2048 bits, and
    /// symmetric (`oct`) keys, since a key set is usually published and a published HMAC key
    /// would let anyone sign.
    pub fn from_jwks_json(json: &str) -> Result<KeySet, JwksError> {
        let jwks: Jwks =
            serde_json::from_slice(json.as_bytes()).map_err(|_| JwksError::NotAKeySet)?;
        let keys = jwks
            .keys
            .into_iter()
            .filter_map(|member| RawJwk::from_member(&member))
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
        ("EC", Some(crv)) => ec(Curve::from_name(crv)?, raw.x.as_deref()?, raw.y.as_deref()?)?,
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
    if !rsa_is_sane(&n, &e) {
        return None;
    }
    #[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
    let native = RsaPublicKey::try_from(&JsonWebKey::Rsa {
        modulus: n.as_slice().into(),
        public_exponent: e.as_slice().into(),
        private_parts: None,
    })
    .ok()?;
    Some(Material::Rsa {
        n,
        e,
        #[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
        native,
    })
}

/// The `rsa` crate's public-key checks, done on the bytes so that the wasm build, which has
/// no `rsa`, keeps and drops exactly the same keys: a modulus of 2048 (RFC 7518 §3.3) to 4096
/// bits, odd; an odd exponent from 3 to 2^33-1 (so always below the modulus).
fn rsa_is_sane(n: &[u8], e: &[u8]) -> bool {
    let bits = bit_len(n);
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) || n.last().is_none_or(|b| b & 1 == 0) {
        return false;
    }
    let e: Vec<u8> = e.iter().copied().skip_while(|&b| b == 0).collect();
    if e.len() > 8 {
        return false;
    }
    let e = e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    e >= 3 && e & 1 == 1 && e <= MAX_RSA_EXPONENT
}

fn ec(curve: Curve, x: &str, y: &str) -> Option<Material> {
    let (x, y) = (decode(x)?, decode(y)?);
    let len = curve.coordinate_len();
    if x.len() != len || y.len() != len {
        return None;
    }
    // Natively, also that the point is on the curve; the Worker leaves that to WebCrypto's
    // import (see `Key`).
    #[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
    let native = {
        // SEC1 uncompressed, which the `p384` and `p521` parsers take.
        let sec1 = [&[0x04][..], &x, &y].concat();
        match curve {
            Curve::P256 => NativeEcKey::P256(
                P256PublicKey::try_from(&JsonWebKey::EllipticCurve {
                    curve: "P-256".into(),
                    x: x.as_slice().into(),
                    y: y.as_slice().into(),
                    secret: None,
                })
                .ok()?,
            ),
            Curve::P384 => {
                NativeEcKey::P384(p384::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).ok()?)
            }
            Curve::P521 => {
                NativeEcKey::P521(p521::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).ok()?)
            }
        }
    };
    Some(Material::Ec {
        curve,
        x,
        y,
        #[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
        native,
    })
}

fn ed25519(x: &str) -> Option<Material> {
    let x = decode(x)?;
    if x.len() != KEY_BYTES_32 {
        return None;
    }
    // jwt-compact checks no more than the length here either: the point is decoded when a
    // signature is checked.
    #[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
    let native = Ed25519PublicKey::try_from(&JsonWebKey::KeyPair {
        curve: "Ed25519".into(),
        x: x.as_slice().into(),
        secret: None,
    })
    .ok()?;
    Some(Material::Ed25519 {
        x,
        #[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
        native,
    })
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
    fn jwk_members_are_read_as_the_derived_deserialize_read_them() {
        // The reading that replaced `serde_json::from_value` into a derived struct, against
        // that derive (same fields, same defaults): the same members accepted, the same values.
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Derived {
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
        let members = [
            r#"{"kty":"RSA","n":"AQ","e":"AQAB"}"#,
            r#"{"kty":"EC","crv":"P-256","x":"a","y":"b","kid":"k","use":"sig","alg":"ES256"}"#,
            r#"{"kty":"OKP","crv":"Ed25519","x":"a","key_ops":["verify","sign"]}"#,
            r#"{"kty":"RSA","key_ops":[]}"#,
            r#"{"kty":"RSA","key_ops":null,"kid":null,"use":null,"alg":null}"#,
            r#"{"kty":"RSA","key_ops":"verify"}"#,
            r#"{"kty":"RSA","key_ops":["verify",1]}"#,
            r#"{"kty":"RSA","kid":7}"#,
            r#"{"kty":"RSA","use":true}"#,
            r#"{"kty":"RSA","n":["AQ"]}"#,
            r#"{"kty":"RSA","e":{"v":1}}"#,
            r#"{"kty":"EC","x":1.5}"#,
            r#"{"kty":"EC","y":false}"#,
            r#"{"kty":"EC","crv":1}"#,
            r#"{"kty":null}"#,
            r#"{"kty":1}"#,
            r#"{"kid":"k"}"#,
            r#"{}"#,
            r#"{"kty":"oct","k":"c2VjcmV0","d":"private","extra":[1,{"a":null}]}"#,
        ];
        let mut refused = 0;
        for json in members {
            let member: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(json).unwrap();
            let theirs =
                serde_json::from_value::<Derived>(serde_json::Value::Object(member.clone())).ok();
            let ours = RawJwk::from_member(&member).map(|r| Derived {
                kty: r.kty,
                kid: r.kid,
                use_: r.use_,
                key_ops: r.key_ops,
                alg: r.alg,
                crv: r.crv,
                n: r.n,
                e: r.e,
                x: r.x,
                y: r.y,
            });
            refused += usize::from(ours.is_none());
            assert_eq!(ours, theirs, "{json}");
        }
        assert!(0 < refused && refused < members.len(), "{refused} refused");
    }

    #[test]
    fn bit_length_ignores_leading_zero_bytes() {
        assert_eq!(bit_len(&[]), 0);
        assert_eq!(bit_len(&[0, 0]), 0);
        assert_eq!(bit_len(&[1]), 1);
        assert_eq!(bit_len(&[0, 0x80, 0]), 16);
        assert_eq!(bit_len(&[0xff; 256]), 2048);
    }

    #[test]
    fn rsa_parameters_outside_the_rsa_crates_limits_are_refused() {
        let n2048 = [0xff; 256];
        let e = [1, 0, 1];
        assert!(rsa_is_sane(&n2048, &e));
        assert!(rsa_is_sane(&[0xff; 512], &e), "4096 bits");
        assert!(
            rsa_is_sane(&[0xff; 256], &[0, 0, 3]),
            "leading zeros, e = 3"
        );
        assert!(!rsa_is_sane(&[0xff; 255], &e), "2040 bits");
        assert!(!rsa_is_sane(&[0xff; 513], &e), "4104 bits");
        let mut even = n2048;
        even[255] = 0xfe;
        assert!(!rsa_is_sane(&even, &e), "even modulus");
        for bad in [
            &[][..],
            &[1],
            &[2],
            &[4],
            &[1, 0, 0],
            &[2, 0, 0, 0, 1],
            &[1; 9],
        ] {
            assert!(!rsa_is_sane(&n2048, bad), "exponent {bad:?}");
        }
        assert!(
            rsa_is_sane(&n2048, &[1, 0xff, 0xff, 0xff, 0xff]),
            "2^33 - 1"
        );
    }

    /// The structural checks must keep and drop what jwt-compact's parse keeps and drops, so
    /// that the Worker's key set (no pure-Rust RSA) is the native one.
    #[test]
    fn structural_rsa_checks_agree_with_the_rsa_crate() {
        let n2048 = [0xff; 256];
        let cases: &[(&[u8], &[u8])] = &[
            (&n2048, &[1, 0, 1]),
            (&n2048, &[3]),
            (&n2048, &[2]),
            (&n2048, &[1]),
            (&n2048, &[2, 0, 0, 0, 1]),
            (&n2048, &[1, 0xff, 0xff, 0xff, 0xff]),
            (&[0xff; 513], &[1, 0, 1]),
            (&[0xff; 512], &[1, 0, 1]),
        ];
        for (n, e) in cases {
            let native = RsaPublicKey::try_from(&JsonWebKey::Rsa {
                modulus: (*n).into(),
                public_exponent: (*e).into(),
                private_parts: None,
            })
            .is_ok();
            assert_eq!(rsa_is_sane(n, e), native, "n {} bytes, e {e:?}", n.len());
        }
    }

    #[test]
    fn ec_and_okp_members_of_the_wrong_length_are_skipped() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        let short = URL_SAFE_NO_PAD.encode([7u8; 31]);
        let long = URL_SAFE_NO_PAD.encode([7u8; 33]);
        let jwks = format!(
            r#"{{"keys":[
              {{"kty":"OKP","crv":"Ed25519","x":"{short}"}},
              {{"kty":"OKP","crv":"Ed25519","x":"{long}"}},
              {{"kty":"EC","crv":"P-256","x":"{short}","y":"{x}"}},
              {{"kty":"EC","crv":"P-256","x":"{x}","y":"{long}"}}
            ]}}"#
        );
        assert!(KeySet::from_jwks_json(&jwks).unwrap().is_empty());
    }

    /// A P-384 or P-521 JWK (x, y base64url) for the scalar of all-ones bytes.
    fn ec_jwk_members(curve: &str) -> (String, String) {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let sec1 = match curve {
            "P-384" => {
                let key = p384::ecdsa::SigningKey::from_slice(&[1; 48]).unwrap();
                key.verifying_key()
                    .to_encoded_point(false)
                    .as_bytes()
                    .to_vec()
            }
            _ => {
                let key = p521::ecdsa::SigningKey::from_slice(&[1; 66]).unwrap();
                p521::ecdsa::VerifyingKey::from(&key)
                    .to_encoded_point(false)
                    .as_bytes()
                    .to_vec()
            }
        };
        let half = (sec1.len() - 1) / 2;
        (
            URL_SAFE_NO_PAD.encode(&sec1[1..=half]),
            URL_SAFE_NO_PAD.encode(&sec1[1 + half..]),
        )
    }

    #[test]
    fn p384_and_p521_keys_are_read_by_exact_size_on_the_curve_and_bound_to_their_curve() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        for (curve, len, alg, family) in [
            ("P-384", 48, Alg::Es384, KeyFamily::EcP384),
            ("P-521", 66, Alg::Es512, KeyFamily::EcP521),
        ] {
            let (x, y) = ec_jwk_members(curve);
            let good = format!(r#"{{"kty":"EC","crv":"{curve}","x":"{x}","y":"{y}","kid":"k"}}"#);
            let set = KeySet::from_jwks_json(&format!(r#"{{"keys":[{good}]}}"#)).unwrap();
            assert_eq!(set.len(), 1, "{curve}");
            let key = &set.keys()[0];
            assert_eq!(key.family(), family);
            assert!(key.can_verify(alg));
            for other in [Alg::Es256, Alg::Es384, Alg::Es512, Alg::Hs256, Alg::EdDsa] {
                assert_eq!(key.can_verify(other), other == alg, "{curve} key, {other}");
            }

            let short = URL_SAFE_NO_PAD.encode(vec![7u8; len - 1]);
            let long = URL_SAFE_NO_PAD.encode(vec![7u8; len + 1]);
            // y with its last bit flipped: the same length, no longer on the curve.
            let mut off = URL_SAFE_NO_PAD.decode(&y).unwrap();
            off[len - 1] ^= 1;
            let off = URL_SAFE_NO_PAD.encode(off);
            let other_curve = if curve == "P-384" { "P-521" } else { "P-384" };
            let skipped = [
                format!(r#"{{"kty":"EC","crv":"{curve}","x":"{short}","y":"{y}"}}"#),
                format!(r#"{{"kty":"EC","crv":"{curve}","x":"{x}","y":"{long}"}}"#),
                format!(r#"{{"kty":"EC","crv":"{other_curve}","x":"{x}","y":"{y}"}}"#),
                format!(r#"{{"kty":"EC","crv":"P-256","x":"{x}","y":"{y}"}}"#),
                format!(r#"{{"kty":"EC","crv":"{curve}","x":"{x}","y":"{y}","alg":"ES256"}}"#),
                format!(r#"{{"kty":"EC","crv":"{curve}","x":"{x}"}}"#),
            ];
            for jwk in &skipped {
                let set = KeySet::from_jwks_json(&format!(r#"{{"keys":[{jwk}]}}"#)).unwrap();
                assert!(set.is_empty(), "kept {jwk}");
            }
            // Natively (as here) an off-curve point is refused when the set is read; the
            // Worker's wasm keeps it and WebCrypto's import refuses it (see `Key`).
            let jwk = format!(r#"{{"kty":"EC","crv":"{curve}","x":"{x}","y":"{off}"}}"#);
            let set = KeySet::from_jwks_json(&format!(r#"{{"keys":[{jwk}]}}"#)).unwrap();
            assert!(set.is_empty(), "{curve}: kept a point off the curve");
        }
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
