//! One call of one plugin. Everything the call owns lives in its `Store` (`CallState`): a fresh
//! instance, its memory cap, its deadline, its captured output and log. When the store drops,
//! the call is gone without a trace, so nothing leaks from one flow run into the next.

use super::bindings::agent::plugin::log::{self as wit_log, Level};
use super::bindings::agent::plugin::types::{self as wit_types, Error as PluginError, Request};
use super::error::{CallError, FaultKind};
use super::loader::Plugin;
use super::runtime::EPOCH_TICK;
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// What a plugin may print to stdout/stderr per call; the rest is dropped.
const OUTPUT_CAP: usize = 64 << 10;
/// Log lines per call, and bytes per line, before the rest is dropped.
const MAX_LOG_LINES: usize = 200;
const MAX_LOG_LINE: usize = 4 << 10;

/// A line a plugin logged during a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: &'static str,
    pub message: String,
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

pub(crate) struct CallState {
    plugin: String,
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    logs: Vec<LogLine>,
    dropped_log_lines: usize,
}

impl Plugin {
    /// Runs `customize` in a fresh instance under this plugin's limits.
    pub fn call(&self, request: &Request, job: &str) -> Result<CallOutput, CallError> {
        let stdout = MemoryOutputPipe::new(OUTPUT_CAP);
        let stderr = MemoryOutputPipe::new(OUTPUT_CAP);
        let mut store = Store::new(
            self.pre.engine(),
            self.new_state(stdout.clone(), stderr.clone()),
        );
        store.limiter(|state| &mut state.limiter);
        let ticks = self
            .limits
            .timeout
            .as_millis()
            .div_ceil(EPOCH_TICK.as_millis()) as u64
            + 1;
        store.set_epoch_deadline(ticks);

        let started = Instant::now();
        let mut instantiate_time = Duration::ZERO;
        let outcome = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| (e, true))
            .and_then(|instance| {
                instantiate_time = started.elapsed();
                instance
                    .agent_plugin_customizer()
                    .call_customize(&mut store, request, job)
                    .map_err(|e| (e, false))
            });
        let call_time = started.elapsed() - instantiate_time;
        forward_output(&self.name, "stdout", &stdout.contents());
        forward_output(&self.name, "stderr", &stderr.contents());

        match outcome {
            Ok(Ok(job)) => Ok(CallOutput {
                job,
                logs: std::mem::take(&mut store.data_mut().logs),
                instantiate_time,
                call_time,
            }),
            Ok(Err(PluginError::Rejected(reason))) => Err(CallError::Rejected {
                plugin: self.name.clone(),
                reason,
            }),
            Ok(Err(PluginError::Fault(detail))) => {
                Err(CallError::fault(&self.name, FaultKind::PluginError, detail))
            }
            Err((error, instantiating)) => {
                Err(self.classify(error, instantiating, store.data(), &stderr.contents()))
            }
        }
    }

    fn new_state(&self, stdout: MemoryOutputPipe, stderr: MemoryOutputPipe) -> CallState {
        // No preopened directories, no env, no args, no network: the WASI a language runtime
        // needs to start, with nothing behind it.
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout)
            .stderr(stderr)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory_bytes)
            .instances(self.limits.instances)
            .tables(self.limits.tables)
            .memories(self.limits.memories)
            .table_elements(self.limits.table_elements)
            .build();
        CallState {
            plugin: self.name.clone(),
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter {
                memory_bytes: self.limits.memory_bytes,
                denied_growth: None,
                limits,
            },
            logs: Vec::new(),
            dropped_log_lines: 0,
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
                    "tried to grow its memory to {} MiB; the limit is {} MiB (raise it with --plugin-memory)",
                    wanted >> 20,
                    self.limits.memory_bytes >> 20
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

fn forward_output(plugin: &str, stream: &str, bytes: &[u8]) {
    for line in String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        tracing::warn!(plugin, stream, "{line}");
    }
}

/// The store's resource limiter, which also remembers a refused memory growth so that the
/// trap that follows (a failed allocation aborts) is reported as what it is.
struct Limiter {
    memory_bytes: usize,
    denied_growth: Option<usize>,
    limits: StoreLimits,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.denied_growth = Some(desired);
            return Ok(false);
        }
        self.limits.memory_growing(current, desired, maximum)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wit_types::Host for CallState {}

impl wit_log::Host for CallState {
    fn enabled(&mut self, level: Level) -> bool {
        match level {
            Level::Trace => tracing::enabled!(tracing::Level::TRACE),
            Level::Debug => tracing::enabled!(tracing::Level::DEBUG),
            Level::Info => tracing::enabled!(tracing::Level::INFO),
            Level::Warn => tracing::enabled!(tracing::Level::WARN),
            Level::Error => tracing::enabled!(tracing::Level::ERROR),
        }
    }

    fn log(&mut self, level: Level, message: String) {
        if self.logs.len() >= MAX_LOG_LINES {
            self.dropped_log_lines += 1;
            if self.dropped_log_lines == 1 {
                tracing::warn!(plugin = %self.plugin, "more than {MAX_LOG_LINES} log lines in one call; dropping the rest");
            }
            return;
        }
        let message = crate::text::shorten(message, MAX_LOG_LINE);
        let plugin = self.plugin.as_str();
        let level = match level {
            Level::Trace => {
                tracing::trace!(plugin, "{message}");
                "trace"
            }
            Level::Debug => {
                tracing::debug!(plugin, "{message}");
                "debug"
            }
            Level::Info => {
                tracing::info!(plugin, "{message}");
                "info"
            }
            Level::Warn => {
                tracing::warn!(plugin, "{message}");
                "warn"
            }
            Level::Error => {
                tracing::error!(plugin, "{message}");
                "error"
            }
        };
        self.logs.push(LogLine { level, message });
    }
}
