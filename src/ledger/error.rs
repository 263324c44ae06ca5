//! What can go wrong with the ledger.

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("ledger database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("ledger migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("ledger row {seq} is unreadable: {what}")]
    Corrupt { seq: i64, what: String },
    #[error("unsupported database URL (expected sqlite://… or postgres://…)")]
    UnsupportedUrl,
    #[error("the idempotency key is already bound to a transfer")]
    IdempotencyKeyTaken,
    #[error("too many transfers are held for a director under this agreement, or for this user")]
    HeldQuotaExceeded,
    #[error("the ledger's writer has stopped")]
    WriterStopped,
    #[error("the ledger could not record the write: {0}")]
    Unrecorded(String),
    #[error(
        "the ledger's database holds entry {0} out of sequence or not linked to the entry before it \
         (restored, failed over or edited): run `ledger verify`"
    )]
    OutOfSequence(i64),
    #[error(
        "ledger entry {0} in the database is not the one this gateway holds (restored, failed over or \
         edited): no writes until the gateway restarts and `ledger verify` passes"
    )]
    HeadMismatch(i64),
    #[error("the ledger has no tree of size {0}")]
    BeyondTree(u64),
    #[error("a ledger computation stopped: {0}")]
    Interrupted(String),
}
