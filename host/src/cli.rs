//! Command-line flags. Every flag says what it does, its default and its environment variable;
//! the commands themselves live in their own modules.

use crate::plugins::{Limits, PluginSpec};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "agent",
    version,
    about = "Runs Prefect 3 flow runs as Kubernetes Jobs built by WebAssembly plugins"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log filter, as RUST_LOG (`info`, `agent=debug,warn`).
    #[arg(long, global = true, env = "AGENT_LOG", default_value = "info")]
    pub log: String,
    /// Log line format.
    #[arg(long, global = true, env = "AGENT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the Job the agent would create for a flow run, with no server and no cluster.
    ///
    /// The flow run comes from a JSON or YAML file shaped like Prefect's API objects:
    /// `{"flow_run": {...}, "flow": {...}, "deployment": {...}, "work_pool": {...}}`
    /// (deployment and work_pool optional). The stock plugin runs first, then each --plugin in
    /// the order given; the result is checked as `agent start` checks it before creating it.
    Render(RenderArgs),
    /// Take flow runs from a Prefect 3 work pool and run each as a Kubernetes Job.
    ///
    /// Polls the pool, claims each scheduled run by proposing PENDING (several agents can serve
    /// one pool: Prefect lets only one claim win), builds the Job through the plugin chain,
    /// creates it (kubeconfig, KUBECONFIG or in-cluster), records it as the run's
    /// infrastructure and logs to the run. SIGTERM/SIGINT: stop polling, finish what is under
    /// way within --shutdown-grace, exit 0.
    Start(StartArgs),
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The work pool to serve.
    #[arg(long, env = "PREFECT_WORK_POOL_NAME")]
    pub pool: String,
    /// A work queue of the pool to serve (repeatable; all queues when none). `--label` is
    /// Prefect 1's name for it.
    #[arg(
        long = "queue",
        short = 'q',
        visible_alias = "label",
        value_name = "QUEUE"
    )]
    pub queues: Vec<String>,
    /// Prefect API key, sent as `Authorization: Bearer` (Prefect Cloud).
    #[arg(long, env = "PREFECT_API_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// `user:password` for a self-hosted server behind basic auth.
    #[arg(long, env = "PREFECT_API_AUTH_STRING", hide_env_values = true)]
    pub auth_string: Option<String>,
    /// Create the pool (with prefect-kubernetes' stock base job template) when it is missing.
    #[arg(long)]
    pub create_pool: bool,
    /// A base job template or Job manifest replacing the pool's (JSON or YAML).
    #[arg(long, value_name = "FILE")]
    pub job_template: Option<PathBuf>,
    /// Time between polls.
    #[arg(long, env = "AGENT_POLL_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub poll_interval: Duration,
    /// Claim runs scheduled up to this far ahead.
    #[arg(long, env = "AGENT_PREFETCH", default_value = "10s", value_parser = humantime::parse_duration)]
    pub prefetch: Duration,
    /// Submissions under way at once.
    #[arg(long, env = "AGENT_LIMIT", default_value_t = 8)]
    pub limit: usize,
    /// Stop after this many polls (and the submissions they started).
    #[arg(long)]
    pub max_polls: Option<u64>,
    /// Poll once, submit what was found, exit (same as --max-polls 1).
    #[arg(long)]
    pub run_once: bool,
    /// Do everything but create Jobs: print each Job and give its run back to the pool.
    #[arg(long)]
    pub dry_run: bool,
    /// How long submissions under way may take to finish on shutdown.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    #[command(flatten)]
    pub agent: AgentArgs,
    #[command(flatten)]
    pub plugins: PluginArgs,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The flow run to render (JSON or YAML); see examples/flow-runs/.
    #[arg(long, value_name = "FILE")]
    pub flow_run: PathBuf,
    /// A base job template (with `job_configuration`) or a plain Job manifest that replaces
    /// the pool's (JSON or YAML).
    #[arg(long, value_name = "FILE")]
    pub template: Option<PathBuf>,
    /// Output format of the Job.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Yaml)]
    pub output: OutputFormat,
    /// Also show, on stderr, what each plugin added, changed or removed, and how long it took.
    #[arg(long)]
    pub explain: bool,
    /// The Prefect server version to label Jobs with (`agent start` asks the server).
    #[arg(long, env = "PREFECT_VERSION")]
    pub prefect_version: Option<String>,
    #[command(flatten)]
    pub agent: AgentArgs,
    #[command(flatten)]
    pub plugins: PluginArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    Yaml,
    Json,
}

/// The agent's own defaults for every Job (Prefect 1 agent options).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Agent defaults for every Job")]
pub struct AgentArgs {
    /// The agent's name (Prefect calls it the worker name); labels every Job.
    #[arg(long, env = "AGENT_NAME", default_value = "agent")]
    pub name: String,
    /// Create Jobs only in this namespace (a deployment asking for another one fails).
    /// Unset: the namespace the job variables give (pool default `default`).
    #[arg(long, short = 'n', env = "AGENT_NAMESPACE")]
    pub namespace: Option<String>,
    /// The Prefect API URL flow run pods use (PREFECT_API_URL in their env).
    #[arg(long, env = "PREFECT_API_URL")]
    pub api_url: Option<String>,
    /// Secret (NAME/KEY) flow run pods read PREFECT_API_KEY from.
    #[arg(long, value_name = "NAME/KEY", env = "AGENT_API_KEY_SECRET", value_parser = parse_secret_ref)]
    pub api_key_secret: Option<(String, String)>,
    /// Service account for flow run pods, unless the job variables name one.
    #[arg(long, env = "AGENT_SERVICE_ACCOUNT_NAME")]
    pub service_account_name: Option<String>,
    /// Image pull secrets added to every flow run pod (comma-separated).
    #[arg(long, env = "AGENT_IMAGE_PULL_SECRETS", value_delimiter = ',')]
    pub image_pull_secrets: Vec<String>,
    /// Env for every flow run container (KEY=VALUE, repeatable); the `env` job variable wins.
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub env: Vec<(String, String)>,
    /// Label for every Job and its pods (KEY=VALUE, repeatable).
    #[arg(long = "job-label", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub job_labels: Vec<(String, String)>,
    /// Flow runs do not send their logs to the Prefect API (PREFECT_LOGGING_TO_API_ENABLED=false).
    #[arg(long, env = "AGENT_NO_CLOUD_LOGS")]
    pub no_cloud_logs: bool,
    /// Image for flow runs whose template and job variables name none.
    #[arg(
        long,
        env = "AGENT_DEFAULT_IMAGE",
        default_value = "prefecthq/prefect:3-latest"
    )]
    pub default_image: String,
}

/// Which plugins run, with what settings and limits.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Plugins")]
pub struct PluginArgs {
    /// A plugin to run after the stock one: PATH, NAME=PATH, or either with #sha256=HEX to pin
    /// it (repeatable; they run in the order given). Its name is the file name without
    /// `.wasm` unless given.
    #[arg(long = "plugin", short = 'p', value_name = "PLUGIN")]
    pub plugins: Vec<PluginSpec>,
    /// A setting for one plugin: NAME.KEY=VALUE (repeatable).
    #[arg(long = "plugin-config", short = 'c', value_name = "NAME.KEY=VALUE", value_parser = parse_plugin_setting)]
    pub plugin_config: Vec<PluginSetting>,
    /// Wall time one plugin call may take.
    #[arg(long, env = "AGENT_PLUGIN_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub plugin_timeout: Duration,
    /// Linear memory one plugin call may use (like 64MiB, 1GiB).
    #[arg(long, env = "AGENT_PLUGIN_MEMORY", default_value = "64MiB", value_parser = parse_bytes)]
    pub plugin_memory: usize,
    /// A limit for one plugin (repeatable): NAME.timeout=DURATION, NAME.memory=SIZE,
    /// NAME.instances=N, NAME.tables=N, NAME.table-elements=N (defaults 2s, 64MiB, 32, 32,
    /// 100000; timeout and memory default to --plugin-timeout and --plugin-memory).
    #[arg(long = "plugin-limit", value_name = "NAME.LIMIT=VALUE", value_parser = parse_plugin_setting)]
    pub plugin_limits: Vec<PluginSetting>,
    /// Where compiled plugins are kept between runs [default: the user's cache dir]
    #[arg(long, env = "AGENT_PLUGIN_CACHE", value_name = "DIR")]
    pub plugin_cache: Option<PathBuf>,
    /// Compile plugins on every start instead of keeping them.
    #[arg(long)]
    pub no_plugin_cache: bool,
}

/// `NAME.KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSetting {
    pub plugin: String,
    pub key: String,
    pub value: String,
}

impl PluginArgs {
    /// The limits of plugin `name`: the common flags, then its own `--plugin-limit`s.
    pub fn limits_for(&self, name: &str) -> Result<Limits, String> {
        let mut limits = Limits {
            timeout: self.plugin_timeout,
            memory_bytes: self.plugin_memory,
            ..Limits::default()
        };
        for setting in self.plugin_limits.iter().filter(|s| s.plugin == name) {
            let flag = format!(
                "--plugin-limit {}.{}={}",
                setting.plugin, setting.key, setting.value
            );
            match setting.key.as_str() {
                "timeout" => {
                    limits.timeout = humantime::parse_duration(&setting.value)
                        .map_err(|e| format!("{flag}: {e}"))?
                }
                "memory" => {
                    limits.memory_bytes =
                        parse_bytes(&setting.value).map_err(|e| format!("{flag}: {e}"))?
                }
                "instances" => limits.instances = parse_count(&setting.value, &flag)?,
                "tables" => limits.tables = parse_count(&setting.value, &flag)?,
                "table-elements" => limits.table_elements = parse_count(&setting.value, &flag)?,
                other => {
                    return Err(format!(
                        "{flag}: unknown limit {other:?}; use timeout, memory, instances, tables or table-elements"
                    ));
                }
            }
        }
        Ok(limits)
    }
}

fn parse_count(text: &str, flag: &str) -> Result<usize, String> {
    text.parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{flag}: expected a positive whole number"))
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

fn parse_secret_ref(text: &str) -> Result<(String, String), String> {
    match text.split_once('/') {
        Some((name, key)) if !name.is_empty() && !key.is_empty() => {
            Ok((name.to_string(), key.to_string()))
        }
        _ => Err(format!("{text:?} is not SECRET-NAME/KEY")),
    }
}

fn parse_plugin_setting(text: &str) -> Result<PluginSetting, String> {
    let (path, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NAME.KEY=VALUE"))?;
    match path.split_once('.') {
        Some((plugin, key)) if !plugin.is_empty() && !key.is_empty() => Ok(PluginSetting {
            plugin: plugin.into(),
            key: key.into(),
            value: value.into(),
        }),
        _ => Err(format!(
            "{text:?} is not NAME.KEY=VALUE (NAME is the plugin's name)"
        )),
    }
}

/// `64MiB`, `1GiB`, `512KiB`, `100MB`, `1048576`.
pub fn parse_bytes(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 64MiB"))?;
    let factor: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "Ki" => 1 << 10,
        "MiB" | "Mi" => 1 << 20,
        "GiB" | "Gi" => 1 << 30,
        "KB" | "K" => 1_000,
        "MB" | "M" => 1_000_000,
        "GB" | "G" => 1_000_000_000,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?}; use KiB, MiB or GiB"
            ));
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}

pub fn init_logging(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|e| {
        eprintln!("warning: --log {filter:?} is not a valid filter ({e}); using info");
        tracing_subscriber::EnvFilter::new("info")
    });
    // Colours only for a person at a terminal, never in files or pipes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("100MB"), Ok(100_000_000));
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn plugin_settings_split_at_the_first_dot() {
        assert_eq!(
            parse_plugin_setting("resources.cpu.max=2"),
            Ok(PluginSetting {
                plugin: "resources".into(),
                key: "cpu.max".into(),
                value: "2".into()
            })
        );
        assert!(parse_plugin_setting("noequals").is_err());
    }
}
