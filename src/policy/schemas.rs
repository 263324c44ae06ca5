//! Message-type schemas: JSON Schema draft 2020-12 files under `schemas/messages/`, compiled
//! once at start-up, with the gateway's own formats registered.
//!
//! Violations name the JSON pointer and the rule, never the value: a value may be patient data.

use std::collections::BTreeMap;
use std::path::Path;

use jsonschema::error::ValidationErrorKind;
use jsonschema::{Draft, Validator};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::fields::escape;
use crate::problem::{Problem, SourceFile};

const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// One way a request breaks a rule: where (a JSON pointer into the request body) and which rule.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub pointer: String,
    pub rule: String,
    pub message: String,
}

/// A compiled message-type schema.
pub struct MessageSchema {
    name: String,
    hash: String,
    validator: Validator,
    raw: Value,
}

/// What a schema says a field is: its JSON types and format.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Shape {
    pub types: Vec<String>,
    pub format: Option<String>,
    /// The string values of an `enum`, when the field has one.
    pub values: Option<Vec<String>>,
}

impl std::fmt::Debug for MessageSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageSchema")
            .field("name", &self.name)
            .field("hash", &self.hash)
            .finish()
    }
}

/// ODS organisation codes: three to six upper-case letters or digits (practices `A81001`,
/// trusts `RX1`, independent providers `NQT01`).
pub fn is_ods_code(s: &str) -> bool {
    (3..=6).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// Compiles a schema with the gateway's formats: `nhs-number` (modulus 11), `ods-code`, and
/// the standard ones (`date`, `date-time`, …) asserted rather than annotated. A schema that
/// names a format we do not know fails to compile; a remote `$ref` cannot be fetched.
pub fn compile(schema: &Value) -> Result<Validator, String> {
    if schema.get("$schema").and_then(Value::as_str) != Some(DRAFT_2020_12) {
        return Err(format!("$schema must be {DRAFT_2020_12}"));
    }
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .should_validate_formats(true)
        .should_ignore_unknown_formats(false)
        .with_format("nhs-number", crate::nhs_number::is_valid)
        .with_format("ods-code", is_ods_code)
        .build(schema)
        .map_err(|e| e.masked_with("value").to_string())
}

impl MessageSchema {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// SHA-256 (hex) of the schema file, recorded with every decision.
    /// The schema document as written (the console builds its forms from it).
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The shape of the field a pointer pattern names, following `properties`, `items` and
    /// local `$ref`s; `None` if the schema has no such field.
    pub fn shape(&self, pattern: &crate::fields::PointerPattern) -> Option<Shape> {
        let mut node = self.resolve(&self.raw)?;
        for seg in pattern.segments() {
            node = match seg {
                Some(key) if node.get("properties").and_then(|p| p.get(&key)).is_some() => {
                    node.get("properties")?.get(&key)?
                }
                Some(key) if key.parse::<usize>().is_err() => return None,
                _ => node.get("items")?,
            };
            node = self.resolve(node)?;
        }
        let mut types: Vec<String> = match node.get("type") {
            Some(Value::String(t)) => vec![t.clone()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        if types.is_empty()
            && let Some(values) = node.get("enum").and_then(Value::as_array)
        {
            for v in values {
                let t = match v {
                    Value::String(_) => "string",
                    Value::Number(_) => "number",
                    Value::Bool(_) => "boolean",
                    _ => continue,
                };
                if !types.iter().any(|x| x == t) {
                    types.push(t.to_owned());
                }
            }
        }
        Some(Shape {
            types,
            format: node.get("format").and_then(Value::as_str).map(str::to_owned),
            values: node
                .get("enum")
                .and_then(Value::as_array)
                .map(|vs| vs.iter().filter_map(Value::as_str).map(str::to_owned).collect()),
        })
    }

    fn resolve<'a>(&'a self, mut node: &'a Value) -> Option<&'a Value> {
        for _ in 0..16 {
            match node.get("$ref").and_then(Value::as_str) {
                Some(r) => node = self.raw.pointer(r.strip_prefix('#')?)?,
                None => return Some(node),
            }
        }
        None
    }

    /// Every violation in `payload`, with pointers prefixed by `prefix` (the payload's place in
    /// the request body, e.g. `/payload`).
    pub fn violations(&self, payload: &Value, prefix: &str) -> Vec<Violation> {
        violations(&self.validator, payload, prefix)
    }
}

/// Every violation of `validator` in `value`, as pointer and rule, values masked.
pub fn violations(validator: &Validator, value: &Value, prefix: &str) -> Vec<Violation> {
    let mut out = Vec::new();
    for error in validator.iter_errors(value) {
        let at = format!("{prefix}{}", error.instance_path().as_str());
        match error.kind() {
            ValidationErrorKind::Required { property } => out.push(Violation {
                pointer: format!("{at}/{}", escape(property.as_str().unwrap_or_default())),
                rule: "required".into(),
                message: "is required".into(),
            }),
            ValidationErrorKind::AdditionalProperties { unexpected }
            | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
                for name in unexpected {
                    out.push(Violation {
                        pointer: format!("{at}/{}", escape(name)),
                        rule: error.kind().keyword().to_owned(),
                        message: "is not a field defined here".into(),
                    });
                }
            }
            kind => out.push(Violation {
                pointer: at,
                rule: kind.keyword().to_owned(),
                // The masked rendering puts a placeholder where the value would be.
                message: error.masked_with("value").to_string(),
            }),
        }
    }
    out
}

/// Every message type the gateway can carry, and every outbound profile, by name.
#[derive(Debug, Default)]
pub struct MessageSchemas {
    by_name: BTreeMap<String, MessageSchema>,
    outbound: BTreeMap<String, MessageSchema>,
}

impl MessageSchemas {
    /// Compiles every message-type schema (`schemas/messages/*.json`: the file stem is the name)
    /// and every outbound schema (`schemas/outbound/*.json`: what agreements may promise
    /// recipients), as the caller read them. `messages_dir` names the folder in a problem.
    pub fn from_files(
        messages_dir: &Path,
        messages: Vec<SourceFile>,
        outbound: Vec<SourceFile>,
    ) -> Result<Self, Vec<Problem>> {
        let messages = compile_all(messages_dir, messages, true);
        let outbound = compile_all(messages_dir, outbound, false);
        match (messages, outbound) {
            (Ok(by_name), Ok(outbound)) => Ok(Self { by_name, outbound }),
            (m, o) => {
                let mut problems = m.err().unwrap_or_default();
                problems.extend(o.err().unwrap_or_default());
                Err(problems)
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&MessageSchema> {
        self.by_name.get(name)
    }

    pub fn outbound(&self, name: &str) -> Option<&MessageSchema> {
        self.outbound.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    pub fn outbound_names(&self) -> impl Iterator<Item = &str> {
        self.outbound.keys().map(String::as_str)
    }
}

fn compile_all(
    dir: &Path,
    files: Vec<SourceFile>,
    required: bool,
) -> Result<BTreeMap<String, MessageSchema>, Vec<Problem>> {
    {
        let problem = |file: &Path, message: String| Problem {
            file: file.to_path_buf(),
            location: None,
            message,
        };
        let mut problems = Vec::new();
        let mut by_name = BTreeMap::new();
        for SourceFile { path, bytes } in files {
            let Some(name) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
                continue;
            };
            let schema: Value = match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                Err(e) => {
                    problems.push(Problem {
                        file: path.clone(),
                        location: Some(format!("{}:{}", e.line(), e.column())),
                        message: "not valid JSON".into(),
                    });
                    continue;
                }
            };
            match compile(&schema) {
                Ok(validator) => {
                    let hash = hex::encode(Sha256::digest(&bytes));
                    by_name.insert(
                        name.clone(),
                        MessageSchema {
                            name,
                            hash,
                            validator,
                            raw: schema,
                        },
                    );
                }
                Err(e) => problems.push(problem(&path, format!("schema does not compile: {e}"))),
            }
        }
        if required && by_name.is_empty() && problems.is_empty() {
            problems.push(problem(dir, "holds no message schema (*.json)".into()));
        }
        if problems.is_empty() {
            Ok(by_name)
        } else {
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> MessageSchema {
        let v = compile(&json!({
            "$schema": DRAFT_2020_12,
            "type": "object",
            "additionalProperties": false,
            "required": ["nhs_number", "seen"],
            "properties": {
                "nhs_number": {"type": "string", "format": "nhs-number"},
                "seen": {"type": "string", "format": "date"},
                "practice": {"type": "string", "format": "ods-code"}
            }
        }))
        .unwrap();
        MessageSchema {
            name: "t".into(),
            hash: String::new(),
            validator: v,
            raw: Value::Null,
        }
    }

    #[test]
    fn violations_name_pointer_and_rule_never_the_value() {
        let s = schema();
        let v = s.violations(
            &json!({"nhs_number": "9434765918", "seen": "2026-13-45", "extra": "secret-x"}),
            "/payload",
        );
        let got: Vec<_> = v.iter().map(|v| (v.pointer.as_str(), v.rule.as_str())).collect();
        assert!(got.contains(&("/payload/nhs_number", "format")), "{got:?}");
        assert!(got.contains(&("/payload/seen", "format")), "{got:?}");
        assert!(got.contains(&("/payload/extra", "additionalProperties")), "{got:?}");
        let text = serde_json::to_string(&v).unwrap();
        for secret in ["9434765918", "2026-13-45", "secret-x"] {
            assert!(!text.contains(secret), "{text}");
        }
    }

    #[test]
    fn missing_field_is_named_by_its_pointer() {
        let v = schema().violations(&json!({"nhs_number": "9434765919"}), "/payload");
        assert_eq!(
            v,
            vec![Violation {
                pointer: "/payload/seen".into(),
                rule: "required".into(),
                message: "is required".into()
            }]
        );
    }

    #[test]
    fn refuses_other_drafts_unknown_formats_and_remote_refs() {
        assert!(compile(&json!({"type": "object"})).is_err());
        assert!(compile(&json!({"$schema": DRAFT_2020_12, "format": "no-such-format"})).is_err());
        assert!(compile(&json!({"$schema": DRAFT_2020_12, "$ref": "https://example.org/s.json"})).is_err());
    }

    #[test]
    fn ods_codes() {
        assert!(is_ods_code("A81001") && is_ods_code("RX1") && is_ods_code("Y01234"));
        assert!(!is_ods_code("a81001") && !is_ods_code("AB") && !is_ods_code("ABCDEFG") && !is_ods_code("A8-001"));
    }
}
