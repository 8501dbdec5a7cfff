//! Run a plugin natively in unit tests, without building a component:
//!
//! ```no_run
//! use agent_plugin_sdk::{Error, Plugin, Request, RequestExt, Value, json, testing};
//!
//! struct Naming;
//! impl Plugin for Naming {
//!     fn customize(request: &Request, mut job: Value) -> Result<Value, Error> {
//!         let prefix = request.config("prefix").unwrap_or_default();
//!         let name = job["metadata"]["name"].as_str().unwrap_or_default().to_string();
//!         job["metadata"]["name"] = format!("{prefix}-{name}").into();
//!         Ok(job)
//!     }
//! }
//!
//! let job = testing::customize::<Naming>(
//!     &testing::request(&[("prefix", "etl")]),
//!     json!({"metadata": {"name": "crimson-beaver-k3x9"}}),
//! );
//! assert_eq!(job.unwrap()["metadata"]["name"], "etl-crimson-beaver-k3x9");
//! ```
//!
//! The plugin goes through the same JSON text round trip as in the agent.

use crate::{AgentSettings, Error, FlowRun, Plugin, Request, Value};

/// A request for a minimal flow run (`test-run` of flow `test-flow`, tags none, job variables
/// `{}`) with the plugin settings `config`.
pub fn request(config: &[(&str, &str)]) -> Request {
    Request {
        flow_run: FlowRun {
            id: "00000000-0000-4000-8000-000000000001".into(),
            name: "test-run".into(),
            flow_id: "00000000-0000-4000-8000-000000000002".into(),
            flow_name: "test-flow".into(),
            deployment_id: None,
            deployment_name: None,
            deployment_updated: None,
            work_pool_id: None,
            work_pool_name: None,
            work_queue_name: None,
            tags: Vec::new(),
            labels: Vec::new(),
            parameters: "{}".into(),
            run_count: 0,
        },
        agent: AgentSettings {
            name: "test-agent".into(),
            namespace: "default".into(),
            api_url: None,
            api_key_secret: None,
            service_account_name: None,
            image_pull_secrets: Vec::new(),
            env: Vec::new(),
            labels: Vec::new(),
            default_image: "prefecthq/prefect:3-latest".into(),
            prefect_version: None,
        },
        job_variables: "{}".into(),
        base_job_template: "{}".into(),
        job_name_suffix: "k3x9a2b1".into(),
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// `request` with `job_variables` (a JSON object).
pub fn with_job_variables(mut request: Request, job_variables: Value) -> Request {
    request.job_variables = job_variables.to_string();
    request
}

/// Calls plugin `P` as the agent would, natively.
pub fn customize<P: Plugin>(request: &Request, job: Value) -> Result<Value, Error> {
    let text = crate::run::<P>(request.clone(), job.to_string())?;
    Ok(serde_json::from_str(&text).expect("run returns JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RequestExt;
    use serde_json::json;

    struct Team;
    impl Plugin for Team {
        fn customize(request: &Request, mut job: Value) -> Result<Value, Error> {
            let team = request
                .config("team")
                .ok_or_else(|| crate::reject("no team"))?;
            crate::job::set_label(&mut job, "team", team)?;
            Ok(job)
        }
    }

    #[test]
    fn a_plugin_runs_natively_with_its_settings() {
        let job = customize::<Team>(&request(&[("team", "data")]), json!({})).unwrap();
        assert_eq!(job["metadata"]["labels"]["team"], "data");
        let refused = customize::<Team>(&request(&[]), json!({})).unwrap_err();
        assert!(matches!(refused, Error::Rejected(reason) if reason == "no team"));
    }
}
