//! The application: configuration and every check on it ([`config`], [`production`]), the
//! catalogue of agreements and schemas read from disk ([`catalogue`]), keys from files and the
//! environment ([`keystore`]), start-up ([`startup`]), operator actions ([`requeue`]) and the subject index's retention
//! ([`retention`]).

pub mod catalogue;
pub mod config;
pub mod delivery_settings;
pub mod fingerprints;
pub mod keystore;
pub mod limits;
pub mod production;
pub mod requeue;
pub mod retention;
pub mod startup;
