//! The command line: parses flags with clap (`args`), runs one command (`commands/`), prints
//! through its view (`views/`) and maps the outcome to an exit code. The only module that
//! prints or reads the terminal.

mod args;
mod commands;
mod exit;
mod terminal;
mod views;

use std::process::ExitCode;

use clap::Parser;

pub use args::Cli;
use args::Command;
use commands::Context;
use exit::Exit;

use crate::engine::{AwsOptions, EngineError};

/// Parses the arguments, runs the command and returns the exit code.
pub fn main() -> ExitCode {
    install_panic_hook();
    // A usage error exits 1 like every other error: `plan --detailed-exitcode` keeps 2 for
    // "there are changes", so a mistyped flag in CI never reads as a plan to post.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.use_stderr() {
                true => Exit::Error,
                false => Exit::Success,
            }
            .into();
        }
    };
    match run(cli) {
        Ok(exit) => exit,
        Err(e) => exit::fail(&e.to_string()),
    }
    .into()
}

/// A panic is a bug whatever the input: say so in one line with the version and where, and
/// keep the backtrace for those who ask for it with RUST_BACKTRACE.
fn install_panic_hook() {
    if std::env::var_os("RUST_BACKTRACE").is_some() {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        exit::fail(&format!(
            "this is a bug in kube-aws {} ({}), not a problem with your input: {message}{place}\nPlease report it; RUST_BACKTRACE=1 shows a backtrace.",
            env!("CARGO_PKG_VERSION"),
            env!("KUBE_AWS_GIT_COMMIT"),
        ));
    }));
}

fn run(cli: Cli) -> Result<Exit, EngineError> {
    let context = Context {
        dir: cli.dir,
        aws: AwsOptions {
            region: cli.region,
            profile: cli.profile,
        },
    };
    match cli.command {
        Command::Init(args) => commands::init::run(&context, args),
        Command::Render(args) => commands::render::run(&context, args),
        Command::Export(args) => commands::export::run(&context, args),
        Command::Validate(args) => commands::validate::run(&context, args),
        Command::Plan(args) => commands::plan::run(&context, args),
        Command::Apply(args) => commands::apply::run(&context, args),
        Command::Destroy(args) => commands::destroy::run(&context, args),
        Command::Status(args) => commands::status::run(&context, args),
        Command::Kubeconfig(args) => commands::kubeconfig::run(&context, args),
        Command::History(args) => commands::history::run(&context, args),
        Command::State(command) => commands::state::run(&context, command),
        Command::Completions(args) => commands::help::completions(args),
        Command::Man => commands::help::man(),
    }
}
