use clap::{CommandFactory, FromArgMatches};
use std::process::ExitCode;

fn main() -> ExitCode {
    let command = agent::cli::Cli::command();
    let args = match agent::config_file::expand(&command, std::env::args_os().collect()) {
        Ok(args) => args,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(2);
        }
    };
    let cli = match command
        .try_get_matches_from(args)
        .and_then(|matches| agent::cli::Cli::from_arg_matches(&matches))
    {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    agent::cli::init_logging(&cli.log, cli.log_format);
    match cli.command {
        agent::cli::Command::Render(args) => agent::render::main(args),
        agent::cli::Command::Start(args) => agent::start::main(args),
        agent::cli::Command::Install(args) => agent::install::main(args),
        agent::cli::Command::Plugin(agent::cli::PluginCommand::Check(args)) => {
            agent::plugin_tool::check(args)
        }
        agent::cli::Command::Plugin(agent::cli::PluginCommand::Test(args)) => {
            agent::plugin_tool::test(args)
        }
        agent::cli::Command::Plugin(agent::cli::PluginCommand::New(args)) => {
            agent::scaffold::main(args)
        }
    }
}
