//! Sending: the agreements and message types a person may send under, a form generated from the
//! message type's schema and the envelope's, and the decision shown plainly. The submission goes
//! through `api::transfers::submit_as`, the API's own steps.

use actix_web::{HttpResponse, web};
use maud::{Markup, html};
use serde_json::Value;

use super::layout::{self, london};
use super::{Fields, field, respond};
use crate::api::AppState;
use crate::api::transfers::{ReadBody, submit_as};
use crate::app::config::SystemRole;
use crate::console::form::{self, Errors, Values};
use crate::console::session::{Signed, random_token};
use crate::console::{Console, ConsoleError};
use crate::ledger::TransferStatus;
use crate::policy::decision::ENVELOPE_SCHEMA;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/send", web::get().to(list))
        .route("/send/{agreement}/{message_type}", web::get().to(blank))
        .route("/send/{agreement}/{message_type}", web::post().to(submit))
        .route("/mine", web::get().to(mine));
}

/// The envelope's schema as a document, read once (the forms are built from it).
fn envelope_schema() -> &'static Value {
    static ENVELOPE: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    ENVELOPE.get_or_init(|| serde_json::from_str(ENVELOPE_SCHEMA).unwrap_or(Value::Null))
}

async fn list(who: Signed, state: web::Data<AppState>) -> HttpResponse {
    let agreements: Vec<_> = state
        .catalogue
        .agreements
        .iter()
        .filter(|a| a.acting_role(&who.user.roles).is_some())
        .collect();
    respond(layout::page(
        "Send",
        &who,
        html! {
            @if agreements.is_empty() {
                p { "No agreement lets your roles send anything." }
            }
            ul.cards {
                @for a in agreements {
                    li.card {
                        h2 { (a.terms().title) }
                        p.hint { "To " (a.terms().recipient.organisation) ". " (a.terms().purpose) }
                        ul {
                            @for mt in &a.terms().message_types {
                                li { a href=(format!("/send/{}/{}", a.id(), mt)) { "Send: " (mt.replace('_', " ")) } }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// The agreement and message type named in the path, if this person may send them.
fn target<'a>(
    state: &'a AppState,
    who: &Signed,
    agreement: &str,
    message_type: &str,
) -> Result<(&'a crate::policy::agreement::Agreement, &'a Value), ConsoleError> {
    let a = state
        .catalogue
        .agreements
        .get(agreement)
        .ok_or(ConsoleError::NotFound)?;
    if !a.covers_message_type(message_type) {
        return Err(ConsoleError::NotFound);
    }
    if a.acting_role(&who.user.roles).is_none() {
        return Err(ConsoleError::Forbidden);
    }
    let schema = state
        .catalogue
        .schemas
        .get(message_type)
        .ok_or(ConsoleError::NotFound)?;
    Ok((a, schema.raw()))
}

fn form_page(
    who: &Signed,
    a: &crate::policy::agreement::Agreement,
    message_type: &str,
    message: &Value,
    values: &Values,
    errors: &Errors,
    summary: Option<Markup>,
) -> HttpResponse {
    let key = values.one("idempotency_key").map_or_else(random_token, str::to_owned);
    respond(layout::page(
        &format!("Send: {}", message_type.replace('_', " ")),
        who,
        html! {
            p.hint { "Under the agreement “" (a.terms().title) "” to " (a.terms().recipient.organisation) "." }
            @if let Some(s) = summary { (s) }
            form.transfer method="post" action=(format!("/send/{}/{}", a.id(), message_type)) novalidate {
                input type="hidden" name="csrf" value=(who.csrf);
                input type="hidden" name="idempotency_key" value=(key);
                (form::envelope(envelope_schema(), message, a.one_off().is_some(), values, errors))
                button type="submit" name="_send" value="1" { "Send" }
            }
        },
    ))
}

async fn blank(
    who: Signed,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ConsoleError> {
    let (agreement, message_type) = path.into_inner();
    let (a, message) = target(&state, &who, &agreement, &message_type)?;
    Ok(form_page(
        &who,
        a,
        &message_type,
        message,
        &Values::default(),
        &Errors::new(),
        None,
    ))
}

async fn submit(
    who: Signed,
    state: web::Data<AppState>,
    console: web::Data<Console>,
    path: web::Path<(String, String)>,
    form: Fields,
) -> Result<HttpResponse, ConsoleError> {
    who.check_csrf(field(&form, "csrf"))?;
    let (agreement, message_type) = path.into_inner();
    let (a, message) = target(&state, &who, &agreement, &message_type)?;
    let envelope = envelope_schema();
    let mut values = Values::new(&form);
    if let Some(ptr) = field(&form, "_add") {
        let minimum = form::array_minimum(envelope, message, ptr).ok_or(ConsoleError::NotFound)?;
        values.add_item(ptr, minimum);
        return Ok(form_page(
            &who,
            a,
            &message_type,
            message,
            &values,
            &Errors::new(),
            None,
        ));
    }
    let system = console.system_for(&state, &who.user, SystemRole::Sender, |s| a.permits_system(&s.id))?;
    let body = form::to_envelope(envelope, &message_type, message, a.one_off().is_some(), &values);
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let read = if bytes.len() > state.limits.max_body_bytes {
        ReadBody::TooLarge
    } else {
        ReadBody::Complete(web::BytesMut::from(bytes.as_slice()))
    };
    let key = values.one("idempotency_key").map(str::to_owned);
    match submit_as(&state, system, &who.user, a.id(), &read, key, std::time::Instant::now()).await {
        Ok(done) => {
            let held = done.receipt.status == TransferStatus::Held;
            Ok(respond(layout::page(
                if held { "Held for a director" } else { "Accepted" },
                &who,
                html! {
                    div.panel.(if held { "held" } else { "ok" }) role="status" {
                        @if held {
                            p { "The referral is recorded and waits for a director's approval: nothing has been sent yet. A director who is not you must approve it." }
                        } @else {
                            p { "Permitted, recorded in the ledger, and queued for delivery." }
                        }
                        p { "Transfer " code { (done.receipt.transfer_id) } ", ledger entry " (done.receipt.ledger_seq) "." }
                    }
                    p { a href=(format!("/transfers/{}", done.receipt.transfer_id)) { "Follow this transfer" } }
                },
            )))
        }
        Err(e) if e.body().transfer_id.is_some() => {
            // Refused and recorded: say which rule, mark the fields, keep what was typed.
            let b = e.body();
            let mut errors = Errors::new();
            for v in &b.violations {
                errors
                    .entry(v.pointer.clone())
                    .or_default()
                    .push(format!("{} ({})", v.message, v.rule));
            }
            let summary = html! {
                div.error-summary role="alert" tabindex="-1" {
                    h2 { "Refused: nothing was sent" }
                    p { (b.message) " (" code { (b.code) } "). The refusal is recorded." }
                    @if !b.violations.is_empty() {
                        ul {
                            @for v in &b.violations {
                                li { a href=(format!("#f{}", v.pointer)) { code { (v.pointer) } ": " (v.message) " (" (v.rule) ")" } }
                            }
                        }
                    }
                }
            };
            // A refusal spends the key: the next attempt is a new request.
            let mut pairs: Vec<(String, String)> = form
                .into_inner()
                .into_iter()
                .filter(|(k, _)| k != "idempotency_key")
                .collect();
            pairs.push(("idempotency_key".into(), random_token()));
            Ok(form_page(
                &who,
                a,
                &message_type,
                message,
                &Values::new(&pairs),
                &errors,
                Some(summary),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// What this person sent through the console's systems, newest first: found by subject
/// (index `transfers_by_user`), and kept only where the decision entry names their issuer too
/// (a subject is unique only within its issuer).
async fn mine(
    who: Signed,
    state: web::Data<AppState>,
    console: web::Data<Console>,
) -> Result<HttpResponse, ConsoleError> {
    let rows = state
        .ledger
        .transfers_by(&who.user.sub, &console.settings.systems, 200)
        .await?;
    let ids: Vec<_> = rows.iter().map(|r| r.transfer_id).collect();
    let theirs: std::collections::HashSet<_> = state
        .ledger
        .entries_of(&ids)
        .await?
        .into_iter()
        .filter(|e| e.event.kind == crate::ledger::EventKind::Decision)
        .filter(|e| e.event.user_sub.as_deref() == Some(who.user.sub.as_str()))
        .filter(|e| e.event.user_issuer.as_deref().is_none_or(|i| i == who.user.issuer))
        .map(|e| e.event.transfer_id)
        .collect();
    let mine: Vec<_> = rows.into_iter().filter(|r| theirs.contains(&r.transfer_id)).collect();
    Ok(respond(layout::page(
        "My transfers",
        &who,
        html! {
            @if mine.is_empty() { p { "Nothing sent through the console yet." } }
            @else {
                p.hint { "Your latest 200, newest first." }
                table {
                    caption.visually-hidden { "Transfers you asked for, newest first" }
                    thead { tr { th scope="col" { "When" } th scope="col" { "Agreement" } th scope="col" { "Message" } th scope="col" { "Status" } th scope="col" { "Reason" } } }
                    tbody {
                        @for r in &mine {
                            tr {
                                td { a href=(format!("/transfers/{}", r.transfer_id)) { (london(r.created_at)) } }
                                td { (r.agreement_id) }
                                td { (r.message_type.as_deref().unwrap_or("—")) }
                                td { span.status { (r.status.as_str()) } }
                                td { (r.reason_code.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        },
    )))
}
