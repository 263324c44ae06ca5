//! isa-gateway's decision core. Pure: values in, values out; no IO, no clock, no database, no
//! network (its Cargo.toml has no IO dependency, and a tidy test refuses file, network, environment
//! and process access in these sources).
//!
//! [`decision::Catalogue::decide`] takes who is calling, which agreement they name, the time and
//! the request body, and decides PERMIT (send, hold, or send and review) or REFUSE with the rule
//! that failed. Around it: [`agreement`] (the ISA files, checked at load against [`legal`] rules and
//! the message [`schemas`]), [`consent`], [`fields`] (default deny), [`pseudonymise`] with [`keys`],
//! [`nhs_number`], [`roles`].

pub mod agreement;
pub mod consent;
pub mod decision;
pub mod disclosure;
pub mod fields;
pub mod follow_up;
pub mod ids;
pub mod keys;
pub mod legal;
pub mod nhs_number;
pub mod problem;
pub mod pseudonymise;
pub mod roles;
pub mod schemas;
pub mod suppression;
#[cfg(test)]
mod test_support;
