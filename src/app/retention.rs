//! Retention of the subject index (crypto-shredding).
//!
//! Every entry that names a person carries the keyed hash of their NHS number under its
//! agreement's subject-index key for the year of the decision (`policy::keys::SubjectKeys`).
//! Once an agreement's retention period for a year has passed, that year's key is destroyed: the
//! entries stay in the ledger byte for byte (so the chain, the tree, the checkpoints and every
//! witness's cosignature still verify), but nobody, the gateway included, can any longer link
//! them to a person, and subject access no longer finds them.
//!
//! Year `Y` of a scope whose retention is `R` years is destroyed from 1 January of `Y + 1 + R`
//! (UTC): every entry of that year is then at least `R` years old, and none is kept linkable more
//! than a year beyond its period. The lookups' own scope (`subject-access`) is kept as long as the
//! longest retention of any agreement. A scope whose agreement is no longer loaded is kept (its
//! period is not known) and reported.
//!
//! Each destruction is recorded in the ledger (`retention`, with the agreement's version and
//! content hash and the years destroyed) before the key is overwritten, under the seeds' folder
//! lock and only once the seed is known to be there, due and writable: a crash between the two
//! leaves the key live and the next run records and destroys it again.
//!
//! Held transfers and dead letters lose their bytes by the delivery worker's own limits
//! (`Delivery::expire`); delivered bytes leave the outbox in the transaction that records them.

use jiff::Timestamp;
use uuid::Uuid;

use crate::app::keystore::{KeyError, KeyStore, SubjectSeedFile};
use crate::ledger::{Event, EventKind, Ledger, LedgerError, TransferStatus, ledger_time};
use crate::policy::agreement::{Agreements, utc_date};
use crate::policy::keys::{SUBJECT_ACCESS_SCOPE, SubjectKeys};

/// What retention says of one scope's keys, as of a date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopePlan {
    pub scope: String,
    /// The earliest year whose key is live.
    pub first_live: i16,
    /// The agreement's retention in years (`None`: the agreement is not loaded, nothing is done).
    pub retention_years: Option<u16>,
    /// The earliest year that must be kept as of the date; keys of earlier years are due.
    pub keep_from: Option<i16>,
}

impl ScopePlan {
    /// The years due for destruction, if any.
    pub fn due(&self) -> Option<(i16, i16)> {
        let keep_from = self.keep_from?;
        (self.first_live < keep_from).then(|| (self.first_live, keep_from - 1))
    }

    /// The date the earliest live year's key goes (for the operator's listing).
    pub fn next_destruction(&self) -> Option<i32> {
        self.retention_years
            .map(|r| i32::from(self.first_live) + 1 + i32::from(r))
    }
}

/// Why retention could not run.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// The retention plan as of `as_of` for each of `seeds` (`KeyStore::subject_seeds`).
pub fn plan(seeds: &[SubjectSeedFile], agreements: &Agreements, as_of: Timestamp) -> Vec<ScopePlan> {
    let year = utc_date(as_of).year();
    let longest = agreements.iter().map(|a| a.terms().retention.years).max();
    seeds
        .iter()
        .map(|seed| {
            let retention_years = if seed.scope == SUBJECT_ACCESS_SCOPE {
                longest
            } else {
                agreements.get(&seed.scope).map(|a| a.terms().retention.years)
            };
            let keep_from = retention_years.map(|r| i16::try_from(i32::from(year) - i32::from(r)).unwrap_or(i16::MIN));
            ScopePlan {
                scope: seed.scope.clone(),
                first_live: seed.first_year,
                retention_years,
                keep_from,
            }
        })
        .collect()
}

/// One destruction done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destroyed {
    pub scope: String,
    pub years: (i16, i16),
    pub ledger_seq: i64,
}

/// Destroys every key due as of `as_of`, each recorded in the ledger first (at the real time
/// `now`); `live` (a running gateway's keys) forgets them too.
pub async fn run(
    ledger: &dyn Ledger,
    store: &KeyStore,
    agreements: &Agreements,
    live: Option<&SubjectKeys>,
    as_of: Timestamp,
    now: Timestamp,
) -> Result<Vec<Destroyed>, RetentionError> {
    let mut done = Vec::new();
    // A running gateway first takes in what another process destroyed (one way: `set` never
    // brings an older seed back), so its memory holds no key the disk no longer has.
    let seeds = store.subject_seeds()?;
    if let Some(live) = live {
        for seed in &seeds {
            live.set(&seed.scope, seed.first_year, &seed.material);
        }
    }
    for p in plan(&seeds, agreements, as_of) {
        let (Some((from, to)), Some(years)) = (p.due(), p.retention_years) else {
            continue;
        };
        let mut event = Event::new(
            ledger_time(now),
            Uuid::now_v7(),
            EventKind::Retention,
            TransferStatus::Accepted,
            &p.scope,
            "gateway",
        );
        if let Some(a) = agreements.get(&p.scope) {
            event.agreement_version = Some(a.version().to_owned());
            event.agreement_hash = Some(a.content_hash().to_owned());
        }
        event.reason_code = Some("subject_index_keys_destroyed".into());
        event.detail = Some(format!(
            "subject-index keys for {from}–{to} destroyed (retention {years} years, as of {}): those years' \
             entries can no longer be linked to a person",
            utc_date(as_of)
        ));
        let recorded = store
            .destroy_subject_keys_before(&p.scope, to + 1, async {
                ledger.append(event).await.map_err(RetentionError::from)
            })
            .await?;
        // Another process destroyed them first (and recorded it): nothing more to say.
        let Some(receipt) = recorded else {
            continue;
        };
        tracing::warn!(scope = %p.scope, from, to, seq = receipt.seq, "retention: subject-index keys destroyed");
        done.push(Destroyed {
            scope: p.scope,
            years: (from, to),
            ledger_seq: receipt.seq,
        });
    }
    Ok(done)
}
