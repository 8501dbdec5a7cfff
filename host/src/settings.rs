//! From flags to settings: what each command runs with, resolved once from the command line,
//! the environment and the config file (as Kubewarden's policy-server makes a `Config` of its
//! arguments). The parts take these settings and never see clap.

use crate::cli::{
    AgentArgs, NamedList, OutputFormat, PluginArgs, PluginCacheArgs, PluginSetting, RenderArgs,
    StartArgs, parse_bytes,
};
use crate::dispatch::DispatchOptions;
use crate::plugins::{Limits, PluginSpec};
use crate::watch::WatchOptions;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The agent's own defaults for every Job (Prefect 1 agent options).
#[derive(Debug, Clone, Default)]
pub struct JobDefaults {
    pub name: String,
    /// The namespace Jobs go to by default and (with `job_namespaces`) the only ones allowed.
    pub namespace: Option<String>,
    pub job_namespaces: Vec<String>,
    /// The Prefect API URL flow run pods use.
    pub api_url: Option<String>,
    pub api_key_secret: Option<(String, String)>,
    pub api_auth_string_secret: Option<(String, String)>,
    pub service_account_name: Option<String>,
    pub image_pull_secrets: Vec<String>,
    pub env: Vec<(String, String)>,
    pub job_labels: Vec<(String, String)>,
    pub volumes: Vec<Value>,
    pub volume_mounts: Vec<Value>,
    pub no_cloud_logs: bool,
    pub default_image: String,
}

impl JobDefaults {
    pub fn from_args(args: &AgentArgs) -> Self {
        let flatten = |lists: &[NamedList]| lists.iter().flat_map(|l| l.0.clone()).collect();
        JobDefaults {
            name: args.name.clone(),
            namespace: args.namespace.clone(),
            job_namespaces: args.job_namespaces.clone(),
            api_url: args.api_url.clone(),
            api_key_secret: args.api_key_secret.clone(),
            api_auth_string_secret: args.api_auth_string_secret.clone(),
            service_account_name: args.service_account_name.clone(),
            image_pull_secrets: args.image_pull_secrets.clone(),
            env: args.env.clone(),
            job_labels: args.job_labels.clone(),
            volumes: flatten(&args.volumes),
            volume_mounts: flatten(&args.volume_mounts),
            no_cloud_logs: args.no_cloud_logs,
            default_image: args.default_image.clone(),
        }
    }

    /// The namespaces Jobs may go to, the default first; empty: any.
    pub fn namespaces(&self) -> Vec<String> {
        let mut namespaces: Vec<String> = self.namespace.iter().cloned().collect();
        for namespace in &self.job_namespaces {
            if !namespaces.contains(namespace) {
                namespaces.push(namespace.clone());
            }
        }
        namespaces
    }
}

/// Which plugins run, with what settings and limits.
#[derive(Debug, Clone)]
pub struct PluginSettings {
    /// After the stock plugin, in order.
    pub plugins: Vec<PluginSpec>,
    /// `(plugin, key, value)`.
    pub config: Vec<PluginSetting>,
    /// Limits of plugins not named in `limits`.
    pub default_limits: Limits,
    /// `--plugin-limit NAME.LIMIT=VALUE`, checked at start against the loaded plugins.
    pub limits: Vec<PluginSetting>,
    /// Where compiled plugins are kept; `None`: compile on every start.
    pub cache_dir: Option<PathBuf>,
    pub keep_resident: usize,
    /// Plugin calls under way at once at most (sizes the instance pool).
    pub concurrent_calls: u32,
}

/// Where compiled plugins are kept: `--plugin-cache`, else the user's cache dir; `None` with
/// `--no-plugin-cache`.
pub fn plugin_cache_dir(args: &PluginCacheArgs) -> Option<PathBuf> {
    if args.no_plugin_cache {
        return None;
    }
    args.plugin_cache
        .clone()
        .or_else(crate::plugins::default_cache_dir)
}

impl PluginSettings {
    pub fn from_args(args: &PluginArgs) -> Self {
        PluginSettings {
            plugins: args.plugins.clone(),
            config: args.plugin_config.clone(),
            default_limits: Limits {
                timeout: args.plugin_timeout,
                memory_bytes: args.plugin_memory,
                output_bytes: args.plugin_output_limit,
                ..Limits::default()
            },
            limits: args.plugin_limits.clone(),
            cache_dir: plugin_cache_dir(&args.cache),
            keep_resident: args.plugin_keep_resident,
            concurrent_calls: 1,
        }
    }

    /// The limits of plugin `name`: the common ones, then its own `--plugin-limit`s.
    pub fn limits_for(&self, name: &str) -> Result<Limits, String> {
        let mut limits = self.default_limits;
        for setting in self.limits.iter().filter(|s| s.plugin == name) {
            let flag = format!(
                "--plugin-limit {}.{}={}",
                setting.plugin, setting.key, setting.value
            );
            let count = |text: &str| -> Result<usize, String> {
                text.parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{flag}: expected a positive whole number"))
            };
            match setting.key.as_str() {
                "timeout" => {
                    limits.timeout = crate::cli::parse_timeout(&setting.value)
                        .map_err(|e| format!("{flag}: {e}"))?
                }
                "memory" => {
                    limits.memory_bytes = crate::cli::parse_plugin_memory(&setting.value)
                        .map_err(|e| format!("{flag}: {e}"))?
                }
                "output" => {
                    limits.output_bytes =
                        parse_bytes(&setting.value).map_err(|e| format!("{flag}: {e}"))?
                }
                "instances" => limits.instances = count(&setting.value)?,
                "tables" => limits.tables = count(&setting.value)?,
                "table-elements" => limits.table_elements = count(&setting.value)?,
                other => {
                    return Err(format!(
                        "{flag}: unknown limit {other:?}; use timeout, memory, output, instances, tables or table-elements"
                    ));
                }
            }
        }
        Ok(limits)
    }
}

/// The Prefect API the agent talks to, and how.
pub use crate::prefect::ClientOptions as PrefectSettings;

/// The Prefect client's options from the flags and Prefect's settings.
fn prefect_settings(api_url: String, args: &StartArgs) -> Result<PrefectSettings, String> {
    {
        let mut headers = args.api.api_headers.clone();
        if headers.is_empty()
            && let Ok(text) = std::env::var("PREFECT_CLIENT_CUSTOM_HEADERS")
        {
            headers = custom_headers(&text)?;
        }
        Ok(PrefectSettings {
            api_url,
            key: args.key.clone(),
            auth_string: args.auth_string.clone(),
            ca_file: args.api.api_ca_file.clone(),
            insecure_skip_verify: args.api.api_tls_insecure_skip_verify,
            headers,
            request_timeout: args.api.api_request_timeout,
        })
    }
}

/// `PREFECT_CLIENT_CUSTOM_HEADERS`: a JSON object of header names to string values.
fn custom_headers(text: &str) -> Result<Vec<(String, String)>, String> {
    let problem = |detail: String| {
        format!(
            "PREFECT_CLIENT_CUSTOM_HEADERS {detail}; it must be a JSON object of header names to strings, like {{\"X-Team\": \"data\"}}"
        )
    };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| problem(format!("is not JSON ({e})")))?;
    let object = value
        .as_object()
        .ok_or_else(|| problem("is not an object".into()))?;
    object
        .iter()
        .map(|(name, value)| match value.as_str() {
            Some(text) => Ok((name.clone(), text.to_string())),
            None => Err(problem(format!(
                "has a value for {name:?} that is not a string"
            ))),
        })
        .collect()
}

/// `--agent-address` and what the probes look at.
#[derive(Debug, Clone)]
pub struct HealthSettings {
    pub address: Option<SocketAddr>,
    pub unhealthy_after: u32,
    pub heartbeat_file: Option<PathBuf>,
}

/// Everything `agent start` runs with.
#[derive(Debug, Clone)]
pub struct StartSettings {
    pub prefect: PrefectSettings,
    pub pool: String,
    pub create_pool: bool,
    /// A file, URL or object replacing the pool's base job template.
    pub job_template: Option<String>,
    pub dispatch: DispatchOptions,
    pub watch: WatchOptions,
    pub health: HealthSettings,
    pub jobs: JobDefaults,
    pub plugins: PluginSettings,
    pub manage_api_key_secret: bool,
    pub env_secret: bool,
}

impl StartSettings {
    pub fn from_args(args: StartArgs) -> Result<Self, String> {
        let api_url = args.agent.api_url.clone().ok_or(
            "no Prefect API: set PREFECT_API_URL or --api-url (like http://prefect:4200/api)",
        )?;
        if args.key.is_some() && args.agent.api_key_secret.is_none() && !args.no_api_key_for_runs {
            let namespace = args.agent.namespace.as_deref().unwrap_or("default");
            return Err(format!(
                "PREFECT_API_KEY is set, but flow run pods would get no key (Prefect's worker passes it to them). \
                 Put it in a Secret the pods read, and name it:\n  \
                 kubectl -n {namespace} create secret generic prefect-api-key --from-literal=key=\"$PREFECT_API_KEY\"\n  \
                 agent start --api-key-secret prefect-api-key/key …\n\
                 or let the agent keep that Secret in every namespace it serves: --api-key-secret prefect-api-key/key --manage-api-key-secret\n\
                 or, when the pods authenticate some other way: --no-api-key-for-runs"
            ));
        }
        let jobs = JobDefaults::from_args(&args.agent);
        let namespaces = jobs.namespaces();
        let dispatch = DispatchOptions {
            queues: args.queues.clone(),
            poll_interval: args.poll_interval,
            prefetch: args.prefetch,
            limit: args.submission_limit as usize,
            running_limit: args.limit,
            heartbeat_interval: args.heartbeat_interval,
            orphan_grace: args.orphan_grace,
            orphan_interval: args.orphan_interval,
            max_polls: if args.run_once {
                Some(1)
            } else {
                args.max_polls
            },
            dry_run: args.dry_run,
            shutdown_grace: args.shutdown_grace,
            namespaces: namespaces.clone(),
        };
        let watch = WatchOptions {
            agent: args.agent.name.clone(),
            pool: args.pool.clone(),
            namespaces,
            pod_start_timeout: args.watch.pod_start_timeout,
            schedule_timeout: args.watch.schedule_timeout,
            delete_succeeded_after: args.watch.delete_succeeded_after,
            delete_failed_after: args.watch.delete_failed_after,
            pass_interval: args.poll_interval,
            cancel_interval: args.poll_interval,
            log_tail: args.watch.crash_log_lines,
        };
        Ok(StartSettings {
            prefect: prefect_settings(api_url, &args)?,
            pool: args.pool.clone(),
            create_pool: args.create_pool,
            job_template: args.job_template.clone(),
            dispatch,
            watch,
            health: HealthSettings {
                address: args.watch.agent_address.or(if args.watch.with_healthcheck {
                    Some(prefect_webserver_address()?)
                } else {
                    None
                }),
                unhealthy_after: args.watch.unhealthy_after,
                heartbeat_file: args.watch.heartbeat_file.clone(),
            },
            jobs,
            plugins: PluginSettings {
                // Each submission under way runs at most one chain, one call at a time.
                concurrent_calls: args.submission_limit,
                ..PluginSettings::from_args(&args.plugins)
            },
            manage_api_key_secret: args.manage_api_key_secret,
            env_secret: args.env_secret,
        })
    }
}

/// Where Prefect's worker serves its health check: `PREFECT_WORKER_WEBSERVER_HOST` and
/// `_PORT` (0.0.0.0 and 8080 by default).
fn prefect_webserver_address() -> Result<SocketAddr, String> {
    let host = std::env::var("PREFECT_WORKER_WEBSERVER_HOST").unwrap_or_else(|_| "0.0.0.0".into());
    let port = std::env::var("PREFECT_WORKER_WEBSERVER_PORT").unwrap_or_else(|_| "8080".into());
    let host = if host == "localhost" {
        "127.0.0.1".into()
    } else {
        host
    };
    format!("{host}:{port}").parse().map_err(|_| {
        format!(
            "--with-healthcheck: PREFECT_WORKER_WEBSERVER_HOST {host:?} and PREFECT_WORKER_WEBSERVER_PORT {port:?} are not an IP address and a port"
        )
    })
}

/// Everything `agent render` runs with.
#[derive(Debug, Clone)]
pub struct RenderSettings {
    pub flow_run: PathBuf,
    pub template: Option<PathBuf>,
    pub output: OutputFormat,
    pub explain: bool,
    pub prefect_version: Option<String>,
    pub jobs: JobDefaults,
    pub plugins: PluginSettings,
}

impl RenderSettings {
    pub fn from_args(args: RenderArgs) -> Self {
        RenderSettings {
            jobs: JobDefaults::from_args(&args.agent),
            plugins: PluginSettings::from_args(&args.plugins),
            flow_run: args.flow_run,
            template: args.template,
            output: args.output,
            explain: args.explain,
            prefect_version: args.prefect_version,
        }
    }
}
