//! `[delivery]` (the worker: polling, expiry of held transfers and dead letters) and each
//! destination's `[destinations.delivery]` (retries, concurrency, circuit breaker).

use serde::Deserialize;

/// The delivery worker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySettings {
    /// How often the worker looks for due deliveries when nothing wakes it.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// A held transfer no director has decided within this long is refused (`held_expired`) and
    /// its bytes destroyed: patient data is not kept waiting for ever. Default 7 days.
    #[serde(default = "default_held_expiry_secs")]
    pub held_expiry_secs: u64,
    /// A dead letter nobody requeued within this long (from acceptance) has its bytes destroyed
    /// (`dead_letter_expired`). Default 30 days.
    #[serde(default = "default_dead_letter_expiry_secs")]
    pub dead_letter_expiry_secs: u64,
    /// How often expiry runs.
    #[serde(default = "default_expiry_interval_ms")]
    pub expiry_interval_ms: u64,
}

fn default_poll_interval_ms() -> u64 {
    500
}

fn default_held_expiry_secs() -> u64 {
    7 * 24 * 3600
}

fn default_dead_letter_expiry_secs() -> u64 {
    30 * 24 * 3600
}

fn default_expiry_interval_ms() -> u64 {
    60_000
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            poll_interval_ms: default_poll_interval_ms(),
            held_expiry_secs: default_held_expiry_secs(),
            dead_letter_expiry_secs: default_dead_letter_expiry_secs(),
            expiry_interval_ms: default_expiry_interval_ms(),
        }
    }
}

/// How one destination is retried and protected. Every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryPolicy {
    /// Attempts before a transfer becomes undeliverable (dead letter).
    pub max_attempts: u32,
    /// Age (from acceptance) after which a transfer becomes undeliverable.
    pub max_age_secs: u64,
    /// First retry delay; doubles per attempt up to `backoff_max_ms`, with jitter.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Deliveries in flight to this destination at once.
    pub concurrency: usize,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_threshold: u32,
    /// How long the breaker stays open before one probe is let through.
    pub breaker_cooldown_ms: u64,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 12,
            max_age_secs: 24 * 3600,
            backoff_initial_ms: 1_000,
            backoff_max_ms: 300_000,
            concurrency: 4,
            breaker_threshold: 5,
            breaker_cooldown_ms: 30_000,
        }
    }
}
