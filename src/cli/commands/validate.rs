//! `kube-aws validate [--offline] [--format F] [--strict]`.

use super::Context;
use crate::cli::args::{Format, ValidateArgs};
use crate::cli::exit::Exit;
use crate::cli::terminal::{print_json, runtime, stdout_color};
use crate::cli::views;
use crate::engine::{self, EngineError};

pub fn run(context: &Context, args: ValidateArgs) -> Result<Exit, EngineError> {
    let now = time::OffsetDateTime::now_utc();
    let findings = runtime().block_on(engine::validate::validate(
        &context.dir,
        &context.aws,
        args.offline,
        now,
    ))?;
    let (errors, warnings) = views::findings::counts(&findings);
    match args.format {
        Format::Json => print_json(&serde_json::json!({
            "findings": findings,
            "errors": errors,
            "warnings": warnings,
        }))?,
        Format::Markdown => print!("{}", views::findings::findings_markdown(&findings)),
        Format::Text => print!(
            "{}",
            views::findings::findings_text(&findings, stdout_color())
        ),
    }
    Ok(if errors > 0 || (args.strict && warnings > 0) {
        Exit::Error
    } else {
        Exit::Success
    })
}
