//! What an information-governance officer sees of an agreement.

use jiff::civil::Date;
use serde::Serialize;

use super::{
    Agreement, AgreementStatus, ConsentTerms, FieldRule, NotInForce, Recipient, Retention, Sender, Transparency,
};

/// What an information-governance officer sees of an agreement.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Serialize)]
pub struct AgreementView<'a> {
    pub id: &'a str,
    pub version: &'a str,
    pub title: &'a str,
    pub status: AgreementStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<&'a str>,
    /// `in_force`, or why transfers are refused today (`agreement_expired`, …).
    pub state: &'static str,
    pub effective_from: Date,
    pub review_by: Date,
    pub expires: Date,
    /// Days until the review date (negative when overdue).
    pub review_due_in_days: i32,
    /// Warnings 30 days ahead of review or expiry.
    pub warnings: Vec<String>,
    pub purpose: &'a str,
    pub sender: &'a Sender,
    pub recipient: &'a Recipient,
    pub message_types: &'a [String],
    pub legal_bases: Vec<LegalBasisView>,
    /// Bases that apply only when the payload says so (each transfer records those that applied).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditional_bases: Vec<ConditionalBasesView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appropriate_policy_document: Option<&'a str>,
    pub national_data_opt_out_applies: bool,
    pub consent: &'a ConsentTerms,
    pub transparency: &'a Transparency,
    pub retention: &'a Retention,
    pub fields: &'a [FieldRule],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbound_schema: Option<&'a str>,
    /// A one-off disclosure template: the kind of request, its requesters and destinations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub one_off: Option<&'a crate::disclosure::OneOffTerms>,
    pub content_hash: &'a str,
}

/// Legal bases that apply when a payload field takes one of some values.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Serialize)]
pub struct ConditionalBasesView {
    pub pointer: String,
    pub values: Vec<String>,
    pub bases: Vec<LegalBasisView>,
    /// The age group the date of birth must agree with, where the values name one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age: Option<super::AgeBand>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Serialize)]
pub struct LegalBasisView {
    pub code: String,
    pub title: String,
    pub source: &'static str,
}

/// How far ahead review and expiry are announced.
pub const WARN_DAYS: i32 = 30;

impl Agreement {
    pub fn view(&self, today: Date) -> AgreementView<'_> {
        let f = &self.file;
        let days = |d: Date| (d - today).get_days();
        let mut warnings = Vec::new();
        let (to_review, to_expiry) = (days(f.review_by), days(f.expires));
        if (0..=WARN_DAYS).contains(&to_review) {
            warnings.push(format!("review due in {to_review} day(s), on {}", f.review_by));
        }
        if (0..=WARN_DAYS).contains(&to_expiry) {
            warnings.push(format!("expires in {to_expiry} day(s), on {}", f.expires));
        }
        AgreementView {
            id: &f.id,
            version: &f.version,
            title: &f.title,
            status: f.status,
            status_reason: f.status_reason.as_deref(),
            state: self.in_force(today).err().map_or("in_force", NotInForce::code),
            effective_from: f.effective_from,
            review_by: f.review_by,
            expires: f.expires,
            review_due_in_days: to_review,
            warnings,
            purpose: f.purpose.trim(),
            sender: &f.sender,
            recipient: &f.recipient,
            message_types: &f.message_types,
            legal_bases: self
                .legal_bases
                .iter()
                .map(|b| LegalBasisView {
                    code: b.code(),
                    title: b.title(),
                    source: b.source(),
                })
                .collect(),
            conditional_bases: f
                .conditional_bases
                .iter()
                .map(|c| ConditionalBasesView {
                    pointer: c.pointer.clone(),
                    values: c.values.clone(),
                    bases: c.bases.iter().map(|code| LegalBasisView::of(code)).collect(),
                    age: c.age.clone(),
                })
                .collect(),
            appropriate_policy_document: f.appropriate_policy_document.as_deref(),
            national_data_opt_out_applies: f.national_data_opt_out_applies,
            consent: &f.consent,
            transparency: &f.transparency,
            retention: &f.retention,
            fields: &f.fields,
            one_off: f.one_off.as_ref(),
            outbound_schema: f.outbound_schema.as_deref(),
            content_hash: &self.content_hash,
        }
    }
}

impl LegalBasisView {
    /// A code as shown: its title and source when it is a known code, the code alone if not.
    pub fn of(code: &str) -> Self {
        match crate::legal::LegalBasis::parse(code) {
            Ok(b) => Self {
                code: b.code(),
                title: b.title(),
                source: b.source(),
            },
            Err(_) => Self {
                code: code.to_owned(),
                title: String::new(),
                source: "",
            },
        }
    }
}
