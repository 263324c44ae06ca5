//! Makes signed checkpoints over the ledger's Merkle tree: every N entries or T seconds (when it
//! has grown), and on demand.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::audit::checkpoint_log::{CheckpointLog, extends};
use crate::ledger::checkpoint::Checkpoint;
use crate::ledger::cosignature::Witness;
use crate::ledger::signing::CheckpointKey;
use crate::ledger::{Ledger, LedgerError, StoredCosignature, note};
use crate::platform::clock::Clock;

/// What a checkpoint is called outside the database, where it is also kept, and who cosigns it.
#[derive(Debug, Clone)]
pub struct Publication {
    /// The checkpoints' origin line: this ledger's name for auditors and witnesses.
    pub origin: String,
    /// Where every signed checkpoint is also written, outside the database.
    pub log: Option<CheckpointLog>,
    /// The witnesses whose cosignatures the gateway accepts and keeps.
    pub witnesses: Vec<Witness>,
}

pub struct Checkpointer {
    ledger: Arc<dyn Ledger>,
    key: CheckpointKey,
    /// Where every signed checkpoint is also written, outside the database.
    log: Option<CheckpointLog>,
    origin: String,
    witnesses: Vec<Witness>,
    clock: Clock,
    every_entries: u64,
    every: Duration,
    /// The last checkpoint made, and when.
    last: Mutex<(Option<Checkpoint>, Instant)>,
}

impl Checkpointer {
    pub async fn new(
        ledger: Arc<dyn Ledger>,
        key: CheckpointKey,
        clock: Clock,
        every_entries: u64,
        every: Duration,
        publication: Publication,
    ) -> Result<Self, LedgerError> {
        let last = trusted_last(ledger.as_ref(), &key.public()).await?;
        let me = Self {
            ledger,
            key,
            log: publication.log,
            origin: publication.origin,
            witnesses: publication.witnesses,
            clock,
            every_entries,
            every,
            last: Mutex::new((last, Instant::now())),
        };
        me.check_against_log().await?;
        Ok(me)
    }

    /// The ledger as stored still extends the latest checkpoint kept outside the database.
    pub async fn check_against_log(&self) -> Result<(), LedgerError> {
        let Some(log) = &self.log else { return Ok(()) };
        match log.latest(&self.key.public())? {
            Some(kept) => extends(self.ledger.as_ref(), &kept).await,
            None => Ok(()),
        }
    }

    /// The checkpoint log kept outside the database, if one is configured.
    pub fn log(&self) -> Option<&CheckpointLog> {
        self.log.as_ref()
    }

    pub fn public_key(&self) -> ed25519_dalek::VerifyingKey {
        self.key.public()
    }

    /// The checkpoints' origin line.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The witnesses whose cosignatures are accepted.
    pub fn witnesses(&self) -> &[Witness] {
        &self.witnesses
    }

    /// `cp` as a C2SP signed note: the gateway's signature, then every kept cosignature on that
    /// very tree (size and root) as further signature lines.
    pub fn note(&self, cp: &Checkpoint, cosignatures: &[StoredCosignature]) -> String {
        let tree = cp.tree();
        let mut text = note::sign(&self.origin, &tree, &self.key);
        for c in cosignatures.iter().filter(|c| c.tree() == tree) {
            text.push_str(&c.cosignature.line());
            text.push('\n');
        }
        text
    }

    /// Signs and stores a checkpoint of the whole ledger now, unless the latest already covers it
    /// (and signs the agreements' heads: one made before them is signed again, at the next size).
    pub async fn checkpoint_now(&self) -> Result<Option<Checkpoint>, LedgerError> {
        let mut last = self.last.lock().await;
        let size = self.ledger.tree_size().await;
        if size == 0
            || last
                .0
                .as_ref()
                .is_some_and(|c| c.tree_size >= size && c.agreements.is_some())
        {
            return Ok(last.0.clone());
        }
        // Never sign a tree that does not extend what was signed before, as kept outside.
        self.check_against_log().await?;
        let (size, root, lines) = self.ledger.commitment().await?;
        if last.0.as_ref().is_some_and(|c| c.tree_size >= size) {
            // A checkpoint made before the agreements' heads, at the size the ledger still has:
            // checkpoints are one per size, so the heads are signed with the next entry.
            return Ok(last.0.clone());
        }
        let cp = Checkpoint::sign(size, root, lines, self.clock.now(), &self.key);
        self.ledger.store_checkpoint(&cp).await?;
        if let Some(log) = &self.log {
            log.append(&cp, &self.key)?;
        }
        tracing::info!(tree_size = size, root = %hex::encode(cp.root), "ledger checkpoint signed");
        *last = (Some(cp.clone()), Instant::now());
        Ok(Some(cp))
    }

    /// Runs until the process ends.
    pub async fn run(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.every.min(Duration::from_secs(5))).await;
            let due = {
                let last = self.last.lock().await;
                let covered = last.0.as_ref().map_or(0, |c| c.tree_size);
                let size = self.ledger.tree_size().await;
                size > covered && (size - covered >= self.every_entries || last.1.elapsed() >= self.every)
            };
            if due && let Err(e) = self.checkpoint_now().await {
                tracing::error!(error = %e, "cannot make a ledger checkpoint; will retry");
            }
        }
    }
}

/// The newest stored checkpoint this gateway's key signed, once checked against the ledger as
/// stored: its root and its agreement heads at its size. A row
/// another key signed is passed over (the API alerts on it). A checkpoint the key signed that the
/// ledger does not match is an error: history was rewritten, or a checkpoint was made with the
/// key outside this gateway; nothing is signed over it.
pub async fn trusted_last(
    ledger: &dyn Ledger,
    public: &ed25519_dalek::VerifyingKey,
) -> Result<Option<Checkpoint>, LedgerError> {
    let Some(cp) = ledger.checkpoints().await?.into_iter().rev().find(|c| c.verify(public)) else {
        return Ok(None);
    };
    let broken = |what: &str| {
        Err(LedgerError::Unrecorded(format!(
            "the latest checkpoint signed with this gateway's key (tree size {}) {what}: history may have been \
             rewritten, or the key used elsewhere; nothing will be signed over it",
            cp.tree_size
        )))
    };
    match ledger.root(cp.tree_size).await {
        Ok(root) if root == cp.root => {}
        Ok(_) | Err(LedgerError::BeyondTree(_)) => return broken("is not of the ledger as stored"),
        Err(e) => return Err(e),
    }
    // Its heads, worked out again from the entries' bytes up to its size.
    if let Some(signed) = &cp.agreements
        && &ledger.heads_at(cp.tree_size).await? != signed
    {
        return broken("signs per-agreement heads the entries do not have");
    }
    Ok(Some(cp))
}
