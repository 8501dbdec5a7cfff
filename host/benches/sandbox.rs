//! The sandbox under hostile plugin bodies: for each, `agent render` (release) with the
//! hostile plugin (tests/plugins/faulty, built from source) after the stock one; prints the
//! wall time, the agent's peak RSS and the exit code, so that a regression shows.
//!
//! `cargo bench -p agent --bench sandbox`

use std::process::Command;

/// `(body, extra settings)`: each a way to misbehave.
const BODIES: &[(&str, &[&str])] = &[
    ("none", &[]),
    ("trap", &[]),
    ("hang", &[]),
    ("sleep", &["seconds=10"]),
    ("sleep", &["seconds=3600"]),
    ("allocate", &[]),
    ("amplify", &[]),
    ("amplify", &["size=600000"]),
    ("deep", &[]),
    ("deep", &["size=5000"]),
    ("not-json", &[]),
    ("stdout-flood", &["size=16384"]),
    ("log-flood", &[]),
    ("thread", &[]),
    ("sandbox", &[]),
];

fn main() {
    let example = agent_tests::workspace_root().join("examples/flow-runs/etl-nightly.json");
    let faulty = agent_tests::plugin("faulty");
    let cache = tempfile::tempdir().unwrap();
    println!(
        "plugin limits: --plugin-timeout 2s, --plugin-memory 64MiB, --plugin-output-limit 2MiB"
    );
    println!("| body | wall time | peak RSS | exit |");
    println!("|---|---|---|---|");
    for (body, settings) in BODIES {
        let mut command = Command::new(env!("CARGO_BIN_EXE_agent"));
        command
            .args(["render", "--flow-run"])
            .arg(&example)
            .arg("--plugin")
            .arg(&faulty)
            .args(["-c", &format!("faulty.fault={body}"), "-o", "json"])
            .env("AGENT_PLUGIN_CACHE", cache.path())
            .env("AGENT_LOG", "error");
        for setting in *settings {
            command.args(["-c", &format!("faulty.{setting}")]);
        }
        let (code, peak_kib, took) = agent_tests::peak_rss(&mut command);
        let shown = if settings.is_empty() {
            body.to_string()
        } else {
            format!("{body} ({})", settings.join(", "))
        };
        println!(
            "| {shown} | {:.2} s | {:.0} MiB | {} |",
            took.as_secs_f64(),
            peak_kib as f64 / 1024.0,
            code.map_or("signal".into(), |c| c.to_string())
        );
    }
}
