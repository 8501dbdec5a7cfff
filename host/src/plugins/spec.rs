//! How a plugin is named on the command line: `PATH`, `NAME=PATH`, `PATH#sha256=HEX`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A plugin to load: where it is, what it is called, and the digest it must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSpec {
    /// The name used in logs, errors and `--plugin-config NAME.KEY=VALUE`.
    pub name: String,
    pub path: PathBuf,
    /// Lowercase hex sha256 the file must have, when pinned.
    pub sha256: Option<String>,
}

impl PluginSpec {
    /// A plugin whose bytes are built in (the stock plugin).
    pub fn builtin(name: &str) -> Self {
        PluginSpec {
            name: name.to_string(),
            path: PathBuf::from(format!("<built-in {name}>")),
            sha256: None,
        }
    }
}

impl FromStr for PluginSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (location, sha256) = match text.rsplit_once("#sha256=") {
            Some((location, hex)) => {
                let hex = hex.to_ascii_lowercase();
                if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(format!(
                        "{text:?}: the pin after #sha256= must be 64 hex digits"
                    ));
                }
                (location, Some(hex))
            }
            None => (text, None),
        };
        let (name, path) = match location.split_once('=') {
            Some((name, path)) if is_plugin_name(name) => (name.to_string(), PathBuf::from(path)),
            _ => {
                let path = PathBuf::from(location);
                let stem = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default()
                    .to_string();
                (stem, path)
            }
        };
        if path.as_os_str().is_empty() {
            return Err(format!("{text:?}: no plugin path"));
        }
        if !is_plugin_name(&name) {
            return Err(format!(
                "{text:?}: cannot use {name:?} as the plugin's name; name it explicitly as NAME=PATH \
                 (letters, digits, '-' and '_')"
            ));
        }
        Ok(PluginSpec { name, path, sha256 })
    }
}

fn is_plugin_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl fmt::Display for PluginSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_path_name_and_pin() {
        let pin = "ab".repeat(32);
        let cases = [
            ("plugins/naming.wasm", "naming", "plugins/naming.wasm", None),
            (
                "etl=plugins/naming.wasm",
                "etl",
                "plugins/naming.wasm",
                None,
            ),
            (
                &*format!("x/policy.wasm#sha256={}", pin.to_uppercase()),
                "policy",
                "x/policy.wasm",
                Some(pin.clone()),
            ),
        ];
        for (text, name, path, sha256) in cases {
            let spec: PluginSpec = text.parse().unwrap();
            assert_eq!(
                spec,
                PluginSpec {
                    name: name.into(),
                    path: path.into(),
                    sha256
                },
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_a_short_pin() {
        let err = "a.wasm#sha256=abc".parse::<PluginSpec>().unwrap_err();
        assert!(err.contains("64 hex digits"), "{err}");
    }
}
