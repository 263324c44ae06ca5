//! Delivery that loses nothing: a worker claims due entries from the durable outbox, sends each
//! through its destination's transport, and records the outcome in the ledger.
//!
//! - Per destination, one statement claims as many due entries as the destination has free
//!   sending slots, each as a lease held by this gateway (see [`Ledger::claim_due`]); their
//!   records are read in one query. Outcomes go through the ledger's group-commit writer, so
//!   under load many deliveries share a transaction. At most one gateway sends an attempt at a
//!   time; a partner sees a transfer twice only after a crash (or a lost database) between
//!   sending and recording.
//! - A transfer's outbox entry is written in the same transaction as its decision, so anything
//!   the client was told is accepted survives a crash; the worker resumes every pending entry
//!   after a restart.
//! - Failures are retried with exponential backoff and jitter until the destination's attempt or
//!   age limit, then the transfer becomes undeliverable (a dead letter) with its reason. A partner
//!   that rejects the message itself (4xx other than 408/429) makes it undeliverable at once.
//! - "Delivered" is recorded in the same transaction that removes the outbox entry, and only if the
//!   entry was still there: the ledger says delivered exactly once, while the receiver may see a
//!   transfer id more than once (after a crash between sending and recording) and de-duplicates
//!   on the `x-isa-transfer-id` header.
//! - Per destination, a concurrency cap and a circuit breaker stop the gateway hammering a partner
//!   that is down; the breaker's state shows at `/readyz` and in metrics.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use crate::app::config::{DeliveryPolicy, DestinationConfig};
#[path = "reports.rs"]
mod reports;

use crate::delivery::breaker::{Breaker, BreakerState, backoff, random_u64};
use crate::delivery::guard;
use crate::delivery::transport::{Parcel, Transports};
use crate::ledger::{Claim, Entry, Event, EventKind, Ledger, OutboxItem, OutboxState, TransferStatus, ledger_time};
use crate::platform::clock::{Clock, WallClock};
use crate::platform::metrics::Metrics;
use crate::policy::agreement::{Agreement, Agreements};
use crate::policy::decision::sha256_hex;

/// The most entries one claim takes for one destination (also bounded by its free sending slots).
const CLAIM_BATCH: usize = 256;

struct Destination {
    policy: DeliveryPolicy,
    /// How long a claim on one of its transfers lasts (see [`DestinationConfig::lease`]).
    lease: Duration,
    inbox_poll: Duration,
    /// MESH: where data messages sent to the gateway's own mailbox are kept, unread.
    quarantine: Option<std::path::PathBuf>,
    permits: Arc<Semaphore>,
    breaker: Mutex<Breaker>,
}

impl Destination {
    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        // A poisoned lock means a panic mid-update; the breaker's fields are still coherent.
        self.breaker.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How this gateway's worker runs.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// How often it looks for due deliveries when nothing wakes it.
    pub poll: Duration,
    /// This gateway's id (see `Config::gateway_id`).
    pub gateway_id: String,
    /// How long a held transfer may wait for a director, and a dead letter for an operator,
    /// before its bytes are destroyed; how often that is looked for.
    pub held_expiry: Duration,
    pub dead_letter_expiry: Duration,
    pub expiry_every: Duration,
}

pub struct Delivery {
    transports: Transports,
    ledger: Arc<dyn Ledger>,
    clock: Clock,
    destinations: HashMap<String, Destination>,
    poll: Duration,
    /// This gateway's id: on every claim and delivery event.
    gateway_id: String,
    held_expiry: Duration,
    dead_letter_expiry: Duration,
    expiry_every: Duration,
    wake: Notify,
    in_flight: Mutex<HashSet<Uuid>>,
    metrics: Arc<Metrics>,
    /// The agreements loaded now, by id: what is sent must still be what they permitted.
    agreements: HashMap<String, Arc<Agreement>>,
}

impl Delivery {
    pub fn new(
        transports: Transports,
        destinations: &[DestinationConfig],
        ledger: Arc<dyn Ledger>,
        clock: Clock,
        worker: WorkerSettings,
        metrics: Arc<Metrics>,
        agreements: &Agreements,
    ) -> Self {
        let agreements = agreements.iter().map(|a| (a.id().to_owned(), a.clone())).collect();
        let destinations = destinations
            .iter()
            .map(|d| {
                let policy = d.policy().clone();
                let permits = Arc::new(Semaphore::new(policy.concurrency));
                let (inbox_poll, quarantine) = match d {
                    DestinationConfig::Mesh {
                        inbox_poll_ms,
                        quarantine,
                        ..
                    } => (Duration::from_millis(*inbox_poll_ms), Some(quarantine.join(d.id()))),
                    _ => (Duration::from_secs(300), None),
                };
                (
                    d.id().to_owned(),
                    Destination {
                        policy,
                        lease: d.lease(),
                        inbox_poll,
                        quarantine,
                        permits,
                        breaker: Mutex::default(),
                    },
                )
            })
            .collect();
        Self {
            transports,
            ledger,
            clock,
            destinations,
            poll: worker.poll,
            gateway_id: worker.gateway_id,
            held_expiry: worker.held_expiry,
            dead_letter_expiry: worker.dead_letter_expiry,
            expiry_every: worker.expiry_every,
            wake: Notify::new(),
            in_flight: Mutex::default(),
            metrics,
            agreements,
        }
    }

    /// Tells the worker there is new work.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Each destination's breaker state, for `/readyz`.
    pub fn breakers(&self) -> Vec<(String, BreakerState)> {
        let now = Instant::now();
        let mut v: Vec<_> = self
            .destinations
            .iter()
            .map(|(id, d)| (id.clone(), d.breaker().state(now)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<Uuid>> {
        self.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The worker loop: runs until the process ends.
    pub async fn run(self: Arc<Self>) {
        // This gateway restarted: whatever it had claimed it is no longer sending. Its leases end
        // now rather than at their time (gateway ids must be unique among gateways on a ledger).
        match self.ledger.release_leases(&self.gateway_id, WallClock::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(gateway = %self.gateway_id, released = n,
                "claims left by this gateway before it restarted were released; those attempts are retried"),
            Err(e) => {
                tracing::error!(error = %e, "cannot release this gateway's earlier claims; they retry when their leases end")
            }
        }
        self.give_up_unconfigured().await;
        loop {
            for (id, dest) in &self.destinations {
                self.claim_and_send(id, dest).await;
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.poll) => {}
            }
        }
    }

    /// Destroys what is kept too long, each with its ledger event in the same transaction: held
    /// transfers no director decided in time (refused, `held_expired`) and dead letters nobody
    /// requeued (`dead_letter_expired`). Returns how many.
    pub async fn expire(&self) -> usize {
        let now = WallClock::now();
        let before = |d: Duration| now - jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX);
        let mut done = 0;
        for state in [OutboxState::Held, OutboxState::Dead] {
            done += self.expire_state(state, before(self.limit_for(state))).await;
        }
        self.give_up_unconfigured().await;
        let quarantined = self.expire_quarantine(self.dead_letter_expiry);
        if quarantined > 0 {
            tracing::warn!(
                removed = quarantined,
                "quarantined MESH messages past their limit were deleted"
            );
        }
        // Held bytes a director refused, and those expired here, leave the database's files too.
        if let Err(e) = self.ledger.scrub().await {
            tracing::warn!(error = %e, "cannot scrub deleted bytes from the database files; will retry");
        }
        done
    }

    fn limit_for(&self, state: OutboxState) -> Duration {
        match state {
            OutboxState::Held => self.held_expiry,
            OutboxState::Dead => self.dead_letter_expiry,
        }
    }

    /// Expires the outbox entries in `state` accepted before `before`: a held transfer is refused
    /// (`held_expired`, an approval-kind event), a dead letter stays undeliverable
    /// (`dead_letter_expired`); either way its bytes go in the transaction that records it.
    async fn expire_state(&self, state: OutboxState, before: jiff::Timestamp) -> usize {
        let (status, code, detail) = match state {
            OutboxState::Held => (
                TransferStatus::Refused,
                "held_expired",
                "no director decided in time; the bytes were destroyed",
            ),
            OutboxState::Dead => (
                TransferStatus::Undeliverable,
                "dead_letter_expired",
                "not requeued in time; the bytes were destroyed",
            ),
        };
        let items = match self.ledger.outbox_older_than(state, before, 256).await {
            Ok(items) => items,
            Err(e) => {
                tracing::error!(error = %e, state = state.as_str(), "cannot read the outbox to expire; will retry");
                return 0;
            }
        };
        let mut done = 0;
        for item in items {
            let mut e = self.event(&item, status, Some(code), Some(detail.into()));
            e.sent_sha256 = None;
            let recorded = if state == OutboxState::Held {
                e.kind = EventKind::Approval;
                e.decision = Some(crate::ledger::DecisionKind::Deny);
                self.ledger.withdraw(e).await
            } else {
                self.ledger.destroy(e).await
            };
            match recorded {
                Ok(Some(r)) => {
                    done += 1;
                    self.metrics.attempt(&item.destination, code);
                    tracing::warn!(transfer_id = %item.transfer_id, seq = r.seq, reason = code, "expired: bytes destroyed");
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, reason = code, "cannot expire an outbox entry; will retry"),
            }
        }
        done
    }

    /// Runs [`Delivery::expire`] every `expiry_every` until the process ends.
    pub async fn run_expiry(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.expiry_every).await;
            self.expire().await;
        }
    }

    /// Claims as many of `id`'s due entries as it has free sending slots, in one statement, reads
    /// their records in one query, and starts sending each. An open breaker claims none; a
    /// half-open one, one probe.
    async fn claim_and_send(self: &Arc<Self>, id: &str, dest: &Destination) {
        let probing = match dest.breaker().state(Instant::now()) {
            BreakerState::Closed => false,
            BreakerState::Open => return,
            BreakerState::HalfOpen => true,
        };
        let wanted = if probing {
            1
        } else {
            dest.permits.available_permits().min(CLAIM_BATCH)
        };
        let mut permits = Vec::with_capacity(wanted);
        while permits.len() < wanted
            && let Ok(p) = dest.permits.clone().try_acquire_owned()
        {
            permits.push(p);
        }
        if permits.is_empty() || !dest.breaker().allow(Instant::now()) {
            return;
        }
        let claim = Claim {
            destination: id,
            limit: u32::try_from(permits.len()).unwrap_or(u32::MAX),
            now: WallClock::now(),
            lease: dest.lease,
            gateway_id: &self.gateway_id,
        };
        let items = match self.ledger.claim_due(&claim).await {
            Ok(items) => items,
            Err(e) => {
                dest.breaker().release_probe();
                tracing::error!(destination = id, error = %e, "cannot claim from the outbox; will retry");
                return;
            }
        };
        if items.is_empty() {
            dest.breaker().release_probe();
            return;
        }
        // Only what was decided leaves: each transfer's record, read in one query and checked
        // against this gateway's chain, not only as the database says. A failure here leaves the
        // claims to their leases; those attempts are retried when the leases end.
        let ids: Vec<Uuid> = items.iter().map(|i| i.transfer_id).collect();
        let mut histories: HashMap<Uuid, Vec<Entry>> = HashMap::new();
        let records = async {
            let history = self.ledger.entries_of(&ids).await?;
            let held = self.ledger.holds(&history).await?;
            Ok::<_, crate::ledger::LedgerError>((history, held))
        };
        let (history, all_held) = match records.await {
            Ok(records) => records,
            Err(e) => {
                dest.breaker().release_probe();
                tracing::error!(destination = id, error = %e, claimed = items.len(),
                    "cannot read or check the claimed transfers' records; they are retried when their claims end");
                return;
            }
        };
        for entry in history {
            histories.entry(entry.event.transfer_id).or_default().push(entry);
        }
        for (item, permit) in items.into_iter().zip(permits) {
            let history = histories.remove(&item.transfer_id).unwrap_or_default();
            if !self.in_flight().insert(item.transfer_id) {
                // Still being sent by this gateway after its lease ran out: the claim lapses.
                continue;
            }
            let this = Arc::clone(self);
            tokio::spawn(async move {
                let id = item.transfer_id;
                this.attempt(item, history, all_held, permit).await;
                this.in_flight().remove(&id);
                this.wake();
            });
        }
    }

    /// Entries whose destination this gateway no longer has become dead letters with the reason
    /// (an operator may requeue them once the destination is configured again).
    async fn give_up_unconfigured(&self) {
        let configured: Vec<&str> = self.destinations.keys().map(String::as_str).collect();
        let items = match self.ledger.unrouted(&configured, 256).await {
            Ok(items) => items,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox; will retry");
                return;
            }
        };
        for item in items {
            self.give_up(&item, "destination no longer configured".into()).await;
        }
    }

    fn event(&self, item: &OutboxItem, status: TransferStatus, reason: Option<&str>, detail: Option<String>) -> Event {
        let mut e = Event::new(
            ledger_time(self.clock.now()),
            item.transfer_id,
            EventKind::Delivery,
            status,
            &item.agreement_id,
            &item.sender_system,
        );
        e.message_type = Some(item.message_type.clone());
        e.recipient = item.recipient.clone();
        e.reason_code = reason.map(str::to_owned);
        e.sent_sha256 = Some(sha256_hex(&item.body));
        e.detail = detail;
        e.destination = Some(item.destination.clone());
        e.gateway = Some(self.gateway_id.clone());
        e
    }

    /// This gateway's id.
    pub fn gateway_id(&self) -> &str {
        &self.gateway_id
    }

    /// Sends one claimed entry and records the outcome. `history` is its record as the database
    /// gave it; `all_held` says the whole batch's records are in this gateway's chain.
    async fn attempt(&self, item: OutboxItem, history: Vec<Entry>, all_held: bool, _permit: OwnedSemaphorePermit) {
        let Some(dest) = self.destinations.get(&item.destination) else {
            return;
        };
        let Some(transport) = self.transports.get(&item.destination) else {
            self.give_up(&item, "no transport for the destination".into()).await;
            return;
        };
        let parcel = Parcel {
            transfer_id: item.transfer_id,
            agreement_id: item.agreement_id.clone(),
            message_type: item.message_type.clone(),
            bytes: item.body.clone(),
            attempt: item.attempts,
        };
        let id = item.transfer_id;
        // Only what was decided leaves: the bytes, the destination, the approval, the agreement,
        // each entry as this gateway's chain holds it. When the batch as a whole did not hold,
        // this transfer's record alone is asked.
        let held = if all_held {
            Ok(true)
        } else {
            self.ledger.holds(&history).await
        };
        match held {
            Ok(true) => {}
            Ok(false) => {
                dest.breaker().release_probe();
                self.refuse_to_send(&item, guard::NotAsDecided::RecordUnverifiable)
                    .await;
                return;
            }
            Err(e) => {
                dest.breaker().release_probe();
                tracing::error!(transfer_id = %id, error = %e, "cannot check the transfer's record; retried when its claim ends");
                return;
            }
        }
        if let Err(why) = guard::check(&item, &history, &self.agreements, self.clock.today()) {
            dest.breaker().release_probe();
            self.refuse_to_send(&item, why).await;
            return;
        }
        // The sending slot is held until the outcome is recorded, so a crash leaves at most the
        // destination's concurrency of attempts sent but not recorded (each sent again later).
        match transport.send(&parcel).await {
            Ok(sent) => {
                dest.breaker().success();
                self.metrics.attempt(&item.destination, "delivered");
                let age = (WallClock::now().as_millisecond() - item.created_at.as_millisecond()).max(0);
                self.metrics.delivered_after(&item.destination, age as f64 / 1000.0);
                let detail = sent.remote_ref.as_ref().map(|r| format!("partner reference {r}"));
                let event = self.event(&item, TransferStatus::Delivered, None, detail);
                let remote = sent.remote_ref.map(|r| (item.destination.clone(), r));
                match self.ledger.delivered(event, remote).await {
                    Ok(Some(r)) => {
                        tracing::info!(transfer_id = %id, destination = %item.destination, seq = r.seq, "delivered")
                    }
                    Ok(None) => tracing::info!(transfer_id = %id, "delivered again; already recorded"),
                    // The outbox entry stays: the transfer is sent again and recorded then.
                    Err(e) => tracing::error!(transfer_id = %id, error = %e, "delivered but not recorded; will resend"),
                }
            }
            Err(e) => {
                dest.breaker().failure(Instant::now(), &dest.policy);
                let attempts = item.attempts + 1;
                let age = Duration::from_millis(
                    u64::try_from(WallClock::now().as_millisecond() - item.created_at.as_millisecond()).unwrap_or(0),
                );
                if e.is_permanent() {
                    self.give_up(&item, format!("the partner refused it: {e}")).await;
                } else if attempts >= dest.policy.max_attempts || age >= Duration::from_secs(dest.policy.max_age_secs) {
                    self.give_up(&item, format!("gave up after {attempts} attempt(s): {e}"))
                        .await;
                } else {
                    self.metrics.attempt(&item.destination, "retry");
                    let delay = backoff(&dest.policy, attempts, random_u64());
                    let next = WallClock::now() + delay;
                    let event = self.event(
                        &item,
                        TransferStatus::Retrying,
                        Some("delivery_attempt_failed"),
                        Some(e.to_string()),
                    );
                    match self.ledger.attempt_failed(event, attempts, next).await {
                        Ok(_) => tracing::warn!(transfer_id = %id, destination = %item.destination, attempts,
                            retry_in_ms = delay.as_millis() as u64, why = %e, "delivery attempt failed; will retry"),
                        Err(err) => {
                            tracing::error!(transfer_id = %id, error = %err, "could not record a failed attempt")
                        }
                    }
                }
            }
        }
    }

    /// The outbox no longer matches what was decided: nothing is sent, the transfer becomes a dead
    /// letter with the reason, and operators are alerted (log and metric).
    async fn refuse_to_send(&self, item: &OutboxItem, why: guard::NotAsDecided) {
        self.metrics.attempt(&item.destination, "not_as_decided");
        let event = self.event(
            item,
            TransferStatus::Undeliverable,
            Some(why.code()),
            Some("not sent: the outbox does not match the decision".into()),
        );
        match self.ledger.dead_letter(event).await {
            Ok(r) => tracing::error!(transfer_id = %item.transfer_id, reason = why.code(), seq = r.seq,
                "ALERT: not sent, the outbox does not match what was decided; moved to dead letters"),
            Err(e) => tracing::error!(transfer_id = %item.transfer_id, reason = why.code(), error = %e,
                "ALERT: not sent, the outbox does not match what was decided; could not record it"),
        }
    }

    async fn give_up(&self, item: &OutboxItem, why: String) {
        self.metrics.attempt(&item.destination, "dead_letter");
        let event = self.event(
            item,
            TransferStatus::Undeliverable,
            Some("undeliverable"),
            Some(why.clone()),
        );
        match self.ledger.dead_letter(event).await {
            Ok(r) => {
                tracing::error!(transfer_id = %item.transfer_id, destination = %item.destination, seq = r.seq, %why,
                "UNDELIVERABLE: transfer moved to dead letters")
            }
            Err(e) => tracing::error!(transfer_id = %item.transfer_id, error = %e, "could not record a dead letter"),
        }
    }
}
