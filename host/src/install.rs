//! `agent install`: the manifests that run the agent in a cluster, printed for
//! `kubectl apply -f -`: a Deployment, and with `--rbac` the ServiceAccount and the least
//! privilege the agent needs, in the namespaces its Jobs go to.
//!
//! Nothing secret is printed: the Prefect API key is read from a Secret (`--api-key-secret`);
//! an inline key is refused unless `--insecure-inline-key` says the operator means it.

use crate::cli::InstallArgs;
use anyhow::{Context, bail};
use base64::Engine;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// Where plugins, the config file and the download cache live in the agent's pod.
const PLUGIN_DIR: &str = "/etc/agent/plugins";
const CONFIG_DIR: &str = "/etc/agent/config";
const CACHE_DIR: &str = "/var/cache/agent";
/// A ConfigMap holds at most 1 MiB; larger plugins need a volume or a URL.
const CONFIGMAP_LIMIT: usize = 1 << 20;

/// The rules the agent needs where its Jobs run: create and follow Jobs, read their pods, logs
/// and Events. Nothing else: no secrets, no cluster-wide access.
/// With `managed_secret`, also what `--manage-api-key-secret` needs: creating that Secret,
/// and reading and updating it (and no other) by name. With `env_secrets`, what
/// `--env-secret` needs: creating each Job's Secret, reading one found under its name (a
/// retried submission), making the Job its owner, deleting it when the Job was refused.
pub fn rules(managed_secret: Option<&str>, env_secrets: bool) -> Value {
    let mut rules = json!([
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "watch", "delete"]},
        {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
    ]);
    if let Some(name) = managed_secret {
        let list = rules.as_array_mut().expect("a list");
        list.push(json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}));
        list.push(json!({"apiGroups": [""], "resources": ["secrets"], "resourceNames": [name], "verbs": ["get", "update"]}));
    }
    if env_secrets {
        let list = rules.as_array_mut().expect("a list");
        list.push(json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "get", "patch", "delete"]}));
    }
    rules
}

pub fn main(args: InstallArgs) -> ExitCode {
    match manifests(&args) {
        Ok(documents) => {
            let text: String = documents
                .iter()
                .map(|d| format!("---\n{}", crate::yaml::to_string(d)))
                .collect();
            match std::io::stdout().write_all(text.as_bytes()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: writing the manifests: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(error) => {
            eprintln!("error: {}", crate::text::error_chain(&error));
            ExitCode::from(2)
        }
    }
}

/// Every object to apply, in an order `kubectl apply` can create them in.
pub fn manifests(args: &InstallArgs) -> anyhow::Result<Vec<Value>> {
    let key = key_source(args)?;
    let job_namespaces = job_namespaces(args);
    let account = args
        .service_account_name
        .clone()
        .unwrap_or_else(|| args.name.clone());
    let plugins = plugin_sources(args)?;
    let mut documents = Vec::new();
    if args.rbac {
        documents.extend(rbac(args, &account, &job_namespaces));
    }
    if let KeySource::Inline(secret) = &key {
        documents.push(secret.clone());
    }
    documents.extend(plugins.config_maps.iter().cloned());
    if let Some(path) = &args.config {
        documents.push(config_map_of_file(args, path)?);
    }
    documents.push(deployment(args, &account, &job_namespaces, &key, &plugins));
    Ok(documents)
}

/// The Secret the agent keeps up to date, with --manage-api-key-secret.
fn managed_secret(args: &InstallArgs) -> Option<&str> {
    args.manage_api_key_secret
        .then_some(args.api_key_secret.as_ref())
        .flatten()
        .map(|(name, _)| name.as_str())
}

fn job_namespaces(args: &InstallArgs) -> Vec<String> {
    if args.job_namespaces.is_empty() {
        vec![args.namespace.clone()]
    } else {
        args.job_namespaces.clone()
    }
}

fn labels(args: &InstallArgs) -> Value {
    json!({"app.kubernetes.io/name": "prefect-agent", "app.kubernetes.io/instance": args.name})
}

fn metadata(args: &InstallArgs, name: &str, namespace: Option<&str>) -> Value {
    let mut metadata = json!({"name": name, "labels": labels(args)});
    if let Some(namespace) = namespace {
        metadata["namespace"] = json!(namespace);
    }
    metadata
}

/// One namespace: a Role and its RoleBinding there. Several: one ClusterRole holding the
/// rules, bound by a RoleBinding in each namespace, so access stays per namespace.
fn rbac(args: &InstallArgs, account: &str, job_namespaces: &[String]) -> Vec<Value> {
    let role_name = format!("{}-jobs", args.name);
    let subject = json!([{"kind": "ServiceAccount", "name": account, "namespace": args.namespace}]);
    let mut documents = vec![json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(args, account, Some(&args.namespace)),
    })];
    let several = job_namespaces.len() > 1;
    if several {
        documents.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": metadata(args, &role_name, None),
            "rules": rules(managed_secret(args), args.env_secret),
        }));
    }
    for namespace in job_namespaces {
        if !several {
            documents.push(json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": metadata(args, &role_name, Some(namespace)),
                "rules": rules(managed_secret(args), args.env_secret),
            }));
        }
        documents.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": metadata(args, &role_name, Some(namespace)),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": if several { "ClusterRole" } else { "Role" },
                "name": role_name,
            },
            "subjects": subject,
        }));
    }
    documents
}

enum KeySource {
    /// No key (a server without auth).
    None,
    /// `Secret NAME`, key `KEY`.
    Secret(String, String),
    /// A Secret printed with the manifests (`--insecure-inline-key`).
    Inline(Value),
}

fn key_source(args: &InstallArgs) -> anyhow::Result<KeySource> {
    if args.manage_api_key_secret && args.api_key_secret.is_none() {
        bail!(
            "--manage-api-key-secret needs --api-key-secret NAME[/KEY]: the Secret to copy the key into in each job namespace"
        );
    }
    match (&args.api_key_secret, &args.key) {
        (Some(_), Some(_)) => {
            bail!("give the API key either as --api-key-secret or as --key, not both")
        }
        (Some((name, key)), None) => Ok(KeySource::Secret(name.clone(), key.clone())),
        (None, Some(_)) if !args.insecure_inline_key => bail!(
            "--key would put the Prefect API key in the manifests in plain text. Create a Secret instead and name it:\n  kubectl -n {ns} create secret generic prefect-api-key --from-literal=key=\"$PREFECT_API_KEY\"\n  agent install --api-key-secret prefect-api-key/key …\n(or pass --insecure-inline-key to print it anyway)",
            ns = args.namespace
        ),
        (None, Some(key)) => {
            let name = format!("{}-api-key", args.name);
            let secret = json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": metadata(args, &name, Some(&args.namespace)),
                "type": "Opaque",
                "stringData": {"key": key},
            });
            Ok(KeySource::Inline(secret))
        }
        (None, None) => Ok(KeySource::None),
    }
}

/// Where each `--plugin` comes from in the pod, and the ConfigMaps made from local files.
#[derive(Default)]
struct PluginSources {
    /// `--plugin` values for `agent start`.
    specs: Vec<String>,
    config_maps: Vec<Value>,
    volumes: Vec<Value>,
    mounts: Vec<Value>,
}

/// `--plugin` forms: a local FILE (put in a ConfigMap), `configmap:CM/KEY` (an existing
/// ConfigMap), `volume:CLAIM/PATH` (a PersistentVolumeClaim), or an http(s) URL with
/// `#sha256=` (fetched at start into the pod's cache). Each may start with `NAME=` and end
/// with `#sha256=HEX`.
fn plugin_sources(args: &InstallArgs) -> anyhow::Result<PluginSources> {
    let mut sources = PluginSources::default();
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    let mut mounted: Vec<String> = Vec::new();
    for (index, given) in args.plugins.iter().enumerate() {
        let (body, pin) = match given.rsplit_once("#sha256=") {
            Some((body, pin)) => (body, Some(pin)),
            None => (given.as_str(), None),
        };
        let (name, location) = match body.split_once('=') {
            Some((name, location)) if !name.contains('/') && !name.contains(':') => {
                (Some(name), location)
            }
            _ => (None, body),
        };
        let with_name = |path: String| {
            let mut spec = match name {
                Some(name) => format!("{name}={path}"),
                None => path,
            };
            if let Some(pin) = pin {
                spec.push_str(&format!("#sha256={pin}"));
            }
            spec
        };
        let spec = if crate::http::is_url(location) {
            if pin.is_none() {
                bail!(
                    "--plugin {given}: a plugin fetched from a URL must be pinned with #sha256=HEX"
                );
            }
            with_name(location.to_string())
        } else if let Some(reference) = location.strip_prefix("configmap:") {
            let (map, key) = split_reference(given, reference)?;
            mount_once(
                &mut sources,
                &mut mounted,
                map,
                json!({"configMap": {"name": map}}),
            );
            with_name(format!("{PLUGIN_DIR}/{map}/{key}"))
        } else if let Some(reference) = location.strip_prefix("volume:") {
            let (claim, path) = split_reference(given, reference)?;
            mount_once(
                &mut sources,
                &mut mounted,
                claim,
                json!({"persistentVolumeClaim": {"claimName": claim, "readOnly": true}}),
            );
            with_name(format!("{PLUGIN_DIR}/{claim}/{path}"))
        } else {
            let bytes = std::fs::read(location)
                .with_context(|| format!("--plugin {given}: cannot read {location}"))?;
            let file_name = Path::new(location)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| format!("plugin-{index}.wasm"));
            files.insert(
                file_name.clone(),
                base64::engine::general_purpose::STANDARD.encode(&bytes),
            );
            with_name(format!(
                "{PLUGIN_DIR}/{}/{file_name}",
                plugin_map_name(args)
            ))
        };
        sources.specs.push(spec);
    }
    if !files.is_empty() {
        let size: usize = files.values().map(String::len).sum();
        if size > CONFIGMAP_LIMIT {
            bail!(
                "the plugins given as files take {} KiB encoded, more than a ConfigMap holds (1 MiB); ship the large ones on a volume (--plugin volume:CLAIM/PATH) or from a URL (--plugin https://…#sha256=…)",
                size / 1024
            );
        }
        let map = plugin_map_name(args);
        sources.config_maps.push(json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata(args, &map, Some(&args.namespace)),
            "binaryData": files,
        }));
        mount_once(
            &mut sources,
            &mut mounted,
            &map,
            json!({"configMap": {"name": map}}),
        );
    }
    Ok(sources)
}

fn plugin_map_name(args: &InstallArgs) -> String {
    format!("{}-plugins", args.name)
}

fn split_reference<'a>(given: &str, reference: &'a str) -> anyhow::Result<(&'a str, &'a str)> {
    match reference.split_once('/') {
        Some((holder, path)) if !holder.is_empty() && !path.is_empty() => Ok((holder, path)),
        _ => bail!("--plugin {given}: expected configmap:NAME/KEY or volume:CLAIM/PATH"),
    }
}

/// Mounts `source` at PLUGIN_DIR/`holder` once, however many plugins it holds.
fn mount_once(sources: &mut PluginSources, mounted: &mut Vec<String>, holder: &str, source: Value) {
    if mounted.iter().any(|m| m == holder) {
        return;
    }
    mounted.push(holder.to_string());
    let volume = format!("plugins-{}", mounted.len());
    let mut entry = json!({"name": volume});
    for (key, value) in source.as_object().expect("a volume source object") {
        entry[key] = value.clone();
    }
    sources.volumes.push(entry);
    sources.mounts.push(json!({
        "name": volume,
        "mountPath": format!("{PLUGIN_DIR}/{holder}"),
        "readOnly": true,
    }));
}

fn config_map_of_file(args: &InstallArgs, path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--config {}: cannot read it", path.display()))?;
    text.parse::<toml::Table>()
        .with_context(|| format!("--config {}: not valid TOML", path.display()))?;
    Ok(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(args, &format!("{}-config", args.name), Some(&args.namespace)),
        "data": {"agent.toml": text},
    }))
}

fn deployment(
    args: &InstallArgs,
    account: &str,
    job_namespaces: &[String],
    key: &KeySource,
    plugins: &PluginSources,
) -> Value {
    let mut env = vec![
        json!({"name": "PREFECT_API_URL", "value": args.api_url}),
        json!({"name": "PREFECT_WORK_POOL_NAME", "value": args.pool}),
        json!({"name": "AGENT_NAME", "value": args.name}),
        json!({"name": "AGENT_NAMESPACE", "value": job_namespaces[0]}),
        json!({"name": "AGENT_ADDRESS", "value": format!("0.0.0.0:{}", args.health_port)}),
        json!({"name": "AGENT_PLUGIN_CACHE", "value": CACHE_DIR}),
        json!({"name": "AGENT_LOG_FORMAT", "value": "json"}),
    ];
    if job_namespaces.len() > 1 {
        env.push(json!({"name": "AGENT_JOB_NAMESPACES", "value": job_namespaces[1..].join(",")}));
    }
    let secret = match key {
        KeySource::None => None,
        KeySource::Secret(name, key) => Some((name.clone(), key.clone())),
        KeySource::Inline(secret) => Some((
            secret["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            "key".to_string(),
        )),
    };
    if let Some((name, key)) = &secret {
        env.push(json!({"name": "PREFECT_API_KEY", "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}));
        // Flow run pods read the key from a Secret of the same name in their namespace.
        env.push(json!({"name": "AGENT_API_KEY_SECRET", "value": format!("{name}/{key}")}));
    }
    if managed_secret(args).is_some() {
        env.push(json!({"name": "AGENT_MANAGE_API_KEY_SECRET", "value": "true"}));
    }
    if let Some((name, key)) = &args.api_auth_string_secret {
        env.push(json!({"name": "PREFECT_API_AUTH_STRING", "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}));
        // Flow run pods read it from a Secret of the same name in their namespace.
        env.push(json!({"name": "AGENT_API_AUTH_STRING_SECRET", "value": format!("{name}/{key}")}));
    }
    if args.env_secret {
        env.push(json!({"name": "AGENT_ENV_SECRET", "value": "true"}));
    }
    let mut volumes = vec![json!({"name": "cache", "emptyDir": {}})];
    let mut mounts = vec![json!({"name": "cache", "mountPath": CACHE_DIR})];
    volumes.extend(plugins.volumes.iter().cloned());
    mounts.extend(plugins.mounts.iter().cloned());
    if args.config.is_some() {
        volumes.push(
            json!({"name": "config", "configMap": {"name": format!("{}-config", args.name)}}),
        );
        mounts.push(json!({"name": "config", "mountPath": CONFIG_DIR, "readOnly": true}));
        env.push(json!({"name": "AGENT_CONFIG", "value": format!("{CONFIG_DIR}/agent.toml")}));
    }
    let mut command_args = vec![json!("start")];
    for queue in &args.queues {
        command_args.extend([json!("--queue"), json!(queue)]);
    }
    for spec in &plugins.specs {
        command_args.extend([json!("--plugin"), json!(spec)]);
    }
    for setting in &args.plugin_config {
        command_args.extend([json!("--plugin-config"), json!(setting)]);
    }
    let probe = |path: &str, period: u32| json!({"httpGet": {"path": path, "port": "health"}, "periodSeconds": period, "failureThreshold": 3});
    let mut resources =
        json!({"requests": {"cpu": args.cpu_request, "memory": args.memory_request}});
    if let Some(cpu) = &args.cpu_limit {
        resources["limits"]["cpu"] = json!(cpu);
    }
    if let Some(memory) = &args.memory_limit {
        resources["limits"]["memory"] = json!(memory);
    }
    let mut pod = json!({
        "serviceAccountName": account,
        "containers": [{
            "name": "agent",
            "image": args.image,
            "imagePullPolicy": args.image_pull_policy,
            "args": command_args,
            "env": env,
            "ports": [{"name": "health", "containerPort": args.health_port}],
            "livenessProbe": probe("/healthz", 30),
            "readinessProbe": probe("/readyz", 10),
            "resources": resources,
            "volumeMounts": mounts,
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true,
                "runAsNonRoot": true,
                "capabilities": {"drop": ["ALL"]},
            },
        }],
        "volumes": volumes,
    });
    if !args.image_pull_secrets.is_empty() {
        pod["imagePullSecrets"] = args
            .image_pull_secrets
            .iter()
            .map(|name| json!({"name": name}))
            .collect();
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(args, &args.name, Some(&args.namespace)),
        "spec": {
            "replicas": args.replicas,
            "selector": {"matchLabels": labels(args)},
            "template": {
                "metadata": {"labels": labels(args)},
                "spec": pod,
            },
        },
    })
}
