use sha2::{Digest, Sha256};

use super::*;

fn event() -> Event {
    Event {
        at: Timestamp::from_microsecond(1_700_000_000_000_000).unwrap(),
        transfer_id: Uuid::nil(),
        kind: EventKind::Decision,
        status: TransferStatus::Accepted,
        decision: Some(DecisionKind::Permit),
        agreement_id: "a".into(),
        agreement_version: Some("1".into()),
        agreement_hash: None,
        message_type: Some("gp_update".into()),
        schema_hash: None,
        sender_system: "s".into(),
        user_sub: None,
        user_role: None,
        recipient: None,
        legal_bases: vec!["x".into()],
        reason_code: None,
        received_sha256: None,
        sent_sha256: None,
        pointers_removed: vec![],
        detail: None,
        data_classes: vec![],
        treatments: vec![],
        key_ref: None,
        consent_status: None,
        consent_reason: None,
        consent_evidence_ref: None,
        subject_informed: None,
        subject_index: vec![],
        review_due: None,
        subject_informed_due: None,
        destination: None,
        gateway: None,
        user_issuer: None,
        consent_given_by: None,
        capacity_ref: None,
        subject_informed_reason: None,
        national_data_opt_out: None,
        requester_kind: None,
        requester_ref: None,
    }
}

#[test]
fn absent_and_empty_strings_hash_differently() {
    let a = event();
    let mut b = event();
    b.agreement_hash = Some(String::new());
    assert_ne!(
        Entry::compute_hash(1, &GENESIS, &a),
        Entry::compute_hash(1, &GENESIS, &b)
    );
}

#[test]
fn field_boundaries_are_unambiguous() {
    let mut a = event();
    a.legal_bases = vec!["ab".into(), "c".into()];
    let mut b = event();
    b.legal_bases = vec!["a".into(), "bc".into()];
    assert_ne!(
        Entry::compute_hash(1, &GENESIS, &a),
        Entry::compute_hash(1, &GENESIS, &b)
    );
}

#[test]
fn hash_covers_sequence_and_link() {
    let e = event();
    let h = Entry::compute_hash(1, &GENESIS, &e);
    assert_ne!(h, Entry::compute_hash(2, &GENESIS, &e));
    assert_ne!(h, Entry::compute_hash(1, &[1; 32], &e));
}

fn full_event() -> Event {
    let mut e = event();
    e.agreement_hash = Some(String::new());
    e.user_sub = Some("dsl-1".into());
    e.pointers_removed = vec!["/payload/a".into(), String::new()];
    e.detail = Some("ünïcödé".into());
    e.subject_index = vec!["s".into()];
    e.subject_informed_due = Some("2026-07-01".into());
    e
}

#[test]
fn canonical_bytes_decode_to_the_entry_they_encode() {
    let e = full_event();
    let bytes = Entry::canonical_bytes(7, &[9; 32], &e);
    let hash = Entry::compute_hash(7, &[9; 32], &e);
    let back = Entry::decode(&bytes, hash).unwrap();
    assert_eq!((back.seq, back.prev_hash, back.hash), (7, [9; 32], hash));
    assert_eq!(back.event, e);
}

#[test]
fn malformed_bytes_are_refused_without_panicking() {
    let bytes = Entry::canonical_bytes(1, &GENESIS, &full_event());
    // Every truncation, and one trailing byte too many.
    for n in 0..bytes.len() {
        assert!(Entry::decode(&bytes[..n], GENESIS).is_none(), "truncated at {n}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(Entry::decode(&longer, GENESIS).is_none());
    // A list count far beyond the bytes present does not allocate for it.
    let mut huge = bytes[..bytes.len() - 8].to_vec();
    huge.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFE]);
    assert!(Entry::decode(&huge, GENESIS).is_none());
}

#[test]
fn the_chain_names_what_is_wrong_with_the_next_entry() {
    let e = full_event();
    let entry = |seq: i64, prev: &Hash| {
        let bytes = Entry::canonical_bytes(seq, prev, &e);
        RawEntry {
            seq,
            hash: Sha256::digest(&bytes).into(),
            bytes,
            transfer_id: e.transfer_id.to_string(),
            kind: e.kind.as_str().into(),
            agreement_id: e.agreement_id.clone(),
            at_us: micros(e.at),
        }
    };
    let mut chain = Chain::default();
    let first = entry(1, &GENESIS);
    chain.extend(&first).unwrap();
    let second = entry(2, &first.hash);
    let mut moved = second.clone();
    moved.seq = 3;
    assert!(chain.extend(&moved).unwrap_err().contains("missing"));
    let mut relinked = entry(2, &[1; 32]);
    relinked.seq = 2;
    assert!(chain.extend(&relinked).unwrap_err().contains("previous-hash"));
    let mut edited = second.clone();
    edited.bytes[80] ^= 1;
    assert!(chain.extend(&edited).unwrap_err().contains("edited"));
    let mut reindexed = second.clone();
    reindexed.agreement_id = "another".into();
    assert!(chain.extend(&reindexed).unwrap_err().contains("index columns"));
    chain.extend(&second).unwrap();
    assert_eq!((chain.seq, chain.hash, chain.leaves.len()), (2, second.hash, 2));
    assert_eq!(chain.leaves[1], merkle::leaf_hash(&second.bytes));
}

/// A transfer's history as the ledger would hold it (hashes are not what this checks).
fn history(events: Vec<Event>) -> Vec<Entry> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, event)| Entry {
            seq: i as i64 + 1,
            prev_hash: GENESIS,
            hash: GENESIS,
            event,
        })
        .collect()
}

fn step(kind: EventKind, status: TransferStatus, decision: Option<DecisionKind>, who: &str, sent: &str) -> Event {
    let mut e = event();
    (e.kind, e.status, e.decision) = (kind, status, decision);
    e.user_sub = Some(who.into());
    e.sent_sha256 = Some(sent.into());
    e
}

#[test]
fn what_was_delivered_must_be_what_was_decided() {
    let decided = |d| step(EventKind::Decision, TransferStatus::Held, Some(d), "alice", "aa");
    let approval = |who: &str| {
        step(
            EventKind::Approval,
            TransferStatus::Accepted,
            Some(DecisionKind::Permit),
            who,
            "aa",
        )
    };
    let delivered = |sent: &str| step(EventKind::Delivery, TransferStatus::Delivered, None, "", sent);

    let sent = history(vec![decided(DecisionKind::Permit), delivered("aa")]);
    assert_eq!(delivered_as_decided(&sent), None);
    let approved = history(vec![decided(DecisionKind::Hold), approval("dee"), delivered("aa")]);
    assert_eq!(delivered_as_decided(&approved), None);

    let other_bytes = history(vec![decided(DecisionKind::Permit), delivered("bb")]);
    assert!(delivered_as_decided(&other_bytes).unwrap().contains("digest"));
    let unapproved = history(vec![decided(DecisionKind::Hold), delivered("aa")]);
    assert!(delivered_as_decided(&unapproved).unwrap().contains("second person"));
    let self_approved = history(vec![decided(DecisionKind::Hold), approval("alice"), delivered("aa")]);
    assert!(delivered_as_decided(&self_approved).unwrap().contains("second person"));
    let approved_after = history(vec![decided(DecisionKind::Hold), delivered("aa"), approval("dee")]);
    assert!(
        delivered_as_decided(&approved_after).is_some(),
        "an approval after delivery does not count"
    );

    // A one-off disclosure names its destination at the decision: delivered there, or it is not
    // what was decided.
    let to = |mut e: Event, d: &str| {
        e.destination = Some(d.into());
        e
    };
    let chosen = decided(DecisionKind::Hold);
    let there = history(vec![
        to(chosen.clone(), "disclosures-drop"),
        approval("dee"),
        to(delivered("aa"), "disclosures-drop"),
    ]);
    assert_eq!(delivered_as_decided(&there), None);
    let elsewhere = history(vec![
        to(chosen, "disclosures-drop"),
        approval("dee"),
        to(delivered("aa"), "mash-drop"),
    ]);
    assert!(
        delivered_as_decided(&elsewhere)
            .unwrap()
            .contains("another destination")
    );
}

#[test]
fn the_chain_keeps_the_heads_at_the_watched_size() {
    let mut chain = Chain {
        watched: Some((3, None)),
        ..Chain::default()
    };
    let mut at_three = None;
    for seq in 1..=5i64 {
        let hash = [seq as u8; 32];
        chain.append(seq, hash, hash, if seq == 2 { "b" } else { "a" }, seq);
        if seq == 3 {
            at_three = Some(chain.heads.lines());
        }
    }
    assert_eq!(chain.heads_at(3), at_three, "kept as it passed");
    assert_eq!(chain.heads_at(5), Some(chain.heads.lines()), "its own");
    assert_eq!(chain.heads_at(4), None, "neither: read the entries again");
}
