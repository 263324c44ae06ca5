//! Gateways that share a database must hold the same subject-index seeds: subject access asks
//! under this gateway's keys, so a gateway started with a seed of its own (its own keys folder,
//! its own `keys new --subject`) would index people where no lookup finds them, and destroy
//! nothing the others indexed. The first gateway to load a scope's key for a year records a
//! fingerprint of it beside the ledger; every gateway compares its own with the one recorded, at
//! start-up (refusing to start on a difference) and hourly with retention (the turn of a year).
//!
//! The fingerprint is a keyed hash of a fixed label (`IndexKey::fingerprint`): it shows whether
//! two keys are the same and nothing of either. This catches a mistake, not an insider: whoever
//! can write the database and the key files can make both agree.

use jiff::Timestamp;

use crate::ledger::{KeyFingerprint, Ledger, LedgerError, micros};
use crate::policy::agreement::utc_date;
use crate::policy::keys::SubjectKeys;

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(
        "the subject-index key of {scope} for {year} is not the one gateway {recorded_by} recorded in this database: \
         this gateway holds another seed, so subject access would miss what the other indexed. Gateways sharing a \
         database share one copy of index/subject: give this one that gateway's (keep this one's folder if it ever \
         served: what it indexed is found only under its own seed). README, \"Same keys\", says how to recover"
    )]
    Diverged {
        scope: String,
        year: i16,
        recorded_by: String,
    },
}

/// Compares this gateway's subject-index keys for the year of `now` and the next (a gateway whose
/// clock runs a little ahead indexes there) with the fingerprints recorded, recording any not yet
/// there. A year whose key is destroyed is skipped.
pub async fn check(ledger: &dyn Ledger, keys: &SubjectKeys, gateway: &str, now: Timestamp) -> Result<(), SeedError> {
    let year = utc_date(now).year();
    for (scope, _) in keys.scopes() {
        for y in [year, year.saturating_add(1)] {
            let Some(key) = keys.get(&scope, y) else {
                continue;
            };
            let mine = KeyFingerprint {
                scope: scope.clone(),
                year: y,
                fingerprint: key.fingerprint(),
                gateway: gateway.to_owned(),
                recorded_at_us: micros(now),
            };
            let recorded = ledger.subject_key_fingerprint(&mine).await?;
            if recorded.fingerprint != mine.fingerprint {
                return Err(SeedError::Diverged {
                    scope,
                    year: y,
                    recorded_by: recorded.gateway,
                });
            }
        }
    }
    Ok(())
}
