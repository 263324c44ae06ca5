//! Those who send: the people still to be told after a disclosure ("after", with a date), overdue
//! first, and "mark told" with a case-record reference. Through `api::follow_ups::informed`, the
//! API's own step (whoever may send under the agreement may record it; once per transfer).

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use maud::html;

use super::layout::{self, london};
use super::{Fields, field, respond};
use crate::api::AppState;
use crate::api::follow_ups::{Informed, follow_ups_of, informed, notifier};
use crate::app::config::SystemRole;
use crate::console::session::Signed;
use crate::console::{Console, ConsoleError};
use crate::ledger::FollowUp;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/told", web::get().to(due))
        .route("/transfers/{id}/told", web::post().to(mark_told));
}

async fn due(
    who: Signed,
    state: web::Data<AppState>,
    console: web::Data<Console>,
) -> Result<HttpResponse, ConsoleError> {
    notifier(&who.user)?;
    let today = state.clock.today();
    let mut rows = Vec::new();
    for s in console.systems_for(&state, &who.user, SystemRole::Sender)? {
        rows.extend(follow_ups_of(&state, FollowUp::NotificationsDue, &s.id).await?);
    }
    // Only transfers under agreements this person may send under: whoever may send may record it.
    rows.retain(|r| {
        state
            .catalogue
            .agreements
            .get(&r.agreement_id)
            .is_some_and(|a| a.acting_role(&who.user.roles).is_some())
    });
    let due_on = |r: &crate::ledger::TransferRecord| {
        r.subject_informed_due
            .as_deref()
            .and_then(|d| d.get(..10))
            .and_then(|d| d.parse::<jiff::civil::Date>().ok())
    };
    rows.sort_by_key(|r| (due_on(r), r.created_at));
    Ok(respond(layout::page(
        "People to be told",
        &who,
        html! {
            p.hint { "Disclosures made on the understanding that the person would be told afterwards, soonest due first. Tell them, note it in the case record, then record it here with the note's reference." }
            @if rows.is_empty() { p { "Nobody is waiting to be told." } }
            @else {
                table {
                    caption.visually-hidden { "Transfers whose subject is still to be told" }
                    thead { tr { th scope="col" { "Tell by" } th scope="col" { "Sent" } th scope="col" { "Agreement" } th scope="col" { "Asked by" } th scope="col" { "Record that they were told" } } }
                    tbody {
                        @for r in &rows {
                            @let overdue = due_on(r).is_some_and(|d| d < today);
                            tr {
                                td { (r.subject_informed_due.as_deref().unwrap_or("—")) @if overdue { " " strong.warning { "overdue" } } }
                                td { a href=(format!("/transfers/{}", r.transfer_id)) { (london(r.created_at)) } }
                                td { (r.agreement_id) " · " (r.message_type.as_deref().unwrap_or("—")) }
                                td { (r.user_sub.as_deref().unwrap_or("—")) }
                                td {
                                    form.inline method="post" action=(format!("/transfers/{}/told", r.transfer_id)) {
                                        input type="hidden" name="csrf" value=(who.csrf);
                                        label for=(format!("ref-{}", r.transfer_id)) { "Case-record reference" }
                                        input id=(format!("ref-{}", r.transfer_id)) name="note_ref" type="text" autocomplete="off";
                                        button type="submit" { "Mark told" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )))
}

async fn mark_told(
    who: Signed,
    state: web::Data<AppState>,
    console: web::Data<Console>,
    id: web::Path<String>,
    form: Fields,
) -> Result<HttpResponse, ConsoleError> {
    who.check_csrf(field(&form, "csrf"))?;
    notifier(&who.user)?;
    let id = id.into_inner();
    let r = state
        .ledger
        .transfer(uuid::Uuid::parse_str(&id).map_err(|_| ConsoleError::NotFound)?)
        .await?
        .ok_or(ConsoleError::NotFound)?;
    let system = console.system_for(&state, &who.user, SystemRole::Sender, |s| s.id == r.sender_system)?;
    let body = Informed {
        note_ref: field(&form, "note_ref")
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
    };
    informed(&state, system, &who.user, &id, &body).await?;
    tracing::info!(transfer_id = %r.transfer_id, user = ?who.user.sub, "console: subject recorded as told");
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/told"))
        .finish())
}
