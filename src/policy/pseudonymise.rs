//! Pseudonymisation and minimisation on the way out. Pure: a payload and rules in, the new
//! payload and a list of what was done out. No IO, no clock: dates come from the payload.
//!
//! Rules are compiled from an agreement's field treatments at load time ([`Op::compile`]), where
//! each is also checked against the type the message schema gives the field, so a rule that does
//! not fit its field fails the load rather than a transfer.

use jiff::civil::Date;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::fields::{PointerPattern, escape};
use crate::keys::AgreementKey;

/// What happens to a field on the way out (pseudonymisation and minimisation).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Treatment {
    /// Sent as it is.
    #[default]
    Keep,
    /// Accepted from the sender but removed before sending.
    Drop,
    /// Replaced by a keyed HMAC-SHA256 token under this agreement's key (`pt-v<version>-<hex>`).
    Token,
    /// A date reduced to a year, a year and month, or an age band at an event date.
    GeneraliseDate {
        to: DateLevel,
        /// For `age_band`: the lower bounds of the bands, ascending (e.g. [16, 18, 25, 35]).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        bands: Vec<u16>,
        /// For `age_band`: the pointer of the event date the age is taken at.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<String>,
    },
    /// A postcode reduced to its district (outward code, e.g. `LS6`) or sector (`LS6 3`).
    GeneralisePostcode { to: PostcodeLevel },
    /// All but the last `keep_last` characters replaced by `*`.
    Mask { keep_last: u8 },
    /// Replaced by the fixed marker `[REDACTED]`.
    Redact,
    /// A number replaced by the label of its range, given by ascending bounds.
    Bucket { bounds: Vec<f64> },
}

impl Treatment {
    pub fn is_keep(&self) -> bool {
        *self == Treatment::Keep
    }

    /// What the treatment does to a field, as an agreement document says it.
    pub fn describe(&self) -> String {
        let list = |xs: &mut dyn Iterator<Item = String>| xs.collect::<Vec<_>>().join(", ");
        match self {
            Self::Keep => "sent as it is".into(),
            Self::Drop => "accepted from the sender, removed before sending".into(),
            Self::Token => "replaced by a keyed token (HMAC-SHA256 under this agreement's key)".into(),
            Self::GeneraliseDate {
                to: DateLevel::Year, ..
            } => "reduced to the year".into(),
            Self::GeneraliseDate {
                to: DateLevel::YearMonth,
                ..
            } => "reduced to the year and month".into(),
            Self::GeneraliseDate {
                to: DateLevel::AgeBand,
                bands,
                at,
            } => format!(
                "replaced by an age band (from {}) at the date in {}",
                list(&mut bands.iter().map(u16::to_string)),
                at.as_deref().unwrap_or("the transfer")
            ),
            Self::GeneralisePostcode {
                to: PostcodeLevel::District,
            } => "reduced to the postcode district (outward code)".into(),
            Self::GeneralisePostcode {
                to: PostcodeLevel::Sector,
            } => "reduced to the postcode sector".into(),
            Self::Mask { keep_last } => format!("masked, all but the last {keep_last} character(s)"),
            Self::Redact => format!("replaced by {REDACTED}"),
            Self::Bucket { bounds } => format!(
                "replaced by its range (bounds {})",
                list(&mut bounds.iter().map(f64::to_string))
            ),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Keep => "keep",
            Self::Drop => "drop",
            Self::Token => "token",
            Self::GeneraliseDate { .. } => "generalise_date",
            Self::GeneralisePostcode { .. } => "generalise_postcode",
            Self::Mask { .. } => "mask",
            Self::Redact => "redact",
            Self::Bucket { .. } => "bucket",
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DateLevel {
    Year,
    YearMonth,
    AgeBand,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PostcodeLevel {
    District,
    Sector,
}

/// A compiled treatment.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Keep,
    Drop,
    Token,
    Year,
    YearMonth,
    AgeBand { bands: Vec<u16>, at: PointerPattern },
    PostcodeDistrict,
    PostcodeSector,
    Mask { keep_last: usize },
    Redact,
    Bucket { bounds: Vec<f64> },
}

/// The JSON type an operator needs its field to have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    Anything,
    String,
    Date,
    Number,
}

pub const REDACTED: &str = "[REDACTED]";

impl Op {
    pub fn compile(t: &Treatment) -> Result<Self, String> {
        Ok(match t {
            Treatment::Keep => Self::Keep,
            Treatment::Drop => Self::Drop,
            Treatment::Token => Self::Token,
            Treatment::GeneraliseDate {
                to: DateLevel::Year,
                bands,
                at,
            } => {
                no_band_options(bands, at.as_ref())?;
                Self::Year
            }
            Treatment::GeneraliseDate {
                to: DateLevel::YearMonth,
                bands,
                at,
            } => {
                no_band_options(bands, at.as_ref())?;
                Self::YearMonth
            }
            Treatment::GeneraliseDate {
                to: DateLevel::AgeBand,
                bands,
                at,
            } => {
                if bands.is_empty() || bands.windows(2).any(|w| w[0] >= w[1]) {
                    return Err("age bands need at least one lower bound, strictly ascending".into());
                }
                let at = at
                    .as_ref()
                    .ok_or("an age band needs `at`, the pointer of the event date")?;
                let at = PointerPattern::parse(at).map_err(|e| format!("at: {e}"))?;
                if at.has_wildcard() {
                    return Err("at: the event date pointer cannot contain '*'".into());
                }
                Self::AgeBand {
                    bands: bands.clone(),
                    at,
                }
            }
            Treatment::GeneralisePostcode {
                to: PostcodeLevel::District,
            } => Self::PostcodeDistrict,
            Treatment::GeneralisePostcode {
                to: PostcodeLevel::Sector,
            } => Self::PostcodeSector,
            Treatment::Mask { keep_last } => Self::Mask {
                keep_last: usize::from(*keep_last),
            },
            Treatment::Redact => Self::Redact,
            Treatment::Bucket { bounds } => {
                if bounds.is_empty() || bounds.windows(2).any(|w| w[0] >= w[1]) || bounds.iter().any(|b| !b.is_finite())
                {
                    return Err("bucket bounds must be finite and strictly ascending".into());
                }
                Self::Bucket { bounds: bounds.clone() }
            }
        })
    }

    pub fn needs(&self) -> Needs {
        match self {
            Self::Keep | Self::Drop => Needs::Anything,
            Self::Token | Self::PostcodeDistrict | Self::PostcodeSector | Self::Mask { .. } | Self::Redact => {
                Needs::String
            }
            Self::Year | Self::YearMonth | Self::AgeBand { .. } => Needs::Date,
            Self::Bucket { .. } => Needs::Number,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Keep => "keep",
            Self::Drop => "drop",
            Self::Token => "token",
            Self::Year => "generalise_date:year",
            Self::YearMonth => "generalise_date:year_month",
            Self::AgeBand { .. } => "generalise_date:age_band",
            Self::PostcodeDistrict => "generalise_postcode:district",
            Self::PostcodeSector => "generalise_postcode:sector",
            Self::Mask { .. } => "mask",
            Self::Redact => "redact",
            Self::Bucket { .. } => "bucket",
        }
    }
}

fn no_band_options(bands: &[u16], at: Option<&String>) -> Result<(), String> {
    if bands.is_empty() && at.is_none() {
        Ok(())
    } else {
        Err("`bands` and `at` belong to age_band only".into())
    }
}

/// A rule: where, and what.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub pattern: PointerPattern,
    pub op: Op,
}

/// One thing done: the concrete pointer and the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    pub pointer: String,
    pub op: &'static str,
}

/// Why a rule could not be applied to this payload (its type did not fit, or an age band's
/// event date was missing). Names the pointer, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub pointer: String,
    pub reason: &'static str,
}

/// Applies every non-`keep` rule to a copy of `payload`. Drops are applied last, deepest and
/// highest array index first, so earlier pointers stay valid.
pub fn apply(payload: &Value, rules: &[Rule], key: Option<&AgreementKey>) -> Result<(Value, Vec<Applied>), Failure> {
    let mut out = payload.clone();
    let mut applied = Vec::new();
    let mut drops = Vec::new();
    for rule in rules {
        if rule.op == Op::Keep {
            continue;
        }
        for pointer in expand(payload, &rule.pattern) {
            if rule.op == Op::Drop {
                drops.push(pointer);
                continue;
            }
            let replacement = transform(payload, &pointer, &rule.op, key)?;
            if let Some(slot) = out.pointer_mut(&pointer) {
                *slot = replacement;
            }
            applied.push(Applied {
                pointer,
                op: rule.op.name(),
            });
        }
    }
    // Highest array index and deepest node first, comparing indexes as numbers, so no removal
    // shifts an element another drop still has to find.
    drops.sort_by(|a, b| compare_pointers(b, a));
    for pointer in drops {
        remove(&mut out, &pointer);
        applied.push(Applied { pointer, op: "drop" });
    }
    Ok((out, applied))
}

fn segments(pointer: &str) -> Vec<&str> {
    pointer.split('/').skip(1).collect()
}

/// Orders pointers segment by segment, numeric segments as numbers, a prefix before its
/// extensions.
fn compare_pointers(a: &str, b: &str) -> std::cmp::Ordering {
    let (sa, sb) = (segments(a), segments(b));
    for (x, y) in sa.iter().zip(&sb) {
        let o = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(i), Ok(j)) => i.cmp(&j),
            _ => x.cmp(y),
        };
        if o != std::cmp::Ordering::Equal {
            return o;
        }
    }
    sa.len().cmp(&sb.len())
}

/// The concrete pointers in `value` that `pattern` names (wildcards expanded over arrays).
pub fn expand(value: &Value, pattern: &PointerPattern) -> Vec<String> {
    let mut out = Vec::new();
    expand_into(value, &pattern.segments(), String::new(), &mut out);
    out
}

fn expand_into(value: &Value, rest: &[Option<String>], at: String, out: &mut Vec<String>) {
    let Some((head, tail)) = rest.split_first() else {
        out.push(at);
        return;
    };
    match (head, value) {
        (None, Value::Array(items)) => {
            for (i, v) in items.iter().enumerate() {
                expand_into(v, tail, format!("{at}/{i}"), out);
            }
        }
        (Some(key), Value::Object(map)) => {
            if let Some(v) = map.get(key) {
                expand_into(v, tail, format!("{at}/{}", escape(key)), out);
            }
        }
        (Some(key), Value::Array(items)) => {
            if let Some(v) = key.parse::<usize>().ok().and_then(|i| items.get(i)) {
                expand_into(v, tail, format!("{at}/{key}"), out);
            }
        }
        _ => {}
    }
}

fn remove(value: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    match value.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.remove(&last);
        }
        Some(Value::Array(items)) => {
            if let Ok(i) = last.parse::<usize>()
                && i < items.len()
            {
                items.remove(i);
            }
        }
        _ => {}
    }
}

fn transform(payload: &Value, pointer: &str, op: &Op, key: Option<&AgreementKey>) -> Result<Value, Failure> {
    let fail = |reason| Failure {
        pointer: pointer.to_owned(),
        reason,
    };
    let value = payload.pointer(pointer).ok_or(fail("missing"))?;
    if value.is_null() {
        return Ok(Value::Null);
    }
    let text = || value.as_str().ok_or(fail("not a string"));
    let date = || {
        text()?
            .get(..10)
            .and_then(|d| d.parse::<Date>().ok())
            .ok_or(fail("not a date"))
    };
    Ok(match op {
        Op::Keep | Op::Drop => value.clone(),
        Op::Token => {
            let key = key.ok_or(fail("no key for this agreement"))?;
            Value::String(key.token(text()?))
        }
        Op::Year => Value::String(format!("{:04}", date()?.year())),
        Op::YearMonth => {
            let d = date()?;
            Value::String(format!("{:04}-{:02}", d.year(), d.month()))
        }
        Op::AgeBand { bands, at } => {
            let born = date()?;
            let event = payload
                .pointer(at.as_str())
                .and_then(Value::as_str)
                .and_then(|s| s.get(..10))
                .and_then(|s| s.parse::<Date>().ok())
                .ok_or(Failure {
                    pointer: at.as_str().to_owned(),
                    reason: "the event date for the age band is missing",
                })?;
            Value::String(age_band(age_at(born, event), bands))
        }
        Op::PostcodeDistrict => Value::String(postcode_parts(text()?).ok_or(fail("not a postcode"))?.0),
        Op::PostcodeSector => {
            let (outward, inward) = postcode_parts(text()?).ok_or(fail("not a postcode"))?;
            Value::String(format!("{outward} {}", &inward[..1]))
        }
        Op::Mask { keep_last } => {
            let chars: Vec<char> = text()?.chars().collect();
            let keep = (*keep_last).min(chars.len());
            let masked: String = std::iter::repeat_n('*', chars.len() - keep)
                .chain(chars[chars.len() - keep..].iter().copied())
                .collect();
            Value::String(masked)
        }
        Op::Redact => Value::String(REDACTED.to_owned()),
        Op::Bucket { bounds } => Value::String(bucket(value.as_f64().ok_or(fail("not a number"))?, bounds)),
    })
}

/// Whole years from `born` to `on` (0 if `on` is before `born`).
pub fn age_at(born: Date, on: Date) -> i16 {
    let mut age = on.year() - born.year();
    if (on.month(), on.day()) < (born.month(), born.day()) {
        age -= 1;
    }
    age.max(0)
}

/// The label of the band `age` falls in: `<first`, `lo-hi` (inclusive), or `last+`.
pub fn age_band(age: i16, bands: &[u16]) -> String {
    let age = u16::try_from(age).unwrap_or(0);
    match bands.iter().rposition(|b| *b <= age) {
        None => format!("<{}", bands[0]),
        Some(i) if i + 1 == bands.len() => format!("{}+", bands[i]),
        Some(i) => format!("{}-{}", bands[i], bands[i + 1] - 1),
    }
}

/// The label of the range `v` falls in: `<first`, `[lo,hi)` as `lo-hi`, or `last+`.
pub fn bucket(v: f64, bounds: &[f64]) -> String {
    match bounds.iter().rposition(|b| *b <= v) {
        None => format!("<{}", bounds[0]),
        Some(i) if i + 1 == bounds.len() => format!("{}+", bounds[i]),
        Some(i) => format!("{}-{}", bounds[i], bounds[i + 1]),
    }
}

/// A UK postcode's outward and inward codes, normalised (upper case, no inner spaces).
pub fn postcode_parts(s: &str) -> Option<(String, String)> {
    let compact: String = s
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    if !(5..=7).contains(&compact.len()) || !compact.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let (outward, inward) = compact.split_at(compact.len() - 3);
    let inward_ok = inward.as_bytes()[0].is_ascii_digit() && inward[1..].chars().all(|c| c.is_ascii_alphabetic());
    inward_ok.then(|| (outward.to_owned(), inward.to_owned()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rule(p: &str, op: Op) -> Rule {
        Rule {
            pattern: PointerPattern::parse(p).unwrap(),
            op,
        }
    }

    #[test]
    fn generalises_dates_postcodes_and_numbers() {
        let payload =
            json!({"dob": "1991-04-17", "postcode": "ls6 3hg", "score": 17, "referral": {"date": "2026-03-01"}});
        let rules = [
            rule(
                "/dob",
                Op::AgeBand {
                    bands: vec![16, 18, 25, 35, 45, 55, 65],
                    at: PointerPattern::parse("/referral/date").unwrap(),
                },
            ),
            rule("/postcode", Op::PostcodeSector),
            rule(
                "/score",
                Op::Bucket {
                    bounds: vec![0.0, 5.0, 10.0, 15.0, 20.0],
                },
            ),
        ];
        let (out, applied) = apply(&payload, &rules, None).unwrap();
        assert_eq!(
            out,
            json!({"dob": "25-34", "postcode": "LS6 3", "score": "15-20", "referral": {"date": "2026-03-01"}})
        );
        assert_eq!(applied.len(), 3);
    }

    #[test]
    fn age_is_taken_at_the_event_date() {
        let d = |s: &str| s.parse::<Date>().unwrap();
        assert_eq!(age_at(d("2000-03-02"), d("2018-03-01")), 17);
        assert_eq!(age_at(d("2000-03-02"), d("2018-03-02")), 18);
        assert_eq!(age_band(15, &[16, 18]), "<16");
        assert_eq!(age_band(17, &[16, 18]), "16-17");
        assert_eq!(age_band(80, &[16, 18]), "18+");
    }

    #[test]
    fn drops_in_arrays_leave_the_rest() {
        let payload = json!({"household": [{"name": "A", "dob": "1"}, {"name": "B", "dob": "2"}], "keep": 1});
        let (out, applied) = apply(&payload, &[rule("/household/*/dob", Op::Drop)], None).unwrap();
        assert_eq!(out, json!({"household": [{"name": "A"}, {"name": "B"}], "keep": 1}));
        assert_eq!(
            applied.iter().map(|a| a.pointer.as_str()).collect::<Vec<_>>(),
            ["/household/1/dob", "/household/0/dob"]
        );
    }

    #[test]
    fn dropping_array_elements_beyond_ten_removes_every_one() {
        let items: Vec<Value> = (0..12).map(|i| json!({"n": i})).collect();
        let (out, applied) = apply(
            &json!({"items": items, "other": [1]}),
            &[rule("/items/*", Op::Drop)],
            None,
        )
        .unwrap();
        assert_eq!(out, json!({"items": [], "other": [1]}));
        assert_eq!(applied.len(), 12);
        assert_eq!(applied[0].pointer, "/items/11");
        assert_eq!(applied[1].pointer, "/items/10");
    }

    #[test]
    fn mask_and_redact() {
        let payload = json!({"phone": "07700900123", "notes": "x"});
        let (out, _) = apply(
            &payload,
            &[rule("/phone", Op::Mask { keep_last: 3 }), rule("/notes", Op::Redact)],
            None,
        )
        .unwrap();
        assert_eq!(out, json!({"phone": "********123", "notes": "[REDACTED]"}));
    }

    #[test]
    fn postcodes() {
        assert_eq!(postcode_parts("LS6 3HG"), Some(("LS6".into(), "3HG".into())));
        assert_eq!(postcode_parts("sw1a1aa"), Some(("SW1A".into(), "1AA".into())));
        assert_eq!(postcode_parts("LS6"), None);
        assert_eq!(postcode_parts("LS6 HHG"), None);
    }

    #[test]
    fn a_token_rule_without_a_key_fails_closed() {
        let err = apply(&json!({"n": "9990000018"}), &[rule("/n", Op::Token)], None).unwrap_err();
        assert_eq!(err.pointer, "/n");
    }
}
