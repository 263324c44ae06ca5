//! Per-destination protection: the circuit breaker (consecutive failures open it; after a
//! cooldown one probe goes through) and the retry delay (exponential, capped, jittered).

use std::time::{Duration, Instant};

use crate::app::config::DeliveryPolicy;

/// A circuit breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug, Default)]
pub(super) struct Breaker {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

impl Breaker {
    pub(super) fn state(&self, now: Instant) -> BreakerState {
        match self.open_until {
            None => BreakerState::Closed,
            Some(t) if now < t => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// Whether an attempt may start now. Half-open lets one probe through.
    pub(super) fn allow(&mut self, now: Instant) -> bool {
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

    pub(super) fn success(&mut self) {
        *self = Self::default();
    }

    /// An attempt that was allowed did not happen after all: let another probe through.
    pub(super) fn release_probe(&mut self) {
        self.probing = false;
    }

    pub(super) fn failure(&mut self, now: Instant, policy: &DeliveryPolicy) {
        self.consecutive_failures += 1;
        if self.probing || self.consecutive_failures >= policy.breaker_threshold {
            self.open_until = Some(now + Duration::from_millis(policy.breaker_cooldown_ms));
        }
        self.probing = false;
    }
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

pub(super) fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // Jitter only; without randomness the delay is simply not jittered.
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
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
