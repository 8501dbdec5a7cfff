//! `agent-plugin-c`: what a C plugin's build needs besides clang and wasi-libc (Debian's).
//!
//! - `agent-plugin-c bindings WIT_DIR OUT_DIR`: the C bindings of the `plugin` world
//!   (`plugin.h`, `plugin.c`, `plugin_component_type.o`), as `wit-bindgen c` writes them.
//! - `agent-plugin-c componentize CORE.wasm OUT.wasm`: the clang-built core module (WASI
//!   preview 1, reactor) made a component with wasmtime's preview 1 adapter, as `wasm-tools
//!   component new --adapt` does.
//!
//! The same libraries as wit-bindgen-cli and wasm-tools, without building those two tools.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use wit_bindgen_core::Files;
use wit_component::ComponentEncoder;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [command, wit, out] if command == "bindings" => bindings(Path::new(wit), Path::new(out)),
        [command, core, out] if command == "componentize" => {
            componentize(Path::new(core), Path::new(out))
        }
        _ => bail!(
            "usage: agent-plugin-c bindings WIT_DIR OUT_DIR | agent-plugin-c componentize CORE.wasm OUT.wasm"
        ),
    }
}

fn bindings(wit: &Path, out: &Path) -> anyhow::Result<()> {
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_path(wit)
        .with_context(|| format!("cannot read the WIT package in {}", wit.display()))?;
    let world = resolve.select_world(&[package], Some("plugin"))?;
    let mut files = Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    for (name, contents) in files.iter() {
        let path: PathBuf = out.join(name);
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn componentize(core: &Path, out: &Path) -> anyhow::Result<()> {
    let module = std::fs::read(core).with_context(|| format!("cannot read {}", core.display()))?;
    let component = ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .with_context(|| format!("{} is not a core module with component type information (link plugin_component_type.o)", core.display()))?
        .adapter(
            "wasi_snapshot_preview1",
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .encode()
        .with_context(|| format!("cannot make a component of {}", core.display()))?;
    std::fs::write(out, component).with_context(|| format!("cannot write {}", out.display()))
}
