//! `agent plugin new NAME --lang rust`: a plugin project that builds and passes
//! `agent plugin test` untouched: the contract (this agent's `wit/plugin.wit`), the code, one
//! test case and a README with the exact commands.

use crate::cli::{PluginLang, PluginNewArgs};
use anyhow::{Context, bail};
use std::path::Path;
use std::process::ExitCode;

const WIT: &str = include_str!("../../wit/plugin.wit");

pub fn main(args: PluginNewArgs) -> ExitCode {
    match create(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn create(args: &PluginNewArgs) -> anyhow::Result<()> {
    let name = &args.name;
    let valid = name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!(
            "{name:?} cannot name a plugin: use lowercase letters, digits and '-', starting with a letter"
        );
    }
    let files: Vec<(&str, &str)> = match args.lang {
        PluginLang::Rust => vec![
            ("Cargo.toml", include_str!("scaffold/rust/Cargo.toml.txt")),
            ("src/lib.rs", include_str!("scaffold/rust/lib.rs.txt")),
            (
                "cases/adds-the-team-label.yaml",
                include_str!("scaffold/rust/case.yaml.txt"),
            ),
            ("README.md", include_str!("scaffold/rust/README.md.txt")),
            ("wit/plugin.wit", WIT),
        ],
        other => bail!(
            "--lang {other:?}: not yet; only rust is scaffolded so far (Python, JavaScript and C plugins are planned)"
        ),
    };
    let dir = args.dir.clone().unwrap_or_else(|| name.into());
    if dir.exists() {
        bail!(
            "{} already exists; choose another NAME or --dir",
            dir.display()
        );
    }
    for (relative, template) in files {
        let text = template
            .replace("{{name}}", name)
            .replace("{{file}}", &name.replace('-', "_"));
        write(&dir.join(relative), &text)?;
    }
    println!(
        "created {} ({} plugin); next:\n  cd {}\n  cargo build --release --target wasm32-wasip2\n  agent plugin test target/wasm32-wasip2/release/{}.wasm --cases cases",
        dir.display(),
        name,
        dir.display(),
        name.replace('-', "_")
    );
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
