//! What auditors and the DPO are given: audit bundles ([`bundle`]) that prove themselves complete
//! ([`completeness`]), signed checkpoints on a
//! schedule ([`checkpointer`]), checkpoints kept outside the database ([`checkpoint_log`]),
//! witnesses' cosignatures ([`witnesses`]), subject access ([`subject_access`]) and listings as CSV
//! and tables ([`report`]). Reads the ledger; never changes a decision.

pub mod bundle;
pub mod checkpoint_log;
pub mod checkpointer;
pub mod completeness;
pub mod report;
pub mod subject_access;
pub mod witnesses;
