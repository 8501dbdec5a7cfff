//! One wasmtime `Engine` for the process, configured once (component model, async calls,
//! pooling allocator, epoch interruption driven by a ticker thread), its `Linker` and the
//! precompiled cache. Loading plugins goes through it.

use super::bindings::Plugin as PluginWorld;
use super::cache::Cache;
use super::error::LoadError;
use super::limits::{EPOCH_TICK, Limits};
use super::plugin::{self, Plugin};
use super::spec::PluginSpec;
use super::state::CallState;
use std::path::PathBuf;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Engine-wide settings, fixed at start.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Where precompiled plugins are kept; `None` compiles on every start.
    pub cache_dir: Option<PathBuf>,
    /// How many plugin calls may run at once (sizes the instance pool).
    pub max_concurrent_calls: u32,
    /// The largest limits any plugin will get (sizes the pool's slots).
    pub largest: Limits,
    /// Map a plugin's initial memory copy-on-write instead of copying it into every new
    /// instance: a Python or JavaScript component's snapshotted heap is megabytes. Off only to
    /// measure what it saves (`cargo bench -p agent --bench languages`).
    pub memory_init_cow: bool,
    /// Bytes of each memory slot reset with `memset` rather than returned to the kernel when
    /// an instance ends, so the next instance in the slot does not fault those pages in again.
    pub memory_keep_resident: usize,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            cache_dir: default_cache_dir(),
            max_concurrent_calls: 32,
            largest: Limits::default(),
            memory_init_cow: true,
            memory_keep_resident: 32 << 20,
        }
    }
}

/// Where precompiled plugins go unless `--plugin-cache` says otherwise.
pub fn default_cache_dir() -> Option<PathBuf> {
    dirs::cache_dir().map(|dir| dir.join("prefect-agent").join("plugins"))
}

pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    cache: Option<Cache>,
}

impl Runtime {
    pub fn new(options: &RuntimeOptions) -> anyhow::Result<Self> {
        let engine = Engine::new(&engine_config(options))?;
        let mut linker = Linker::new(&engine);
        // The empty WASI environment language runtimes need to start (see `CallState`), and
        // the one import of our own: logging. Async, so that waiting in WASI (a sleep, a
        // poll) is a future the call's deadline can drop.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        PluginWorld::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |state| state)?;
        let cache = options.cache_dir.as_ref().and_then(|dir| match Cache::open(dir, &engine) {
            Ok(cache) => Some(cache),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), "plugin cache unusable, compiling without it: {e}");
                None
            }
        });
        spawn_epoch_ticker(&engine);
        Ok(Runtime {
            engine,
            linker,
            cache,
        })
    }

    /// Loads the plugin `spec` names, from its file.
    pub fn load(&self, spec: &PluginSpec, limits: Limits) -> Result<Plugin, LoadError> {
        let bytes = std::fs::read(&spec.path).map_err(|source| LoadError::Read {
            name: spec.name.clone(),
            path: spec.path.clone(),
            source,
        })?;
        self.load_bytes(spec, &bytes, limits)
    }

    /// Loads a plugin from bytes already in memory (the built-in stock plugin).
    pub fn load_bytes(
        &self,
        spec: &PluginSpec,
        bytes: &[u8],
        limits: Limits,
    ) -> Result<Plugin, LoadError> {
        plugin::load(
            &self.engine,
            &self.linker,
            self.cache.as_ref(),
            spec,
            bytes,
            limits,
        )
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

fn engine_config(options: &RuntimeOptions) -> Config {
    let calls = options.max_concurrent_calls.max(1);
    let largest = options.largest;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(calls)
        .total_core_instances(calls * largest.instances as u32)
        .total_memories(calls * largest.memories as u32)
        .total_tables(calls * largest.tables as u32)
        .max_memories_per_component(largest.memories as u32)
        .max_tables_per_component(largest.tables as u32)
        .max_memory_size(largest.memory_bytes)
        .table_elements(largest.table_elements)
        .max_component_instance_size(1 << 20)
        .max_core_instance_size(1 << 20)
        .linear_memory_keep_resident(options.memory_keep_resident)
        // One fiber stack per call under way (calls are async).
        .total_stacks(calls);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .memory_init_cow(options.memory_init_cow)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// Advances the engine's epoch every tick, so that deadlines fire; stops with the engine.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("plugin-deadlines".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the plugin deadline thread");
}
