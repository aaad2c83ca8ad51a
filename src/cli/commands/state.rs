//! `kube-aws state show|pull|versions|push|unlock`.

use super::Context;
use crate::cli::args::{ReportFormat, StateCommand};
use crate::cli::exit::Exit;
use crate::cli::terminal::{print_json, runtime, write_stdout};
use crate::cli::views;
use crate::engine::{self, EngineError, state};

pub fn run(context: &Context, command: StateCommand) -> Result<Exit, EngineError> {
    let (dir, aws) = (&context.dir, &context.aws);
    if !matches!(command, StateCommand::Push { .. }) {
        context.warn_of_config_problems();
    }
    let rt = runtime();
    match command {
        StateCommand::Show { format, raw } => {
            let state = rt.block_on(state::show(dir, aws, raw))?;
            match format {
                ReportFormat::Json => print_json(&state)?,
                _ if raw => print_json(&state)?,
                ReportFormat::Text => print!("{}", views::state::state_text(&state)),
            }
        }
        StateCommand::Pull { version } => {
            write_stdout(&rt.block_on(state::pull(dir, aws, version.as_deref()))?)?
        }
        StateCommand::Versions => {
            print!(
                "{}",
                views::history::versions_table(&rt.block_on(state::versions(dir, aws))?)
            );
        }
        StateCommand::Push { file, rollback } => {
            let bytes = engine::read_file(&file)?;
            let now = time::OffsetDateTime::now_utc();
            let origin = file.display().to_string();
            let (state, entry) =
                rt.block_on(state::push(dir, aws, &origin, &bytes, rollback, now))?;
            eprintln!(
                "Pushed {origin}: lineage {}, serial {}; recorded as audit entry {}",
                state.lineage, state.serial, entry.seq
            );
        }
        StateCommand::Unlock { lock_id, force } => {
            let now = time::OffsetDateTime::now_utc();
            let (info, entry) = rt.block_on(state::unlock(dir, aws, &lock_id, force, now))?;
            eprintln!(
                "Removed lock {} (held by {} for `{}` since {}); recorded as audit entry {}",
                info.id, info.holder, info.operation, info.created, entry.seq
            );
        }
    }
    Ok(Exit::Success)
}
