//! `kube-aws render`: copies the built-in templates into the cluster directory, where they
//! replace the built-in ones for every later command.

use std::path::{Path, PathBuf};

use super::{EngineError, io_error};
use crate::render;

/// Copies the built-in templates into the cluster directory for customisation. Without
/// `force` it refuses (and writes nothing) if any of them is already there.
pub fn render_templates(dir: &Path, force: bool) -> Result<Vec<PathBuf>, EngineError> {
    let targets: Vec<(PathBuf, &str)> = render::built_in()
        .map(|t| (dir.join(t.path), t.text))
        .collect();
    if !force {
        let present: Vec<PathBuf> = targets
            .iter()
            .filter(|(path, _)| path.exists())
            .map(|(path, _)| path.clone())
            .collect();
        if !present.is_empty() {
            return Err(EngineError::TemplatesExist(present));
        }
    }
    for (path, text) in &targets {
        crate::state::local::write_atomically(path, text.as_bytes()).map_err(io_error(path))?;
    }
    Ok(targets.into_iter().map(|(path, _)| path).collect())
}
