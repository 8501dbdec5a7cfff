//! Prefect's job template language: `{{ name }}` placeholders, as `prefect.utilities.templating`
//! applies them.
//!
//! A string that is exactly one placeholder takes the variable's JSON value (any type); a
//! placeholder inside a longer string is interpolated with Python's `str()` of the value; a key
//! or list item whose whole-value placeholder has no value is removed. Block and variable
//! placeholders (`{{ prefect.blocks.… }}`, `{{ prefect.variables.… }}`) are left for the host,
//! which can read them from the Prefect API; `{{ $ENV }}` placeholders are never resolved,
//! because plugins have no environment.

use crate::{Kind, find_distinct as find_placeholders};
use serde_json::{Map, Value};

/// Whether `text` holds any placeholder.
pub fn has_placeholders(text: &str) -> bool {
    !find_placeholders(text).is_empty()
}

/// Applies `values` to `template`; `None` means "not set" (the caller drops the key).
pub fn apply_values(template: &Value, values: &Map<String, Value>) -> Option<Value> {
    match template {
        Value::String(text) => apply_to_string(text, values),
        Value::Object(map) => Some(Value::Object(
            map.iter()
                .filter_map(|(k, v)| apply_values(v, values).map(|v| (k.clone(), v)))
                .collect(),
        )),
        Value::Array(items) => Some(Value::Array(
            items
                .iter()
                .filter_map(|v| apply_values(v, values))
                .collect(),
        )),
        other => Some(other.clone()),
    }
}

fn apply_to_string(text: &str, values: &Map<String, Value>) -> Option<Value> {
    let placeholders = find_placeholders(text);
    if let [only] = placeholders.as_slice()
        && only.full_match == text
        && only.kind() == Kind::Standard
    {
        return lookup(values, only.name).cloned();
    }
    let mut rendered = text.to_string();
    for placeholder in &placeholders {
        let value = match placeholder.kind() {
            Kind::Standard => lookup(values, placeholder.name),
            Kind::EnvVar => None,
            Kind::Block | Kind::Variable => continue,
        };
        let replacement = value.map(python_str).unwrap_or_default();
        rendered = rendered.replace(placeholder.full_match, &replacement);
    }
    Some(Value::String(rendered))
}

/// `prefect.utilities.collections.get_from_dict`: `a.b[0].c` walks objects and lists.
pub fn lookup<'a>(values: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    let path = name.replace('[', ".").replace(']', "");
    let mut keys = path.split('.');
    let mut here = values.get(keys.next()?)?;
    for key in keys {
        here = match (here, key.parse::<i64>()) {
            (Value::Array(items), Ok(index)) => {
                let len = items.len() as i64;
                let index = if index < 0 { len + index } else { index };
                items.get(usize::try_from(index).ok()?)?
            }
            // Python indexes a dict with the int key, which a JSON object never has.
            (_, Ok(_)) => return None,
            (Value::Object(map), Err(_)) => map.get(key)?,
            _ => return None,
        };
    }
    Some(here)
}

/// Python's `str()` of a JSON value, as Prefect interpolates it into a string.
pub fn python_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => python_repr(other),
    }
}

fn python_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => python_number(n),
        Value::String(s) => python_string_repr(s),
        Value::Array(items) => {
            format!(
                "[{}]",
                items.iter().map(python_repr).collect::<Vec<_>>().join(", ")
            )
        }
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", python_string_repr(k), python_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn python_number(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(f) if !n.is_i64() && !n.is_u64() => python_float(f),
        _ => n.to_string(),
    }
}

/// Python's `repr(float)`: the shortest digits that read back (as Rust finds them), written
/// positionally for decimal exponents from -4 to 15 and as `1e-05` / `1.5e+16` otherwise.
fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    let scientific = format!("{f:e}");
    let (mantissa, exponent) = scientific.split_once('e').expect("Rust writes an exponent");
    let exponent: i32 = exponent.parse().expect("an integer exponent");
    if (-4..16).contains(&exponent) {
        let positional = format!("{f}");
        if positional.contains('.') {
            positional
        } else {
            format!("{positional}.0")
        }
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    }
}

fn python_string_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c)
            }
            c if !is_printable(c) => {
                let code = u32::from(c);
                let escaped = if code < 0x100 {
                    format!("\\x{code:02x}")
                } else if code < 0x10000 {
                    format!("\\u{code:04x}")
                } else {
                    format!("\\U{code:08x}")
                };
                out.push_str(&escaped);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `str.isprintable()` for one character: not a control, format, surrogate,
/// private-use or unassigned character, nor a separator other than the ASCII space. (The
/// category table is the crate's Unicode version; Python 3.11's is 14.0, so characters assigned
/// since print here and are escaped by Python.)
fn is_printable(c: char) -> bool {
    use unicode_general_category::{GeneralCategory as G, get_general_category};
    c == ' '
        || !matches!(
            get_general_category(c),
            G::Control
                | G::Format
                | G::Surrogate
                | G::PrivateUse
                | G::Unassigned
                | G::LineSeparator
                | G::ParagraphSeparator
                | G::SpaceSeparator
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn values() -> Map<String, Value> {
        json!({"image": "x:1", "n": 3, "env": {"A": "1"}, "list": [1, {"k": "v"}], "flag": true, "off": null})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn whole_value_placeholders_take_typed_values() {
        let rendered = apply_values(
            &json!({"a": "{{ n }}", "b": "{{env}}", "c": "{{ list[1].k }}"}),
            &values(),
        );
        assert_eq!(rendered, Some(json!({"a": 3, "b": {"A": "1"}, "c": "v"})));
    }

    #[test]
    fn unset_placeholders_drop_their_key_and_list_item() {
        let rendered = apply_values(
            &json!({"a": "{{ missing }}", "b": ["{{ missing }}", "{{ n }}"]}),
            &values(),
        );
        assert_eq!(rendered, Some(json!({"b": [3]})));
    }

    #[test]
    fn a_null_value_is_kept_as_null() {
        assert_eq!(
            apply_values(&json!({"a": "{{ off }}"}), &values()),
            Some(json!({"a": null}))
        );
    }

    #[test]
    fn placeholders_inside_strings_interpolate_python_str() {
        let cases = [
            ("img-{{ image }}", "img-x:1"),
            ("{{ n }}-{{ n }}", "3-3"),
            ("{{ flag }}/{{ off }}/{{ missing }}", "True/None/"),
            ("{{ env }}!", "{'A': '1'}!"),
            ("{{ $HOME }}x", "x"),
            (
                "{{ prefect.blocks.secret.k }}",
                "{{ prefect.blocks.secret.k }}",
            ),
            ("{ {n}} {{n}", "{ {n}} {{n}"),
        ];
        for (template, expected) in cases {
            assert_eq!(
                apply_values(&json!(template), &values()),
                Some(json!(expected)),
                "{template}"
            );
        }
    }

    #[test]
    fn float_values_print_as_python_does() {
        // Known answers from Python's repr().
        let cases = [
            (json!(1.0), "1.0"),
            (json!(0.5), "0.5"),
            (json!(1e-05), "1e-05"),
            (json!(0.0001), "0.0001"),
            (json!(1e16), "1e+16"),
            (json!(1e15), "1000000000000000.0"),
            (json!(1.5e21), "1.5e+21"),
            (json!(-2.5e-7), "-2.5e-07"),
            (json!(123.456), "123.456"),
        ];
        for (value, expected) in cases {
            assert_eq!(python_str(&value), expected, "{value}");
        }
    }

    #[test]
    fn strings_inside_containers_print_as_pythons_repr() {
        let value = json!([
            "it's",
            "tab\there",
            "\u{1}\u{7f}\u{a0}\u{200b}\u{e000}",
            "é 日本"
        ]);
        assert_eq!(
            python_str(&value),
            r#"["it's", 'tab\there', '\x01\x7f\xa0\u200b\ue000', 'é 日本']"#
        );
    }
}
