//! The ledger for auditors: the latest signed checkpoint, on-demand checkpoints, and Merkle
//! proofs (inclusion of an entry in a tree; consistency of a smaller tree with a larger one).

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::{ApiError, AppState, auditor};
use crate::ledger::checkpoint::public_key_text;

fn checkpoint_body(state: &AppState, cp: &crate::ledger::checkpoint::Checkpoint) -> serde_json::Value {
    serde_json::json!({
        "checkpoint": cp.to_json(),
        "public_key": public_key_text(&state.checkpointer.public_key()),
    })
}

/// `GET /v1/ledger/checkpoint`: the latest signed checkpoint and the key it is signed with.
pub async fn latest(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    auditor(&req, &state)?;
    let cps = state.ledger.checkpoints().await.map_err(|e| ApiError::internal(&e))?;
    let cp = cps.last().ok_or_else(ApiError::not_found)?;
    Ok(HttpResponse::Ok().json(checkpoint_body(&state, cp)))
}

/// `POST /v1/ledger/checkpoints`: sign one now, covering every entry so far.
pub async fn make(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    auditor(&req, &state)?;
    let cp = state
        .checkpointer
        .checkpoint_now()
        .await
        .map_err(|e| ApiError::ledger_unavailable(&e))?;
    let cp = cp.ok_or_else(ApiError::not_found)?;
    Ok(HttpResponse::Ok().json(checkpoint_body(&state, &cp)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionQuery {
    seq: i64,
    tree_size: u64,
}

fn bad_proof(what: &str) -> ApiError {
    ApiError::new(actix_web::http::StatusCode::BAD_REQUEST, "invalid_proof_request", what)
}

/// `GET /v1/ledger/proof/inclusion?seq=&tree_size=`: the entry's leaf hash and audit path.
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
    let entry = state
        .ledger
        .entries_after(q.seq - 1, 1)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let entry = entry.first().ok_or_else(ApiError::not_found)?;
    let path = state
        .ledger
        .inclusion_proof(q.seq, q.tree_size)
        .await
        .map_err(|_| bad_proof("no such proof"))?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "seq": q.seq,
        "leaf_index": q.seq - 1,
        "tree_size": q.tree_size,
        "leaf_hash": hex::encode(crate::ledger::Entry::leaf(entry.seq, &entry.prev_hash, &entry.event)),
        "path": path.iter().map(hex::encode).collect::<Vec<_>>(),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    from: u64,
    to: u64,
}

/// `GET /v1/ledger/proof/consistency?from=&to=`: the proof that tree `from` is a prefix of `to`.
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
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "from": q.from,
        "to": q.to,
        "path": path.iter().map(hex::encode).collect::<Vec<_>>(),
    })))
}
