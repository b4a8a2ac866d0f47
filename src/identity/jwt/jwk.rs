//! Reading a JWKS (RFC 7517) into verification keys: each member read by hand, and only the
//! keys this gateway can use kept (`KeySet::from_jwks_json` says which).

use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
#[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
use jwt_compact::{alg::RsaPublicKey, jwk::JsonWebKey};
use serde::Deserialize;

use super::keys::{Curve, JwksError, Key, KeySet, Material};
#[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
use super::keys::{Ed25519PublicKey, NativeEcKey, P256PublicKey};
use super::Alg;

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
}

impl Key {
    /// One public JWK on its own (a DPoP proof's `jwk` header), by the rules a key set's
    /// members are read with; `None` when it is no key this gateway can verify with (an `oct`
    /// key included). The caller refuses private members before: this ignores them.
    pub fn from_public_jwk(member: &serde_json::Map<String, serde_json::Value>) -> Option<Key> {
        RawJwk::from_member(member).and_then(usable_key)
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
    use super::super::keys::KeyComponents;
    use super::super::{JwtError, KeyFamily};
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
