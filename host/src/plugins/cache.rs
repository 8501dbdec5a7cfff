//! Precompiled plugins on disk.
//!
//! Compiling a component is the expensive step (tens of milliseconds for a small Rust plugin,
//! seconds for a Python or JavaScript one), so compiled code is kept by the component's sha256
//! and the engine's compatibility hash: a restart, or a second replica on the same volume,
//! loads it without compiling. A stale or corrupt entry is recompiled, never trusted.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

pub struct Cache {
    dir: PathBuf,
    engine_key: String,
}

impl Cache {
    pub fn open(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Cache {
            dir: dir.to_path_buf(),
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    fn entry(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    /// The component compiled earlier from bytes with this digest, if any.
    pub fn load(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.entry(sha256);
        if !path.exists() {
            return None;
        }
        // SAFETY: the file is one this cache wrote from `Component::serialize` (named by the
        // source's digest and this engine's compatibility hash); wasmtime still checks its
        // header and compatibility and refuses a mismatch, which we treat as a miss.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring unusable precompiled plugin: {e:#}");
                None
            }
        }
    }

    /// Keeps `component` for next time; a failure only costs a recompile later.
    pub fn store(&self, sha256: &str, component: &Component) {
        let path = self.entry(sha256);
        let result = component
            .serialize()
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                let tmp = path.with_extension(format!("tmp{}", std::process::id()));
                std::fs::write(&tmp, bytes)?;
                std::fs::rename(&tmp, &path)
            });
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), "could not keep the precompiled plugin: {e}");
        }
    }
}
