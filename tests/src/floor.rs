//! The bare-client floor for benchmarks: what draining a pool costs with no agent logic at
//! all. Per run, the Prefect calls an agent cannot do without (claim, read the deployment and
//! the flow, record the Job, one log line) with a bare HTTP client, `concurrency` at a time,
//! batches of `concurrency × 4` fetched until the pool is empty. No Kubernetes call: the
//! floor is Prefect's side only, so that a ratio to it shows what the agent adds.

use futures::StreamExt;
use serde_json::{Value, json};

/// Drains the pool `pool` of the API `api` (`http://…/api`); the runs claimed.
pub async fn drain(api: &str, pool: &str, concurrency: usize) -> usize {
    let http = reqwest::Client::new();
    let mut claimed = 0;
    loop {
        let body = json!({"scheduled_before": chrono_now(), "limit": concurrency * 4});
        let scheduled = call(
            &http,
            reqwest::Method::POST,
            &format!("{api}/work_pools/{pool}/get_scheduled_flow_runs"),
            Some(body),
        )
        .await;
        let batch: Vec<Value> = scheduled
            .as_array()
            .map(|runs| runs.iter().map(|s| s["flow_run"].clone()).collect())
            .unwrap_or_default();
        if batch.is_empty() {
            return claimed;
        }
        claimed += futures::stream::iter(batch)
            .map(|run| {
                let http = http.clone();
                async move { submit(&http, api, &run).await as usize }
            })
            .buffer_unordered(concurrency)
            .fold(0, |sum, one| async move { sum + one })
            .await;
    }
}

/// One run's calls; whether the claim was accepted.
async fn submit(http: &reqwest::Client, api: &str, run: &Value) -> bool {
    use reqwest::Method;
    let id = run["id"].as_str().unwrap_or_default();
    let claim = call(
        http,
        Method::POST,
        &format!("{api}/flow_runs/{id}/set_state"),
        Some(json!({"state": {"type": "PENDING", "name": "Pending"}})),
    )
    .await;
    if claim["status"] != "ACCEPT" {
        return false;
    }
    let deployment = run["deployment_id"].as_str().unwrap_or_default();
    call(
        http,
        Method::GET,
        &format!("{api}/deployments/{deployment}"),
        None,
    )
    .await;
    let flow = run["flow_id"].as_str().unwrap_or_default();
    call(http, Method::GET, &format!("{api}/flows/{flow}"), None).await;
    call(
        http,
        Method::PATCH,
        &format!("{api}/flow_runs/{id}"),
        Some(json!({"infrastructure_pid": "default:floor"})),
    )
    .await;
    call(
        http,
        Method::POST,
        &format!("{api}/logs/"),
        Some(json!([{"name": "floor", "level": 20, "message": "Submitted", "flow_run_id": id, "timestamp": chrono_now()}])),
    )
    .await;
    true
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> Value {
    let mut request = http.request(method, url);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("the Prefect server answers");
    let text = response.text().await.unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn chrono_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
