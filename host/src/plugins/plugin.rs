//! A plugin: turning a file into one, refusing at start-up what would fail later (a file that
//! is not the pinned one, not WebAssembly, damaged, a core module, a component of another
//! world, one that wants imports plugins are not given), and calling it.
//!
//! A call runs in a fresh instance with everything it owns in its `Store` (`CallState`), under
//! two clocks: the engine's epoch stops wasm code at the deadline, and the call's future is
//! dropped at the deadline when the plugin waits in a host call (a WASI sleep or poll), which
//! epoch interruption alone cannot stop.

use super::bindings::PluginPre;
use super::bindings::agent::plugin::types::{Error as PluginError, Request};
use super::cache::Cache;
use super::error::{CallError, FaultKind, LoadError};
use super::limits::{EPOCH_TICK, Limits};
use super::spec::PluginSpec;
use super::state::{CallState, Captured, LogLine};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, Trap};

/// The interface every plugin must export, and the versions of it this host runs.
const EXPORT: &str = "agent:plugin/customizer@0.1.";
/// Imports a plugin may have: our logging and the WASI a language runtime needs to start.
/// `wasi:sockets` is there because runtimes import it whether or not a plugin uses it
/// (CPython's does); every socket call is refused (see `CallState`). Everything else (HTTP,
/// an interface of these packages the host does not provide,
/// ...) is refused at load.
const ALLOWED_IMPORTS: &[&str] = &[
    "agent:plugin/",
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
];

/// A loaded, checked, ready-to-instantiate plugin.
pub struct Plugin {
    pub name: String,
    pub path: PathBuf,
    pub sha256: String,
    pub size: usize,
    /// How long compiling (or loading the precompiled code) took.
    pub compile_time: Duration,
    /// Whether the precompiled cache had it.
    pub from_cache: bool,
    pub limits: Limits,
    /// What the component imports and exports (`agent plugin check` shows them).
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    pub(super) pre: PluginPre<CallState>,
}

pub(super) fn load(
    engine: &Engine,
    linker: &Linker<CallState>,
    cache: Option<&Cache>,
    spec: &PluginSpec,
    bytes: &[u8],
    limits: Limits,
) -> Result<Plugin, LoadError> {
    let (name, path) = (spec.name.clone(), spec.path.clone());
    let sha256 = hex::encode(Sha256::digest(bytes));
    if let Some(expected) = &spec.sha256
        && *expected != sha256
    {
        return Err(LoadError::DigestMismatch {
            name,
            path,
            expected: expected.clone(),
            actual: sha256,
        });
    }
    check_header(bytes, &name, &path)?;

    let started = Instant::now();
    let cached = cache.and_then(|c| c.load(engine, &sha256));
    let from_cache = cached.is_some();
    let component = match cached {
        Some(component) => component,
        None => {
            let component = Component::new(engine, bytes).map_err(|e| LoadError::Compile {
                name: name.clone(),
                path: path.clone(),
                detail: format!("{e:#}"),
            })?;
            if let Some(cache) = cache {
                cache.store(&sha256, &component);
            }
            component
        }
    };
    let compile_time = started.elapsed();

    check_imports_and_exports(engine, &component, &name, &path)?;
    let ty = component.component_type();
    let imports: Vec<String> = ty.imports(engine).map(|(i, _)| i.to_string()).collect();
    let exports = ty.exports(engine).map(|(e, _)| e.to_string()).collect();
    let pre = linker
        .instantiate_pre(&component)
        .and_then(PluginPre::new)
        .map_err(|e| {
            // An import under an allowed package that the host does not provide (a newer
            // WASI interface, an invented one) is a forbidden import, and named as such.
            let detail = format!("{e:#}");
            match imports.iter().find(|i| not_provided(&detail, i)) {
                Some(import) => LoadError::ForbiddenImports {
                    name: name.clone(),
                    path: path.clone(),
                    imports: import.clone(),
                },
                None => LoadError::WrongWorld {
                    name: name.clone(),
                    path: path.clone(),
                    detail,
                },
            }
        })?;
    Ok(Plugin {
        name,
        path,
        sha256,
        size: bytes.len(),
        compile_time,
        from_cache,
        limits,
        imports,
        exports,
        pre,
    })
}

/// Whether wasmtime's link error says `import` has no implementation in the linker.
fn not_provided(link_error: &str, import: &str) -> bool {
    link_error.contains(&format!("`{import}`"))
        && (link_error.contains("not found") || link_error.contains("no implementation"))
}

/// `\0asm` then the version/layer: `01 00 00 00` for a core module, `0d 00 01 00` for a component.
fn check_header(bytes: &[u8], name: &str, path: &Path) -> Result<(), LoadError> {
    let (name, path) = (name.to_string(), path.to_path_buf());
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', _, _, 0x01, 0x00]) => Ok(()),
        Some([0, b'a', b's', b'm', 0x01, 0x00, 0x00, 0x00]) => {
            Err(LoadError::CoreModule { name, path })
        }
        _ => Err(LoadError::NotWasm { name, path }),
    }
}

fn check_imports_and_exports(
    engine: &Engine,
    component: &Component,
    name: &str,
    path: &Path,
) -> Result<(), LoadError> {
    let ty = component.component_type();
    let forbidden: Vec<String> = ty
        .imports(engine)
        .map(|(import, _)| import.to_string())
        .filter(|import| {
            !ALLOWED_IMPORTS
                .iter()
                .any(|allowed| import.starts_with(allowed))
        })
        .collect();
    if !forbidden.is_empty() {
        return Err(LoadError::ForbiddenImports {
            name: name.to_string(),
            path: path.to_path_buf(),
            imports: forbidden.join(", "),
        });
    }
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(export, _)| export.to_string())
        .collect();
    if !exports.iter().any(|export| export.starts_with(EXPORT)) {
        let found = if exports.is_empty() {
            "nothing".to_string()
        } else {
            exports.join(", ")
        };
        return Err(LoadError::WrongWorld {
            name: name.to_string(),
            path: path.to_path_buf(),
            detail: format!(
                "it exports {found}; a plugin must export {EXPORT}x (world `plugin` of wit/plugin.wit)"
            ),
        });
    }
    Ok(())
}

/// What a successful call returns.
#[derive(Debug)]
pub struct CallOutput {
    pub job: String,
    pub logs: Vec<LogLine>,
    /// Time to create the fresh instance, and to run `customize` in it.
    pub instantiate_time: Duration,
    pub call_time: Duration,
}

impl Plugin {
    /// Runs `customize` in a fresh instance under this plugin's limits, on this thread (which
    /// it blocks for up to the timeout). Not from an async task: from a blocking one.
    pub fn call(&self, request: &Request, job: &str) -> Result<CallOutput, CallError> {
        super::block_on(self.call_async(request, job))
    }

    /// The same as a future. It must be polled on a thread that may block for up to the
    /// timeout: wasm code runs inside the poll.
    pub async fn call_async(&self, request: &Request, job: &str) -> Result<CallOutput, CallError> {
        let (stdout, stderr) = (Captured::default(), Captured::default());
        let state = CallState::new(&self.name, &self.limits, stdout.clone(), stderr.clone());
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| &mut state.limiter);
        let ticks = self
            .limits
            .timeout
            .as_millis()
            .div_ceil(EPOCH_TICK.as_millis()) as u64
            + 1;
        store.set_epoch_deadline(ticks);

        let started = Instant::now();
        let run = async {
            let instance = self
                .pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| (e, true))?;
            let instantiated = started.elapsed();
            let answer = instance
                .agent_plugin_customizer()
                .call_customize(&mut store, request, job)
                .await
                .map_err(|e| (e, false))?;
            Ok::<_, (wasmtime::Error, bool)>((answer, instantiated))
        };
        // A wait in a host call ends here; running wasm code ends at the epoch deadline.
        let outcome = tokio::time::timeout(self.limits.timeout, run).await;
        let elapsed = started.elapsed();
        self.forward_output("stdout", &stdout);
        self.forward_output("stderr", &stderr);

        match outcome {
            Err(_elapsed) => Err(CallError::timeout(&self.name, self.limits.timeout)),
            Ok(Ok((Ok(job), instantiate_time))) => {
                if job.len() > self.limits.output_bytes {
                    return Err(CallError::fault(
                        &self.name,
                        FaultKind::OutputTooLarge,
                        format!(
                            "returned {} of JSON; the limit is {} (raise it with --plugin-output-limit or --plugin-limit {}.output=SIZE)",
                            crate::text::show_bytes(job.len()),
                            crate::text::show_bytes(self.limits.output_bytes),
                            self.name
                        ),
                    ));
                }
                Ok(CallOutput {
                    job,
                    logs: std::mem::take(&mut store.data_mut().logs),
                    instantiate_time,
                    call_time: elapsed - instantiate_time,
                })
            }
            Ok(Ok((Err(PluginError::Rejected(reason)), _))) => Err(CallError::Rejected {
                plugin: self.name.clone(),
                reason,
            }),
            Ok(Ok((Err(PluginError::Fault(detail)), _))) => {
                Err(CallError::fault(&self.name, FaultKind::PluginError, detail))
            }
            Ok(Err((error, instantiating))) => {
                Err(self.classify(error, instantiating, store.data(), &stderr.contents()))
            }
        }
    }

    fn classify(
        &self,
        error: wasmtime::Error,
        instantiating: bool,
        state: &CallState,
        stderr: &[u8],
    ) -> CallError {
        if let Some(wanted) = state.limiter.denied_growth {
            return CallError::fault(
                &self.name,
                FaultKind::MemoryLimit,
                format!(
                    "tried to grow its memory to {}, past its limit of {} (raise it with --plugin-memory or --plugin-limit {}.memory=SIZE)",
                    mebibytes(wanted),
                    mebibytes(self.limits.memory_bytes),
                    self.name
                ),
            );
        }
        if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            return CallError::timeout(&self.name, self.limits.timeout);
        }
        let kind = if instantiating && error.downcast_ref::<Trap>().is_none() {
            FaultKind::Instantiate
        } else {
            FaultKind::Trap
        };
        let mut detail = error.root_cause().to_string();
        let printed = last_words(stderr);
        if !printed.is_empty() {
            detail.push_str(&format!("; it printed: {printed}"));
        }
        CallError::fault(&self.name, kind, detail)
    }

    /// What the plugin printed, into the agent's log; what passed the cap is counted once.
    fn forward_output(&self, stream: &str, captured: &Captured) {
        let plugin = self.name.as_str();
        for line in String::from_utf8_lossy(&captured.contents())
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            tracing::warn!(plugin, stream, "{line}");
        }
        if captured.dropped() > 0 {
            tracing::warn!(
                plugin,
                stream,
                "printed {} more bytes than the {} kept per call; they were dropped",
                captured.dropped(),
                crate::text::show_bytes(super::state::OUTPUT_CAP)
            );
        }
    }
}

/// `64 MiB`, or `64.06 MiB` when not a whole number: never rounded down to the limit.
fn mebibytes(bytes: usize) -> String {
    let mib = bytes as f64 / (1u64 << 20) as f64;
    if bytes.is_multiple_of(1 << 20) {
        format!("{mib:.0} MiB")
    } else {
        format!("{:.2} MiB", (mib * 100.0).ceil() / 100.0)
    }
}

/// The last lines a plugin printed before failing (a Rust panic's location and message),
/// without the runtime's hint about backtraces.
fn last_words(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
        .collect();
    lines[lines.len().saturating_sub(3)..].join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_over_a_limit_never_read_as_the_limit() {
        assert_eq!(mebibytes(64 << 20), "64 MiB");
        assert_eq!(mebibytes((64 << 20) + (64 << 10)), "64.07 MiB");
        assert_eq!(mebibytes((64 << 20) + 1), "64.01 MiB");
    }

    #[test]
    fn a_link_error_naming_an_import_is_a_missing_import() {
        let error = "component imports instance `wasi:cli/backdoor@0.2.99`, but a matching implementation was not found in the linker";
        assert!(not_provided(error, "wasi:cli/backdoor@0.2.99"));
        assert!(!not_provided(error, "wasi:cli/stdout@0.2.6"));
    }
}
