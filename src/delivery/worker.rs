//! Delivery that loses nothing: a worker takes due entries from the durable outbox, sends each
//! through its destination's transport, and records the outcome in the ledger.
//!
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
use crate::delivery::guard;
use crate::delivery::transport::{Parcel, Transports};
use crate::ledger::{Claim, Event, EventKind, Ledger, OutboxItem, TransferStatus, ledger_time};
use crate::platform::clock::{Clock, WallClock};
use crate::platform::metrics::Metrics;
use crate::policy::agreement::{Agreement, Agreements};
use crate::policy::decision::sha256_hex;

/// A circuit breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug, Default)]
struct Breaker {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

impl Breaker {
    fn state(&self, now: Instant) -> BreakerState {
        match self.open_until {
            None => BreakerState::Closed,
            Some(t) if now < t => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// Whether an attempt may start now. Half-open lets one probe through.
    fn allow(&mut self, now: Instant) -> bool {
        match self.state(now) {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen if self.probing => false,
            BreakerState::HalfOpen => {
                self.probing = true;
                true
            }
        }
    }

    fn success(&mut self) {
        *self = Self::default();
    }

    /// An attempt that was allowed did not happen after all: let another probe through.
    fn release_probe(&mut self) {
        self.probing = false;
    }

    fn failure(&mut self, now: Instant, policy: &DeliveryPolicy) {
        self.consecutive_failures += 1;
        if self.probing || self.consecutive_failures >= policy.breaker_threshold {
            self.open_until = Some(now + Duration::from_millis(policy.breaker_cooldown_ms));
        }
        self.probing = false;
    }
}

struct Destination {
    policy: DeliveryPolicy,
    /// How long a claim on one of its transfers lasts (see [`DestinationConfig::lease`]).
    lease: Duration,
    inbox_poll: Duration,
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
}

pub struct Delivery {
    transports: Transports,
    ledger: Arc<dyn Ledger>,
    clock: Clock,
    destinations: HashMap<String, Destination>,
    poll: Duration,
    /// This gateway's id: on every claim and delivery event.
    gateway_id: String,
    wake: Notify,
    in_flight: Mutex<HashSet<Uuid>>,
    metrics: Arc<Metrics>,
    /// The agreements loaded now, by id: what is sent must still be what they permitted.
    agreements: HashMap<String, Arc<Agreement>>,
}

/// The delay before retry number `attempts` (1-based): exponential, capped, with "equal jitter"
/// (half fixed, half random) so that retries from many transfers do not arrive together.
pub fn backoff(policy: &DeliveryPolicy, attempts: u32, random: u64) -> Duration {
    let exp = policy
        .backoff_initial_ms
        .saturating_mul(1u64 << attempts.saturating_sub(1).min(30));
    let capped = exp.min(policy.backoff_max_ms);
    let half = capped / 2;
    Duration::from_millis(half + if half == 0 { 0 } else { random % (half + 1) })
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // Jitter only; without randomness the delay is simply not jittered.
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
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
                let inbox_poll = match d {
                    DestinationConfig::Mesh { inbox_poll_ms, .. } => Duration::from_millis(*inbox_poll_ms),
                    _ => Duration::from_secs(300),
                };
                (
                    d.id().to_owned(),
                    Destination {
                        policy,
                        lease: d.lease(),
                        inbox_poll,
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
        loop {
            match self.ledger.due(WallClock::now(), 256).await {
                Ok(items) => {
                    for item in items {
                        self.start(item);
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot read the outbox; will retry"),
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.poll) => {}
            }
        }
    }

    /// Reads each MESH destination's inbox for reports, at its own interval, until the process
    /// ends. A non-delivery report makes its transfer undeliverable.
    pub async fn watch_reports(self: Arc<Self>) {
        let watchers: Vec<_> = self
            .transports
            .mesh()
            .map(|(id, _)| {
                let this = Arc::clone(&self);
                let id = id.to_owned();
                tokio::spawn(async move { this.watch_mesh(id).await })
            })
            .collect();
        for w in watchers {
            let _ = w.await;
        }
    }

    async fn watch_mesh(&self, destination: String) {
        let every = self
            .destinations
            .get(&destination)
            .map_or(Duration::from_secs(300), |d| d.inbox_poll);
        loop {
            if let Some(mesh) = self
                .transports
                .mesh()
                .find(|(id, _)| *id == destination)
                .map(|(_, m)| m)
            {
                match mesh.take_reports().await {
                    Ok(reports) => {
                        for r in reports {
                            self.non_delivery(&destination, r).await;
                        }
                    }
                    Err(e) => tracing::warn!(%destination, error = %e, "cannot read the MESH inbox; will retry"),
                }
            }
            tokio::time::sleep(every).await;
        }
    }

    async fn non_delivery(&self, destination: &str, report: crate::delivery::transport::mesh::Report) {
        let by_ref = match &report.linked_message_id {
            Some(m) => self.ledger.transfer_by_remote_ref(destination, m).await.ok().flatten(),
            None => None,
        };
        let Some(id) = by_ref.or_else(|| report.local_id.as_deref().and_then(|l| Uuid::parse_str(l).ok())) else {
            tracing::warn!(%destination, report = %report.report_id, "a MESH report names no transfer of ours");
            return;
        };
        let Ok(Some(record)) = self.ledger.transfer(id).await else {
            tracing::warn!(%destination, transfer_id = %id, "a MESH report names an unknown transfer");
            return;
        };
        let why = format!(
            "MESH non-delivery report {}: {}",
            report.code.as_deref().unwrap_or("?"),
            report.description.as_deref().unwrap_or("no description")
        );
        let item = OutboxItem {
            transfer_id: id,
            destination: destination.to_owned(),
            agreement_id: record.agreement_id,
            message_type: record.message_type.unwrap_or_default(),
            sender_system: record.sender_system,
            recipient: record.recipient,
            body: Vec::new(),
            attempts: 0,
            created_at: record.created_at,
        };
        let mut event = self.event(
            &item,
            TransferStatus::Undeliverable,
            Some("mesh_non_delivery"),
            Some(why.clone()),
        );
        event.sent_sha256 = None;
        match self.ledger.append(event).await {
            Ok(r) => {
                tracing::error!(transfer_id = %id, %destination, seq = r.seq, %why, "UNDELIVERABLE: MESH reported non-delivery")
            }
            Err(e) => tracing::error!(transfer_id = %id, error = %e, "could not record a MESH non-delivery report"),
        }
    }

    fn start(self: &Arc<Self>, item: OutboxItem) {
        if !self.in_flight().insert(item.transfer_id) {
            return;
        }
        let permit = match self.destinations.get(&item.destination) {
            None => None,
            Some(d) => match d.permits.clone().try_acquire_owned() {
                Ok(p) if d.breaker().allow(Instant::now()) => Some(Some(p)),
                _ => {
                    self.in_flight().remove(&item.transfer_id);
                    return;
                }
            },
        };
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let id = item.transfer_id;
            match permit {
                Some(permit) => this.attempt(item, permit).await,
                None => this.give_up(&item, "destination no longer configured".into()).await,
            }
            this.in_flight().remove(&id);
            this.wake();
        });
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

    async fn attempt(&self, item: OutboxItem, _permit: Option<OwnedSemaphorePermit>) {
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
        // Only what was decided leaves: the bytes, the destination, the approval, the agreement.
        let history = match self.ledger.entries_of(&[id]).await {
            Ok(history) => history,
            Err(e) => {
                dest.breaker().release_probe();
                tracing::error!(transfer_id = %id, error = %e, "cannot read the transfer's record; will retry");
                return;
            }
        };
        if let Err(why) = guard::check(&item, &history, &self.agreements, self.clock.today()) {
            dest.breaker().release_probe();
            self.refuse_to_send(&item, why).await;
            return;
        }
        let claim = Claim {
            transfer_id: id,
            attempts: item.attempts,
            now: WallClock::now(),
            lease: dest.lease,
            gateway_id: &self.gateway_id,
        };
        match self.ledger.claim(&claim).await {
            Ok(true) => {}
            Ok(false) => {
                // Delivered, dead-lettered or retried since it was read: stale, do not send.
                dest.breaker().release_probe();
                return;
            }
            Err(e) => {
                dest.breaker().release_probe();
                tracing::error!(transfer_id = %id, error = %e, "cannot claim an outbox entry; will retry");
                return;
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> DeliveryPolicy {
        DeliveryPolicy {
            backoff_initial_ms: 100,
            backoff_max_ms: 1_000,
            breaker_threshold: 2,
            breaker_cooldown_ms: 50,
            ..DeliveryPolicy::default()
        }
    }

    #[test]
    fn backoff_doubles_caps_and_jitters_within_half() {
        let p = policy();
        assert_eq!(backoff(&p, 1, 0), Duration::from_millis(50));
        assert_eq!(backoff(&p, 1, 7), Duration::from_millis(57));
        assert_eq!(
            backoff(&p, 1, 51),
            Duration::from_millis(50),
            "jitter wraps within the half"
        );
        assert_eq!(backoff(&p, 3, 0), Duration::from_millis(200));
        assert_eq!(backoff(&p, 30, 0), Duration::from_millis(500));
        for r in [0, 1, 7, 1 << 40] {
            let d = backoff(&p, 4, r);
            assert!(
                d >= Duration::from_millis(400) && d <= Duration::from_millis(800),
                "{d:?}"
            );
        }
    }

    #[test]
    fn breaker_opens_after_threshold_and_lets_one_probe_through() {
        let p = policy();
        let mut b = Breaker::default();
        let t0 = Instant::now();
        b.failure(t0, &p);
        assert_eq!(b.state(t0), BreakerState::Closed);
        b.failure(t0, &p);
        assert_eq!(b.state(t0), BreakerState::Open);
        assert!(!b.allow(t0));
        let later = t0 + Duration::from_millis(60);
        assert!(b.allow(later), "one probe");
        assert!(!b.allow(later), "only one");
        b.failure(later, &p);
        assert_eq!(b.state(later), BreakerState::Open, "a failed probe reopens");
        let much_later = later + Duration::from_millis(60);
        assert!(b.allow(much_later));
        b.success();
        assert_eq!(b.state(much_later), BreakerState::Closed);
    }
}
