//! The local state backend: `state/state.json` under the cluster directory, replaced atomically
//! (temp file, fsync, rename, fsync of the directory) so a crash leaves the old or the new file.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{State, StateError, decode, encode};

/// Folder of the local backend inside a cluster directory.
pub const STATE_DIR: &str = "state";
pub const STATE_FILE: &str = "state.json";

#[derive(Debug, Clone)]
pub struct LocalBackend {
    dir: PathBuf,
}

impl LocalBackend {
    pub fn new(cluster_dir: &Path) -> LocalBackend {
        LocalBackend {
            dir: cluster_dir.join(STATE_DIR),
        }
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    fn io(&self, source: std::io::Error) -> StateError {
        StateError::Io {
            origin: self.state_path().display().to_string(),
            source,
        }
    }

    /// The current state, or `None` before the first apply.
    pub fn load(&self) -> Result<Option<State>, StateError> {
        let path = self.state_path();
        match fs::read(&path) {
            Ok(bytes) => decode(&path.display().to_string(), &bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(e)),
        }
    }

    /// Replaces the state file atomically.
    pub fn write(&self, state: &State) -> Result<(), StateError> {
        write_atomically(&self.state_path(), &encode(state)).map_err(|e| self.io(e))
    }
}

/// Writes `bytes` to `path` so that readers see either the old or the new content, never a
/// mix, even across a crash.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let temp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}
