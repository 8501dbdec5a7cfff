//! agent: takes flow runs from a Prefect 3 server and runs each as a Kubernetes Job whose spec
//! is decided by a chain of sandboxed WebAssembly plugins.
//!
//! The data path of `agent start`, step by step, with the module of each step:
//!
//! 1. flags, environment and `--config agent.toml` → settings: `cli`, `config_file`, `settings`
//! 2. settings → working parts (plugin chain, base job template): `assemble`
//! 3. find runs (Prefect's event stream, polls, timers for runs due later), claim one
//!    (PENDING), build, submit, report; finish claims left unfinished: `dispatch`
//!    - Prefect's API, its objects, placeholders, its event stream, runs' logs and the events
//!      the agent emits: `prefect`
//!    - what plugins are told about the run: `request`
//!    - the plugin sandbox and chain: `plugins` (with `diff` for what each plugin changed)
//!    - what every Job must be after the chain (labels, name, schema): `job`
//!    - creating it exactly once in Kubernetes: `cluster`
//! 4. after submission: watch the Job, its pods and Events → decide → act, and tell Prefect of
//!    the pods (events): `watch`
//! 5. probes and counts: `health`, `metrics`
//!
//! The other commands: `render` (`agent render`, steps 1–3 without a server), `install`,
//! `plugin_tool` and `scaffold` (`agent plugin check/test/new`). Shared helpers: `document`
//! (JSON/YAML files), `template_source` (templates from files, URLs, object stores), `http`,
//! `stock` (the built-in plugin and template), `text`, `yaml`.

pub mod assemble;
pub mod cli;
pub mod cluster;
pub mod config_file;
pub mod diff;
pub mod dispatch;
pub mod document;
pub mod health;
pub mod http;
pub mod install;
pub mod job;
pub mod metrics;
pub mod plugin_tool;
pub mod plugins;
pub mod prefect;
pub mod render;
pub mod request;
pub mod scaffold;
pub mod settings;
pub mod start;
pub mod stock;
pub mod template_source;
pub mod text;
pub mod watch;
pub mod yaml;
