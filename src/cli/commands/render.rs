//! `kube-aws render`.

use super::Context;
use crate::cli::args::RenderArgs;
use crate::cli::exit::Exit;
use crate::engine::EngineError;
use crate::engine::render_templates::render_templates;

pub fn run(context: &Context, args: RenderArgs) -> Result<Exit, EngineError> {
    for path in render_templates(&context.dir, args.force)? {
        eprintln!("Wrote {}", path.display());
    }
    Ok(Exit::Success)
}
