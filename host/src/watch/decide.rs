//! Every rule of what happens after submission, as one pure function: what the agent knows of
//! a Job (`Tracked`), the run as last read (if at hand), the time and the options in; the
//! actions to take out. Nothing here calls an API, so each rule has a unit test that runs in
//! microseconds (the README's lifecycle table, row by row, is the test list below).

use super::diagnose::{Diagnosis, Trouble};
use super::tracked::{History, INFO, JobKey, Outcome, Tracked, WARNING};
use crate::metrics::{CrashReason, DeletionCause};
use crate::prefect::models::FlowRun;
use crate::request::job_name_suffix;
use k8s_openapi::jiff::Timestamp;
use std::time::Duration;

/// What the watch is configured to do.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub agent: String,
    pub pool: String,
    /// Watch these namespaces (one watch of each kind per namespace); all when empty.
    pub namespaces: Vec<String>,
    /// A pull or configuration error older than this (from the pod's creation) crashes the run.
    pub pod_start_timeout: Duration,
    /// An unschedulable pod older than this (from when the scheduler said so) crashes the run.
    pub schedule_timeout: Duration,
    /// Finished Jobs of final runs are deleted this long after they finished (None: kept).
    pub delete_succeeded_after: Option<Duration>,
    pub delete_failed_after: Option<Duration>,
    /// How often the clean-up pass runs.
    pub pass_interval: Duration,
    /// How often runs in CANCELLING are looked for (a fallback while no event stream tells).
    pub cancel_interval: Duration,
    /// How many lines of a failed pod's log a crash report quotes.
    pub log_tail: u32,
}

/// How a Job is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Pods first, then the Job: a cancelled run's pods stop before it is CANCELLED.
    Foreground,
    Background,
}

/// Something to do about one Job and its run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Read the run's log as it was before this agent started, then decide again.
    ReadLogHistory,
    /// Read the run, then decide again with it (a report depends on where the run is now).
    ReadRun,
    /// Write a line to the run's log and remember it under `once`.
    Tell {
        once: String,
        level: u8,
        message: String,
    },
    /// Report the run CRASHED with `message` (and write it to the run's log). With
    /// `with_pod_report`, the failed pod's diagnosis and the last lines of its log are added.
    Crash {
        reason: CrashReason,
        message: String,
        with_pod_report: bool,
    },
    /// Trouble that is no longer the run's business (the run is final, rescheduled or
    /// re-claimed): nothing is reported; the agent notes it in its own log.
    LeaveAlone { message: String },
    Delete {
        propagation: Propagation,
        cause: DeletionCause,
    },
    /// The Job is gone and the run was cancelling: report it CANCELLED.
    ProposeCancelled,
}

/// What to do about the Job `key`, given what is known of it and (when at hand) its run.
pub fn decide(
    key: &JobKey,
    job: &Tracked,
    run: Option<&FlowRun>,
    now: Timestamp,
    options: &WatchOptions,
) -> Vec<Action> {
    if job.run.is_empty() {
        return Vec::new();
    }
    let run_state = run.and_then(|r| r.state_type.as_deref());
    if job.cancelling || run_state == Some("CANCELLING") {
        return cancel(key, job);
    }
    if job.deleting {
        return Vec::new();
    }
    let mut actions = Vec::new();
    if !job.settled && job.outcome.is_some() {
        let tells = news(job, options);
        if !tells.is_empty() && job.history == History::Unknown {
            return vec![Action::ReadLogHistory];
        }
        actions.extend(tells.into_iter().filter(|t| !told_before(job, t)).map(
            |(once, _, level, message)| Action::Tell {
                once,
                level,
                message,
            },
        ));
        if let Some(trouble) = trouble(key, job, now, options) {
            match run {
                None => {
                    actions.push(Action::ReadRun);
                    return actions;
                }
                Some(run) if belongs_to(run, key, job.claim.as_deref()) => actions.push(Action::Crash {
                    reason: trouble.reason,
                    message: trouble.message,
                    with_pod_report: trouble.with_pod_report,
                }),
                Some(run) => actions.push(Action::LeaveAlone {
                    message: format!(
                        "not reporting a crash of flow run {} (its Job {}/{}): the run is {} and no longer this Job's ({})",
                        job.run,
                        key.0,
                        key.1,
                        run.state_type.as_deref().unwrap_or("unknown"),
                        trouble.message
                    ),
                }),
            }
            if let Some(cause) = trouble.delete {
                actions.push(Action::Delete {
                    propagation: Propagation::Background,
                    cause,
                });
            }
            return actions;
        }
    }
    if let Some(run) = run {
        actions.extend(clean_up(key, job, run, now, options));
    }
    actions
}

/// A run is cancelling: delete its Job (pods first); once it is gone, the run is CANCELLED.
fn cancel(key: &JobKey, job: &Tracked) -> Vec<Action> {
    if job.settled && !job.cancelling {
        return Vec::new();
    }
    if job.gone {
        return vec![Action::ProposeCancelled];
    }
    if job.deleting {
        return Vec::new();
    }
    vec![
        Action::Tell {
            once: "cancelling".into(),
            level: INFO,
            message: format!(
                "Flow run is cancelling: deleting Kubernetes Job {}/{}",
                key.0, key.1
            ),
        },
        Action::Delete {
            propagation: Propagation::Foreground,
            cause: DeletionCause::Cancelled,
        },
    ]
}

/// Lines for the run: the Job's and pods' Kubernetes Events, and each pod's trouble once per
/// kind (ErrImagePull and ImagePullBackOff alternate). As `(once, known_by, level, message)`:
/// a line is not told again when `once` was told, or when the run's log from before a restart
/// holds a line starting with `known_by`.
fn news(job: &Tracked, options: &WatchOptions) -> Vec<(String, String, u8, String)> {
    let mut lines = Vec::new();
    for event in &job.events {
        lines.push((
            event.message.clone(),
            event.message.clone(),
            event.level,
            event.message.clone(),
        ));
    }
    for (pod, diagnosis) in &job.pods {
        let Some(diagnosis) = diagnosis else {
            continue;
        };
        let message = match diagnosis.trouble {
            Trouble::Unschedulable => format!(
                "{} (waiting up to {} for the cluster to make room before reporting a crash)",
                diagnosis.message(),
                humantime::format_duration(options.schedule_timeout)
            ),
            _ => diagnosis.message(),
        };
        lines.push((
            format!("{pod}: {:?}", diagnosis.trouble),
            diagnosis.summary.clone(),
            WARNING,
            message,
        ));
    }
    lines.retain(|(once, ..)| !job.told.contains(once));
    lines
}

fn told_before(job: &Tracked, (_, known_by, _, _): &(String, String, u8, String)) -> bool {
    match &job.history {
        History::Known(lines) => lines.iter().any(|l| l.starts_with(known_by.as_str())),
        _ => false,
    }
}

/// Trouble that ends the run: a failed Job, a Job deleted under it, a pod stuck past its
/// timeout.
struct Ending {
    reason: CrashReason,
    message: String,
    with_pod_report: bool,
    delete: Option<DeletionCause>,
}

fn trouble(key: &JobKey, job: &Tracked, now: Timestamp, options: &WatchOptions) -> Option<Ending> {
    if job.gone {
        return Some(Ending {
            reason: CrashReason::JobDeleted,
            message: format!(
                "Kubernetes Job {}/{} was deleted before the flow run finished. Resolution: if it was not deleted on purpose, look for a clean-up tool or TTL (ttlSecondsAfterFinished) removing running Jobs",
                key.0, key.1
            ),
            with_pod_report: false,
            delete: None,
        });
    }
    if let Some(Outcome::Failed {
        reason, message, ..
    }) = &job.outcome
    {
        return Some(Ending {
            reason: CrashReason::JobFailed,
            message: format!(
                "Kubernetes Job {}/{} failed: {reason}: {message}",
                key.0, key.1
            ),
            with_pod_report: true,
            delete: None,
        });
    }
    job.pods
        .values()
        .flatten()
        .find_map(|diagnosis| overdue(diagnosis, now, options))
}

/// A pod's trouble that lasted past its timeout.
fn overdue(diagnosis: &Diagnosis, now: Timestamp, options: &WatchOptions) -> Option<Ending> {
    let (timeout, reason, cause) = match diagnosis.trouble {
        Trouble::ImagePull | Trouble::Config => (
            options.pod_start_timeout,
            CrashReason::PodStart,
            DeletionCause::PodStart,
        ),
        Trouble::Unschedulable => (
            options.schedule_timeout,
            CrashReason::Unschedulable,
            DeletionCause::Unschedulable,
        ),
        Trouble::OomKilled | Trouble::CrashLoop | Trouble::Evicted => return None,
    };
    (age(diagnosis.since?, now) >= timeout).then(|| Ending {
        reason,
        message: diagnosis.message(),
        with_pod_report: false,
        delete: Some(cause),
    })
}

/// A final run's Job: deleted when it still runs for a run that is CANCELLED or CRASHED (an
/// outage hid the news), or by the janitor some time after it finished.
fn clean_up(
    key: &JobKey,
    job: &Tracked,
    run: &FlowRun,
    now: Timestamp,
    options: &WatchOptions,
) -> Vec<Action> {
    if !run.is_final() || job.gone || job.deleting {
        return Vec::new();
    }
    let state = run.state_type.as_deref().unwrap_or_default();
    match &job.outcome {
        Some(Outcome::Running) if matches!(state, "CANCELLED" | "CRASHED") => vec![
            Action::Tell {
                once: "run-final".into(),
                level: INFO,
                message: format!(
                    "Deleted Kubernetes Job {}/{}: it was still running, but its flow run is {state}",
                    key.0, key.1
                ),
            },
            Action::Delete {
                propagation: Propagation::Foreground,
                cause: DeletionCause::RunFinal,
            },
        ],
        Some(Outcome::Succeeded { at }) => janitor(
            *at,
            options.delete_succeeded_after,
            now,
            DeletionCause::JanitorSucceeded,
        ),
        Some(Outcome::Failed { at, .. }) => janitor(
            *at,
            options.delete_failed_after,
            now,
            DeletionCause::JanitorFailed,
        ),
        _ => Vec::new(),
    }
}

fn janitor(
    finished: Timestamp,
    keep: Option<Duration>,
    now: Timestamp,
    cause: DeletionCause,
) -> Vec<Action> {
    if keep.is_some_and(|keep| age(finished, now) >= keep) {
        vec![Action::Delete {
            propagation: Propagation::Background,
            cause,
        }]
    } else {
        Vec::new()
    }
}

/// Whether a crash report about the Job `key` (its claim label `claim`) is still the run's
/// business: the run is not final, not waiting to run again, its infrastructure is this Job,
/// and it is not PENDING under another claim (claimed again, its new Job not recorded yet).
pub fn belongs_to(run: &FlowRun, key: &JobKey, claim: Option<&str>) -> bool {
    let active = matches!(run.state_type.as_deref(), Some("PENDING" | "RUNNING"));
    let same_job = match &run.infrastructure_pid {
        Some(pid) => job_of_pid(Some(pid)).as_ref() == Some(key),
        None => true,
    };
    // A PENDING state is a claim; the Job's label is derived from the claim's state id.
    let claimed_again = run.state_type.as_deref() == Some("PENDING")
        && run.state_id.is_some()
        && claim.is_some_and(|claim| claim != job_name_suffix(&run.id, run.state_id.as_deref()));
    active && same_job && !claimed_again
}

/// `namespace:name` → the Job's key.
pub fn job_of_pid(pid: Option<&str>) -> Option<JobKey> {
    let (namespace, name) = pid?.split_once(':')?;
    Some((namespace.to_string(), name.to_string()))
}

/// How long before `now` `time` was (zero for the future: clocks differ).
fn age(time: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(time)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::tracked::EventLine;

    const NOW: &str = "2026-01-01T01:00:00Z";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    fn ago(seconds: i64) -> Timestamp {
        now() - k8s_openapi::jiff::SignedDuration::from_secs(seconds)
    }

    fn options() -> WatchOptions {
        WatchOptions {
            agent: "a".into(),
            pool: "p".into(),
            namespaces: Vec::new(),
            pod_start_timeout: Duration::from_secs(300),
            schedule_timeout: Duration::from_secs(1800),
            delete_succeeded_after: None,
            delete_failed_after: None,
            pass_interval: Duration::from_secs(10),
            cancel_interval: Duration::from_secs(10),
            log_tail: 500,
        }
    }

    fn key() -> JobKey {
        ("ns".into(), "etl-abc".into())
    }

    fn job(outcome: Outcome) -> Tracked {
        Tracked {
            run: "run-1".into(),
            outcome: Some(outcome),
            ..Tracked::default()
        }
    }

    fn running() -> Tracked {
        job(Outcome::Running)
    }

    fn run(state: &str, pid: Option<&str>) -> FlowRun {
        serde_json::from_value(serde_json::json!({
            "id": "run-1", "name": "n", "flow_id": "f",
            "state_type": state, "infrastructure_pid": pid,
        }))
        .unwrap()
    }

    fn ours(state: &str) -> FlowRun {
        run(state, Some("ns:etl-abc"))
    }

    fn with_pod(mut job: Tracked, trouble: Trouble, since: Timestamp) -> Tracked {
        job.pods.insert(
            "etl-abc-x1".into(),
            Some(Diagnosis {
                trouble,
                summary: format!("{trouble:?} summary"),
                detail: "detail".into(),
                resolution: "do this".into(),
                since: Some(since),
            }),
        );
        job
    }

    fn decided(job: &Tracked, run: Option<&FlowRun>) -> Vec<Action> {
        decide(&key(), job, run, now(), &options())
    }

    fn crashes(actions: &[Action]) -> Vec<CrashReason> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Crash { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect()
    }

    fn deletions(actions: &[Action]) -> Vec<(Propagation, DeletionCause)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Delete { propagation, cause } => Some((*propagation, *cause)),
                _ => None,
            })
            .collect()
    }

    fn tells(actions: &[Action]) -> Vec<&str> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Tell { message, .. } => Some(message.as_str()),
                _ => None,
            })
            .collect()
    }

    // Row: ErrImagePull / ImagePullBackOff / InvalidImageName, and CreateContainerConfigError.
    #[test]
    fn pull_and_config_errors_warn_then_crash_past_the_pod_start_timeout_and_delete_the_job() {
        for trouble in [Trouble::ImagePull, Trouble::Config] {
            let young = with_pod(running(), trouble, ago(60));
            let actions = decided(&young, None);
            assert_eq!(
                tells(&actions),
                ["ImagePull summary: detail. Resolution: do this"
                    .replace("ImagePull", &format!("{trouble:?}"))]
            );
            assert!(
                crashes(&actions).is_empty(),
                "within the timeout: {actions:?}"
            );

            let old = with_pod(running(), trouble, ago(301));
            assert_eq!(
                decided(&old, None).last(),
                Some(&Action::ReadRun),
                "a crash needs the run as it is now"
            );
            let actions = decided(&old, Some(&ours("PENDING")));
            assert_eq!(crashes(&actions), [CrashReason::PodStart]);
            assert_eq!(
                deletions(&actions),
                [(Propagation::Background, DeletionCause::PodStart)]
            );
        }
    }

    // Row: unschedulable.
    #[test]
    fn an_unschedulable_pod_is_waited_for_until_the_schedule_timeout() {
        let waiting = with_pod(running(), Trouble::Unschedulable, ago(600));
        let actions = decided(&waiting, Some(&ours("PENDING")));
        assert!(crashes(&actions).is_empty());
        assert!(
            tells(&actions)[0].ends_with(
                "(waiting up to 30m for the cluster to make room before reporting a crash)"
            ),
            "{actions:?}"
        );
        let too_long = with_pod(running(), Trouble::Unschedulable, ago(1801));
        let actions = decided(&too_long, Some(&ours("RUNNING")));
        assert_eq!(crashes(&actions), [CrashReason::Unschedulable]);
        assert_eq!(
            deletions(&actions),
            [(Propagation::Background, DeletionCause::Unschedulable)]
        );
        // A pod that got a node has no diagnosis: nothing to do.
        let mut scheduled = too_long.clone();
        scheduled.pods.insert("etl-abc-x1".into(), None);
        assert_eq!(decided(&scheduled, Some(&ours("RUNNING"))), []);
    }

    // Row: OOMKilled, eviction, CrashLoopBackOff.
    #[test]
    fn oom_eviction_and_crash_loops_are_told_and_left_to_the_jobs_failure() {
        for trouble in [Trouble::OomKilled, Trouble::Evicted, Trouble::CrashLoop] {
            let job = with_pod(running(), trouble, ago(100_000));
            let actions = decided(&job, Some(&ours("RUNNING")));
            assert_eq!(tells(&actions).len(), 1, "{actions:?}");
            assert!(crashes(&actions).is_empty(), "{trouble:?}: {actions:?}");
        }
    }

    // Row: Job fails.
    #[test]
    fn a_failed_job_crashes_its_run_with_the_reason_and_a_pod_report_and_keeps_the_job() {
        let failed = job(Outcome::Failed {
            at: ago(1),
            reason: "BackoffLimitExceeded".into(),
            message: "Job has reached the specified backoff limit".into(),
        });
        assert_eq!(decided(&failed, None), [Action::ReadRun]);
        let actions = decided(&failed, Some(&ours("RUNNING")));
        assert_eq!(
            actions,
            [Action::Crash {
                reason: CrashReason::JobFailed,
                message: "Kubernetes Job ns/etl-abc failed: BackoffLimitExceeded: Job has reached the specified backoff limit".into(),
                with_pod_report: true,
            }]
        );
    }

    // Row: Job deleted while its run is not final.
    #[test]
    fn a_job_deleted_under_a_live_run_crashes_it() {
        let mut gone = running();
        gone.gone = true;
        let actions = decided(&gone, Some(&ours("RUNNING")));
        assert_eq!(crashes(&actions), [CrashReason::JobDeleted]);
        assert!(deletions(&actions).is_empty());
        // The agent's own deletion is not news.
        gone.deleting = true;
        assert_eq!(decided(&gone, Some(&ours("RUNNING"))), []);
    }

    // The report goes only to a run that still belongs to the Job: final, rescheduled (an
    // evicted run its engine retries) or claimed again under a new Job name → left alone.
    #[test]
    fn a_crash_is_reported_only_while_the_run_is_this_jobs_and_not_final() {
        let failed = job(Outcome::Failed {
            at: ago(1),
            reason: "BackoffLimitExceeded".into(),
            message: "m".into(),
        });
        for run in [ours("PENDING"), ours("RUNNING"), run("PENDING", None)] {
            assert_eq!(
                crashes(&decided(&failed, Some(&run))),
                [CrashReason::JobFailed]
            );
        }
        for run in [
            ours("SCHEDULED"),
            run("PENDING", Some("ns:etl-xyz")),
            ours("COMPLETED"),
            ours("FAILED"),
            ours("CRASHED"),
            ours("CANCELLED"),
        ] {
            let actions = decided(&failed, Some(&run));
            assert!(
                matches!(actions.as_slice(), [Action::LeaveAlone { message }] if message.starts_with("not reporting a crash")),
                "{run:?}: {actions:?}"
            );
        }
        // Claimed again before the new Job is recorded: the run still names this Job, but
        // its PENDING state is another claim than this Job's.
        let claimed = Tracked {
            claim: Some(job_name_suffix("run-1", Some("claim-1"))),
            ..failed
        };
        let under = |state_id: &str| {
            let mut run = ours("PENDING");
            run.state_id = Some(state_id.into());
            run
        };
        assert_eq!(
            crashes(&decided(&claimed, Some(&under("claim-1")))),
            [CrashReason::JobFailed]
        );
        assert!(matches!(
            decided(&claimed, Some(&under("claim-2"))).as_slice(),
            [Action::LeaveAlone { .. }]
        ));
        let mut running_again = ours("RUNNING");
        running_again.state_id = Some("running-state".into());
        assert_eq!(
            crashes(&decided(&claimed, Some(&running_again))),
            [CrashReason::JobFailed],
            "a RUNNING state is not a claim"
        );
    }

    // Row: run in CANCELLING.
    #[test]
    fn a_cancelling_run_has_its_job_deleted_pods_first_then_is_cancelled_once_it_is_gone() {
        let job = with_pod(running(), Trouble::ImagePull, ago(10_000));
        let actions = decided(&job, Some(&ours("CANCELLING")));
        assert_eq!(
            deletions(&actions),
            [(Propagation::Foreground, DeletionCause::Cancelled)]
        );
        assert_eq!(
            tells(&actions),
            ["Flow run is cancelling: deleting Kubernetes Job ns/etl-abc"]
        );
        assert!(
            crashes(&actions).is_empty(),
            "a cancelled run is not crashed"
        );
        let mut deleting = job.clone();
        deleting.deleting = true;
        deleting.cancelling = true;
        assert_eq!(decided(&deleting, None), [], "waits for the Job to go");
        deleting.gone = true;
        assert_eq!(decided(&deleting, None), [Action::ProposeCancelled]);
    }

    // Row: Job still running while its run is CANCELLED or CRASHED.
    #[test]
    fn a_job_still_running_for_a_cancelled_or_crashed_run_is_deleted() {
        for state in ["CANCELLED", "CRASHED"] {
            let mut job = running();
            job.settled = true;
            let actions = decided(&job, Some(&ours(state)));
            assert_eq!(
                deletions(&actions),
                [(Propagation::Foreground, DeletionCause::RunFinal)],
                "{state}"
            );
        }
        let mut completed = running();
        completed.settled = true;
        assert_eq!(
            decided(&completed, Some(&ours("COMPLETED"))),
            [],
            "a COMPLETED run's Job finishes by itself"
        );
    }

    // Row: janitor.
    #[test]
    fn the_janitor_deletes_finished_jobs_of_final_runs_after_their_keep_time_by_outcome() {
        let options = WatchOptions {
            delete_succeeded_after: Some(Duration::from_secs(60)),
            ..options()
        };
        let succeeded = |seconds| {
            let mut job = job(Outcome::Succeeded { at: ago(seconds) });
            job.settled = true;
            job
        };
        let decide_with =
            |job: &Tracked, run: &FlowRun| decide(&key(), job, Some(run), now(), &options);
        assert_eq!(decide_with(&succeeded(30), &ours("COMPLETED")), []);
        assert_eq!(
            deletions(&decide_with(&succeeded(61), &ours("COMPLETED"))),
            [(Propagation::Background, DeletionCause::JanitorSucceeded)]
        );
        assert_eq!(
            decide_with(&succeeded(61), &ours("RUNNING")),
            [],
            "never while the run is not final"
        );
        let mut failed = job(Outcome::Failed {
            at: ago(10_000),
            reason: "r".into(),
            message: "m".into(),
        });
        failed.settled = true;
        assert_eq!(
            decide_with(&failed, &ours("CRASHED")),
            [],
            "failed Jobs are kept without --delete-failed-after"
        );
    }

    // Row: reports once across restarts.
    #[test]
    fn nothing_is_told_twice_not_even_by_a_restarted_agent() {
        let mut job = with_pod(running(), Trouble::ImagePull, ago(60));
        job.events.push(EventLine {
            level: WARNING,
            message: "Kubernetes event on Pod etl-abc-x1: Failed: pull".into(),
        });
        job.history = History::Unknown;
        assert_eq!(
            decided(&job, None),
            [Action::ReadLogHistory],
            "a Job listed at start: read what the run was told before"
        );
        job.history = History::Known(vec![
            "Kubernetes event on Pod etl-abc-x1: Failed: pull".into(),
            "ImagePull summary: detail. Resolution: do this".into(),
        ]);
        assert_eq!(decided(&job, None), [], "both were told before the restart");
        job.history = History::NotNeeded;
        assert_eq!(tells(&decided(&job, None)).len(), 2);
        job.told.insert("etl-abc-x1: ImagePull".into());
        job.told
            .insert("Kubernetes event on Pod etl-abc-x1: Failed: pull".into());
        assert_eq!(decided(&job, None), [], "told once by this agent");
    }

    #[test]
    fn a_settled_run_is_told_nothing_more() {
        let mut job = with_pod(running(), Trouble::ImagePull, ago(100_000));
        job.settled = true;
        assert_eq!(decided(&job, None), []);
        assert_eq!(
            decided(&job, Some(&ours("CRASHED"))),
            deletions_only_run_final()
        );
    }

    fn deletions_only_run_final() -> Vec<Action> {
        vec![
            Action::Tell {
                once: "run-final".into(),
                level: INFO,
                message: "Deleted Kubernetes Job ns/etl-abc: it was still running, but its flow run is CRASHED".into(),
            },
            Action::Delete {
                propagation: Propagation::Foreground,
                cause: DeletionCause::RunFinal,
            },
        ]
    }

    #[test]
    fn pods_seen_before_their_job_wait_for_it() {
        let mut job = with_pod(Tracked::default(), Trouble::ImagePull, ago(100_000));
        job.run = "run-1".into();
        assert_eq!(decided(&job, None), [], "the Job may be over already");
    }
}
