//! A real Prefect 3 server for end-to-end tests (tests/prefect/serve.py in the project's venv:
//! SQLite in a temp dir, loopback, a free port), one per test process, and a small REST helper
//! to drive it as a user would. Never a mock.

use serde_json::{Value, json};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub struct PrefectServer {
    pub api_url: String,
    port: u16,
    process: Mutex<Child>,
    /// The server's database URL; SQLite in `data` when `None`.
    database: Option<String>,
    data: tempfile::TempDir,
    // Dropped after the server is killed (fields drop in order).
    _postgres: Option<crate::postgres::Postgres>,
}

/// Which database a server runs on. `AGENT_TEST_PREFECT_DATABASE=postgres` makes every
/// server of the tests and benchmarks use PostgreSQL; SQLite otherwise (Prefect's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    Sqlite,
    Postgres,
}

impl Database {
    pub fn from_env() -> Database {
        match std::env::var("AGENT_TEST_PREFECT_DATABASE").as_deref() {
            Ok("postgres" | "postgresql") => Database::Postgres,
            _ => Database::Sqlite,
        }
    }
}

/// The test process's Prefect server, started on first use (about 15 s).
pub fn server() -> &'static PrefectServer {
    static SERVER: OnceLock<PrefectServer> = OnceLock::new();
    SERVER.get_or_init(PrefectServer::dedicated)
}

fn spawn(port: u16, data: &std::path::Path, database: Option<&str>) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.join("server.log"))
        .unwrap();
    let mut command = Command::new(crate::python());
    if let Some(url) = database {
        command.env("AGENT_TEST_DATABASE_URL", url);
    }
    command
        .arg(crate::tests_path("prefect/serve.py"))
        .arg(port.to_string())
        .arg(data)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting the Prefect server")
}

impl PrefectServer {
    /// A server of the caller's own (for tests that stop and restart it), on the database
    /// `AGENT_TEST_PREFECT_DATABASE` says.
    pub fn dedicated() -> PrefectServer {
        Self::on(Database::from_env())
    }

    /// A server of the caller's own on `database` (a fresh PostgreSQL cluster of its own).
    pub fn on(database: Database) -> PrefectServer {
        let data = tempfile::tempdir().unwrap();
        if database == Database::Sqlite {
            start_from_migrated_sqlite(data.path());
        }
        Self::start(database, data)
    }

    /// A server on `database`, its files (and SQLite's database) in `data`.
    fn start(database: Database, data: tempfile::TempDir) -> PrefectServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let postgres = (database == Database::Postgres).then(crate::postgres::Postgres::start);
        let url = postgres.as_ref().map(|p| p.prefect_url());
        let process = spawn(port, data.path(), url.as_deref());
        let server = PrefectServer {
            api_url: format!("http://127.0.0.1:{port}/api"),
            port,
            process: Mutex::new(process),
            database: url,
            data,
            _postgres: postgres,
        };
        server.wait_until_up();
        server
    }

    fn wait_until_up(&self) {
        let started = Instant::now();
        while ureq::get(&format!("{}/health", self.api_url))
            .call()
            .is_err()
        {
            // Minutes, not seconds: on a loaded 2-core CI machine several servers start at once,
            // and Prefect's imports alone take seconds of CPU each.
            if started.elapsed() > Duration::from_secs(300) {
                let log = std::fs::read_to_string(self.data.path().join("server.log"))
                    .unwrap_or_default();
                panic!("the Prefect server did not come up in 300 s:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Kills the server (as a crash would); the database stays.
    pub fn kill(&self) {
        let mut process = self.process.lock().unwrap();
        let _ = process.kill();
        let _ = process.wait();
    }

    /// Starts it again on the same port and database, and waits until it answers.
    pub fn restart(&self) {
        *self.process.lock().unwrap() =
            spawn(self.port, self.data.path(), self.database.as_deref());
        self.wait_until_up();
    }

    /// `METHOD path` with a JSON body; the answer as JSON. Panics with the server's words on
    /// an error status.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.api_url);
        // SQLite under concurrent writers answers 503; Prefect's own client retries, so do we
        // (for a minute: a loaded CI machine with several suites on one server needs it).
        let started = std::time::Instant::now();
        let mut attempt = 0u64;
        while started.elapsed() < Duration::from_secs(60) {
            attempt += 1;
            let response = match (method, body.clone()) {
                ("GET", _) => ureq::get(&url).call(),
                ("DELETE", _) => ureq::delete(&url).call(),
                ("PATCH", body) => ureq::patch(&url).send_json(body.unwrap_or(json!({}))),
                (_, body) => ureq::post(&url).send_json(body.unwrap_or(json!({}))),
            };
            match response {
                Ok(mut response) => {
                    let text = response.body_mut().read_to_string().unwrap_or_default();
                    return if text.is_empty() {
                        Value::Null
                    } else {
                        serde_json::from_str(&text).unwrap()
                    };
                }
                Err(ureq::Error::StatusCode(429 | 503)) => {
                    std::thread::sleep(Duration::from_millis((50 * attempt).min(1000)))
                }
                Err(e) => panic!("{method} {path}: {e}"),
            }
        }
        panic!("{method} {path}: the Prefect server stayed unavailable (503)")
    }

    pub fn create_pool(&self, name: &str, base_job_template: Value) -> Value {
        self.call(
            "POST",
            "/work_pools/",
            Some(
                json!({"name": name, "type": "kubernetes", "base_job_template": base_job_template}),
            ),
        )
    }

    /// A flow and a deployment of it on `pool`; returns the deployment id. Prefect upserts
    /// deployments by flow and name: tests running side by side need names of their own.
    pub fn create_deployment(
        &self,
        pool: &str,
        flow: &str,
        name: &str,
        job_variables: Value,
    ) -> String {
        let flow = self.call("POST", "/flows/", Some(json!({"name": flow})));
        let deployment = self.call(
            "POST",
            "/deployments/",
            Some(json!({"name": name, "flow_id": flow["id"], "work_pool_name": pool, "job_variables": job_variables})),
        );
        deployment["id"].as_str().unwrap().to_string()
    }

    /// A run of the deployment, scheduled now; returns its id.
    pub fn create_run(&self, deployment: &str, job_variables: Value) -> String {
        self.create_tagged_run(deployment, job_variables, &[])
    }

    /// A run of the deployment with `tags`, scheduled now; returns its id.
    /// `count` runs of `deployment` scheduled now, created `parallel` at a time (set-up of a
    /// benchmark must not be what it measures); their ids, in no order.
    pub fn create_runs(&self, deployment: &str, count: usize, parallel: usize) -> Vec<String> {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let ids = Mutex::new(Vec::with_capacity(count));
        std::thread::scope(|scope| {
            for _ in 0..parallel.max(1) {
                scope.spawn(|| {
                    while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < count {
                        let id = self.create_run(deployment, json!({}));
                        ids.lock().unwrap().push(id);
                    }
                });
            }
        });
        ids.into_inner().unwrap()
    }

    pub fn create_tagged_run(
        &self,
        deployment: &str,
        job_variables: Value,
        tags: &[&str],
    ) -> String {
        let run = self.call(
            "POST",
            &format!("/deployments/{deployment}/create_flow_run"),
            Some(json!({"job_variables": job_variables, "tags": tags})),
        );
        run["id"].as_str().unwrap().to_string()
    }

    /// A block document of a block type the server registers itself (`secret`, `json`, …).
    pub fn create_block(&self, block_type: &str, name: &str, data: Value) -> Value {
        let block_type = self.call("GET", &format!("/block_types/slug/{block_type}"), None);
        let schemas = self.call(
            "POST",
            "/block_schemas/filter",
            Some(json!({"block_schemas": {"block_type_id": {"any_": [block_type["id"]]}}})),
        );
        self.call(
            "POST",
            "/block_documents/",
            Some(json!({
                "name": name,
                "data": data,
                "block_type_id": block_type["id"],
                "block_schema_id": schemas[0]["id"],
            })),
        )
    }

    pub fn create_variable(&self, name: &str, value: Value) -> Value {
        self.call(
            "POST",
            "/variables/",
            Some(json!({"name": name, "value": value})),
        )
    }

    pub fn flow_run(&self, id: &str) -> Value {
        self.call("GET", &format!("/flow_runs/{id}"), None)
    }

    /// The run's log messages, oldest first.
    pub fn logs(&self, run: &str) -> Vec<String> {
        let logs = self.call(
            "POST",
            "/logs/filter",
            Some(json!({"logs": {"flow_run_id": {"any_": [run]}}, "sort": "TIMESTAMP_ASC"})),
        );
        logs.as_array()
            .unwrap()
            .iter()
            .map(|l| l["message"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

impl Drop for PrefectServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Puts an empty, migrated Prefect database into `data` (the server's SQLite file), so that the
/// server does not migrate one at start: that costs about 10 s of CPU per server, and the test
/// suites start a few dozen on a 2-core CI machine. Best effort: without it, the server
/// migrates its database itself.
fn start_from_migrated_sqlite(data: &std::path::Path) {
    if let Some(template) = migrated_sqlite() {
        let _ = std::fs::copy(template, data.join("prefect.db"));
    }
}

/// The migrated empty database, made once per Prefect version (`tests/requirements.txt` pins
/// it) under `target/prefect/` by a server that migrated it, then copied out with SQLite's
/// `VACUUM INTO` (one file, no write-ahead log). A file lock makes concurrent test binaries
/// wait for the one that makes it.
fn migrated_sqlite() -> Option<&'static std::path::Path> {
    static TEMPLATE: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            use std::hash::{Hash, Hasher};
            let mut key = std::collections::hash_map::DefaultHasher::new();
            std::fs::read(crate::tests_path("requirements.txt"))
                .ok()?
                .hash(&mut key);
            let dir = crate::workspace_root().join("target/prefect");
            std::fs::create_dir_all(&dir).ok()?;
            let path = dir.join(format!("empty-{:016x}.db", key.finish()));
            let lock = std::fs::File::create(dir.join(".lock")).ok()?;
            lock.lock().ok()?;
            if !path.exists() {
                migrate_sqlite_into(&path)?;
            }
            Some(path)
        })
        .as_deref()
}

/// Has a server migrate a fresh SQLite database, then copies it to `path` with `VACUUM INTO`.
fn migrate_sqlite_into(path: &std::path::Path) -> Option<()> {
    let server = PrefectServer::start(Database::Sqlite, tempfile::tempdir().ok()?);
    server.kill();
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let vacuum = Command::new(crate::python())
        .args([
            "-c",
            "import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute('VACUUM INTO ?', (sys.argv[2],))",
        ])
        .arg(server.data.path().join("prefect.db"))
        .arg(&tmp)
        .status()
        .ok()?;
    vacuum.success().then_some(())?;
    std::fs::rename(&tmp, path).ok()
}
