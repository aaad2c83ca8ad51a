//! `kube-aws status`.

use std::process::ExitCode;

use super::Context;
use crate::cli::terminal::runtime;
use crate::cli::views;
use crate::engine::{self, EngineError};

pub fn run(context: &Context) -> Result<ExitCode, EngineError> {
    let status = runtime().block_on(engine::status::status(&context.dir, &context.aws))?;
    print!("{}", views::status::status_text(&status));
    Ok(ExitCode::SUCCESS)
}
