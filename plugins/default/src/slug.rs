//! Slugs as prefect-kubernetes makes them for Job names and label keys and values: a port of
//! python-slugify's default ("legacy") pipeline with the patterns prefect-kubernetes passes.

use crate::entities::ENTITIES;
use unicode_normalization::UnicodeNormalization;

/// `_slugify_name`: lowercase letters, digits and dashes, at most 45 characters (room for a
/// suffix under the 63 of a label value). `None` when nothing is left.
pub fn name(text: &str) -> Option<String> {
    let slug = slugify(text, 45, true, |c| c.is_ascii_alphanumeric() || c == '-');
    (!slug.is_empty()).then_some(slug)
}

/// `_slugify_label_value`: at most 63 characters, starting and ending alphanumeric; the
/// original text when nothing is left (the API server will then say what is wrong).
pub fn label_value(text: &str) -> String {
    let slug = slugify(text, 63, false, |c| {
        c.is_ascii_alphanumeric() || "-_.".contains(c)
    });
    non_empty_or(slug.trim_matches(|c| "_-.".contains(c)), text)
}

/// `_slugify_label_key`: an optional DNS prefix (253) and a name (63), slugged separately.
pub fn label_key(key: &str) -> String {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let name_slug = slugify(name, 63, false, |c| {
        c.is_ascii_alphanumeric() || "-_.".contains(c)
    });
    let name_slug = non_empty_or(name_slug.trim_matches(|c| "_-.".contains(c)), name);
    match prefix {
        Some(prefix) if !prefix.is_empty() => {
            let prefix_slug = slugify(prefix, 253, false, |c| {
                c.is_ascii_alphanumeric() || "-.".contains(c)
            });
            let prefix_slug = non_empty_or(prefix_slug.trim_matches(|c| "_-.".contains(c)), prefix);
            format!("{prefix_slug}/{name_slug}")
        }
        _ => name_slug,
    }
}

fn non_empty_or(slug: &str, original: &str) -> String {
    if slug.is_empty() {
        original.to_string()
    } else {
        slug.to_string()
    }
}

/// python-slugify's `slugify(text, max_length=…, lowercase=…, regex_pattern=…)`, where
/// `allowed` is the complement of the pattern.
fn slugify(
    text: &str,
    max_length: usize,
    lowercase: bool,
    allowed: impl Fn(char) -> bool,
) -> String {
    let text = collapse_quotes(text, "-");
    let nfkd: String = text.nfkd().collect();
    let ascii = crate::transliterate::to_ascii(&nfkd);
    let decoded = decode_entities(&ascii);
    let mut text: String = decoded.nfkd().collect();
    if lowercase {
        text = text.to_lowercase();
    }
    let text = collapse_quotes(&text, "");
    let text = drop_digit_group_commas(&text);
    let mut slug = String::with_capacity(text.len());
    for c in text.chars() {
        if allowed(c) {
            slug.push(c);
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = collapse_dashes(&slug);
    let slug = slug.trim_matches('-');
    truncate(slug, max_length)
}

fn collapse_quotes(text: &str, with: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_quotes = false;
    for c in text.chars() {
        if c == '\'' {
            if !in_quotes {
                out.push_str(with);
            }
            in_quotes = true;
        } else {
            in_quotes = false;
            out.push(c);
        }
    }
    out
}

/// `(?<=\d),(?=\d)` → "": `1,000` becomes `1000`.
fn drop_digit_group_commas(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    chars
        .iter()
        .enumerate()
        .filter(|&(i, &c)| {
            !(c == ','
                && i > 0
                && chars[i - 1].is_ascii_digit()
                && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit()))
        })
        .map(|(_, &c)| c)
        .collect()
}

fn collapse_dashes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    out
}

/// `smart_truncate` without word boundaries.
fn truncate(slug: &str, max_length: usize) -> String {
    if slug.chars().count() < max_length {
        return slug.to_string();
    }
    let cut: String = slug.chars().take(max_length).collect();
    cut.trim_matches('-').to_string()
}

/// `&amp;`, `&#38;` and `&#x26;` become the characters they name.
fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        match after
            .find(';')
            .and_then(|semi| Some((semi, entity_char(&after[..semi])?)))
        {
            Some((semi, c)) => {
                out.push(c);
                rest = &after[semi + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn entity_char(body: &str) -> Option<char> {
    let code = if let Some(hex) = body.strip_prefix("#x") {
        (!hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| u32::from_str_radix(hex, 16).ok())??
    } else if let Some(dec) = body.strip_prefix('#') {
        (!dec.is_empty() && dec.chars().all(|c| c.is_ascii_digit())).then(|| dec.parse().ok())??
    } else {
        ENTITIES.iter().find(|(name, _)| *name == body)?.1
    };
    char::from_u32(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercase_dash_separated_and_capped_at_45() {
        assert_eq!(name("My Flow_Run (v2)").as_deref(), Some("my-flow-run-v2"));
        assert_eq!(name("a".repeat(50).as_str()).map(|s| s.len()), Some(45));
        assert_eq!(name("***"), None);
    }

    #[test]
    fn label_values_keep_case_dots_and_underscores() {
        assert_eq!(label_value("Hello World.v1_x"), "Hello-World.v1_x");
        assert_eq!(label_value("-_lead and trail_-"), "lead-and-trail");
        assert_eq!(
            label_value("2026-01-01T00:00:00+00:00"),
            "2026-01-01T00-00-00-00-00"
        );
    }

    #[test]
    fn label_keys_slug_prefix_and_name_apart() {
        assert_eq!(
            label_key("prefect.io/flow-run-id"),
            "prefect.io/flow-run-id"
        );
        assert_eq!(label_key("my team/cost center"), "my-team/cost-center");
    }

    #[test]
    fn entities_and_unicode_are_transliterated() {
        assert_eq!(label_value("fish &amp; chips"), "fish-chips");
        assert_eq!(name("Café Crème").as_deref(), Some("cafe-creme"));
        assert_eq!(name("1,000 runs").as_deref(), Some("1000-runs"));
    }
}
