//! `kube-aws destroy [--plan-only -o FILE] [--auto-approve]`.

use super::Context;
use super::apply::execute;
use super::plan::{make_plan, write_plan};
use crate::cli::args::DestroyArgs;
use crate::cli::exit::Exit;
use crate::cli::terminal::{confirm, stdout_color};
use crate::cli::views;
use crate::engine::EngineError;
use crate::engine::plan::PlanOptions;

pub fn run(context: &Context, args: DestroyArgs) -> Result<Exit, EngineError> {
    let options = PlanOptions {
        destroy: true,
        ..Default::default()
    };
    let plan = make_plan(context, &options)?;
    print!("{}", views::plan::plan_text(&plan, stdout_color()));
    if let (true, Some(path)) = (args.plan_only, &args.output) {
        write_plan(path, &plan)?;
        eprintln!(
            "Wrote {}; run `kube-aws apply {}` to destroy",
            path.display(),
            path.display()
        );
        return Ok(Exit::Success);
    }
    if !plan.has_changes() {
        return Ok(Exit::Success);
    }
    if !args.auto_approve && !confirm("destroy this cluster")? {
        eprintln!("Destroy cancelled.");
        return Ok(Exit::Error);
    }
    execute(context, &plan, "destroy")
}
