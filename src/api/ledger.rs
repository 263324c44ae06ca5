//! The ledger for auditors: the latest signed checkpoint, on-demand checkpoints, and Merkle
//! proofs (inclusion of an entry in a tree; consistency of a smaller tree with a larger one).

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::bodies::{ConsistencyProof, CosignatureSubmission, InclusionProof, SignedCheckpoint};
use super::{ApiError, AppState, ErrorBody, auditor};
use crate::ledger::checkpoint::public_key_text;

async fn checkpoint_body(
    state: &AppState,
    cp: &crate::ledger::checkpoint::Checkpoint,
) -> Result<SignedCheckpoint, ApiError> {
    let cosignatures = state.ledger.cosignatures(cp.tree_size).await?;
    Ok(SignedCheckpoint {
        checkpoint: cp.to_json(),
        public_key: public_key_text(&state.checkpointer.public_key()),
        note: state.checkpointer.note(cp, &cosignatures),
    })
}

/// `GET /v1/ledger/checkpoint`: the latest signed checkpoint and the key it is signed with.
#[utoipa::path(get, path = "/v1/ledger/checkpoint", tag = "ledger", security(("mutual_tls" = [], "bearer" = [])),
    responses((status = 200, description = "The latest checkpoint.", body = SignedCheckpoint),
        (status = 404, description = "None signed yet.", body = ErrorBody)))]
pub async fn latest(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    auditor(&req, &state)?;
    let cps = state.ledger.checkpoints().await?;
    // Never re-sign what the database says: the newest row that carries the key's own signature
    // over a tree this gateway holds (another gateway's newer one waits until this one catches
    // up), and whose root is the ledger's own at that size.
    let public = state.checkpointer.public_key();
    let size = state.ledger.tree_size().await;
    if cps.last().is_some_and(|cp| !cp.verify(&public)) {
        tracing::error!("ALERT: the latest stored checkpoint row is not signed by this gateway's key; not served");
    }
    let cp = cps
        .iter()
        .rev()
        .find(|cp| cp.verify(&public) && cp.tree_size <= size)
        .ok_or_else(ApiError::not_found)?;
    if state.ledger.root(cp.tree_size).await? != cp.root {
        return Err(not_the_ledgers(cp.tree_size, "root is"));
    }
    // Of the whole ledger: its agreement heads must be the ledger's too (what bundles prove
    // complete against; the chain holds them, so this costs nothing). An older one's were checked
    // at start-up if it was the newest then, when it was signed, and by `ledger verify`.
    if let Some(signed) = &cp.agreements
        && state.ledger.tree_size().await == cp.tree_size
        && &state.ledger.heads_at(cp.tree_size).await? != signed
    {
        return Err(not_the_ledgers(cp.tree_size, "agreement heads are"));
    }
    Ok(HttpResponse::Ok().json(checkpoint_body(&state, cp).await?))
}

/// A signed checkpoint whose root or agreement heads (`what`: "root is", …) are not the ledger's: an alert,
/// and the checkpoint is not served.
fn not_the_ledgers(tree_size: u64, what: &str) -> ApiError {
    tracing::error!(
        tree_size,
        "ALERT: a signed checkpoint's {what} not the ledger's; not served"
    );
    ApiError::ledger_unavailable(&crate::ledger::LedgerError::Corrupt {
        seq: i64::try_from(tree_size).unwrap_or(i64::MAX),
        what: format!("a checkpoint's {what} not the ledger's"),
    })
}

/// `POST /v1/ledger/checkpoints`: sign one now, covering every entry so far.
#[utoipa::path(post, path = "/v1/ledger/checkpoints", tag = "ledger", security(("mutual_tls" = [], "bearer" = [])),
    responses((status = 200, description = "A checkpoint covering every entry so far.", body = SignedCheckpoint),
        (status = 404, description = "The ledger is empty.", body = ErrorBody),
        (status = 503, description = "The ledger does not verify or does not answer; nothing signed.", body = ErrorBody)))]
pub async fn make(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    auditor(&req, &state)?;
    let cp = state.checkpointer.checkpoint_now().await?;
    let cp = cp.ok_or_else(ApiError::not_found)?;
    Ok(HttpResponse::Ok().json(checkpoint_body(&state, &cp).await?))
}

/// `POST /v1/ledger/cosignatures`: a witness's cosignature on a checkpoint this gateway signed.
/// Kept (append-only) and served from then on as a signature line of the checkpoint's note.
#[utoipa::path(post, path = "/v1/ledger/cosignatures", tag = "ledger", request_body = CosignatureSubmission,
    security(("mutual_tls" = [], "bearer" = [])),
    description = "The witness must be one of `ledger.witnesses` (name and key id), the checkpoint one this \
        gateway signed (tree size and root), and the signature must verify (C2SP tlog-cosignature, Ed25519 \
        cosignature/v1). The first cosignature a witness gives on a tree size is the one kept.",
    responses((status = 200, description = "Kept (or already kept): the checkpoint with every cosignature kept for it.",
            body = SignedCheckpoint),
        (status = 400, description = "The root is not 64 hex characters (`invalid_cosignature_request`).", body = ErrorBody),
        (status = 422, description = "Refused: `malformed_cosignature`, `unknown_witness`, `unknown_checkpoint`, \
            `invalid_cosignature` or `cosignature_from_the_future`.", body = ErrorBody)))]
pub async fn cosign(
    req: HttpRequest,
    body: web::Json<CosignatureSubmission>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let system = auditor(&req, &state)?;
    let Some(root) = hex::decode(&body.root).ok().and_then(|r| <[u8; 32]>::try_from(r).ok()) else {
        return Err(ApiError::bad_request(
            "invalid_cosignature_request",
            "root must be the checkpoint's root as 64 hex characters.",
        ));
    };
    let outcome = crate::audit::witnesses::accept(
        state.ledger.as_ref(),
        &state.checkpointer,
        body.tree_size,
        &root,
        &body.cosignature,
        // The witness's timestamp is real time: compared with the real clock, whatever clock
        // decisions are made under.
        jiff::Timestamp::now(),
    )
    .await?;
    match outcome {
        Ok(accepted) => {
            tracing::info!(system = %system.id, tree_size = body.tree_size, new = accepted.new, "witness cosignature kept");
            Ok(HttpResponse::Ok().json(checkpoint_body(&state, &accepted.checkpoint).await?))
        }
        Err(refusal) => {
            tracing::warn!(system = %system.id, code = refusal.code(), "witness cosignature refused");
            Err(ApiError::new(
                actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
                refusal.code(),
                &refusal.to_string(),
            ))
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InclusionQuery {
    /// The entry's sequence number (1-based).
    #[param(minimum = 1)]
    seq: i64,
    /// The size of the tree (a checkpoint's `tree_size`).
    tree_size: u64,
}

fn bad_proof(what: &str) -> ApiError {
    ApiError::new(actix_web::http::StatusCode::BAD_REQUEST, "invalid_proof_request", what)
}

/// `GET /v1/ledger/proof/inclusion?seq=&tree_size=`: the entry's leaf hash and audit path.
#[utoipa::path(get, path = "/v1/ledger/proof/inclusion", tag = "ledger", params(InclusionQuery),
    security(("mutual_tls" = [], "bearer" = [])),
    responses((status = 200, description = "The proof.", body = InclusionProof),
        (status = 400, description = "Out of range (`invalid_proof_request`) or malformed query.", body = ErrorBody)))]
pub async fn inclusion(
    req: HttpRequest,
    q: web::Query<InclusionQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auditor(&req, &state)?;
    if q.seq < 1 || q.seq as u64 > q.tree_size || q.tree_size > state.ledger.tree_size().await {
        return Err(bad_proof(
            "seq must be within 1..=tree_size, and tree_size within the ledger.",
        ));
    }
    let entry = state.ledger.entries_after(q.seq - 1, 1).await?;
    let entry = entry.first().ok_or_else(ApiError::not_found)?;
    let path = state
        .ledger
        .inclusion_proof(q.seq, q.tree_size)
        .await
        .map_err(|_| bad_proof("no such proof"))?;
    Ok(HttpResponse::Ok().json(InclusionProof {
        seq: q.seq,
        leaf_index: q.seq - 1,
        tree_size: q.tree_size,
        leaf_hash: hex::encode(crate::ledger::Entry::leaf(entry.seq, &entry.prev_hash, &entry.event)),
        path: path.iter().map(hex::encode).collect(),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyQuery {
    /// The smaller tree's size.
    from: u64,
    /// The larger tree's size.
    to: u64,
}

/// `GET /v1/ledger/proof/consistency?from=&to=`: the proof that tree `from` is a prefix of `to`.
#[utoipa::path(get, path = "/v1/ledger/proof/consistency", tag = "ledger", params(ConsistencyQuery),
    security(("mutual_tls" = [], "bearer" = [])),
    responses((status = 200, description = "The proof.", body = ConsistencyProof),
        (status = 400, description = "Out of range (`invalid_proof_request`) or malformed query.", body = ErrorBody)))]
pub async fn consistency(
    req: HttpRequest,
    q: web::Query<ConsistencyQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    auditor(&req, &state)?;
    if q.from > q.to || q.to > state.ledger.tree_size().await {
        return Err(bad_proof("from must not exceed to, and to must be within the ledger."));
    }
    let path = state
        .ledger
        .consistency_proof(q.from, q.to)
        .await
        .map_err(|_| bad_proof("no such proof"))?;
    Ok(HttpResponse::Ok().json(ConsistencyProof {
        from: q.from,
        to: q.to,
        path: path.iter().map(hex::encode).collect(),
    }))
}
