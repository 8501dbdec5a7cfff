//! What a plugin costs by the language it is written in: the Python, JavaScript and C examples
//! (built from source by their `build.sh`) beside the Rust `resources` plugin, each called on
//! the stock plugin's Job for the example flow run, a fresh instance per call.
//!
//! `cargo bench -p agent --bench languages` prints per plugin: component size, compile time
//! (cold) and load time from the precompiled cache, and p50/p99 of instantiation and of the
//! call; each three times: on the agent's engine (initial memory mapped copy-on-write, 32 MiB of
//! each slot kept resident), with initial memory copied, with slots handed back to the kernel. Figures from one run, side by side: absolute times on a shared machine
//! are noisy.

mod common;

use agent::plugins::{Limits, PluginSpec, Runtime, RuntimeOptions};
use agent::stock::STOCK_PLUGIN;
use common::{micros, percentile};
use std::time::Duration;

const ITERATIONS: usize = 500;
const WARMUP: usize = 20;

fn main() {
    let request = common::example_request(|run| {
        run["flow_run"]["tags"] = serde_json::json!(["etl", "cost-center:finance"]);
        run["flow_run"]["job_variables"]["gpu"] = serde_json::json!("a100");
    });

    let cache = tempfile::tempdir().unwrap();
    let options = RuntimeOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeOptions::default()
    };
    let runtime = Runtime::new(&options).unwrap();
    let limits = Limits {
        timeout: Duration::from_secs(10),
        ..Limits::default()
    };
    let stock = runtime
        .load_bytes(&PluginSpec::builtin("default"), STOCK_PLUGIN, limits)
        .unwrap();
    let job = stock.call(&request, "{}").unwrap().job;

    let plugins = [
        (
            "rust",
            agent_tests::plugin("resources"),
            vec![("memory.max", "4Gi")],
        ),
        (
            "python",
            agent_tests::example_plugin("python-cost-center"),
            vec![],
        ),
        (
            "js",
            agent_tests::example_plugin("js-gpu-placement"),
            vec![],
        ),
        (
            "c",
            agent_tests::example_plugin("c-resource-caps"),
            vec![("memory.max", "4Gi")],
        ),
    ];
    println!("{ITERATIONS} calls each (after {WARMUP} warm-up), fresh instance per call");
    println!(
        "{:<14} {:>9} {:>11} {:>11} {:>14} {:>14} {:>12} {:>12}",
        "language",
        "size",
        "compile",
        "cached",
        "instantiate50",
        "instantiate99",
        "call p50",
        "call p99"
    );
    // The same plugins on engines that copy initial memory into each instance ("copied"), or
    // hand a slot's memory back to the kernel after each call ("returned", --plugin-keep-resident
    // 0): what copy-on-write mapping and resident slots save, side by side.
    let copying = Runtime::new(&RuntimeOptions {
        memory_init_cow: false,
        memory_keep_resident: 0,
        ..options.clone()
    })
    .unwrap();
    let returning = Runtime::new(&RuntimeOptions {
        memory_keep_resident: 0,
        ..options.clone()
    })
    .unwrap();
    for (language, path, config) in plugins {
        let spec = PluginSpec {
            name: language.into(),
            path,
            sha256: None,
        };
        let plugin = runtime.load(&spec, limits).unwrap();
        let cached = Runtime::new(&options).unwrap().load(&spec, limits).unwrap();
        assert!(cached.from_cache);
        let request = agent::plugins::Request {
            config: config
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..request.clone()
        };
        let copied = copying.load(&spec, limits).unwrap();
        let returned = returning.load(&spec, limits).unwrap();
        for (label, plugin, compile) in [
            (language.to_string(), &plugin, plugin.compile_time),
            (format!("{language}, copied"), &copied, plugin.compile_time),
            (
                format!("{language}, returned"),
                &returned,
                plugin.compile_time,
            ),
        ] {
            let (mut instantiate, mut call) = (Vec::new(), Vec::new());
            for iteration in 0..WARMUP + ITERATIONS {
                let output = plugin.call(&request, &job).unwrap();
                if iteration >= WARMUP {
                    instantiate.push(output.instantiate_time);
                    call.push(output.call_time);
                }
            }
            println!(
                "{:<14} {:>7}KB {:>8.0} ms {:>8.2} ms {:>14} {:>14} {:>12} {:>12}",
                label,
                plugin.size / 1024,
                compile.as_secs_f64() * 1e3,
                cached.compile_time.as_secs_f64() * 1e3,
                micros(percentile(&mut instantiate, 50.0)),
                micros(percentile(&mut instantiate, 99.0)),
                micros(percentile(&mut call, 50.0)),
                micros(percentile(&mut call, 99.0)),
            );
        }
    }
}
