//! `kube-aws kubeconfig [-o FILE] [--force]`.

use super::Context;
use crate::cli::args::KubeconfigArgs;
use crate::cli::exit::Exit;
use crate::cli::terminal::runtime;
use crate::engine::{self, EngineError};

pub fn run(context: &Context, args: KubeconfigArgs) -> Result<Exit, EngineError> {
    let path = runtime().block_on(engine::kubeconfig::kubeconfig(
        &context.dir,
        &context.aws,
        &args.output,
        args.force,
    ))?;
    eprintln!("Wrote {} (mode 0600)", path.display());
    Ok(Exit::Success)
}
