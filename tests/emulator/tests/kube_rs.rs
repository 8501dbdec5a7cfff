//! The emulator through kube-rs, the agent's own client: every verb, validation in the API
//! server's words, watches (resume, 410, restart), the simulated controllers and kubelet with
//! every scripted pod failure, deletion propagation, RBAC and fault injection.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Client, Error};
use kube_emulator::{
    Behaviour, Config, Emulator, Fault, FaultRule, Identity, Match, Node, PodRule, Rule,
};
use serde_json::{Value, json};
use std::future::Future;
use std::time::Duration;

/// Fast simulated time: a 200 ms run takes 10 ms, the controller's 10 s back-off 0.5 s.
fn config(pods: Vec<PodRule>) -> Config {
    Config {
        time_scale: 0.05,
        pods,
        ..Config::default()
    }
}

fn rule(image: &str, then: Behaviour) -> PodRule {
    PodRule {
        matches: Match {
            image: Some(image.into()),
            ..Match::default()
        },
        then,
        log: vec!["starting".into(), "working".into(), "done".into()],
    }
}

async fn client_for(kubeconfig: &std::path::Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

async fn start(config: Config) -> (Emulator, Client) {
    let emulator = Emulator::start(config).await.unwrap();
    let client = client_for(emulator.kubeconfig()).await;
    (emulator, client)
}

fn job(name: &str, image: &str) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "labels": {"app": "etl", "team": name}},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": image}]}}}
    }))
    .unwrap()
}

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..400 {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn api_error(result: Result<impl std::fmt::Debug, Error>) -> kube::core::Status {
    match result {
        Err(Error::Api(status)) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn job_condition(jobs: &Api<Job>, name: &str) -> Option<(String, String)> {
    let job = jobs.get(name).await.ok()?;
    let condition = job
        .status?
        .conditions?
        .into_iter()
        .find(|c| c.type_ == "Complete" || c.type_ == "Failed")?;
    Some((condition.type_, condition.reason.unwrap_or_default()))
}

async fn pods_of(pods: &Api<Pod>, job: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .unwrap()
        .items
}

async fn waiting_reason(pods: &Api<Pod>, job: &str) -> Option<String> {
    let pod = pods_of(pods, job).await.into_iter().next()?;
    pod.status?
        .container_statuses?
        .first()?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

async fn event_reasons(client: &Client, object: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let list = events.list(&ListParams::default()).await.unwrap();
    list.items
        .into_iter()
        .filter(|e| {
            e.involved_object
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(object))
        })
        .filter_map(|e| e.reason)
        .collect()
}

#[tokio::test]
async fn create_get_list_and_delete_a_job() {
    let (_emulator, client) = start(config(vec![])).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let created = jobs
        .create(&PostParams::default(), &job("etl", "busybox"))
        .await
        .unwrap();
    let metadata = &created.metadata;
    assert!(
        metadata.uid.is_some()
            && metadata.creation_timestamp.is_some()
            && metadata.resource_version.is_some()
    );
    assert_eq!(metadata.generation, Some(1));
    let spec = created.spec.as_ref().unwrap();
    assert_eq!(
        (spec.completions, spec.parallelism),
        (Some(1), Some(1)),
        "defaults filled in"
    );
    let template_labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    assert_eq!(template_labels["batch.kubernetes.io/job-name"], "etl");

    assert_eq!(jobs.get("etl").await.unwrap().metadata.uid, metadata.uid);
    let again = api_error(
        jobs.create(&PostParams::default(), &job("etl", "busybox"))
            .await,
    );
    assert_eq!(
        (again.code, again.reason.as_str(), again.message.as_str()),
        (409, "AlreadyExists", "jobs.batch \"etl\" already exists")
    );

    let mut generated = job("", "busybox");
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("etl-".into());
    let generated = jobs
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    let name = generated.metadata.name.unwrap();
    assert!(name.starts_with("etl-") && name.len() == 9, "{name}");

    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    jobs.create(&dry, &job("dry", "busybox")).await.unwrap();
    assert!(
        api_error(jobs.get("dry").await).is_not_found(),
        "a dry run stores nothing"
    );

    jobs.delete("etl", &DeleteParams::background())
        .await
        .unwrap();
    let gone = api_error(jobs.get("etl").await);
    assert_eq!(
        (gone.code, gone.message.as_str()),
        (404, "jobs.batch \"etl\" not found")
    );
    let in_missing_namespace = api_error(
        Api::<Job>::namespaced(client, "nowhere")
            .create(&PostParams::default(), &job("x", "busybox"))
            .await,
    );
    assert_eq!(
        in_missing_namespace.message,
        "namespaces \"nowhere\" not found"
    );
}

#[tokio::test]
async fn validation_errors_have_the_api_servers_shape() {
    let (emulator, client) = start(config(vec![])).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");

    let long = "x".repeat(70);
    let error = api_error(
        jobs.create(&PostParams::default(), &job(&long, "busybox"))
            .await,
    );
    assert_eq!((error.code, error.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        error.message,
        format!(
            "Job.batch \"{long}\" is invalid: [metadata.name: Invalid value: \"{long}\": must be no more than 63 characters, metadata.labels: Invalid value: \"{long}\": must be no more than 63 characters]"
        )
    );
    let causes = error.details.unwrap().causes;
    assert_eq!(causes[0].field, "metadata.name");
    assert_eq!(causes[0].reason, "FieldValueInvalid");

    let mut bad_label = job("labelled", "busybox");
    bad_label.metadata.labels = Some([("bad key!".to_string(), "v".to_string())].into());
    let error = api_error(jobs.create(&PostParams::default(), &bad_label).await);
    assert!(error.message.starts_with("Job.batch \"labelled\" is invalid: metadata.labels: Invalid value: \"bad key!\": name part must consist of alphanumeric characters"), "{}", error.message);

    let mut no_image: Value = serde_json::to_value(job("no-image", "busybox")).unwrap();
    no_image["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("image");
    let error = api_error(
        jobs.create(
            &PostParams::default(),
            &serde_json::from_value(no_image).unwrap(),
        )
        .await,
    );
    assert_eq!(
        error.message,
        "Job.batch \"no-image\" is invalid: spec.template.spec.containers[0].image: Required value"
    );

    // An unknown field: refused under Strict, dropped with a warning otherwise.
    let mut unknown = serde_json::to_value(job("colourful", "busybox")).unwrap();
    unknown["spec"]["colour"] = json!("blue");
    let http = reqwest_like(
        &emulator,
        "POST",
        "/apis/batch/v1/namespaces/default/jobs?fieldValidation=Strict",
        Some(&unknown),
    )
    .await;
    assert_eq!(http.0, 400);
    assert_eq!(
        http.1["message"],
        "strict decoding error: unknown field \"spec.colour\""
    );
    assert_eq!(http.1["reason"], "BadRequest");
    let warned = reqwest_like(
        &emulator,
        "POST",
        "/apis/batch/v1/namespaces/default/jobs",
        Some(&unknown),
    )
    .await;
    assert_eq!(warned.0, 201);
    assert!(warned.1["spec"].get("colour").is_none());
}

/// A raw request with the admin token: for what kube-rs does not expose (fieldValidation).
async fn reqwest_like(
    emulator: &Emulator,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(emulator.address())
        .await
        .unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: emulator\r\nAuthorization: Bearer emulator-admin\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let code: u16 = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or("");
    (
        code,
        serde_json::from_str(body.trim()).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn lists_filter_by_labels_and_fields_and_page() {
    let (_emulator, client) = start(config(vec![rule("sleeper", Behaviour::RunForever)])).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    for name in ["a", "b", "c", "d"] {
        jobs.create(&PostParams::default(), &job(name, "sleeper"))
            .await
            .unwrap();
    }
    let names = |list: kube::core::ObjectList<Job>| {
        list.items
            .into_iter()
            .map(|j| j.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            jobs.list(&ListParams::default().labels("team in (a,c)"))
                .await
                .unwrap()
        ),
        ["a", "c"]
    );
    assert_eq!(
        names(
            jobs.list(&ListParams::default().labels("team notin (a,c),app=etl"))
                .await
                .unwrap()
        ),
        ["b", "d"]
    );
    assert_eq!(
        names(
            jobs.list(&ListParams::default().labels("!app"))
                .await
                .unwrap()
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        names(
            jobs.list(&ListParams::default().fields("metadata.name!=b"))
                .await
                .unwrap()
        ),
        ["a", "c", "d"]
    );

    let first = jobs.list(&ListParams::default().limit(3)).await.unwrap();
    let token = first.metadata.continue_.clone().expect("a continue token");
    assert_eq!(first.metadata.remaining_item_count, Some(1));
    assert_eq!(names(first), ["a", "b", "c"]);
    assert_eq!(
        names(
            jobs.list(&ListParams::default().limit(3).continue_token(&token))
                .await
                .unwrap()
        ),
        ["d"]
    );

    let pods: Api<Pod> = Api::namespaced(client, "default");
    eventually("four running pods", || async {
        let running = pods
            .list(&ListParams::default().fields("status.phase=Running"))
            .await
            .unwrap();
        (running.items.len() == 4).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_job_runs_its_pod_to_completion() {
    let (_emulator, client) = start(config(vec![])).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    jobs.create(&PostParams::default(), &job("ok", "busybox"))
        .await
        .unwrap();
    let condition = eventually("the Job to complete", || job_condition(&jobs, "ok")).await;
    assert_eq!(condition, ("Complete".into(), "CompletionsReached".into()));
    let finished = jobs.get("ok").await.unwrap().status.unwrap();
    assert_eq!((finished.succeeded, finished.active), (Some(1), Some(0)));
    assert!(finished.start_time.is_some() && finished.completion_time.is_some());

    let pod = pods_of(&pods, "ok").await.remove(0);
    let name = pod.metadata.name.clone().unwrap();
    assert!(
        name.starts_with("ok-") && name.len() == 8,
        "pods are named like the Job controller names them: {name}"
    );
    let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("Job", "ok", Some(true))
    );
    assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Succeeded"));
    let reasons = event_reasons(&client, "ok").await;
    for reason in [
        "SuccessfulCreate",
        "Scheduled",
        "Pulling",
        "Pulled",
        "Created",
        "Started",
        "Completed",
    ] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "event {reason} missing from {reasons:?}"
        );
    }
}

#[tokio::test]
async fn backoff_limit_deadline_ttl_and_suspend() {
    let (_emulator, client) = start(config(vec![
        rule(
            "failing",
            Behaviour::Fail {
                exit_code: 3,
                run_ms: 10,
            },
        ),
        rule("sleeper", Behaviour::RunForever),
    ]))
    .await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    let mut retried = job("retried", "failing");
    retried.spec.as_mut().unwrap().backoff_limit = Some(1);
    jobs.create(&PostParams::default(), &retried).await.unwrap();
    let condition = eventually("BackoffLimitExceeded", || job_condition(&jobs, "retried")).await;
    assert_eq!(condition, ("Failed".into(), "BackoffLimitExceeded".into()));
    assert_eq!(
        pods_of(&pods, "retried").await.len(),
        2,
        "one pod, then one retry"
    );
    let exit = pods_of(&pods, "retried").await[0]
        .status
        .clone()
        .unwrap()
        .container_statuses
        .unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!((exit.exit_code, exit.reason.as_deref()), (3, Some("Error")));

    let mut deadline = job("deadline", "sleeper");
    deadline.spec.as_mut().unwrap().active_deadline_seconds = Some(2);
    jobs.create(&PostParams::default(), &deadline)
        .await
        .unwrap();
    assert_eq!(
        eventually("DeadlineExceeded", || job_condition(&jobs, "deadline")).await,
        ("Failed".into(), "DeadlineExceeded".into())
    );
    eventually("the deadline's pod to go", || async {
        pods_of(&pods, "deadline").await.is_empty().then_some(())
    })
    .await;

    let mut short_lived = job("short-lived", "busybox");
    short_lived
        .spec
        .as_mut()
        .unwrap()
        .ttl_seconds_after_finished = Some(0);
    jobs.create(&PostParams::default(), &short_lived)
        .await
        .unwrap();
    eventually("the finished Job to be deleted by its TTL", || async {
        jobs.get("short-lived").await.is_err().then_some(())
    })
    .await;

    let mut suspended = job("suspended", "busybox");
    suspended.spec.as_mut().unwrap().suspend = Some(true);
    jobs.create(&PostParams::default(), &suspended)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        pods_of(&pods, "suspended").await.is_empty(),
        "a suspended Job starts no pod"
    );
    jobs.patch(
        "suspended",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": false}})),
    )
    .await
    .unwrap();
    assert_eq!(
        eventually("the resumed Job", || job_condition(&jobs, "suspended"))
            .await
            .0,
        "Complete"
    );
}

#[tokio::test]
async fn scripted_pod_failures_look_as_in_a_real_cluster() {
    let (emulator, client) = start(config(vec![
        rule("registry.example.com/missing:1", Behaviour::ImagePullError),
        rule("Bad Image", Behaviour::InvalidImageName),
        rule("hungry", Behaviour::OomKilled { run_ms: 10 }),
        rule("crasher", Behaviour::CrashLoop { run_ms: 10 }),
        rule("evictee", Behaviour::Evicted { run_ms: 10 }),
    ]))
    .await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    jobs.create(
        &PostParams::default(),
        &job("pull", "registry.example.com/missing:1"),
    )
    .await
    .unwrap();
    assert_eq!(
        eventually("ErrImagePull", || waiting_reason(&pods, "pull")).await,
        "ErrImagePull"
    );
    eventually("ImagePullBackOff", || async {
        (waiting_reason(&pods, "pull").await.as_deref() == Some("ImagePullBackOff")).then_some(())
    })
    .await;
    let reasons = event_reasons(&client, "pull").await;
    assert!(
        reasons.contains(&"Failed".to_string()) && reasons.contains(&"BackOff".to_string()),
        "{reasons:?}"
    );

    jobs.create(&PostParams::default(), &job("invalid", "Bad Image"))
        .await
        .unwrap();
    assert_eq!(
        eventually("InvalidImageName", || waiting_reason(&pods, "invalid")).await,
        "InvalidImageName"
    );

    let mut needs_secret: Value = serde_json::to_value(job("config", "busybox")).unwrap();
    needs_secret["spec"]["template"]["spec"]["containers"][0]["env"] = json!([{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api-token", "key": "token"}}}]);
    jobs.create(
        &PostParams::default(),
        &serde_json::from_value(needs_secret).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        eventually("CreateContainerConfigError", || waiting_reason(
            &pods, "config"
        ))
        .await,
        "CreateContainerConfigError"
    );
    let message = pods_of(&pods, "config").await[0]
        .status
        .clone()
        .unwrap()
        .container_statuses
        .unwrap()[0]
        .state
        .clone()
        .unwrap()
        .waiting
        .unwrap()
        .message;
    assert_eq!(message.as_deref(), Some("secret \"api-token\" not found"));
    let secret: Secret = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api-token"}, "stringData": {"token": "x"}})).unwrap();
    Api::<Secret>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    assert_eq!(
        eventually("the pod to start once the Secret exists", || job_condition(
            &jobs, "config"
        ))
        .await
        .0,
        "Complete"
    );

    let mut big: Value = serde_json::to_value(job("big", "busybox")).unwrap();
    big["spec"]["template"]["spec"]["containers"][0]["resources"] =
        json!({"requests": {"cpu": "64", "memory": "1Gi"}});
    jobs.create(
        &PostParams::default(),
        &serde_json::from_value(big).unwrap(),
    )
    .await
    .unwrap();
    let unschedulable = eventually("FailedScheduling", || async {
        let pod = pods_of(&pods, "big").await.into_iter().next()?;
        let condition = pod
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "PodScheduled")?;
        condition
            .message
            .filter(|_| condition.reason.as_deref() == Some("Unschedulable"))
    })
    .await;
    assert!(
        unschedulable.starts_with("0/1 nodes are available: 1 Insufficient cpu."),
        "{unschedulable}"
    );
    assert!(
        event_reasons(&client, "big")
            .await
            .contains(&"FailedScheduling".to_string())
    );
    emulator.set_node(Node {
        cpu: "128".into(),
        ..Node::default()
    });
    assert_eq!(
        eventually("the pod to schedule on the bigger node", || job_condition(
            &jobs, "big"
        ))
        .await
        .0,
        "Complete"
    );

    jobs.create(&PostParams::default(), &job("oom", "hungry"))
        .await
        .unwrap();
    eventually("OOMKilled", || async {
        let pod = pods_of(&pods, "oom").await.into_iter().next()?;
        let terminated = pod
            .status?
            .container_statuses?
            .first()?
            .state
            .clone()?
            .terminated?;
        (terminated.reason.as_deref() == Some("OOMKilled") && terminated.exit_code == 137)
            .then_some(())
    })
    .await;

    let mut crash_loop: Value = serde_json::to_value(job("crash", "crasher")).unwrap();
    crash_loop["spec"]["template"]["spec"]["restartPolicy"] = json!("OnFailure");
    jobs.create(
        &PostParams::default(),
        &serde_json::from_value(crash_loop).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        eventually("CrashLoopBackOff", || waiting_reason(&pods, "crash")).await,
        "CrashLoopBackOff"
    );

    jobs.create(&PostParams::default(), &job("evicted", "evictee"))
        .await
        .unwrap();
    let reason = eventually("an eviction", || async {
        pods_of(&pods, "evicted")
            .await
            .into_iter()
            .next()?
            .status?
            .reason
    })
    .await;
    assert_eq!(reason, "Evicted");
    assert!(
        event_reasons(&client, "evicted")
            .await
            .contains(&"Evicted".to_string())
    );
}

#[tokio::test]
async fn runs_end_when_a_test_says_so() {
    let hour = 3_600_000;
    let (emulator, client) = start(config(vec![
        rule("sleeper", Behaviour::Succeed { run_ms: hour }),
        rule("evictee", Behaviour::Evicted { run_ms: hour }),
    ]))
    .await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for (name, image) in [("sleeper", "sleeper"), ("evictee", "evictee")] {
        jobs.create(&PostParams::default(), &job(name, image))
            .await
            .unwrap();
        eventually("the pod to run", async || {
            let pod = pods_of(&pods, name).await.into_iter().next()?;
            (pod.status?.phase.as_deref() == Some("Running")).then_some(())
        })
        .await;
    }
    assert_eq!(job_condition(&jobs, "sleeper").await, None, "an hour to go");

    let ended = reqwest::Client::new()
        .post(format!("{}/emulator/end-runs", emulator.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 200);
    let done = eventually("the sleeper to complete", || {
        job_condition(&jobs, "sleeper")
    })
    .await;
    assert_eq!(done.0, "Complete");
    let failed = eventually("the evictee to fail", || job_condition(&jobs, "evictee")).await;
    assert_eq!(failed, ("Failed".into(), "BackoffLimitExceeded".into()));
    assert!(
        event_reasons(&client, "evictee")
            .await
            .contains(&"Evicted".to_string())
    );
}

#[tokio::test]
async fn deletion_propagates_as_asked() {
    let (_emulator, client) = start(config(vec![rule("sleeper", Behaviour::RunForever)])).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for name in ["fg", "bg", "orphan"] {
        jobs.create(&PostParams::default(), &job(name, "sleeper"))
            .await
            .unwrap();
        eventually("a running pod", || async {
            (pods_of(&pods, name).await.len() == 1).then_some(())
        })
        .await;
    }

    let precondition = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some("wrong".into()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let error = api_error(jobs.delete("fg", &precondition).await);
    assert_eq!(error.code, 409);
    assert!(
        error
            .message
            .contains("Precondition failed: uid in precondition: wrong"),
        "{}",
        error.message
    );

    jobs.delete("fg", &DeleteParams::foreground())
        .await
        .unwrap();
    let deleting = jobs.get("fg").await.expect("kept while its pods go");
    assert!(deleting.metadata.deletion_timestamp.is_some());
    assert_eq!(
        deleting.metadata.finalizers,
        Some(vec!["foregroundDeletion".to_string()])
    );
    eventually("the foreground deletion to finish", || async {
        (jobs.get("fg").await.is_err() && pods_of(&pods, "fg").await.is_empty()).then_some(())
    })
    .await;

    jobs.delete("bg", &DeleteParams::background())
        .await
        .unwrap();
    assert!(jobs.get("bg").await.is_err(), "gone at once");
    eventually("the garbage collector to delete its pod", || async {
        pods_of(&pods, "bg").await.is_empty().then_some(())
    })
    .await;

    jobs.delete("orphan", &DeleteParams::orphan())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let orphans = pods_of(&pods, "orphan").await;
    assert_eq!(orphans.len(), 1, "an orphaned pod stays");
    assert!(
        orphans[0]
            .metadata
            .owner_references
            .as_ref()
            .is_none_or(Vec::is_empty)
    );
}

#[tokio::test]
async fn patches_replace_and_the_status_subresource() {
    let (_emulator, client) = start(config(vec![rule("sleeper", Behaviour::RunForever)])).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let created = jobs
        .create(&PostParams::default(), &job("p", "sleeper"))
        .await
        .unwrap();

    let merged = jobs
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"extra": "1"}}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.metadata.labels.as_ref().unwrap()["extra"], "1");
    let operations: json_patch::Patch = serde_json::from_value(
        json!([{"op": "replace", "path": "/metadata/labels/extra", "value": "2"}]),
    )
    .unwrap();
    let patched = jobs
        .patch("p", &PatchParams::default(), &Patch::<()>::Json(operations))
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.as_ref().unwrap()["extra"], "2");
    let strategic = jobs
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {"annotations": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(strategic.metadata.annotations.unwrap()["a"], "b");

    let mut stale = created.clone();
    stale
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("late".into(), "yes".into());
    let conflict = api_error(jobs.replace("p", &PostParams::default(), &stale).await);
    assert_eq!(
        conflict.message,
        "Operation cannot be fulfilled on jobs.batch \"p\": the object has been modified; please apply your changes to the latest version and try again"
    );

    let immutable = api_error(
        jobs.patch("p", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "other"}]}}}}))).await,
    );
    assert_eq!(
        immutable.message,
        "Job.batch \"p\" is invalid: spec.template: field is immutable"
    );

    let status = jobs
        .patch_status(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"failed": 7}})),
        )
        .await
        .unwrap();
    assert_eq!(status.status.unwrap().failed, Some(7));
    let ignored = jobs
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"failed": 9}})),
        )
        .await
        .unwrap();
    assert_ne!(
        ignored.status.unwrap().failed,
        Some(9),
        "status changes only through /status"
    );
}

#[tokio::test]
async fn watches_resume_report_410_and_end_on_restart() {
    let (emulator, client) = start(config(vec![rule("sleeper", Behaviour::RunForever)])).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let secret = |name: &str| -> Secret {
        serde_json::from_value(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}}),
        )
        .unwrap()
    };
    let first = secrets
        .create(&PostParams::default(), &secret("one"))
        .await
        .unwrap();
    let version = first.metadata.resource_version.unwrap();
    secrets
        .create(&PostParams::default(), &secret("two"))
        .await
        .unwrap();
    secrets
        .delete("one", &DeleteParams::default())
        .await
        .unwrap();

    // Resume from a version: exactly what happened after it, in order.
    let mut stream = secrets
        .watch(&WatchParams::default().timeout(1), &version)
        .await
        .unwrap()
        .boxed();
    let mut seen = Vec::new();
    while let Some(event) = stream.try_next().await.unwrap() {
        match event {
            WatchEvent::Added(s) => seen.push(format!("ADDED {}", s.metadata.name.unwrap())),
            WatchEvent::Deleted(s) => seen.push(format!("DELETED {}", s.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => {}
            other => seen.push(format!("{other:?}")),
        }
    }
    assert_eq!(seen, ["ADDED two", "DELETED one"]);

    emulator.compact();
    let mut stream = secrets
        .watch(&WatchParams::default(), &version)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Error(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }

    // kube-rs' watcher re-lists after the restart and misses nothing created meanwhile.
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let mut applied = watcher(jobs.clone(), watcher::Config::default()).boxed();
    jobs.create(&PostParams::default(), &job("before", "sleeper"))
        .await
        .unwrap();
    wait_for_job(&mut applied, "before").await;
    emulator.restart_watches();
    emulator.compact();
    jobs.create(&PostParams::default(), &job("after", "sleeper"))
        .await
        .unwrap();
    wait_for_job(&mut applied, "after").await;
}

async fn wait_for_job(
    stream: &mut (impl futures::Stream<Item = Result<watcher::Event<Job>, watcher::Error>> + Unpin),
    wanted: &str,
) {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.try_next())
            .await
            .expect("watcher stalled")
            .unwrap()
        {
            Some(watcher::Event::Apply(job) | watcher::Event::InitApply(job))
                if job.metadata.name.as_deref() == Some(wanted) =>
            {
                return;
            }
            Some(_) => continue,
            None => panic!("watcher ended"),
        }
    }
}

#[tokio::test]
async fn rbac_limits_a_token_to_its_namespace_and_verbs() {
    let (emulator, _admin) = start(config(vec![])).await;
    emulator.set_identity(
        "agent-token",
        Identity {
            user: "system:serviceaccount:prefect:agent".into(),
            rules: vec![Rule {
                verbs: vec!["create".into(), "get".into(), "list".into()],
                resources: vec!["jobs".into()],
                namespaces: vec!["default".into()],
            }],
        },
    );
    let client = client_for(&emulator.kubeconfig_for("agent-token", "default").unwrap()).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(&PostParams::default(), &job("allowed", "busybox"))
        .await
        .unwrap();
    let denied = api_error(jobs.delete("allowed", &DeleteParams::default()).await);
    assert_eq!((denied.code, denied.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        denied.message,
        "jobs.batch is forbidden: User \"system:serviceaccount:prefect:agent\" cannot delete resource \"jobs\" in API group \"batch\" in the namespace \"default\""
    );
    let elsewhere = api_error(
        Api::<Job>::namespaced(client.clone(), "kube-system")
            .list(&ListParams::default())
            .await,
    );
    assert!(
        elsewhere.message.ends_with(
            "cannot list resource \"jobs\" in API group \"batch\" in the namespace \"kube-system\""
        ),
        "{}",
        elsewhere.message
    );
    let pods = api_error(
        Api::<Pod>::namespaced(client, "default")
            .list(&ListParams::default())
            .await,
    );
    assert_eq!(
        pods.message,
        "pods is forbidden: User \"system:serviceaccount:prefect:agent\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
    );

    let stranger = client_for(&emulator.kubeconfig_for("unknown-token", "default").unwrap()).await;
    assert_eq!(
        api_error(
            Api::<Job>::namespaced(stranger, "default")
                .list(&ListParams::default())
                .await
        )
        .code,
        401
    );
}

#[tokio::test]
async fn injected_faults_hit_the_next_requests_only() {
    let (emulator, client) = start(config(vec![])).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    // kube-rs retries 429/503/504 by itself; a 500 reaches the caller.
    emulator.inject(FaultRule {
        count: Some(2),
        ..FaultRule::always(Fault::Status { code: 500 })
    });
    for _ in 0..2 {
        assert_eq!(api_error(jobs.list(&ListParams::default()).await).code, 500);
    }
    jobs.list(&ListParams::default())
        .await
        .expect("the third request is served");

    emulator.inject(FaultRule {
        count: Some(1),
        ..FaultRule::always(Fault::Drop)
    });
    assert!(
        jobs.list(&ListParams::default()).await.is_err(),
        "a dropped connection is an error"
    );
    jobs.list(&ListParams::default())
        .await
        .expect("then served again");

    emulator.inject(FaultRule {
        count: Some(1),
        ..FaultRule::always(Fault::Latency { ms: 300 })
    });
    let started = std::time::Instant::now();
    jobs.list(&ListParams::default()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
}

/// Rules posted over HTTP, as the standalone emulator and the fault suite use them: a status
/// on matching requests only, and a lost answer (the Job is created, the client hears
/// nothing).
#[tokio::test]
async fn faults_posted_over_http_hit_only_matching_requests_and_lost_answers_are_applied() {
    let (emulator, client) = start(config(vec![])).await;
    let http = reqwest::Client::new();
    let post = async |body: &str| {
        http.post(format!("{}/emulator/faults", emulator.url()))
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    };
    let refused = post(r#"{"fault": "status", "code": 500, "fracton": 1}"#).await;
    assert_eq!(refused.status(), 400);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("unknown field `fracton`")
    );
    let accepted =
        post(r#"{"fault": "status", "code": 500, "count": 1, "method": "POST", "path": "/jobs"}"#)
            .await;
    assert_eq!(accepted.status(), 200);
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.list(&ListParams::default())
        .await
        .expect("a GET does not match the rule");
    assert_eq!(
        api_error(
            jobs.create(&PostParams::default(), &job("hit", "busybox"))
                .await
        )
        .code,
        500
    );
    jobs.create(&PostParams::default(), &job("served", "busybox"))
        .await
        .expect("the rule is used up");

    assert_eq!(
        post(r#"{"fault": "lost-answer", "count": 1, "method": "POST"}"#)
            .await
            .status(),
        200
    );
    assert!(
        jobs.create(&PostParams::default(), &job("lost", "busybox"))
            .await
            .is_err(),
        "the client hears nothing"
    );
    assert!(
        jobs.get_opt("lost").await.unwrap().is_some(),
        "but the Job was created"
    );

    // Every request is counted by kind, faulty or not.
    let counted: serde_json::Value = serde_json::from_str(
        &http
            .get(format!("{}/emulator/requests", emulator.url()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(counted["POST jobs"], 3, "{counted}");
    assert_eq!(counted["GET jobs"], 1, "{counted}");
    assert_eq!(counted["GET jobs/{name}"], 1, "{counted}");
    emulator.reset_requests();
    assert!(emulator.requests().is_empty());
}

#[tokio::test]
async fn pod_logs_discovery_and_the_events_api() {
    let (_emulator, client) = start(config(vec![rule(
        "busybox",
        Behaviour::Succeed { run_ms: 10 },
    )]))
    .await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    jobs.create(&PostParams::default(), &job("logger", "busybox"))
        .await
        .unwrap();
    eventually("completion", || job_condition(&jobs, "logger")).await;
    let pod = pods_of(&pods, "logger")
        .await
        .remove(0)
        .metadata
        .name
        .unwrap();
    assert_eq!(
        pods.logs(&pod, &Default::default()).await.unwrap(),
        "starting\nworking\ndone\n"
    );
    let tail = kube::api::LogParams {
        tail_lines: Some(2),
        ..Default::default()
    };
    assert_eq!(pods.logs(&pod, &tail).await.unwrap(), "working\ndone\n");

    let discovery = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .unwrap();
    let groups: Vec<String> = discovery.groups().map(|g| g.name().to_string()).collect();
    for group in ["", "batch", "coordination.k8s.io", "events.k8s.io"] {
        assert!(
            groups.iter().any(|g| g == group),
            "group {group:?} missing from {groups:?}"
        );
    }
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "37")
    );

    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client, "default");
    events
        .list(&ListParams::default())
        .await
        .expect("events.k8s.io/v1 is served");
}
