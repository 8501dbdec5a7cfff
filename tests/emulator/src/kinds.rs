//! The resource kinds the emulator serves, and the discovery documents clients read.

use serde_json::{Value, json};

/// One resource type, as the API server knows it.
#[derive(Debug, PartialEq, Eq)]
pub struct Kind {
    /// API group; empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Strict JSON schema file under host/schemas/kubernetes/v1.37.0-local-strict.
    pub schema: &'static str,
    /// Subresources served under `{name}/…`.
    pub subresources: &'static [&'static str],
    pub short_names: &'static [&'static str],
}

impl Kind {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `jobs.batch`, `pods`: how error messages name the resource.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Job.batch`, `Pod`: how `Invalid` messages name the kind.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// The storage key: events of both event APIs are stored apart.
    pub fn key(&self) -> &'static str {
        match (self.group, self.plural) {
            ("events.k8s.io", _) => "events.events.k8s.io",
            (_, plural) => plural,
        }
    }
}

const ALL_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

pub static KINDS: &[Kind] = &[
    Kind {
        group: "batch",
        version: "v1",
        plural: "jobs",
        kind: "Job",
        namespaced: true,
        schema: "job-batch-v1",
        subresources: &["status"],
        short_names: &[],
    },
    Kind {
        group: "",
        version: "v1",
        plural: "pods",
        kind: "Pod",
        namespaced: true,
        schema: "pod-v1",
        subresources: &["status", "log"],
        short_names: &["po"],
    },
    Kind {
        group: "",
        version: "v1",
        plural: "events",
        kind: "Event",
        namespaced: true,
        schema: "event-v1",
        subresources: &[],
        short_names: &["ev"],
    },
    Kind {
        group: "events.k8s.io",
        version: "v1",
        plural: "events",
        kind: "Event",
        namespaced: true,
        schema: "event-events-v1",
        subresources: &[],
        short_names: &["ev"],
    },
    Kind {
        group: "",
        version: "v1",
        plural: "secrets",
        kind: "Secret",
        namespaced: true,
        schema: "secret-v1",
        subresources: &[],
        short_names: &[],
    },
    Kind {
        group: "",
        version: "v1",
        plural: "configmaps",
        kind: "ConfigMap",
        namespaced: true,
        schema: "configmap-v1",
        subresources: &[],
        short_names: &["cm"],
    },
    Kind {
        group: "",
        version: "v1",
        plural: "serviceaccounts",
        kind: "ServiceAccount",
        namespaced: true,
        schema: "serviceaccount-v1",
        subresources: &[],
        short_names: &["sa"],
    },
    Kind {
        group: "",
        version: "v1",
        plural: "namespaces",
        kind: "Namespace",
        namespaced: false,
        schema: "namespace-v1",
        subresources: &["status"],
        short_names: &["ns"],
    },
    // Stored and validated, not simulated: what `agent install` prints must be accepted.
    Kind {
        group: "apps",
        version: "v1",
        plural: "deployments",
        kind: "Deployment",
        namespaced: true,
        schema: "deployment-apps-v1",
        subresources: &["status"],
        short_names: &["deploy"],
    },
    Kind {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "roles",
        kind: "Role",
        namespaced: true,
        schema: "role-rbac-v1",
        subresources: &[],
        short_names: &[],
    },
    Kind {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "rolebindings",
        kind: "RoleBinding",
        namespaced: true,
        schema: "rolebinding-rbac-v1",
        subresources: &[],
        short_names: &[],
    },
    Kind {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "clusterroles",
        kind: "ClusterRole",
        namespaced: false,
        schema: "clusterrole-rbac-v1",
        subresources: &[],
        short_names: &[],
    },
    Kind {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "clusterrolebindings",
        kind: "ClusterRoleBinding",
        namespaced: false,
        schema: "clusterrolebinding-rbac-v1",
        subresources: &[],
        short_names: &[],
    },
    Kind {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        kind: "Lease",
        namespaced: true,
        schema: "lease-coordination-v1",
        subresources: &[],
        short_names: &[],
    },
];

pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Kind> {
    KINDS
        .iter()
        .find(|k| k.group == group && k.version == version && k.plural == plural)
}

pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static Kind> {
    KINDS
        .iter()
        .find(|k| k.api_version() == api_version && k.kind == kind)
}

pub fn version() -> Value {
    json!({
        "major": "1", "minor": "37", "gitVersion": "v1.37.0-emulator", "gitCommit": "emulator",
        "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25",
        "compiler": "gc", "platform": "linux/amd64"
    })
}

pub fn core_versions() -> Value {
    json!({"kind": "APIVersions", "apiVersion": "v1", "versions": ["v1"],
           "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
}

pub fn groups() -> Value {
    let mut names: Vec<&str> = KINDS
        .iter()
        .map(|k| k.group)
        .filter(|g| !g.is_empty())
        .collect();
    names.dedup();
    let groups: Vec<Value> = names
        .iter()
        .map(|group| {
            let version = json!({"groupVersion": format!("{group}/v1"), "version": "v1"});
            json!({"name": group, "versions": [version.clone()], "preferredVersion": version})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// The APIResourceList of `group/version`, or `None` when not served.
pub fn resources(group: &str, version: &str) -> Option<Value> {
    let kinds: Vec<&Kind> = KINDS
        .iter()
        .filter(|k| k.group == group && k.version == version)
        .collect();
    if kinds.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for kind in &kinds {
        resources.push(json!({
            "name": kind.plural, "singularName": kind.kind.to_lowercase(), "namespaced": kind.namespaced,
            "kind": kind.kind, "verbs": ALL_VERBS, "shortNames": kind.short_names,
        }));
        for sub in kind.subresources {
            let verbs: &[&str] = if *sub == "log" {
                &["get"]
            } else {
                &["get", "patch", "update"]
            };
            resources.push(json!({"name": format!("{}/{sub}", kind.plural), "singularName": "", "namespaced": kind.namespaced, "kind": kind.kind, "verbs": verbs}));
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
    )
}

/// `/openapi/v3`: where each group-version's document is.
pub fn openapi_v3_root() -> Value {
    let mut paths = serde_json::Map::new();
    for kind in KINDS {
        let prefix = if kind.group.is_empty() {
            format!("api/{}", kind.version)
        } else {
            format!("apis/{}/{}", kind.group, kind.version)
        };
        paths.insert(
            prefix.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{prefix}")}),
        );
    }
    json!({"paths": paths})
}

/// A minimal OpenAPI v3 document of one group-version: enough for kubectl to see that the
/// server validates fields itself (`fieldValidation` on each kind's PATCH), so it sends
/// `fieldValidation=Strict` instead of validating against a full schema.
pub fn openapi_v3_group(prefix: &str) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    for kind in KINDS {
        let base = if kind.group.is_empty() {
            format!("api/{}", kind.version)
        } else {
            format!("apis/{}/{}", kind.group, kind.version)
        };
        if base != prefix {
            continue;
        }
        let scope = if kind.namespaced {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        let gvk = json!({"group": kind.group, "version": kind.version, "kind": kind.kind});
        let parameter = json!({"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}});
        paths.insert(
            format!("/{base}{scope}/{}/{{name}}", kind.plural),
            json!({"patch": {"parameters": [parameter.clone()], "x-kubernetes-group-version-kind": gvk.clone(), "responses": {}},
                   "put": {"parameters": [parameter.clone()], "x-kubernetes-group-version-kind": gvk.clone(), "responses": {}}}),
        );
        paths.insert(
            format!("/{base}{scope}/{}", kind.plural),
            json!({"post": {"parameters": [parameter], "x-kubernetes-group-version-kind": gvk, "responses": {}}}),
        );
    }
    (!paths.is_empty()).then(|| json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.37.0"}, "paths": paths, "components": {"schemas": {}}}))
}
