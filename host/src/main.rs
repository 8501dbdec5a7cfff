use agent::cli::{Cli, Command, PluginCommand};
use agent::settings::{RenderSettings, StartSettings};
use clap::{CommandFactory, FromArgMatches};
use std::process::ExitCode;

fn main() -> ExitCode {
    // A panic anywhere (a task included) is a bug: end the agent with an error rather than
    // leave it half alive.
    std::panic::set_hook(Box::new(|info| {
        eprintln!(
            "{} ({info}); the agent stops. Please report this with the log above.",
            agent::text::INTERNAL_ERROR
        );
        std::process::exit(70);
    }));
    agent::cli::read_renamed_env();
    let command = Cli::command();
    let args = match agent::config_file::expand(&command, std::env::args_os().collect()) {
        Ok(args) => args,
        Err(error) => {
            eprintln!("error: {}", agent::text::error_chain(&error));
            return ExitCode::from(2);
        }
    };
    let cli = match command
        .try_get_matches_from(args)
        .and_then(|matches| Cli::from_arg_matches(&matches))
    {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    agent::cli::init_logging(&cli.log, cli.log_format);
    match cli.command {
        Command::Render(args) => agent::render::main(RenderSettings::from_args(args)),
        Command::Start(args) => match StartSettings::from_args(args) {
            Ok(settings) => agent::start::main(settings),
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::from(2)
            }
        },
        Command::Install(args) => agent::install::main(args),
        Command::Plugin(PluginCommand::Check(args)) => agent::plugin_tool::check(args),
        Command::Plugin(PluginCommand::Test(args)) => agent::plugin_tool::test(args),
        Command::Plugin(PluginCommand::New(args)) => agent::scaffold::main(args),
    }
}
