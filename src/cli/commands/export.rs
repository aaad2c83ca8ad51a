//! `kube-aws export [--plan PLAN] [-o FILE]`.

use super::Context;
use crate::cli::args::ExportArgs;
use crate::cli::exit::Exit;
use crate::cli::terminal::{runtime, write_stdout};
use crate::engine::{self, EngineError};

pub fn run(context: &Context, args: ExportArgs) -> Result<Exit, EngineError> {
    let template = match &args.plan {
        Some(path) => engine::export::reviewed_template(path, args.pool.as_deref())?,
        None => {
            let now = time::OffsetDateTime::now_utc();
            runtime().block_on(engine::export::export(
                &context.dir,
                &context.aws,
                now,
                args.pool.as_deref(),
            ))?
        }
    };
    match &args.output {
        Some(path) => {
            engine::write_file(path, template.as_bytes())?;
            eprintln!("Wrote {} ({} bytes)", path.display(), template.len());
        }
        None => write_stdout(template.as_bytes())?,
    }
    Ok(Exit::Success)
}
