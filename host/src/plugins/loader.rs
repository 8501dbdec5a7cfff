//! Turning a file into a runnable plugin, refusing at start-up what would fail later: a file
//! that is not the pinned one, not WebAssembly, a core module, a component of another world,
//! or one that wants imports plugins are not given.

use super::bindings::PluginPre;
use super::cache::Cache;
use super::call::CallState;
use super::error::LoadError;
use super::runtime::Limits;
use super::spec::PluginSpec;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

/// The interface every plugin must export, and the versions of it this host runs.
const EXPORT: &str = "agent:plugin/customizer@0.1.";
/// Imports a plugin may have: our logging and the WASI a language runtime needs to start.
/// `wasi:sockets` is there because runtimes import it whether or not a plugin uses it
/// (CPython's does); every socket call is refused (see `CallState`). Everything else (HTTP,
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
    let imports = ty.imports(engine).map(|(i, _)| i.to_string()).collect();
    let exports = ty.exports(engine).map(|(e, _)| e.to_string()).collect();
    let pre = linker
        .instantiate_pre(&component)
        .and_then(PluginPre::new)
        .map_err(|e| LoadError::WrongWorld {
            name: name.clone(),
            path: path.clone(),
            detail: format!("{e:#}"),
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
