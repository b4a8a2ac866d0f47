//! The gateway's signatures made by the runtime's WebCrypto (`crypto.subtle.sign`): each
//! private key is imported once per isolate, as non-extractable, and the `CryptoKey` kept, so
//! a request costs one `sign` call and no key material crosses into JavaScript again.
//! The Worker's verifier is its one crypto provider: it signs too (`io::Services`).

use std::cell::RefCell;

use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{CryptoKey, SubtleCrypto};

use super::WebCryptoVerifier;
use crate::identity::jwt::Alg;
use crate::identity::signing::{SignError, Signer, SigningKey};

/// Imported private keys kept per isolate (a set holds a handful at most; past this the list
/// starts over).
const MAX_IMPORTED: usize = 8;

struct Imported {
    /// `alg`, `kid` and the public JWK: a key rotated under a reused `kid` is a new import.
    identity: String,
    key: CryptoKey,
    /// The `algorithm` argument of `subtle.sign`, built once.
    algorithm: Object,
}

thread_local! {
    static IMPORTED: RefCell<Vec<Imported>> = const { RefCell::new(Vec::new()) };
}

impl Signer for WebCryptoVerifier {
    async fn sign(&self, key: &SigningKey, input: &[u8]) -> Result<Vec<u8>, SignError> {
        sign(key, input)
            .await
            .map_err(|e| SignError(crate::platform::js_message(&e)))
    }
}

async fn sign(key: &SigningKey, input: &[u8]) -> Result<Vec<u8>, JsValue> {
    let subtle = subtle()?;
    let (crypto_key, algorithm) = imported(&subtle, key).await?;
    let promise = subtle.sign_with_object_and_u8_array(&algorithm, &crypto_key, input)?;
    let signature = JsFuture::from(promise).await?;
    Ok(Uint8Array::new(&signature).to_vec())
}

/// The key's `CryptoKey` and sign algorithm: from the isolate's list, else imported now.
async fn imported(subtle: &SubtleCrypto, key: &SigningKey) -> Result<(CryptoKey, Object), JsValue> {
    let identity = key.identity();
    let found = IMPORTED.with(|list| {
        list.borrow()
            .iter()
            .find(|k| k.identity == identity)
            .map(|k| (k.key.clone(), k.algorithm.clone()))
    });
    if let Some(found) = found {
        return Ok(found);
    }
    let (import, algorithm) = algorithms(key.alg())?;
    // The private JWK goes into JavaScript this once, and the key is not extractable.
    let jwk: Object = js_sys::JSON::parse(&key.private_jwk_json())?.dyn_into()?;
    let usages = Array::of1(&JsValue::from_str("sign"));
    let promise = subtle.import_key_with_object("jwk", &jwk, &import, false, &usages)?;
    let crypto_key: CryptoKey = JsFuture::from(promise).await?.dyn_into()?;
    IMPORTED.with(|list| {
        let mut list = list.borrow_mut();
        if list.len() >= MAX_IMPORTED {
            list.clear();
        }
        list.push(Imported {
            identity: identity.to_string(),
            key: crypto_key.clone(),
            algorithm: algorithm.clone(),
        });
    });
    Ok((crypto_key, algorithm))
}

/// WebCrypto's import and sign algorithms for a JWS `alg`.
fn algorithms(alg: Alg) -> Result<(Object, Object), JsValue> {
    let named = |name: &str| -> Result<Object, JsValue> {
        let o = Object::new();
        set(&o, "name", name.into())?;
        Ok(o)
    };
    let rsa = |name: &str, hash: &str, salt: Option<u32>| -> Result<(Object, Object), JsValue> {
        let import = named(name)?;
        set(&import, "hash", hash.into())?;
        let sign = named(name)?;
        if let Some(salt) = salt {
            set(&sign, "saltLength", salt.into())?;
        }
        Ok((import, sign))
    };
    match alg {
        Alg::Es256 => {
            let import = named("ECDSA")?;
            set(&import, "namedCurve", "P-256".into())?;
            let sign = named("ECDSA")?;
            set(&sign, "hash", "SHA-256".into())?;
            Ok((import, sign))
        }
        Alg::EdDsa => Ok((named("Ed25519")?, named("Ed25519")?)),
        Alg::Rs256 => rsa("RSASSA-PKCS1-v1_5", "SHA-256", None),
        Alg::Rs384 => rsa("RSASSA-PKCS1-v1_5", "SHA-384", None),
        Alg::Rs512 => rsa("RSASSA-PKCS1-v1_5", "SHA-512", None),
        Alg::Ps256 => rsa("RSA-PSS", "SHA-256", Some(32)),
        Alg::Ps384 => rsa("RSA-PSS", "SHA-384", Some(48)),
        Alg::Ps512 => rsa("RSA-PSS", "SHA-512", Some(64)),
        _ => Err(JsValue::from_str("no signing with this algorithm")),
    }
}

fn subtle() -> Result<SubtleCrypto, JsValue> {
    let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    Ok(global.crypto()?.subtle())
}

fn set(o: &Object, name: &str, value: JsValue) -> Result<(), JsValue> {
    Reflect::set(o, &JsValue::from_str(name), &value).map(|_| ())
}
