//! What one call owns, in its `Store`: the empty WASI context (with its captured stdout and
//! stderr), the resource table, the memory limiter and the plugin's log lines. When the store
//! drops, the call is gone without a trace. (As in wasmtime's embedding examples: the state
//! struct beside its `WasiView`, the limiter beside the state.)

use super::bindings::agent::plugin::log::{self as wit_log, Level};
use super::bindings::agent::plugin::types as wit_types;
use super::limits::Limits;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// What a plugin may print to stdout/stderr per call is kept up to this; the rest is dropped.
pub const OUTPUT_CAP: usize = 64 << 10;
/// Log lines per call, and bytes per line, before the rest is dropped.
const MAX_LOG_LINES: usize = 200;
const MAX_LOG_LINE: usize = 4 << 10;

/// A line a plugin logged during a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: &'static str,
    pub message: String,
}

pub struct CallState {
    plugin: String,
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limiter: Limiter,
    pub(super) logs: Vec<LogLine>,
    dropped_log_lines: usize,
}

impl CallState {
    /// The state of one call of `plugin` under `limits`, printing into `stdout` and `stderr`.
    pub fn new(plugin: &str, limits: &Limits, stdout: Captured, stderr: Captured) -> Self {
        // No preopened directories, no env, no args, no network: the WASI a language runtime
        // needs to start, with nothing behind it.
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout)
            .stderr(stderr)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let store_limits = StoreLimitsBuilder::new()
            .memory_size(limits.memory_bytes)
            .instances(limits.instances)
            .tables(limits.tables)
            .memories(limits.memories)
            .table_elements(limits.table_elements)
            .build();
        CallState {
            plugin: plugin.to_string(),
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter {
                memory_bytes: limits.memory_bytes,
                denied_growth: None,
                limits: store_limits,
            },
            logs: Vec::new(),
            dropped_log_lines: 0,
        }
    }
}

/// The store's resource limiter, which also remembers a refused memory growth so that the
/// trap that follows (a failed allocation aborts) is reported as what it is.
pub struct Limiter {
    memory_bytes: usize,
    pub(super) denied_growth: Option<usize>,
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

/// A plugin's stdout or stderr: the first `OUTPUT_CAP` bytes are kept, the rest counted and
/// dropped. Writing never fails (wasmtime's `MemoryOutputPipe` fails a write past its
/// capacity, and a Rust plugin panics on that "Broken pipe").
#[derive(Clone, Default)]
pub struct Captured {
    kept: Arc<Mutex<Vec<u8>>>,
    dropped: Arc<AtomicUsize>,
}

impl Captured {
    pub fn contents(&self) -> Vec<u8> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Bytes written past the cap.
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::Relaxed)
    }

    fn keep(&self, bytes: &[u8]) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let room = OUTPUT_CAP.saturating_sub(kept.len());
        kept.extend_from_slice(&bytes[..room.min(bytes.len())]);
        self.dropped
            .fetch_add(bytes.len().saturating_sub(room), Ordering::Relaxed);
    }
}

impl OutputStream for Captured {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        self.keep(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(OUTPUT_CAP)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Captured {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for Captured {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.keep(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for Captured {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Captured {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_past_the_cap_is_counted_and_dropped_never_refused() {
        let mut out = Captured::default();
        out.write(bytes::Bytes::from(vec![b'a'; OUTPUT_CAP - 1]))
            .unwrap();
        out.write(bytes::Bytes::from_static(b"bcd")).unwrap();
        out.write(bytes::Bytes::from(vec![b'z'; 1 << 20])).unwrap();
        assert_eq!(out.contents().len(), OUTPUT_CAP);
        assert_eq!(out.contents().last(), Some(&b'b'));
        assert_eq!(out.dropped(), 2 + (1 << 20));
        assert_eq!(out.check_write().unwrap(), OUTPUT_CAP, "always ready");
    }
}
