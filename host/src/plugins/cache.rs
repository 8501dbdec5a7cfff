//! Precompiled plugins on disk.
//!
//! Compiling a component is the expensive step (tens of milliseconds for a small Rust plugin,
//! seconds for a Python or JavaScript one), so compiled code is kept by the component's sha256
//! and the engine's compatibility hash: a restart, or a second replica on the same volume,
//! loads it without compiling. A stale or corrupt entry is recompiled, never trusted.
//!
//! Bounded: entries are kept by last use (loading one touches it), and past `MAX_ENTRIES`
//! the least recently used go, so that upgrading plugins (or the agent) for years does not
//! fill the disk.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Compiled plugins kept at most (a Python plugin's is tens of MiB).
const MAX_ENTRIES: usize = 32;

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
            Ok(component) => {
                touch(&path);
                Some(component)
            }
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
        self.evict();
    }

    /// Removes the least recently used entries past `MAX_ENTRIES`.
    fn evict(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut compiled: Vec<(std::time::SystemTime, PathBuf)> = entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if compiled.len() <= MAX_ENTRIES {
            return;
        }
        compiled.sort();
        for (_, path) in &compiled[..compiled.len() - MAX_ENTRIES] {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Marks an entry as just used.
fn touch(path: &Path) {
    if let Ok(file) = std::fs::File::options().append(true).open(path) {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_keeps_the_most_recently_used_entries() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let cache = Cache::open(dir.path(), &engine).unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for i in 0..MAX_ENTRIES + 3 {
            let path = cache.entry(&format!("{i:064}"));
            std::fs::write(&path, b"x").unwrap();
            let file = std::fs::File::options().append(true).open(&path).unwrap();
            file.set_modified(old + std::time::Duration::from_secs(i as u64))
                .unwrap();
        }
        touch(&cache.entry(&format!("{:064}", 0)));
        cache.evict();
        let left = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(left, MAX_ENTRIES);
        assert!(cache.entry(&format!("{:064}", 0)).exists(), "just used");
        assert!(
            !cache.entry(&format!("{:064}", 1)).exists(),
            "least recently used"
        );
    }
}
