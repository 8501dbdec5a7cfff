//! What is wrong with a flow run's pod, in words a user can act on: "summary: detail.
//! Resolution: …". Pure functions of the pod's status, so they are tested without a cluster.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::jiff::Timestamp;

/// What kind of trouble, which decides what the agent does about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trouble {
    /// The image cannot be pulled or named: crash after `--pod-start-timeout`.
    ImagePull,
    /// A Secret or ConfigMap the pod needs is missing: crash after `--pod-start-timeout`.
    Config,
    /// No node fits: wait (autoscalers) up to `--schedule-timeout`, then crash.
    Unschedulable,
    /// Told to the run; the Job's own failure ends it.
    OomKilled,
    CrashLoop,
    Evicted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    pub trouble: Trouble,
    pub summary: String,
    pub detail: String,
    pub resolution: String,
    /// Since when the pod has been in this trouble, as the cluster says (survives restarts).
    pub since: Option<Timestamp>,
}

impl Diagnosis {
    /// "summary: detail. Resolution: …"
    pub fn message(&self) -> String {
        format!(
            "{}: {}. Resolution: {}",
            self.summary,
            self.detail.trim_end_matches('.'),
            self.resolution
        )
    }
}

/// The most pressing trouble of `pod`, if any.
pub fn diagnose(pod: &Pod) -> Option<Diagnosis> {
    let status = pod.status.as_ref()?;
    let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
    if status.reason.as_deref() == Some("Evicted") {
        return Some(Diagnosis {
            trouble: Trouble::Evicted,
            summary: "Pod evicted".into(),
            detail: status.message.clone().unwrap_or_default(),
            resolution: "the node ran short of a resource; set requests that match what the flow uses, or use nodes with more room".into(),
            since: created,
        });
    }
    let containers = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for container in containers {
        if let Some(found) = container_trouble(container, created) {
            return Some(found);
        }
    }
    let unschedulable = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    })?;
    Some(Diagnosis {
        trouble: Trouble::Unschedulable,
        summary: "Pod cannot be scheduled".into(),
        detail: unschedulable.message.clone().unwrap_or_default(),
        resolution: "lower the run's cpu/memory requests or node selector, add tolerations, or give the cluster nodes that fit (an autoscaler may be adding one)".into(),
        since: unschedulable
            .last_transition_time
            .as_ref()
            .map(|t| t.0)
            .or(created),
    })
}

fn container_trouble(container: &ContainerStatus, created: Option<Timestamp>) -> Option<Diagnosis> {
    let state = container.state.as_ref()?;
    let image = &container.image;
    if let Some(waiting) = &state.waiting {
        let message = waiting.message.clone().unwrap_or_default();
        let reason = waiting.reason.as_deref().unwrap_or_default();
        let diagnosis = |trouble, summary: String, resolution: &str| Diagnosis {
            trouble,
            summary,
            detail: if message.is_empty() {
                reason.to_string()
            } else {
                message.clone()
            },
            resolution: resolution.to_string(),
            since: created,
        };
        match reason {
            "ErrImagePull" | "ImagePullBackOff" => {
                // The summary stays the same while the kubelet alternates between the two.
                return Some(Diagnosis {
                    detail: format!("{reason}: {message}"),
                    ..diagnosis(
                        Trouble::ImagePull,
                        format!("Image {image:?} cannot be pulled"),
                        "check the image name and tag exist, and for a private registry give the pod imagePullSecrets (--image-pull-secrets)",
                    )
                });
            }
            "InvalidImageName" => {
                return Some(diagnosis(
                    Trouble::ImagePull,
                    format!("Image name {image:?} is invalid"),
                    "fix the `image` job variable of the deployment or work pool",
                ));
            }
            "CreateContainerConfigError" => {
                return Some(diagnosis(
                    Trouble::Config,
                    format!("Container {:?} cannot be configured", container.name),
                    "create the Secret or ConfigMap it names in the Job's namespace, or remove the reference from the job variables",
                ));
            }
            "CrashLoopBackOff" => {
                let last = container
                    .last_state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref());
                let detail = match last {
                    Some(t) => format!(
                        "the container keeps exiting (exit code {}, {}; restarted {} times)",
                        t.exit_code,
                        t.reason.as_deref().unwrap_or("Error"),
                        container.restart_count
                    ),
                    None => message.clone(),
                };
                return Some(Diagnosis {
                    detail,
                    ..diagnosis(
                        Trouble::CrashLoop,
                        format!("Container {:?} is crash-looping", container.name),
                        "read the flow run's logs for the error; the Job stops retrying at its backoffLimit",
                    )
                });
            }
            _ => {}
        }
    }
    let oom = [
        state.terminated.as_ref(),
        container
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref()),
    ]
    .into_iter()
    .flatten()
    .find(|t| t.reason.as_deref() == Some("OOMKilled"))?;
    Some(Diagnosis {
        trouble: Trouble::OomKilled,
        summary: format!("Container {:?} ran out of memory (OOMKilled)", container.name),
        detail: format!("it was killed with exit code {} at its memory limit", oom.exit_code),
        resolution: "raise the memory limit (the `memory_limit` job variable or a resources plugin), or make the flow use less".into(),
        since: created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": status,
        }))
        .unwrap()
    }

    fn waiting(reason: &str, message: &str) -> Pod {
        pod(json!({"phase": "Pending", "containerStatuses": [{
            "name": "prefect-job", "image": "repo/img:1", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": reason, "message": message}}
        }]}))
    }

    #[test]
    fn pull_and_config_errors_name_the_image_and_the_missing_object() {
        let d = diagnose(&waiting(
            "ImagePullBackOff",
            "Back-off pulling image \"repo/img:1\"",
        ))
        .unwrap();
        assert_eq!(d.trouble, Trouble::ImagePull);
        assert!(
            d.message().starts_with(
                "Image \"repo/img:1\" cannot be pulled: ImagePullBackOff: Back-off pulling image"
            ),
            "{}",
            d.message()
        );
        assert!(d.message().contains("Resolution: "));
        let d = diagnose(&waiting(
            "CreateContainerConfigError",
            "secret \"db\" not found",
        ))
        .unwrap();
        assert_eq!(d.trouble, Trouble::Config);
        assert!(
            d.message().contains("secret \"db\" not found"),
            "{}",
            d.message()
        );
    }

    #[test]
    fn a_crash_loop_says_how_the_container_last_ended() {
        // Only when a plugin turns restartPolicy to OnFailure: Prefect's worker insists on Never.
        let looping = pod(json!({"phase": "Running", "containerStatuses": [{
            "name": "prefect-job", "image": "i", "imageID": "", "ready": false, "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}
        }]}));
        let d = diagnose(&looping).unwrap();
        assert_eq!(d.trouble, Trouble::CrashLoop);
        assert!(
            d.message()
                .contains("exit code 1, Error; restarted 4 times"),
            "{}",
            d.message()
        );
    }

    #[test]
    fn unschedulable_pods_carry_the_schedulers_words_and_since_when() {
        let d = diagnose(&pod(json!({"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/1 nodes are available: 1 Insufficient cpu.",
            "lastTransitionTime": "2026-01-01T00:00:05Z"
        }]})))
        .unwrap();
        assert_eq!(d.trouble, Trouble::Unschedulable);
        assert!(d.message().contains("1 Insufficient cpu"));
        assert_eq!(d.since.unwrap().to_string(), "2026-01-01T00:00:05Z");
    }

    #[test]
    fn oom_and_eviction_are_named_and_a_healthy_pod_has_no_diagnosis() {
        let oom = pod(json!({"phase": "Failed", "containerStatuses": [{
            "name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
        }]}));
        assert_eq!(diagnose(&oom).unwrap().trouble, Trouble::OomKilled);
        let evicted = pod(
            json!({"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."}),
        );
        assert!(
            diagnose(&evicted)
                .unwrap()
                .message()
                .contains("low on resource")
        );
        let running = pod(json!({"phase": "Running", "containerStatuses": [{
            "name": "c", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
            "state": {"running": {"startedAt": "2026-01-01T00:00:01Z"}}
        }]}));
        assert_eq!(diagnose(&running), None);
    }
}
