//! `agent plugin new NAME --lang rust|python|js|c`: a plugin project that builds and passes
//! `agent plugin test` untouched: the contract (this agent's `wit/plugin.wit`), the code, the
//! agent's helper for the language, one test case, a build script and a README with the exact
//! commands.

use crate::cli::{PluginLang, PluginNewArgs};
use anyhow::{Context, bail};
use std::path::Path;
use std::process::ExitCode;

const WIT: &str = include_str!("../../wit/plugin.wit");

pub fn main(args: PluginNewArgs) -> ExitCode {
    match create(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", crate::text::error_chain(&error));
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
    let files = files(args.lang);
    let dir = args.dir.clone().unwrap_or_else(|| name.into());
    if dir.exists() {
        bail!(
            "{} already exists; choose another NAME or --dir",
            dir.display()
        );
    }
    let file = name.replace('-', "_");
    for (relative, template) in files {
        let text = template
            .replace("{{name}}", name)
            .replace("{{file}}", &file);
        write(&dir.join(relative), &text)?;
    }
    let (build, wasm) = match args.lang {
        PluginLang::Rust => (
            "cargo build --release --target wasm32-wasip2".to_string(),
            format!("target/wasm32-wasip2/release/{file}.wasm"),
        ),
        PluginLang::Js => ("npm install && ./build.sh".into(), format!("{file}.wasm")),
        PluginLang::Python | PluginLang::C => ("./build.sh".into(), format!("{file}.wasm")),
    };
    println!(
        "created {} ({name}, a {:?} plugin; its README says what the build needs); next:\n  cd {}\n  {build}\n  agent plugin test {wasm} --cases cases",
        dir.display(),
        args.lang,
        dir.display(),
    );
    Ok(())
}

/// The project of `lang`: the plugin, the agent's helper for that language (the very files
/// of `plugins/sdk-*`), the contract, one case, a build script and a README.
fn files(lang: PluginLang) -> Vec<(&'static str, &'static str)> {
    let mut files = vec![
        ("wit/plugin.wit", WIT),
        (
            "cases/adds-the-team-label.yaml",
            include_str!("scaffold/case.yaml.txt"),
        ),
        ("run.json", include_str!("scaffold/run.json.txt")),
    ];
    files.extend(match lang {
        PluginLang::Rust => vec![
            ("Cargo.toml", include_str!("scaffold/rust/Cargo.toml.txt")),
            ("src/lib.rs", include_str!("scaffold/rust/lib.rs.txt")),
            ("README.md", include_str!("scaffold/rust/README.md.txt")),
        ],
        PluginLang::Python => vec![
            ("app.py", include_str!("scaffold/python/app.py.txt")),
            (
                "agent_plugin.py",
                include_str!("../../plugins/sdk-python/agent_plugin.py"),
            ),
            (BUILD_SCRIPT, include_str!("scaffold/python/build.sh.txt")),
            ("README.md", include_str!("scaffold/python/README.md.txt")),
        ],
        PluginLang::Js => vec![
            ("plugin.js", include_str!("scaffold/js/plugin.js.txt")),
            (
                "agent-plugin.js",
                include_str!("../../plugins/sdk-js/agent-plugin.js"),
            ),
            (
                "agent-plugin.d.ts",
                include_str!("../../plugins/sdk-js/agent-plugin.d.ts"),
            ),
            ("package.json", include_str!("scaffold/js/package.json.txt")),
            (BUILD_SCRIPT, include_str!("scaffold/js/build.sh.txt")),
            ("README.md", include_str!("scaffold/js/README.md.txt")),
        ],
        PluginLang::C => vec![
            ("plugin.c", include_str!("scaffold/c/plugin.c.txt")),
            (
                "agent_plugin.h",
                include_str!("../../plugins/sdk-c/c/agent_plugin.h"),
            ),
            (
                "agent_plugin.c",
                include_str!("../../plugins/sdk-c/c/agent_plugin.c"),
            ),
            (
                "vendor/cjson/cJSON.h",
                include_str!("../../plugins/sdk-c/c/vendor/cjson/cJSON.h"),
            ),
            (
                "vendor/cjson/cJSON.c",
                include_str!("../../plugins/sdk-c/c/vendor/cjson/cJSON.c"),
            ),
            (
                "vendor/cjson/LICENSE",
                include_str!("../../plugins/sdk-c/c/vendor/cjson/LICENSE"),
            ),
            (BUILD_SCRIPT, include_str!("scaffold/c/build.sh.txt")),
            ("README.md", include_str!("scaffold/c/README.md.txt")),
        ],
    });
    files
}

const BUILD_SCRIPT: &str = "build.sh";

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    if path.file_name().is_some_and(|n| n == BUILD_SCRIPT) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make {} executable", path.display()))?;
    }
    Ok(())
}
