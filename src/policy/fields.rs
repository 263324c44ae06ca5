//! Which parts of a payload an agreement lets leave, by JSON pointer (RFC 6901). Pure.
//!
//! An allowed pointer covers the node it names and everything beneath it: allowing `/name`
//! allows `/name/given`. A `*` segment matches any array index, so `/household/*/name` allows the
//! name of every household member and nothing else about them. Everything not covered is denied.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    AnyIndex,
    Exact(String),
}

/// A JSON pointer that may contain `*` for array indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointerPattern {
    raw: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointerError {
    #[error("a field pointer must start with '/' (it names a place in the payload)")]
    NoLeadingSlash,
    #[error("'~' in a pointer must be followed by 0 or 1 (RFC 6901)")]
    BadEscape,
    #[error("a pointer segment is empty")]
    EmptySegment,
}

impl PointerPattern {
    pub fn parse(raw: &str) -> Result<Self, PointerError> {
        let rest = raw.strip_prefix('/').ok_or(PointerError::NoLeadingSlash)?;
        let segments = rest
            .split('/')
            .map(|s| {
                if s.is_empty() {
                    Err(PointerError::EmptySegment)
                } else if s == "*" {
                    Ok(Segment::AnyIndex)
                } else {
                    unescape(s).map(Segment::Exact)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            raw: raw.to_owned(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The unescaped reference tokens; `None` stands for `*`.
    pub fn segments(&self) -> Vec<Option<String>> {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::AnyIndex => None,
                Segment::Exact(k) => Some(k.clone()),
            })
            .collect()
    }

    pub fn has_wildcard(&self) -> bool {
        self.segments.contains(&Segment::AnyIndex)
    }

    /// Whether the leading segments of this pattern match `path` (all of it).
    fn matches_prefix_of_self(&self, path: &[PathSeg<'_>]) -> bool {
        self.segments.len() >= path.len() && self.segments.iter().zip(path).all(|(s, p)| s.matches(p))
    }

    /// Whether this pattern names `path` or one of its ancestors.
    fn covers(&self, path: &[PathSeg<'_>]) -> bool {
        self.segments.len() <= path.len() && self.segments.iter().zip(path).all(|(s, p)| s.matches(p))
    }
}

#[derive(Debug, Clone, Copy)]
enum PathSeg<'a> {
    Key(&'a str),
    Index(usize),
}

impl Segment {
    fn matches(&self, p: &PathSeg<'_>) -> bool {
        match (self, p) {
            (Segment::AnyIndex, PathSeg::Index(_)) => true,
            (Segment::AnyIndex, PathSeg::Key(_)) => false,
            (Segment::Exact(s), PathSeg::Key(k)) => s == k,
            (Segment::Exact(s), PathSeg::Index(i)) => s.parse::<usize>().is_ok_and(|n| n == *i),
        }
    }
}

fn unescape(s: &str) -> Result<String, PointerError> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return Err(PointerError::BadEscape),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Escapes one reference token (RFC 6901 §3).
pub fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn render(path: &[PathSeg<'_>]) -> String {
    let mut s = String::new();
    for p in path {
        s.push('/');
        match p {
            PathSeg::Key(k) => s.push_str(&escape(k)),
            PathSeg::Index(i) => s.push_str(&i.to_string()),
        }
    }
    s
}

/// The pointers of the highest nodes in `value` that no pattern allows, in document order.
/// Empty means everything present may leave.
pub fn disallowed(value: &Value, allowed: &[PointerPattern]) -> Vec<String> {
    let mut out = Vec::new();
    let mut path = Vec::new();
    walk(value, allowed, &mut path, &mut out);
    out
}

fn walk<'v>(value: &'v Value, allowed: &[PointerPattern], path: &mut Vec<PathSeg<'v>>, out: &mut Vec<String>) {
    if allowed.iter().any(|p| p.covers(path)) {
        return;
    }
    let leads_somewhere = allowed.iter().any(|p| p.matches_prefix_of_self(path));
    match value {
        Value::Object(map) if leads_somewhere => {
            for (k, v) in map {
                path.push(PathSeg::Key(k));
                walk(v, allowed, path, out);
                path.pop();
            }
        }
        Value::Array(items) if leads_somewhere => {
            for (i, v) in items.iter().enumerate() {
                path.push(PathSeg::Index(i));
                walk(v, allowed, path, out);
                path.pop();
            }
        }
        _ => out.push(render(path)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(allowed: &[&str], value: Value, expected: &[&str]) {
        let patterns: Vec<_> = allowed.iter().map(|p| PointerPattern::parse(p).unwrap()).collect();
        assert_eq!(disallowed(&value, &patterns), expected);
    }

    #[test]
    fn allowing_a_node_allows_its_children() {
        check(&["/name"], json!({"name": {"given": "A", "family": "B"}}), &[]);
    }

    #[test]
    fn reports_the_highest_disallowed_node() {
        check(
            &["/name/given", "/nhs_number"],
            json!({"nhs_number": "x", "name": {"given": "A", "family": "B"}, "address": {"line1": "x", "postcode": "y"}}),
            &["/address", "/name/family"],
        );
    }

    #[test]
    fn wildcard_matches_array_indexes_only() {
        check(
            &["/household/*/name"],
            json!({"household": [{"name": "A", "dob": "x"}, {"name": "B"}]}),
            &["/household/0/dob"],
        );
        check(&["/*"], json!({"a": 1}), &["/a"]);
    }

    #[test]
    fn empty_allow_list_denies_everything() {
        check(&[], json!({"a": 1}), &[""]);
    }

    #[test]
    fn escapes_round_trip() {
        check(&["/a~1b", "/c~0d"], json!({"a/b": 1, "c~d": 2, "e/f": 3}), &["/e~1f"]);
    }

    #[test]
    fn rejects_malformed_patterns() {
        assert_eq!(PointerPattern::parse("name"), Err(PointerError::NoLeadingSlash));
        assert_eq!(PointerPattern::parse("/a~2"), Err(PointerError::BadEscape));
        assert_eq!(PointerPattern::parse("/a//b"), Err(PointerError::EmptySegment));
    }
}
