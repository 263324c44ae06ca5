//! Time, injectable: the system clock in service; a fixed or hand-moved instant in tests.

use std::sync::{Arc, Mutex};

use jiff::Timestamp;

#[derive(Debug, Clone, Default)]
pub enum Clock {
    #[default]
    System,
    Fixed(Timestamp),
    /// Moved by hand (tests of deadlines: review windows, notification due dates).
    Manual(Arc<Mutex<Timestamp>>),
}

impl Clock {
    pub fn manual(start: Timestamp) -> Self {
        Self::Manual(Arc::new(Mutex::new(start)))
    }

    pub fn now(&self) -> Timestamp {
        match self {
            Self::System => Timestamp::now(),
            Self::Fixed(t) => *t,
            Self::Manual(t) => *t.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
        }
    }

    /// Today's date in UTC: agreements' dates (in force, review by, expiry) are compared with it.
    pub fn today(&self) -> jiff::civil::Date {
        crate::policy::agreement::utc_date(self.now())
    }

    /// Moves a manual clock; other clocks ignore it.
    pub fn set(&self, to: Timestamp) {
        if let Self::Manual(t) = self {
            *t.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = to;
        }
    }
}

/// The real time, for scheduling only: when to retry a delivery, how old a queued item is, the
/// timestamps in a MESH authorisation header. Never for what a decision or the ledger records
/// (that is [`Clock`]'s, which tests fix or move by hand).
#[derive(Debug, Clone, Copy)]
pub struct WallClock;

impl WallClock {
    pub fn now() -> Timestamp {
        Timestamp::now()
    }
}
