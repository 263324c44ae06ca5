//! Time, injectable: the system clock in service, a fixed instant in tests.

use jiff::Timestamp;

#[derive(Debug, Clone, Copy, Default)]
pub enum Clock {
    #[default]
    System,
    Fixed(Timestamp),
}

impl Clock {
    pub fn now(&self) -> Timestamp {
        match self {
            Self::System => Timestamp::now(),
            Self::Fixed(t) => *t,
        }
    }
}
