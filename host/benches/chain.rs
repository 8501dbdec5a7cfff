//! The plugin chain's cost on a realistic flow run: the stock plugin and three small Rust
//! plugins (naming, resources, policy), each call in a fresh instance as in production.
//!
//! `cargo bench -p agent --bench chain` prints, per plugin, p50/p99 of instantiation and of
//! the call, the chain's total, and compile time cold vs loaded from the precompiled cache.
//! Figures are ratios and percentiles from one run, side by side: absolute times on a shared
//! machine are noisy.

mod common;

use agent::plugins::{Limits, PluginSpec, Runtime, RuntimeOptions};
use agent::stock::STOCK_PLUGIN;
use common::{micros, percentile};
use std::time::{Duration, Instant};

const ITERATIONS: usize = 2000;
const WARMUP: usize = 100;

fn main() {
    let request = common::example_request(|_| {});

    let cache = tempfile::tempdir().unwrap();
    let options = RuntimeOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeOptions::default()
    };
    let runtime = Runtime::new(&options).unwrap();
    let limits = Limits::default();
    let stock_spec = PluginSpec::builtin("default");
    let mut plugins = vec![(
        runtime
            .load_bytes(&stock_spec, STOCK_PLUGIN, limits)
            .unwrap(),
        vec![],
    )];
    for (name, config) in [
        ("naming", vec![("prefix", "etl")]),
        (
            "resources",
            vec![("cpu.max", "2"), ("memory.default", "1Gi")],
        ),
        (
            "policy",
            vec![
                ("allowed-registries", "registry.example.com"),
                ("memory.max", "8Gi"),
            ],
        ),
    ] {
        let spec = PluginSpec {
            name: name.into(),
            path: agent_tests::plugin(name),
            sha256: None,
        };
        let config: Vec<(String, String)> = config
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        plugins.push((runtime.load(&spec, limits).unwrap(), config));
    }

    let cold: Vec<Duration> = plugins.iter().map(|(p, _)| p.compile_time).collect();
    let warm_runtime = Runtime::new(&options).unwrap();
    let warm_stock = warm_runtime
        .load_bytes(&stock_spec, STOCK_PLUGIN, limits)
        .unwrap();
    assert!(warm_stock.from_cache);

    let mut instantiate = vec![Vec::with_capacity(ITERATIONS); plugins.len()];
    let mut call = vec![Vec::with_capacity(ITERATIONS); plugins.len()];
    let mut chain = Vec::with_capacity(ITERATIONS);
    for iteration in 0..WARMUP + ITERATIONS {
        let started = Instant::now();
        let mut job = String::from("{}");
        for (i, (plugin, config)) in plugins.iter().enumerate() {
            let request = agent::plugins::Request {
                config: config.clone(),
                ..request.clone()
            };
            let output = plugin.call(&request, &job).unwrap();
            job = output.job;
            if iteration >= WARMUP {
                instantiate[i].push(output.instantiate_time);
                call[i].push(output.call_time);
            }
        }
        if iteration >= WARMUP {
            chain.push(started.elapsed());
        }
    }

    println!(
        "chain of {} plugins, {ITERATIONS} runs (after {WARMUP} warm-up), fresh instance per call",
        plugins.len()
    );
    println!(
        "{:<10} {:>9} {:>14} {:>14} {:>12} {:>12}",
        "plugin", "size", "instantiate50", "instantiate99", "call p50", "call p99"
    );
    for (i, (plugin, _)) in plugins.iter().enumerate() {
        println!(
            "{:<10} {:>7}KB {:>14} {:>14} {:>12} {:>12}",
            plugin.name,
            plugin.size / 1024,
            micros(percentile(&mut instantiate[i], 50.0)),
            micros(percentile(&mut instantiate[i], 99.0)),
            micros(percentile(&mut call[i], 50.0)),
            micros(percentile(&mut call[i], 99.0)),
        );
    }
    println!(
        "chain total: p50 {} p99 {}",
        micros(percentile(&mut chain, 50.0)),
        micros(percentile(&mut chain, 99.0))
    );
    let cold_stock = cold[0];
    println!(
        "stock plugin load: compile {:.1} ms, from cache {:.2} ms ({:.0}x faster)",
        cold_stock.as_secs_f64() * 1e3,
        warm_stock.compile_time.as_secs_f64() * 1e3,
        cold_stock.as_secs_f64() / warm_stock.compile_time.as_secs_f64()
    );
}
