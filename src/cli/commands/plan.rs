//! `kube-aws plan`: make, write and show a plan; `apply` and `destroy` make theirs here too.

use super::Context;
use crate::cli::args::{Format, PlanArgs};
use crate::cli::exit::Exit;
use crate::cli::terminal::{print_json, runtime, spinner, stdout_color};
use crate::cli::views;
use crate::engine::plan::PlanOptions;
use crate::engine::{self, EngineError};
use crate::planfile::Plan;
use std::path::Path;

pub fn run(context: &Context, args: PlanArgs) -> Result<Exit, EngineError> {
    let options = PlanOptions {
        offline: args.offline,
        preview: args.preview,
        renew_before: time::Duration::days(args.renew_before),
        destroy: false,
        rotate_secrets_key: args.rotate_secrets_key,
        // Only a plan written to a file can be applied later; one only shown needs no signature.
        sign: args.output.is_some(),
    };
    let plan = make_plan(context, &options)?;
    if let Some(path) = &args.output {
        write_plan(path, &plan)?;
        eprintln!(
            "Wrote {} (plan {})",
            path.display(),
            &plan.plan_sha256[..12]
        );
    }
    match args.format {
        Format::Text => print!("{}", views::plan::plan_text(&plan, stdout_color())),
        Format::Markdown => print!("{}", views::plan::plan_markdown(&plan)),
        Format::Json => print_json(&plan)?,
    }
    Ok(if args.detailed_exitcode && plan.has_changes() {
        Exit::Changes
    } else {
        Exit::Success
    })
}

/// Plans with a spinner showing each step.
pub fn make_plan(context: &Context, options: &PlanOptions) -> Result<Plan, EngineError> {
    let bar = spinner();
    let now = time::OffsetDateTime::now_utc();
    let result = runtime().block_on(engine::plan::plan(
        &context.dir,
        &context.aws,
        options,
        now,
        &mut |step: &str| bar.set_message(step.to_string()),
    ));
    bar.finish_and_clear();
    result
}

/// Writes the plan file `apply` reads, atomically.
pub fn write_plan(path: &Path, plan: &Plan) -> Result<(), EngineError> {
    engine::write_file(path, &crate::planfile::encode(plan))
}
