//! `agent plugin check` and `agent plugin test`: what a plugin author runs in their own
//! repository, with no server and no cluster.

use crate::cli::{PluginCacheArgs, PluginCheckArgs, PluginTestArgs};
use crate::diff::diff;
use crate::plugins::{
    AgentSettings, CallError, Limits, Plugin, PluginSpec, Runtime, RuntimeOptions,
};
use crate::prefect::models::RunContext;
use crate::request::build_request;
use crate::settings::plugin_cache_dir;
use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Loads `path` as the agent would, through the plugin cache `cache` says (so that `plugin
/// test`, `render` and `start` share what `plugin check` compiled).
fn load(path: &Path, cache: &PluginCacheArgs) -> anyhow::Result<Plugin> {
    let spec: PluginSpec = path
        .to_str()
        .context("the plugin path is not UTF-8")?
        .parse()
        .map_err(anyhow::Error::msg)?;
    let options = RuntimeOptions {
        cache_dir: plugin_cache_dir(cache),
        ..RuntimeOptions::default()
    };
    let runtime = Runtime::new(&options).context("starting the plugin runtime")?;
    Ok(runtime.load(&spec, Limits::default())?)
}

/// `agent plugin check FILE`: is it a plugin of our world, what it imports and exports, how
/// big it is and how long it takes to compile. Exit 1 with the reason when it is not.
pub fn check(args: PluginCheckArgs) -> ExitCode {
    match load(&args.file, &args.cache) {
        Ok(plugin) => {
            let contract = plugin
                .exports
                .iter()
                .find(|e| e.starts_with("agent:plugin/customizer@"))
                .cloned()
                .unwrap_or_default();
            println!("{}: a plugin ({contract})", args.file.display());
            println!("  name     {}", plugin.name);
            println!("  size     {} KiB", plugin.size.div_ceil(1024));
            println!("  sha256   {}", plugin.sha256);
            let compile_ms = plugin.compile_time.as_secs_f64() * 1e3;
            if plugin.from_cache {
                println!(
                    "  compile  precompiled, loaded from the plugin cache in {compile_ms:.0} ms (--no-plugin-cache to compile it)"
                );
            } else {
                println!("  compile  {compile_ms:.0} ms");
            }
            println!("  exports  {}", plugin.exports.join(", "));
            println!(
                "  imports  {}",
                if plugin.imports.is_empty() {
                    "nothing".to_string()
                } else {
                    plugin.imports.join(", ")
                }
            );
            println!(
                "  pin it   --plugin {}#sha256={}",
                args.file.display(),
                plugin.sha256
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {}", crate::text::error_chain(&error));
            ExitCode::FAILURE
        }
    }
}

/// One case: what the plugin is given and what it must answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    #[serde(default)]
    description: Option<String>,
    /// The plugin's settings (`--plugin-config NAME.KEY=VALUE`).
    #[serde(default)]
    config: Map<String, Value>,
    /// The flow run, as `agent render --flow-run` takes it; a minimal one when left out.
    #[serde(default)]
    run: Option<Value>,
    /// The Job the plugin is given.
    job: Value,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum Expect {
    /// The Job the plugin must return.
    Job(Value),
    /// A substring of the reason the plugin must reject the run with.
    Rejected(String),
    /// A substring of the fault the plugin must fail with (bad settings, say).
    Fault(String),
}

/// `agent plugin test FILE --cases DIR`: runs the plugin over every case file (JSON or YAML)
/// in DIR; shows what differs on failure. Exit 1 when a case fails or cannot be read.
pub fn test(args: PluginTestArgs) -> ExitCode {
    match run_cases(&args.file, &args.cases, &args.cache) {
        Ok((passed, failed)) => {
            println!("{passed} passed, {failed} failed");
            if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("error: {}", crate::text::error_chain(&error));
            ExitCode::FAILURE
        }
    }
}

fn run_cases(
    plugin_path: &Path,
    dir: &Path,
    cache: &PluginCacheArgs,
) -> anyhow::Result<(usize, usize)> {
    let plugin = load(plugin_path, cache)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("--cases {}: cannot read the directory", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.extension()
                .is_some_and(|e| e == "json" || e == "yaml" || e == "yml")
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!(
            "--cases {}: no case files (*.json, *.yaml) in it",
            dir.display()
        );
    }
    let (mut passed, mut failed) = (0, 0);
    for file in files {
        let case: Case = serde_json::from_value(crate::document::read_document(&file)?)
            .with_context(|| {
                format!(
                    "{} is not a case: expected `job`, `expect` (`job`, `rejected` or `fault`) and optionally `description`, `config`, `run`",
                    file.display()
                )
            })?;
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        match run_case(&plugin, &case) {
            Ok(()) => {
                passed += 1;
                println!("ok    {name}");
            }
            Err(why) => {
                failed += 1;
                println!(
                    "FAIL  {name}{}\n{}",
                    case.description
                        .as_deref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default(),
                    indent(&why)
                );
            }
        }
    }
    Ok((passed, failed))
}

fn run_case(plugin: &Plugin, case: &Case) -> Result<(), String> {
    let run: RunContext = serde_json::from_value(case.run.clone().unwrap_or_else(minimal_run))
        .map_err(|e| format!("`run` does not describe a flow run: {e}"))?;
    let mut request = build_request(
        &run,
        settings(),
        &Map::new(),
        &crate::stock::stock_template(),
    );
    request.config = case
        .config
        .iter()
        .map(|(k, v)| {
            let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            (k.clone(), text)
        })
        .collect();
    let input = serde_json::to_string(&case.job).expect("JSON values serialize");
    let outcome = plugin.call(&request, &input);
    match (&case.expect, outcome) {
        (Expect::Job(expected), Ok(output)) => {
            let actual: Value = serde_json::from_str(&output.job)
                .map_err(|e| format!("the plugin returned something that is not JSON: {e}"))?;
            let changes = diff(expected, &actual);
            if changes.is_empty() {
                return Ok(());
            }
            let lines: Vec<String> = changes
                .iter()
                .map(|c| {
                    let at = |v: &Value| {
                        v.pointer(&c.path)
                            .map_or_else(|| "(absent)".into(), Value::to_string)
                    };
                    format!("{c}: expected {} / got {}", at(expected), at(&actual))
                })
                .collect();
            Err(lines.join("\n"))
        }
        (Expect::Job(_), Err(error)) => Err(format!("expected a Job, but {error}")),
        (Expect::Rejected(reason), Err(CallError::Rejected { reason: got, .. })) => {
            if got.contains(reason.as_str()) {
                Ok(())
            } else {
                Err(format!(
                    "rejected with {got:?}, which does not contain {reason:?}"
                ))
            }
        }
        (Expect::Rejected(reason), Err(error)) => {
            Err(format!("expected a rejection ({reason:?}), but {error}"))
        }
        (Expect::Rejected(reason), Ok(_)) => Err(format!(
            "expected a rejection ({reason:?}), but the plugin returned a Job"
        )),
        (Expect::Fault(detail), Err(error @ CallError::Fault { .. })) => {
            let got = error.to_string();
            if got.contains(detail.as_str()) {
                Ok(())
            } else {
                Err(format!(
                    "failed with {got:?}, which does not contain {detail:?}"
                ))
            }
        }
        (Expect::Fault(detail), Err(error)) => {
            Err(format!("expected a fault ({detail:?}), but {error}"))
        }
        (Expect::Fault(detail), Ok(_)) => Err(format!(
            "expected a fault ({detail:?}), but the plugin returned a Job"
        )),
    }
}

fn minimal_run() -> Value {
    json!({
        "flow_run": {"id": "00000000-0000-4000-8000-000000000001", "name": "test-run", "flow_id": "00000000-0000-4000-8000-000000000002"},
        "flow": {"id": "00000000-0000-4000-8000-000000000002", "name": "test-flow"},
    })
}

/// The agent settings a case runs with: the defaults of `agent start`.
fn settings() -> AgentSettings {
    AgentSettings {
        name: "agent".into(),
        namespace: "default".into(),
        api_url: None,
        api_key_secret: None,
        service_account_name: None,
        image_pull_secrets: Vec::new(),
        env: Vec::new(),
        labels: Vec::new(),
        default_image: "prefecthq/prefect:3-latest".into(),
        prefect_version: None,
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("      {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
