//! What the gateway stands on: TLS ([`tls`]), who the user is ([`auth`]), certificates ([`pki`]),
//! metrics and the clock. Knows nothing of agreements or the ledger.

pub mod auth;
pub mod clock;
pub mod fs;
pub mod metrics;
pub mod pki;
pub mod rate_limit;
pub mod tls;
pub mod token_cache;
