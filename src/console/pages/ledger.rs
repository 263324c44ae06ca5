//! Auditors: the ledger's state (entries, the latest signed checkpoint and its key, the
//! checkpoint log kept outside the database) and "verify now": the same checks as
//! `isa-gateway ledger verify` (chain, tree, every checkpoint under the gateway's key, then the
//! listings and subject index re-derived from the entries), run in the gateway, with the last
//! result kept for the page.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use maud::html;

use super::audit::auditor;
use super::layout::{self, london};
use super::{Fields, field, respond};
use crate::api::AppState;
use crate::app::config::SystemRole;
use crate::console::session::Signed;
use crate::console::{Console, ConsoleError};
use crate::ledger::checkpoint::public_key_text;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/audit/ledger", web::get().to(show))
        .route("/audit/ledger/verify", web::post().to(verify_now));
}

/// The last "verify now" this gateway ran: when, for whom, and what it found.
#[derive(Debug, Clone)]
pub struct VerifyRun {
    at: jiff::Timestamp,
    /// How long it took: the next may start no sooner after it.
    took: jiff::SignedDuration,
    by: String,
    entries: i64,
    checkpoints: usize,
    /// `None`: everything verified; otherwise the first problem, as `ledger verify` words it.
    problem: Option<String>,
}

async fn show(
    who: Signed,
    state: web::Data<AppState>,
    console: web::Data<Console>,
) -> Result<HttpResponse, ConsoleError> {
    auditor(&who)?;
    console.system_for(&state, &who.user, SystemRole::Auditor, |_| true)?;
    let size = state.ledger.tree_size().await;
    let latest = state.ledger.checkpoints().await?.pop();
    let last = console.last_verify.lock().await.clone();
    let running = console.verifying.try_lock().is_err();
    let log = state.checkpointer.log();
    Ok(respond(layout::page(
        "Ledger",
        &who,
        html! {
            dl.facts {
                dt { "Entries" } dd { (size) }
                dt { "Latest signed checkpoint" } dd {
                    @if let Some(cp) = &latest {
                        "Tree size " (cp.tree_size) ", " (london(cp.at))
                        @if cp.verify(&state.checkpointer.public_key()) { ", signed with the key below" }
                        @else { " " strong.warning { "— its signature is not the gateway's: run Verify now" } }
                        br; "Root " code.hash { (hex::encode(cp.root)) }
                    } @else { "None signed yet" }
                }
                dt { "Checkpoint key" } dd { code.hash { (public_key_text(&state.checkpointer.public_key())) } }
                dt { "Checkpoint log (outside the database)" } dd {
                    @if let Some(log) = log { code { (log.dir().display()) } " (origin " code { (log.origin()) } ")" }
                    @else { span.warning { "Not configured: checkpoints are kept only in the database." } }
                }
            }
            h2 { "Verification" }
            @if let Some(v) = &last {
                @if let Some(p) = &v.problem {
                    div.error-summary role="alert" { h3 { "The ledger does not verify" } p { (p) } p { "Checked " (london(v.at)) " for " (v.by) "." } }
                } @else {
                    div.panel.ok role="status" { p { "Verified " (london(v.at)) " for " (v.by) ": " (v.entries) " entries, " (v.checkpoints) " checkpoint(s)" @if log.is_some() { ", the checkpoint log" } ", and every listing and subject-index row." } }
                }
            } @else { p { "Not verified from the console since the gateway started." } }
            p.hint { "Verify now re-hashes every entry, rebuilds the Merkle tree, checks every checkpoint's signature and root, re-derives the listings from the entries, and checks the ledger still extends every checkpoint in the checkpoint log, each still stored in the database. Auditors who do not trust this gateway run " code { "isa-gateway ledger verify --public-key …" } " themselves." }
            @if running { p role="status" { strong { "A verification is running: reload this page in a moment." } } }
            form method="post" action="/audit/ledger/verify" {
                input type="hidden" name="csrf" value=(who.csrf);
                button type="submit" { "Verify now" }
            }
        },
    )))
}

async fn verify_now(
    who: Signed,
    state: web::Data<AppState>,
    console: web::Data<Console>,
    form: Fields,
) -> Result<HttpResponse, ConsoleError> {
    who.check_csrf(field(&form, "csrf"))?;
    auditor(&who)?;
    console.system_for(&state, &who.user, SystemRole::Auditor, |_| true)?;
    // In the background, so no request waits on a whole-ledger rehash; one at a time; and not
    // again sooner than the last run took (the gateway spends at most half its time on it).
    let rested = console
        .last_verify
        .lock()
        .await
        .as_ref()
        .is_none_or(|v| crate::platform::clock::WallClock::now() >= v.at + v.took);
    if rested {
        let by = who.name.clone();
        let sub = who.user.sub.clone();
        // On the console's own worker (the verification's progress callback is not `Send`).
        actix_web::rt::spawn(async move {
            let Ok(_running) = console.verifying.try_lock() else {
                return;
            };
            let started = std::time::Instant::now();
            let run = check(&state).await;
            let problem = match run {
                Ok((_, ref problem)) => problem.clone(),
                Err(ref e) => Some(format!("the ledger could not be read: {e}")),
            };
            match &problem {
                None => tracing::info!(user = ?sub, "console: ledger verified"),
                Some(p) => tracing::error!(user = ?sub, problem = %p, "ALERT: console: the ledger does not verify"),
            }
            let report = run.ok().map(|(r, _)| r);
            *console.last_verify.lock().await = Some(VerifyRun {
                at: crate::platform::clock::WallClock::now(),
                took: started.elapsed().try_into().unwrap_or(jiff::SignedDuration::ZERO),
                by,
                entries: report.as_ref().map_or(0, |r| r.entries),
                checkpoints: report.as_ref().map_or(0, |r| r.checkpoints),
                problem,
            });
        });
    }
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/audit/ledger"))
        .finish())
}

/// The checks of `ledger verify`, in its order: chain, tree and checkpoints; the listings and
/// subject index; then every checkpoint in the checkpoint log, extended by the ledger and still
/// stored in the database.
async fn check(state: &AppState) -> Result<(crate::ledger::VerifyReport, Option<String>), crate::ledger::LedgerError> {
    let ledger = state.ledger.as_ref();
    let public = state.checkpointer.public_key();
    let report = crate::ledger::verify(ledger, &public, &mut |_| {}).await?;
    let broken = report.first_break.as_ref().map(ToString::to_string);
    if broken.is_some() {
        return Ok((report, broken));
    }
    if let Some(problem) = crate::ledger::verify_transfers(ledger).await? {
        return Ok((report, Some(problem)));
    }
    let kept = match state.checkpointer.log() {
        Some(log) => log.read(&public)?,
        None => Vec::new(),
    };
    let problem = crate::audit::checkpoint_log::check_kept(ledger, &kept, kept.len()).await?;
    Ok((report, problem))
}
