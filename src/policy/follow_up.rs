//! The rules for what people do after a decision: a director approves or refuses a held
//! disclosure, reviews an urgent one afterwards, and the sender records that the person was told.
//! Reasons and outcomes are codes; notes are references into the case record, never free text.
//! The HTTP layer (`api::follow_ups`) asks these rules; it keeps none of its own.

use jiff::civil::Date;

use crate::agreement::{Agreement, NotInForce};

/// A closed list of codes, each with its stable spelling (the ledger stores it).
pub trait Code: Sized + Copy + 'static {
    const ALL: &'static [Self];
    fn code(self) -> &'static str;

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.code() == s)
    }

    /// `a, b, c`: for the message that names the allowed codes.
    fn list() -> String {
        Self::ALL.iter().map(|c| c.code()).collect::<Vec<_>>().join(", ")
    }
}

/// Why a director releases a held disclosure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApproveReason {
    RiskOfSeriousHarm,
    OverridingPublicInterest,
    LegalDuty,
    ChildProtection,
    AdultAtRisk,
}

impl Code for ApproveReason {
    const ALL: &'static [Self] = &[
        Self::RiskOfSeriousHarm,
        Self::OverridingPublicInterest,
        Self::LegalDuty,
        Self::ChildProtection,
        Self::AdultAtRisk,
    ];
    fn code(self) -> &'static str {
        match self {
            Self::RiskOfSeriousHarm => "risk_of_serious_harm",
            Self::OverridingPublicInterest => "overriding_public_interest",
            Self::LegalDuty => "legal_duty",
            Self::ChildProtection => "child_protection",
            Self::AdultAtRisk => "adult_at_risk",
        }
    }
}

/// Why a director stops a held disclosure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseReason {
    InsufficientGrounds,
    SeekConsentFirst,
    Disproportionate,
    WrongRecipient,
}

impl Code for RefuseReason {
    const ALL: &'static [Self] = &[
        Self::InsufficientGrounds,
        Self::SeekConsentFirst,
        Self::Disproportionate,
        Self::WrongRecipient,
    ];
    fn code(self) -> &'static str {
        match self {
            Self::InsufficientGrounds => "insufficient_grounds",
            Self::SeekConsentFirst => "seek_consent_first",
            Self::Disproportionate => "disproportionate",
            Self::WrongRecipient => "wrong_recipient",
        }
    }
}

/// A director's judgement of an urgent transfer, afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewOutcome {
    Justified,
    NotJustified,
}

impl Code for ReviewOutcome {
    const ALL: &'static [Self] = &[Self::Justified, Self::NotJustified];
    fn code(self) -> &'static str {
        match self {
            Self::Justified => "justified",
            Self::NotJustified => "not_justified",
        }
    }
}

/// A case-record reference (`CMS:case/2201`): letters, digits and `._:/-`, at most 64 characters.
/// Anything else may be a note, and notes (patient data) never reach the ledger.
pub fn is_case_reference(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:/-".contains(&b))
}

/// A person as a token names them: the issuer (when the record has it) and the subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Person<'a> {
    pub issuer: Option<&'a str>,
    pub sub: &'a str,
}

impl Person<'_> {
    /// The same person as far as the record can tell: the same subject, compared without case or
    /// surrounding space ("Alice" is "alice"), invisible characters or compatibility forms, under
    /// the same issuer. An issuer the record does not have matches any (fail closed: the rule is
    /// not dodged by an old entry). This is the comparison past records are checked with
    /// (`ledger verify`, the delivery guard): it never changes, so an approval that was valid
    /// when it was made stays valid.
    pub fn is(&self, other: &Person<'_>) -> bool {
        self.same_issuer(other) && normalise(self.sub) == normalise(other.sub)
    }

    /// [`Person::is`], or two subjects that merely look alike (UTS #39 confusable skeletons: a
    /// Cyrillic "а" is a Latin "a", "rn" is "m", a capital "I" is an "l"). What the two-person
    /// rule refuses when someone decides now: it errs towards asking another director, never
    /// towards letting someone decide their own. Never used to grant access.
    pub fn looks_like(&self, other: &Person<'_>) -> bool {
        self.is(other) || (self.same_issuer(other) && skeleton(self.sub) == skeleton(other.sub))
    }

    fn same_issuer(&self, other: &Person<'_>) -> bool {
        !matches!((self.issuer, other.issuer), (Some(a), Some(b)) if a != b)
    }
}

/// A subject as a person: compatibility-normalised (NFKC: a fullwidth "ａ" is "a"), invisible
/// characters removed (a zero-width space does not make another person), lower-cased, trimmed.
fn normalise(sub: &str) -> String {
    use unicode_normalization::UnicodeNormalization as _;
    sub.nfkc()
        .filter(|c| !default_ignorable(*c) && !blank(*c))
        .collect::<String>()
        .to_lowercase()
}

/// What a subject looks like: its confusable skeleton (UTS #39), taken before lower-casing (so a
/// capital look-alike meets its Latin letter before case folding turns "I" into "i") and again
/// after (for the lower-case forms): "ТОМ" in Cyrillic is "TOM", "Ian" is "lan".
fn skeleton(sub: &str) -> String {
    use unicode_normalization::UnicodeNormalization as _;
    use unicode_security::confusable_detection::skeleton as uts39;
    let plain: String = sub.nfkc().filter(|c| !default_ignorable(*c) && !blank(*c)).collect();
    let first = uts39(&plain).collect::<String>().to_lowercase();
    uts39(&first).collect::<String>().to_lowercase()
}

/// Unicode's Default_Ignorable_Code_Point characters: drawn as nothing, so two subjects that differ
/// only by them look the same to a person.
fn default_ignorable(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{FFF0}'..='\u{FFF8}' | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E0FFF}')
}

/// Spaces of every width, control characters and the braille blank: a name that differs from
/// another only by them looks the same on a page (console review, F1).
fn blank(c: char) -> bool {
    c.is_whitespace() || c.is_control() || c == '\u{2800}'
}

/// The two-person rule: whoever asked for a disclosure cannot also approve, refuse or review it.
pub fn two_people(asked_by: Option<Person<'_>>, deciding: Person<'_>) -> Result<(), TwoPersonRule> {
    if asked_by.is_some_and(|a| a.looks_like(&deciding)) {
        Err(TwoPersonRule)
    } else {
        Ok(())
    }
}

/// The two-person rule was broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwoPersonRule;

impl TwoPersonRule {
    pub const CODE: &'static str = "two_person_rule";
    pub const MESSAGE: &'static str = "The person who asked for a disclosure cannot also approve, refuse or review it.";
}

/// Why a held disclosure cannot be approved now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotApprovable {
    /// The agreement it was held under is no longer loaded.
    UnknownAgreement,
    /// The agreement has changed (its content hash) since the disclosure was asked for.
    AgreementChanged,
    NotInForce(NotInForce),
}

impl NotApprovable {
    pub fn code(self) -> &'static str {
        match self {
            Self::UnknownAgreement => "unknown_agreement",
            Self::AgreementChanged => "agreement_changed",
            Self::NotInForce(why) => why.code(),
        }
    }

    pub fn explain(self) -> &'static str {
        match self {
            Self::UnknownAgreement => "The agreement is no longer loaded.",
            Self::AgreementChanged => {
                "The agreement has changed since this was asked for: it can only be sent again, to be decided under \
                 the agreement in force."
            }
            Self::NotInForce(why) => why.explain(),
        }
    }
}

/// Approval is when a held disclosure is really decided: the agreement must be the one it was
/// asked for under (`decided_under`, the content hash the decision recorded) and in force on the
/// day of approval, not only on the day it was asked for.
pub fn approvable(
    agreement: Option<&Agreement>,
    decided_under: Option<&str>,
    today: Date,
) -> Result<(), NotApprovable> {
    let agreement = agreement.ok_or(NotApprovable::UnknownAgreement)?;
    if decided_under != Some(agreement.content_hash()) {
        return Err(NotApprovable::AgreementChanged);
    }
    agreement.in_force(today).map_err(NotApprovable::NotInForce)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_parse_back_and_nothing_else_does() {
        for r in ApproveReason::ALL {
            assert_eq!(ApproveReason::parse(r.code()), Some(*r));
        }
        for r in RefuseReason::ALL {
            assert_eq!(RefuseReason::parse(r.code()), Some(*r));
        }
        for r in ReviewOutcome::ALL {
            assert_eq!(ReviewOutcome::parse(r.code()), Some(*r));
        }
        assert_eq!(
            ApproveReason::parse("insufficient_grounds"),
            None,
            "a refuse reason does not approve"
        );
        assert_eq!(RefuseReason::parse("Risk_of_serious_harm"), None);
        assert_eq!(
            ApproveReason::list(),
            "risk_of_serious_harm, overriding_public_interest, legal_duty, child_protection, adult_at_risk"
        );
    }

    #[test]
    fn the_asker_cannot_decide_their_own_disclosure() {
        let p = |issuer, sub| Person { issuer, sub };
        let idp = Some("https://idp.example");
        assert_eq!(two_people(Some(p(idp, "alice")), p(idp, "alice")), Err(TwoPersonRule));
        assert_eq!(two_people(Some(p(idp, "dee")), p(idp, "alice")), Ok(()));
        assert_eq!(
            two_people(None, p(idp, "dee")),
            Ok(()),
            "a system's own transfer has no asker"
        );
        // Case and surrounding space do not make a second person.
        assert_eq!(two_people(Some(p(idp, "alice")), p(idp, " Alice ")), Err(TwoPersonRule));
        assert_eq!(two_people(Some(p(idp, "ÉLODIE")), p(idp, "élodie")), Err(TwoPersonRule));
        // Nor do invisible characters or compatibility forms (review finding).
        assert_eq!(
            two_people(Some(p(idp, "alice")), p(idp, "alice\u{200B}")),
            Err(TwoPersonRule)
        );
        assert_eq!(
            two_people(Some(p(idp, "alice")), p(idp, "\u{FF41}lice")),
            Err(TwoPersonRule)
        );
        assert_eq!(
            two_people(Some(p(idp, "alice")), p(idp, "al\u{00AD}ice")),
            Err(TwoPersonRule)
        );
        // Nor blanks of other widths, control characters or the braille blank (console review).
        for other in ["sam\u{2800}", "sam\u{1}", "sa\u{200A}m", "s a m", "sam\u{3000}"] {
            assert_eq!(
                two_people(Some(p(idp, "sam")), p(idp, other)),
                Err(TwoPersonRule),
                "{other:?}"
            );
        }
        // Nor letters of another script that look the same (UTS #39 skeletons; console review):
        // Cyrillic "а" and "е", Greek "ο", "rn" for "m", a digit zero for "o".
        for (asked, other) in [
            ("alice", "\u{430}lice"),
            ("alice", "alic\u{435}"),
            ("bob", "b\u{3BF}b"),
            ("emma", "ernma"),
            ("bob", "b0b"),
            // Capitals of other scripts, and a capital I for an l (review).
            ("TOM", "\u{422}\u{41E}\u{41C}"),
            ("lan", "Ian"),
        ] {
            assert_eq!(
                two_people(Some(p(idp, asked)), p(idp, other)),
                Err(TwoPersonRule),
                "{other:?}"
            );
        }
        assert_eq!(two_people(Some(p(idp, "alice")), p(idp, "alicia")), Ok(()));
        // Past records are judged by the comparison in force when they were made: look-alikes
        // are refused when someone decides now, but an approval they made earlier still counts
        // as a second person's (no false alarm in `ledger verify` after an upgrade).
        assert!(!p(idp, "emma").is(&p(idp, "ernma")));
        assert!(p(idp, "emma").looks_like(&p(idp, "ernma")));
        assert!(p(idp, "Emma").is(&p(idp, "emma\u{200B}")));
        // Decomposed and composed accents are one spelling.
        assert_eq!(
            two_people(Some(p(idp, "e\u{301}lodie")), p(idp, "\u{E9}lodie")),
            Err(TwoPersonRule)
        );
        // An entry without its issuer matches any issuer; two known issuers are two namespaces.
        assert_eq!(two_people(Some(p(None, "alice")), p(idp, "alice")), Err(TwoPersonRule));
        assert_eq!(
            two_people(Some(p(Some("https://other"), "alice")), p(idp, "alice")),
            Ok(())
        );
    }

    #[test]
    fn approval_needs_the_agreement_it_was_asked_under_in_force_today() {
        let a = crate::test_support::mash_agreement();
        let today: Date = "2026-06-01".parse().unwrap();
        assert_eq!(approvable(Some(&a), Some(a.content_hash()), today), Ok(()));
        assert_eq!(
            approvable(Some(&a), Some("an earlier version's hash"), today),
            Err(NotApprovable::AgreementChanged)
        );
        assert_eq!(
            approvable(None, Some(a.content_hash()), today),
            Err(NotApprovable::UnknownAgreement)
        );
        let expired: Date = "2030-01-01".parse().unwrap();
        assert!(matches!(
            approvable(Some(&a), Some(a.content_hash()), expired),
            Err(NotApprovable::NotInForce(_))
        ));
    }

    #[test]
    fn case_references_not_notes() {
        assert!(is_case_reference("CMS:case/2201"));
        for note in ["", "told mum on the phone", "x".repeat(65).as_str(), "CMS:case/2201\n"] {
            assert!(!is_case_reference(note), "{note:?}");
        }
    }
}
