//! Encryption at rest of cached tokens (`TOKEN_ENCRYPTION_KEY`): AES-256-GCM, a fresh random
//! nonce per write, the KV key as associated data.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;

const NONCE_LEN: usize = 12;
const PREFIX: &str = "gcm1.";

pub struct Sealer {
    cipher: Aes256Gcm,
}

impl Sealer {
    /// From 32 bytes in standard base64; `None` for any other length or encoding.
    pub fn from_base64(b64: &str) -> Option<Self> {
        let key = STANDARD.decode(b64.trim()).ok()?;
        let cipher = Aes256Gcm::new_from_slice(&key).ok()?;
        (key.len() == 32).then_some(Self { cipher })
    }

    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Option<String> {
        let mut nonce = [0u8; NONCE_LEN];
        // A repeated nonce under one key breaks GCM: without entropy we do not write at all.
        getrandom::getrandom(&mut nonce).ok()?;
        let ct = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .ok()?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Some(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out)))
    }

    pub fn open(&self, sealed: &str, aad: &[u8]) -> Option<Vec<u8>> {
        let raw = URL_SAFE_NO_PAD.decode(sealed.strip_prefix(PREFIX)?).ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        self.cipher
            .decrypt(&Nonce::from(nonce), Payload { msg: ct, aad })
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert!(Sealer::from_base64(KEY).is_some());
        assert!(Sealer::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==").is_none());
        assert!(Sealer::from_base64("not base64!").is_none());
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let s = Sealer::from_base64(KEY).unwrap();
        assert_ne!(s.seal(b"x", b"k"), s.seal(b"x", b"k"));
    }

    #[test]
    fn tampering_and_a_rotated_key_are_misses() {
        let s = Sealer::from_base64(KEY).unwrap();
        let sealed = s.seal(b"payload", b"k").unwrap();
        let mut bytes = sealed.clone().into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(s.open(&String::from_utf8(bytes).unwrap(), b"k"), None);
        let other = Sealer::from_base64("HwECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        assert_eq!(other.open(&sealed, b"k"), None);
        assert_eq!(s.open(&sealed, b"k").as_deref(), Some(&b"payload"[..]));
    }
}
