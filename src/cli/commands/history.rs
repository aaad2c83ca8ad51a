//! `kube-aws history [--limit N] [--format text|json] [--verify]` and `history show SEQ`.

use super::Context;
use crate::cli::args::{HistoryArgs, HistoryCommand, ReportFormat};
use crate::cli::exit::{self, Exit};
use crate::cli::terminal::{print_json, runtime, stdout_color};
use crate::cli::views;
use crate::engine::{EngineError, history};

pub fn run(context: &Context, args: HistoryArgs) -> Result<Exit, EngineError> {
    let (dir, aws) = (&context.dir, &context.aws);
    context.warn_of_config_problems();
    if let Some(HistoryCommand::Show { seq, format, json }) = args.show {
        let (entry, plan) = runtime().block_on(history::history_entry(dir, aws, seq))?;
        if json || format == ReportFormat::Json {
            print_json(&entry)?;
        } else {
            print!(
                "{}",
                views::history::history_entry_text(&entry, plan.as_ref(), stdout_color())
            );
        }
        return Ok(Exit::Success);
    }
    if args.verify {
        let report = runtime().block_on(history::verify_history(dir, aws))?;
        if report.ok() {
            println!("Audit log OK: {} entries. Verified:", report.entries);
            for line in &report.checked {
                println!("  - {line}");
            }
            return Ok(Exit::Success);
        }
        for problem in &report.problems {
            println!("{problem}");
        }
        return Ok(exit::fail(&format!(
            "audit log verification failed: {} problem(s) in {} entries; first: {}",
            report.problems.len(),
            report.entries,
            report.problems[0]
        )));
    }
    let history = runtime().block_on(history::history(dir, aws, args.limit))?;
    if args.json || args.format == ReportFormat::Json {
        print_json(&history.entries)?;
    } else {
        print!("{}", views::history::history_text(&history));
    }
    Ok(Exit::Success)
}
