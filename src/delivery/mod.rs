//! Delivery moves bytes and decides nothing: the worker over the durable outbox ([`worker`]) and
//! the [`transport`]s, the only code that sends anything out.

mod breaker;
pub mod guard;
pub mod transport;
mod worker;

pub use self::breaker::{BreakerState, backoff};
pub use self::worker::*;
