//! `agent plugin check` and `agent plugin test`, on the shipped plugins (whose own cases live
//! in `plugins/NAME/cases/`) and on bad input.

mod common;

use agent_tests::{plugin, workspace_root};
use common::{agent, arg};

#[test]
fn check_describes_a_plugin_and_how_to_pin_it() {
    let cache = tempfile::tempdir().unwrap();
    let check =
        || common::agent_with_cache(["plugin", "check", &arg(&plugin("naming"))], cache.path());
    let run = check();
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    for expected in [
        "a plugin (agent:plugin/customizer@0.1.1)",
        "name     naming",
        "compile  ",
        "imports  agent:plugin/types@0.1.1",
        "#sha256=",
    ] {
        assert!(
            run.stdout.contains(expected),
            "{expected:?} in:\n{}",
            run.stdout
        );
    }
    assert!(!run.stdout.contains("precompiled"), "{}", run.stdout);
    // The second check loads what the first compiled into the cache (AGENT_PLUGIN_CACHE), and
    // says so rather than passing a load off as a compile time.
    let again = check();
    assert!(
        again
            .stdout
            .contains("compile  precompiled, loaded from the plugin cache in "),
        "{}",
        again.stdout
    );
}

#[test]
fn check_refuses_what_is_not_a_plugin_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "not wasm at all").unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, wat::parse_str("(module)").unwrap()).unwrap();
    for (file, reason) in [
        (text, "not a WebAssembly"),
        (core, "core WebAssembly module"),
        (
            plugin("other-world"),
            "a plugin must export agent:plugin/customizer@0.1.",
        ),
    ] {
        let run = agent(["plugin", "check", &arg(&file)]);
        assert_eq!(run.status, Some(1), "{}", run.stdout);
        assert!(
            run.stderr.contains(reason),
            "{}: {reason:?} in {}",
            file.display(),
            run.stderr
        );
    }
}

#[test]
fn the_shipped_plugins_pass_their_own_cases() {
    for name in ["naming", "policy", "pod-security"] {
        let cases = workspace_root().join("plugins").join(name).join("cases");
        let run = agent([
            "plugin",
            "test",
            &arg(&plugin(name)),
            "--cases",
            &arg(&cases),
        ]);
        assert_eq!(run.status, Some(0), "{name}:\n{}{}", run.stdout, run.stderr);
        assert!(run.stdout.contains("2 passed, 0 failed"), "{}", run.stdout);
    }
}

#[test]
fn a_failing_case_shows_what_differs_and_a_broken_case_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("wrong.yaml"),
        "config: {prefix: etl}\njob: {metadata: {name: run-abc}}\nexpect:\n  job: {metadata: {name: etl-run-xyz}}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("not-rejected.yaml"),
        "config: {prefix: etl}\njob: {metadata: {name: a}}\nexpect: {rejected: policy}\n",
    )
    .unwrap();
    let run = agent([
        "plugin",
        "test",
        &arg(&plugin("naming")),
        "--cases",
        &arg(dir.path()),
    ]);
    assert_eq!(run.status, Some(1));
    assert!(
        run.stdout
            .contains(r#"~ .metadata.name: expected "etl-run-xyz" / got "etl-run-abc""#),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("expected a rejection (\"policy\"), but the plugin returned a Job")
    );
    assert!(run.stdout.contains("0 passed, 2 failed"), "{}", run.stdout);

    std::fs::write(dir.path().join("broken.json"), "{\"job\": ").unwrap();
    let run = agent([
        "plugin",
        "test",
        &arg(&plugin("naming")),
        "--cases",
        &arg(dir.path()),
    ]);
    assert_eq!(run.status, Some(1));
    assert!(
        run.stderr.contains("broken.json is not valid JSON"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_new_rust_plugin_works_by_following_its_readme_word_for_word() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("team-label");
    let run = agent([
        "plugin",
        "new",
        "team-label",
        "--lang",
        "rust",
        "--dir",
        &arg(&project),
    ]);
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    // A target directory kept between runs (the build is incremental after the first), where
    // the README expects it.
    let target = workspace_root().join("target/scaffold");
    std::fs::create_dir_all(&target).unwrap();
    std::os::unix::fs::symlink(&target, project.join("target")).unwrap();
    follow_readme("rust", &project, &[]);

    let again = agent(["plugin", "new", "team-label", "--dir", &arg(&project)]);
    assert_eq!(again.status, Some(2));
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    let bad = agent(["plugin", "new", "Team Label"]);
    assert_eq!(bad.status, Some(2));
    assert!(
        bad.stderr.contains("cannot name a plugin"),
        "{}",
        bad.stderr
    );
}

#[test]
fn a_plugin_built_against_the_previous_contract_runs_unchanged() {
    let old = plugin("contract-0-1-0");
    let check = agent(["plugin", "check", &arg(&old)]);
    assert_eq!(check.status, Some(0), "{}", check.stderr);
    assert!(
        check
            .stdout
            .contains("a plugin (agent:plugin/customizer@0.1.0)")
            && check.stdout.contains("agent:plugin/log@0.1.0"),
        "{}",
        check.stdout
    );
    // The host speaks a newer 0.1: its own WIT says so.
    let wit = std::fs::read_to_string(workspace_root().join("wit/plugin.wit")).unwrap();
    assert!(!wit.contains("package agent:plugin@0.1.0;"), "{wit}");

    let render = agent([
        "render",
        "--flow-run",
        &arg(&workspace_root().join("examples/flow-runs/minimal.yaml")),
        "--plugin",
        &format!("old={}", arg(&old)),
        "-o",
        "json",
        "--explain",
    ]);
    let job = render.json();
    assert_eq!(job["metadata"]["labels"]["contract"], "0.1.0");
    assert!(
        render.stderr.contains("built against agent:plugin@0.1.0"),
        "its log call reached the host: {}",
        render.stderr
    );
}

#[test]
fn new_python_js_and_c_plugins_work_by_following_their_readme_word_for_word() {
    let root = workspace_root();
    // The toolchains tests/setup-*.sh installed (the READMEs' setup lines), where the
    // scaffolds' build scripts look for them.
    let tools = [
        ("COMPONENTIZE_PY", root.join(".venv/bin/componentize-py")),
        (
            "AGENT_JS_TOOLS",
            root.join("plugins/sdk-js/node_modules/.bin"),
        ),
        ("AGENT_PLUGIN_C", agent_tests::c_plugin_tool()),
    ];
    let dir = tempfile::tempdir().unwrap();
    for lang in ["python", "js", "c"] {
        let project = dir.path().join(format!("team-{lang}"));
        let run = agent([
            "plugin",
            "new",
            &format!("team-{lang}"),
            "--lang",
            lang,
            "--dir",
            &arg(&project),
        ]);
        assert_eq!(run.status, Some(0), "{lang}: {}", run.stderr);
        assert!(run.stdout.contains("./build.sh"), "{lang}: {}", run.stdout);
        follow_readme(lang, &project, &tools);
    }
}

/// Runs the commands of the project's README in it, one by one and as written, with this
/// `agent` first on PATH; lines marked `# setup` (the machine's toolchain, which the test
/// machine's setup scripts installed) are left out. Every command must succeed, and the last
/// one (`agent render`) must show the plugin at work.
fn follow_readme(lang: &str, project: &std::path::Path, env: &[(&str, std::path::PathBuf)]) {
    let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
    let block = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap_or_else(|| panic!("{lang}: the README has no ```sh block:\n{readme}"));
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_agent"), bin.path().join("agent")).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut last = String::new();
    for line in block.lines().filter(|l| !l.trim().is_empty()) {
        if line.contains("# setup") {
            continue;
        }
        let output = std::process::Command::new("bash")
            .args(["-c", line])
            .current_dir(project)
            .env("PATH", &path)
            .env("AGENT_PLUGIN_CACHE", bin.path().join("cache"))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{lang}: `{line}` failed, following the README:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        last = String::from_utf8_lossy(&output.stdout).into_owned();
    }
    assert!(
        last.contains("team: analytics"),
        "{lang}: the README's render shows the label its setting asked for:\n{last}"
    );
}
