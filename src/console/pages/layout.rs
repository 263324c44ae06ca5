//! The frame every page shares: title, header with who is signed in, navigation by role, and the
//! one stylesheet. Titles never carry patient data.

use maud::{DOCTYPE, Markup, html};

use crate::console::session::Signed;
use crate::platform::auth::UserRole;

/// Times as people in England read them.
pub fn london(t: jiff::Timestamp) -> String {
    t.in_tz("Europe/London")
        .map(|z| z.strftime("%-d %b %Y %H:%M %Z").to_string())
        .unwrap_or_else(|_| t.to_string())
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " — isa-gateway" }
            link rel="stylesheet" href="/assets/console.css";
        }
    }
}

/// A page for a signed-in person.
pub fn page(title: &str, who: &Signed, body: Markup) -> Markup {
    let link = |href: &'static str, text: &'static str| html! { li { a href=(href) { (text) } } };
    html! {
        (DOCTYPE)
        html lang="en-GB" {
            (head(title))
            body {
                a.skip href="#main" { "Skip to main content" }
                header.banner {
                    div.brand { a href="/" { "isa-gateway" } }
                    nav aria-label="Main" {
                        ul {
                            @if who.has(UserRole::Practitioner) || who.has(UserRole::SafeguardingLead) {
                                (link("/send", "Send"))
                                (link("/mine", "My transfers"))
                                (link("/told", "To be told"))
                            }
                            @if who.has(UserRole::Director) { (link("/held", "Held for approval")) }
                            @if who.has(UserRole::Auditor) { (link("/audit", "Audit")) (link("/audit/ledger", "Ledger")) }
                            @if who.has(UserRole::Dpo) { (link("/dpo", "Subject access")) }
                        }
                    }
                    form.signout method="post" action="/sign-out" {
                        span.who { (who.name) " · " (who.user.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")) }
                        input type="hidden" name="csrf" value=(who.csrf);
                        button.link type="submit" { "Sign out" }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A page for someone not (or no longer) signed in.
pub fn bare(title: &str, text: &str) -> Markup {
    bare_with(title, html! { p { (text) } p { a href="/" { "Back to the start" } } })
}

pub fn bare_with(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en-GB" {
            (head(title))
            body {
                header.banner { div.brand { a href="/" { "isa-gateway" } } }
                main id="main" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}
