//! A throw-away PostgreSQL cluster for a Prefect server on PostgreSQL (benchmarks and a few
//! tests): Debian's `postgresql` server binaries, `initdb` into a temp dir as an unprivileged
//! user (PostgreSQL refuses to run as root, and CI runs as root), loopback on a free port, a
//! socket in the data dir; stopped and removed when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    data: tempfile::TempDir,
    user: Option<String>,
}

/// The server's binaries: Debian's `/usr/lib/postgresql/<version>/bin`, newest first, else
/// `initdb` on the PATH.
fn binaries() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().or_else(|| {
        let output = Command::new("sh")
            .args(["-c", "command -v initdb"])
            .output()
            .ok()?;
        let path = String::from_utf8(output.stdout).ok()?;
        Some(Path::new(path.trim()).parent()?.to_path_buf())
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl Postgres {
    /// Starts a cluster with a database `prefect`; panics with what to install when the server
    /// binaries are missing.
    pub fn start() -> Postgres {
        let bin = binaries().expect(
            "PostgreSQL's server binaries are missing: install Debian's `postgresql` package (tests/setup-postgres.sh)",
        );
        let data = tempfile::tempdir().expect("a temp dir");
        // Root may not run PostgreSQL: run it as `nobody`, who owns the data dir.
        let user = is_root().then(|| "nobody".to_string());
        if user.is_some() {
            let status = Command::new("chown")
                .args(["-R", "nobody", &data.path().display().to_string()])
                .status()
                .expect("chown");
            assert!(status.success(), "chown of the PostgreSQL data dir failed");
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let postgres = Postgres {
            port,
            bin,
            data,
            user,
        };
        let cluster = postgres.cluster_dir();
        postgres.run(
            "initdb",
            &[
                "-D",
                &cluster,
                "-U",
                "prefect",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
        );
        let socket = postgres.data.path().display().to_string();
        postgres.run(
            "pg_ctl",
            &[
                "-D",
                &cluster,
                "-l",
                &format!("{socket}/server.log"),
                "-w",
                "-o",
                &format!(
                    "-p {port} -c listen_addresses=127.0.0.1 -k {socket} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
                ),
                "start",
            ],
        );
        postgres.run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "prefect",
                "prefect",
            ],
        );
        postgres
    }

    /// The URL Prefect's server takes (`PREFECT_SERVER_DATABASE_CONNECTION_URL`).
    pub fn prefect_url(&self) -> String {
        format!(
            "postgresql+asyncpg://prefect@127.0.0.1:{}/prefect",
            self.port
        )
    }

    fn cluster_dir(&self) -> String {
        self.data.path().join("cluster").display().to_string()
    }

    /// One of PostgreSQL's programs, run as the cluster's owner.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program).display().to_string();
        match &self.user {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--", &program]);
                command
            }
            None => Command::new(&program),
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let started = Instant::now();
        let output = self
            .command(program)
            .args(args)
            .current_dir(self.data.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"));
        assert!(
            output.status.success(),
            "{program} failed after {:?}:\n{}{}",
            started.elapsed(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let cluster = self.cluster_dir();
        let _ = self
            .command("pg_ctl")
            .args(["-D", &cluster, "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // Give the server a moment to release the directory before it is removed.
        std::thread::sleep(Duration::from_millis(100));
    }
}
