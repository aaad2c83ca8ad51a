//! The state store over any [`ObjectStore`]: load with the version it was read at, and a
//! persist that only succeeds when nobody wrote since that read and the [`Locker`]'s lock is
//! still held.

use serde::Serialize;
use time::Duration;

pub use super::lock::{HeldLock, LockInfo, Locker, ObjectLock};
use super::objects::{Layout, ObjectStore, ObjectVersion, Precondition, StoreError};
use super::{State, StateError, decode, encode};
use crate::hash::sha256_hex;

/// Default lock lease: long enough for a slow stack update, short enough to notice a crash.
/// apply renews it while it follows the stack, so the lease bounds how long a dead run holds
/// the lock, not how long a live one may take.
pub const DEFAULT_LEASE: Duration = Duration::hours(1);

/// A state as read, with what identifies that read for the conditional write that follows.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub state: State,
    /// SHA-256 of the stored bytes; plans bind to it.
    pub sha256: String,
    pub etag: String,
    /// S3 object version id (remote states only).
    pub version_id: Option<String>,
}

/// One stored version of the state, with the serial it holds.
#[derive(Debug, Clone, Serialize)]
pub struct StateVersion {
    #[serde(flatten)]
    pub version: ObjectVersion,
    pub serial: Option<u64>,
    pub lineage: Option<String>,
}

#[derive(Debug, Clone)]
pub struct StateStore<O, L = ObjectLock<O>> {
    objects: O,
    layout: Layout,
    /// S3 backends refuse to work without bucket versioning.
    require_versioning: Option<String>,
    /// Who may write the state: the lock `persist` and `push` require.
    pub locker: L,
}

impl<O: ObjectStore + Clone> StateStore<O> {
    /// `require_versioning` names the bucket when the backend must be versioned. The lock is
    /// an object beside the state (`layout.lock`).
    pub fn new(objects: O, layout: Layout, require_versioning: Option<String>) -> StateStore<O> {
        let locker = ObjectLock::new(
            objects.clone(),
            layout.lock.clone(),
            require_versioning.clone(),
        );
        StateStore::with_locker(objects, layout, require_versioning, locker)
    }
}

impl<O: ObjectStore, L: Locker> StateStore<O, L> {
    /// A store whose lock is `locker`'s (a lock table, say) rather than an object of its own.
    pub fn with_locker(
        objects: O,
        layout: Layout,
        require_versioning: Option<String>,
        locker: L,
    ) -> StateStore<O, L> {
        StateStore {
            objects,
            layout,
            require_versioning,
            locker,
        }
    }

    pub fn objects(&self) -> &O {
        &self.objects
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn location(&self) -> String {
        self.objects.location(&self.layout.state)
    }

    fn unversioned(&self) -> StateError {
        StateError::Unversioned {
            bucket: self.require_versioning.clone().unwrap_or_default(),
        }
    }

    /// The current state, or `None` before the first apply.
    pub async fn load(&self) -> Result<Option<Loaded>, StateError> {
        let Some(object) = self.objects.get(&self.layout.state).await? else {
            return Ok(None);
        };
        if self.require_versioning.is_some() && object.version_id.is_none() {
            return Err(self.unversioned());
        }
        let state = decode(&self.location(), &object.bytes)?;
        Ok(Some(Loaded {
            state,
            sha256: sha256_hex(&object.bytes),
            etag: object.etag,
            version_id: object.version_id,
        }))
    }

    /// Writes `next` as the successor of `prior`, only if the stored state is still exactly
    /// `prior` and `lock` is still held: no concurrent update is ever overwritten.
    pub async fn persist(
        &self,
        next: &State,
        prior: Option<&Loaded>,
        lock: &HeldLock,
    ) -> Result<Loaded, StateError> {
        let expected_serial = prior.map_or(1, |p| p.state.serial + 1);
        if next.serial != expected_serial {
            return Err(StateError::Stale {
                message: format!(
                    "refusing to write serial {} over serial {}",
                    next.serial,
                    expected_serial - 1
                ),
            });
        }
        if let Some(prior) = prior
            && prior.state.lineage != next.lineage
        {
            return Err(StateError::Stale {
                message: format!(
                    "lineage {} does not match the stored lineage {}",
                    next.lineage, prior.state.lineage
                ),
            });
        }
        match self.locker.current().await? {
            Some(info) if info.id == lock.info.id => {}
            _ => {
                return Err(StateError::LockLost {
                    id: lock.info.id.clone(),
                });
            }
        }
        let bytes = encode(next);
        let condition = match prior {
            Some(p) => Precondition::IfMatch(p.etag.clone()),
            None => Precondition::IfAbsent,
        };
        match self
            .objects
            .put(&self.layout.state, &bytes, condition)
            .await
        {
            Ok(written) => Ok(Loaded {
                state: next.clone(),
                sha256: sha256_hex(&bytes),
                etag: written.etag,
                version_id: written.version_id,
            }),
            Err(StoreError::PreconditionFailed { .. }) => Err(StateError::Stale {
                message: format!(
                    "the state at {} changed since it was read (serial {}); nothing was written",
                    self.location(),
                    expected_serial - 1
                ),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes `state` as it is (for `state push`): into an empty backend, or over a state of
    /// the same lineage with a lower serial. Never over another lineage or a newer serial.
    pub async fn push(&self, state: &State, lock: &HeldLock) -> Result<Loaded, StateError> {
        let current = self.load().await?;
        let condition = match &current {
            None => Precondition::IfAbsent,
            Some(c) if c.state.lineage != state.lineage => {
                return Err(StateError::Stale {
                    message: format!(
                        "{} holds lineage {}, not the pushed {}; refusing to replace another cluster's history",
                        self.location(),
                        c.state.lineage,
                        state.lineage
                    ),
                });
            }
            Some(c) if c.state.serial >= state.serial => {
                return Err(StateError::Stale {
                    message: format!(
                        "{} is at serial {}, not older than the pushed serial {}; to go back to that state on purpose, push it with --rollback",
                        self.location(),
                        c.state.serial,
                        state.serial
                    ),
                });
            }
            Some(c) => Precondition::IfMatch(c.etag.clone()),
        };
        match self.locker.current().await? {
            Some(info) if info.id == lock.info.id => {}
            _ => {
                return Err(StateError::LockLost {
                    id: lock.info.id.clone(),
                });
            }
        }
        let bytes = encode(state);
        let written = self
            .objects
            .put(&self.layout.state, &bytes, condition)
            .await?;
        Ok(Loaded {
            state: state.clone(),
            sha256: sha256_hex(&bytes),
            etag: written.etag,
            version_id: written.version_id,
        })
    }

    /// Records the assets an apply is about to ship, under its lock; returns the ETag that
    /// [`StateStore::clear_pending`] removes.
    pub async fn put_pending(
        &self,
        pending: &super::PendingAssets,
        lock: &HeldLock,
    ) -> Result<String, StateError> {
        if !self.locker.still_holds(lock).await? {
            return Err(StateError::LockLost {
                id: lock.info.id.clone(),
            });
        }
        let bytes = crate::hash::canonical_json_pretty(pending).expect("pending assets serialise");
        let written = self
            .objects
            .put(&self.layout.pending, &bytes, Precondition::Overwrite)
            .await?;
        Ok(written.etag)
    }

    /// The pending assets of an apply that died before writing the state, if any, with the
    /// ETag that [`StateStore::clear_pending`] removes.
    pub async fn load_pending(&self) -> Result<Option<(super::PendingAssets, String)>, StateError> {
        let Some(object) = self.objects.get(&self.layout.pending).await? else {
            return Ok(None);
        };
        let pending =
            serde_json::from_slice(&object.bytes).map_err(|source| StateError::Malformed {
                origin: self.objects.location(&self.layout.pending),
                source,
            })?;
        Ok(Some((pending, object.etag)))
    }

    /// The pending assets shipped on top of `current`, with their ETag, if there are readable
    /// ones. An unreadable object only means nothing can be reused: it never blocks a command.
    pub async fn pending_for(
        &self,
        current: Option<&super::State>,
    ) -> Option<(super::PendingAssets, String)> {
        self.load_pending()
            .await
            .ok()
            .flatten()
            .filter(|(pending, _)| pending.applies_to(current))
    }

    /// Removes the pending assets this run wrote (ETag `etag`) once the state holds them.
    pub async fn clear_pending(&self, etag: &str) -> Result<(), StateError> {
        match self.objects.delete(&self.layout.pending, etag).await {
            // Replaced by a later run's: theirs to clear.
            Ok(()) | Err(StoreError::PreconditionFailed { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// One stored version's bytes (`state pull --version`, to roll back to it).
    pub async fn version_bytes(&self, version_id: &str) -> Result<Vec<u8>, StateError> {
        Ok(self
            .objects
            .get_version(&self.layout.state, version_id)
            .await?
            .bytes)
    }

    /// Every stored version, newest first, each with the serial it holds.
    pub async fn versions(&self) -> Result<Vec<StateVersion>, StateError> {
        let mut out = Vec::new();
        for version in self.objects.versions(&self.layout.state).await? {
            let object = self
                .objects
                .get_version(&self.layout.state, &version.version_id)
                .await?;
            let value: Option<serde_json::Value> = serde_json::from_slice(&object.bytes).ok();
            out.push(StateVersion {
                serial: value.as_ref().and_then(|v| v["serial"].as_u64()),
                lineage: value
                    .as_ref()
                    .and_then(|v| v["lineage"].as_str().map(str::to_string)),
                version,
            });
        }
        Ok(out)
    }
}
