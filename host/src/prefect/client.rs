//! The calls a Prefect worker makes, over reqwest: read the pool, heartbeat, fetch scheduled
//! runs, read deployments and flows, propose states, record the infrastructure, write logs.
//!
//! Every request has a timeout; connection errors, timeouts, truncated or undecodable answers,
//! 429 and 5xx are retried with exponential back-off and full jitter; other 4xx are not (they
//! will not get better).

use super::models::{Deployment, Flow, FlowRun, WorkPool};
use crate::metrics::{Api, Metrics};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Per request, unless set (Prefect's client waits 60 s too).
const TIMEOUT: Duration = Duration::from_secs(60);
/// How long a call keeps retrying by default: long enough to ride out a server restart.
const PATIENCE: Duration = Duration::from_secs(90);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(8);

#[derive(Debug, thiserror::Error)]
pub enum PrefectError {
    #[error(
        "cannot reach the Prefect API at {url} ({detail}); {}",
        reach_hint(detail)
    )]
    Unreachable { url: String, detail: String },
    #[error(
        "the Prefect API refused the credentials ({status}) for {what}; check PREFECT_API_KEY / PREFECT_API_AUTH_STRING"
    )]
    Unauthorized { status: u16, what: String },
    #[error("{what}: not found in Prefect")]
    NotFound { what: String },
    #[error("{what}: the Prefect API answered {status}: {body}")]
    Status {
        what: String,
        status: u16,
        body: String,
    },
    #[error("{what}: unexpected answer from the Prefect API: {detail}")]
    Decode { what: String, detail: String },
}

/// An error with its causes (reqwest's message alone says only "error sending request").
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// What to check when the API cannot be reached, from what went wrong.
fn reach_hint(detail: &str) -> &'static str {
    if detail.contains("certificate") || detail.contains("UnknownIssuer") {
        "the server's TLS certificate is not trusted: give its certificate authority in PREFECT_API_SSL_CERT_FILE (or --api-ca-file)"
    } else {
        "check PREFECT_API_URL / --api-url and that the server is up"
    }
}

impl PrefectError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, PrefectError::NotFound { .. })
    }
}

/// How the server answered a proposed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProposalStatus {
    /// The run is now in the proposed state.
    Accept,
    /// Another worker got there first, or the run moved on: leave it.
    Abort,
    Reject,
    /// Ask again later.
    Wait,
}

#[derive(Debug, Clone)]
pub struct Proposal {
    pub status: ProposalStatus,
    /// The id of the run's state after the proposal (the new state when accepted).
    pub state_id: Option<String>,
    pub state_type: Option<String>,
    pub reason: Option<String>,
}

/// Where the API is and how to reach it.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    pub api_url: String,
    /// Sent as `Authorization: Bearer`.
    pub key: Option<String>,
    /// `user:password`, sent as `Authorization: Basic` when there is no key.
    pub auth_string: Option<String>,
    /// PEM certificate authorities to trust, besides the system's.
    pub ca_file: Option<std::path::PathBuf>,
    pub insecure_skip_verify: bool,
    /// Headers for every request.
    pub headers: Vec<(String, String)>,
    /// Per request; `Duration::ZERO` means `TIMEOUT`.
    pub request_timeout: Duration,
}

#[derive(Clone)]
pub struct PrefectClient {
    http: reqwest::Client,
    api: String,
    authorization: Option<String>,
    patience: Duration,
    metrics: Arc<Metrics>,
}

impl PrefectClient {
    /// A client of the API `options` describe; an error says which option is wrong.
    pub fn new(options: &ClientOptions, metrics: Arc<Metrics>) -> Result<Self, String> {
        use base64::Engine;
        let authorization = match (&options.key, &options.auth_string) {
            (Some(key), _) => Some(format!("Bearer {key}")),
            (None, Some(pair)) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )),
            (None, None) => None,
        };
        let timeout = if options.request_timeout.is_zero() {
            TIMEOUT
        } else {
            options.request_timeout
        };
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &options.headers {
            let header = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("{name:?} is not a valid HTTP header name (--api-header / PREFECT_CLIENT_CUSTOM_HEADERS)"))?;
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| format!("the value of header {name:?} is not valid in HTTP (--api-header / PREFECT_CLIENT_CUSTOM_HEADERS)"))?;
            headers.insert(header, value);
        }
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("prefect-agent/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .danger_accept_invalid_certs(options.insecure_skip_verify);
        if let Some(path) = &options.ca_file {
            for certificate in read_certificates(path)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .build()
            .map_err(|e| format!("cannot set up the HTTP client for the Prefect API: {e}"))?;
        Ok(PrefectClient {
            http,
            api: options.api_url.trim_end_matches('/').to_string(),
            authorization,
            patience: PATIENCE,
            metrics,
        })
    }

    /// The same client retrying for at most `patience` (start-up checks fail fast).
    pub fn with_patience(&self, patience: Duration) -> Self {
        PrefectClient {
            patience,
            ..self.clone()
        }
    }

    pub fn api_url(&self) -> &str {
        &self.api
    }

    /// Sends one request, retrying what can get better.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<T, PrefectError> {
        let url = format!("{}{path}", self.api);
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        let started = std::time::Instant::now();
        loop {
            let mut request = self.http.request(method.clone(), &url);
            if let Some(authorization) = &self.authorization {
                request = request.header(reqwest::header::AUTHORIZATION, authorization);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let retry_reason = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    if status.is_success() {
                        match decode(response).await {
                            Ok(value) => return Ok(value),
                            // A truncated or garbled answer: the request may have been applied,
                            // and every call here is safe to repeat.
                            Err(detail) => {
                                self.metrics.api_error(Api::prefect, "decode");
                                format!("unreadable answer: {detail}")
                            }
                        }
                    } else {
                        let body = response.text().await.unwrap_or_default();
                        self.metrics.api_error(Api::prefect, status.as_u16());
                        match status {
                            StatusCode::TOO_MANY_REQUESTS => format!("429 {body}"),
                            s if s.is_server_error() => format!("{s} {body}"),
                            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                                return Err(PrefectError::Unauthorized {
                                    status: status.as_u16(),
                                    what: what.into(),
                                });
                            }
                            StatusCode::NOT_FOUND => {
                                return Err(PrefectError::NotFound { what: what.into() });
                            }
                            _ => {
                                return Err(PrefectError::Status {
                                    what: what.into(),
                                    status: status.as_u16(),
                                    body,
                                });
                            }
                        }
                    }
                }
                Err(e) => {
                    self.metrics.api_error(Api::prefect, "transport");
                    with_causes(&e)
                }
            };
            if started.elapsed() >= self.patience {
                return Err(PrefectError::Unreachable {
                    url,
                    detail: format!("{what}: {retry_reason} (after {attempt} attempts)"),
                });
            }
            tracing::debug!(
                what,
                attempt,
                "Prefect API request failed, retrying: {retry_reason}"
            );
            // Full jitter (a random wait up to the back-off): several agents retrying together
            // do not retry in step.
            tokio::time::sleep(backoff.mul_f64(fastrand::f64())).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            attempt += 1;
        }
    }

    /// The server's version (`/admin/version`); also proves the API is reachable.
    pub async fn version(&self) -> Result<String, PrefectError> {
        self.call(
            Method::GET,
            "/admin/version",
            None,
            "reading the server version",
        )
        .await
    }

    pub async fn read_work_pool(&self, pool: &str) -> Result<WorkPool, PrefectError> {
        self.call(
            Method::GET,
            &format!("/work_pools/{pool}"),
            None,
            &format!("work pool {pool:?}"),
        )
        .await
    }

    /// Creates a Kubernetes work pool with `base_job_template`, as `prefect worker start` does
    /// for a missing pool.
    pub async fn create_work_pool(
        &self,
        pool: &str,
        base_job_template: &Value,
    ) -> Result<WorkPool, PrefectError> {
        let body =
            json!({"name": pool, "type": "kubernetes", "base_job_template": base_job_template});
        self.call(
            Method::POST,
            "/work_pools/",
            Some(&body),
            &format!("creating work pool {pool:?}"),
        )
        .await
    }

    pub async fn heartbeat(
        &self,
        pool: &str,
        worker: &str,
        interval: Duration,
    ) -> Result<(), PrefectError> {
        let body = json!({"name": worker, "heartbeat_interval_seconds": interval.as_secs().max(1)});
        let _: Value = self
            .call(
                Method::POST,
                &format!("/work_pools/{pool}/workers/heartbeat"),
                Some(&body),
                "worker heartbeat",
            )
            .await?;
        Ok(())
    }

    /// Runs of `pool` scheduled before `before`, from `queues` (all queues when empty).
    pub async fn scheduled_flow_runs(
        &self,
        pool: &str,
        queues: &[String],
        before: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<FlowRun>, PrefectError> {
        let mut body = json!({"scheduled_before": before.to_rfc3339_opts(chrono::SecondsFormat::Micros, true), "limit": limit});
        if !queues.is_empty() {
            body["work_queue_names"] = json!(queues);
        }
        #[derive(serde::Deserialize)]
        struct Scheduled {
            flow_run: FlowRun,
        }
        let runs: Vec<Scheduled> = self
            .call(
                Method::POST,
                &format!("/work_pools/{pool}/get_scheduled_flow_runs"),
                Some(&body),
                "fetching scheduled flow runs",
            )
            .await?;
        Ok(runs.into_iter().map(|s| s.flow_run).collect())
    }

    pub async fn read_flow_run(&self, id: &str) -> Result<FlowRun, PrefectError> {
        self.call(
            Method::GET,
            &format!("/flow_runs/{id}"),
            None,
            &format!("flow run {id}"),
        )
        .await
    }

    /// The id and message of the run's current state.
    pub async fn read_flow_run_state(
        &self,
        id: &str,
    ) -> Result<(Option<String>, Option<String>), PrefectError> {
        let run: Value = self
            .call(
                Method::GET,
                &format!("/flow_runs/{id}"),
                None,
                &format!("flow run {id}"),
            )
            .await?;
        let field = |pointer: &str| {
            run.pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        Ok((field("/state/id"), field("/state/message")))
    }

    /// Runs of `pool` in CANCELLING.
    pub async fn cancelling_flow_runs(&self, pool: &str) -> Result<Vec<FlowRun>, PrefectError> {
        self.call(
            Method::POST,
            "/flow_runs/filter",
            Some(&json!({
                "flow_runs": {"state": {"type": {"any_": ["CANCELLING"]}}},
                "work_pools": {"name": {"any_": [pool]}},
                "limit": 200,
            })),
            &format!("cancelling flow runs of pool {pool:?}"),
        )
        .await
    }

    /// Runs of `pool` in PENDING, oldest first, `limit` from `offset`.
    pub async fn pending_flow_runs(
        &self,
        pool: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<FlowRun>, PrefectError> {
        self.call(
            Method::POST,
            "/flow_runs/filter",
            Some(&json!({
                "flow_runs": {"state": {"type": {"any_": ["PENDING"]}}},
                "work_pools": {"name": {"any_": [pool]}},
                "sort": "EXPECTED_START_TIME_ASC",
                "offset": offset,
                "limit": limit,
            })),
            &format!("pending flow runs of pool {pool:?}"),
        )
        .await
    }

    /// The runs with these ids (those that exist), in one call per 200.
    pub async fn flow_runs_by_id(&self, ids: &[String]) -> Result<Vec<FlowRun>, PrefectError> {
        let mut runs = Vec::new();
        for chunk in ids.chunks(200) {
            let found: Vec<FlowRun> = self
                .call(
                    Method::POST,
                    "/flow_runs/filter",
                    Some(&json!({"flow_runs": {"id": {"any_": chunk}}, "limit": 200})),
                    &format!("{} flow runs", chunk.len()),
                )
                .await?;
            runs.extend(found);
        }
        Ok(runs)
    }

    pub async fn read_deployment(&self, id: &str) -> Result<Deployment, PrefectError> {
        self.call(
            Method::GET,
            &format!("/deployments/{id}"),
            None,
            &format!("deployment {id}"),
        )
        .await
    }

    /// A block document's `data`, secrets included (as the worker reads them for templates).
    pub async fn read_block_document_data(
        &self,
        block_type: &str,
        name: &str,
    ) -> Result<Value, PrefectError> {
        let document: Value = self
            .call(
                Method::GET,
                &format!("/block_types/slug/{block_type}/block_documents/name/{name}?include_secrets=true"),
                None,
                &format!("block {name:?} of type {block_type:?}"),
            )
            .await?;
        Ok(document.get("data").cloned().unwrap_or(Value::Null))
    }

    /// A variable's value; `None` when there is no variable of that name.
    pub async fn read_variable(&self, name: &str) -> Result<Option<Value>, PrefectError> {
        let result: Result<Value, PrefectError> = self
            .call(
                Method::GET,
                &format!("/variables/name/{name}"),
                None,
                &format!("variable {name:?}"),
            )
            .await;
        match result {
            Ok(variable) => Ok(variable.get("value").cloned()),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn read_flow(&self, id: &str) -> Result<Flow, PrefectError> {
        self.call(
            Method::GET,
            &format!("/flows/{id}"),
            None,
            &format!("flow {id}"),
        )
        .await
    }

    /// Proposes a state (`PENDING` to claim, `CRASHED`, `FAILED`, …) through the orchestration
    /// rules; only `Accept` means the run is in it now.
    pub async fn propose_state(
        &self,
        run: &str,
        state_type: &str,
        message: Option<&str>,
    ) -> Result<Proposal, PrefectError> {
        let name = pascal_case(state_type);
        let body = json!({"state": {"type": state_type, "name": name, "message": message}});
        let answer: Value = self
            .call(
                Method::POST,
                &format!("/flow_runs/{run}/set_state"),
                Some(&body),
                &format!("proposing {state_type} for flow run {run}"),
            )
            .await?;
        let status = match answer["status"].as_str() {
            Some("ACCEPT") => ProposalStatus::Accept,
            Some("ABORT") => ProposalStatus::Abort,
            Some("REJECT") => ProposalStatus::Reject,
            Some("WAIT") => ProposalStatus::Wait,
            other => {
                return Err(PrefectError::Decode {
                    what: format!("proposing {state_type} for flow run {run}"),
                    detail: format!("unknown status {other:?}"),
                });
            }
        };
        Ok(Proposal {
            status,
            state_id: answer
                .pointer("/state/id")
                .and_then(Value::as_str)
                .map(str::to_string),
            state_type: answer
                .pointer("/state/type")
                .and_then(Value::as_str)
                .map(str::to_string),
            reason: answer
                .pointer("/details/reason")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }

    /// Records where the run runs (`namespace:job-name`), as Prefect's worker does.
    pub async fn set_infrastructure_pid(&self, run: &str, pid: &str) -> Result<(), PrefectError> {
        let _: Value = self
            .call(
                Method::PATCH,
                &format!("/flow_runs/{run}"),
                Some(&json!({"infrastructure_pid": pid})),
                &format!("recording the Job of flow run {run}"),
            )
            .await?;
        Ok(())
    }

    /// The run's latest log messages (up to 200), for not telling a run twice what it was told
    /// before a restart.
    pub async fn recent_log_messages(&self, run: &str) -> Result<Vec<String>, PrefectError> {
        let logs: Vec<Value> = self
            .call(
                Method::POST,
                "/logs/filter",
                Some(&json!({"logs": {"flow_run_id": {"any_": [run]}}, "sort": "TIMESTAMP_DESC", "limit": 200})),
                &format!("reading logs of flow run {run}"),
            )
            .await?;
        Ok(logs
            .iter()
            .filter_map(|l| l.get("message")?.as_str().map(str::to_string))
            .collect())
    }

    /// Lines for runs' logs (a JSON list of Prefect's `LogCreate`), in one request.
    /// Records a batch of events (`POST /events`, a list).
    pub async fn emit_events(&self, events: &Value) -> Result<(), PrefectError> {
        let _: Value = self
            .call(Method::POST, "/events", Some(events), "emitting events")
            .await?;
        Ok(())
    }

    /// Merges `labels` into the run's labels, as Prefect's worker labels the runs it submits.
    pub async fn update_flow_run_labels(
        &self,
        id: &str,
        labels: &Value,
    ) -> Result<(), PrefectError> {
        let _: Value = self
            .call(
                Method::PATCH,
                &format!("/flow_runs/{id}/labels"),
                Some(labels),
                &format!("labelling flow run {id}"),
            )
            .await?;
        Ok(())
    }

    pub async fn write_logs(&self, lines: &Value) -> Result<(), PrefectError> {
        let _: Value = self
            .call(
                Method::POST,
                "/logs/",
                Some(lines),
                "writing flow runs' logs",
            )
            .await?;
        Ok(())
    }
}

/// The certificates of a PEM file (`PREFECT_API_SSL_CERT_FILE`), each named in errors.
fn read_certificates(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| {
        format!(
            "PREFECT_API_SSL_CERT_FILE / --api-ca-file {}: cannot read it: {e}",
            path.display()
        )
    })?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        format!(
            "PREFECT_API_SSL_CERT_FILE / --api-ca-file {}: not PEM certificates: {e}",
            path.display()
        )
    })?;
    if certificates.is_empty() {
        return Err(format!(
            "PREFECT_API_SSL_CERT_FILE / --api-ca-file {}: holds no certificate (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certificates)
}

/// The body as JSON (an empty body as `null`); `Err` says what was wrong with it.
async fn decode<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, String> {
    let text = response.text().await.map_err(|e| e.to_string())?;
    let text = if text.is_empty() {
        "null"
    } else {
        text.as_str()
    };
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// `PENDING` → `Pending`, as Prefect names states.
fn pascal_case(state_type: &str) -> String {
    let lower = state_type.to_ascii_lowercase();
    let mut chars = lower.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}
