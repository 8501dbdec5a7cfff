//! `--config agent.toml`: the settings of a command read from a file, so production setups
//! need no long command lines.
//!
//! A key is the long name of one of the command's flags; the file's settings are turned into
//! those flags, placed before the command line's own, so that the command line wins, then
//! environment variables, then the file. Relative paths are relative to the file. Plugins
//! are a list of tables:
//!
//! ```toml
//! pool = "kubernetes"
//! queue = ["default", "gpu"]
//! poll-interval = "5s"
//! image-pull-secrets = ["regcred"]
//! env = { TEAM = "data" }
//!
//! [[plugin]]
//! name = "naming"            # optional: the file name without .wasm
//! path = "plugins/naming.wasm"
//! sha256 = "…"               # optional pin
//! config = { prefix = "etl" }
//! limits = { timeout = "1s", memory = "32MiB" }
//! ```

use crate::stock::STOCK_PLUGIN_NAME;
use anyhow::{Context, anyhow, bail};
use clap::builder::ValueHint;
use clap::{Arg, Command};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

pub const CONFIG_FLAG: &str = "config";
pub const CONFIG_ENV: &str = "AGENT_CONFIG";

/// `args` with the settings of the `--config` file (or `$AGENT_CONFIG`) inserted right after
/// the subcommand; `args` unchanged when there is no config file.
pub fn expand(cli: &Command, args: Vec<OsString>) -> anyhow::Result<Vec<OsString>> {
    let Some(position) = args.iter().position(|a| cli.find_subcommand(a).is_some()) else {
        return Ok(args);
    };
    let command = cli
        .find_subcommand(&args[position])
        .expect("just found")
        .clone();
    let Some(path) = config_path(&args[position + 1..]) else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("--config {}: cannot read it", path.display()))?;
    let table: Table = text
        .parse()
        .with_context(|| format!("--config {}: not valid TOML", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
    let settings = Settings {
        command: &command,
        others: cli
            .get_subcommands()
            .filter(|c| c.get_name() != command.get_name())
            .collect(),
        file: &path,
        base,
    };
    let from_file = settings.to_flags(&table, &args[position + 1..])?;
    let mut expanded = args[..=position].to_vec();
    expanded.extend(from_file);
    expanded.extend_from_slice(&args[position + 1..]);
    Ok(expanded)
}

/// The file named by `--config FILE`, `--config=FILE` or `$AGENT_CONFIG`.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let flag = format!("--{CONFIG_FLAG}");
    let prefix = format!("{flag}=");
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy();
        if text == flag {
            return iter.next().map(PathBuf::from);
        }
        if let Some(value) = text.strip_prefix(&prefix) {
            return Some(PathBuf::from(value));
        }
    }
    std::env::var_os(CONFIG_ENV).map(PathBuf::from)
}

struct Settings<'a> {
    command: &'a Command,
    /// The other commands: one file serves `agent start` and `agent render`, and a key that
    /// only another command takes is not a mistake.
    others: Vec<&'a Command>,
    file: &'a Path,
    base: PathBuf,
}

/// Whether `arg` is named `key`, by its long name or an alias.
fn named(arg: &Arg, key: &str) -> bool {
    arg.get_long() == Some(key) || arg.get_all_aliases().is_some_and(|a| a.contains(&key))
}

impl Settings<'_> {
    fn to_flags(&self, table: &Table, command_line: &[OsString]) -> anyhow::Result<Vec<OsString>> {
        let mut flags = Vec::new();
        for (key, value) in table {
            if key == "plugin" {
                self.plugins(value, &mut flags)?;
                continue;
            }
            if self.arg(key).is_err() && self.for_another_command(key) {
                tracing::debug!(
                    "{}: `{key}` is not a setting of `agent {}`; ignored",
                    self.file.display(),
                    self.command.get_name()
                );
                continue;
            }
            let arg = self.arg(key)?;
            if !is_repeatable(arg) && given_elsewhere(arg, command_line) {
                continue;
            }
            self.flag(arg, key, value, &mut flags)?;
        }
        Ok(flags.into_iter().map(OsString::from).collect())
    }

    fn for_another_command(&self, key: &str) -> bool {
        self.others
            .iter()
            .any(|other| other.get_arguments().any(|a| named(a, key)))
    }

    fn arg(&self, key: &str) -> anyhow::Result<&Arg> {
        self.command
            .get_arguments()
            .find(|a| named(a, key) && key != CONFIG_FLAG)
            .ok_or_else(|| {
                let mut known: Vec<&str> = self
                    .command
                    .get_arguments()
                    .filter_map(Arg::get_long)
                    .filter(|l| *l != CONFIG_FLAG && *l != "help")
                    .collect();
                known.push("plugin");
                known.sort_unstable();
                known.dedup();
                anyhow!(
                    "{}: unknown setting `{key}` for `agent {}`; settings are the long flag names: {}",
                    self.file.display(),
                    self.command.get_name(),
                    known.join(", ")
                )
            })
    }

    fn flag(
        &self,
        arg: &Arg,
        key: &str,
        value: &Value,
        out: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        let flag = format!("--{key}");
        match value {
            Value::Boolean(true) if takes_no_value(arg) => out.push(flag),
            Value::Boolean(false) if takes_no_value(arg) => {}
            _ if takes_no_value(arg) => bail!(
                "{}: `{key}` is a switch; write `{key} = true` or leave it out",
                self.file.display()
            ),
            Value::Array(items) if is_repeatable(arg) || arg.get_value_delimiter().is_some() => {
                for item in items {
                    out.push(format!("{flag}={}", self.scalar(arg, key, item)?));
                }
            }
            Value::Table(pairs) if is_key_value(arg) => {
                for (name, item) in pairs {
                    out.push(format!("{flag}={name}={}", self.scalar(arg, key, item)?));
                }
            }
            other => out.push(format!("{flag}={}", self.scalar(arg, key, other)?)),
        }
        Ok(())
    }

    /// One flag value: strings as they are (paths made relative to the file), numbers and
    /// booleans as written, tables as JSON (volumes).
    fn scalar(&self, arg: &Arg, key: &str, value: &Value) -> anyhow::Result<String> {
        Ok(match value {
            Value::String(text)
                if takes_path(arg) && !looks_like_json(text) && !text.contains("://") =>
            {
                self.base.join(text).to_string_lossy().into_owned()
            }
            Value::String(text) => text.clone(),
            Value::Integer(n) => n.to_string(),
            Value::Float(n) => n.to_string(),
            Value::Boolean(b) => b.to_string(),
            Value::Table(_) => serde_json::to_string(value)?,
            Value::Datetime(d) => d.to_string(),
            Value::Array(_) => bail!(
                "{}: `{key}` takes one value, not a list",
                self.file.display()
            ),
        })
    }

    /// `[[plugin]]` tables → `--plugin`, `--plugin-config`, `--plugin-limit`.
    fn plugins(&self, value: &Value, out: &mut Vec<String>) -> anyhow::Result<()> {
        let Value::Array(plugins) = value else {
            bail!(
                "{}: `plugin` must be a list of tables ([[plugin]])",
                self.file.display()
            );
        };
        for (index, plugin) in plugins.iter().enumerate() {
            let where_ = format!("{}: plugin {}", self.file.display(), index + 1);
            let Value::Table(plugin) = plugin else {
                bail!("{where_} is not a table");
            };
            for key in plugin.keys() {
                if !["name", "path", "sha256", "config", "limits"].contains(&key.as_str()) {
                    bail!("{where_}: unknown key `{key}` (use name, path, sha256, config, limits)");
                }
            }
            let text = |key: &str| -> anyhow::Result<Option<&str>> {
                match plugin.get(key) {
                    None => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s)),
                    Some(_) => bail!("{where_}: `{key}` must be a string"),
                }
            };
            let name = match (text("name")?, text("path")?) {
                (name, Some(path)) => {
                    let path = if path.contains("://") {
                        PathBuf::from(path)
                    } else {
                        self.base.join(path)
                    };
                    let mut spec = match name {
                        Some(name) => format!("{name}={}", path.display()),
                        None => path.display().to_string(),
                    };
                    if let Some(sha) = text("sha256")? {
                        spec.push_str(&format!("#sha256={sha}"));
                    }
                    let parsed: crate::plugins::PluginSpec =
                        spec.parse().map_err(|e: String| anyhow!("{where_}: {e}"))?;
                    out.push(format!("--plugin={spec}"));
                    parsed.name
                }
                (Some(name), None) if name == STOCK_PLUGIN_NAME => name.to_string(),
                _ => bail!(
                    "{where_} needs a `path` (only the stock plugin, name = \"{STOCK_PLUGIN_NAME}\", has none)"
                ),
            };
            for (key, flag) in [("config", "plugin-config"), ("limits", "plugin-limit")] {
                match plugin.get(key) {
                    None => {}
                    Some(Value::Table(pairs)) => {
                        for (setting, value) in pairs {
                            let value = match value {
                                Value::String(s) => s.clone(),
                                Value::Integer(_) | Value::Float(_) | Value::Boolean(_) => {
                                    value.to_string()
                                }
                                other => serde_json::to_string(other)?,
                            };
                            out.push(format!("--{flag}={name}.{setting}={value}"));
                        }
                    }
                    Some(_) => bail!("{where_}: `{key}` must be a table"),
                }
            }
        }
        Ok(())
    }
}

fn takes_no_value(arg: &Arg) -> bool {
    arg.get_num_args().is_some_and(|n| n.max_values() == 0)
        || matches!(
            arg.get_action(),
            clap::ArgAction::SetTrue | clap::ArgAction::SetFalse
        )
}

fn is_repeatable(arg: &Arg) -> bool {
    matches!(arg.get_action(), clap::ArgAction::Append)
}

fn is_key_value(arg: &Arg) -> bool {
    arg.get_value_names()
        .is_some_and(|names| names.iter().any(|n| n.as_str().contains("KEY=VALUE")))
}

fn takes_path(arg: &Arg) -> bool {
    matches!(
        arg.get_value_hint(),
        ValueHint::FilePath | ValueHint::DirPath | ValueHint::AnyPath
    )
}

fn looks_like_json(text: &str) -> bool {
    let text = text.trim_start();
    text.starts_with('{') || text.starts_with('[')
}

/// Whether the command line or the environment already sets this single-valued flag.
fn given_elsewhere(arg: &Arg, command_line: &[OsString]) -> bool {
    let long = arg.get_long().map(|l| format!("--{l}"));
    let short = arg.get_short().map(|s| format!("-{s}"));
    let on_line = command_line.iter().any(|a| {
        let a = a.to_string_lossy();
        long.as_ref()
            .is_some_and(|l| a == *l || a.starts_with(&format!("{l}=")))
            || short.as_ref().is_some_and(|s| a.starts_with(s.as_str()))
    });
    let in_env = arg
        .get_env()
        .is_some_and(|name| std::env::var_os(name).is_some());
    on_line || in_env
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command as Sub};
    use clap::{CommandFactory, Parser};

    fn expand_with(toml_text: &str, args: &[&str]) -> anyhow::Result<Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent.toml");
        std::fs::write(&file, toml_text).unwrap();
        let mut argv: Vec<OsString> = vec!["agent".into()];
        argv.extend(args.iter().map(OsString::from));
        argv.push("--config".into());
        argv.push(file.clone().into());
        let expanded = expand(&Cli::command(), argv)?;
        Ok(expanded
            .into_iter()
            .map(|a| {
                a.to_string_lossy()
                    .replace(&*dir.path().to_string_lossy(), "DIR")
            })
            .collect())
    }

    #[test]
    fn settings_become_flags_before_the_command_lines_own() {
        let args = expand_with(
            r#"
pool = "k8s"
queue = ["a", "b"]
limit = 4
dry-run = true
no-cloud-logs = false
env = { TEAM = "data" }
job-template = "templates/job.yaml"
volume = [{ name = "data", emptyDir = {} }]

[[plugin]]
path = "plugins/naming.wasm"
config = { prefix = "etl" }
limits = { timeout = "1s" }

[[plugin]]
name = "default"
config = { x = 1 }
"#,
            &["start", "--limit", "2"],
        )
        .unwrap();
        assert_eq!(
            args,
            [
                "agent",
                "start",
                "--dry-run",
                "--env=TEAM=data",
                "--job-template=DIR/templates/job.yaml",
                "--plugin=DIR/plugins/naming.wasm",
                "--plugin-config=naming.prefix=etl",
                "--plugin-limit=naming.timeout=1s",
                "--plugin-config=default.x=1",
                "--pool=k8s",
                "--queue=a",
                "--queue=b",
                r#"--volume={"emptyDir":{},"name":"data"}"#,
                "--limit",
                "2",
                "--config",
                "DIR/agent.toml",
            ]
        );
        let cli = Cli::try_parse_from(&args).unwrap();
        let Sub::Start(start) = cli.command else {
            panic!("start")
        };
        assert_eq!(start.limit, Some(2), "the command line wins");
        assert_eq!(start.pool, "k8s");
        assert_eq!(start.queues, ["a", "b"]);
    }

    #[test]
    fn unknown_settings_and_wrong_shapes_name_the_file_and_key() {
        let error = expand_with("pol = \"k8s\"", &["start"]).unwrap_err();
        let text = format!("{error:#}");
        assert!(text.contains("unknown setting `pol`"), "{text}");
        assert!(text.contains("agent.toml"), "{text}");
        assert!(text.contains("pool"), "lists the known settings: {text}");

        let error = expand_with("dry-run = \"yes\"", &["start"]).unwrap_err();
        assert!(format!("{error:#}").contains("is a switch"));

        let error = expand_with("[[plugin]]\nname = \"x\"", &["start"]).unwrap_err();
        assert!(format!("{error:#}").contains("needs a `path`"));

        let error = expand_with("pool = ", &["start"]).unwrap_err();
        assert!(format!("{error:#}").contains("not valid TOML"));
    }

    #[test]
    fn no_config_leaves_the_arguments_alone() {
        let argv: Vec<OsString> = ["agent", "start", "--pool", "p"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(expand(&Cli::command(), argv.clone()).unwrap(), argv);
    }
}
