//! Prefect events the agent emits, as Prefect's Kubernetes worker and its observer do: the
//! worker's `prefect.worker.started` / `stopped` / `submitted-flow-run` / `executed-flow-run`,
//! and `prefect.kubernetes.pod.<phase>` for the pods of its Jobs. They go out batched
//! (`POST /events`, a list), never hold up a submission and never fail a run: a server slow to
//! take them costs events, counted in `/metrics`, not runs.

use super::PrefectClient;
use super::batch::{Batcher, Send};
use crate::metrics::Metrics;
use crate::prefect::models::{Deployment, Flow, FlowRun, WorkPool};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// Prefect's worker type for this agent: it stands in for the Kubernetes worker.
pub const WORKER_TYPE: &str = "kubernetes";

/// An event to emit.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub event: String,
    pub occurred: chrono::DateTime<chrono::Utc>,
    pub resource: Map<String, Value>,
    pub related: Vec<Value>,
    pub follows: Option<String>,
}

impl Event {
    pub fn new(event: &str, resource: Map<String, Value>, related: Vec<Value>) -> Self {
        Event {
            id: uuid::Uuid::new_v4().to_string(),
            event: event.to_string(),
            occurred: chrono::Utc::now(),
            resource,
            related,
            follows: None,
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "event": self.event,
            "occurred": self.occurred.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "resource": self.resource,
            "related": self.related,
            "payload": {},
            "follows": self.follows,
        })
    }
}

/// The worker the events are about: this agent, as Prefect's worker names itself.
#[derive(Debug, Clone)]
pub struct Worker {
    pub name: String,
    pub version: String,
    pub pool: WorkPool,
}

impl Worker {
    /// `prefect.worker.kubernetes.<name-slug>`, as Prefect's worker's `_event_resource`.
    pub fn resource(&self) -> Map<String, Value> {
        let mut resource = Map::new();
        resource.insert("prefect.resource.id".into(), self.resource_id().into());
        resource.insert("prefect.resource.name".into(), self.name.clone().into());
        resource.insert("prefect.version".into(), self.version.clone().into());
        resource.insert("prefect.worker-type".into(), WORKER_TYPE.into());
        resource
    }

    pub fn resource_id(&self) -> String {
        format!("prefect.worker.{WORKER_TYPE}.{}", slug::slugify(&self.name))
    }

    pub fn pool_related(&self) -> Value {
        related("work-pool", &self.pool.id, Some(&self.pool.name))
    }

    /// The labels Prefect's worker gives each run it submits.
    pub fn run_labels(&self) -> Value {
        json!({
            "prefect.worker.name": self.name,
            "prefect.worker.type": WORKER_TYPE,
            "prefect.work-pool.name": self.pool.name,
            "prefect.work-pool.id": self.pool.id,
        })
    }

    pub fn started(&self) -> Event {
        Event::new(
            "prefect.worker.started",
            self.resource(),
            vec![self.pool_related()],
        )
    }

    pub fn stopped(&self, started: &Event) -> Event {
        let mut event = Event::new(
            "prefect.worker.stopped",
            self.resource(),
            vec![self.pool_related()],
        );
        event.follows = Some(started.id.clone());
        event
    }

    /// `prefect.worker.submitted-flow-run`: related as the job configuration's related
    /// resources (deployment, flow, flow run, their tags), then the work pool.
    pub fn submitted(&self, run: &FlowRun, flow: &Flow, deployment: Option<&Deployment>) -> Event {
        Event::new(
            "prefect.worker.submitted-flow-run",
            self.resource(),
            self.run_related(run, flow, deployment),
        )
    }

    /// `prefect.worker.executed-flow-run`, once the Job of the run `submitted` was about
    /// exists (`namespace:name`; exit status 0, as Prefect's Kubernetes worker reports then).
    pub fn executed(submitted: &Event, pid: &str) -> Event {
        let mut related = submitted.related.clone();
        for resource in &mut related {
            if resource["prefect.resource.role"] == "flow-run" {
                resource["prefect.infrastructure.identifier"] = pid.into();
                resource["prefect.infrastructure.status-code"] = "0".into();
            }
        }
        let mut event = Event::new(
            "prefect.worker.executed-flow-run",
            submitted.resource.clone(),
            related,
        );
        event.follows = Some(submitted.id.clone());
        event
    }

    fn run_related(
        &self,
        run: &FlowRun,
        flow: &Flow,
        deployment: Option<&Deployment>,
    ) -> Vec<Value> {
        let mut related_resources = Vec::new();
        let mut tags: Vec<&str> = run.tags.iter().map(String::as_str).collect();
        if let Some(deployment) = deployment {
            related_resources.push(related(
                "deployment",
                &deployment.id,
                Some(&deployment.name),
            ));
            tags.extend(deployment.tags.iter().map(String::as_str));
        }
        related_resources.push(related("flow", &flow.id, Some(&flow.name)));
        tags.extend(flow.tags.iter().map(String::as_str));
        related_resources.push(related("flow-run", &run.id, Some(&run.name)));
        tags.sort_unstable();
        tags.dedup();
        related_resources.extend(tags.into_iter().map(|tag| {
            json!({"prefect.resource.id": format!("prefect.tag.{tag}"), "prefect.resource.role": "tag"})
        }));
        related_resources.push(self.pool_related());
        related_resources
    }
}

/// A related resource: `prefect.<kind>.<id>` in the role `kind`.
pub fn related(kind: &str, id: &str, name: Option<&str>) -> Value {
    let mut resource = json!({
        "prefect.resource.id": format!("prefect.{kind}.{id}"),
        "prefect.resource.role": kind,
    });
    if let Some(name) = name {
        resource["prefect.resource.name"] = name.into();
    }
    resource
}

/// A handle to the batcher of events; cheap to clone.
#[derive(Clone)]
pub struct Events {
    batcher: Batcher,
}

impl Events {
    pub fn start(prefect: PrefectClient, metrics: Arc<Metrics>) -> Self {
        let counting = metrics.clone();
        let send: Send = Arc::new(move |events: Vec<Value>| {
            let (prefect, metrics) = (prefect.clone(), counting.clone());
            Box::pin(async move {
                let count = events.len() as u64;
                match prefect.emit_events(&Value::Array(events)).await {
                    Ok(()) => {
                        metrics.events_emitted.inc_by(count);
                        true
                    }
                    Err(e) => {
                        metrics.events_dropped.inc_by(count);
                        tracing::warn!("could not send {count} event(s) to Prefect: {e}");
                        false
                    }
                }
            })
        });
        Events {
            batcher: Batcher::start(
                send,
                metrics.events_dropped.clone(),
                "events",
                "agent_events_dropped_total",
            ),
        }
    }

    pub fn emit(&self, event: &Event) {
        self.batcher.push(event.to_json());
    }

    /// Sends what is queued and waits for it (at shutdown).
    pub async fn flush(&self) {
        self.batcher.flush().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker() -> Worker {
        Worker {
            name: "Agent One".into(),
            version: "3.8.8".into(),
            pool: serde_json::from_value(json!({"id": "p1", "name": "pool", "type": "kubernetes"}))
                .unwrap(),
        }
    }

    #[test]
    fn worker_events_name_the_worker_and_its_pool_as_prefects_worker_does() {
        let worker = worker();
        let started = worker.started();
        assert_eq!(
            started.resource["prefect.resource.id"],
            "prefect.worker.kubernetes.agent-one"
        );
        assert_eq!(started.resource["prefect.worker-type"], "kubernetes");
        assert_eq!(
            started.related,
            [
                json!({"prefect.resource.id": "prefect.work-pool.p1", "prefect.resource.role": "work-pool", "prefect.resource.name": "pool"})
            ]
        );
        let stopped = worker.stopped(&started);
        assert_eq!(stopped.follows.as_deref(), Some(started.id.as_str()));
        assert_eq!(worker.run_labels()["prefect.worker.type"], "kubernetes");
    }

    #[test]
    fn run_events_relate_deployment_flow_run_tags_and_pool_and_executed_follows_submitted() {
        let worker = worker();
        let run: FlowRun = serde_json::from_value(
            json!({"id": "r1", "name": "run", "flow_id": "f1", "tags": ["b", "a"]}),
        )
        .unwrap();
        let flow: Flow =
            serde_json::from_value(json!({"id": "f1", "name": "etl", "tags": ["a"]})).unwrap();
        let deployment: Deployment = serde_json::from_value(
            json!({"id": "d1", "name": "nightly", "flow_id": "f1", "tags": ["c"]}),
        )
        .unwrap();
        let submitted = worker.submitted(&run, &flow, Some(&deployment));
        let roles: Vec<&str> = submitted
            .related
            .iter()
            .map(|r| r["prefect.resource.role"].as_str().unwrap())
            .collect();
        assert_eq!(
            roles,
            [
                "deployment",
                "flow",
                "flow-run",
                "tag",
                "tag",
                "tag",
                "work-pool"
            ]
        );
        assert_eq!(submitted.related[3]["prefect.resource.id"], "prefect.tag.a");
        let executed = Worker::executed(&submitted, "ns:job");
        assert_eq!(executed.follows.as_deref(), Some(submitted.id.as_str()));
        assert_eq!(
            executed.related[2]["prefect.infrastructure.identifier"],
            "ns:job"
        );
        assert_eq!(
            executed.related[2]["prefect.infrastructure.status-code"],
            "0"
        );
    }
}
