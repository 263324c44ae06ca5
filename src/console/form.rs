//! Forms generated from JSON Schema, and the JSON a submitted form stands for.
//!
//! Each input is named by its JSON pointer in the envelope (`/payload/subject/nhs_number`), so a
//! violation the decision core reports (a pointer and a rule) is shown beside the field it points
//! at. Enumerations are choices, dates are dates, booleans are yes/no, arrays of choices are
//! checkboxes, and other arrays grow by an "Add another" button (a round trip: no script).
//! Local `$ref`s (`#/$defs/…`) are followed within the document they appear in; the payload is
//! the message type's own schema document.

use std::collections::HashMap;

use maud::{Markup, html};
use serde_json::{Map, Value};

/// A submitted form: every value under its input's name, in order.
#[derive(Debug, Default)]
pub struct Values {
    map: HashMap<String, Vec<String>>,
}

/// The hidden input counting an array's items.
const COUNT: &str = "#count";
/// The name arrays of choices use for their checkboxes: the array's pointer and this.
const EACH: &str = "/*";

impl Values {
    pub fn new(pairs: &[(String, String)]) -> Self {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in pairs {
            map.entry(k.clone()).or_default().push(v.clone());
        }
        Self { map }
    }

    pub fn one(&self, name: &str) -> Option<&str> {
        self.map.get(name).and_then(|v| v.first()).map(String::as_str)
    }

    fn all(&self, name: &str) -> &[String] {
        self.map.get(name).map_or(&[], Vec::as_slice)
    }

    fn count(&self, ptr: &str) -> Option<usize> {
        self.one(&format!("{COUNT}{ptr}"))
            .and_then(|n| n.parse().ok())
            .map(|n: usize| n.min(30))
    }

    /// "Add another" was pressed for this array: one more item.
    pub fn add_item(&mut self, ptr: &str, minimum: usize) {
        let n = self.count(ptr).unwrap_or(minimum) + 1;
        self.map.insert(format!("{COUNT}{ptr}"), vec![n.to_string()]);
    }
}

/// Messages to show beside fields, by pointer.
pub type Errors = HashMap<String, Vec<String>>;

fn resolve<'a>(node: &'a Value, root: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .strip_prefix('#')
            .and_then(|p| root.pointer(p))
            .map_or(node, |target| resolve(target, root)),
        None => node,
    }
}

fn kind(node: &Value) -> &str {
    if node.get("enum").is_some() {
        return "enum";
    }
    match node.get("type") {
        Some(Value::String(t)) => t,
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("string"),
        _ => "string",
    }
}

fn words(name: &str) -> String {
    let s = name.replace('_', " ");
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The envelope's form: the message type's payload first, then consent, telling the person,
/// urgency and opt-out, as the envelope schema describes them.
pub fn envelope(envelope: &Value, message: &Value, one_off: bool, values: &Values, errors: &Errors) -> Markup {
    let props = envelope.get("properties").and_then(Value::as_object);
    html! {
        (node(message, message, "/payload", &words(message.get("title").and_then(Value::as_str).unwrap_or("Message")), true, values, errors))
        @if let Some(props) = props {
            @for (name, schema) in props.iter().filter(|(n, _)| on_the_form(n, one_off)) {
                (node(schema, envelope, &format!("/{name}"), &words(name), false, values, errors))
            }
        }
    }
}

fn field_errors(ptr: &str, errors: &Errors) -> Markup {
    html! {
        @for m in errors.get(ptr).into_iter().flatten() {
            p.error-message id=(format!("e{ptr}")) { span.visually-hidden { "Error: " } (m) }
        }
    }
}

fn node(
    schema: &Value,
    root: &Value,
    ptr: &str,
    label: &str,
    required: bool,
    values: &Values,
    errors: &Errors,
) -> Markup {
    let schema = resolve(schema, root);
    let description = schema.get("description").and_then(Value::as_str);
    let id = format!("f{ptr}");
    let has_error = errors.contains_key(ptr);
    let req = if required { " (required)" } else { "" };
    match kind(schema) {
        "object" => {
            let required_names: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            html! {
                fieldset.group id=(id) {
                    legend { (label) (req) }
                    @if let Some(d) = description { p.hint { (d) } }
                    (field_errors(ptr, errors))
                    @if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                        @for (name, child) in props {
                            (node(child, root, &format!("{ptr}/{name}"), &words(name), required_names.contains(&name.as_str()), values, errors))
                        }
                    }
                }
            }
        }
        "array" => {
            let items = resolve(schema.get("items").unwrap_or(&Value::Null), root);
            let minimum = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0) as usize;
            if items.get("enum").is_some() {
                let chosen = values.all(&format!("{ptr}{EACH}"));
                html! {
                    fieldset.group id=(id) {
                        legend { (label) (req) }
                        @if let Some(d) = description { p.hint { (d) } }
                        (field_errors(ptr, errors))
                        @for v in items["enum"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                            @let cid = format!("{id}-{v}");
                            div.choice {
                                input type="checkbox" id=(cid) name=(format!("{ptr}{EACH}")) value=(v) checked[chosen.iter().any(|c| c == v)];
                                label for=(cid) { (words(v)) }
                            }
                        }
                    }
                }
            } else {
                let n = values
                    .count(ptr)
                    .unwrap_or(if required { minimum.max(1) } else { minimum });
                let item_label = words(label.trim_end_matches('s'));
                html! {
                    fieldset.group id=(id) {
                        legend { (label) (req) }
                        @if let Some(d) = description { p.hint { (d) } }
                        (field_errors(ptr, errors))
                        input type="hidden" name=(format!("{COUNT}{ptr}")) value=(n);
                        @for i in 0..n {
                            (node(items, root, &format!("{ptr}/{i}"), &format!("{item_label} {}", i + 1), false, values, errors))
                        }
                        button.secondary type="submit" name="_add" value=(ptr) formnovalidate { "Add another " (item_label.to_lowercase()) }
                    }
                }
            }
        }
        k => {
            let value = values.one(ptr).unwrap_or_default();
            let hint_id = format!("h{ptr}");
            let described = match (description.is_some(), has_error) {
                (true, true) => format!("{hint_id} e{ptr}"),
                (true, false) => hint_id.clone(),
                (false, true) => format!("e{ptr}"),
                (false, false) => String::new(),
            };
            html! {
                div.field.field-error[has_error] {
                    label for=(id) { (label) (req) }
                    @if let Some(d) = description { p.hint id=(hint_id) { (d) } }
                    (field_errors(ptr, errors))
                    @match k {
                        "enum" => {
                            select id=(id) name=(ptr) aria-describedby=[(!described.is_empty()).then_some(&described)] {
                                option value="" { "— choose —" }
                                @for v in schema["enum"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                                    option value=(v) selected[value == v] { (words(v)) }
                                }
                            }
                        }
                        "boolean" => {
                            select id=(id) name=(ptr) aria-describedby=[(!described.is_empty()).then_some(&described)] {
                                option value="" { "— choose —" }
                                option value="true" selected[value == "true"] { "Yes" }
                                option value="false" selected[value == "false"] { "No" }
                            }
                        }
                        "integer" | "number" => {
                            input type="number" id=(id) name=(ptr) value=(value) step=(if k == "integer" { "1" } else { "any" })
                                aria-describedby=[(!described.is_empty()).then_some(&described)];
                        }
                        _ => {
                            @let format = schema.get("format").and_then(Value::as_str).unwrap_or_default();
                            @let long = schema.get("maxLength").and_then(Value::as_u64).is_some_and(|m| m > 200);
                            @if long {
                                textarea id=(id) name=(ptr) rows="5" aria-describedby=[(!described.is_empty()).then_some(&described)] { (value) }
                            } @else {
                                input id=(id) name=(ptr) value=(value) autocomplete="off"
                                    type=(match format { "date" => "date", "date-time" => "datetime-local", _ => "text" })
                                    aria-describedby=[(!described.is_empty()).then_some(&described)];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The envelope a submitted form stands for. Values are typed by the schema; a value that does
/// not fit (letters in a number) stays a string, so the schema's own rule reports it.
/// The envelope's own fields a form shows: not the message type and payload (shown first), nor
/// `template` (the agreement is in the URL); the disclosure block only for a one-off template.
fn on_the_form(name: &str, one_off: bool) -> bool {
    match name {
        "message_type" | "payload" | "template" => false,
        "disclosure" => one_off,
        _ => true,
    }
}

pub fn to_envelope(envelope: &Value, message_type: &str, message: &Value, one_off: bool, values: &Values) -> Value {
    let mut out = Map::new();
    out.insert("message_type".into(), Value::String(message_type.to_owned()));
    out.insert(
        "payload".into(),
        build(message, message, "/payload", values).unwrap_or_else(|| Value::Object(Map::new())),
    );
    if let Some(props) = envelope.get("properties").and_then(Value::as_object) {
        for (name, schema) in props.iter().filter(|(n, _)| on_the_form(n, one_off)) {
            if let Some(v) = build(schema, envelope, &format!("/{name}"), values) {
                out.insert(name.clone(), v);
            }
        }
    }
    Value::Object(out)
}

fn build(schema: &Value, root: &Value, ptr: &str, values: &Values) -> Option<Value> {
    let schema = resolve(schema, root);
    match kind(schema) {
        "object" => {
            let mut out = Map::new();
            for (name, child) in schema
                .get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                if let Some(v) = build(child, root, &format!("{ptr}/{name}"), values) {
                    out.insert(name.clone(), v);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        "array" => {
            let items = resolve(schema.get("items").unwrap_or(&Value::Null), root);
            let list: Vec<Value> = if items.get("enum").is_some() {
                values
                    .all(&format!("{ptr}{EACH}"))
                    .iter()
                    .map(|v| Value::String(v.clone()))
                    .collect()
            } else {
                (0..values.count(ptr).unwrap_or(0))
                    .filter_map(|i| build(items, root, &format!("{ptr}/{i}"), values))
                    .collect()
            };
            (!list.is_empty()).then_some(Value::Array(list))
        }
        k => {
            let raw = values.one(ptr).map(str::trim).filter(|v| !v.is_empty())?;
            Some(match k {
                "boolean" => match raw {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    other => Value::String(other.to_owned()),
                },
                "integer" => raw
                    .parse::<i64>()
                    .map_or_else(|_| Value::String(raw.to_owned()), Value::from),
                "number" => raw
                    .parse::<f64>()
                    .map_or_else(|_| Value::String(raw.to_owned()), Value::from),
                _ if schema.get("format").and_then(Value::as_str) == Some("date-time") => {
                    Value::String(london_to_rfc3339(raw).unwrap_or_else(|| raw.to_owned()))
                }
                _ => Value::String(raw.to_owned()),
            })
        }
    }
}

/// A `datetime-local` value, read as the time in London, as RFC 3339.
fn london_to_rfc3339(local: &str) -> Option<String> {
    let dt: jiff::civil::DateTime = local.parse().ok()?;
    let zoned = dt.in_tz("Europe/London").ok()?;
    Some(zoned.timestamp().to_string())
}

/// The schema-array pointer an "Add another" press names, with its minimum: only pointers the
/// form has (a typed value is not trusted to name anything else).
pub fn array_minimum(envelope: &Value, message: &Value, ptr: &str) -> Option<usize> {
    let (schema, root, rest) = match ptr.strip_prefix("/payload") {
        Some(rest) => (message, message, rest),
        None => (envelope, envelope, ptr),
    };
    let mut node = resolve(schema, root);
    for part in rest.split('/').skip(1) {
        node = match kind(node) {
            "object" => resolve(node.get("properties")?.get(part)?, root),
            "array" if part.parse::<usize>().is_ok() => resolve(node.get("items")?, root),
            _ => return None,
        };
    }
    (kind(node) == "array").then(|| node.get("minItems").and_then(Value::as_u64).unwrap_or(0) as usize)
}
