//! Kubernetes resource quantities (`500m`, `2`, `1.5Gi`, `1e3`), enough to compare them.
//!
//! The Kubernetes API emulator of the tests parses quantities with code of its own
//! (`tests/emulator/src/validate.rs`), on purpose: it is an independent check of what plugins
//! write. Do not merge them.

use crate::{Error, Request, RequestExt, fault};

/// The plugin setting `key` read as a quantity: its text and its value, if set.
pub fn setting(request: &Request, key: &str) -> Result<Option<(String, f64)>, Error> {
    let Some(text) = request.config(key) else {
        return Ok(None);
    };
    let value = parse(text).ok_or_else(|| {
        fault(format!(
            "setting `{key}` = {text:?} is not a Kubernetes quantity (like 500m, 2, 1Gi)"
        ))
    })?;
    Ok(Some((text.to_string(), value)))
}

/// The quantity's value in base units (cores, bytes), or `None` when it is not a quantity.
pub fn parse(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent => 10f64.powi(exponent.strip_prefix(['e', 'E'])?.parse().ok()?),
    };
    Some(number * factor)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_the_suffixes_kubernetes_accepts() {
        let cases = [
            ("500m", 0.5),
            ("2", 2.0),
            ("1Gi", 1073741824.0),
            ("128M", 128e6),
            ("1e3", 1000.0),
            ("1.5", 1.5),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), Some(expected), "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_quantity() {
        for text in ["", "lots", "1Gb", "m"] {
            assert_eq!(parse(text), None, "{text}");
        }
    }
}
