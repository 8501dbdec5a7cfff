//! From flags to working parts: the plugin runtime and chain, the agent settings plugins see,
//! the base job template. Shared by every command that builds Jobs.

use crate::cli::{AgentArgs, PluginArgs};
use crate::plugins::{
    AgentSettings, Chain, Link, PluginSpec, Runtime, RuntimeOptions, SecretKeyRef,
};
use crate::stock::{STOCK_PLUGIN, STOCK_PLUGIN_NAME, stock_template};
use anyhow::{Context, bail};
use serde_json::{Map, Value, json};
use std::path::Path;

/// Loads the stock plugin and then `args.plugins`, checking every `--plugin-config` and
/// `--plugin-limit` names a loaded plugin. The stock plugin also gets the settings `agent`'s
/// flags make for it.
pub fn plugin_chain(args: &PluginArgs, agent: &AgentArgs) -> anyhow::Result<(Runtime, Chain)> {
    let stock = PluginSpec::builtin(STOCK_PLUGIN_NAME);
    let specs: Vec<&PluginSpec> = std::iter::once(&stock).chain(&args.plugins).collect();
    let mut names: Vec<&str> = Vec::new();
    for spec in &specs {
        if names.contains(&spec.name.as_str()) {
            bail!(
                "two plugins are named {:?}; name one explicitly with --plugin NAME=PATH",
                spec.name
            );
        }
        names.push(&spec.name);
    }
    for setting in args.plugin_config.iter().chain(&args.plugin_limits) {
        if !names.contains(&setting.plugin.as_str()) {
            bail!(
                "{}.{}: no plugin named {:?} is loaded (loaded: {})",
                setting.plugin,
                setting.key,
                setting.plugin,
                names.join(", ")
            );
        }
    }
    let limits = specs
        .iter()
        .map(|spec| args.limits_for(&spec.name).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let largest = limits.iter().fold(limits[0], |a, b| a.max(b));
    let options = RuntimeOptions {
        cache_dir: if args.no_plugin_cache {
            None
        } else {
            args.plugin_cache
                .clone()
                .or_else(crate::plugins::default_cache_dir)
        },
        largest,
        memory_keep_resident: args.plugin_keep_resident,
        ..RuntimeOptions::default()
    };
    let runtime = Runtime::new(&options).context("starting the plugin runtime")?;
    let mut links = Vec::new();
    for (index, (spec, limits)) in specs.into_iter().zip(limits).enumerate() {
        // The first is the stock plugin, built into this binary.
        let plugin = if index == 0 {
            runtime.load_bytes(spec, STOCK_PLUGIN, limits)?
        } else {
            runtime.load(spec, limits)?
        };
        tracing::debug!(
            plugin = %plugin.name,
            sha256 = %plugin.sha256,
            size = plugin.size,
            compile_ms = plugin.compile_time.as_millis() as u64,
            cached = plugin.from_cache,
            "plugin loaded"
        );
        let mut config: Vec<(String, String)> = if index == 0 {
            stock_config(agent)
        } else {
            Vec::new()
        };
        config.extend(
            args.plugin_config
                .iter()
                .filter(|s| s.plugin == plugin.name)
                .map(|s| (s.key.clone(), s.value.clone())),
        );
        links.push(Link { plugin, config });
    }
    Ok((runtime, Chain::new(links)))
}

/// Settings of the stock plugin that come from agent flags (`--volume`, `--volume-mount`).
fn stock_config(agent: &AgentArgs) -> Vec<(String, String)> {
    let joined = |lists: &[crate::cli::NamedList]| {
        let items: Vec<&Value> = lists.iter().flat_map(|l| &l.0).collect();
        serde_json::to_string(&items).expect("JSON values serialize")
    };
    let mut config = Vec::new();
    if !agent.volumes.is_empty() {
        config.push(("volumes".into(), joined(&agent.volumes)));
    }
    if !agent.volume_mounts.is_empty() {
        config.push(("volume-mounts".into(), joined(&agent.volume_mounts)));
    }
    if let Some((name, key)) = &agent.api_auth_string_secret {
        config.push(("api-auth-string-secret".into(), format!("{name}/{key}")));
    }
    config
}

/// Downloads the plugins given as URLs (pinned by sha256) into the plugin cache, and points
/// their specs at the downloaded files.
pub async fn fetch_remote_plugins(args: &mut PluginArgs) -> anyhow::Result<()> {
    if !args.plugins.iter().any(crate::plugins::is_remote) {
        return Ok(());
    }
    let dir = args
        .plugin_cache
        .clone()
        .or_else(crate::plugins::default_cache_dir)
        .unwrap_or_else(|| std::env::temp_dir().join("prefect-agent-plugins"))
        .join("downloads");
    crate::plugins::fetch_remote(&mut args.plugins, &dir).await
}

/// What plugins are told about the agent.
pub fn agent_settings(args: &AgentArgs, prefect_version: Option<String>) -> AgentSettings {
    AgentSettings {
        name: args.name.clone(),
        namespace: args.namespace.clone().unwrap_or_else(|| "default".into()),
        api_url: args.api_url.clone(),
        api_key_secret: args
            .api_key_secret
            .clone()
            .map(|(name, key)| SecretKeyRef { name, key }),
        service_account_name: args.service_account_name.clone(),
        image_pull_secrets: args.image_pull_secrets.clone(),
        env: agent_env(args),
        labels: args.job_labels.clone(),
        default_image: args.default_image.clone(),
        prefect_version,
    }
}

/// `--env` pairs, plus what other flags put in every flow run's environment.
fn agent_env(args: &AgentArgs) -> Vec<(String, String)> {
    let mut env = args.env.clone();
    if args.no_cloud_logs {
        env.push(("PREFECT_LOGGING_TO_API_ENABLED".into(), "false".into()));
    }
    env
}

/// The job variables the agent's flags set, between the pool's defaults and the deployment's.
pub fn agent_job_variables(args: &AgentArgs) -> Map<String, Value> {
    let mut variables = Map::new();
    if let Some(namespace) = &args.namespace {
        variables.insert("namespace".into(), json!(namespace));
    }
    if let Some(account) = &args.service_account_name {
        variables.insert("service_account_name".into(), json!(account));
    }
    variables
}

/// The base job template to use: the pool's, or the stock one; `replacement` (from
/// `--template`) replaces it whole when it is a base job template, or only its Job manifest
/// when it is a plain Job.
pub fn base_job_template(
    pool_template: Option<&Value>,
    replacement: Option<&Value>,
) -> anyhow::Result<Value> {
    let pool = pool_template
        .filter(|t| t.get("job_configuration").is_some())
        .cloned()
        .unwrap_or_else(stock_template);
    match replacement {
        None => Ok(pool),
        Some(template) if template.get("job_configuration").is_some() => Ok(template.clone()),
        Some(job) if job.get("kind").and_then(Value::as_str) == Some("Job") => {
            let mut template = pool;
            template["job_configuration"]["job_manifest"] = job.clone();
            Ok(template)
        }
        Some(_) => bail!(
            "the template is neither a base job template (with `job_configuration`) nor a Job manifest (`kind: Job`)"
        ),
    }
}

/// Reads a JSON or YAML file into a value, naming the file in every error.
pub fn read_document(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_document(&text, &path.display().to_string())
}

/// JSON (a name ending in .json, or text starting with `{`) or YAML; `name` says where it came
/// from in errors.
pub fn parse_document(text: &str, name: &str) -> anyhow::Result<Value> {
    let is_json = name.ends_with(".json") || text.trim_start().starts_with('{');
    if is_json {
        serde_json::from_str(text).with_context(|| format!("{name} is not valid JSON"))
    } else {
        serde_yaml_ng::from_str(text).with_context(|| format!("{name} is not valid YAML"))
    }
}
