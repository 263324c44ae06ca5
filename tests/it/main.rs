//! One integration-test binary (see ARCHITECTURE.md, "Testing").
#![allow(clippy::unwrap_used)] // a panic in a test is a failure with its location

mod approvals;
mod backends;
mod bundles;
mod cli;
mod console;
mod console_pages;
mod contract;
mod crash;
mod delivery;
mod deploy;
mod disclosures;
mod flows;
mod helpers;
mod ledger;
mod mesh;
mod messages;
mod openapi;
mod postgres;
mod pseudonymisation;
mod retention;
mod suppression;
mod tidy;
mod tls;
mod tokens;
mod transfers;
mod vectors;
mod witness;
