//! `kube-aws apply [PLAN] [--auto-approve]`: execute a reviewed plan file, or plan, show and
//! ask first.

use super::Context;
use super::plan::make_plan;
use crate::cli::args::{ApplyArgs, ReportFormat};
use crate::cli::exit::{self, Exit};
use crate::cli::terminal::{
    ApplyProgress, catch_interrupts, confirm, print_json_line, runtime, stdout_color,
};
use crate::cli::views;
use crate::engine::apply::ApplyEvent;
use crate::engine::plan::PlanOptions;
use crate::engine::{self, EngineError};
use crate::planfile::Plan;

pub fn run(context: &Context, args: ApplyArgs) -> Result<Exit, EngineError> {
    if let Some(path) = &args.plan {
        let plan = engine::apply::read_plan_file(path)?;
        let command = format!("apply {}", path.display());
        if args.format == ReportFormat::Json {
            return execute_reporting_json(context, &plan, &command);
        }
        return execute(context, &plan, &command);
    }
    let plan = make_plan(context, &PlanOptions::default())?;
    print!("{}", views::plan::plan_text(&plan, stdout_color()));
    if !plan.has_changes() {
        return Ok(Exit::Success);
    }
    if !args.auto_approve && !confirm("apply this plan")? {
        eprintln!("Apply cancelled.");
        return Ok(Exit::Error);
    }
    execute(context, &plan, "apply")
}

/// Applies `plan`, showing each step and stack event; Ctrl-C or SIGTERM stops apply at its next
/// safe point, never a stack.
pub fn execute(context: &Context, plan: &Plan, command: &str) -> Result<Exit, EngineError> {
    let progress = ApplyProgress::new();
    let result = run_apply(context, plan, command, &mut |event| match event {
        ApplyEvent::Step(step) => progress.step(step),
        ApplyEvent::Stack(e) => progress.line(&views::apply::event_line(e)),
    });
    progress.finish();
    match views::apply::outcome(&result?) {
        Ok(line) => {
            print!("{line}");
            Ok(Exit::Success)
        }
        Err(message) => Ok(exit::fail(&message)),
    }
}

/// [`execute`] for tools: each step, stack event and the ending as a JSON line on stdout; an
/// error that stops apply before it ends is `error:` on stderr, as ever.
fn execute_reporting_json(
    context: &Context,
    plan: &Plan,
    command: &str,
) -> Result<Exit, EngineError> {
    let result = run_apply(context, plan, command, &mut |event| {
        let _ = print_json_line(&views::apply::event_json(&event));
    })?;
    print_json_line(&views::apply::outcome_json(&result))?;
    Ok(if views::apply::outcome(&result).is_ok() {
        Exit::Success
    } else {
        Exit::Error
    })
}

/// The engine's apply with Ctrl-C, SIGTERM and SIGHUP caught, reporting to `observer`.
fn run_apply(
    context: &Context,
    plan: &Plan,
    command: &str,
    observer: engine::apply::Observer<'_>,
) -> Result<engine::apply::ApplyOutcome, EngineError> {
    runtime().block_on(async {
        let interrupt = catch_interrupts()?;
        engine::apply::apply(
            &context.dir,
            &context.aws,
            plan,
            command,
            &interrupt,
            observer,
        )
        .await
    })
}
