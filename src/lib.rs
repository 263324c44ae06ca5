//! isa-gateway: a secure inter-agency information-sharing gateway.
//!
//! See ARCHITECTURE.md for the map. In one line: [`api`] takes a transfer over mutual TLS,
//! [`policy`] (the pure decision core, a crate of its own) decides it against its agreement and
//! message schema, the [`ledger`] records the decision, and [`delivery`] sends it.
//!
//! - [`policy`]: decision, consent, agreements, schemas, fields, pseudonymisation, legal bases. No IO.
//! - [`ledger`]: the record — entries, chain, Merkle tree, checkpoints, read model, verify, SQL.
//! - [`delivery`]: moves bytes and decides nothing — the worker and the transports.
//! - [`api`]: thin HTTP handlers.
//! - [`audit`]: bundles, checkpointing, subject access, reports.
//! - [`app`]: configuration, loading the catalogue and keys, start-up, operator actions.
//! - [`platform`]: TLS, tokens, PKI, metrics, the clock.
//! - [`cli`]: the `isa-gateway` command.
//! - [`witness`]: what a witness organisation runs to cosign a gateway's checkpoints.

pub use isa_policy as policy;

pub mod api;
pub mod app;
pub mod audit;
pub mod cli;
pub mod console;
pub mod delivery;
pub mod ledger;
pub mod platform;
pub mod witness;
