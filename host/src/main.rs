use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = agent::cli::Cli::parse();
    agent::cli::init_logging(&cli.log, cli.log_format);
    match cli.command {
        agent::cli::Command::Render(args) => agent::render::main(args),
        agent::cli::Command::Start(args) => agent::start::main(args),
    }
}
