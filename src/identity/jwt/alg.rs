//! The JWS algorithms the gateway knows, and the key family each one needs.

use std::fmt;

/// A JWS `alg` value this gateway can verify (RFC 7518 §3.1, plus `EdDSA` from RFC 8037).
/// `none` is deliberately absent: an unsigned token is never accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    Hs256,
    Hs384,
    Hs512,
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    Es512,
    EdDsa,
}

/// The kind of key an algorithm verifies with. RFC 8725 §3.1: a key is bound to one family,
/// so an RSA or EC public key can never be misused as an HMAC secret, nor the reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyFamily {
    /// A shared secret (`HS*`).
    Hmac,
    /// An RSA public key (`RS*`, `PS*`).
    Rsa,
    /// An EC public key on P-256 (`ES256`).
    EcP256,
    /// An EC public key on P-384 (`ES384`).
    EcP384,
    /// An EC public key on P-521 (`ES512`; the curve is 521 bits, the hash SHA-512).
    EcP521,
    /// An OKP public key on Ed25519 (`EdDSA`).
    OkpEd25519,
}

impl Alg {
    /// Every supported algorithm, in the contract's order.
    pub const ALL: [Alg; 13] = [
        Alg::Hs256,
        Alg::Hs384,
        Alg::Hs512,
        Alg::Rs256,
        Alg::Rs384,
        Alg::Rs512,
        Alg::Ps256,
        Alg::Ps384,
        Alg::Ps512,
        Alg::Es256,
        Alg::Es384,
        Alg::Es512,
        Alg::EdDsa,
    ];

    /// The registered `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            Alg::Hs256 => "HS256",
            Alg::Hs384 => "HS384",
            Alg::Hs512 => "HS512",
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Rs512 => "RS512",
            Alg::Ps256 => "PS256",
            Alg::Ps384 => "PS384",
            Alg::Ps512 => "PS512",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::Es512 => "ES512",
            Alg::EdDsa => "EdDSA",
        }
    }

    /// The algorithm whose registered name is exactly `name`. Case-sensitive, as RFC 7515
    /// §4.1.1 makes `alg` values: a token saying `hs256` is not an `HS256` token.
    pub fn from_name(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.name() == name)
    }

    pub fn family(self) -> KeyFamily {
        match self {
            Alg::Hs256 | Alg::Hs384 | Alg::Hs512 => KeyFamily::Hmac,
            Alg::Rs256 | Alg::Rs384 | Alg::Rs512 | Alg::Ps256 | Alg::Ps384 | Alg::Ps512 => {
                KeyFamily::Rsa
            }
            Alg::Es256 => KeyFamily::EcP256,
            Alg::Es384 => KeyFamily::EcP384,
            Alg::Es512 => KeyFamily::EcP521,
            Alg::EdDsa => KeyFamily::OkpEd25519,
        }
    }

    /// RFC 7518 §3.2: an HMAC key must be at least as long as the hash output.
    pub(crate) fn min_hmac_secret_len(self) -> Option<usize> {
        match self {
            Alg::Hs256 => Some(32),
            Alg::Hs384 => Some(48),
            Alg::Hs512 => Some(64),
            _ => None,
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for KeyFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyFamily::Hmac => "HMAC secret",
            KeyFamily::Rsa => "RSA key",
            KeyFamily::EcP256 => "EC P-256 key",
            KeyFamily::EcP384 => "EC P-384 key",
            KeyFamily::EcP521 => "EC P-521 key",
            KeyFamily::OkpEd25519 => "Ed25519 key",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_case_sensitive() {
        for alg in Alg::ALL {
            assert_eq!(Alg::from_name(alg.name()), Some(alg));
        }
        assert_eq!(Alg::from_name("hs256"), None);
        assert_eq!(Alg::from_name("EDDSA"), None);
        assert_eq!(Alg::from_name("es512"), None);
        assert_eq!(Alg::from_name("none"), None);
    }

    #[test]
    fn families_follow_the_name() {
        assert_eq!(Alg::Hs384.family(), KeyFamily::Hmac);
        assert_eq!(Alg::Ps512.family(), KeyFamily::Rsa);
        assert_eq!(Alg::Es256.family(), KeyFamily::EcP256);
        assert_eq!(Alg::Es384.family(), KeyFamily::EcP384);
        assert_eq!(Alg::Es512.family(), KeyFamily::EcP521);
        assert_eq!(Alg::EdDsa.family(), KeyFamily::OkpEd25519);
    }
}
