//! Nothing lost, nothing twice, under faults: the small versions of the fault suite
//! (`fault_suite`), each on its own Prefect server and emulator. Every run ends with exactly
//! one Job (recorded on the run, and told in its log) or in a final state that says why.
//! The full versions and the soak: `cargo bench -p agent --bench faults`.

mod fault_suite;

use fault_suite::{Scale, Tally};

fn report(tally: &Tally) {
    println!("{}\n{}", Tally::header(), tally.row());
    tally.assert_nothing_lost();
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_killed_with_sigkill_lose_nothing_and_duplicate_nothing() {
    report(&fault_suite::kill_loop(Scale::small(), true).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prefect_outage_mid_drain_loses_nothing() {
    report(&fault_suite::prefect_outage(Scale::small()).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn kubernetes_errors_lost_answers_and_latency_lose_nothing() {
    let tally = fault_suite::kubernetes_faults(Scale::small()).await;
    report(&tally);
    assert_eq!(
        tally.crashed,
        0,
        "every fault was ridden out: {}",
        tally.row()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_while_prefect_is_slow_loses_nothing() {
    report(&fault_suite::sigterm_slow_prefect(Scale::small()).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_while_kubernetes_is_slow_loses_nothing() {
    report(&fault_suite::sigterm_slow_kubernetes(Scale::small()).await);
}
