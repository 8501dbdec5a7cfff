//! A plugin that misbehaves on purpose; setting `fault` picks how (and `size` or `seconds` how
//! much). The host must fail only the call it misbehaves in, quickly, with a message that says
//! what happened, and keep its own memory within its limits.

#[cfg(target_arch = "wasm32")]
use agent_plugin_sdk::bindings::exports::agent::plugin::customizer::Guest;
use agent_plugin_sdk::{Error, Plugin, Request, RequestExt, Value, fault, job, json, log, reject};
use std::sync::atomic::{AtomicU32, Ordering};

/// Counts calls within one instance: the host's fresh instance per call keeps it at 1.
static CALLS: AtomicU32 = AtomicU32::new(0);

pub struct Faulty;

impl Plugin for Faulty {
    fn customize(request: &Request, mut job: Value) -> Result<Value, Error> {
        let calls = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        match fault_of(request).as_str() {
            "none" => {}
            "trap" => panic!("faulty plugin asked to trap"),
            "hang" => loop {
                std::hint::spin_loop();
            },
            "allocate" => {
                let big = vec![1u8; 1 << 30];
                log::info(&format!("allocated {} bytes", big.len()));
            }
            "not-an-object" => return Ok(json!(["a", "list"])),
            "invalid-job" => {
                job::pod_spec(&mut job)?.insert("restartPolicy".into(), json!("Sometimes"));
                job::object_at(&mut job, &["spec"])?.insert("colour".into(), json!("blue"));
            }
            "drop-tracking-label" => {
                job::object_at(&mut job, &["metadata", "labels"])?
                    .remove("agent.prefect.io/flow-run-id");
            }
            // A wait in a host call (wasi:clocks + wasi:io/poll), which epoch interruption
            // alone does not stop.
            "sleep" => std::thread::sleep(std::time::Duration::from_secs_f64(number(
                request, "seconds", 10.0,
            ))),
            "stdout-flood" => {
                use std::io::Write;
                let line = "x".repeat(1023) + "\n";
                let mut out = std::io::stdout();
                for _ in 0..number(request, "size", 1024.0) as usize {
                    out.write_all(line.as_bytes())
                        .expect("stdout takes what is written");
                }
                out.flush().expect("stdout flushes");
            }
            "log-flood" => {
                for i in 0..10_000 {
                    log::info(&format!("line {i} {}", "y".repeat(8192)));
                }
            }
            "thread" => {
                std::thread::spawn(|| {}).join().expect("a thread");
            }
            "reject" => return Err(reject("runs of this flow are not allowed here")),
            "fault" => return Err(fault("the plugin's own error")),
            "log" => log::info("hello from the faulty plugin"),
            "sandbox" => probe_sandbox(&mut job)?,
            other => return Err(fault(format!("unknown fault {other:?}"))),
        }
        job::object_at(&mut job, &["metadata", "annotations"])?
            .insert("test/calls".into(), json!(calls.to_string()));
        Ok(job)
    }
}

/// Exported by hand (not with `export_plugin!`) so that it can also return text that is not
/// JSON at all, which the SDK would never produce.
#[cfg(target_arch = "wasm32")]
struct Export;

#[cfg(target_arch = "wasm32")]
impl Guest for Export {
    fn customize(request: Request, job: String) -> Result<String, Error> {
        match fault_of(&request).as_str() {
            "not-json" => return Ok("{ this is not JSON".into()),
            "amplify" => return Ok(amplified(number(&request, "size", 15e6) as usize)),
            "deep" => return Ok(nested(number(&request, "size", 1e6) as usize)),
            _ => {}
        }
        agent_plugin_sdk::run::<Faulty>(request, job)
    }
}

#[cfg(target_arch = "wasm32")]
agent_plugin_sdk::bindings::__export_plugin_world!(Export with_types_in agent_plugin_sdk::bindings);

/// How to misbehave: the setting `fault`, else the run's job variable `fault` (so that one
/// run of a batch can misbehave and the others not), else not at all.
fn fault_of(request: &Request) -> String {
    if let Some(fault) = request.config("fault") {
        return fault.to_string();
    }
    request
        .job_variables()
        .ok()
        .and_then(|v| v.get("fault")?.as_str().map(str::to_string))
        .unwrap_or_else(|| "none".into())
}

/// The setting `key` (or the job variable of that name) as a number, or `default`.
fn number(request: &Request, key: &str, default: f64) -> f64 {
    let variable = || request.job_variables().ok()?.get(key)?.as_f64();
    request
        .config(key)
        .and_then(|v| v.parse().ok())
        .or_else(variable)
        .unwrap_or(default)
}

/// A schema-valid Job with `count` empty args: three bytes each, so a small memory holds
/// millions, and a careless host would build a value, a path and a copy of each.
#[cfg(target_arch = "wasm32")]
fn amplified(count: usize) -> String {
    let mut text = String::from(
        r#"{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"amplified"},"spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"i","args":["#,
    );
    text.reserve(count * 3 + 16);
    for i in 0..count {
        text.push_str(if i == 0 { "\"\"" } else { ",\"\"" });
    }
    text.push_str("]}]}}}}");
    text
}

/// `depth` lists nested in each other.
#[cfg(target_arch = "wasm32")]
fn nested(depth: usize) -> String {
    "[".repeat(depth) + &"]".repeat(depth)
}

/// Tries to read a file, the environment and the arguments, and writes what it got into
/// annotations for the test to read.
fn probe_sandbox(job: &mut Value) -> Result<(), Error> {
    let file = match std::fs::read_to_string("/etc/hostname") {
        Ok(text) => format!("read {} bytes", text.len()),
        Err(e) => format!("error: {e}"),
    };
    let dir = match std::fs::read_dir(".") {
        Ok(entries) => format!("listed {} entries", entries.count()),
        Err(e) => format!("error: {e}"),
    };
    let env: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
    let args: Vec<String> = std::env::args().collect();
    let annotations = job::object_at(job, &["metadata", "annotations"])?;
    annotations.insert("sandbox/file".into(), json!(file));
    annotations.insert("sandbox/dir".into(), json!(dir));
    annotations.insert("sandbox/env".into(), json!(env.join(",")));
    annotations.insert("sandbox/args".into(), json!(args.join(",")));
    Ok(())
}
