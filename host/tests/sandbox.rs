//! The plugin sandbox holds: each misbehaviour of a real plugin (tests/plugins/faulty, built
//! from source) fails only its own call, quickly, with a message naming the plugin and what
//! happened, and the next call on the same loaded plugin works; what a plugin returns cannot
//! make the agent's memory grow past its limits. Bad files are refused at load.

mod common;

use agent::job::{self, InvalidJob, Tracking};
use agent::plugins::{
    AgentSettings, CallError, Chain, FaultKind, FlowRun, Limits, Link, LoadError, Plugin,
    PluginSpec, Request, Runtime, RuntimeOptions,
};
use agent_tests::plugin;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Short deadlines keep the hang test quick; memory as in production.
/// Limits of the tests not about time: a generous deadline, so that a loaded machine does not
/// turn a slow answer (45 MB of JSON, a gibibyte allocated) into a timeout.
fn limits() -> Limits {
    Limits {
        timeout: Duration::from_secs(60),
        ..Limits::default()
    }
}

/// A plugin with a short deadline, for the tests about deadlines (quick to reach).
fn load_with_deadline(name: &str) -> Plugin {
    let limits = Limits {
        timeout: Duration::from_millis(500),
        ..limits()
    };
    runtime()
        .load(&spec(name, plugin(name)), limits)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Runtime::new(&RuntimeOptions {
            cache_dir: None,
            ..RuntimeOptions::default()
        })
        .unwrap()
    })
}

fn load(name: &str) -> Plugin {
    runtime()
        .load(&spec(name, plugin(name)), limits())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn spec(name: &str, path: PathBuf) -> PluginSpec {
    PluginSpec {
        name: name.into(),
        path,
        sha256: None,
    }
}

fn request(config: &[(&str, &str)]) -> Request {
    Request {
        flow_run: FlowRun {
            id: "run-1".into(),
            name: "crimson-beaver".into(),
            flow_id: "flow-1".into(),
            flow_name: "etl".into(),
            deployment_id: None,
            deployment_name: None,
            deployment_updated: None,
            work_pool_id: None,
            work_pool_name: None,
            work_queue_name: None,
            tags: vec![],
            labels: vec![],
            parameters: "{}".into(),
            run_count: 0,
        },
        agent: AgentSettings {
            name: "agent".into(),
            namespace: "default".into(),
            api_url: None,
            api_key_secret: None,
            service_account_name: None,
            image_pull_secrets: vec![],
            env: vec![],
            labels: vec![],
            default_image: "prefecthq/prefect:3-latest".into(),
            prefect_version: None,
        },
        job_variables: "{}".into(),
        base_job_template: "{}".into(),
        job_name_suffix: "abcd1234".into(),
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn job() -> String {
    json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "etl-abcd1234"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "prefect-job", "image": "i"}]}}}
    })
    .to_string()
}

fn call(plugin: &Plugin, fault: &str) -> Result<Value, CallError> {
    let output = plugin.call(&request(&[("fault", fault)]), &job())?;
    Ok(serde_json::from_str(&output.job).expect("the plugin returned JSON"))
}

fn fault_of(result: Result<Value, CallError>) -> (FaultKind, String) {
    match result {
        Err(error @ CallError::Fault { kind, .. }) => (kind, error.to_string()),
        other => panic!("expected a fault, got {other:?}"),
    }
}

/// After any failure, the same plugin still answers a normal call.
fn assert_next_call_works(plugin: &Plugin) {
    let job = call(plugin, "none").expect("the call after a fault works");
    assert_eq!(job["metadata"]["annotations"]["test/calls"], "1");
}

#[test]
fn a_trap_fails_only_its_call_and_says_what_the_plugin_printed() {
    let faulty = load("faulty");
    let (kind, message) = fault_of(call(&faulty, "trap"));
    assert_eq!(kind, FaultKind::Trap);
    assert!(message.starts_with("plugin faulty trapped: "), "{message}");
    assert!(
        message.contains("faulty plugin asked to trap"),
        "the panic message is shown: {message}"
    );
    assert_next_call_works(&faulty);
}

#[test]
fn an_endless_loop_is_interrupted_at_the_deadline() {
    let faulty = load_with_deadline("faulty");
    let started = Instant::now();
    let (kind, message) = fault_of(call(&faulty, "hang"));
    let took = started.elapsed();
    assert_eq!(kind, FaultKind::Timeout);
    assert_eq!(
        message,
        "plugin faulty timed out: did not return within 500ms (raise it with --plugin-timeout or --plugin-limit faulty.timeout=DURATION)"
    );
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(5),
        "interrupted after {took:?}"
    );
    assert_next_call_works(&faulty);
}

#[test]
fn a_plugin_waiting_in_a_host_call_is_stopped_at_its_deadline() {
    let faulty = load_with_deadline("faulty");
    for seconds in ["10", "3600"] {
        let started = Instant::now();
        let result = faulty
            .call(
                &request(&[("fault", "sleep"), ("seconds", seconds)]),
                &job(),
            )
            .map(|_| ());
        let took = started.elapsed();
        let (kind, message) = fault_of(result.map(|_| Value::Null));
        assert_eq!(kind, FaultKind::Timeout, "{message}");
        assert!(
            took >= Duration::from_millis(500) && took < Duration::from_secs(5),
            "a {seconds} s sleep must end at the 500 ms deadline, it took {took:?}"
        );
    }
    assert_next_call_works(&faulty);
}

#[test]
fn an_answer_larger_than_a_job_can_be_is_refused_before_it_is_read() {
    let faulty = load("faulty");
    // 15 million empty args: 45 MB of JSON, inside the plugin's 64 MiB.
    let (kind, message) = fault_of(call(&faulty, "amplify"));
    assert_eq!(kind, FaultKind::OutputTooLarge);
    assert_eq!(
        message,
        "plugin faulty returned too much: returned 45000174 bytes of JSON; the limit is 2MiB \
         (raise it with --plugin-output-limit or --plugin-limit faulty.output=SIZE)"
    );
    // Under the size limit, but more values than a Job has.
    let chain = Chain::new(vec![Link {
        plugin: load("faulty"),
        config: vec![
            ("fault".into(), "amplify".into()),
            ("size".into(), "600000".into()),
        ],
    }]);
    let message = chain.run(&request(&[])).unwrap_err().to_string();
    assert!(
        message.starts_with(
            "plugin faulty returned too much: returned a Job of more than 200000 values"
        ),
        "{message}"
    );
    // Deep nesting: refused, not a stack overflow.
    let chain = Chain::new(vec![Link {
        plugin: load("faulty"),
        config: vec![
            ("fault".into(), "deep".into()),
            ("size".into(), "5000".into()),
        ],
    }]);
    let message = chain.run(&request(&[])).unwrap_err().to_string();
    assert!(
        message.starts_with(
            "plugin faulty returned something that is not JSON: recursion limit exceeded"
        ),
        "{message}"
    );
    assert_next_call_works(&faulty);
}

/// The agent's peak RSS in KiB rendering the example run with `faulty.fault=FAULT` (and
/// `extra` settings), and its exit code.
fn render_peak_rss(fault: &str, extra: &[&str]) -> (Option<i32>, u64) {
    let example = agent_tests::workspace_root().join("examples/flow-runs/etl-nightly.json");
    let mut args: Vec<String> = vec![
        "render".into(),
        "--flow-run".into(),
        common::arg(&example),
        "--plugin".into(),
        common::arg(&plugin("faulty")),
        "-c".into(),
        format!("faulty.fault={fault}"),
        "--plugin-memory".into(),
        "64MiB".into(),
        "-o".into(),
        "json".into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    common::agent_peak_rss(args)
}

#[test]
fn what_a_plugin_returns_cannot_grow_the_agent_past_its_memory_bound() {
    let (code, baseline) = render_peak_rss("none", &[]);
    assert_eq!(code, Some(0));
    // The plugin's memory (64 MiB) and one copy of its answer, read out of it: the bound is
    // twice the plugin memory per call (README, "The sandbox").
    let bound = 2 * 64 * 1024;
    for (fault, extra) in [
        ("amplify", &[][..]),
        ("amplify", &["-c", "faulty.size=600000"][..]),
        ("deep", &[][..]),
    ] {
        let (code, peak) = render_peak_rss(fault, extra);
        assert_eq!(code, Some(1), "{fault} {extra:?} fails the render");
        assert!(
            peak < baseline + bound,
            "{fault} {extra:?}: peak RSS {peak} KiB, past {baseline} KiB + {bound} KiB"
        );
    }
}

#[test]
fn a_flood_of_output_or_logs_is_cut_quietly_and_the_call_succeeds() {
    let faulty = load("faulty");
    // 1 MiB to stdout: kept up to 64 KiB, the rest dropped (no "Broken pipe" in the plugin).
    let output = faulty
        .call(
            &request(&[("fault", "stdout-flood"), ("size", "1024")]),
            &job(),
        )
        .expect("printing a lot is not a fault");
    assert!(output.job.contains("test/calls"), "{}", output.job);
    let output = faulty
        .call(&request(&[("fault", "log-flood")]), &job())
        .expect("logging a lot is not a fault");
    assert_eq!(output.logs.len(), 200, "lines past 200 are dropped");
    assert!(output.logs.iter().all(|l| l.message.len() <= 4 * 1024 + 3));
}

#[test]
fn a_plugin_gets_no_threads() {
    let (kind, message) = fault_of(call(&load("faulty"), "thread"));
    assert_eq!(kind, FaultKind::Trap, "{message}");
}

#[test]
fn an_import_under_an_allowed_package_that_the_host_does_not_give_is_refused_by_name() {
    let path = plugin("backdoor");
    let message = load_error(&spec("backdoor", path.clone()));
    assert_eq!(
        message,
        format!(
            "plugin backdoor ({}): imports wasi:cli/backdoor@0.2.99, which plugins are not given (no network, no HTTP; only logging, clocks, random and an empty WASI environment)",
            path.display()
        )
    );
}

#[test]
fn allocating_a_gibibyte_hits_the_memory_cap() {
    let faulty = load("faulty");
    let (kind, message) = fault_of(call(&faulty, "allocate"));
    assert_eq!(kind, FaultKind::MemoryLimit);
    assert!(
        message
            .starts_with("plugin faulty exceeded its memory limit: tried to grow its memory to 10"),
        "{message}"
    );
    assert!(
        message.ends_with(
            "past its limit of 64 MiB (raise it with --plugin-memory or --plugin-limit faulty.memory=SIZE)"
        ),
        "{message}"
    );
    assert_next_call_works(&faulty);
}

#[test]
fn text_that_is_not_json_is_a_fault_of_the_plugin() {
    let chain = Chain::new(vec![Link {
        plugin: load("faulty"),
        config: vec![("fault".into(), "not-json".into())],
    }]);
    let error = chain.run(&request(&[])).unwrap_err();
    assert!(
        matches!(
            error,
            CallError::Fault {
                kind: FaultKind::NotJson,
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with("plugin faulty returned something that is not JSON: "),
        "{message}"
    );
    assert!(
        message.contains("{ this is not JSON"),
        "the start of the text is quoted: {message}"
    );
}

#[test]
fn json_that_is_not_a_job_is_refused() {
    let chain = Chain::new(vec![Link {
        plugin: load("faulty"),
        config: vec![("fault".into(), "not-an-object".into())],
    }]);
    let error = chain.run(&request(&[])).unwrap_err();
    assert_eq!(
        error.to_string(),
        "plugin faulty returned something that is not a batch/v1 Job: expected a JSON object, got a list"
    );
}

#[test]
fn a_schema_invalid_job_names_the_field_and_the_plugin_that_wrote_it() {
    let chain = Chain::new(vec![
        Link {
            plugin: load("default"),
            config: vec![],
        },
        Link {
            plugin: load("faulty"),
            config: vec![("fault".into(), "invalid-job".into())],
        },
        Link {
            plugin: load("naming"),
            config: vec![("prefix".into(), "etl".into())],
        },
    ]);
    let outcome = chain.run(&request(&[])).expect("the chain itself runs");
    let tracking = Tracking {
        flow_run_id: "run-1".into(),
        claim: "abcd1234".into(),
        agent: "agent".into(),
        namespaces: Vec::new(),
    };
    let error: InvalidJob = job::finalize(&outcome, &tracking).unwrap_err();
    assert_eq!(error.plugin.as_deref(), Some("faulty"));
    assert_eq!(error.path, ".spec.colour");
    assert!(
        error
            .to_string()
            .starts_with("invalid Job (field last changed by plugin faulty): .spec.colour: "),
        "{error}"
    );
}

#[test]
fn rejections_and_faults_reported_by_the_plugin_are_told_apart() {
    let faulty = load("faulty");
    match call(&faulty, "reject") {
        Err(CallError::Rejected { plugin, reason }) => {
            assert_eq!(
                (plugin.as_str(), reason.as_str()),
                ("faulty", "runs of this flow are not allowed here")
            )
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    let (kind, message) = fault_of(call(&faulty, "fault"));
    assert_eq!(kind, FaultKind::PluginError);
    assert_eq!(
        message,
        "plugin faulty reported a fault: the plugin's own error"
    );
}

#[test]
fn a_plugin_gets_no_files_no_environment_and_no_arguments() {
    // The agent's own environment is full; none of it may reach the plugin.
    assert!(std::env::vars().count() > 0);
    let annotations = call(&load("faulty"), "sandbox").unwrap()["metadata"]["annotations"].clone();
    let file = annotations["sandbox/file"].as_str().unwrap();
    assert!(
        file.starts_with("error: "),
        "reading /etc/hostname must fail, got {file:?}"
    );
    let dir = annotations["sandbox/dir"].as_str().unwrap();
    assert!(
        dir.starts_with("error: "),
        "listing the working directory must fail, got {dir:?}"
    );
    assert_eq!(annotations["sandbox/env"], "", "no environment variables");
    assert_eq!(annotations["sandbox/args"], "", "no arguments");
}

#[test]
fn every_call_gets_a_fresh_instance() {
    let faulty = load("faulty");
    for _ in 0..3 {
        let job = call(&faulty, "none").unwrap();
        assert_eq!(
            job["metadata"]["annotations"]["test/calls"], "1",
            "state leaked from an earlier call"
        );
    }
}

#[test]
fn plugin_logs_reach_the_caller_with_their_level() {
    let output = load("faulty")
        .call(&request(&[("fault", "log")]), &job())
        .unwrap();
    assert_eq!(output.logs.len(), 1);
    assert_eq!(
        (output.logs[0].level, output.logs[0].message.as_str()),
        ("info", "hello from the faulty plugin")
    );
}

fn load_error(spec: &PluginSpec) -> String {
    match runtime().load(spec, limits()) {
        Ok(_) => panic!("{} loaded", spec.path.display()),
        Err(error) => error.to_string(),
    }
}

#[test]
fn a_component_of_another_world_is_refused_at_load() {
    let path = plugin("other-world");
    let message = load_error(&spec("other-world", path.clone()));
    assert_eq!(
        message,
        format!(
            "plugin other-world ({}): does not implement the agent's plugin world: it exports greet; \
             a plugin must export agent:plugin/customizer@0.1.x (world `plugin` of wit/plugin.wit)",
            path.display()
        )
    );
}

#[test]
fn a_core_module_a_text_file_and_a_missing_file_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(
        &core,
        wat::parse_str("(module (func (export \"customize\")))").unwrap(),
    )
    .unwrap();
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "just some text").unwrap();
    let missing = dir.path().join("missing.wasm");

    let core_message = load_error(&spec("core", core));
    assert!(
        core_message.contains("a core WebAssembly module, not a component"),
        "{core_message}"
    );
    assert!(load_error(&spec("notes", text)).ends_with("not a WebAssembly file"));
    let missing_message = load_error(&spec("missing", missing.clone()));
    assert!(
        missing_message.starts_with(&format!(
            "plugin missing ({}): cannot read the file: ",
            missing.display()
        )),
        "{missing_message}"
    );
}

#[test]
fn a_pinned_digest_must_match() {
    let path = plugin("naming");
    let digest = {
        use std::process::Command;
        let out = Command::new("sha256sum")
            .arg(&path)
            .output()
            .expect("sha256sum");
        String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let pinned: PluginSpec = format!("{}#sha256={digest}", path.display())
        .parse()
        .unwrap();
    assert_eq!(
        runtime()
            .load(&pinned, limits())
            .expect("the right pin loads")
            .sha256,
        digest
    );

    let wrong = "0".repeat(64);
    let mismatched: PluginSpec = format!("{}#sha256={wrong}", path.display())
        .parse()
        .unwrap();
    match runtime().load(&mismatched, limits()) {
        Err(LoadError::DigestMismatch {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (wrong, digest)),
        Err(other) => panic!("expected a digest mismatch, got {other}"),
        Ok(_) => panic!("a mismatched pin loaded"),
    }
}

#[test]
fn compiled_plugins_are_kept_and_reused_across_runtimes() {
    let cache = tempfile::tempdir().unwrap();
    let options = RuntimeOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeOptions::default()
    };
    let first = Runtime::new(&options)
        .unwrap()
        .load(&spec("naming", plugin("naming")), limits())
        .unwrap();
    assert!(!first.from_cache);
    let second_runtime = Runtime::new(&options).unwrap();
    let second = second_runtime
        .load(&spec("naming", plugin("naming")), limits())
        .unwrap();
    assert!(second.from_cache, "the second runtime compiled again");
    let output = second.call(&request(&[("prefix", "etl")]), &job()).unwrap();
    assert!(
        output.job.contains("\"etl-etl-abcd1234\"") || output.job.contains("\"etl-abcd1234\""),
        "{}",
        output.job
    );
}
