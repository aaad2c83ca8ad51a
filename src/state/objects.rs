//! The storage primitive both state backends share: named objects with ETags and conditional
//! writes. The state store, lock and audit log are written once on top of it, so local files
//! and S3 behave alike and one test suite covers both.

use serde::Serialize;

/// An object as read: its bytes, ETag and (on versioned S3) version id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub bytes: Vec<u8>,
    pub etag: String,
    pub version_id: Option<String>,
}

/// What a successful write returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub etag: String,
    pub version_id: Option<String>,
}

/// The condition a write or delete is made under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// Only if no object has the key (S3 `If-None-Match: *`).
    IfAbsent,
    /// Only if the object still has this ETag (S3 `If-Match`).
    IfMatch(String),
    /// Whatever is there; only for hints that readers double-check (the audit log's HEAD).
    Overwrite,
}

/// One stored version of an object (S3 object versions; local keeps copies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectVersion {
    pub version_id: String,
    /// RFC 3339, UTC.
    pub last_modified: String,
    pub is_latest: bool,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The precondition did not hold: someone else wrote (or deleted) the object first.
    #[error("{location}: changed by someone else (conditional request failed)")]
    PreconditionFailed { location: String },
    #[error("{location}: {message}")]
    Failed { location: String, message: String },
}

/// Named objects with conditional writes.
#[allow(async_fn_in_trait)] // used through generics and engine's `Objects` enum only
pub trait ObjectStore {
    /// Where `key` lives, for messages: a path or `s3://bucket/key`.
    fn location(&self, key: &str) -> String;
    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError>;
    async fn put(
        &self,
        key: &str,
        bytes: &[u8],
        condition: Precondition,
    ) -> Result<Written, StoreError>;
    /// Deletes `key` only while it still has the ETag `if_match`.
    async fn delete(&self, key: &str, if_match: &str) -> Result<(), StoreError>;
    /// Keys under `prefix` after `start_after`, ascending, at most `max`.
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<Vec<String>, StoreError>;
    /// Stored versions of `key`, newest first.
    async fn versions(&self, key: &str) -> Result<Vec<ObjectVersion>, StoreError>;
    /// The bytes of one version.
    async fn get_version(&self, key: &str, version_id: &str) -> Result<Object, StoreError>;
}

/// The keys one backend uses: the state, its lock, the audit entries' prefix, and the assets
/// an apply shipped before it could write the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub state: String,
    pub lock: String,
    pub audit_prefix: String,
    pub pending: String,
    /// Every applied plan, by its hash, for `history show`.
    pub plans_prefix: String,
}

impl Layout {
    /// Local: `state.json`, `state.lock`, `audit/`, `pending.json`, `plans/` under the
    /// cluster's `state/` folder.
    pub fn local() -> Layout {
        Layout {
            state: "state.json".into(),
            lock: "state.lock".into(),
            audit_prefix: "audit/".into(),
            pending: "pending.json".into(),
            plans_prefix: "plans/".into(),
        }
    }

    /// S3: `<key>`, `<key>.lock`, `<key>.audit/`, `<key>.pending`, `<key>.plans/`.
    pub fn s3(key: &str) -> Layout {
        Layout {
            state: key.to_string(),
            lock: format!("{key}.lock"),
            audit_prefix: format!("{key}.audit/"),
            pending: format!("{key}.pending"),
            plans_prefix: format!("{key}.plans/"),
        }
    }
}
