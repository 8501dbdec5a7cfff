//! The PostgreSQL fixture: a throw-away cluster, a Prefect server on it, runs created in bulk.
//! Skipped (with a message) where PostgreSQL's server binaries are not installed.

use agent_tests::prefect::{Database, PrefectServer};
use serde_json::json;

#[test]
fn a_prefect_server_runs_on_a_throw_away_postgresql_cluster() {
    if std::fs::read_dir("/usr/lib/postgresql").is_err() {
        eprintln!("skipped: PostgreSQL is not installed (tests/setup-postgres.sh installs it)");
        return;
    }
    let prefect = PrefectServer::on(Database::Postgres);
    prefect.create_pool("pg", json!({}));
    let deployment = prefect.create_deployment("pg", "etl", "pg", json!({}));
    let runs = prefect.create_runs(&deployment, 40, 8);
    assert_eq!(runs.len(), 40);
    let counted = prefect.call(
        "POST",
        "/flow_runs/count",
        Some(json!({"deployments": {"id": {"any_": [deployment]}}})),
    );
    assert_eq!(counted, json!(40));
}
