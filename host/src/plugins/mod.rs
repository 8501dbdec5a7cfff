//! The plugin runtime: loads WebAssembly components that implement `wit/plugin.wit`, runs them
//! in a sandbox (no files, network or environment; a memory cap, an output cap and a deadline
//! per call; a fresh instance per call) and chains them into the Job for one flow run.
//!
//! One way down: `engine` (the engine, linker and cache) loads a `plugin` (checks and calls),
//! whose calls keep their data in `state` under `limits`; `chain` runs plugins in order.
//! Not here: what the Job must satisfy afterwards (`crate::job`) or where requests come from.

mod bindings;
mod cache;
mod chain;
mod engine;
mod error;
mod fetch;
mod limits;
mod plugin;
mod spec;
mod state;

pub use bindings::agent::plugin::types::{AgentSettings, FlowRun, Request, SecretKeyRef};
pub use chain::{Chain, ChainOutcome, Link, MAX_VALUES, Step};
pub use engine::{Runtime, RuntimeOptions, default_cache_dir};
pub use error::{CallError, FaultKind, LoadError};
pub use fetch::{fetch_remote, is_remote};
pub use limits::Limits;
pub use plugin::{CallOutput, Plugin};
pub use spec::PluginSpec;
pub use state::LogLine;

use std::future::Future;

/// Drives a plugin call to its end on this thread: on a blocking thread of the agent's
/// runtime (whose timers the deadline uses), or on a small runtime of this thread's own when
/// there is none (`agent render`, `agent plugin test`).
fn block_on<F: Future>(future: F) -> F::Output {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime with timers");
    }
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(future),
        Err(_) => RUNTIME.with(|runtime| runtime.block_on(future)),
    }
}
