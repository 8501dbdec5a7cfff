//! Runs the emulator standalone: prints the kubeconfig path, serves until interrupted.

use clap::Parser;
use kube_emulator::{Config, Emulator};
use std::path::PathBuf;

#[derive(Parser)]
#[command(about = "A Kubernetes API emulator for tests (not a cluster: no containers run)")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// YAML config: namespaces, tokens and RBAC, node, pod scripts, time scale (see README).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Also write the kubeconfig here.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let config: Config = match &args.config {
        Some(path) => serde_yaml_ng::from_str(&std::fs::read_to_string(path)?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        None => Config::default(),
    };
    let emulator = Emulator::start_on(args.listen, config).await?;
    let kubeconfig = match args.kubeconfig {
        Some(path) => {
            std::fs::copy(emulator.kubeconfig(), &path)?;
            path
        }
        None => emulator.kubeconfig().to_path_buf(),
    };
    println!("{}", kubeconfig.display());
    eprintln!(
        "kube-emulator listening on {}; KUBECONFIG={}",
        emulator.url(),
        kubeconfig.display()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
