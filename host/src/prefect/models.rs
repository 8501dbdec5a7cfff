//! The parts of Prefect 3's API objects the agent uses, as the REST API returns them. Unknown
//! fields are ignored, missing optional ones default, so newer servers keep working.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct FlowRun {
    pub id: String,
    pub name: String,
    pub flow_id: String,
    #[serde(default)]
    pub deployment_id: Option<String>,
    #[serde(default)]
    pub work_queue_name: Option<String>,
    #[serde(default)]
    pub work_pool_name: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub labels: Map<String, Value>,
    #[serde(default)]
    pub parameters: Map<String, Value>,
    #[serde(default)]
    pub run_count: u32,
    #[serde(default)]
    pub job_variables: Option<Map<String, Value>>,
    /// The current state's id; after a claim, the id of the PENDING state the claim created.
    #[serde(default)]
    pub state_id: Option<String>,
    /// `SCHEDULED`, `PENDING`, `RUNNING`, `CANCELLING`, `COMPLETED`, …
    #[serde(default)]
    pub state_type: Option<String>,
    /// `namespace:job-name` once a Job runs it.
    #[serde(default)]
    pub infrastructure_pid: Option<String>,
    /// The current state, as far as the agent reads it.
    #[serde(default)]
    pub state: Option<State>,
    /// When a scheduled run is due (RFC 3339).
    #[serde(default)]
    pub next_scheduled_start_time: Option<String>,
    #[serde(default)]
    pub expected_start_time: Option<String>,
    /// Every other field, as the API gave it: Prefect's worker renders a templated Job name
    /// against the whole flow run (`{{ ctx.flow_run.flow_version }}`).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// A flow run's state.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct State {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    /// When the run entered it (RFC 3339).
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl FlowRun {
    /// When the run is due to start; `None` when the server did not say (due now).
    pub fn due_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let time = self
            .next_scheduled_start_time
            .as_deref()
            .or(self.expected_start_time.as_deref())?;
        chrono::DateTime::parse_from_rfc3339(time)
            .ok()
            .map(|t| t.to_utc())
    }

    /// Whether the run has reached a final state (nothing will change it but a new run).
    pub fn is_final(&self) -> bool {
        matches!(
            self.state_type.as_deref(),
            Some("COMPLETED" | "FAILED" | "CRASHED" | "CANCELLED")
        )
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Flow {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Deployment {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub updated: Option<String>,
    #[serde(default)]
    pub job_variables: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WorkPool {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub base_job_template: Value,
}

/// A flow run with what it belongs to: everything needed to build its Job.
#[derive(Debug, Clone, Deserialize)]
pub struct RunContext {
    pub flow_run: FlowRun,
    pub flow: Flow,
    #[serde(default)]
    pub deployment: Option<Deployment>,
    #[serde(default)]
    pub work_pool: Option<WorkPool>,
}
