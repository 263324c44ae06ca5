//! isa-gateway: a secure inter-agency information-sharing gateway.
//!
//! See ARCHITECTURE.md for the map. In one line: [`api`] takes a transfer over mutual TLS,
//! [`decision`] decides it against its [`agreement`] and message [`schemas`] (no IO), the
//! [`ledger`] records the decision, and a [`transport`] delivers it.

pub mod agreement;
pub mod api;
pub mod auth;
pub mod bundle;
pub mod checkpointer;
pub mod cli;
pub mod clock;
pub mod config;
pub mod decision;
pub mod delivery;
pub mod fields;
pub mod keys;
pub mod ledger;
pub mod legal;
pub mod metrics;
pub mod nhs_number;
pub mod pki;
pub mod pseudonymise;
pub mod report;
pub mod schemas;
pub mod startup;
pub mod subject_access;
pub mod tls;
pub mod transport;
