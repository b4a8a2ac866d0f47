//! The subject-wide cut-off, as an attacker's checklist, natively with a clock the test moves:
//! the KV entry `revoked:v1:<base64url SHA-256 of iss "\n" sub>` (its key computed here on its
//! own), `iat` strictly before it refused, no `iat` refused, which subjects have an entry known
//! from a listing of the prefix made at most once a minute (a subject without one costs no KV
//! read; beyond the listing's cap, one read per subject), values read through a memory of at most
//! 60 s, a listing or read from before serving while KV fails and 503 without one.

mod common;
#[path = "fixtures/jwt/support.rs"]
mod support;
#[path = "fixtures/revocation.rs"]
mod world;

use common::*;
use world::*;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use edge_auth_proxy::io::Body;
use edge_auth_proxy::proxy::Gateway;
use http::Method;
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
    assert_eq!(sent.log.cutoff, Some("list"));
    assert_eq!(svc.store.gets.get(), gets, "no KV read within 60 s");
    assert_eq!(svc.store.lists.get(), 1, "no KV list within 60 s");
    svc.clock.advance(1_000);
    let sent = send(&gw, &svc, &token());
    assert_revoked(&sent, "subject_cut_off");
    assert_eq!(sent.log.cutoff, Some("kv"));
    // Removed: the refusal too lasts at most 60 s more.
    svc.store.entries.borrow_mut().clear();
    svc.clock.advance(30_000);
    let sent = send(&gw, &svc, &token());
    assert_eq!(sent.resp.status, 401);
    assert_eq!(sent.log.cutoff, Some("memory"));
    svc.clock.advance(30_000);
    let sent = send(&gw, &svc, &token());
    assert_eq!(sent.resp.status, 200);
    assert_eq!(sent.log.cutoff, Some("list"));
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

// --- which subjects have an entry: the isolate's listing ------------------------------------

/// A JWT of `sub`, issued 10 s ago.
fn token_of(sub: &str) -> String {
    es_jwt(json!({"iss": ISSUER, "sub": sub, "exp": NOW + 3600, "iat": NOW - 10}))
}

/// KV reads of cut-off entries so far.
fn cutoff_gets(svc: &Svc) -> usize {
    let got = svc.store.got.borrow();
    got.iter().filter(|k| k.starts_with("revoked:v1:")).count()
}

#[test]
fn without_cut_offs_no_subject_costs_a_kv_read_and_the_list_is_made_once_a_minute() {
    let (gw, svc) = plain();
    for minute in 0..3 {
        for i in 0..200 {
            let sent = send(&gw, &svc, &token_of(&format!("cust-{minute}-{i}")));
            assert_eq!(sent.resp.status, 200);
            assert_eq!(sent.log.cutoff, Some("list"));
            svc.clock.advance(100);
        }
        assert_eq!(svc.store.lists.get(), minute + 1, "one list per 60 s");
        svc.clock.advance(60_000 - 20_000);
    }
    assert_eq!(cutoff_gets(&svc), 0, "600 first-seen subjects, no KV read");
}

#[test]
fn among_many_subjects_only_the_cut_off_one_is_read_and_refused() {
    let (gw, svc) = plain();
    cut_off(&svc, NOW);
    for i in 0..100 {
        assert_eq!(
            send(&gw, &svc, &token_of(&format!("other-{i}")))
                .resp
                .status,
            200
        );
    }
    assert_eq!(cutoff_gets(&svc), 0);
    let sent = send(&gw, &svc, &token());
    assert_revoked(&sent, "subject_cut_off");
    assert_eq!(sent.log.cutoff, Some("kv"));
    assert_eq!(
        svc.store.got.borrow().last(),
        Some(&cutoff_key(ISSUER, SUB))
    );
    assert_eq!(cutoff_gets(&svc), 1);
}

#[test]
fn an_entry_written_by_hand_is_honoured_within_60_s_and_its_removal_too() {
    let (gw, svc) = plain();
    assert_eq!(send(&gw, &svc, &token()).resp.status, 200);
    // Only the contract's key, put straight into KV (`wrangler kv key put`): no marker.
    svc.store
        .entries
        .borrow_mut()
        .insert(cutoff_key(ISSUER, SUB), (format!("{NOW}\n"), 0));
    svc.clock.advance(59_999);
    assert_eq!(
        send(&gw, &svc, &token()).resp.status,
        200,
        "the listing is 59.999 s old"
    );
    svc.clock.advance(1);
    assert_revoked(&send(&gw, &svc, &token()), "subject_cut_off");
    svc.store
        .entries
        .borrow_mut()
        .remove(&cutoff_key(ISSUER, SUB));
    svc.clock.advance(59_999);
    assert_eq!(send(&gw, &svc, &token()).resp.status, 401);
    svc.clock.advance(1);
    assert_eq!(send(&gw, &svc, &token()).resp.status, 200, "released");
}

#[test]
fn a_failed_list_keeps_the_held_listing_for_10_minutes_then_503() {
    let (gw, svc) = plain();
    cut_off(&svc, NOW);
    assert_eq!(send(&gw, &svc, &token_of("cust-2")).resp.status, 200);
    svc.store.list_failing.set(true);
    svc.clock.advance(61_000);
    let sent = send(&gw, &svc, &token_of("cust-3"));
    assert_eq!(sent.resp.status, 200, "{}", problem(&sent.resp));
    assert_eq!(sent.log.cutoff, Some("stale"));
    let sent = send(&gw, &svc, &token());
    assert_revoked(&sent, "subject_cut_off");
    // 10 minutes after the last listing, nothing to serve from.
    svc.clock.advance(600_000 - 61_000);
    let sent = send(&gw, &svc, &token_of("cust-4"));
    assert_eq!(sent.resp.status, 503, "{}", problem(&sent.resp));
    assert_eq!(sent.log.outcome, "revocation_list_unavailable");
    assert_eq!(sent.log.cutoff, Some("kv_failed"));
    // KV back: listed again.
    svc.store.list_failing.set(false);
    assert_eq!(send(&gw, &svc, &token_of("cust-4")).resp.status, 200);
    assert_revoked(&send(&gw, &svc, &token()), "subject_cut_off");
}

#[test]
fn a_failed_list_with_nothing_held_is_503_even_when_reads_work() {
    let (gw, svc) = plain();
    svc.store.list_failing.set(true);
    let sent = send(&gw, &svc, &token_of("cust-2"));
    assert_eq!(sent.resp.status, 503, "{}", problem(&sent.resp));
    assert_eq!(sent.log.outcome, "revocation_list_unavailable");
    assert_eq!(header(&sent.resp, "retry-after"), "1");
    assert_eq!(origin_calls(&svc), 0);
}

#[test]
fn beyond_the_listings_cap_subjects_are_read_one_by_one() {
    let (gw, svc) = plain();
    cut_off(&svc, NOW);
    // 10 pages of 1,000 keys that sort before the subject's: its own is not listed.
    let first = cutoff_key(ISSUER, SUB);
    {
        let mut entries = svc.store.entries.borrow_mut();
        for i in 0..10_000 {
            let key = format!("revoked:v1:-{i:05}");
            assert!(key < first);
            entries.insert(key, (NOW.to_string(), 0));
        }
    }
    let sent = send(&gw, &svc, &token());
    assert_revoked(&sent, "subject_cut_off");
    assert_eq!(sent.log.cutoff, Some("kv"));
    assert_eq!(svc.store.lists.get(), 10, "at most 10 pages");
    // Another subject: read too (and remembered for 60 s).
    assert_eq!(send(&gw, &svc, &token_of("cust-2")).resp.status, 200);
    assert_eq!(cutoff_gets(&svc), 2);
    assert_eq!(
        send(&gw, &svc, &token_of("cust-2")).log.cutoff,
        Some("memory")
    );
    assert_eq!(cutoff_gets(&svc), 2);
}

#[test]
fn concurrent_requests_share_one_list() {
    let (gw, svc) = plain();
    svc.store.list_yields.set(true);
    let tokens: Vec<String> = (0..8).map(|i| token_of(&format!("cust-c{i}"))).collect();
    let served = futures::executor::block_on(futures::future::join_all(tokens.iter().map(|t| {
        let auth = format!("Bearer {t}");
        gw.serve(
            &svc,
            request(
                Method::GET,
                "/orders",
                &[("authorization", auth.as_str())],
                Body::Empty,
            ),
        )
    })));
    for s in &served {
        assert_eq!(s.response.status, 200);
        assert_eq!(s.log.cutoff, Some("list"));
    }
    assert_eq!(svc.store.lists.get(), 1, "one list at a time per isolate");
    assert_eq!(cutoff_gets(&svc), 0);
}
