//! The ledger's contract, run against both backends: every test here runs once on SQLite and
//! once on PostgreSQL (see `backends.rs`). What a gateway relies on — gap-free durable appends
//! under concurrency, one chain across gateways sharing a database, writes that apply once,
//! the read side, proofs, and tampering caught by `verify` — must hold on both.

use std::sync::Arc;

use isa_gateway::ledger::checkpoint::Checkpoint;
use isa_gateway::ledger::signing::CheckpointKey;
use isa_gateway::ledger::{
    Claim, DecisionKind, Enqueue, Event, EventKind, FollowUp, IdempotencyKey, Ledger, LedgerError, OutboxItem, Outcome,
    SqlLedger, TransferQuery, TransferStatus, merkle, verify, verify_chain, verify_transfers,
};
use jiff::Timestamp;
use uuid::Uuid;

use crate::backends::{Db, Kind};

/// Runs each named case on both backends.
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                super::$case(crate::backends::Kind::Sqlite).await;
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                super::$case(crate::backends::Kind::Postgres).await;
            })*
        }
    };
}

on_both_backends!(
    concurrent_appends_are_gap_free_and_survive_reopening,
    two_gateways_sharing_a_database_keep_one_chain,
    an_idempotency_key_binds_once,
    a_write_that_cannot_be_recorded_fails_alone,
    the_outbox_delivers_once,
    an_edited_outbox_row_is_left_out_of_claims,
    two_gateways_claim_disjoint_batches,
    a_held_transfer_is_released_or_withdrawn_once,
    a_review_is_recorded_once,
    listings_counts_and_disclosures,
    entries_read_back_as_written,
    proofs_verify_against_a_signed_checkpoint,
    ordinary_sql_cannot_change_history,
    tampering_is_caught,
    edited_listings_and_subject_index_are_caught,
    the_held_quota_holds_under_concurrency,
    activity_and_a_persons_own_transfers,
    the_first_key_fingerprint_recorded_is_the_one_every_gateway_reads,
);

fn t0() -> Timestamp {
    "2026-06-01T12:00:00Z".parse().unwrap()
}

fn decision(agreement: &str, status: TransferStatus) -> Event {
    let mut e = Event::new(
        t0(),
        Uuid::now_v7(),
        EventKind::Decision,
        status,
        agreement,
        "tt-case-system",
    );
    let permitted = status != TransferStatus::Refused;
    e.decision = Some(if status == TransferStatus::Held {
        DecisionKind::Hold
    } else if permitted {
        DecisionKind::Permit
    } else {
        DecisionKind::Deny
    });
    e.message_type = Some("gp_update".into());
    e.recipient = Some("Y99001".into());
    e.legal_bases = vec!["uk-gdpr/6.1.e".into(), "uk-gdpr/9.2.h".into()];
    if !permitted {
        e.reason_code = Some("schema_violation".into());
    }
    e
}

/// A later event about `d`: each one a second after the one before, so that a projection that
/// mixed up its times would show.
fn follow(d: &Event, kind: EventKind, status: TransferStatus) -> Event {
    static TICK: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1);
    let at = t0() + jiff::SignedDuration::from_secs(TICK.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    Event::new(at, d.transfer_id, kind, status, &d.agreement_id, &d.sender_system)
}

/// The listings and subject index still match the entries.
async fn listings_agree(ledger: &dyn Ledger) {
    assert_eq!(verify_transfers(ledger).await.unwrap(), None);
}

fn enqueue(held: bool) -> Enqueue {
    Enqueue {
        destination: "y99001-gp-drop".into(),
        body: b"{\"document\":1}".to_vec(),
        now: t0(),
        held,
        held_quota: None,
    }
}

async fn concurrent_appends_are_gap_free_and_survive_reopening(kind: Kind) {
    let db = Db::new(kind).await;
    let ledger = Arc::new(db.open().await);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for _ in 0..25 {
                    seqs.push(ledger.append(decision("a", TransferStatus::Refused)).await.unwrap().seq);
                }
                seqs
            })
        })
        .collect();
    let mut seqs: Vec<i64> = Vec::new();
    for t in tasks {
        seqs.extend(t.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=400).collect::<Vec<_>>(),
        "every append has its own place, none skipped"
    );
    drop(ledger);

    // What was acknowledged is there after reopening, and the chain holds.
    let reopened = db.open().await;
    let report = verify_chain(&reopened).await.unwrap();
    assert_eq!((report.entries, report.first_break), (400, None));
    assert_eq!(reopened.tree_size().await, 400);
    let next = reopened.append(decision("a", TransferStatus::Refused)).await.unwrap();
    assert_eq!(next.seq, 401);
}

async fn two_gateways_sharing_a_database_keep_one_chain(kind: Kind) {
    let db = Db::new(kind).await;
    let (a, b) = (Arc::new(db.open().await), Arc::new(db.open().await));
    let mut tasks = Vec::new();
    for ledger in [a.clone(), b.clone()] {
        for _ in 0..4 {
            let ledger = ledger.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..30 {
                    ledger.append(decision("a", TransferStatus::Refused)).await.unwrap();
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let report = verify_chain(a.as_ref()).await.unwrap();
    assert_eq!((report.entries, report.first_break), (240, None));
    // Each gateway's tree takes in the other's entries: the same root from both.
    assert_eq!(a.tree_size().await, 240);
    assert_eq!(b.tree_size().await, 240);
    assert_eq!(a.root(240).await.unwrap(), b.root(240).await.unwrap());
    let key = CheckpointKey::from_seed(&[7; 32]);
    let (size, root, lines) = b.commitment().await.unwrap();
    assert_eq!((size, root), (240, a.root(240).await.unwrap()));
    let cp = Checkpoint::sign(240, root, lines, t0(), &key);
    a.store_checkpoint(&cp).await.unwrap();
    let full = verify(a.as_ref(), &key.public(), &mut |_| {}).await.unwrap();
    assert_eq!((full.entries, full.checkpoints, full.first_break), (240, 1, None));
}

async fn an_idempotency_key_binds_once(kind: Kind) {
    let db = Db::new(kind).await;
    let ledger = Arc::new(db.open().await);
    let key = || IdempotencyKey {
        system: "tt-case-system".into(),
        key: "referral-42".into(),
        request_sha256: "ab".repeat(32),
    };
    let attempts: Vec<_> = (0..8)
        .map(|_| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                ledger
                    .accept(decision("a", TransferStatus::Accepted), enqueue(false), Some(key()))
                    .await
            })
        })
        .collect();
    let mut bound = Vec::new();
    for a in attempts {
        match a.await.unwrap() {
            Ok(receipt) => bound.push(receipt),
            Err(LedgerError::IdempotencyKeyTaken) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(bound.len(), 1, "exactly one transfer holds the key");
    let original = ledger
        .idempotent_original("tt-case-system", "referral-42")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(original.ledger_seq, bound[0].seq);
    // The refused ones recorded nothing and queued nothing.
    assert_eq!(ledger.tree_size().await, 1);
    assert_eq!(ledger.due(t0(), 100).await.unwrap().len(), 1);
}

async fn a_write_that_cannot_be_recorded_fails_alone(kind: Kind) {
    let db = Db::new(kind).await;
    let ledger = Arc::new(db.open().await);
    let first = decision("a", TransferStatus::Refused);
    ledger.append(first.clone()).await.unwrap();
    // A second decision for the same transfer breaks the transfers table's key; sent among
    // many good writes, it must fail without taking them with it.
    let mut tasks = Vec::new();
    for i in 0..60 {
        let ledger = ledger.clone();
        let event = if i == 30 {
            first.clone()
        } else {
            decision("a", TransferStatus::Refused)
        };
        tasks.push(tokio::spawn(async move { ledger.append(event).await }));
    }
    let mut failed = 0;
    for t in tasks {
        failed += usize::from(t.await.unwrap().is_err());
    }
    assert_eq!(failed, 1);
    let report = verify_chain(ledger.as_ref()).await.unwrap();
    assert_eq!((report.entries, report.first_break), (60, None));
}

/// An insider edits an outbox row so that it cannot be read back. Claims leave it out (it stays
/// in the outbox, leased, reported) and take the others; writes made beside a claim are
/// recorded.
async fn an_edited_outbox_row_is_left_out_of_claims(kind: Kind) {
    let db = Db::new(kind).await;
    let ledger = db.open().await;
    let edited = decision("a", TransferStatus::Accepted);
    ledger.accept(edited.clone(), enqueue(false), None).await.unwrap();
    db.tamper(&format!(
        "UPDATE outbox SET transfer_id = UPPER(transfer_id) WHERE transfer_id = '{}'",
        edited.transfer_id
    ))
    .await;
    let claim = Claim {
        destination: "y99001-gp-drop",
        limit: 10,
        now: t0(),
        lease: std::time::Duration::from_secs(30),
        gateway_id: "gw-a",
    };
    let other = decision("a", TransferStatus::Accepted);
    let (first, written) = tokio::join!(
        ledger.claim_due(&claim),
        ledger.accept(other.clone(), enqueue(false), None)
    );
    written.expect("a write beside the claim is recorded");
    let mut claimed: Vec<Uuid> = first.unwrap().iter().map(|i| i.transfer_id).collect();
    claimed.extend(ledger.claim_due(&claim).await.unwrap().iter().map(|i| i.transfer_id));
    assert_eq!(
        claimed,
        [other.transfer_id],
        "the readable entry is claimed once, the edited one never"
    );
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
        .fetch_one(&mut db.raw().await)
        .await
        .unwrap();
    assert_eq!(rows, 2, "both entries are still in the outbox (neither was delivered)");
}

async fn the_outbox_delivers_once(kind: Kind) {
    let db = Db::new(kind).await;
    let ledger = db.open().await;
    let d = decision("a", TransferStatus::Accepted);
    ledger.accept(d.clone(), enqueue(false), None).await.unwrap();
    let due = ledger.due(t0(), 10).await.unwrap();
    assert_eq!((due.len(), due[0].attempts), (1, 0));
    assert_eq!(due[0].body, b"{\"document\":1}");
    let lease = std::time::Duration::from_secs(30);
    let claim = |gateway_id, now| Claim {
        destination: "y99001-gp-drop",
        limit: 10,
        now,
        lease,
        gateway_id,
    };
    let claimed = |items: Vec<OutboxItem>| items.iter().map(|i| (i.transfer_id, i.attempts)).collect::<Vec<_>>();
    let other = Claim {
        destination: "elsewhere",
        ..claim("gw-a", t0())
    };
    assert!(
        ledger.claim_due(&other).await.unwrap().is_empty(),
        "only its destination's"
    );
    // Entries for a destination no gateway has any more are found, and only those.
    assert!(
        ledger
            .unrouted(&["y99001-gp-drop", "elsewhere"], 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(ledger.unrouted(&["elsewhere"], 10).await.unwrap().len(), 1);
    assert_eq!(ledger.unrouted(&[], 10).await.unwrap().len(), 1);
    assert_eq!(
        claimed(ledger.claim_due(&claim("gw-a", t0())).await.unwrap()),
        [(d.transfer_id, 0)]
    );
    assert!(
        ledger.claim_due(&claim("gw-a", t0())).await.unwrap().is_empty(),
        "claimed once"
    );
    // A claim is a lease: another gateway on the same ledger neither finds the entry due nor
    // claims its next attempt while the first may still be sending it.
    assert!(ledger.due(t0(), 10).await.unwrap().is_empty(), "not due while leased");
    assert!(
        ledger.claim_due(&claim("gw-b", t0())).await.unwrap().is_empty(),
        "leased to gw-a"
    );
    let lease_end = t0() + jiff::SignedDuration::from_secs(30);
    assert!(
        ledger
            .claim_due(&claim("gw-b", lease_end - jiff::SignedDuration::from_secs(1)))
            .await
            .unwrap()
            .is_empty()
    );
    // A gateway that died mid-send leaves the lease to expire; then another may try again.
    assert_eq!(ledger.due(lease_end, 10).await.unwrap()[0].attempts, 1);
    assert_eq!(
        claimed(ledger.claim_due(&claim("gw-b", lease_end)).await.unwrap()),
        [(d.transfer_id, 1)]
    );
    // A restarted gateway ends its own leases, and only its own.
    assert_eq!(ledger.release_leases("gw-a", lease_end).await.unwrap(), 0);
    assert_eq!(ledger.release_leases("gw-b", lease_end).await.unwrap(), 1);
    assert_eq!(ledger.due(lease_end, 10).await.unwrap()[0].attempts, 2);
    // A late failure from the gateway whose lease ran out is recorded but undoes no newer claim.
    let mut stale = follow(&d, EventKind::Delivery, TransferStatus::Retrying);
    stale.detail = Some("timeout".into());
    let far = t0() + jiff::SignedDuration::from_secs(3600);
    ledger.attempt_failed(stale, 1, far).await.unwrap();
    assert_eq!(
        ledger.due(lease_end, 10).await.unwrap()[0].attempts,
        2,
        "still due, still 2"
    );
    let later = t0() + jiff::SignedDuration::from_secs(60);
    let mut failed = follow(&d, EventKind::Delivery, TransferStatus::Retrying);
    failed.detail = Some("connect".into());
    ledger.attempt_failed(failed, 2, later).await.unwrap();
    assert!(
        ledger.due(t0(), 10).await.unwrap().is_empty(),
        "not due before its retry time"
    );
    assert_eq!(ledger.due(later, 10).await.unwrap()[0].attempts, 2);
    assert_eq!(
        ledger.transfer(d.transfer_id).await.unwrap().unwrap().status,
        TransferStatus::Retrying
    );
    let remote = Some(("mesh".to_owned(), "MSG-1".to_owned()));
    let done = follow(&d, EventKind::Delivery, TransferStatus::Delivered);
    assert!(ledger.delivered(done.clone(), remote.clone()).await.unwrap().is_some());
    assert!(
        ledger.delivered(done, remote).await.unwrap().is_none(),
        "delivered is recorded once"
    );
    assert_eq!(
        ledger.transfer_by_remote_ref("mesh", "MSG-1").await.unwrap(),
        Some(d.transfer_id)
    );
    let record = ledger.transfer(d.transfer_id).await.unwrap().unwrap();
    assert_eq!(record.status, TransferStatus::Delivered);
    let history = ledger.history(d.transfer_id).await.unwrap();
    let kinds: Vec<_> = history.iter().map(|h| h.status).collect();
    assert_eq!(
        kinds,
        [
            TransferStatus::Accepted,
            // The late failure, then this attempt's.
            TransferStatus::Retrying,
            TransferStatus::Retrying,
            TransferStatus::Delivered
        ]
    );
    assert!(ledger.outbox_depth().await.unwrap().is_empty());

    // A dead letter leaves the queue but keeps its place in the ledger.
    let d2 = decision("a", TransferStatus::Accepted);
    ledger.accept(d2.clone(), enqueue(false), None).await.unwrap();
    assert_eq!(ledger.outbox_depth().await.unwrap(), [("y99001-gp-drop".to_owned(), 1)]);
    ledger
        .dead_letter(follow(&d2, EventKind::Delivery, TransferStatus::Undeliverable))
        .await
        .unwrap();
    assert!(ledger.due(later, 10).await.unwrap().is_empty());
    assert_eq!(
        ledger.transfer(d2.transfer_id).await.unwrap().unwrap().status,
        TransferStatus::Undeliverable
    );
    // An operator requeues it: back in the queue with fresh attempts, once.
    let mut requeue = follow(&d2, EventKind::Delivery, TransferStatus::Accepted);
    requeue.at = later;
    requeue.reason_code = Some("requeued".into());
    assert!(ledger.requeue(requeue.clone()).await.unwrap().is_some());
    assert!(ledger.requeue(requeue).await.unwrap().is_none(), "no longer dead");
    let due = ledger.due(later, 10).await.unwrap();
    assert_eq!((due.len(), due[0].attempts, due[0].created_at), (1, 1, later));
    // (It counts as attempted once, so a MESH destination asks tracking before sending again.)
    assert_eq!(
        ledger.transfer(d2.transfer_id).await.unwrap().unwrap().status,
        TransferStatus::Accepted
    );
    listings_agree(&ledger).await;
}

async fn a_held_transfer_is_released_or_withdrawn_once(kind: Kind) {
    let db = Db::new(kind).await;
    let ledger = Arc::new(db.open().await);
    let held = decision("mash", TransferStatus::Held);
    ledger.accept(held.clone(), enqueue(true), None).await.unwrap();
    assert!(ledger.due(t0(), 10).await.unwrap().is_empty(), "held is not due");
    let listed = ledger
        .follow_ups(FollowUp::Held, Some("tt-case-system"), 10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert!(
        ledger
            .follow_ups(FollowUp::Held, Some("other"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Two directors approve at once: one approval is recorded.
    let approve = follow(&held, EventKind::Approval, TransferStatus::Accepted);
    let (x, y) = tokio::join!(ledger.release(approve.clone()), ledger.release(approve.clone()));
    assert_eq!(usize::from(x.unwrap().is_some()) + usize::from(y.unwrap().is_some()), 1);
    let tomorrow = t0() + jiff::SignedDuration::from_hours(24);
    assert_eq!(ledger.due(tomorrow, 10).await.unwrap().len(), 1);
    let refuse = follow(&held, EventKind::Approval, TransferStatus::Refused);
    assert!(
        ledger.withdraw(refuse.clone()).await.unwrap().is_none(),
        "released: no longer held"
    );

    let other = decision("mash", TransferStatus::Held);
    ledger.accept(other.clone(), enqueue(true), None).await.unwrap();
    let refuse = follow(&other, EventKind::Approval, TransferStatus::Refused);
    assert!(ledger.withdraw(refuse).await.unwrap().is_some());
    assert_eq!(
        ledger.transfer(other.transfer_id).await.unwrap().unwrap().status,
        TransferStatus::Refused
    );
    assert!(
        ledger
            .release(follow(&other, EventKind::Approval, TransferStatus::Accepted))
            .await
            .unwrap()
            .is_none()
    );
    listings_agree(ledger.as_ref()).await;
}

async fn a_review_is_recorded_once(kind: Kind) {
    let db = Db::new(kind).await;
    let ledger = Arc::new(db.open().await);
    let mut urgent = decision("mash", TransferStatus::Accepted);
    urgent.review_due = Some("2026-06-02T12:00:00Z".into());
    urgent.subject_informed_due = Some("2026-06-10".into());
    ledger.accept(urgent.clone(), enqueue(false), None).await.unwrap();
    let overdue_at = FollowUp::ReviewsOverdue("2026-06-03T00:00:00Z".parse().unwrap());
    assert!(
        ledger
            .follow_ups(FollowUp::ReviewsOverdue(t0()), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(ledger.follow_ups(overdue_at, None, 10).await.unwrap().len(), 1);
    assert_eq!(
        ledger
            .follow_ups(FollowUp::ReviewsOutstanding, None, 10)
            .await
            .unwrap()
            .len(),
        1,
        "outstanding before it is overdue"
    );
    let review = follow(&urgent, EventKind::Review, TransferStatus::Accepted);
    let (x, y) = tokio::join!(ledger.follow_up(review.clone()), ledger.follow_up(review.clone()));
    assert_eq!(usize::from(x.unwrap().is_some()) + usize::from(y.unwrap().is_some()), 1);
    assert!(ledger.follow_ups(overdue_at, None, 10).await.unwrap().is_empty());
    assert!(
        ledger
            .follow_ups(FollowUp::ReviewsOutstanding, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let record = ledger.transfer(urgent.transfer_id).await.unwrap().unwrap();
    assert!(record.reviewed_at.is_some());
    assert_eq!(
        ledger
            .follow_ups(FollowUp::NotificationsDue, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let told = follow(&urgent, EventKind::Notification, TransferStatus::Accepted);
    assert!(ledger.follow_up(told.clone()).await.unwrap().is_some());
    assert!(ledger.follow_up(told).await.unwrap().is_none());
    assert!(
        ledger
            .follow_ups(FollowUp::NotificationsDue, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    listings_agree(ledger.as_ref()).await;
}

async fn listings_counts_and_disclosures(kind: Kind) {
    let db = Db::new(kind).await;
    let ledger = db.open().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let status = if i % 3 == 2 {
            TransferStatus::Refused
        } else {
            TransferStatus::Accepted
        };
        let mut e = decision("gp", status);
        e.at = t0() + jiff::SignedDuration::from_secs(i * 60);
        e.subject_index = vec![if i < 3 { "subject-a" } else { "subject-b" }.into()];
        e.user_sub = Some(format!("user-{}", i % 2));
        if status == TransferStatus::Refused {
            ledger.append(e.clone()).await.unwrap();
        } else {
            ledger.accept(e.clone(), enqueue(false), None).await.unwrap();
        }
        ids.push(e.transfer_id);
    }
    ledger.append(decision("other", TransferStatus::Refused)).await.unwrap();

    // Cursor pages, in decision order, one agreement only.
    let mut query = TransferQuery {
        agreement_id: Some("gp".into()),
        status: None,
        since: None,
        until: None,
        limit: 3,
        after_seq: None,
        ..Default::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = ledger.list_transfers(&query).await.unwrap();
        if page.is_empty() {
            break;
        }
        query.after_seq = page.last().map(|r| r.ledger_seq);
        seen.extend(page.iter().map(|r| r.transfer_id));
    }
    assert_eq!(seen, ids);
    query.after_seq = None;
    query.limit = 100;
    query.status = Some(TransferStatus::Refused);
    assert_eq!(ledger.list_transfers(&query).await.unwrap().len(), 2);
    query.status = None;
    query.since = Some(t0() + jiff::SignedDuration::from_secs(120));
    query.until = Some(t0() + jiff::SignedDuration::from_secs(300));
    assert_eq!(ledger.list_transfers(&query).await.unwrap().len(), 3);
    query.since = None;
    query.until = None;

    // Filters an auditor uses: the legal basis that applied (an exact code in the listing's list,
    // not a prefix or a LIKE pattern), the message type, the sending system, the user.
    let filtered = |f: &dyn Fn(&mut TransferQuery)| {
        let mut q = query.clone();
        f(&mut q);
        let ledger = &ledger;
        async move { ledger.list_transfers(&q).await.unwrap().len() }
    };
    assert_eq!(
        filtered(&|q| q.legal_basis = Some("uk-gdpr/9.2.h".into())).await,
        5,
        "permitted only"
    );
    assert_eq!(
        filtered(&|q| q.legal_basis = Some("uk-gdpr/9.2".into())).await,
        0,
        "not a prefix"
    );
    assert_eq!(
        filtered(&|q| q.legal_basis = Some("uk-gdpr/9.2._".into())).await,
        0,
        "_ is not a wildcard"
    );
    assert_eq!(
        filtered(&|q| q.legal_basis = Some("%".into())).await,
        0,
        "% is not a wildcard"
    );
    assert_eq!(filtered(&|q| q.message_type = Some("gp_update".into())).await, 7);
    assert_eq!(filtered(&|q| q.message_type = Some("mash_referral".into())).await, 0);
    assert_eq!(filtered(&|q| q.sender_system = Some("tt-case-system".into())).await, 7);
    assert_eq!(filtered(&|q| q.sender_system = Some("other".into())).await, 0);
    assert_eq!(filtered(&|q| q.user_sub = Some("user-0".into())).await, 4);
    assert_eq!(filtered(&|q| q.user_sub = Some("nobody".into())).await, 0);

    let counts = ledger.counts("gp", None, None).await.unwrap();
    assert_eq!(counts.by_status.get("accepted"), Some(&5));
    assert_eq!(counts.by_status.get("refused"), Some(&2));
    assert_eq!(
        counts.by_legal_basis.get("uk-gdpr/9.2.h"),
        Some(&5),
        "permitted transfers only"
    );
    let early = ledger
        .counts("gp", None, Some(t0() + jiff::SignedDuration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(early.by_status.values().sum::<i64>(), 1);

    // Subject access: the person's permitted transfers, with their decision entries.
    let found = ledger.disclosures(&["subject-a".to_owned()]).await.unwrap();
    assert_eq!(found.len(), 2, "the refused one did not disclose anything");
    for (record, entry) in &found {
        assert_eq!(entry.seq, record.ledger_seq);
        assert_eq!(entry.event.transfer_id, record.transfer_id);
        assert_eq!(entry.event.subject_index, ["subject-a"]);
    }
    assert!(ledger.disclosures(&["nobody".to_owned()]).await.unwrap().is_empty());
    let exported = ledger.entries_for("gp", None, None).await.unwrap();
    assert_eq!(exported.len(), 7);
    assert!(exported.iter().all(|e| e.event.agreement_id == "gp"));
    listings_agree(&ledger).await;
}

async fn entries_read_back_as_written(kind: Kind) {
    let db = Db::new(kind).await;
    let ledger = db.open().await;
    let mut e = decision("lado", TransferStatus::Accepted);
    e.agreement_version = Some("3".into());
    e.agreement_hash = Some(String::new());
    e.user_sub = Some("dsl-1".into());
    e.user_role = Some("safeguarding_lead".into());
    e.pointers_removed = vec!["/payload/notes".into(), "/payload/x~1y".into()];
    e.treatments = vec!["token /payload/nhs_number".into()];
    e.data_classes = vec!["identifying".into(), "special_category".into()];
    e.detail = Some("ünïcödé ✓".into());
    e.subject_index = vec!["s1".into(), "s2".into()];
    let receipt = ledger.accept(e.clone(), enqueue(false), None).await.unwrap();
    let entries = ledger.entries_after(0, 10).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].event, e);
    assert_eq!((entries[0].seq, entries[0].hash), (receipt.seq, receipt.hash));
}

async fn proofs_verify_against_a_signed_checkpoint(kind: Kind) {
    let db = Db::new(kind).await;
    let ledger = db.open().await;
    for _ in 0..13 {
        ledger.append(decision("a", TransferStatus::Refused)).await.unwrap();
    }
    let key = CheckpointKey::from_seed(&[9; 32]);
    let root7 = ledger.root(7).await.unwrap();
    let root13 = ledger.root(13).await.unwrap();
    for size in [7, 13] {
        let lines = lines_at(&ledger, size).await;
        let cp = Checkpoint::sign(size, ledger.root(size).await.unwrap(), lines, t0(), &key);
        ledger.store_checkpoint(&cp).await.unwrap();
    }
    let entries = ledger.entries_after(0, 100).await.unwrap();
    for e in &entries {
        let leaf = isa_gateway::ledger::Entry::leaf(e.seq, &e.prev_hash, &e.event);
        let path = ledger.inclusion_proof(e.seq, 13).await.unwrap();
        merkle::verify_inclusion(&leaf, (e.seq - 1) as u64, 13, &path, &root13).unwrap();
    }
    let path = ledger.consistency_proof(7, 13).await.unwrap();
    merkle::verify_consistency(7, 13, &root7, &root13, &path).unwrap();
    assert!(matches!(ledger.root(14).await, Err(LedgerError::BeyondTree(14))));
    let report = verify(&ledger, &key.public(), &mut |_| {}).await.unwrap();
    assert_eq!((report.entries, report.checkpoints, report.first_break), (13, 2, None));
    // Checkpoints at many sizes, the empty tree's too: each is checked against the root and the
    // heads at its own size, all in the one pass over the entries.
    for size in [0, 1, 2, 3, 4, 5, 6, 8, 9, 12] {
        let lines = lines_at(&ledger, size).await;
        let cp = Checkpoint::sign(size, ledger.root(size).await.unwrap(), lines, t0(), &key);
        ledger.store_checkpoint(&cp).await.unwrap();
    }
    let report = verify(&ledger, &key.public(), &mut |_| {}).await.unwrap();
    assert_eq!((report.entries, report.checkpoints, report.first_break), (13, 12, None));
    // The right key and heads, but the root of the next size up: named at its size.
    let moved = Checkpoint::sign(
        11,
        ledger.root(12).await.unwrap(),
        lines_at(&ledger, 11).await,
        t0(),
        &key,
    );
    ledger.store_checkpoint(&moved).await.unwrap();
    let broken = verify(&ledger, &key.public(), &mut |_| {})
        .await
        .unwrap()
        .first_break
        .expect("the other size's root is found");
    assert_eq!(broken.seq, 11);
    assert!(
        broken.problem.contains("does not match the entries"),
        "{}",
        broken.problem
    );
    // A checkpoint signed with the right key and root but another tree's agreement heads (an
    // entry left out of them): verify names it, since a bundle could be proved complete without it.
    let wrong = Checkpoint::sign(
        10,
        ledger.root(10).await.unwrap(),
        lines_at(&ledger, 9).await,
        t0(),
        &key,
    );
    ledger.store_checkpoint(&wrong).await.unwrap();
    let report = verify(&ledger, &key.public(), &mut |_| {}).await.unwrap();
    let broken = report.first_break.expect("the wrong heads are found");
    assert_eq!(broken.seq, 10);
    assert!(broken.problem.contains("per-agreement heads"), "{}", broken.problem);
}

async fn ordinary_sql_cannot_change_history(kind: Kind) {
    use sqlx::Executor;
    let db = Db::new(kind).await;
    let ledger = db.open().await;
    ledger.append(decision("a", TransferStatus::Refused)).await.unwrap();
    let key = CheckpointKey::from_seed(&[3; 32]);
    let (_, root, lines) = ledger.commitment().await.unwrap();
    let cp = Checkpoint::sign(1, root, lines, Timestamp::now(), &key);
    ledger.store_checkpoint(&cp).await.unwrap();
    assert_eq!(
        ledger.checkpoints().await.unwrap(),
        vec![cp.clone()],
        "read back as signed, heads and all"
    );
    // A witness's cosignature on it: each distinct signature kept once (a row someone put first in
    // the witness's name cannot shadow another), read back as written.
    let body = isa_gateway::ledger::note::body("isa-gateway", &cp.tree());
    let witness_key = CheckpointKey::from_seed(&[4; 32]);
    let cosigned = |time| isa_gateway::ledger::StoredCosignature {
        tree_size: 1,
        root: cp.root,
        agreements: cp.agreements_digest(),
        cosignature: isa_gateway::ledger::cosignature::Cosignature::sign("w.example/w", &witness_key, &body, time),
    };
    assert!(ledger.store_cosignature(&cosigned(1_800_000_000)).await.unwrap());
    assert!(!ledger.store_cosignature(&cosigned(1_800_000_000)).await.unwrap());
    assert!(ledger.store_cosignature(&cosigned(1_800_000_001)).await.unwrap());
    assert_eq!(
        ledger.cosignatures(0).await.unwrap(),
        vec![cosigned(1_800_000_000), cosigned(1_800_000_001)]
    );
    assert!(ledger.cosignatures(2).await.unwrap().is_empty());
    let mut conn = db.raw().await;
    for sql in [
        "UPDATE ledger_entries SET agreement_id = 'b' WHERE seq = 1",
        "DELETE FROM ledger_entries WHERE seq = 1",
        "UPDATE checkpoints SET signature = 'ab'",
        "DELETE FROM checkpoints",
        "UPDATE cosignatures SET signature = 'ab'",
        "DELETE FROM cosignatures",
    ] {
        let err = conn.execute(sql).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    if kind == Kind::Postgres {
        for table in ["ledger_entries", "checkpoints", "cosignatures"] {
            let err = conn.execute(format!("TRUNCATE {table}").as_str()).await.unwrap_err();
            assert!(err.to_string().contains("append-only"), "{table}: {err}");
        }
    }
}

/// Six entries and a checkpoint over them; then `sql` (or, with `None`, one byte of entry 3
/// changed); then what `verify` says.
async fn verify_after(kind: Kind, sql: Option<&str>) -> isa_gateway::ledger::ChainBreak {
    let db = Db::new(kind).await;
    let key = CheckpointKey::from_seed(&[5; 32]);
    {
        let ledger = db.open().await;
        for i in 0..6 {
            let mut e = decision(if i == 3 { "other" } else { "a" }, TransferStatus::Refused);
            e.at = t0() + jiff::SignedDuration::from_secs(i);
            ledger.append(e).await.unwrap();
        }
        let (_, root, lines) = ledger.commitment().await.unwrap();
        let cp = Checkpoint::sign(6, root, lines, t0(), &key);
        ledger.store_checkpoint(&cp).await.unwrap();
    }
    match sql {
        Some(sql) => db.tamper(sql).await,
        None => db.flip_byte(3).await,
    }
    let ledger = db.open().await;
    let report = verify(&ledger, &key.public(), &mut |_| {}).await.unwrap();
    report.first_break.unwrap_or_else(|| panic!("not caught: {sql:?}"))
}

async fn tampering_is_caught(kind: Kind) {
    let cases = [
        (None, 3, "edited"),
        (
            Some("UPDATE ledger_entries SET agreement_id = 'a' WHERE seq = 4"),
            4,
            "index columns",
        ),
        (Some("DELETE FROM ledger_entries WHERE seq = 4"), 4, "missing"),
        (
            Some(
                "UPDATE ledger_entries SET seq = CASE seq WHEN 2 THEN -3 WHEN 3 THEN -2 END WHERE seq IN (2, 3); \
                 UPDATE ledger_entries SET seq = -seq WHERE seq < 0",
            ),
            2,
            "previous-hash link",
        ),
        (
            Some("DELETE FROM ledger_entries WHERE seq >= 5"),
            6,
            "tail was truncated",
        ),
        (
            Some("UPDATE checkpoints SET root = '0000000000000000000000000000000000000000000000000000000000000000'"),
            6,
            "not the gateway's",
        ),
    ];
    for (sql, seq, problem) in cases {
        let broken = verify_after(kind, sql).await;
        assert_eq!(broken.seq, seq, "{sql:?}: {broken}");
        assert!(broken.problem.contains(problem), "{sql:?}: {broken}");
    }
}

/// Three transfers the way the gateway makes them (delivered, reviewed, about two people, one
/// refused); then `sql` on the read side; then what `verify_transfers` says.
async fn listings_after(kind: Kind, sql: Option<&str>) -> Option<String> {
    let db = Db::new(kind).await;
    {
        let ledger = db.open().await;
        let mut urgent = decision("mash", TransferStatus::Accepted);
        urgent.review_due = Some("2026-06-02T12:00:00Z".into());
        urgent.subject_index = vec!["subject-a".into(), "subject-b".into()];
        ledger.accept(urgent.clone(), enqueue(false), None).await.unwrap();
        let mut refused = decision("mash", TransferStatus::Refused);
        refused.subject_index = vec!["subject-a".into()];
        ledger.append(refused).await.unwrap();
        let delivered = follow(&urgent, EventKind::Delivery, TransferStatus::Delivered);
        ledger.delivered(delivered, None).await.unwrap().unwrap();
        let review = follow(&urgent, EventKind::Review, TransferStatus::Delivered);
        ledger.follow_up(review).await.unwrap().unwrap();
        let gp = decision("gp", TransferStatus::Accepted);
        ledger.accept(gp, enqueue(false), None).await.unwrap();
    }
    if let Some(sql) = sql {
        db.tamper(sql).await;
    }
    // A problem reported, or a row too damaged to read: either way verify does not pass.
    match verify_transfers(&db.open().await).await {
        Ok(found) => found,
        Err(e) => Some(e.to_string()),
    }
}

async fn edited_listings_and_subject_index_are_caught(kind: Kind) {
    assert_eq!(listings_after(kind, None).await, None, "as written, they agree");
    let cases = [
        (
            "UPDATE transfers SET status = 'refused' WHERE agreement_id = 'gp'",
            "does not match",
        ),
        (
            // The listing shows the bases, so an edit there is an edited listing.
            "UPDATE transfers SET legal_bases = '[\"uk-gdpr/6.1.a\"]' WHERE agreement_id = 'gp'",
            "listing does not match",
        ),
        (
            "INSERT INTO transfers SELECT 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', agreement_id, message_type, \
             sender_system, recipient, status, reason_code, created_at_us, updated_at_us, decision_seq + 100, \
             user_sub, review_due_at_us, reviewed_at_us, subject_informed_due, subject_informed_at_us, legal_bases \
             FROM transfers WHERE agreement_id = 'gp'",
            "no decision",
        ),
        // Another spelling of the same id would hide the row from the subject-access join.
        (
            "UPDATE transfers SET transfer_id = upper(transfer_id) WHERE agreement_id = 'gp'",
            "transfer_id",
        ),
        (
            "UPDATE subject_disclosures SET transfer_id = upper(transfer_id)",
            "subject-index rows",
        ),
        ("UPDATE transfers SET reviewed_at_us = NULL", "does not match"),
        (
            "UPDATE transfers SET recipient = 'X99999' WHERE decision_seq = 1",
            "does not match",
        ),
        (
            "DELETE FROM transfers WHERE agreement_id = 'gp'",
            "transfers are listed",
        ),
        (
            "DELETE FROM subject_disclosures WHERE subject_hash = 'subject-b'",
            "subject-index rows",
        ),
        (
            "INSERT INTO subject_disclosures (subject_hash, transfer_id) SELECT 'subject-c', transfer_id FROM transfers \
             WHERE agreement_id = 'gp'",
            "subject-index rows",
        ),
    ];
    for (sql, problem) in cases {
        let found = listings_after(kind, Some(sql)).await;
        assert!(
            found.as_deref().is_some_and(|f| f.contains(problem)),
            "{sql}: {found:?}"
        );
    }
}

/// The held quota is counted in the transaction that would add to it (review finding: a count read
/// before the write let 20 concurrent referrals past a quota of 3): per agreement, and per user.
async fn the_held_quota_holds_under_concurrency(kind: Kind) {
    let db = Db::new(kind).await;
    let ledger = Arc::new(db.open().await);
    let quota = isa_gateway::ledger::HeldQuota {
        per_agreement: 3,
        per_user: 2,
    };
    let held = |user: &str| {
        let mut d = decision("mash", TransferStatus::Held);
        d.user_sub = Some(user.to_owned());
        let mut e = enqueue(true);
        e.held_quota = Some(quota);
        (d, e)
    };
    // Twenty at once from two users: two each pass the per-user quota, three in all.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let ledger = ledger.clone();
        let (d, e) = held(if i % 2 == 0 { "alice" } else { "bob" });
        tasks.push(tokio::spawn(async move { ledger.accept(d, e, None).await }));
    }
    let mut accepted = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => accepted += 1,
            Err(LedgerError::HeldQuotaExceeded) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(accepted, 3, "the agreement's quota");
    // One user alone stops at the per-user quota, whatever room the agreement has.
    let db = Db::new(kind).await;
    let ledger = db.open().await;
    for expected in [true, true, false] {
        let (d, e) = held("carol");
        assert_eq!(ledger.accept(d, e, None).await.is_ok(), expected);
    }
    let (d, e) = held("dan");
    assert!(ledger.accept(d, e, None).await.is_ok(), "another user still may");
    listings_agree(&ledger).await;
}

/// Two gateways on one database claiming in batches at once: every entry is claimed by exactly
/// one of them, oldest first within each claim, and a claim takes no more than its limit.
async fn two_gateways_claim_disjoint_batches(kind: Kind) {
    let db = Db::new(kind).await;
    let (a, b) = (Arc::new(db.open().await), Arc::new(db.open().await));
    for _ in 0..300 {
        a.accept(decision("a", TransferStatus::Accepted), enqueue(false), None)
            .await
            .unwrap();
    }
    let lease = std::time::Duration::from_secs(60);
    let run = |ledger: Arc<SqlLedger>, gateway_id: &'static str| {
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claim = Claim {
                    destination: "y99001-gp-drop",
                    limit: 16,
                    now: t0(),
                    lease,
                    gateway_id,
                };
                let items = ledger.claim_due(&claim).await.unwrap();
                assert!(items.len() <= 16);
                assert!(items.windows(2).all(|w| w[0].created_at <= w[1].created_at));
                assert!(items.iter().all(|i| i.attempts == 0));
                if items.is_empty() {
                    return mine;
                }
                mine.extend(items.into_iter().map(|i| i.transfer_id));
            }
        })
    };
    let (ta, tb) = (run(a.clone(), "gw-a"), run(b.clone(), "gw-b"));
    let (mine_a, mine_b) = (ta.await.unwrap(), tb.await.unwrap());
    let all: std::collections::HashSet<_> = mine_a.iter().chain(&mine_b).collect();
    assert_eq!(
        (mine_a.len() + mine_b.len(), all.len()),
        (300, 300),
        "each claimed once"
    );
    assert!(a.due(t0(), 10).await.unwrap().is_empty(), "all leased");
}

/// The auditor's chart and a person's own list: decisions per hour by outcome (a held transfer
/// counts as held even after a director decided it), and one person's transfers through given
/// systems, newest first.
async fn activity_and_a_persons_own_transfers(kind: Kind) {
    let db = Db::new(kind).await;
    let ledger = db.open().await;
    let at = |mins: i64| t0() + jiff::SignedDuration::from_mins(mins);
    let mut mine = Vec::new();
    for (i, status) in [
        TransferStatus::Accepted,
        TransferStatus::Accepted,
        TransferStatus::Refused,
        TransferStatus::Held,
        TransferStatus::Held,
    ]
    .into_iter()
    .enumerate()
    {
        let mut e = decision("mash", status);
        // Two in the first hour, three in the next (t0 is 12:00).
        e.at = at(if i < 2 { 10 * i as i64 } else { 60 + 10 * i as i64 });
        e.user_sub = Some(if i == 1 { "bob" } else { "alice" }.into());
        if status == TransferStatus::Refused {
            ledger.append(e.clone()).await.unwrap();
        } else {
            ledger
                .accept(e.clone(), enqueue(status == TransferStatus::Held), None)
                .await
                .unwrap();
        }
        if i != 1 {
            mine.push(e.clone());
        }
    }
    // One held transfer approved, the other still waiting: both went to a director.
    let mut approve = follow(&mine[2], EventKind::Approval, TransferStatus::Accepted);
    approve.decision = Some(DecisionKind::Permit);
    assert!(ledger.release(approve).await.unwrap().is_some());
    let mut other = decision("mash", TransferStatus::Accepted);
    other.sender_system = "another-system".into();
    other.user_sub = Some("alice".into());
    ledger.accept(other, enqueue(false), None).await.unwrap();
    ledger.append(decision("gp", TransferStatus::Refused)).await.unwrap();

    let mut got: Vec<_> = ledger
        .activity("mash", at(0), at(24 * 60))
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.hour, a.outcome, a.count))
        .collect();
    got.sort();
    let hour = |h: i64| at(h * 60);
    assert_eq!(
        got,
        vec![
            // Two of alice's and bob's, and the one through another system.
            (hour(0), Outcome::Permitted, 3),
            (hour(1), Outcome::Held, 2),
            (hour(1), Outcome::Refused, 1),
        ]
    );
    assert!(ledger.activity("mash", at(120), at(180)).await.unwrap().is_empty());

    let systems = vec!["tt-case-system".to_owned(), "unused".to_owned()];
    let listed: Vec<_> = ledger
        .transfers_by("alice", &systems, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.transfer_id)
        .collect();
    let newest_first: Vec<_> = mine.iter().rev().map(|e| e.transfer_id).collect();
    assert_eq!(
        listed, newest_first,
        "alice's, through these systems only, newest first"
    );
    assert_eq!(ledger.transfers_by("alice", &systems, 2).await.unwrap().len(), 2);
    assert!(ledger.transfers_by("alice", &[], 10).await.unwrap().is_empty());
    assert!(ledger.transfers_by("carol", &systems, 10).await.unwrap().is_empty());
}

/// Every agreement's head line at `size`, worked out from the entries (what a checkpoint of that
/// size signs).
async fn lines_at(ledger: &dyn Ledger, size: u64) -> Vec<[u8; 32]> {
    let mut heads = isa_gateway::ledger::heads::Heads::default();
    for e in ledger.entries_after(0, size as u32).await.unwrap() {
        heads.record(&e.event.agreement_id, e.event.at.as_microsecond(), &e.hash);
    }
    heads.lines()
}

/// Two gateways loading a subject-index key at once: one fingerprint is recorded per scope and
/// year, the first, and both read that one back (so the one holding another key sees it differ).
async fn the_first_key_fingerprint_recorded_is_the_one_every_gateway_reads(kind: Kind) {
    let db = Db::new(kind).await;
    let (a, b) = (Arc::new(db.open().await), Arc::new(db.open().await));
    let mine = |gateway: &str, fingerprint: &str, year: i16| isa_gateway::ledger::KeyFingerprint {
        scope: "nvtt-gp-update".into(),
        year,
        fingerprint: fingerprint.into(),
        gateway: gateway.into(),
        recorded_at_us: 1,
    };
    let (fa, fb) = (mine("gw-a", "aa", 2026), mine("gw-b", "bb", 2026));
    let (ra, rb) = tokio::join!(a.subject_key_fingerprint(&fa), b.subject_key_fingerprint(&fb));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra, rb, "both read the one recorded");
    assert!(
        (ra.gateway.as_str(), ra.fingerprint.as_str()) == ("gw-a", "aa")
            || (ra.gateway.as_str(), ra.fingerprint.as_str()) == ("gw-b", "bb")
    );
    // Another year is another row; a later gateway reads, never replaces.
    let next = b.subject_key_fingerprint(&mine("gw-b", "b2", 2027)).await.unwrap();
    assert_eq!((next.gateway.as_str(), next.fingerprint.as_str()), ("gw-b", "b2"));
    let again = a.subject_key_fingerprint(&mine("gw-c", "cc", 2026)).await.unwrap();
    assert_eq!(again, ra);
}
