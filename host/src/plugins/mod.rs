//! The plugin runtime: loads WebAssembly components that implement `wit/plugin.wit`, runs them
//! in a sandbox (no files, network or environment; a memory cap and a deadline per call; a
//! fresh instance per call) and chains them into the Job for one flow run.
//!
//! Not here: what the Job must satisfy afterwards (`crate::job`) or where requests come from.

mod bindings;
mod cache;
mod call;
mod chain;
mod error;
mod fetch;
mod loader;
mod runtime;
mod spec;

pub use bindings::agent::plugin::types::{AgentSettings, FlowRun, Request, SecretKeyRef};
pub use call::{CallOutput, LogLine};
pub use chain::{Chain, ChainOutcome, Link, Step};
pub use error::{CallError, FaultKind, LoadError};
pub use fetch::{fetch_remote, is_remote};
pub use loader::Plugin;
pub use runtime::{Limits, Runtime, RuntimeOptions, default_cache_dir};
pub use spec::PluginSpec;
