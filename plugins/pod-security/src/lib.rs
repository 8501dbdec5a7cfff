//! The Kubernetes Pod Security Standards for the Job's pod, before the Job is created (the
//! cluster's admission may or may not check them, and when it does, it refuses the pods, not
//! the Job: the run would hang). Place it last in the chain, so that it sees the final Job.
//!
//! Settings: `level` = `baseline` or `restricted` (default); `mode` = `reject` (default: a Job
//! that breaks a control fails its run, naming every field and control) or `enforce-defaults`
//! (the restricted defaults are set where the Job leaves them unset: `runAsNonRoot`, seccomp
//! `RuntimeDefault`, `allowPrivilegeEscalation: false`, capabilities `drop: [ALL]`; what is
//! still broken after that is rejected); `run-as-user` (with `enforce-defaults`: a non-root
//! user id for pods that name none, since many images, Prefect's among them, run as root).
//!
//! The controls are those of the standard for Kubernetes v1.37
//! (<https://kubernetes.io/docs/concepts/security/pod-security-standards/>), each in its own
//! function below, named as the standard names it.

use agent_plugin_sdk::serde_json::Map;
use agent_plugin_sdk::{Error, Plugin, Request, RequestExt, Value, fault, json, reject};

pub struct PodSecurity;

/// The two checked levels (privileged checks nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Baseline,
    Restricted,
}

/// One field that breaks one control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// `.spec.template.spec.hostNetwork`, as the agent names fields.
    pub path: String,
    /// The control, as the standard names it (`Host Namespaces`).
    pub control: &'static str,
    /// What is wrong and what is allowed.
    pub detail: String,
}

impl Plugin for PodSecurity {
    fn customize(request: &Request, mut job: Value) -> Result<Value, Error> {
        let level = match request.config("level").unwrap_or("restricted") {
            "baseline" => Level::Baseline,
            "restricted" => Level::Restricted,
            other => {
                return Err(fault(format!(
                    "setting `level` is {other:?}; use baseline or restricted"
                )));
            }
        };
        match request.config("mode").unwrap_or("reject") {
            "reject" => {}
            "enforce-defaults" => {
                let user = match request.config("run-as-user") {
                    None => None,
                    Some(text) => {
                        Some(text.parse::<u64>().ok().filter(|u| *u > 0).ok_or_else(|| {
                            fault(format!(
                                "setting `run-as-user` is {text:?}; use a user id above 0"
                            ))
                        })?)
                    }
                };
                if level == Level::Restricted {
                    set_restricted_defaults(&mut job, user);
                }
            }
            other => {
                return Err(fault(format!(
                    "setting `mode` is {other:?}; use reject or enforce-defaults"
                )));
            }
        }
        let violations = check(&job, level);
        if violations.is_empty() {
            return Ok(job);
        }
        let name = match level {
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        };
        let listed: Vec<String> = violations
            .iter()
            .map(|v| format!("{}: {} ({})", v.path, v.detail, v.control))
            .collect();
        Err(reject(format!(
            "the Job breaks the Pod Security Standards ({name}): {}",
            listed.join("; ")
        )))
    }
}

agent_plugin_sdk::export_plugin!(PodSecurity);

const POD: &str = ".spec.template.spec";

/// Every violation of `level` in the Job's pod.
pub fn check(job: &Value, level: Level) -> Vec<Violation> {
    let pod = job.pointer("/spec/template/spec").unwrap_or(&Value::Null);
    let annotations = job
        .pointer("/spec/template/metadata/annotations")
        .unwrap_or(&Value::Null);
    let mut found = Vec::new();
    let baseline: [fn(&Value, &Value, &mut Vec<Violation>); 12] = [
        host_process,
        host_namespaces,
        privileged_containers,
        capabilities_baseline,
        host_path_volumes,
        host_ports,
        host_probes_and_lifecycle_hooks,
        app_armor,
        se_linux,
        proc_mount,
        seccomp_baseline,
        sysctls,
    ];
    for control in baseline {
        control(pod, annotations, &mut found);
    }
    if level == Level::Restricted {
        let restricted: [fn(&Value, &Value, &mut Vec<Violation>); 6] = [
            volume_types,
            privilege_escalation,
            running_as_non_root,
            running_as_non_root_user,
            seccomp_restricted,
            capabilities_restricted,
        ];
        for control in restricted {
            control(pod, annotations, &mut found);
        }
    }
    found
}

/// Containers, init containers and ephemeral containers, with their paths.
fn all_containers(pod: &Value) -> Vec<(String, &Value)> {
    let mut all = Vec::new();
    for kind in ["containers", "initContainers", "ephemeralContainers"] {
        for (index, container) in pod
            .get(kind)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            all.push((format!("{POD}.{kind}[{index}]"), container));
        }
    }
    all
}

fn violation(found: &mut Vec<Violation>, path: String, control: &'static str, detail: &str) {
    found.push(Violation {
        path,
        control,
        detail: detail.to_string(),
    });
}

fn is_true(value: Option<&Value>) -> bool {
    value.and_then(Value::as_bool) == Some(true)
}

fn string_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

// Baseline -----------------------------------------------------------------------------------

fn host_process(pod: &Value, _: &Value, found: &mut Vec<Violation>) {
    const CONTROL: &str = "HostProcess";
    if is_true(pod.pointer("/securityContext/windowsOptions/hostProcess")) {
        violation(
            found,
            format!("{POD}.securityContext.windowsOptions.hostProcess"),
            CONTROL,
            "must be unset or false",
        );
    }
    for (path, container) in all_containers(pod) {
        if is_true(container.pointer("/securityContext/windowsOptions/hostProcess")) {
            violation(
                found,
                format!("{path}.securityContext.windowsOptions.hostProcess"),
                CONTROL,
                "must be unset or false",
            );
        }
    }
}

fn host_namespaces(pod: &Value, _: &Value, found: &mut Vec<Violation>) {
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        if is_true(pod.get(field)) {
            violation(
                found,
                format!("{POD}.{field}"),
                "Host Namespaces",
                "must be unset or false",
            );
        }
    }
}

fn privileged_containers(pod: &Value, _: &Value, found: &mut Vec<Violation>) {
    for (path, container) in all_containers(pod) {
        if is_true(container.pointer("/securityContext/privileged")) {
            violation(
                found,
                format!("{path}.securityContext.privileged"),
                "Privileged Containers",
                "must be unset or false",
            );
        }
    }
}

/// Capabilities a baseline container may add: the container runtimes' defaults.
const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn capabilities_baseline(pod: &Value, _: &Value, found: &mut Vec<Violation>) {
    for (path, container) in all_containers(pod) {
        let added = added_capabilities(container);
        let extra: Vec<&str> = added
            .iter()
            .copied()
            .filter(|c| !BASELINE_CAPABILITIES.contains(c))
            .collect();
        if !extra.is_empty() {
            violation(
                found,
                format!("{path}.securityContext.capabilities.add"),
                "Capabilities",
                &format!(
                    "adds {}; only {} may be added",
                    extra.join(", "),
                    BASELINE_CAPABILITIES.join(", ")
                ),
            );
        }
    }
}

fn added_capabilities(container: &Value) -> Vec<&str> {
    container
        .pointer("/securityContext/capabilities/add")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn host_path_volumes(pod: &Value, _: &Value, found: &mut Vec<Violation>) {
    for (index, volume) in volumes(pod) {
        if volume.get("hostPath").is_some() {
            violation(
                found,
                format!("{POD}.volumes[{index}].hostPath"),
                "HostPath Volumes",
                "hostPath volumes are not allowed",
            );
        }
    }
}

fn volumes(pod: &Value) -> impl Iterator<Item = (usize, &Value)> {
    pod.get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
}

fn host_ports(pod: &Value, _: &Value, found: &mut Vec<Violation>) {
    for (path, container) in all_containers(pod) {
        for (index, port) in container
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if port.get("hostPort").and_then(Value::as_i64).unwrap_or(0) != 0 {
                violation(
                    found,
                    format!("{path}.ports[{index}].hostPort"),
                    "Host Ports",
                    "must be unset or 0",
                );
            }
        }
    }
}

fn host_probes_and_lifecycle_hooks(pod: &Value, _: &Value, found: &mut Vec<Violation>) {
    const HANDLERS: &[&str] = &[
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "lifecycle/postStart",
        "lifecycle/preStop",
    ];
    for (path, container) in all_containers(pod) {
        for handler in HANDLERS {
            for action in ["httpGet", "tcpSocket"] {
                let pointer = format!("/{handler}/{action}/host");
                if string_at(container, &pointer).is_some_and(|h| !h.is_empty()) {
                    violation(
                        found,
                        format!("{path}{}", pointer.replace('/', ".")),
                        "Host Probes / Lifecycle Hooks",
                        "must be unset or empty",
                    );
                }
            }
        }
    }
}

fn app_armor(pod: &Value, annotations: &Value, found: &mut Vec<Violation>) {
    const CONTROL: &str = "AppArmor";
    const DETAIL: &str = "must be unset, RuntimeDefault or Localhost";
    let allowed =
        |profile: Option<&str>| matches!(profile, None | Some("" | "RuntimeDefault" | "Localhost"));
    if !allowed(string_at(pod, "/securityContext/appArmorProfile/type")) {
        violation(
            found,
            format!("{POD}.securityContext.appArmorProfile.type"),
            CONTROL,
            DETAIL,
        );
    }
    for (path, container) in all_containers(pod) {
        if !allowed(string_at(
            container,
            "/securityContext/appArmorProfile/type",
        )) {
            violation(
                found,
                format!("{path}.securityContext.appArmorProfile.type"),
                CONTROL,
                DETAIL,
            );
        }
    }
    for (key, value) in annotations.as_object().into_iter().flatten() {
        let value = value.as_str().unwrap_or_default();
        if key.starts_with("container.apparmor.security.beta.kubernetes.io/")
            && value != "runtime/default"
            && !value.starts_with("localhost/")
        {
            violation(
                found,
                format!(".spec.template.metadata.annotations.{key}"),
                CONTROL,
                "must be runtime/default or localhost/*",
            );
        }
    }
}

fn se_linux(pod: &Value, _: &Value, found: &mut Vec<Violation>) {
    const TYPES: &[&str] = &[
        "",
        "container_t",
        "container_init_t",
        "container_kvm_t",
        "container_engine_t",
    ];
    let mut check = |path: String, options: Option<&Value>| {
        let Some(options) = options else { return };
        if let Some(kind) = options.get("type").and_then(Value::as_str)
            && !TYPES.contains(&kind)
        {
            violation(
                found,
                format!("{path}.type"),
                "SELinux",
                "must be unset, container_t, container_init_t, container_kvm_t or container_engine_t",
            );
        }
        for field in ["user", "role"] {
            if options
                .get(field)
                .and_then(Value::as_str)
                .is_some_and(|v| !v.is_empty())
            {
                violation(found, format!("{path}.{field}"), "SELinux", "must be unset");
            }
        }
    };
    check(
        format!("{POD}.securityContext.seLinuxOptions"),
        pod.pointer("/securityContext/seLinuxOptions"),
    );
    for (path, container) in all_containers(pod) {
        check(
            format!("{path}.securityContext.seLinuxOptions"),
            container.pointer("/securityContext/seLinuxOptions"),
        );
    }
}

fn proc_mount(pod: &Value, _: &Value, found: &mut Vec<Violation>) {
    for (path, container) in all_containers(pod) {
        if string_at(container, "/securityContext/procMount").is_some_and(|m| m != "Default") {
            violation(
                found,
                format!("{path}.securityContext.procMount"),
                "/proc Mount Type",
                "must be unset or Default",
            );
        }
    }
}

fn seccomp_baseline(pod: &Value, _: &Value, found: &mut Vec<Violation>) {
    const DETAIL: &str = "must not be Unconfined";
    if string_at(pod, "/securityContext/seccompProfile/type") == Some("Unconfined") {
        violation(
            found,
            format!("{POD}.securityContext.seccompProfile.type"),
            "Seccomp",
            DETAIL,
        );
    }
    for (path, container) in all_containers(pod) {
        if string_at(container, "/securityContext/seccompProfile/type") == Some("Unconfined") {
            violation(
                found,
                format!("{path}.securityContext.seccompProfile.type"),
                "Seccomp",
                DETAIL,
            );
        }
    }
}

/// Sysctls namespaced to the pod and isolated from other pods.
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

fn sysctls(pod: &Value, _: &Value, found: &mut Vec<Violation>) {
    for (index, sysctl) in pod
        .pointer("/securityContext/sysctls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = sysctl.get("name").and_then(Value::as_str).unwrap_or("");
        if !SAFE_SYSCTLS.contains(&name) {
            violation(
                found,
                format!("{POD}.securityContext.sysctls[{index}].name"),
                "Sysctls",
                &format!("{name} is not one of the safe sysctls"),
            );
        }
    }
}

// Restricted ---------------------------------------------------------------------------------

const VOLUME_TYPES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

fn volume_types(pod: &Value, _: &Value, found: &mut Vec<Violation>) {
    for (index, volume) in volumes(pod) {
        for kind in volume.as_object().into_iter().flatten().map(|(k, _)| k) {
            if kind != "name" && kind != "hostPath" && !VOLUME_TYPES.contains(&kind.as_str()) {
                violation(
                    found,
                    format!("{POD}.volumes[{index}].{kind}"),
                    "Volume Types",
                    &format!(
                        "{kind} volumes are not allowed; use {}",
                        VOLUME_TYPES.join(", ")
                    ),
                );
            }
        }
    }
}

fn privilege_escalation(pod: &Value, _: &Value, found: &mut Vec<Violation>) {
    for (path, container) in all_containers(pod) {
        if container
            .pointer("/securityContext/allowPrivilegeEscalation")
            .and_then(Value::as_bool)
            != Some(false)
        {
            violation(
                found,
                format!("{path}.securityContext.allowPrivilegeEscalation"),
                "Privilege Escalation",
                "must be false",
            );
        }
    }
}

fn running_as_non_root(pod: &Value, _: &Value, found: &mut Vec<Violation>) {
    let pod_level = pod
        .pointer("/securityContext/runAsNonRoot")
        .and_then(Value::as_bool);
    if pod_level == Some(false) {
        violation(
            found,
            format!("{POD}.securityContext.runAsNonRoot"),
            "Running as Non-root",
            "must be true",
        );
    }
    for (path, container) in all_containers(pod) {
        let own = container
            .pointer("/securityContext/runAsNonRoot")
            .and_then(Value::as_bool);
        // Unset here and on the pod (a pod that says false is reported once, above).
        let unset_everywhere = own.is_none() && pod_level.is_none();
        if own == Some(false) || unset_everywhere {
            violation(
                found,
                format!("{path}.securityContext.runAsNonRoot"),
                "Running as Non-root",
                "must be true (here or in the pod's securityContext)",
            );
        }
    }
}

fn running_as_non_root_user(pod: &Value, _: &Value, found: &mut Vec<Violation>) {
    let mut check = |path: String, user: Option<&Value>| {
        if user.and_then(Value::as_u64) == Some(0) {
            violation(found, path, "Running as Non-root user", "must not be 0");
        }
    };
    check(
        format!("{POD}.securityContext.runAsUser"),
        pod.pointer("/securityContext/runAsUser"),
    );
    for (path, container) in all_containers(pod) {
        check(
            format!("{path}.securityContext.runAsUser"),
            container.pointer("/securityContext/runAsUser"),
        );
    }
}

fn seccomp_restricted(pod: &Value, _: &Value, found: &mut Vec<Violation>) {
    let allowed = |profile: Option<&str>| matches!(profile, Some("RuntimeDefault" | "Localhost"));
    let pod_profile = string_at(pod, "/securityContext/seccompProfile/type");
    for (path, container) in all_containers(pod) {
        let own = string_at(container, "/securityContext/seccompProfile/type");
        // Unconfined is the baseline control's; here: set, at one of the two levels.
        if own.is_none() && !allowed(pod_profile) {
            violation(
                found,
                format!("{path}.securityContext.seccompProfile.type"),
                "Seccomp",
                "must be RuntimeDefault or Localhost (here or in the pod's securityContext)",
            );
        }
    }
}

fn capabilities_restricted(pod: &Value, _: &Value, found: &mut Vec<Violation>) {
    for (path, container) in all_containers(pod) {
        let drops_all = container
            .pointer("/securityContext/capabilities/drop")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|c| c == "ALL"));
        if !drops_all {
            violation(
                found,
                format!("{path}.securityContext.capabilities.drop"),
                "Capabilities",
                "must include ALL",
            );
        }
        // Those past the baseline list are that control's already.
        let extra: Vec<&str> = added_capabilities(container)
            .into_iter()
            .filter(|c| *c != "NET_BIND_SERVICE" && BASELINE_CAPABILITIES.contains(c))
            .collect();
        if !extra.is_empty() {
            violation(
                found,
                format!("{path}.securityContext.capabilities.add"),
                "Capabilities",
                &format!(
                    "adds {}; only NET_BIND_SERVICE may be added",
                    extra.join(", ")
                ),
            );
        }
    }
}

// Restricted defaults ------------------------------------------------------------------------

/// Sets what the restricted level requires where the Job leaves it unset; a value the Job
/// sets is never changed (it is checked afterwards).
fn set_restricted_defaults(job: &mut Value, user: Option<u64>) {
    let Some(pod) = job
        .pointer_mut("/spec/template/spec")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let context = object(pod, "securityContext");
    context.entry("runAsNonRoot").or_insert(json!(true));
    if let Some(user) = user {
        context.entry("runAsUser").or_insert(json!(user));
    }
    context
        .entry("seccompProfile")
        .or_insert(json!({"type": "RuntimeDefault"}));
    for kind in ["containers", "initContainers", "ephemeralContainers"] {
        let Some(containers) = pod.get_mut(kind).and_then(Value::as_array_mut) else {
            continue;
        };
        for container in containers.iter_mut().filter_map(Value::as_object_mut) {
            let context = object(container, "securityContext");
            context
                .entry("allowPrivilegeEscalation")
                .or_insert(json!(false));
            let capabilities = object(context, "capabilities");
            if !capabilities.contains_key("drop") {
                capabilities.insert("drop".into(), json!(["ALL"]));
            }
        }
    }
}

/// The object at `key` of `map`, made when missing (or not an object).
fn object<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let entry = map.entry(key).or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    entry.as_object_mut().expect("made an object above")
}

#[cfg(test)]
mod tests;
