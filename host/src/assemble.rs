//! From settings to working parts: the plugin runtime and chain, the agent settings plugins
//! see, the base job template. Shared by every command that builds Jobs.

use crate::plugins::{
    AgentSettings, Chain, Link, PluginSpec, Runtime, RuntimeOptions, SecretKeyRef,
};
use crate::settings::{JobDefaults, PluginSettings};
use crate::stock::{STOCK_PLUGIN, STOCK_PLUGIN_NAME, stock_template};
use anyhow::{Context, bail};
use serde_json::{Map, Value, json};

/// Loads the stock plugin and then `args.plugins`, checking every `--plugin-config` and
/// `--plugin-limit` names a loaded plugin. The stock plugin also gets the settings `agent`'s
/// flags make for it.
pub fn plugin_chain(
    args: &PluginSettings,
    agent: &JobDefaults,
) -> anyhow::Result<(Runtime, Chain)> {
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
    for setting in args.config.iter().chain(&args.limits) {
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
        cache_dir: args.cache_dir.clone(),
        largest,
        memory_keep_resident: args.keep_resident,
        max_concurrent_calls: args.concurrent_calls,
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
            args.config
                .iter()
                .filter(|s| s.plugin == plugin.name)
                .map(|s| (s.key.clone(), s.value.clone())),
        );
        links.push(Link { plugin, config });
    }
    Ok((runtime, Chain::new(links)))
}

/// Settings of the stock plugin that come from agent flags (`--volume`, `--volume-mount`).
fn stock_config(agent: &JobDefaults) -> Vec<(String, String)> {
    let joined = |items: &[Value]| serde_json::to_string(items).expect("JSON values serialize");
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
pub async fn fetch_remote_plugins(args: &mut PluginSettings) -> anyhow::Result<()> {
    if !args.plugins.iter().any(crate::plugins::is_remote) {
        return Ok(());
    }
    let dir = args
        .cache_dir
        .clone()
        .or_else(crate::plugins::default_cache_dir)
        .unwrap_or_else(|| std::env::temp_dir().join("prefect-agent-plugins"))
        .join("downloads");
    crate::plugins::fetch_remote(&mut args.plugins, &dir).await
}

/// What plugins are told about the agent.
pub fn agent_settings(args: &JobDefaults, prefect_version: Option<String>) -> AgentSettings {
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
fn agent_env(args: &JobDefaults) -> Vec<(String, String)> {
    let mut env = args.env.clone();
    if args.no_cloud_logs {
        env.push(("PREFECT_LOGGING_TO_API_ENABLED".into(), "false".into()));
    }
    env
}

/// The job variables the agent's flags set, between the pool's defaults and the deployment's.
pub fn agent_job_variables(args: &JobDefaults) -> Map<String, Value> {
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
