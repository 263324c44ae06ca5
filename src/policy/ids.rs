//! Identifiers written in configuration: agreement, system and destination ids.

/// Lower-case ASCII letters, digits and single hyphens: ids that are safe in paths, URLs and logs.
pub fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}
