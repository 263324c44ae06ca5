//! Auditors and the DPO: the agreements register, an agreement's transfers with filters, paging
//! and CSV, and subject access ("who did you share my data with"). Through the API's own steps
//! (`api::transfers::page`, `api::subject_access`), acting as the console's auditor or DPO system.

use actix_web::{HttpResponse, web};
use maud::html;
use serde::Deserialize;

use super::layout::{self, london};
use super::{Fields, field, respond};
use crate::api::AppState;
use crate::api::listings::{ListParams, page};
use crate::app::config::SystemRole;
use crate::console::session::Signed;
use crate::console::{Console, ConsoleError};
use crate::platform::auth::UserRole;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/audit", web::get().to(register))
        .route("/audit/transfers", web::get().to(transfers))
        .route("/dpo", web::get().to(dpo_form))
        .route("/dpo", web::post().to(dpo_lookup));
}

/// The auditor's pages are for auditors (the 403 page otherwise).
pub(super) fn auditor(who: &Signed) -> Result<(), ConsoleError> {
    if who.has(UserRole::Auditor) {
        Ok(())
    } else {
        Err(ConsoleError::Forbidden)
    }
}

async fn register(who: Signed, state: web::Data<AppState>) -> Result<HttpResponse, ConsoleError> {
    auditor(&who)?;
    let today = state.clock.today();
    Ok(respond(layout::page(
        "Agreements register",
        &who,
        html! {
            table {
                caption.visually-hidden { "Every agreement loaded" }
                thead { tr { th scope="col" { "Agreement" } th scope="col" { "State" } th scope="col" { "Parties" } th scope="col" { "Review by" } th scope="col" { "Expires" } th scope="col" { "Legal bases" } } }
                tbody {
                    @for a in state.catalogue.agreements.iter() {
                        // What an IG officer reads of it: the same view as `GET /v1/agreements/{id}`.
                        @let v = a.view(today);
                        tr {
                            td {
                                a href=(format!("/audit/agreements/{}", v.id)) { (v.title) } br; code { (v.id) " v" (v.version) } br;
                                a href=(format!("/audit/transfers?agreement={}", v.id)) { "Transfers" } " · "
                                a href=(format!("/audit/agreements/{}/activity", v.id)) { "Activity" }
                            }
                            td { (v.state.replace('_', " ")) }
                            td { (v.sender.organisation) " → " (v.recipient.organisation) }
                            td { (v.review_by) }
                            td { (v.expires) }
                            td { ul.plain { @for b in &v.legal_bases { li { code { (b.code) } " " (b.title) } } } }
                        }
                        @if !v.warnings.is_empty() {
                            tr { td.warn colspan="6" { (v.warnings.join("; ")) } }
                        }
                    }
                }
            }
        },
    )))
}

#[derive(Debug, Deserialize)]
struct Filters {
    agreement: Option<String>,
    status: Option<String>,
    since: Option<String>,
    until: Option<String>,
    message_type: Option<String>,
    sender_system: Option<String>,
    user: Option<String>,
    legal_basis: Option<String>,
    cursor: Option<i64>,
    format: Option<String>,
}

/// A date typed in a filter (`2026-12-01`) as the start of that day in London, RFC 3339; a date
/// that does not parse is refused, never silently dropped (the page would look filtered).
fn day(d: Option<&str>, name: &str) -> Result<Option<String>, ConsoleError> {
    let Some(d) = d.map(str::trim).filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    d.parse::<jiff::civil::Date>()
        .ok()
        .and_then(|date| date.to_zoned(jiff::tz::TimeZone::get("Europe/London").ok()?).ok())
        .map(|z| Some(z.timestamp().to_string()))
        .ok_or_else(|| {
            ConsoleError::Api(crate::api::ApiError::bad_request(
                "invalid_query",
                &format!("The {name} filter must be a date (YYYY-MM-DD)."),
            ))
        })
}

async fn transfers(
    who: Signed,
    state: web::Data<AppState>,
    console: web::Data<Console>,
    q: web::Query<Filters>,
) -> Result<HttpResponse, ConsoleError> {
    auditor(&who)?;
    console.system_for(&state, &who.user, SystemRole::Auditor, |_| true)?;
    let agreement = q.agreement.as_deref().filter(|a| !a.is_empty());
    let given = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
    let params = ListParams {
        status: given(&q.status),
        since: day(q.since.as_deref(), "from")?,
        until: day(q.until.as_deref(), "before")?,
        limit: Some(100),
        cursor: q.cursor,
        message_type: given(&q.message_type),
        sender_system: given(&q.sender_system),
        user: given(&q.user),
        legal_basis: given(&q.legal_basis),
    };
    let (rows, next) = page(&state, agreement, &params).await?;
    if q.format.as_deref() == Some("csv") {
        return Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header(("content-disposition", "attachment; filename=\"transfers.csv\""))
            .body(crate::audit::report::csv(&rows)));
    }
    let selected = |v: &str| q.status.as_deref() == Some(v);
    // The choices: every message type, legal basis (with its title) and sending system the
    // agreements in view name.
    let in_view: Vec<_> = state
        .catalogue
        .agreements
        .iter()
        .filter(|a| agreement.is_none_or(|id| a.id() == id))
        .collect();
    let mut message_types: Vec<String> = in_view.iter().flat_map(|a| a.terms().message_types.clone()).collect();
    message_types.sort();
    message_types.dedup();
    let mut senders: Vec<String> = in_view.iter().flat_map(|a| a.terms().sender.systems.clone()).collect();
    senders.sort();
    senders.dedup();
    let today = state.clock.today();
    let mut bases: Vec<crate::policy::agreement::LegalBasisView> = in_view
        .iter()
        .flat_map(|a| {
            let v = a.view(today);
            v.legal_bases
                .into_iter()
                .chain(v.conditional_bases.into_iter().flat_map(|c| c.bases))
        })
        .collect();
    bases.sort_by(|a, b| a.code.cmp(&b.code));
    bases.dedup_by(|a, b| a.code == b.code);
    let query = |cursor: Option<i64>, format: Option<&str>| {
        let mut parts = Vec::new();
        for (k, v) in [
            ("agreement", &q.agreement),
            ("status", &q.status),
            ("since", &q.since),
            ("until", &q.until),
            ("message_type", &q.message_type),
            ("sender_system", &q.sender_system),
            ("user", &q.user),
            ("legal_basis", &q.legal_basis),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                parts.push(format!("{k}={}", encode(v)));
            }
        }
        if let Some(c) = cursor {
            parts.push(format!("cursor={c}"));
        }
        if let Some(f) = format {
            parts.push(format!("format={f}"));
        }
        format!("/audit/transfers?{}", parts.join("&"))
    };
    Ok(respond(layout::page(
        "Transfers",
        &who,
        html! {
            form.filters method="get" action="/audit/transfers" {
                div.field { label for="agreement" { "Agreement" }
                    select id="agreement" name="agreement" {
                        option value="" { "All agreements" }
                        @for a in state.catalogue.agreements.iter() { option value=(a.id()) selected[agreement == Some(a.id())] { (a.id()) } }
                    } }
                div.field { label for="status" { "Status" }
                    select id="status" name="status" {
                        option value="" { "Any" }
                        @for s in ["accepted", "held", "refused", "retrying", "delivered", "undeliverable"] { option value=(s) selected[selected(s)] { (s) } }
                    } }
                div.field { label for="message_type" { "Message type" }
                    select id="message_type" name="message_type" {
                        option value="" { "Any" }
                        @for mt in &message_types { option value=(mt) selected[q.message_type.as_deref() == Some(mt.as_str())] { (mt) } }
                    } }
                div.field { label for="legal_basis" { "Legal basis" }
                    select id="legal_basis" name="legal_basis" {
                        option value="" { "Any" }
                        @for b in &bases { option value=(b.code) selected[q.legal_basis.as_deref() == Some(b.code.as_str())] { (b.title) } }
                    } }
                div.field { label for="sender_system" { "Sending system" }
                    select id="sender_system" name="sender_system" {
                        option value="" { "Any" }
                        @for s in &senders { option value=(s) selected[q.sender_system.as_deref() == Some(s.as_str())] { (s) } }
                    } }
                div.field { label for="user" { "Asked by (user)" } input id="user" name="user" type="text" autocomplete="off" value=[q.user.as_deref()]; }
                div.field { label for="since" { "From (date)" } input id="since" name="since" type="date" value=[q.since.as_deref()]; }
                div.field { label for="until" { "Before (date)" } input id="until" name="until" type="date" value=[q.until.as_deref()]; }
                button type="submit" { "Filter" }
            }
            p { a id="csv" href=(query(q.cursor, Some("csv"))) download { "Download this page as CSV" } }
            @if rows.is_empty() { p { "No transfers match." } }
            @else {
                table {
                    caption.visually-hidden { "Transfers, oldest first" }
                    thead { tr { th scope="col" { "Decided" } th scope="col" { "Agreement" } th scope="col" { "Message" } th scope="col" { "Status" } th scope="col" { "Reason" } th scope="col" { "Legal bases" } th scope="col" { "Sender" } } }
                    tbody {
                        @for r in &rows {
                            tr {
                                td { a href=(format!("/transfers/{}", r.transfer_id)) { (london(r.created_at)) } }
                                td { (r.agreement_id) }
                                td { (r.message_type.as_deref().unwrap_or("—")) }
                                td { (r.status.as_str()) }
                                td { (r.reason_code.as_deref().unwrap_or("")) }
                                td { (r.legal_bases.join(", ")) }
                                td { (r.user_sub.as_deref().unwrap_or("—")) " / " (r.sender_system) }
                            }
                        }
                    }
                }
            }
            @if let Some(c) = next { p { a href=(query(Some(c), None)) { "Next page" } } }
        },
    )))
}

async fn dpo_form(who: Signed) -> Result<HttpResponse, ConsoleError> {
    if !who.has(UserRole::Dpo) {
        return Err(ConsoleError::Forbidden);
    }
    Ok(respond(layout::page("Subject access", &who, lookup_form(&who, None))))
}

fn lookup_form(who: &Signed, error: Option<&str>) -> maud::Markup {
    html! {
        p.hint { "Every disclosure about one person, from the blind subject index. The lookup is recorded in the ledger (without the number)." }
        form method="post" action="/dpo" {
            input type="hidden" name="csrf" value=(who.csrf);
            div.field.field-error[error.is_some()] {
                label for="nhs" { "NHS number" }
                @if let Some(e) = error { p.error-message id="nhs-error" { span.visually-hidden { "Error: " } (e) } }
                input id="nhs" name="nhs_number" type="text" inputmode="numeric" autocomplete="off" aria-describedby=[error.map(|_| "nhs-error")];
            }
            button type="submit" { "Find disclosures" }
        }
    }
}

async fn dpo_lookup(
    who: Signed,
    state: web::Data<AppState>,
    console: web::Data<Console>,
    form: Fields,
) -> Result<HttpResponse, ConsoleError> {
    who.check_csrf(field(&form, "csrf"))?;
    if !who.has(UserRole::Dpo) {
        return Err(ConsoleError::Forbidden);
    }
    let system = console.system_for(&state, &who.user, SystemRole::Dpo, |_| true)?;
    let typed: String = field(&form, "nhs_number")
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let answer = match crate::api::subject_access(&state, system, &who.user, &typed).await {
        Ok(a) => a,
        Err(e) if e.body().code == "invalid_nhs_number" => {
            return Ok(respond(layout::page(
                "Subject access",
                &who,
                lookup_form(&who, Some("Enter ten digits with a valid check digit.")),
            )));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(respond(layout::page(
        "Subject access: disclosures found",
        &who,
        html! {
            p { "NHS number " strong { (typed) } ": " (answer.disclosures.len()) " disclosure(s). Lookup recorded as ledger entry " (answer.ledger_seq) " (" code { (answer.lookup_id) } ")." }
            p.hint { "The answer to a request under UK GDPR Art 15(1)(c): the recipients to whom the personal data have been disclosed. Print this page for the reply." }
            @if answer.disclosures.iter().any(|d| d.weigh_before_replying.is_some()) {
                div.notice { p { "Some disclosures below were made under a DPA 2018 Schedule 2 exemption (marked “weigh first”). Before including them in the reply, weigh whether telling the person would prejudice the purpose they served (an investigation, legal proceedings)." } }
            }
            @if !answer.disclosures.is_empty() {
                table {
                    caption.visually-hidden { "Disclosures about this person" }
                    thead { tr { th scope="col" { "When" } th scope="col" { "To" } th scope="col" { "Agreement" } th scope="col" { "Legal basis" } th scope="col" { "Data" } th scope="col" { "Status" } } }
                    tbody {
                        @for d in &answer.disclosures {
                            tr {
                                td { (london(d.at)) }
                                td { (d.recipient.as_deref().unwrap_or("—")) }
                                td { (d.agreement_id) @if let Some(v) = &d.agreement_version { " v" (v) } }
                                td { ul.plain { @for b in &d.legal_bases { li { (b.title) " (" (b.source) ")" } } } }
                                td { (d.data_classes.join(", ")) }
                                td { (d.status.as_str()) @if d.weigh_before_replying.is_some() { " " strong { "weigh first" } } }
                            }
                        }
                    }
                }
            }
            p { a href="/dpo" { "Another lookup" } }
        },
    )))
}

/// A query value as it may sit in a link (RFC 3986 unreserved characters kept, the rest
/// percent-encoded).
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}
