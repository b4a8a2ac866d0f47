//! JWS signatures checked by the runtime's WebCrypto (`crypto.subtle.verify`), which in
//! workerd is native code: 5-15x cheaper per RS256/ES256 token than the same check compiled to
//! wasm, and ES384/ES512 need no P-384/P-521 code in the bundle at all. Keys are imported once
//! per isolate and kept. HMAC too (issue 13): in Rust it brought SHA-512 and jwt-compact's
//! three HMACs, about 8 KB of the gzip bundle, for the first sight of an `HS*` token only;
//! WebCrypto's HMAC verify compares in constant time like jwt-compact's, and the secret, like
//! the public keys, is imported once (the import cache, in memory only, knows it by its bytes).
//!
//! There is no pure-Rust fallback for the asymmetric algorithms in this build (they were most
//! of the bundle): should the runtime refuse an import (e.g. a P-256 point off the curve, which
//! this build's key parsing cannot see, see `jwt::keys::Key`) or a verify call, the key cannot
//! verify and the answer is `false`. Every algorithm the gateway names is one workerd's
//! WebCrypto implements.

use std::cell::RefCell;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use js_sys::{Array, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{CryptoKey, SubtleCrypto};

use crate::identity::jwt::{Alg, Curve, Key, KeyComponents, SignatureVerifier};

/// Imported keys kept per isolate; past this the map starts over (a key set this large is
/// already unusual, and re-importing costs one call per key).
const MAX_IMPORTED: usize = 64;

/// An imported key, with what `verify` passes along with it each time.
struct Imported {
    alg: Alg,
    identity: Identity,
    key: CryptoKey,
    /// The `algorithm` argument of `subtle.verify`, built once: each member set from wasm is a
    /// call into JavaScript.
    algorithm: Object,
}

thread_local! {
    // Per isolate, like every cache here: an isolate runs one thread.
    static IMPORTED: RefCell<Vec<Imported>> = const { RefCell::new(Vec::new()) };
}

#[derive(Clone, Copy, Default)]
pub struct WebCryptoVerifier;

impl SignatureVerifier for WebCryptoVerifier {
    async fn verify(&self, alg: Alg, key: &Key, signing_input: &[u8], signature: &[u8]) -> bool {
        // A key outside the algorithm's family never verifies, whoever checks (RFC 8725 §3.1).
        if !key.can_verify(alg) {
            return false;
        }
        let params = Params::of(alg);
        // ECDSA's JWS signature is r || s at the curve's size (RFC 7518 §3.4), an HMAC's the
        // hash's size. WebCrypto answers false for another length; checked here too, so a
        // short or DER-encoded signature costs no import or call whatever the runtime does.
        if params
            .signature_len
            .is_some_and(|len| len != signature.len())
        {
            return false;
        }
        self.subtle_verify(&params, alg, key, signing_input, signature)
            .await
            .unwrap_or(false)
    }
}

impl WebCryptoVerifier {
    async fn subtle_verify(
        &self,
        params: &Params,
        alg: Alg,
        key: &Key,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<bool, JsValue> {
        let subtle = subtle()?;
        let (crypto_key, algorithm) = Self::key(&subtle, params, alg, key).await?;
        let promise = subtle.verify_with_object_and_u8_array_and_u8_array(
            &algorithm,
            &crypto_key,
            signature,
            signing_input,
        )?;
        Ok(JsFuture::from(promise).await?.as_bool().unwrap_or(false))
    }

    /// The imported key and the verify algorithm for it: from the isolate's list, else
    /// imported now and kept.
    async fn key(
        subtle: &SubtleCrypto,
        params: &Params,
        alg: Alg,
        key: &Key,
    ) -> Result<(CryptoKey, Object), JsValue> {
        let identity = identity(alg, key);
        let found = IMPORTED.with(|list| {
            list.borrow()
                .iter()
                .find(|k| k.alg == alg && k.identity == identity)
                .map(|k| (k.key.clone(), k.algorithm.clone()))
        });
        if let Some(found) = found {
            return Ok(found);
        }
        let jwk = jwk_of(key)?;
        let usages = Array::of1(&JsValue::from_str("verify"));
        let promise = subtle.import_key_with_object(
            "jwk",
            &jwk,
            &params.import_algorithm()?,
            false,
            &usages,
        )?;
        let imported: CryptoKey = JsFuture::from(promise).await?.dyn_into()?;
        let algorithm = params.verify_algorithm()?;
        // Two requests may import the same key at once; either result is the same key.
        IMPORTED.with(|list| {
            let mut list = list.borrow_mut();
            if list.len() >= MAX_IMPORTED {
                list.clear();
            }
            list.push(Imported {
                alg,
                identity,
                key: imported.clone(),
                algorithm: algorithm.clone(),
            });
        });
        Ok((imported, algorithm))
    }
}

/// WebCrypto's names for a JWS algorithm.
struct Params {
    name: &'static str,
    hash: Option<&'static str>,
    /// RSA-PSS salt length: the hash size (RFC 7518 §3.5).
    salt: Option<u32>,
    curve: Option<&'static str>,
    /// ECDSA (r || s) and HMAC: the only signature length.
    signature_len: Option<usize>,
}

impl Params {
    fn of(alg: Alg) -> Params {
        let rsa = |hash| Params {
            name: "RSASSA-PKCS1-v1_5",
            hash: Some(hash),
            salt: None,
            curve: None,
            signature_len: None,
        };
        let pss = |hash, salt| Params {
            name: "RSA-PSS",
            hash: Some(hash),
            salt: Some(salt),
            curve: None,
            signature_len: None,
        };
        let ecdsa = |curve: Curve, hash| Params {
            name: "ECDSA",
            hash: Some(hash),
            salt: None,
            curve: Some(curve.name()),
            signature_len: Some(2 * curve.coordinate_len()),
        };
        let hmac = |hash, len| Params {
            name: "HMAC",
            hash: Some(hash),
            salt: None,
            curve: None,
            signature_len: Some(len),
        };
        match alg {
            Alg::Rs256 => rsa("SHA-256"),
            Alg::Rs384 => rsa("SHA-384"),
            Alg::Rs512 => rsa("SHA-512"),
            Alg::Ps256 => pss("SHA-256", 32),
            Alg::Ps384 => pss("SHA-384", 48),
            Alg::Ps512 => pss("SHA-512", 64),
            Alg::Es256 => ecdsa(Curve::P256, "SHA-256"),
            Alg::Es384 => ecdsa(Curve::P384, "SHA-384"),
            Alg::Es512 => ecdsa(Curve::P521, "SHA-512"),
            Alg::EdDsa => Params {
                name: "Ed25519",
                hash: None,
                salt: None,
                curve: None,
                signature_len: None,
            },
            Alg::Hs256 => hmac("SHA-256", 32),
            Alg::Hs384 => hmac("SHA-384", 48),
            Alg::Hs512 => hmac("SHA-512", 64),
        }
    }

    fn import_algorithm(&self) -> Result<Object, JsValue> {
        let o = object(&[("name", self.name.into())])?;
        match (self.curve, self.hash) {
            // ECDSA takes its hash at verify time, its curve at import.
            (Some(curve), _) => set(&o, "namedCurve", curve.into())?,
            (None, Some(hash)) => set(&o, "hash", hash.into())?,
            (None, None) => {}
        }
        Ok(o)
    }

    fn verify_algorithm(&self) -> Result<Object, JsValue> {
        let o = object(&[("name", self.name.into())])?;
        if let Some(salt) = self.salt {
            set(&o, "saltLength", salt.into())?;
        }
        if let (Some(_), Some(hash)) = (self.curve, self.hash) {
            set(&o, "hash", hash.into())?;
        }
        Ok(o)
    }
}

fn subtle() -> Result<SubtleCrypto, JsValue> {
    let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    Ok(global.crypto()?.subtle())
}

fn jwk_of(key: &Key) -> Result<Object, JsValue> {
    let b64 = |bytes: &[u8]| JsValue::from_str(&URL_SAFE_NO_PAD.encode(bytes));
    match key.components() {
        KeyComponents::Rsa { n, e } => {
            object(&[("kty", "RSA".into()), ("n", b64(n)), ("e", b64(e))])
        }
        KeyComponents::Ec { curve, x, y } => object(&[
            ("kty", "EC".into()),
            ("crv", curve.name().into()),
            ("x", b64(x)),
            ("y", b64(y)),
        ]),
        KeyComponents::Ed25519 { x } => object(&[
            ("kty", "OKP".into()),
            ("crv", "Ed25519".into()),
            ("x", b64(x)),
        ]),
        KeyComponents::Hmac { secret } => object(&[("kty", "oct".into()), ("k", b64(secret))]),
    }
}

/// A key's identity for the import cache: its algorithm, type and public parameters, each
/// with its length, so a rotated key under a reused `kid` is never confused with the old one.
/// The bytes themselves rather than a digest of them: comparing a few hundred bytes costs less
/// than hashing them on every verification (SHA-256 of an RSA modulus, about 2 µs in wasm).
type Identity = Vec<u8>;

fn identity(alg: Alg, key: &Key) -> Identity {
    let parts: &[&[u8]] = match key.components() {
        KeyComponents::Rsa { n, e } => &[b"RSA", n, e],
        KeyComponents::Ec { curve, x, y } => &[b"EC", curve.name().as_bytes(), x, y],
        KeyComponents::Ed25519 { x } => &[b"OKP", x],
        // The secret itself, in memory only like the `Key` it comes from and the imported
        // key: two secrets (providers may each have one) never share an import.
        KeyComponents::Hmac { secret } => &[b"oct", secret],
    };
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 4).sum::<usize>() + 8);
    out.extend_from_slice(alg.name().as_bytes());
    for part in parts {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

fn object(members: &[(&str, JsValue)]) -> Result<Object, JsValue> {
    let o = Object::new();
    for (name, value) in members {
        set(&o, name, value.clone())?;
    }
    Ok(o)
}

fn set(o: &Object, name: &str, value: JsValue) -> Result<(), JsValue> {
    Reflect::set(o, &JsValue::from_str(name), &value).map(|_| ())
}
