//! How an emulator is set up: namespaces, who may do what, the node, and the declarative script
//! that decides what each pod goes through. Loadable from YAML for the standalone binary.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Namespaces that exist at start.
    pub namespaces: Vec<String>,
    /// Bearer tokens and what each may do; the admin token may do everything.
    pub admin_token: String,
    /// Requests without credentials act as the admin (kubectl sends no token over plain HTTP,
    /// and the emulator serves plain HTTP). Set false to require a token.
    pub anonymous_is_admin: bool,
    pub tokens: BTreeMap<String, Identity>,
    pub node: Node,
    /// First match wins; a pod matching none runs and succeeds.
    pub pods: Vec<PodRule>,
    /// Multiplies every simulated duration (0.01 makes a 1 s step take 10 ms).
    pub time_scale: f64,
    /// How many changes watches can resume from.
    pub history: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            namespaces: vec!["default".into(), "kube-system".into()],
            admin_token: "emulator-admin".into(),
            anonymous_is_admin: true,
            tokens: BTreeMap::new(),
            node: Node::default(),
            pods: Vec::new(),
            time_scale: 1.0,
            history: 10_000,
        }
    }
}

/// A user and the rules that allow them something; no rule, no access.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub user: String,
    pub rules: Vec<Rule>,
}

/// `verbs` on `resources` (with subresources as `pods/log`) in `namespaces`; `*` for any.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub verbs: Vec<String>,
    pub resources: Vec<String>,
    #[serde(default = "everywhere")]
    pub namespaces: Vec<String>,
}

fn everywhere() -> Vec<String> {
    vec!["*".into()]
}

/// The one emulated node: what the scheduler checks pods against.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Node {
    pub name: String,
    pub cpu: String,
    pub memory: String,
    pub labels: BTreeMap<String, String>,
    /// `key=value:Effect` or `key:Effect`.
    pub taints: Vec<String>,
}

impl Default for Node {
    fn default() -> Self {
        Node {
            name: "emulator-node".into(),
            cpu: "4".into(),
            memory: "16Gi".into(),
            labels: BTreeMap::from([
                ("kubernetes.io/hostname".into(), "emulator-node".into()),
                ("kubernetes.io/os".into(), "linux".into()),
            ]),
            taints: Vec::new(),
        }
    }
}

/// Which pods a rule is for: every condition given must hold.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Match {
    /// The first container's image; a trailing `*` matches a prefix.
    pub image: Option<String>,
    /// Pod labels that must all be present with these values.
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodRule {
    #[serde(default, rename = "match")]
    pub matches: Match,
    pub then: Behaviour,
    /// What the container writes to its log.
    #[serde(default)]
    pub log: Vec<String>,
}

/// What a pod goes through once scheduled and pulled. Times are milliseconds, scaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Behaviour {
    /// Runs for `run_ms`, exits 0.
    Succeed {
        #[serde(default = "default_run")]
        run_ms: u64,
    },
    /// Runs for `run_ms`, exits `exit_code`.
    Fail {
        exit_code: i32,
        #[serde(default = "default_run")]
        run_ms: u64,
    },
    /// The image cannot be pulled: ErrImagePull, then ImagePullBackOff, for ever.
    ImagePullError,
    /// The image reference does not parse.
    InvalidImageName,
    /// Killed for memory after `run_ms`: exit 137, OOMKilled.
    OomKilled {
        #[serde(default = "default_run")]
        run_ms: u64,
    },
    /// Exits 1 after `run_ms`; with restartPolicy OnFailure the kubelet restarts it with back-off
    /// (CrashLoopBackOff); with Never the pod fails.
    CrashLoop {
        #[serde(default = "default_run")]
        run_ms: u64,
    },
    /// Evicted by the kubelet after `run_ms` (node pressure).
    Evicted {
        #[serde(default = "default_run")]
        run_ms: u64,
    },
    /// Never unschedulable by itself, but the scheduler says this.
    Unschedulable { message: String },
    /// Runs until deleted.
    RunForever,
}

fn default_run() -> u64 {
    200
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour::Succeed {
            run_ms: default_run(),
        }
    }
}
