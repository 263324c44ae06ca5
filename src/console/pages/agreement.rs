//! Auditors and IG leads: one agreement as a readable, printable Information Sharing Agreement
//! document (from the checked file the gateway enforces, not a copy), and its activity over time
//! (decisions per day as a server-rendered SVG chart with the same figures as a table, counts by
//! status and by the legal bases that applied).

use actix_web::{HttpResponse, web};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{self, london};
use super::respond;
use crate::api::AppState;
use crate::app::config::SystemRole;
use crate::console::session::Signed;
use crate::console::{Console, ConsoleError};
use crate::ledger::Outcome;
use crate::policy::agreement::{Agreement, ConsentModel, LegalBasisView};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/audit/agreements/{id}", web::get().to(document))
        .route("/audit/agreements/{id}/activity", web::get().to(activity));
}

fn agreement<'a>(state: &'a AppState, who: &Signed, id: &str) -> Result<&'a Agreement, ConsoleError> {
    super::audit::auditor(who)?;
    state
        .catalogue
        .agreements
        .get(id)
        .map(AsRef::as_ref)
        .ok_or(ConsoleError::NotFound)
}

fn consent_model(m: ConsentModel) -> &'static str {
    match m {
        ConsentModel::Implied => {
            "Implied consent (direct care within the person's reasonable expectations); an objection stops the transfer"
        }
        ConsentModel::Explicit => "Explicit consent: each transfer carries evidence of it",
        ConsentModel::NotRequired => "Consent is not the basis; the reason below is recorded",
        ConsentModel::AllContributors => "Every person who contributed the information must have consented",
    }
}

fn bases(list: &[LegalBasisView]) -> Markup {
    html! {
        ul.plain { @for b in list { li { strong { (b.title) } " — " (b.source) " " code { (b.code) } } } }
    }
}

fn yes(b: bool) -> &'static str {
    if b { "Yes" } else { "No" }
}

async fn document(
    who: Signed,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    let a = agreement(&state, &who, &id)?;
    let v = a.view(state.clock.today());
    let f = a.terms();
    let roles = |rs: &[crate::platform::auth::UserRole]| rs.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ");
    Ok(respond(layout::page(
        v.title,
        &who,
        html! {
            p.hint { "Information Sharing Agreement " code { (v.id) } ", version " (v.version) ". This page is rendered from the agreement file the gateway enforces; print it for the record." }
            p { a href=(format!("/audit/agreements/{}/activity", v.id)) { "Activity: transfers, holds and refusals over time" } " · " a href=(format!("/audit/transfers?agreement={}", v.id)) { "Every transfer" } }
            @if !v.warnings.is_empty() { div.notice role="status" { p { (v.warnings.join("; ")) } } }
            h2 { "1. Parties" }
            dl.facts {
                dt { "Disclosing organisation" } dd { (v.sender.organisation) @if let Some(c) = &v.sender.ods_code { " (" (c) ")" } @if v.sender.public_authority { ", a public authority" } }
                dt { "Receiving organisation" } dd { (v.recipient.organisation) @if let Some(c) = &v.recipient.ods_code { " (" (c) ")" } }
                dt { "Who may send" } dd { "People acting as " (roles(&v.sender.roles)) ", through " (v.sender.systems.join(", ")) }
                dt { "Delivered to" } dd { code { (v.recipient.destination) } }
            }
            h2 { "2. Purpose" }
            p { (v.purpose) }
            h2 { "3. Term" }
            dl.facts {
                dt { "Status" } dd { (format!("{:?}", v.status).to_lowercase()) @if let Some(r) = v.status_reason { " — " (r) } }
                dt { "Today" } dd { (v.state.replace('_', " ")) }
                dt { "In force from" } dd { (v.effective_from) }
                dt { "Review by" } dd { (v.review_by) " (" (v.review_due_in_days) " days)" }
                dt { "Expires" } dd { (v.expires) }
            }
            h2 { "4. Legal basis" }
            p { "Every transfer records the bases that applied to it." }
            (bases(&v.legal_bases))
            @for c in &v.conditional_bases {
                p { "When " code { (c.pointer) } " is " (c.values.join(" or ")) ", also:" }
                (bases(&c.bases))
                @if let Some(age) = &c.age {
                    p.hint {
                        "Only if the date of birth at " code { (age.date_of_birth) } " agrees: aged "
                        @match (age.at_least, age.under) {
                            (Some(a), Some(u)) => { (a) " to " (u - 1) }
                            (Some(a), None) => { (a) " or over" }
                            (None, Some(u)) => { "under " (u) }
                            (None, None) => { "any age" }
                        }
                        " on the day of the transfer."
                    }
                }
            }
            @if let Some(apd) = v.appropriate_policy_document { p { "Appropriate Policy Document (DPA 2018 Sch 1 Part 4): " (apd) } }
            h2 { "5. What is shared" }
            p { "Message types: " (v.message_types.join(", ")) ". Only these fields may leave; anything else in a payload is refused." }
            table {
                caption.visually-hidden { "Fields that may leave, with their class and treatment" }
                thead { tr { th scope="col" { "Field (JSON pointer)" } th scope="col" { "Class" } th scope="col" { "On the way out" } } }
                tbody { @for field in v.fields { tr { td { code { (field.pointer) } } td { (field.class.as_str().replace('_', " ")) } td { (field.treatment.describe()) } } } }
            }
            @if let Some(o) = v.outbound_schema { p { "What leaves is checked against the schema " code { (o) } " before it is sent." } }
            h2 { "6. Consent and the person's rights" }
            dl.facts {
                dt { "Consent" } dd { (consent_model(v.consent.model)) @if let Some(r) = &v.consent.reason { " — " (r) } }
                dt { "Consent recorded with each transfer" } dd { (yes(v.consent.record_per_transfer)) }
                @if let Some(b) = &v.consent.overriding_basis { dt { "Overriding an objection" } dd { (LegalBasisView::of(b).title) " " code { (b) } } }
                dt { "Person told" } dd { @if v.transparency.subject_informed_required { "Each transfer states whether the person was told (before, after, or not, with why)" } @else { "Not recorded per transfer" } }
                @if let Some(n) = &v.transparency.privacy_notice { dt { "Privacy notice" } dd { (n) } }
                dt { "National data opt-out" } dd {
                    @if v.national_data_opt_out_applies { "Applies: each transfer states the person's status; an opted-out person's transfer is refused" }
                    @else { "Does not apply" @if let Some(e) = f.national_data_opt_out_exemption { " (" (e.code().replace('_', " ")) ")" } }
                }
                dt { "Subject access" } dd { @if f.subject_index.is_empty() { "No NHS number is indexed (nothing identifying leaves)" } @else { "Indexed by " (f.subject_index.join(", ")) " (a keyed hash, never the number)" } }
            }
            h2 { "7. Approval" }
            dl.facts {
                dt { "Held for a director without consent" } dd { (yes(f.approval.hold_without_consent)) }
                dt { "Urgent path" } dd {
                    @if f.approval.urgent_path {
                        "Sent at once when the payload says the risk is immediate, by " (roles(&f.approval.urgent_roles)) "; a director reviews it within " (f.approval.review_within_hours) " hours"
                    } @else { "None" }
                }
                dt { "Two-person rule" } dd { "Whoever asked for a transfer cannot approve, refuse or review it." }
            }
            h2 { "8. Retention and security" }
            dl.facts {
                dt { "Retention by the recipient" } dd { (v.retention.years) " years — " (v.retention.basis) }
                dt { "In transit" } dd { "Mutual TLS 1.2 or later; each decision recorded, with its legal basis, in a hash-chained ledger with signed checkpoints before anything leaves." }
            }
            h2 { "9. This document" }
            dl.facts {
                dt { "Content hash" } dd { code { (v.content_hash) } }
                dt { "Printed" } dd { (london(state.clock.now())) " by " (who.name) }
            }
        },
    )))
}

#[derive(Debug, Deserialize)]
struct Period {
    days: Option<u16>,
}

/// The periods offered: a week, a month, a quarter (one bar a day).
const PERIODS: [u16; 3] = [7, 30, 90];

async fn activity(
    who: Signed,
    state: web::Data<AppState>,
    console: web::Data<Console>,
    id: web::Path<String>,
    q: web::Query<Period>,
) -> Result<HttpResponse, ConsoleError> {
    let a = agreement(&state, &who, &id)?;
    console.system_for(&state, &who.user, SystemRole::Auditor, |_| true)?;
    let days = q.days.filter(|d| PERIODS.contains(d)).unwrap_or(30);
    let london_tz = jiff::tz::TimeZone::get("Europe/London").map_err(|_| ConsoleError::NotFound)?;
    let today = state.clock.now().to_zoned(london_tz.clone()).date();
    let first = today - jiff::Span::new().days(i64::from(days) - 1);
    let start = |d: jiff::civil::Date| d.to_zoned(london_tz.clone()).map(|z| z.timestamp());
    let (since, until) = match (start(first), start(today.tomorrow().unwrap_or(today))) {
        (Ok(s), Ok(u)) => (s, u),
        _ => return Err(ConsoleError::NotFound),
    };
    let mut per_day = vec![[0i64; 3]; usize::from(days)];
    for row in state.ledger.activity(a.id(), since, until).await? {
        let day = row.hour.to_zoned(london_tz.clone()).date();
        let i = (day - first).get_days();
        if let Some(slot) = usize::try_from(i).ok().and_then(|i| per_day.get_mut(i)) {
            slot[row.outcome as usize] += row.count;
        }
    }
    let counts = state.ledger.counts(a.id(), Some(since), Some(until)).await?;
    let dates: Vec<_> = (0..i64::from(days))
        .map(|i| first + jiff::Span::new().days(i))
        .collect();
    let total: [i64; 3] = per_day
        .iter()
        .fold([0; 3], |t, d| [t[0] + d[0], t[1] + d[1], t[2] + d[2]]);
    Ok(respond(layout::page(
        "Agreement activity",
        &who,
        html! {
            p { a href=(format!("/audit/agreements/{}", a.id())) { (a.terms().title) } " · " code { (a.id()) } }
            form.filters method="get" action=(format!("/audit/agreements/{}/activity", a.id())) {
                div.field { label for="days" { "Period" }
                    select id="days" name="days" { @for d in PERIODS { option value=(d) selected[d == days] { "Last " (d) " days" } } } }
                button type="submit" { "Show" }
            }
            p { "From " (first) " to " (today) " (days in Europe/London): "
                (total[0]) " permitted without waiting, " (total[1]) " held for a director, " (total[2]) " refused by the agreement's rules." }
            @if q.days.is_some_and(|d| !PERIODS.contains(&d)) { p.warning role="status" { "That period is not offered; showing the last " (days) " days." } }
            (chart(&dates, &per_day))
            details {
                summary { "The figures as a table" }
                table {
                    caption.visually-hidden { "Decisions per day" }
                    thead { tr { th scope="col" { "Day" } @for o in Outcome::ALL { th scope="col" { (label(o)) } } } }
                    tbody { @for (d, n) in dates.iter().zip(&per_day) { tr { td { (d) } td { (n[0]) } td { (n[1]) } td { (n[2]) } } } }
                }
            }
            h2 { "By status today" }
            table {
                caption.visually-hidden { "Transfers in the period by their status today" }
                thead { tr { th scope="col" { "Status" } th scope="col" { "Transfers" } } }
                tbody { @for (s, n) in &counts.by_status { tr { td { (s) } td { (n) } } } }
            }
            h2 { "By legal basis" }
            p.hint { "Permitted transfers in the period, by each legal basis that applied (a transfer counts once under each of its bases)." }
            @if counts.by_legal_basis.is_empty() { p { "None in this period." } }
            @else {
                table {
                    caption.visually-hidden { "Permitted transfers by legal basis" }
                    thead { tr { th scope="col" { "Legal basis" } th scope="col" { "Source" } th scope="col" { "Transfers" } } }
                    tbody {
                        @for (code, n) in &counts.by_legal_basis {
                            @let b = LegalBasisView::of(code);
                            tr { td { (b.title) " " code { (b.code) } } td { (b.source) } td { (n) } }
                        }
                    }
                }
            }
        },
    )))
}

fn label(o: Outcome) -> &'static str {
    match o {
        Outcome::Permitted => "Permitted without waiting",
        Outcome::Held => "Held for a director",
        Outcome::Refused => "Refused",
    }
}

/// Stacked bars, one a day: sent, held, refused. Colours by class (the stylesheet); the same
/// figures are in the table below it, for screen readers and print.
fn chart(dates: &[jiff::civil::Date], per_day: &[[i64; 3]]) -> Markup {
    const W: f64 = 720.0;
    const H: f64 = 220.0;
    const LEFT: f64 = 40.0;
    const BOTTOM: f64 = 24.0;
    const CLASSES: [&str; 3] = ["bar-sent", "bar-held", "bar-refused"];
    let max = per_day.iter().map(|d| d.iter().sum::<i64>()).max().unwrap_or(0).max(1);
    let slot = (W - LEFT) / per_day.len().max(1) as f64;
    let bar = (slot * 0.7).max(1.0);
    let y = |v: i64| (H - BOTTOM) * (1.0 - v as f64 / max as f64);
    // (x, top, height, class) of every non-empty segment, stacked from the axis up.
    let mut rects = Vec::new();
    let mut ticks = Vec::new();
    let every = (per_day.len() / 8).max(1);
    for (i, day) in per_day.iter().enumerate() {
        let x = LEFT + slot * i as f64 + (slot - bar) / 2.0;
        let mut below = 0;
        for (k, n) in day.iter().enumerate().filter(|(_, n)| **n > 0) {
            rects.push((x, y(below + n), y(below) - y(below + n), CLASSES[k]));
            below += n;
        }
        if i % every == 0 {
            ticks.push((x + bar / 2.0, dates[i].strftime("%-d %b").to_string()));
        }
    }
    html! {
        figure.chart {
            svg viewBox=(format!("0 0 {W} {H}")) role="img" aria-labelledby="chart-title" {
                title id="chart-title" { "Decisions per day: permitted without waiting, held for a director, refused" }
                line x1=(LEFT) y1=(H - BOTTOM) x2=(W) y2=(H - BOTTOM) class="axis" {}
                text x=(LEFT - 6.0) y=(y(max) + 12.0) text-anchor="end" class="tick" { (max) }
                text x=(LEFT - 6.0) y=(H - BOTTOM) text-anchor="end" class="tick" { "0" }
                @for (x, top, height, class) in &rects {
                    rect x=(format!("{x:.1}")) y=(format!("{top:.1}")) width=(format!("{bar:.1}")) height=(format!("{height:.1}")) class=(class) {}
                }
                @for (x, text) in &ticks {
                    text x=(format!("{x:.1}")) y=(H - 6.0) text-anchor="middle" class="tick" { (text) }
                }
            }
            figcaption {
                @for (k, o) in Outcome::ALL.into_iter().enumerate() {
                    span.key { svg width="12" height="12" aria-hidden="true" { rect width="12" height="12" class=(CLASSES[k]) {} } " " (label(o)) }
                }
            }
        }
    }
}
