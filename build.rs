//! Records the git commit the binary is built from, for `kube-aws --version`, and a hash of
//! the sources that decide what it renders (`src/`, `templates/`, `data/`), which plan's
//! render key includes so a build of other sources never reuses another's render.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Every file under `dir` (tests and snapshots too: editing one re-renders once, which is
/// harmless); a linked directory is not walked (a loop would never end), a linked file is read
/// through, and a directory that cannot be read fails the build rather than leave files out.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        let path = entry.path();
        let kind = entry
            .file_type()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if kind.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// What decides the rendered bytes: the code, the built-in templates, the release data and the
/// exact dependency versions (minijinja, serde_json and the gzip encoder shape them too).
fn source_sha256() -> String {
    let mut files = Vec::new();
    for dir in ["src", "templates", "data"] {
        files_under(Path::new(dir), &mut files);
        println!("cargo:rerun-if-changed={dir}");
    }
    for file in ["Cargo.toml", "Cargo.lock"] {
        files.push(PathBuf::from(file));
        println!("cargo:rerun-if-changed={file}");
    }
    files.sort();
    let mut hasher = Sha256::new();
    for file in files {
        // Name and length first, so moving bytes between files changes the hash.
        let bytes =
            std::fs::read(&file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        hasher.update(file.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    format!("{:x}", hasher.finalize())
}

fn main() {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    let dirty = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .is_some_and(|o| o.status.success() && !o.stdout.is_empty());
    let suffix = if dirty { "-dirty" } else { "" };
    println!("cargo:rustc-env=KUBE_AWS_GIT_COMMIT={commit}{suffix}");
    println!("cargo:rustc-env=KUBE_AWS_SOURCE_SHA256={}", source_sha256());
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/index");
}
