//! The roles people act in. Which role may do what is written where the rule lives (an
//! agreement's sender roles, the approval rules); this is only the vocabulary.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The people the policies distinguish.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserRole {
    Practitioner,
    SafeguardingLead,
    /// A director or the Caldicott guardian: approves disclosures without consent.
    Director,
    /// The data protection officer: answers subject access requests.
    Dpo,
    Auditor,
}

impl UserRole {
    pub const ALL: [Self; 5] = [
        Self::Practitioner,
        Self::SafeguardingLead,
        Self::Director,
        Self::Dpo,
        Self::Auditor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Practitioner => "practitioner",
            Self::SafeguardingLead => "safeguarding_lead",
            Self::Director => "director",
            Self::Dpo => "dpo",
            Self::Auditor => "auditor",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}
