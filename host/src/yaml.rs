//! YAML output that every Kubernetes tool reads back as the same JSON.
//!
//! kubectl (go-yaml) and PyYAML read YAML 1.1, where a plain `yes`, `on`, `0755` or `1:20` is
//! not a string; general YAML writers follow 1.2 and leave such strings unquoted. Here a string
//! stays plain only when it cannot be misread; anything else is written JSON-quoted (a JSON
//! string is a valid YAML double-quoted scalar).

use serde_json::Value;
use std::fmt::Write;

pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_block(&mut out, value, 0),
        Value::Array(items) if !items.is_empty() => write_block(&mut out, value, 0),
        scalar => {
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
    out
}

fn write_block(out: &mut String, value: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let _ = write!(out, "{pad}{}:", scalar_string(key));
                write_child(out, child, indent + 2, false);
            }
        }
        Value::Array(items) => {
            for item in items {
                let _ = write!(out, "{pad}-");
                write_child(out, item, indent + 2, true);
            }
        }
        scalar => {
            let _ = writeln!(out, "{pad}{}", inline(scalar));
        }
    }
}

/// After `key:` or `-`: a scalar or empty collection on the same line, a block below. A
/// mapping in a list starts on the dash's line, as kubectl writes it.
fn write_child(out: &mut String, child: &Value, indent: usize, in_list: bool) {
    match child {
        Value::Object(map) if !map.is_empty() && in_list => {
            let mut nested = String::new();
            write_block(&mut nested, child, indent);
            out.push(' ');
            out.push_str(nested.trim_start());
        }
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_block(out, child, indent);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            // Lists under a key sit at the key's indentation, as kubectl writes them.
            write_block(out, child, if in_list { indent } else { indent - 2 });
        }
        scalar => {
            let _ = writeln!(out, " {}", inline(scalar));
        }
    }
}

fn inline(value: &Value) -> String {
    match value {
        Value::String(s) => scalar_string(s),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        other => other.to_string(),
    }
}

fn scalar_string(s: &str) -> String {
    if is_plain_safe(s) {
        s.to_string()
    } else {
        Value::String(s.to_string()).to_string()
    }
}

/// Letters first, then letters, digits and `-_./`, and not a YAML 1.1 boolean or null.
fn is_plain_safe(s: &str) -> bool {
    const RESERVED: &[&str] = &[
        "y", "yes", "n", "no", "true", "false", "on", "off", "null", "nan", "inf",
    ];
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        && !RESERVED.contains(&s.to_ascii_lowercase().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ambiguous_strings_are_quoted() {
        let yaml = to_string(
            &json!({"a": "yes", "b": "0755", "c": "1:20", "d": "On", "e": "", "f": "plain-text_1.0/x", "g": "~"}),
        );
        assert_eq!(
            yaml,
            "a: \"yes\"\nb: \"0755\"\nc: \"1:20\"\nd: \"On\"\ne: \"\"\nf: plain-text_1.0/x\ng: \"~\"\n"
        );
    }

    #[test]
    fn nests_like_kubectl() {
        let value = json!({"spec": {"containers": [{"name": "c", "args": ["a", "b"], "env": []}], "count": 1, "x": null}});
        let yaml = to_string(&value);
        assert_eq!(
            yaml,
            "spec:\n  containers:\n  - name: c\n    args:\n    - a\n    - b\n    env: []\n  count: 1\n  x: null\n"
        );
    }
}
