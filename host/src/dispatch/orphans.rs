//! Claims left unfinished. An agent killed between its claim and the Job's creation (or that
//! gave up at shutdown) leaves its run PENDING with no Job, and Prefect's late-runs service only
//! looks at SCHEDULED runs: nobody would take it. So every agent looks, at start and then every
//! `--orphan-interval`, for this pool's PENDING runs claimed by an agent (the claim message),
//! with no Job recorded, older than `--orphan-grace`, and finishes them. That is safe from any
//! agent: the Job's name is a function of the run and of its claim's state id, so a Job the
//! first agent did create is found and adopted, never made twice.

use super::{Dispatcher, Outcome};
use crate::prefect::models::FlowRun;
use std::time::Duration;

/// How claim messages start: `Claimed by agent NAME (claim TOKEN)`.
const CLAIM_PREFIX: &str = "Claimed by agent ";
/// Pages of PENDING runs read per look (200 each), at most.
const MAX_PAGES: usize = 50;

/// The message of a claim by `agent`; `token` makes it this claim's own.
pub fn claim_message(agent: &str, token: &str) -> String {
    format!("{CLAIM_PREFIX}{agent} (claim {token})")
}

/// The agent whose claim put `run` in PENDING, if an agent's claim did.
pub fn claimed_by(run: &FlowRun) -> Option<&str> {
    if run.state_type.as_deref() != Some("PENDING") {
        return None;
    }
    let message = run.state.as_ref()?.message.as_deref()?;
    let rest = message.strip_prefix(CLAIM_PREFIX)?;
    let (agent, token) = rest.rsplit_once(" (claim ")?;
    token.ends_with(')').then_some(agent)
}

/// Whether `run` is a claim left unfinished as of `now`: an agent's claim, no Job recorded,
/// older than `grace`.
pub fn is_orphan(run: &FlowRun, now: chrono::DateTime<chrono::Utc>, grace: Duration) -> bool {
    let claimed_at = run
        .state
        .as_ref()
        .and_then(|s| s.timestamp.as_deref())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    let old_enough = claimed_at.is_some_and(|at| {
        now.signed_duration_since(at)
            .to_std()
            .is_ok_and(|age| age >= grace)
    });
    claimed_by(run).is_some() && run.infrastructure_pid.is_none() && old_enough
}

impl Dispatcher {
    /// The pool's claims left unfinished.
    pub(super) async fn orphans(&self) -> Vec<FlowRun> {
        let prefect = self.parts.prefect.with_patience(super::POLL_PATIENCE);
        let now = chrono::Utc::now();
        let mut found = Vec::new();
        for page in 0..MAX_PAGES {
            let runs = match prefect
                .pending_flow_runs(&self.parts.pool.name, page * 200, 200)
                .await
            {
                Ok(runs) => runs,
                Err(e) => {
                    tracing::warn!("cannot look for claims left unfinished: {e}");
                    break;
                }
            };
            let last_page = runs.len() < 200;
            found.extend(
                runs.into_iter()
                    .filter(|run| is_orphan(run, now, self.parts.options.orphan_grace)),
            );
            if last_page {
                break;
            }
        }
        if !found.is_empty() {
            tracing::info!(
                "{} claim(s) left unfinished by an agent; finishing them",
                found.len()
            );
        }
        found
    }

    /// The Job of a claim left unfinished, when its agent did create it: recorded and told,
    /// with no new Job. `None` when there is none (the Job is to be built and created).
    pub(super) async fn finish_existing(&self, run: &FlowRun, claimed_by: &str) -> Option<Outcome> {
        let submitter = self.parts.submitter.as_ref()?;
        let claim = crate::request::job_name_suffix(&run.id, run.state_id.as_deref());
        match submitter
            .find_claim_job(&run.id, &claim, &self.parts.options.namespaces)
            .await
        {
            Ok(Some(existing)) => Some(
                self.report_submitted(&run.id, &existing, Some(claimed_by))
                    .await,
            ),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(flow_run = %run.id, "cannot look for the Job of a claim left unfinished (tried again later): {e}");
                Some(Outcome::ClaimedElsewhere)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(state: &str, message: &str, at: &str, pid: Option<&str>) -> FlowRun {
        serde_json::from_value(serde_json::json!({
            "id": "r", "name": "n", "flow_id": "f", "state_type": state, "infrastructure_pid": pid,
            "state": {"type": state, "message": message, "timestamp": at},
        }))
        .unwrap()
    }

    #[test]
    fn a_claim_left_unfinished_is_an_agents_old_pending_claim_with_no_job() {
        let now: chrono::DateTime<chrono::Utc> = "2026-01-01T00:10:00Z".parse().unwrap();
        let grace = Duration::from_secs(60);
        let claim = claim_message("agent a2", "0123abcd");
        let old = "2026-01-01T00:08:00Z";
        let young = "2026-01-01T00:09:30Z";
        assert!(is_orphan(&run("PENDING", &claim, old, None), now, grace));
        assert_eq!(
            claimed_by(&run("PENDING", &claim, old, None)),
            Some("agent a2")
        );
        for (what, candidate) in [
            ("too young", run("PENDING", &claim, young, None)),
            (
                "has its Job",
                run("PENDING", &claim, old, Some("ns:etl-abc")),
            ),
            ("moved on", run("RUNNING", &claim, old, None)),
            ("Prefect's worker's claim", run("PENDING", "", old, None)),
            (
                "another message",
                run("PENDING", "Claimed by agent x", old, None),
            ),
        ] {
            assert!(!is_orphan(&candidate, now, grace), "{what}");
        }
    }
}
