//! `kube-aws completions SHELL` and `kube-aws man`: generated from the clap definitions, so
//! they never drift from `--help`.

use std::path::PathBuf;

use crate::cli::args::{Cli, CompletionsArgs};
use crate::cli::exit::Exit;
use crate::cli::terminal::write_stdout;
use crate::engine::EngineError;

pub fn completions(args: CompletionsArgs) -> Result<Exit, EngineError> {
    let mut command = <Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut command, "kube-aws", &mut out);
    write_stdout(&out)?;
    Ok(Exit::Success)
}

pub fn man() -> Result<Exit, EngineError> {
    let mut out = Vec::new();
    clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
        .render(&mut out)
        .map_err(|source| EngineError::Io {
            path: PathBuf::from("<man page>"),
            source,
        })?;
    write_stdout(&out)?;
    Ok(Exit::Success)
}
