//! One file per command, each with one `run` taking its parsed arguments: read the flags,
//! call the engine, print through a view, return the exit code.

pub mod apply;
pub mod destroy;
pub mod export;
pub mod help;
pub mod history;
pub mod init;
pub mod kubeconfig;
pub mod plan;
pub mod render;
pub mod state;
pub mod status;
pub mod validate;

use std::path::PathBuf;

use crate::engine::AwsOptions;

/// The global flags every command sees.
pub struct Context {
    pub dir: PathBuf,
    pub aws: AwsOptions,
}

impl Context {
    /// For the commands that read on with a cluster.yaml that parses but has problems: says
    /// so first, on stderr.
    pub fn warn_of_config_problems(&self) {
        if let Some(problems) = crate::engine::config_problems(&self.dir) {
            eprint!("{}", crate::cli::views::config_warning_text(&problems));
        }
    }
}
