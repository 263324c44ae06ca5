//! Directors: the held queue, one transfer with its history, approve or refuse with a reason code
//! and a case-record reference. Through `api::follow_ups::judge`, the API's own steps (the
//! two-person rule read from the re-hashed decision entry, the agreement still in force).

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use maud::html;

use super::layout::{self, london};
use super::{Fields, field, respond};
use crate::api::AppState;
use crate::api::follow_ups::{Judgement, director, follow_ups_of, judge, review_as};
use crate::app::config::SystemRole;
use crate::console::session::Signed;
use crate::console::{Console, ConsoleError};
use crate::ledger::{FollowUp, TransferStatus};
use crate::platform::auth::UserRole;
use crate::policy::follow_up::{ApproveReason, Code, RefuseReason, ReviewOutcome};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/held", web::get().to(queue))
        .route("/transfers/{id}", web::get().to(show))
        .route("/transfers/{id}/approve", web::post().to(approve))
        .route("/transfers/{id}/refuse", web::post().to(refuse))
        .route("/transfers/{id}/review", web::post().to(review));
}

fn waiting(since: jiff::Timestamp) -> String {
    let mins = crate::platform::clock::WallClock::now().duration_since(since).as_secs() / 60;
    match mins {
        m if m < 60 => format!("{m} min"),
        m if m < 48 * 60 => format!("{} h {} min", m / 60, m % 60),
        m => format!("{} days", m / (24 * 60)),
    }
}

async fn queue(
    who: Signed,
    state: web::Data<AppState>,
    console: web::Data<Console>,
) -> Result<HttpResponse, ConsoleError> {
    director(&who.user)?;
    let mut held = Vec::new();
    let mut reviews = Vec::new();
    for s in console.systems_for(&state, &who.user, SystemRole::Sender)? {
        held.extend(follow_ups_of(&state, FollowUp::Held, &s.id).await?);
        reviews.extend(follow_ups_of(&state, FollowUp::ReviewsOutstanding, &s.id).await?);
    }
    held.sort_by_key(|r| r.created_at);
    reviews.sort_by_key(|r| r.review_due);
    let now = state.clock.now();
    Ok(respond(layout::page(
        "Held for approval",
        &who,
        html! {
            p.hint { "Oldest first. You cannot approve a transfer you asked for yourself: a second person must (the two-person rule)." }
            @if held.is_empty() { p { "Nothing is waiting." } }
            @else {
                table {
                    caption.visually-hidden { "Transfers held for a director" }
                    thead { tr { th scope="col" { "Asked" } th scope="col" { "Waiting" } th scope="col" { "Agreement" } th scope="col" { "Message" } th scope="col" { "To" } th scope="col" { "Asked by" } th scope="col" { "" } } }
                    tbody {
                        @for r in &held {
                            tr {
                                td { (london(r.created_at)) }
                                td { (waiting(r.created_at)) }
                                td { (r.agreement_id) }
                                td { (r.message_type.as_deref().unwrap_or("—")) }
                                td { (r.recipient.as_deref().unwrap_or("—")) }
                                td { (r.user_sub.as_deref().unwrap_or("—")) }
                                td { a href=(format!("/transfers/{}", r.transfer_id)) { "Open" } }
                            }
                        }
                    }
                }
            }
            h2 { "Urgent transfers awaiting review" }
            p.hint { "Sent at once because the risk was immediate; a director reviews each one afterwards. Overdue first." }
            @if reviews.is_empty() { p { "No review is outstanding." } }
            @else {
                table {
                    caption.visually-hidden { "Urgent transfers awaiting a director's review" }
                    thead { tr { th scope="col" { "Review by" } th scope="col" { "Sent" } th scope="col" { "Agreement" } th scope="col" { "Asked by" } th scope="col" { "" } } }
                    tbody {
                        @for r in &reviews {
                            tr {
                                td { @if let Some(due) = r.review_due { (london(due)) @if due < now { " " strong.warning { "overdue" } } } }
                                td { (london(r.created_at)) }
                                td { (r.agreement_id) }
                                td { (r.user_sub.as_deref().unwrap_or("—")) }
                                td { a href=(format!("/transfers/{}", r.transfer_id)) { "Review" } }
                            }
                        }
                    }
                }
            }
        },
    )))
}

/// Whether the signed-in person may be the one who asked, by the two-person rule's comparison
/// (look-alikes included): for explaining why they cannot decide, never for granting access.
fn asked_by(r: &crate::ledger::TransferRecord, who: &Signed) -> bool {
    use crate::policy::follow_up::Person;
    r.user_sub.as_deref().is_some_and(|sub| {
        Person { issuer: None, sub }.looks_like(&Person {
            issuer: None,
            sub: &who.user.sub,
        })
    })
}

/// Whether the signed-in person is exactly the one who asked: the same subject, and the same
/// issuer in the decision entry (re-read from the ledger, not the listing's column).
async fn asked_exactly(
    state: &AppState,
    r: &crate::ledger::TransferRecord,
    who: &Signed,
) -> Result<bool, ConsoleError> {
    if r.user_sub.as_deref() != Some(who.user.sub.as_str()) {
        return Ok(false);
    }
    Ok(state.ledger.entries_of(&[r.transfer_id]).await?.iter().any(|e| {
        e.event.kind == crate::ledger::EventKind::Decision
            && e.event.transfer_id == r.transfer_id
            && e.event.user_sub.as_deref() == Some(who.user.sub.as_str())
            && e.event.user_issuer.as_deref() == Some(who.user.issuer.as_str())
    }))
}

/// The transfer, as the API shows it: sent through one of the console's systems, and seen by the
/// person who asked, a director, or an auditor; to anyone else it does not exist.
async fn find(
    state: &AppState,
    console: &Console,
    who: &Signed,
    id: &str,
) -> Result<crate::ledger::TransferRecord, ConsoleError> {
    let id = uuid::Uuid::parse_str(id).map_err(|_| ConsoleError::NotFound)?;
    let r = state.ledger.transfer(id).await?.ok_or(ConsoleError::NotFound)?;
    let auditor = who.has(UserRole::Auditor)
        && console
            .system_for(state, &who.user, SystemRole::Auditor, |_| true)
            .is_ok();
    let ours = console.settings.systems.contains(&r.sender_system);
    if auditor || (ours && (who.has(UserRole::Director) || asked_exactly(state, &r, who).await?)) {
        Ok(r)
    } else {
        Err(ConsoleError::NotFound)
    }
}

async fn show(
    who: Signed,
    state: web::Data<AppState>,
    console: web::Data<Console>,
    id: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    let r = find(&state, &console, &who, &id).await?;
    let history = state.ledger.history(r.transfer_id).await?;
    // What the director approves, as the decision recorded it: the recipient (a one-off
    // disclosure's requester), the kind of request, and where the bytes will go.
    let decided = state
        .ledger
        .entries_of(&[r.transfer_id])
        .await?
        .into_iter()
        .map(|e| e.event)
        .find(|e| e.kind == crate::ledger::EventKind::Decision && e.transfer_id == r.transfer_id);
    let request = decided.as_ref().and_then(|d| d.requester_kind.clone());
    let decided_destination = decided.as_ref().and_then(|d| d.destination.as_deref());
    let destination = state
        .catalogue
        .agreements
        .get(&r.agreement_id)
        .map(|a| a.destination_of(decided_destination))
        .or(decided_destination)
        .map(str::to_owned);
    let can_judge = r.status == TransferStatus::Held && who.has(UserRole::Director);
    let can_review = r.review_due.is_some() && r.reviewed_at.is_none() && who.has(UserRole::Director);
    let own = asked_by(&r, &who);
    Ok(respond(layout::page(
        "Transfer",
        &who,
        html! {
            dl.facts {
                dt { "Status" } dd { span.status { (r.status.as_str()) } }
                dt { "Agreement" } dd { (r.agreement_id) }
                dt { "Message" } dd { (r.message_type.as_deref().unwrap_or("—")) }
                @if let Some(kind) = &request { dt { "One-off request" } dd { (kind.replace('_', " ")) " (the requester's reference is kept as a keyed hash: check it against the request in the case record)" } }
                dt { "To" } dd { (r.recipient.as_deref().unwrap_or("—")) }
                @if let Some(d) = &destination { dt { "Delivered to" } dd { code { (d) } } }
                dt { "Asked by" } dd { (r.user_sub.as_deref().unwrap_or("—")) " through " (r.sender_system) }
                dt { "Asked" } dd { (london(r.created_at)) }
                @if !r.legal_bases.is_empty() { dt { "Legal bases" } dd { (r.legal_bases.join(", ")) } }
                @if let Some(code) = &r.reason_code { dt { "Reason" } dd { code { (code) } } }
                @if let Some(due) = r.review_due { dt { "Director's review" } dd { @if let Some(at) = r.reviewed_at { "Reviewed " (london(at)) } @else { "Due by " (london(due)) } } }
                @if let Some(due) = &r.subject_informed_due { dt { "Person to be told" } dd { @if let Some(at) = r.subject_informed_at { "Told (recorded " (london(at)) ")" } @else { "By " (due) } } }
                dt { "Transfer id" } dd { code { (r.transfer_id) } }
            }
            h2 { "History" }
            ol.history {
                @for h in &history {
                    li { (london(h.at)) ": " (h.kind.as_str()) " → " (h.status.as_str()) @if let Some(c) = &h.reason_code { " (" code { (c) } ")" } }
                }
            }
            @if can_judge {
                @if own {
                    div.notice { p { "You asked for this transfer, so you cannot approve or refuse it: another director must (the two-person rule)." } }
                } @else {
                    h2 { "Decide" }
                    div.decide {
                        form method="post" action=(format!("/transfers/{}/approve", r.transfer_id)) {
                            input type="hidden" name="csrf" value=(who.csrf);
                            div.field { label for="approve-reason" { "Reason for approving" }
                                select id="approve-reason" name="reason" { @for c in ApproveReason::ALL { option value=(c.code()) { (c.code().replace('_', " ")) } } } }
                            div.field { label for="approve-ref" { "Case-record reference (where your note is)" }
                                input id="approve-ref" name="note_ref" type="text" autocomplete="off"; }
                            button type="submit" { "Approve and send" }
                        }
                        form method="post" action=(format!("/transfers/{}/refuse", r.transfer_id)) {
                            input type="hidden" name="csrf" value=(who.csrf);
                            div.field { label for="refuse-reason" { "Reason for refusing" }
                                select id="refuse-reason" name="reason" { @for c in RefuseReason::ALL { option value=(c.code()) { (c.code().replace('_', " ")) } } } }
                            div.field { label for="refuse-ref" { "Case-record reference" }
                                input id="refuse-ref" name="note_ref" type="text" autocomplete="off"; }
                            button.warning type="submit" { "Refuse" }
                        }
                    }
                }
            }
            @if can_review {
                h2 { "Review" }
                @if own {
                    div.notice { p { "You asked for this transfer, so another director must review it (the two-person rule)." } }
                } @else {
                    form method="post" action=(format!("/transfers/{}/review", r.transfer_id)) {
                        input type="hidden" name="csrf" value=(who.csrf);
                        div.field { label for="review-outcome" { "Outcome of the review" }
                            select id="review-outcome" name="reason" { @for c in ReviewOutcome::ALL { option value=(c.code()) { (c.code().replace('_', " ")) } } } }
                        div.field { label for="review-ref" { "Case-record reference" }
                            input id="review-ref" name="note_ref" type="text" autocomplete="off"; }
                        button type="submit" { "Record the review" }
                    }
                }
            }
        },
    )))
}

async fn review(
    who: Signed,
    state: web::Data<AppState>,
    console: web::Data<Console>,
    id: web::Path<String>,
    form: Fields,
) -> Result<HttpResponse, ConsoleError> {
    who.check_csrf(field(&form, "csrf"))?;
    let r = find(&state, &console, &who, &id).await?;
    let system = console.system_for(&state, &who.user, SystemRole::Sender, |s| s.id == r.sender_system)?;
    review_as(&state, system, &who.user, &id, &judgement(&form)).await?;
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, format!("/transfers/{}", r.transfer_id)))
        .finish())
}

/// The reason (or outcome) and case-record reference a director's form carries.
fn judgement(form: &[(String, String)]) -> Judgement {
    Judgement {
        reason: field(form, "reason").unwrap_or_default().to_owned(),
        note_ref: field(form, "note_ref")
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
    }
}

async fn decide(
    who: Signed,
    state: web::Data<AppState>,
    console: web::Data<Console>,
    id: String,
    form: Fields,
    approve: bool,
) -> Result<HttpResponse, ConsoleError> {
    who.check_csrf(field(&form, "csrf"))?;
    let r = find(&state, &console, &who, &id).await?;
    let system = console.system_for(&state, &who.user, SystemRole::Sender, |s| s.id == r.sender_system)?;
    judge(&state, system, &who.user, &id, &judgement(&form), approve).await?;
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, format!("/transfers/{}", r.transfer_id)))
        .finish())
}

async fn approve(
    who: Signed,
    state: web::Data<AppState>,
    console: web::Data<Console>,
    id: web::Path<String>,
    form: Fields,
) -> Result<HttpResponse, ConsoleError> {
    decide(who, state, console, id.into_inner(), form, true).await
}

async fn refuse(
    who: Signed,
    state: web::Data<AppState>,
    console: web::Data<Console>,
    id: web::Path<String>,
    form: Fields,
) -> Result<HttpResponse, ConsoleError> {
    decide(who, state, console, id.into_inner(), form, false).await
}
