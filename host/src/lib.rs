//! agent: takes flow runs from a Prefect 3 server and runs each as a Kubernetes Job whose spec
//! is decided by a chain of sandboxed WebAssembly plugins.
//!
//! Modules by responsibility: `prefect` (API shapes), `request` (what plugins are told),
//! `plugins` (the wasm runtime and chain), `job` (what every Job must satisfy), `render` (the
//! `agent render` command), `cli` (flags), `config_file` (`--config agent.toml`).

pub mod assemble;
pub mod cli;
pub mod cluster;
pub mod config_file;
pub mod health;
pub mod http;
pub mod install;
pub mod job;
pub mod lifecycle;
pub mod metrics;
pub mod plugin_tool;
pub mod plugins;
pub mod prefect;
pub mod render;
pub mod request;
pub mod scaffold;
pub mod start;
pub mod stock;
pub mod template_source;
pub mod text;
pub mod watch;
pub mod yaml;
