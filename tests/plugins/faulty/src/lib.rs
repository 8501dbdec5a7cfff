//! A plugin that misbehaves on purpose; setting `fault` picks how. The host must fail only the
//! call it misbehaves in, with a message that says what happened.

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
        match request.config("fault").unwrap_or("none") {
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
        if request.config("fault") == Some("not-json") {
            return Ok("{ this is not JSON".into());
        }
        agent_plugin_sdk::run::<Faulty>(request, job)
    }
}

#[cfg(target_arch = "wasm32")]
agent_plugin_sdk::bindings::__export_plugin_world!(Export with_types_in agent_plugin_sdk::bindings);

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
