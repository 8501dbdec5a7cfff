//! Every control of the standard, at each level: a pod that breaks it (and only it) is refused
//! at the levels that hold the control and accepted at the others; the allowed values pass.

use super::*;
use agent_plugin_sdk::job::merge_patch;
use agent_plugin_sdk::testing;

/// A pod that meets the restricted level.
fn restricted_pod() -> Value {
    json!({
        "restartPolicy": "Never",
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "prefect-job", "image": "prefecthq/prefect:3-latest",
            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
        }]
    })
}

/// The Job of `restricted_pod()` changed by the merge patch `pod` (and pod `annotations`).
fn job_with(pod: Value, annotations: Value) -> Value {
    let mut spec = restricted_pod();
    merge_patch(&mut spec, &pod);
    json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "etl-abc"},
        "spec": {"template": {"metadata": {"annotations": annotations}, "spec": spec}}
    })
}

fn controls(job: &Value, level: Level) -> Vec<(String, &'static str)> {
    check(job, level)
        .into_iter()
        .map(|v| (v.path, v.control))
        .collect()
}

const C0: &str = ".spec.template.spec.containers[0]";
const POD_CONTEXT: &str = ".spec.template.spec.securityContext";

/// `(what, pod patch, the one field it breaks and its control, the lowest level that holds it)`.
fn breaking_cases() -> Vec<(&'static str, Value, String, &'static str, Level)> {
    let container = |context: Value| json!({"containers": [{"name": "prefect-job", "image": "i", "securityContext": context}]});
    let restricted_context = |extra: Value| {
        let mut context =
            json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}});
        merge_patch(&mut context, &extra);
        container(context)
    };
    vec![
        (
            "HostProcess on the pod",
            json!({"securityContext": {"windowsOptions": {"hostProcess": true}}}),
            format!("{POD_CONTEXT}.windowsOptions.hostProcess"),
            "HostProcess",
            Level::Baseline,
        ),
        (
            "HostProcess in a container",
            restricted_context(json!({"windowsOptions": {"hostProcess": true}})),
            format!("{C0}.securityContext.windowsOptions.hostProcess"),
            "HostProcess",
            Level::Baseline,
        ),
        (
            "host network",
            json!({"hostNetwork": true}),
            ".spec.template.spec.hostNetwork".into(),
            "Host Namespaces",
            Level::Baseline,
        ),
        (
            "host PID",
            json!({"hostPID": true}),
            ".spec.template.spec.hostPID".into(),
            "Host Namespaces",
            Level::Baseline,
        ),
        (
            "host IPC",
            json!({"hostIPC": true}),
            ".spec.template.spec.hostIPC".into(),
            "Host Namespaces",
            Level::Baseline,
        ),
        (
            "privileged",
            restricted_context(json!({"privileged": true})),
            format!("{C0}.securityContext.privileged"),
            "Privileged Containers",
            Level::Baseline,
        ),
        (
            "SYS_ADMIN added",
            json!({"containers": [{"name": "prefect-job", "image": "i", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE", "SYS_ADMIN"]}}}]}),
            format!("{C0}.securityContext.capabilities.add"),
            "Capabilities",
            Level::Baseline,
        ),
        (
            "hostPath /",
            json!({"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}),
            ".spec.template.spec.volumes[0].hostPath".into(),
            "HostPath Volumes",
            Level::Baseline,
        ),
        (
            "host port",
            json!({"containers": [{"name": "prefect-job", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080}], "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}),
            format!("{C0}.ports[0].hostPort"),
            "Host Ports",
            Level::Baseline,
        ),
        (
            "probe on another host",
            json!({"containers": [{"name": "prefect-job", "image": "i", "livenessProbe": {"httpGet": {"host": "10.0.0.1", "port": 80}}, "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}),
            format!("{C0}.livenessProbe.httpGet.host"),
            "Host Probes / Lifecycle Hooks",
            Level::Baseline,
        ),
        (
            "lifecycle hook on another host",
            json!({"containers": [{"name": "prefect-job", "image": "i", "lifecycle": {"preStop": {"tcpSocket": {"host": "db", "port": 5432}}}, "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}),
            format!("{C0}.lifecycle.preStop.tcpSocket.host"),
            "Host Probes / Lifecycle Hooks",
            Level::Baseline,
        ),
        (
            "AppArmor unconfined",
            json!({"securityContext": {"appArmorProfile": {"type": "Unconfined"}}}),
            format!("{POD_CONTEXT}.appArmorProfile.type"),
            "AppArmor",
            Level::Baseline,
        ),
        (
            "SELinux type",
            json!({"securityContext": {"seLinuxOptions": {"type": "spc_t"}}}),
            format!("{POD_CONTEXT}.seLinuxOptions.type"),
            "SELinux",
            Level::Baseline,
        ),
        (
            "SELinux user",
            restricted_context(json!({"seLinuxOptions": {"user": "system_u"}})),
            format!("{C0}.securityContext.seLinuxOptions.user"),
            "SELinux",
            Level::Baseline,
        ),
        (
            "unmasked /proc",
            restricted_context(json!({"procMount": "Unmasked"})),
            format!("{C0}.securityContext.procMount"),
            "/proc Mount Type",
            Level::Baseline,
        ),
        (
            "seccomp unconfined",
            restricted_context(json!({"seccompProfile": {"type": "Unconfined"}})),
            format!("{C0}.securityContext.seccompProfile.type"),
            "Seccomp",
            Level::Baseline,
        ),
        (
            "unsafe sysctl",
            json!({"securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}}),
            format!("{POD_CONTEXT}.sysctls[0].name"),
            "Sysctls",
            Level::Baseline,
        ),
        (
            "NFS volume",
            json!({"volumes": [{"name": "data", "nfs": {"server": "nfs", "path": "/"}}]}),
            ".spec.template.spec.volumes[0].nfs".into(),
            "Volume Types",
            Level::Restricted,
        ),
        (
            "privilege escalation",
            restricted_context(json!({"allowPrivilegeEscalation": true})),
            format!("{C0}.securityContext.allowPrivilegeEscalation"),
            "Privilege Escalation",
            Level::Restricted,
        ),
        (
            "runAsNonRoot false",
            json!({"securityContext": {"runAsNonRoot": false}}),
            format!("{POD_CONTEXT}.runAsNonRoot"),
            "Running as Non-root",
            Level::Restricted,
        ),
        (
            "runAsUser 0",
            json!({"securityContext": {"runAsUser": 0}}),
            format!("{POD_CONTEXT}.runAsUser"),
            "Running as Non-root user",
            Level::Restricted,
        ),
        (
            "no seccomp profile",
            json!({"securityContext": {"seccompProfile": null}}),
            format!("{C0}.securityContext.seccompProfile.type"),
            "Seccomp",
            Level::Restricted,
        ),
        (
            "CHOWN added",
            json!({"containers": [{"name": "prefect-job", "image": "i", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}}}]}),
            format!("{C0}.securityContext.capabilities.add"),
            "Capabilities",
            Level::Restricted,
        ),
        (
            "capabilities not dropped",
            json!({"containers": [{"name": "prefect-job", "image": "i", "securityContext": {"allowPrivilegeEscalation": false}}]}),
            format!("{C0}.securityContext.capabilities.drop"),
            "Capabilities",
            Level::Restricted,
        ),
    ]
}

#[test]
fn each_control_refuses_its_field_at_the_levels_that_hold_it() {
    assert!(controls(&job_with(json!({}), json!({})), Level::Restricted).is_empty());
    for (what, patch, path, control, lowest) in breaking_cases() {
        let job = job_with(patch, json!({}));
        for level in [Level::Baseline, Level::Restricted] {
            let found = controls(&job, level);
            if level >= lowest {
                assert_eq!(found, [(path.clone(), control)], "{what} at {level:?}");
            } else {
                assert_eq!(found, [], "{what} is allowed at {level:?}");
            }
        }
    }
}

#[test]
fn the_allowed_values_pass() {
    let allowed = [
        json!({"hostNetwork": false, "hostPID": false, "hostIPC": false}),
        json!({"securityContext": {"appArmorProfile": {"type": "RuntimeDefault"}, "seLinuxOptions": {"type": "container_init_t", "level": "s0:c1,c2"},
               "sysctls": [{"name": "net.ipv4.tcp_keepalive_time", "value": "60"}], "runAsUser": 1000, "seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}}}),
        json!({"volumes": [{"name": "a", "emptyDir": {}}, {"name": "b", "secret": {"secretName": "s"}}, {"name": "c", "persistentVolumeClaim": {"claimName": "c"}},
                           {"name": "d", "configMap": {"name": "m"}}, {"name": "e", "projected": {"sources": []}}, {"name": "f", "downwardAPI": {}}, {"name": "g", "csi": {"driver": "x"}}, {"name": "h", "ephemeral": {}}]}),
        json!({"containers": [{"name": "prefect-job", "image": "i", "ports": [{"containerPort": 80, "hostPort": 0}],
               "securityContext": {"allowPrivilegeEscalation": false, "procMount": "Default", "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}]}),
    ];
    for patch in allowed {
        let job = job_with(patch.clone(), json!({}));
        assert_eq!(controls(&job, Level::Restricted), [], "{patch}");
    }
    // Annotations: AppArmor's old form.
    let job = job_with(
        json!({}),
        json!({"container.apparmor.security.beta.kubernetes.io/prefect-job": "runtime/default"}),
    );
    assert_eq!(controls(&job, Level::Baseline), []);
    let job = job_with(
        json!({}),
        json!({"container.apparmor.security.beta.kubernetes.io/prefect-job": "unconfined"}),
    );
    assert_eq!(
        controls(&job, Level::Baseline),
        [(".spec.template.metadata.annotations.container.apparmor.security.beta.kubernetes.io/prefect-job".to_string(), "AppArmor")]
    );
}

#[test]
fn prefects_stock_job_meets_baseline_and_breaks_restricted_on_four_counts() {
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "prefect-job", "image": "prefecthq/prefect:3-latest"}]}}}});
    assert_eq!(controls(&job, Level::Baseline), []);
    let restricted: Vec<&str> = controls(&job, Level::Restricted)
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    assert_eq!(
        restricted,
        [
            "Privilege Escalation",
            "Running as Non-root",
            "Seccomp",
            "Capabilities"
        ]
    );
}

fn run(config: &[(&str, &str)], job: Value) -> Result<Value, Error> {
    testing::customize::<PodSecurity>(&testing::request(config), job)
}

#[test]
fn a_rejection_names_every_field_and_control() {
    let job = job_with(
        json!({"hostNetwork": true, "volumes": [{"name": "root", "hostPath": {"path": "/"}}]}),
        json!({}),
    );
    match run(&[("level", "baseline")], job) {
        Err(Error::Rejected(reason)) => assert_eq!(
            reason,
            "the Job breaks the Pod Security Standards (baseline): .spec.template.spec.hostNetwork: must be unset or false (Host Namespaces); \
             .spec.template.spec.volumes[0].hostPath: hostPath volumes are not allowed (HostPath Volumes)"
        ),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn enforce_defaults_makes_a_plain_job_restricted_and_never_overrides_what_is_set() {
    let plain = json!({"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": {
        "restartPolicy": "Never",
        "initContainers": [{"name": "init", "image": "busybox"}],
        "containers": [{"name": "prefect-job", "image": "prefecthq/prefect:3-latest"}]}}}});
    let job = run(
        &[("mode", "enforce-defaults"), ("run-as-user", "1000")],
        plain,
    )
    .unwrap();
    assert_eq!(controls(&job, Level::Restricted), []);
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsUser"], 1000);
    assert_eq!(
        pod["initContainers"][0]["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    // A value the Job sets is kept, and judged.
    let escalating = job_with(
        json!({"containers": [{"name": "prefect-job", "image": "i", "securityContext": {"allowPrivilegeEscalation": true}}]}),
        json!({}),
    );
    match run(&[("mode", "enforce-defaults")], escalating) {
        Err(Error::Rejected(reason)) => assert!(
            reason.contains("allowPrivilegeEscalation: must be false"),
            "{reason}"
        ),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn bad_settings_are_faults_that_name_them() {
    for (config, words) in [
        (&[("level", "strict")][..], "setting `level` is \"strict\""),
        (&[("mode", "fix")][..], "setting `mode` is \"fix\""),
        (
            &[("mode", "enforce-defaults"), ("run-as-user", "0")][..],
            "setting `run-as-user` is \"0\"",
        ),
    ] {
        match run(config, job_with(json!({}), json!({}))) {
            Err(Error::Fault(message)) => assert!(message.contains(words), "{message}"),
            other => panic!("expected a fault, got {other:?}"),
        }
    }
}
