//! `client_certificate`: the calling partner, authenticated by the TLS client certificate that
//! Cloudflare's edge verified (mTLS; `request.cf.tlsClientAuth`), in addition to the
//! customer's identity where the route asks for one (Envoy's `requires_all`, API Shield's
//! mTLS rules). Compiled once from `ROUTES`, checked on every request before anything else
//! of the identity (`identity::authenticate`), without I/O.
//!
//! A certificate passes when the edge says it was presented (`certPresented` "1"), verified
//! (`certVerified` "SUCCESS") and not revoked (`certRevoked` not "1"), and, when the route
//! lists any, its subject DN (`certSubjectDNRFC2253`, compared exactly as the edge gives it) or
//! its SHA-256 fingerprint (`certFingerprintSHA256`, hex, case and colons ignored) is listed.

use serde_json::{Map, Value};

use crate::config::setting::ConfigError;
use crate::io::TlsClientAuth;

/// The fields of `client_certificate`.
const FIELDS: [&str; 3] = ["required", "subjects", "fingerprints_sha256"];

/// A route's `client_certificate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRule {
    /// Subject DNs, as the edge writes them (RFC 2253).
    subjects: Vec<String>,
    /// SHA-256 fingerprints: 64 lower-case hex digits.
    fingerprints: Vec<String>,
}

/// Why a request's certificate does not do. Each becomes 403 `client-certificate-required`;
/// the code is the log line's `client_certificate` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateRefusal {
    /// No certificate presented, or the edge said nothing of one.
    Absent,
    /// Presented, but the edge could not verify it (`certVerified` is not `SUCCESS`).
    NotVerified,
    /// Verified, and revoked.
    Revoked,
    /// Verified, and neither its subject nor its fingerprint is listed.
    NotListed,
}

impl CertificateRefusal {
    /// The log line's `client_certificate` field.
    pub fn code(self) -> &'static str {
        match self {
            Self::Absent => "absent",
            Self::NotVerified => "not_verified",
            Self::Revoked => "revoked",
            Self::NotListed => "not_listed",
        }
    }

    /// What is wrong, for the problem's `detail`.
    pub fn description(self) -> &'static str {
        match self {
            Self::Absent => "none was presented",
            Self::NotVerified => "the one presented could not be verified",
            Self::Revoked => "the one presented is revoked",
            Self::NotListed => "the one presented is not among those this route allows",
        }
    }
}

impl CertificateRule {
    /// A route's `client_certificate` object. `at(field, problem)` names `ROUTES`, the route
    /// and the field (`client_certificate.subjects`).
    pub fn compile(
        value: &Value,
        at: &dyn Fn(&str, &str) -> ConfigError,
    ) -> Result<Self, ConfigError> {
        const FIELD: &str = "client_certificate";
        let Value::Object(map) = value else {
            return Err(at(
                FIELD,
                "must be an object such as {\"required\": true, \"subjects\": [...]}",
            ));
        };
        if let Some(problem) =
            crate::config::entries::unknown_fields(map, &FIELDS, |p| at(FIELD, &p))
                .into_iter()
                .next()
        {
            return Err(problem);
        }
        if map.get("required") != Some(&Value::Bool(true)) {
            return Err(at(
                "client_certificate.required",
                "must be true (a route that does not require a certificate leaves client_certificate out)",
            ));
        }
        let subjects = list(map, "subjects", at)?
            .into_iter()
            .map(|s| {
                if s.is_empty() || s.trim() != s {
                    Err(at(
                        "client_certificate.subjects",
                        "holds an empty string or one with spaces around it",
                    ))
                } else {
                    Ok(s.to_string())
                }
            })
            .collect::<Result<_, _>>()?;
        let fingerprints = list(map, "fingerprints_sha256", at)?
            .into_iter()
            .map(|f| {
                fingerprint(f).ok_or_else(|| {
                    at(
                        "client_certificate.fingerprints_sha256",
                        "must hold SHA-256 fingerprints: 64 hex digits each, colons allowed",
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            subjects,
            fingerprints,
        })
    }

    /// The request's certificate, as the edge reports it (`None`: it reports nothing).
    pub fn check(&self, tls: Option<&TlsClientAuth>) -> Result<(), CertificateRefusal> {
        let tls = tls
            .filter(|t| t.cert_presented == "1")
            .ok_or(CertificateRefusal::Absent)?;
        if tls.cert_verified != "SUCCESS" {
            return Err(CertificateRefusal::NotVerified);
        }
        if tls.cert_revoked == "1" {
            return Err(CertificateRefusal::Revoked);
        }
        if self.subjects.is_empty() && self.fingerprints.is_empty() {
            return Ok(());
        }
        let subject = &tls.cert_subject_dn_rfc2253;
        let by_subject = !subject.is_empty() && self.subjects.iter().any(|s| s == subject);
        let by_fingerprint = fingerprint(&tls.cert_fingerprint_sha256)
            .is_some_and(|f| self.fingerprints.contains(&f));
        if by_subject || by_fingerprint {
            Ok(())
        } else {
            Err(CertificateRefusal::NotListed)
        }
    }
}

/// An optional non-empty array of strings.
fn list<'m>(
    map: &'m Map<String, Value>,
    name: &str,
    at: &dyn Fn(&str, &str) -> ConfigError,
) -> Result<Vec<&'m str>, ConfigError> {
    let field = format!("client_certificate.{name}");
    match map.get(name) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) if items.is_empty() => Err(at(
            &field,
            "is empty (leave it out to accept any verified certificate)",
        )),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| at(&field, "must be an array of strings"))
            })
            .collect(),
        Some(_) => Err(at(&field, "must be an array of strings")),
    }
}

/// A SHA-256 fingerprint as 64 lower-case hex digits, colons and case ignored.
fn fingerprint(text: &str) -> Option<String> {
    let hex: String = text
        .chars()
        .filter(|&c| c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FP: &str = "3f1c0e2a9b8d7c6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e";

    fn compile(v: Value) -> Result<CertificateRule, String> {
        CertificateRule::compile(&v, &|field, problem| {
            ConfigError::at("ROUTES", format!("[0].{field}"), problem)
        })
        .map_err(|e| e.to_string())
    }

    fn verified(subject: &str, fp: &str) -> TlsClientAuth {
        TlsClientAuth {
            cert_presented: "1".into(),
            cert_verified: "SUCCESS".into(),
            cert_revoked: "0".into(),
            cert_subject_dn_rfc2253: subject.into(),
            cert_fingerprint_sha256: fp.into(),
        }
    }

    #[test]
    fn every_state_of_the_edge_report() {
        let any = compile(json!({"required": true})).unwrap();
        let ok = verified("CN=partner,O=Partner", FP);
        assert_eq!(any.check(Some(&ok)), Ok(()));
        assert_eq!(any.check(None), Err(CertificateRefusal::Absent));
        let none = TlsClientAuth {
            cert_presented: "0".into(),
            cert_verified: "NONE".into(),
            ..TlsClientAuth::default()
        };
        assert_eq!(any.check(Some(&none)), Err(CertificateRefusal::Absent));
        let failed = TlsClientAuth {
            cert_verified: "FAILED:self signed certificate".into(),
            ..ok.clone()
        };
        assert_eq!(
            any.check(Some(&failed)),
            Err(CertificateRefusal::NotVerified)
        );
        let revoked = TlsClientAuth {
            cert_revoked: "1".into(),
            ..ok.clone()
        };
        assert_eq!(any.check(Some(&revoked)), Err(CertificateRefusal::Revoked));
    }

    #[test]
    fn subjects_exactly_and_fingerprints_without_case_or_colons() {
        let colons: String = FP
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        let rule = compile(json!({
            "required": true,
            "subjects": ["CN=partner-prod,O=Partner"],
            "fingerprints_sha256": [colons]
        }))
        .unwrap();
        assert_eq!(
            rule.check(Some(&verified("CN=partner-prod,O=Partner", ""))),
            Ok(())
        );
        assert_eq!(rule.check(Some(&verified("CN=other,O=Else", FP))), Ok(()));
        for (subject, fp) in [
            ("CN=other,O=Else", ""),
            ("cn=partner-prod,o=Partner", ""),
            ("CN=partner-prod, O=Partner", ""),
            ("CN=partner-prod,O=Partner,OU=x", "00"),
            ("", &FP[..63]),
        ] {
            assert_eq!(
                rule.check(Some(&verified(subject, fp))),
                Err(CertificateRefusal::NotListed),
                "{subject} {fp}"
            );
        }
    }

    #[test]
    fn bad_rules_name_the_field() {
        for (bad, field) in [
            (json!(true), "[0].client_certificate"),
            (json!({}), "[0].client_certificate.required"),
            (
                json!({"required": false}),
                "[0].client_certificate.required",
            ),
            (
                json!({"required": "true"}),
                "[0].client_certificate.required",
            ),
            (
                json!({"required": true, "subject": ["x"]}),
                "[0].client_certificate",
            ),
            (
                json!({"required": true, "subjects": []}),
                "[0].client_certificate.subjects",
            ),
            (
                json!({"required": true, "subjects": "CN=x"}),
                "[0].client_certificate.subjects",
            ),
            (
                json!({"required": true, "subjects": [""]}),
                "[0].client_certificate.subjects",
            ),
            (
                json!({"required": true, "fingerprints_sha256": ["abc"]}),
                "[0].client_certificate.fingerprints_sha256",
            ),
            (
                json!({"required": true, "fingerprints_sha256": [FP.replace('3', "g")]}),
                "[0].client_certificate.fingerprints_sha256",
            ),
        ] {
            let err = compile(bad.clone()).unwrap_err();
            assert!(err.starts_with(&format!("ROUTES{field}:")), "{bad}: {err}");
        }
    }
}
