//! What can go wrong with a plugin, typed so callers can tell a policy rejection (FAILED, not
//! retried) from a fault (CRASHED), and every message names the plugin.

use std::path::PathBuf;
use std::time::Duration;

/// A plugin could not be loaded; the agent refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("plugin {name} ({path}): cannot read the file: {source}")]
    Read {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "plugin {name} ({path}): sha256 is {actual}, but the pin says {expected}; refusing to load a file that is not the one pinned"
    )]
    DigestMismatch {
        name: String,
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("plugin {name} ({path}): not a WebAssembly file")]
    NotWasm { name: String, path: PathBuf },
    #[error(
        "plugin {name} ({path}): a core WebAssembly module, not a component; build it as a component \
         (cargo build --target wasm32-wasip2, componentize-py, jco componentize) or wrap it with \
         `wasm-tools component new`"
    )]
    CoreModule { name: String, path: PathBuf },
    #[error(
        "plugin {name} ({path}): cannot compile the component: {detail}. The file may be damaged or incomplete (a cut-off download or copy): build it again, or download it again and compare its sha256 (`agent plugin check` prints it)"
    )]
    Compile {
        name: String,
        path: PathBuf,
        detail: String,
    },
    #[error("plugin {name} ({path}): does not implement the agent's plugin world: {detail}")]
    WrongWorld {
        name: String,
        path: PathBuf,
        detail: String,
    },
    #[error(
        "plugin {name} ({path}): imports {imports}, which plugins are not given (no network, no HTTP; only logging, clocks, random and an empty WASI environment)"
    )]
    ForbiddenImports {
        name: String,
        path: PathBuf,
        imports: String,
    },
}

/// How a call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The plugin trapped (a panic, `unreachable`, out-of-bounds access...).
    Trap,
    /// It ran past its deadline and was interrupted.
    Timeout,
    /// It tried to grow its memory past its cap.
    MemoryLimit,
    /// It returned `error::fault`.
    PluginError,
    /// It returned text that is not JSON.
    NotJson,
    /// It returned JSON that is not a `batch/v1` Job object.
    NotAJob,
    /// It returned more than a Job can be.
    OutputTooLarge,
    /// It could not even be instantiated (for example the instance pool is exhausted).
    Instantiate,
}

impl FaultKind {
    pub fn describe(self) -> &'static str {
        match self {
            FaultKind::Trap => "trapped",
            FaultKind::Timeout => "timed out",
            FaultKind::MemoryLimit => "exceeded its memory limit",
            FaultKind::PluginError => "reported a fault",
            FaultKind::NotJson => "returned something that is not JSON",
            FaultKind::NotAJob => "returned something that is not a batch/v1 Job",
            FaultKind::OutputTooLarge => "returned too much",
            FaultKind::Instantiate => "could not be instantiated",
        }
    }
}

/// One call of one plugin failed; nothing else is affected.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("plugin {plugin} rejected the run: {reason}")]
    Rejected { plugin: String, reason: String },
    #[error("plugin {plugin} {}: {detail}", kind.describe())]
    Fault {
        plugin: String,
        kind: FaultKind,
        detail: String,
    },
}

impl CallError {
    pub fn fault(plugin: &str, kind: FaultKind, detail: impl Into<String>) -> Self {
        CallError::Fault {
            plugin: plugin.to_string(),
            kind,
            detail: detail.into(),
        }
    }

    pub fn timeout(plugin: &str, limit: Duration) -> Self {
        Self::fault(
            plugin,
            FaultKind::Timeout,
            format!(
                "did not return within {} (raise it with --plugin-timeout or --plugin-limit {plugin}.timeout=DURATION)",
                humantime::format_duration(limit)
            ),
        )
    }

    pub fn plugin(&self) -> &str {
        match self {
            CallError::Rejected { plugin, .. } | CallError::Fault { plugin, .. } => plugin,
        }
    }
}
