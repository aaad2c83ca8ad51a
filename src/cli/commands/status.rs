//! `kube-aws status [--format text|json]`.

use super::Context;
use crate::cli::args::{ReportFormat, StatusArgs};
use crate::cli::exit::Exit;
use crate::cli::terminal::{print_json, runtime};
use crate::cli::views;
use crate::engine::{self, EngineError};

pub fn run(context: &Context, args: StatusArgs) -> Result<Exit, EngineError> {
    context.warn_of_config_problems();
    let status = runtime().block_on(engine::status::status(&context.dir, &context.aws))?;
    match args.format {
        ReportFormat::Text => print!("{}", views::status::status_text(&status)),
        ReportFormat::Json => print_json(&views::status::status_json(&status))?,
    }
    Ok(Exit::Success)
}
