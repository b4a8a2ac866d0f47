//! Reading one private JWK (RSA, EC P-256, Ed25519): every member checked at configuration, the
//! problem text naming members, never their values.

use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use serde_json::Value;

use super::{Private, SigningKey};
use crate::identity::jwt::{Alg, KeyFamily};

/// JWK members are base64url; padding is read too (some tools write it).
const JWK_BASE64: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// RFC 7518 §3.3 and the `rsa` crate's limit, as for verification keys (`jwt::keys`).
const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 4096;

/// What a setting asks of its keys beyond their type: a `kid` (the gateway's keys are found by
/// it in the set it publishes) and an `alg` (an RSA key signs RS256 or PS256: only the
/// operator knows which the token endpoint expects).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    pub kid: bool,
    pub alg: bool,
}

/// One private JWK, checked. The problem text names members, never their values.
pub(super) fn parse_key(
    jwk: &Value,
    families: &[KeyFamily],
    needs: Needs,
) -> Result<SigningKey, String> {
    let Value::Object(o) = jwk else {
        return Err("is not a JSON object: a private JWK is expected".into());
    };
    let text = |name: &str| -> Result<Option<&str>, String> {
        match o.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("has a \"{name}\" that is not a string")),
        }
    };
    let bytes = |name: &str| -> Result<Vec<u8>, String> {
        let s = text(name)?.ok_or_else(|| format!("has no \"{name}\""))?;
        JWK_BASE64
            .decode(s)
            .map_err(|_| format!("has a \"{name}\" that is not base64url"))
    };
    let sized = |name: &str, len: usize| -> Result<Vec<u8>, String> {
        let b = bytes(name)?;
        if b.len() != len {
            return Err(format!("has a \"{name}\" that is not {len} bytes"));
        }
        Ok(b)
    };
    let kty = text("kty")?.ok_or("has no \"kty\"")?;
    let family = match (kty, text("crv")?) {
        ("oct", _) => {
            return Err(
                "is a symmetric key (kty \"oct\"): an asymmetric private JWK (EC P-256, \
                        Ed25519 or RSA) is expected"
                    .into(),
            )
        }
        ("RSA", _) => KeyFamily::Rsa,
        ("EC", Some("P-256")) => KeyFamily::EcP256,
        ("EC", _) => return Err("is an EC key on a curve other than P-256".into()),
        ("OKP", Some("Ed25519")) => KeyFamily::OkpEd25519,
        ("OKP", _) => return Err("is an OKP key on a curve other than Ed25519".into()),
        _ => return Err("has a \"kty\" other than RSA, EC or OKP".into()),
    };
    if !families.contains(&family) {
        let takes: Vec<&str> = families.iter().map(|f| family_name(*f)).collect();
        return Err(format!(
            "is {} key: this setting takes {}",
            family_name(family),
            takes.join(" or ")
        ));
    }
    if !o.contains_key("d") {
        return Err("is a public key (it has no \"d\"): the private JWK is needed".into());
    }
    let kid = match text("kid")? {
        Some(kid) if !kid.trim().is_empty() => kid.to_string(),
        Some(_) if !needs.kid => {
            return Err("has an empty \"kid\": remove it or give the key an id".into())
        }
        // Without a `kid` the JWS header names none (`jws_header`).
        None if !needs.kid => String::new(),
        _ => return Err("has no \"kid\": give the key an id (the origin finds it by it)".into()),
    };
    let alg = match text("alg")? {
        None if needs.alg => {
            return Err(format!(
                "has no \"alg\": name the algorithm it signs with ({})",
                algs_of(family)
            ))
        }
        None => match family {
            KeyFamily::Rsa => Alg::Rs256,
            KeyFamily::OkpEd25519 => Alg::EdDsa,
            _ => Alg::Es256,
        },
        Some(name) => match Alg::from_name(name) {
            Some(alg) if alg.family() == family => alg,
            _ => {
                return Err(format!(
                    "has an \"alg\" that does not fit its {} key",
                    family_name(family)
                ))
            }
        },
    };
    if text("use")?.is_some_and(|u| u != "sig") {
        return Err("has a \"use\" other than \"sig\"".into());
    }
    if let Some(ops) = o.get("key_ops") {
        let signs = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op == "sign"));
        if !signs {
            return Err("has \"key_ops\" without \"sign\"".into());
        }
    }
    let private = match family {
        KeyFamily::Rsa => {
            let n = bytes("n")?;
            let bits = n.iter().skip_while(|&&b| b == 0).count() * 8;
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return Err(format!(
                    "has a modulus outside {MIN_RSA_BITS} to {MAX_RSA_BITS} bits"
                ));
            }
            if o.contains_key("oth") {
                return Err(
                    "is a multi-prime RSA key (\"oth\"), which WebCrypto cannot import".into(),
                );
            }
            Private::Rsa {
                n,
                e: bytes("e")?,
                d: bytes("d")?,
                p: bytes("p")?,
                q: bytes("q")?,
                dp: bytes("dp")?,
                dq: bytes("dq")?,
                qi: bytes("qi")?,
            }
        }
        KeyFamily::EcP256 => Private::Ec {
            x: sized("x", 32)?,
            y: sized("y", 32)?,
            d: sized("d", 32)?,
        },
        _ => Private::Ed25519 {
            x: sized("x", 32)?,
            d: sized("d", 32)?,
        },
    };
    let mut key = SigningKey {
        kid,
        alg,
        #[cfg(any(not(target_arch = "wasm32"), feature = "baseline-verify"))]
        native: super::native::NativeKey::from_private(&private)?,
        private,
        identity: String::new(),
    };
    key.identity = format!("{} {}", key.alg.name(), key.public_jwk_json());
    Ok(key)
}

/// The JWS algorithms a key of `family` may name.
fn algs_of(family: KeyFamily) -> &'static str {
    match family {
        KeyFamily::Rsa => "RS256, RS384, RS512, PS256, PS384 or PS512",
        KeyFamily::OkpEd25519 => "EdDSA",
        _ => "ES256",
    }
}

pub(super) fn family_name(family: KeyFamily) -> &'static str {
    match family {
        KeyFamily::Rsa => "an RSA",
        KeyFamily::EcP256 => "an EC P-256",
        KeyFamily::OkpEd25519 => "an Ed25519",
        KeyFamily::Hmac => "a symmetric",
        _ => "an EC",
    }
}
