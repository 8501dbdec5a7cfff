//! Is the emulator fast enough not to be the bottleneck of our benchmarks? 1,000 Jobs created
//! through kube-rs (16 at a time) while 3 watchers (Jobs, Pods, Events) follow, until every Job
//! is Complete; then all deleted. Prints creates/s, time to all complete, events seen per
//! watcher, and the process's RSS at each stage (emulator and client share the process).
//!
//! `cargo bench -p kube-emulator --bench scale`

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube_emulator::{Config, Emulator};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const JOBS: usize = 1000;
const CONCURRENCY: usize = 16;

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn watch_count<K>(api: Api<K>, counter: Arc<AtomicUsize>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    tokio::spawn(async move {
        let mut stream = api
            .watch(&WatchParams::default(), "0")
            .await
            .unwrap()
            .boxed();
        while let Ok(Some(event)) = stream.try_next().await {
            if !matches!(event, WatchEvent::Bookmark(_)) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
}

#[tokio::main]
async fn main() {
    let emulator = Emulator::start(Config {
        time_scale: 0.01,
        history: 100_000,
        ..Config::default()
    })
    .await
    .unwrap();
    let kubeconfig = Kubeconfig::read_from(emulator.kubeconfig()).unwrap();
    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap(),
    )
    .unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let counters: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    watch_count(jobs.clone(), counters[0].clone());
    watch_count(
        Api::<Pod>::namespaced(client.clone(), "default"),
        counters[1].clone(),
    );
    watch_count(
        Api::<Event>::namespaced(client.clone(), "default"),
        counters[2].clone(),
    );
    let rss_start = rss_mib();

    let started = Instant::now();
    futures::stream::iter(0..JOBS)
        .for_each_concurrent(CONCURRENCY, |i| {
            let jobs = jobs.clone();
            async move {
                let job: Job = serde_json::from_value(json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": format!("load-{i}")},
                    "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}}})).unwrap();
                jobs.create(&PostParams::default(), &job).await.unwrap();
            }
        })
        .await;
    let created = started.elapsed();
    loop {
        let list = jobs.list(&ListParams::default()).await.unwrap();
        let complete = list
            .items
            .iter()
            .filter(|j| j.status.as_ref().and_then(|s| s.succeeded) == Some(1))
            .count();
        if complete == JOBS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let completed = started.elapsed();
    let rss_full = rss_mib();
    let objects_full = emulator.object_count();

    futures::stream::iter(0..JOBS)
        .for_each_concurrent(CONCURRENCY, |i| {
            let jobs = jobs.clone();
            async move {
                jobs.delete(&format!("load-{i}"), &DeleteParams::background())
                    .await
                    .unwrap();
            }
        })
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    println!(
        "{JOBS} Jobs, {CONCURRENCY} concurrent creates, 3 watchers (Jobs, Pods, Events), time scale 0.01"
    );
    println!(
        "creates: {:.2} s ({:.0} Jobs/s)",
        created.as_secs_f64(),
        JOBS as f64 / created.as_secs_f64()
    );
    println!("all Complete after {:.2} s", completed.as_secs_f64());
    println!(
        "watch events seen: jobs {}, pods {}, events {}",
        counters[0].load(Ordering::Relaxed),
        counters[1].load(Ordering::Relaxed),
        counters[2].load(Ordering::Relaxed)
    );
    println!(
        "objects stored at peak: {objects_full}; after deleting the Jobs: {}",
        emulator.object_count()
    );
    println!("RSS: start {rss_start:.0} MiB, at peak {rss_full:.0} MiB");
}
