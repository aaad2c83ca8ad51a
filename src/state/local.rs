//! The local backend: objects are files under the cluster's `state/` folder. Conditional
//! writes hold an advisory file lock while they compare and replace; every replacement is a
//! temp file, fsync, rename (or link, when the key must be new) and fsync of the directory, so
//! a crash leaves the old or the new file, never a mix. The state file's earlier versions are
//! kept under `versions/`.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::objects::{Object, ObjectStore, ObjectVersion, Precondition, StoreError, Written};
use crate::hash::sha256_hex;

/// Folder of the local backend inside a cluster directory.
pub const STATE_DIR: &str = "state";
const VERSIONS_DIR: &str = "versions";
const CAS_LOCK: &str = ".cas.lock";
/// How long a write waits for the compare-and-swap lock before giving up.
const CAS_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct LocalObjects {
    root: PathBuf,
    /// Keys whose every write is also kept as a numbered copy (the state file).
    versioned: Vec<String>,
}

impl LocalObjects {
    pub fn new(cluster_dir: &Path, versioned: &[&str]) -> LocalObjects {
        LocalObjects {
            root: cluster_dir.join(STATE_DIR),
            versioned: versioned.iter().map(|k| k.to_string()).collect(),
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn failed(&self, key: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Failed {
            location: self.location(key),
            message: e.to_string(),
        }
    }

    /// Runs `f` while holding the backend's compare-and-swap lock, across processes.
    fn exclusively<T>(
        &self,
        key: &str,
        f: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        fs::create_dir_all(&self.root).map_err(|e| self.failed(key, e))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join(CAS_LOCK))
            .map_err(|e| self.failed(key, e))?;
        // A compare-and-swap holds it for milliseconds; waiting longer means another process
        // stopped while holding it (a killed one releases it), so say so instead of hanging.
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(5);
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < CAS_LOCK_WAIT => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(200));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(self.failed(
                        key,
                        format!(
                            "another process has held {} for over {} s; a kube-aws that was stopped (Ctrl-Z, a debugger) keeps it until it resumes or exits",
                            self.root.join(CAS_LOCK).display(),
                            CAS_LOCK_WAIT.as_secs()
                        ),
                    ));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(self.failed(key, e)),
            }
        }
        let result = f();
        let _ = lock.unlock();
        result
    }

    fn read(&self, key: &str) -> Result<Option<Object>, StoreError> {
        match crate::bounded::read(&self.path(key), crate::bounded::RECORD_LIMIT) {
            Ok(bytes) => Ok(Some(Object {
                etag: sha256_hex(&bytes),
                bytes,
                version_id: None,
            })),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.failed(key, e)),
        }
    }

    fn version_dir(&self) -> PathBuf {
        self.root.join(VERSIONS_DIR)
    }

    fn version_prefix(key: &str) -> String {
        format!("{}.", key.replace('/', "_"))
    }

    fn keep_version(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let dir = self.version_dir();
        fs::create_dir_all(&dir).map_err(|e| self.failed(key, e))?;
        let prefix = Self::version_prefix(key);
        let next = self
            .version_numbers(key)?
            .into_iter()
            .max()
            .unwrap_or(0)
            .checked_add(1)
            .ok_or_else(|| StoreError::Failed {
                location: self.location(key),
                message: "the versions folder already holds the largest version number".into(),
            })?;
        let path = dir.join(format!("{prefix}{next:08}"));
        create_new_atomically(&path, bytes).map_err(|e| self.failed(key, e))
    }

    fn version_numbers(&self, key: &str) -> Result<Vec<u64>, StoreError> {
        let prefix = Self::version_prefix(key);
        let entries = match fs::read_dir(self.version_dir()) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.failed(key, e)),
        };
        Ok(entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix(&prefix))
                    .and_then(|n| n.parse().ok())
            })
            .collect())
    }
}

impl ObjectStore for LocalObjects {
    fn location(&self, key: &str) -> String {
        self.path(key).display().to_string()
    }

    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        self.read(key)
    }

    async fn put(
        &self,
        key: &str,
        bytes: &[u8],
        condition: Precondition,
    ) -> Result<Written, StoreError> {
        let path = self.path(key);
        self.exclusively(key, || {
            let precondition_failed = || StoreError::PreconditionFailed {
                location: self.location(key),
            };
            match &condition {
                Precondition::IfAbsent => match create_new_atomically(&path, bytes) {
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                        return Err(precondition_failed());
                    }
                    other => other.map_err(|e| self.failed(key, e))?,
                },
                Precondition::IfMatch(etag) => {
                    match self.read(key)? {
                        Some(current) if &current.etag == etag => {}
                        _ => return Err(precondition_failed()),
                    }
                    write_atomically(&path, bytes).map_err(|e| self.failed(key, e))?;
                }
                Precondition::Overwrite => {
                    write_atomically(&path, bytes).map_err(|e| self.failed(key, e))?;
                }
            }
            if self.versioned.iter().any(|k| k == key) {
                self.keep_version(key, bytes)?;
            }
            Ok(Written {
                etag: sha256_hex(bytes),
                version_id: None,
            })
        })
    }

    async fn delete(&self, key: &str, if_match: &str) -> Result<(), StoreError> {
        let path = self.path(key);
        self.exclusively(key, || {
            match self.read(key)? {
                Some(current) if current.etag == if_match => {}
                _ => {
                    return Err(StoreError::PreconditionFailed {
                        location: self.location(key),
                    });
                }
            }
            fs::remove_file(&path).map_err(|e| self.failed(key, e))?;
            sync_dir(&path).map_err(|e| self.failed(key, e))
        })
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<Vec<String>, StoreError> {
        let (dir_part, name_prefix) = match prefix.rfind('/') {
            Some(i) => (&prefix[..=i], &prefix[i + 1..]),
            None => ("", prefix),
        };
        let entries = match fs::read_dir(self.root.join(dir_part)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.failed(prefix, e)),
        };
        let mut keys: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|name| !name.starts_with('.') && name.starts_with(name_prefix))
            .map(|name| format!("{dir_part}{name}"))
            .filter(|key| start_after.is_none_or(|after| key.as_str() > after))
            .collect();
        keys.sort();
        keys.truncate(max);
        Ok(keys)
    }

    async fn versions(&self, key: &str) -> Result<Vec<ObjectVersion>, StoreError> {
        let mut numbers = self.version_numbers(key)?;
        numbers.sort_unstable_by(|a, b| b.cmp(a));
        let latest = numbers.first().copied();
        numbers
            .into_iter()
            .map(|n| {
                let path = self
                    .version_dir()
                    .join(format!("{}{n:08}", Self::version_prefix(key)));
                let meta = fs::metadata(&path).map_err(|e| self.failed(key, e))?;
                let modified = meta
                    .modified()
                    .map(OffsetDateTime::from)
                    .map_err(|e| self.failed(key, e))?;
                Ok(ObjectVersion {
                    version_id: format!("{n:08}"),
                    last_modified: modified.format(&Rfc3339).unwrap_or_default(),
                    is_latest: Some(n) == latest,
                    size: meta.len(),
                })
            })
            .collect()
    }

    async fn get_version(&self, key: &str, version_id: &str) -> Result<Object, StoreError> {
        // A version id becomes part of a path: only the numbers `versions` hands out.
        if version_id.is_empty() || !version_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(StoreError::Failed {
                location: self.location(key),
                message: format!(
                    "no version {:?}: local versions are numbers, as `state versions` lists them",
                    version_id
                ),
            });
        }
        let path = self
            .version_dir()
            .join(format!("{}{version_id}", Self::version_prefix(key)));
        let bytes = crate::bounded::read(&path, crate::bounded::RECORD_LIMIT)
            .map_err(|e| self.failed(key, e))?;
        Ok(Object {
            etag: sha256_hex(&bytes),
            bytes,
            version_id: Some(version_id.to_string()),
        })
    }
}

fn temp_path(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    parent(path).join(format!(".{name}.tmp.{}.{n}", std::process::id()))
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    File::open(parent(path))?.sync_all()
}

fn write_temp(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    fs::create_dir_all(parent(path))?;
    let temp = temp_path(path);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    match written {
        Ok(()) => Ok(temp),
        Err(e) => {
            let _ = fs::remove_file(&temp);
            Err(e)
        }
    }
}

/// Writes `bytes` to `path` so that readers see either the old or the new content, never a
/// mix, even across a crash.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temp = write_temp(path, bytes)?;
    if let Err(e) = fs::rename(&temp, path) {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    sync_dir(path)
}

/// Creates `path` with `bytes`, complete or not at all; `AlreadyExists` if it is there.
pub fn create_new_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temp = write_temp(path, bytes)?;
    let linked = fs::hard_link(&temp, path);
    let _ = fs::remove_file(&temp);
    linked?;
    sync_dir(path)
}
