//! Command-line flags. Every flag says what it does, its default and its environment variable;
//! the commands themselves live in their own modules.

use crate::plugins::PluginSpec;
use clap::{Args, Parser, Subcommand, ValueEnum, ValueHint};
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

// Parsed once at start-up: the size of the variants does not matter.
#[allow(clippy::large_enum_variant)]
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
    /// Print the manifests that run the agent in a cluster, for `kubectl apply -f -`.
    ///
    /// A Deployment (probes on /healthz and /readyz, settings as env, plugins from a ConfigMap,
    /// a volume or a pinned URL) and, with --rbac, its ServiceAccount with least privilege in
    /// the namespaces its Jobs go to. The Prefect API key is read from a Secret (--key-secret).
    Install(InstallArgs),
    /// Tools for plugin authors: check a component, test it against cases.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Check that a file is a plugin of this agent's contract: its world and version, imports,
    /// exports, size, compile time. Exit 1 with the reason when it is not.
    Check(PluginCheckArgs),
    /// Run a plugin over test cases (a Job in, the Job or the rejection expected out) and show
    /// what differs. Each case is a JSON or YAML file: `job`, `expect: {job: …}` or
    /// `expect: {rejected: "part of the reason"}`, and optionally `description`, `config`
    /// (the plugin's settings) and `run` (the flow run, as `agent render --flow-run` reads it).
    Test(PluginTestArgs),
    /// Create a plugin project that builds and passes `agent plugin test` as it is.
    New(PluginNewArgs),
}

#[derive(Debug, Args)]
pub struct PluginNewArgs {
    /// The plugin's name (lowercase letters, digits, '-').
    pub name: String,
    /// The language of the project.
    #[arg(long, value_enum, default_value_t = PluginLang::Rust)]
    pub lang: PluginLang,
    /// Where to create it [default: ./NAME]
    #[arg(long, value_hint = ValueHint::DirPath)]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PluginLang {
    Rust,
    Python,
    Js,
    C,
}

#[derive(Debug, Args)]
pub struct PluginCheckArgs {
    /// The component (.wasm).
    #[arg(value_hint = ValueHint::FilePath)]
    pub file: PathBuf,
    #[command(flatten)]
    pub cache: PluginCacheArgs,
}

#[derive(Debug, Args)]
pub struct PluginTestArgs {
    /// The component (.wasm).
    #[arg(value_hint = ValueHint::FilePath)]
    pub file: PathBuf,
    /// The directory of case files.
    #[arg(long, value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub cases: PathBuf,
    #[command(flatten)]
    pub cache: PluginCacheArgs,
}

/// Where compiled plugins are kept: the same for every command that loads plugins.
#[derive(Debug, Clone, Args)]
pub struct PluginCacheArgs {
    /// Where compiled plugins are kept between runs [default: the user's cache dir]
    #[arg(long, env = "AGENT_PLUGIN_CACHE", value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub plugin_cache: Option<PathBuf>,
    /// Compile plugins every time instead of keeping them.
    #[arg(long)]
    pub no_plugin_cache: bool,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The work pool to serve.
    #[arg(long, short = 'p', env = "PREFECT_WORK_POOL_NAME")]
    pub pool: String,
    /// A work queue of the pool to serve (repeatable; all queues when none). `--queue` and
    /// `--label` (Prefect 1's name) are the same.
    #[arg(
        long = "work-queue",
        short = 'q',
        visible_aliases = ["queue", "label"],
        value_name = "QUEUE"
    )]
    pub queues: Vec<String>,
    /// The worker type, as `prefect worker start --type` takes it: only `kubernetes`.
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_worker_type)]
    pub worker_type: Option<String>,
    /// Prefect API key, sent as `Authorization: Bearer` (Prefect Cloud).
    #[arg(
        long,
        visible_alias = "api-key",
        env = "PREFECT_API_KEY",
        hide_env_values = true
    )]
    pub key: Option<String>,
    /// `user:password` for a self-hosted server behind basic auth.
    #[arg(long, env = "PREFECT_API_AUTH_STRING", hide_env_values = true)]
    pub auth_string: Option<String>,
    #[command(flatten)]
    pub api: ApiArgs,
    /// Create the pool (with prefect-kubernetes' stock base job template) when it is missing.
    #[arg(long, visible_alias = "create-pool-if-not-found")]
    pub create_pool: bool,
    /// A base job template or Job manifest replacing the pool's (JSON or YAML): a file, an
    /// https:// URL, or s3://, gs://, az:// (credentials from the environment).
    #[arg(long, visible_alias = "base-job-template", value_name = "FILE|URL", value_hint = ValueHint::FilePath)]
    pub job_template: Option<String>,
    /// Time between polls (like 15s, or seconds: 15; 100ms to 1h); Prefect's event stream
    /// wakes the agent between them for new runs and cancellations.
    #[arg(long, env = "PREFECT_WORKER_QUERY_SECONDS", default_value = "15", value_parser = parse_poll_interval)]
    pub poll_interval: Duration,
    /// Claim runs scheduled up to this far ahead (like 10s, or seconds: 10; 0 to 1d).
    #[arg(long, visible_alias = "prefetch-seconds", env = "PREFECT_WORKER_PREFETCH_SECONDS", default_value = "10", value_parser = parse_prefetch)]
    pub prefetch: Duration,
    /// Flow runs of this agent running at once (its Jobs not finished), as Prefect's worker's
    /// --limit: past it, no run is claimed until one ends [default: no limit]
    #[arg(long, short = 'l', value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub limit: Option<u32>,
    /// Submissions (claim, plugins, Job creation) under way at once (1 to 1024).
    #[arg(long, env = "AGENT_SUBMISSION_LIMIT", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub submission_limit: u32,
    /// How often the agent tells Prefect it is alive (the pool's worker list shows it online;
    /// like 30s, or seconds: 30; 1s to 1h).
    #[arg(long, env = "PREFECT_WORKER_HEARTBEAT_SECONDS", default_value = "30", value_parser = parse_heartbeat)]
    pub heartbeat_interval: Duration,
    /// A claim older than this whose run has no Job (its agent died between claim and create)
    /// is finished by this agent, under the same Job name (1s to 1d).
    #[arg(long, env = "AGENT_ORPHAN_GRACE", default_value = "90s", value_parser = parse_orphan_grace)]
    pub orphan_grace: Duration,
    /// How often the pool's claims left unfinished are looked for (one request per 200
    /// PENDING runs; 1s to 1d).
    #[arg(long, env = "AGENT_ORPHAN_INTERVAL", default_value = "60s", value_parser = parse_orphan_interval)]
    pub orphan_interval: Duration,
    /// Stop after this many polls (and the submissions they started).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_polls: Option<u64>,
    /// Poll once, submit what was found, exit (same as --max-polls 1).
    #[arg(long)]
    pub run_once: bool,
    /// Write the agent's own API key (and auth string) into the --api-key-secret Secret in
    /// every namespace served, creating it (labelled as the agent's) or updating it.
    #[arg(long, env = "AGENT_MANAGE_API_KEY_SECRET", requires = "api_key_secret")]
    pub manage_api_key_secret: bool,
    /// Flow run pods get no API key although the agent has one (they authenticate some other
    /// way). Without it, a PREFECT_API_KEY with no --api-key-secret is refused at start.
    #[arg(long, env = "AGENT_NO_API_KEY_FOR_RUNS")]
    pub no_api_key_for_runs: bool,
    /// Move every plain env value of a Job's containers into a Secret named after the Job and
    /// owned by it (deleted with it); the containers read them through secretKeyRef. Needs
    /// create, get, patch and delete on secrets where Jobs run.
    #[arg(long, env = "AGENT_ENV_SECRET")]
    pub env_secret: bool,
    /// Do everything but create Jobs: print each Job and give its run back to the pool.
    #[arg(long)]
    pub dry_run: bool,
    /// How long submissions under way may take to finish on shutdown (0 to 1h).
    #[arg(long, env = "AGENT_SHUTDOWN_GRACE", default_value = "30s", value_parser = parse_shutdown_grace)]
    pub shutdown_grace: Duration,
    #[command(flatten)]
    pub watch: WatchArgs,
    #[command(flatten)]
    pub agent: AgentArgs,
    #[command(flatten)]
    pub plugins: PluginArgs,
}

/// How the agent talks to the Prefect API (Prefect's client settings).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Prefect API")]
pub struct ApiArgs {
    /// A PEM file of the certificate authorities to trust for the Prefect API (a private CA).
    #[arg(long, env = "PREFECT_API_SSL_CERT_FILE", value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub api_ca_file: Option<PathBuf>,
    /// Do not check the Prefect API's TLS certificate (testing only).
    #[arg(long, env = "PREFECT_API_TLS_INSECURE_SKIP_VERIFY", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false", num_args = 0..=1, default_missing_value = "true")]
    pub api_tls_insecure_skip_verify: bool,
    /// A header for every request to the Prefect API: NAME=VALUE (repeatable). Prefect's
    /// PREFECT_CLIENT_CUSTOM_HEADERS (a JSON object) is read too.
    #[arg(long = "api-header", value_name = "NAME=VALUE", value_parser = parse_key_value)]
    pub api_headers: Vec<(String, String)>,
    /// How long one request to the Prefect API may take (like 60s, or seconds: 60; 1s to 1h).
    #[arg(long, env = "PREFECT_API_REQUEST_TIMEOUT", default_value = "60", value_parser = parse_request_timeout)]
    pub api_request_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The agent's image (build one from this repository's binary; none is published).
    #[arg(long)]
    pub image: String,
    /// The work pool the agent serves.
    #[arg(long, short = 'p', env = "PREFECT_WORK_POOL_NAME")]
    pub pool: String,
    /// The Prefect API URL, for the agent and its flow runs.
    #[arg(long, env = "PREFECT_API_URL", value_parser = parse_api_url)]
    pub api_url: String,
    /// Work queues to serve (repeatable; all when none).
    #[arg(long = "work-queue", short = 'q', visible_aliases = ["queue", "label"])]
    pub queues: Vec<String>,
    /// The namespace the agent runs in.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// A namespace Jobs go to (repeatable; the first is the default) [default: --namespace]
    #[arg(long = "job-namespace", value_name = "NAMESPACE")]
    pub job_namespaces: Vec<String>,
    /// The agent's name: its Deployment, labels, and the worker name in Prefect.
    #[arg(long, short = 'n', default_value = "prefect-agent")]
    pub name: String,
    /// The Secret (NAME/KEY) holding the Prefect API key; flow run pods read it from a Secret
    /// of the same name in their namespace.
    #[arg(long, visible_alias = "key-secret", value_name = "NAME/KEY", value_parser = parse_secret_ref_default_key)]
    pub api_key_secret: Option<(String, String)>,
    /// The Secret (NAME/KEY) holding `user:password` for a server behind basic auth; the agent
    /// and flow run pods read PREFECT_API_AUTH_STRING from it.
    #[arg(long, value_name = "NAME/KEY", value_parser = parse_secret_ref_default_key)]
    pub api_auth_string_secret: Option<(String, String)>,
    /// The Prefect API key itself: refused (it would be printed in plain text) unless
    /// --insecure-inline-key.
    #[arg(long, short = 'k', env = "PREFECT_API_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Print --key into a Secret of the manifests.
    #[arg(long)]
    pub insecure_inline_key: bool,
    /// The agent copies its key into the --api-key-secret Secret of every job namespace
    /// (`agent start --manage-api-key-secret`); --rbac then grants creating it and reading and
    /// updating that one Secret.
    #[arg(long, visible_alias = "manage-key-secret")]
    pub manage_api_key_secret: bool,
    /// The agent moves each Job's plain env into a Secret the Job owns (`agent start
    /// --env-secret`); --rbac then grants create, get, patch and delete on secrets where Jobs
    /// run.
    #[arg(long)]
    pub env_secret: bool,
    /// Also print the ServiceAccount, Role (or ClusterRole, for several job namespaces) and
    /// RoleBindings the agent needs.
    #[arg(long)]
    pub rbac: bool,
    /// The service account the agent runs as [default: --name]
    #[arg(long)]
    pub service_account_name: Option<String>,
    /// Agents running the pool side by side (they share the work through Prefect's claims).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub replicas: u32,
    #[arg(long, default_value = "IfNotPresent")]
    pub image_pull_policy: String,
    /// Image pull secrets for the agent's pod (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub image_pull_secrets: Vec<String>,
    #[arg(long, default_value = "100m")]
    pub cpu_request: String,
    #[arg(long, default_value = "128Mi")]
    pub memory_request: String,
    #[arg(long)]
    pub cpu_limit: Option<String>,
    #[arg(long, default_value = "512Mi")]
    pub memory_limit: Option<String>,
    /// A plugin (repeatable, in order): a local FILE (shipped in a ConfigMap; 1 MiB in all),
    /// configmap:NAME/KEY, volume:CLAIM/PATH (a PersistentVolumeClaim), or an https:// URL
    /// (fetched at start; needs #sha256=HEX). Each may start with NAME= and end with
    /// #sha256=HEX.
    #[arg(long = "plugin", value_name = "PLUGIN")]
    pub plugins: Vec<String>,
    /// A plugin setting passed to the agent: NAME.KEY=VALUE (repeatable).
    #[arg(long = "plugin-config", short = 'c', value_name = "NAME.KEY=VALUE")]
    pub plugin_config: Vec<String>,
    /// An agent.toml to mount (from a ConfigMap) as the agent's --config.
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub config: Option<PathBuf>,
    /// The port of /healthz, /readyz and /metrics.
    #[arg(long, default_value_t = 8080, value_parser = clap::value_parser!(u16).range(1..))]
    pub health_port: u16,
}

fn parse_secret_ref_default_key(text: &str) -> Result<(String, String), String> {
    match text.split_once('/') {
        None if !text.is_empty() => Ok((text.to_string(), "key".to_string())),
        _ => parse_secret_ref(text),
    }
}

/// After submission: watching, reporting, cancelling, cleaning up; health and metrics.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Lifecycle, health and metrics")]
pub struct WatchArgs {
    /// A pod that cannot pull its image or find a Secret/ConfigMap this long after its
    /// creation crashes its run, and its Job is deleted.
    #[arg(long, env = "AGENT_POD_START_TIMEOUT", default_value = "5m", value_parser = parse_pod_start_timeout)]
    pub pod_start_timeout: Duration,
    /// A pod no node can take is waited for (an autoscaler may add one) this long, then its
    /// run crashes and its Job is deleted.
    #[arg(long, env = "AGENT_SCHEDULE_TIMEOUT", default_value = "30m", value_parser = parse_schedule_timeout)]
    pub schedule_timeout: Duration,
    /// Delete Jobs that succeeded this long after they finished, once their run is final
    /// [default: keep them]
    #[arg(long, env = "AGENT_DELETE_SUCCEEDED_AFTER", value_parser = parse_keep)]
    pub delete_succeeded_after: Option<Duration>,
    /// Delete Jobs that failed this long after they finished, once their run is final
    /// [default: keep them]
    #[arg(long, env = "AGENT_DELETE_FAILED_AFTER", value_parser = parse_keep)]
    pub delete_failed_after: Option<Duration>,
    /// Serve /healthz, /readyz and /metrics (Prometheus) on HOST:PORT (or
    /// http://HOST:PORT, Prefect 1's form).
    #[arg(long, env = "AGENT_ADDRESS", value_name = "HOST:PORT", value_parser = parse_agent_address)]
    pub agent_address: Option<std::net::SocketAddr>,
    /// Serve /healthz, /readyz and /metrics on PREFECT_WORKER_WEBSERVER_HOST and
    /// PREFECT_WORKER_WEBSERVER_PORT (0.0.0.0:8080), as Prefect's worker does; --agent-address
    /// wins.
    #[arg(long)]
    pub with_healthcheck: bool,
    /// /healthz fails after this many poll intervals without a successful poll (Prefect's
    /// worker uses 30).
    #[arg(
        long,
        env = "AGENT_UNHEALTHY_AFTER",
        default_value_t = 30,
        value_name = "POLLS",
        value_parser = clap::value_parser!(u32).range(1..=100_000)
    )]
    pub unhealthy_after: u32,
    /// A file rewritten after every successful poll, for exec liveness probes.
    #[arg(long, env = "AGENT_HEARTBEAT_FILE", value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub heartbeat_file: Option<PathBuf>,
    /// How many lines of a failed pod's log a crash report quotes (Prefect's worker: 500).
    #[arg(long, env = "AGENT_CRASH_LOG_LINES", default_value_t = 500, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub crash_log_lines: u32,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The flow run to render (JSON or YAML); see examples/flow-runs/.
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub flow_run: PathBuf,
    /// A base job template (with `job_configuration`) or a plain Job manifest that replaces
    /// the pool's (JSON or YAML).
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
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
    /// Read settings from a TOML file whose keys are these flags' long names, with plugins as
    /// [[plugin]] tables (name, path, sha256, config, limits). Flags and environment
    /// variables win over the file; relative paths are relative to it.
    #[arg(long, env = "AGENT_CONFIG", value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub config: Option<PathBuf>,
    /// The agent's name (Prefect calls it the worker name); labels every Job.
    #[arg(long, short = 'n', env = "AGENT_NAME", default_value = "agent")]
    pub name: String,
    /// Create Jobs in this namespace: the default for runs, and (with --job-namespace) the
    /// only one allowed; a deployment asking for another one fails. Unset: the namespace the
    /// job variables give (pool default `default`).
    #[arg(long, env = "AGENT_NAMESPACE")]
    pub namespace: Option<String>,
    /// Another namespace Jobs may go to, by their `namespace` job variable (repeatable);
    /// a run asking for one outside --namespace and these fails. Unset (and no --namespace):
    /// any namespace.
    #[arg(
        long = "job-namespace",
        env = "AGENT_JOB_NAMESPACES",
        value_delimiter = ',',
        value_name = "NAMESPACE"
    )]
    pub job_namespaces: Vec<String>,
    /// The Prefect API URL (`http(s)://HOST[:PORT]/api`, or Prefect Cloud's workspace URL);
    /// flow run pods get it as PREFECT_API_URL.
    #[arg(long, env = "PREFECT_API_URL", value_parser = parse_api_url)]
    pub api_url: Option<String>,
    /// Secret (NAME/KEY) flow run pods read PREFECT_API_KEY from.
    #[arg(long, value_name = "NAME/KEY", env = "AGENT_API_KEY_SECRET", value_parser = parse_secret_ref)]
    pub api_key_secret: Option<(String, String)>,
    /// Secret (NAME/KEY) flow run pods read PREFECT_API_AUTH_STRING from (servers behind
    /// basic auth).
    #[arg(long, value_name = "NAME/KEY", env = "AGENT_API_AUTH_STRING_SECRET", value_parser = parse_secret_ref)]
    pub api_auth_string_secret: Option<(String, String)>,
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
    /// Volumes for every flow run pod: a Kubernetes volume or list of them, as JSON or a
    /// JSON/YAML file (repeatable). The stock plugin adds them.
    #[arg(long = "volume", value_name = "JSON|FILE", value_hint = ValueHint::FilePath, value_parser = parse_volumes)]
    pub volumes: Vec<NamedList>,
    /// Volume mounts for every flow run container: a volumeMount or list of them, as JSON or
    /// a JSON/YAML file (repeatable).
    #[arg(long = "volume-mount", value_name = "JSON|FILE", value_hint = ValueHint::FilePath, value_parser = parse_volume_mounts)]
    pub volume_mounts: Vec<NamedList>,
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
    #[arg(long = "plugin", value_name = "PLUGIN")]
    pub plugins: Vec<PluginSpec>,
    /// A setting for one plugin: NAME.KEY=VALUE (repeatable).
    #[arg(long = "plugin-config", short = 'c', value_name = "NAME.KEY=VALUE", value_parser = parse_plugin_setting)]
    pub plugin_config: Vec<PluginSetting>,
    /// Wall time one plugin call may take, time in host calls (clocks, sleeps) included
    /// (10ms to 1h).
    #[arg(long, env = "AGENT_PLUGIN_TIMEOUT", default_value = "2s", value_parser = parse_timeout)]
    pub plugin_timeout: Duration,
    /// Linear memory one plugin call may use (like 64MiB, 1GiB; 1MiB to 4GiB).
    #[arg(long, env = "AGENT_PLUGIN_MEMORY", default_value = "64MiB", value_parser = parse_plugin_memory)]
    pub plugin_memory: usize,
    /// The largest Job (JSON) one plugin may return; a larger answer fails the run without
    /// being read (1KiB to 64MiB).
    #[arg(long, env = "AGENT_PLUGIN_OUTPUT_LIMIT", default_value = "4MiB", value_parser = parse_output_limit)]
    pub plugin_output_limit: usize,
    /// Memory of each plugin instance slot kept resident between calls (reset with memset
    /// instead of handed back to the kernel): the next call does not fault it in again. A
    /// Python plugin's call is about 2.4x faster with the default; costs up to that much RSS
    /// per warm slot.
    #[arg(long, env = "AGENT_PLUGIN_KEEP_RESIDENT", default_value = "32MiB", value_parser = parse_keep_resident)]
    pub plugin_keep_resident: usize,
    /// A limit for one plugin (repeatable): NAME.timeout=DURATION, NAME.memory=SIZE,
    /// NAME.output=SIZE, NAME.instances=N, NAME.tables=N, NAME.table-elements=N (defaults
    /// --plugin-timeout, --plugin-memory, --plugin-output-limit, 32, 32, 100000).
    #[arg(long = "plugin-limit", value_name = "NAME.LIMIT=VALUE", value_parser = parse_plugin_setting)]
    pub plugin_limits: Vec<PluginSetting>,
    #[command(flatten)]
    pub cache: PluginCacheArgs,
}

/// `NAME.KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSetting {
    pub plugin: String,
    pub key: String,
    pub value: String,
}

/// Kubernetes objects that each have a `name` (volumes, volume mounts).
#[derive(Debug, Clone, PartialEq)]
pub struct NamedList(pub Vec<serde_json::Value>);

fn parse_volumes(text: &str) -> Result<NamedList, String> {
    parse_named_list(text, &[])
}

fn parse_volume_mounts(text: &str) -> Result<NamedList, String> {
    parse_named_list(text, &["mountPath"])
}

/// Inline JSON (an object or a list of them) or a JSON/YAML file holding the same; every item
/// needs a string `name` and the `required` string fields.
fn parse_named_list(text: &str, required: &[&str]) -> Result<NamedList, String> {
    let trimmed = text.trim_start();
    let value = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?
    } else {
        crate::document::read_document(std::path::Path::new(text)).map_err(|e| {
            format!(
                "{} (expected inline JSON or a JSON/YAML file)",
                crate::text::error_chain(&e)
            )
        })?
    };
    let items = match value {
        serde_json::Value::Array(items) => items,
        object @ serde_json::Value::Object(_) => vec![object],
        other => {
            return Err(format!(
                "expected an object or a list of objects, got {other}"
            ));
        }
    };
    for (index, item) in items.iter().enumerate() {
        for field in std::iter::once(&"name").chain(required) {
            if !item.get(field).is_some_and(serde_json::Value::is_string) {
                return Err(format!("item {index} has no string field `{field}`"));
            }
        }
    }
    Ok(NamedList(items))
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

/// A duration in humantime's form (`10s`, `1m30s`, `250ms`) or, as Prefect's settings take
/// them, plain seconds (`10`, `2.5`); refused outside `min..=max`.
pub fn parse_duration_in(text: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let text = text.trim();
    let duration = match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => Duration::from_secs_f64(seconds),
        Ok(_) => return Err(format!("{text:?} is not a duration")),
        Err(_) => humantime::parse_duration(text)
            .map_err(|e| format!("{text:?} is not a duration like 10s, 1m30s or 250ms ({e})"))?,
    };
    if duration < min || duration > max {
        return Err(format!(
            "{text} is out of range: allowed from {} to {}",
            crate::text::show_duration(min),
            crate::text::show_duration(max)
        ));
    }
    Ok(duration)
}

/// A size within `min..=max` (see [`parse_bytes`]).
pub fn parse_bytes_in(text: &str, min: usize, max: usize) -> Result<usize, String> {
    let bytes = parse_bytes(text)?;
    if bytes < min || bytes > max {
        return Err(format!(
            "{} is out of range: allowed from {} to {}",
            text.trim(),
            crate::text::show_bytes(min),
            crate::text::show_bytes(max)
        ));
    }
    Ok(bytes)
}

fn seconds(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn parse_poll_interval(text: &str) -> Result<Duration, String> {
    parse_duration_in(text, Duration::from_millis(100), seconds(3600))
}

fn parse_prefetch(text: &str) -> Result<Duration, String> {
    parse_duration_in(text, Duration::ZERO, seconds(86_400))
}

fn parse_shutdown_grace(text: &str) -> Result<Duration, String> {
    parse_duration_in(text, Duration::ZERO, seconds(3600))
}

fn parse_request_timeout(text: &str) -> Result<Duration, String> {
    parse_duration_in(text, seconds(1), seconds(3600))
}

fn parse_pod_start_timeout(text: &str) -> Result<Duration, String> {
    parse_duration_in(text, seconds(1), seconds(7 * 86_400))
}

fn parse_schedule_timeout(text: &str) -> Result<Duration, String> {
    parse_duration_in(text, seconds(1), seconds(30 * 86_400))
}

/// How long finished Jobs are kept.
fn parse_keep(text: &str) -> Result<Duration, String> {
    parse_duration_in(text, Duration::ZERO, seconds(365 * 86_400))
}

fn parse_keep_resident(text: &str) -> Result<usize, String> {
    parse_bytes_in(text, 0, 4 << 30)
}

fn parse_worker_type(text: &str) -> Result<String, String> {
    if text == "kubernetes" {
        Ok(text.to_string())
    } else {
        Err(format!(
            "this agent is a Kubernetes worker: only `kubernetes` is taken, not {text:?} (run Prefect's own worker for other types)"
        ))
    }
}

/// An http(s) URL with a host: the Prefect API.
pub fn parse_api_url(text: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(text.trim()).map_err(|e| {
        format!("{text:?} is not a URL ({e}); give the API's full address (PREFECT_API_URL or --api-url), like http://prefect:4200/api")
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "{text:?} is not an http(s) URL with a host; give the API's full address (PREFECT_API_URL or --api-url), like http://prefect:4200/api"
        ));
    }
    Ok(text.trim().trim_end_matches('/').to_string())
}

/// `HOST:PORT`, or `http://HOST:PORT` as Prefect 1's agent took it.
fn parse_agent_address(text: &str) -> Result<std::net::SocketAddr, String> {
    let bare = text
        .strip_prefix("http://")
        .unwrap_or(text)
        .trim_end_matches('/');
    bare.parse().map_err(|_| {
        format!("{text:?} is not HOST:PORT with an IP address (like 0.0.0.0:8080 or http://0.0.0.0:8080)")
    })
}

fn parse_heartbeat(text: &str) -> Result<Duration, String> {
    parse_duration_in(text, Duration::from_secs(1), Duration::from_secs(3600))
}

fn parse_orphan_grace(text: &str) -> Result<Duration, String> {
    parse_duration_in(text, Duration::from_secs(1), Duration::from_secs(86_400))
}

fn parse_orphan_interval(text: &str) -> Result<Duration, String> {
    parse_duration_in(text, Duration::from_secs(1), Duration::from_secs(86_400))
}

/// A plugin call's time limit.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    parse_duration_in(text, Duration::from_millis(10), Duration::from_secs(3600))
}

/// A plugin's memory limit: wasm32 memories end at 4 GiB.
pub fn parse_plugin_memory(text: &str) -> Result<usize, String> {
    parse_bytes_in(text, 1 << 20, 4 << 30)
}

/// The largest answer a plugin may give.
pub fn parse_output_limit(text: &str) -> Result<usize, String> {
    parse_bytes_in(text, 1 << 10, 64 << 20)
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

/// Environment variables of earlier releases, and the ones now read for the same setting.
const RENAMED_ENV: &[(&str, &str)] = &[
    ("AGENT_POLL_INTERVAL", "PREFECT_WORKER_QUERY_SECONDS"),
    ("AGENT_PREFETCH", "PREFECT_WORKER_PREFETCH_SECONDS"),
    ("AGENT_LIMIT", "AGENT_SUBMISSION_LIMIT"),
];

/// Reads the earlier names of renamed environment variables when the new ones are unset.
/// Call before any thread starts.
pub fn read_renamed_env() {
    for (old, new) in RENAMED_ENV {
        if std::env::var_os(new).is_none()
            && let Some(value) = std::env::var_os(old)
        {
            // SAFETY: called from `main` before any other thread exists.
            unsafe { std::env::set_var(new, value) };
        }
    }
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
    fn volumes_are_inline_json_or_a_file_and_need_names() {
        let one = parse_volumes(r#"{"name": "data", "emptyDir": {}}"#).unwrap();
        assert_eq!(one.0.len(), 1);
        let file = tempfile::NamedTempFile::with_suffix(".yaml").unwrap();
        std::fs::write(
            file.path(),
            "- name: data\n  mountPath: /data\n- name: cache\n  mountPath: /cache\n",
        )
        .unwrap();
        let mounts = parse_volume_mounts(file.path().to_str().unwrap()).unwrap();
        assert_eq!(mounts.0[1]["mountPath"], "/cache");
        let missing = parse_volume_mounts(r#"[{"name": "data"}]"#).unwrap_err();
        assert!(missing.contains("mountPath"), "{missing}");
        let absent = parse_volumes("no-such-file.yaml").unwrap_err();
        assert!(absent.contains("no-such-file.yaml"), "{absent}");
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
