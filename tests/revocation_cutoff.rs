//! The subject-wide cut-off, as an attacker's checklist, natively with a clock the test moves:
//! the KV entry `revoked:v1:<base64url SHA-256 of iss "\n" sub>` (its key computed here on its
//! own), `iat` strictly before it refused, no `iat` refused, read through a memory of at most
//! 60 s, a read from before serving while KV fails and 503 without one.

mod common;
#[path = "fixtures/jwt/support.rs"]
mod support;
#[path = "fixtures/revocation.rs"]
mod world;

use common::*;
use world::*;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use edge_auth_proxy::proxy::Gateway;
use serde_json::json;
use sha2::{Digest, Sha256};

// --- the subject-wide cut-off ----------------------------------------------------------------

/// The contract's key, computed here on its own: `revoked:v1:` and the unpadded base64url
/// SHA-256 of `iss "\n" sub`.
fn cutoff_key(iss: &str, sub: &str) -> String {
    let digest = Sha256::digest(format!("{iss}\n{sub}").as_bytes());
    format!("revoked:v1:{}", URL_SAFE_NO_PAD.encode(digest))
}

fn cut_off(svc: &Svc, at: u64) {
    svc.store
        .entries
        .borrow_mut()
        .insert(cutoff_key(ISSUER, SUB), (at.to_string(), 0));
}

/// A gateway without introspection: the cut-off alone.
fn plain() -> (Gateway, Svc) {
    let (gw, svc, _) = world_with(None, 0);
    (gw, svc)
}

#[test]
fn the_key_is_the_contracts() {
    assert_eq!(
        edge_auth_proxy::identity::revocation::cutoff::kv_key(ISSUER, SUB),
        cutoff_key(ISSUER, SUB)
    );
    // The subject's name is not in it.
    assert!(!cutoff_key(ISSUER, SUB).contains(SUB));
}

#[test]
fn tokens_issued_before_the_cut_off_are_refused_at_or_after_pass() {
    for (iat, status) in [(NOW - 101, 401), (NOW - 100, 200), (NOW - 99, 200)] {
        let (gw, svc) = plain();
        cut_off(&svc, NOW - 100);
        let t = token_at(Some(iat), NOW + 600);
        let sent = send(&gw, &svc, &t);
        assert_eq!(sent.resp.status, status, "iat {iat}");
        assert_token_nowhere(&svc, &sent, &t);
        if status == 401 {
            assert_revoked(&sent, "subject_cut_off");
            assert_eq!(origin_calls(&svc), 0);
        }
    }
}

#[test]
fn another_subject_is_not_cut_off() {
    let (gw, svc) = plain();
    cut_off(&svc, NOW);
    let other = es_jwt(json!({"iss": ISSUER, "sub": "cust-2", "exp": NOW + 600, "iat": NOW - 10}));
    assert_eq!(send(&gw, &svc, &other).resp.status, 200);
}

#[test]
fn a_token_without_iat_is_refused_when_its_subject_has_a_cut_off() {
    let (gw, svc) = plain();
    assert_eq!(
        send(&gw, &svc, &token_at(None, NOW + 600)).resp.status,
        200,
        "no cut-off"
    );
    let (gw, svc) = plain();
    cut_off(&svc, NOW - 1000);
    assert_revoked(
        &send(&gw, &svc, &token_at(None, NOW + 600)),
        "cut_off_without_iat",
    );
}

#[test]
fn an_unreadable_entry_refuses_every_token_of_the_subject() {
    let (gw, svc) = plain();
    svc.store
        .entries
        .borrow_mut()
        .insert(cutoff_key(ISSUER, SUB), ("tomorrow".into(), 0));
    let sent = send(&gw, &svc, &token());
    assert_revoked(&sent, "subject_cut_off");
    assert!(sent.log.config_error.is_some());
}

#[test]
fn a_cut_off_is_read_through_memory_for_at_most_60_s() {
    let (gw, svc) = plain();
    assert_eq!(send(&gw, &svc, &token()).resp.status, 200);
    let gets = svc.store.gets.get();
    // Written after the isolate read "no entry": memory answers for up to 60 s.
    cut_off(&svc, NOW);
    svc.clock.advance(59_000);
    let sent = send(&gw, &svc, &token());
    assert_eq!(sent.resp.status, 200);
    assert_eq!(sent.log.cutoff, Some("memory"));
    assert_eq!(svc.store.gets.get(), gets, "no KV read within 60 s");
    svc.clock.advance(1_000);
    let sent = send(&gw, &svc, &token());
    assert_revoked(&sent, "subject_cut_off");
    assert_eq!(sent.log.cutoff, Some("kv"));
    // Removed: the refusal too lasts at most 60 s more.
    svc.store.entries.borrow_mut().clear();
    svc.clock.advance(30_000);
    assert_eq!(send(&gw, &svc, &token()).resp.status, 401);
    svc.clock.advance(30_000);
    assert_eq!(send(&gw, &svc, &token()).resp.status, 200);
}

#[test]
fn kv_down_a_cut_off_read_before_serves() {
    let (gw, svc) = plain();
    cut_off(&svc, NOW);
    assert_eq!(send(&gw, &svc, &token()).resp.status, 401);
    svc.store.failing.set(true);
    svc.clock.advance(120_000);
    let sent = send(&gw, &svc, &token());
    assert_revoked(&sent, "subject_cut_off");
    assert_eq!(sent.log.cutoff, Some("stale"));
}

#[test]
fn kv_down_with_nothing_read_before_is_503() {
    let (gw, svc) = plain();
    // The gateway's own token first, so that only the cut-off depends on KV.
    svc.store.failing.set(true);
    let sent = send(&gw, &svc, &token());
    assert_eq!(sent.resp.status, 503, "{}", problem(&sent.resp));
    assert_eq!(sent.log.outcome, "revocation_list_unavailable");
    assert_eq!(header(&sent.resp, "retry-after"), "1");
    assert_eq!(origin_calls(&svc), 0);
}

#[test]
fn the_cut_off_is_checked_before_introspection_and_both_apply() {
    let (gw, svc, _) = world();
    cut_off(&svc, NOW);
    assert_revoked(&send(&gw, &svc, &token()), "subject_cut_off");
    assert_eq!(
        calls(&svc),
        0,
        "a cut-off token costs no introspection call"
    );
}
