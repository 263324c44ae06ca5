//! Per-system request rates (GCRA, from `governor`): a registered system that floods the gateway
//! gets `429` with `Retry-After`, not a share of every other caller's capacity.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub struct RateLimits {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl RateLimits {
    /// `per_sec` sustained, `burst` at once; zero is taken as one (configuration refuses zero).
    pub fn new(per_sec: u32, burst: u32) -> Self {
        let one = NonZeroU32::MIN;
        let quota = Quota::per_second(NonZeroU32::new(per_sec).unwrap_or(one))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(one));
        Self {
            limiter: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
        }
    }

    /// `Ok` if `system` may make a request now; otherwise how long until it may.
    pub fn check(&self, system: &str) -> Result<(), Duration> {
        self.limiter
            .check_key(&system.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets keys whose allowance is full again (callers who went quiet), so that a limiter
    /// keyed by person does not grow without end.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
    }
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RateLimits")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_refused_with_a_wait_and_systems_are_apart() {
        let limits = RateLimits::new(1, 3);
        for _ in 0..3 {
            assert!(limits.check("a").is_ok());
        }
        let wait = limits.check("a").unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(limits.check("b").is_ok(), "another system has its own allowance");
    }
}
