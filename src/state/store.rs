//! The state store over any [`ObjectStore`]: load with the version it was read at, a leased
//! lock, and a persist that only succeeds when nobody wrote since that read.

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

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

/// What the lock object says: who holds it, for what, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub format_version: u32,
    pub id: String,
    pub holder: String,
    pub operation: String,
    /// RFC 3339, UTC.
    pub created: String,
    pub lease_expires: String,
}

impl LockInfo {
    pub fn expired_at(&self, now: OffsetDateTime) -> bool {
        OffsetDateTime::parse(&self.lease_expires, &Rfc3339).is_ok_and(|t| t <= now)
    }
}

/// A lock this process holds; released with [`StateStore::unlock`].
#[derive(Debug, Clone)]
pub struct HeldLock {
    pub info: LockInfo,
    etag: String,
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
pub struct StateStore<O> {
    objects: O,
    layout: Layout,
    /// S3 backends refuse to work without bucket versioning.
    require_versioning: Option<String>,
}

impl<O: ObjectStore> StateStore<O> {
    /// `require_versioning` names the bucket when the backend must be versioned.
    pub fn new(objects: O, layout: Layout, require_versioning: Option<String>) -> StateStore<O> {
        StateStore {
            objects,
            layout,
            require_versioning,
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

    /// The lock as it stands, with its ETag.
    /// Whether `lock` is still the lock on the state (nobody removed or replaced it).
    pub async fn still_holds(&self, lock: &HeldLock) -> Result<bool, StateError> {
        Ok(self
            .current_lock()
            .await?
            .is_some_and(|(info, etag)| info.id == lock.info.id && etag == lock.etag))
    }

    pub async fn current_lock(&self) -> Result<Option<(LockInfo, String)>, StateError> {
        let Some(object) = self.objects.get(&self.layout.lock).await? else {
            return Ok(None);
        };
        let info: LockInfo =
            serde_json::from_slice(&object.bytes).map_err(|source| StateError::Malformed {
                origin: self.objects.location(&self.layout.lock),
                source,
            })?;
        Ok(Some((info, object.etag)))
    }

    /// Takes the lock, or says who holds it (and whether their lease has run out).
    pub async fn lock(
        &self,
        holder: &str,
        operation: &str,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<HeldLock, StateError> {
        let info = LockInfo {
            format_version: 1,
            id: uuid::Uuid::new_v4().to_string(),
            holder: holder.to_string(),
            operation: operation.to_string(),
            created: now.format(&Rfc3339).expect("RFC 3339 formats"),
            lease_expires: (now + lease).format(&Rfc3339).expect("RFC 3339 formats"),
        };
        let bytes = crate::hash::canonical_json_pretty(&info).expect("a lock serialises");
        match self
            .objects
            .put(&self.layout.lock, &bytes, Precondition::IfAbsent)
            .await
        {
            Ok(written) => {
                let held = HeldLock {
                    info,
                    etag: written.etag,
                };
                // Only versioned buckets return a version id: a cheap, exact check that needs
                // no extra request, made before anything else is written.
                if self.require_versioning.is_some() && written.version_id.is_none() {
                    self.unlock(&held).await?;
                    return Err(self.unversioned());
                }
                Ok(held)
            }
            Err(StoreError::PreconditionFailed { .. }) => match self.current_lock().await? {
                Some((info, _)) => Err(StateError::Locked {
                    expired: info.expired_at(now),
                    info: Box::new(info),
                }),
                // Released between our attempt and our read: report it as contention.
                None => Err(StateError::LockContended),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// Extends the lease of a lock this process holds to `now + lease`, only if nobody removed
    /// or replaced it since: the returned lock carries the new ETag.
    pub async fn renew(
        &self,
        lock: &HeldLock,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<HeldLock, StateError> {
        let info = LockInfo {
            lease_expires: (now + lease).format(&Rfc3339).expect("RFC 3339 formats"),
            ..lock.info.clone()
        };
        let bytes = crate::hash::canonical_json_pretty(&info).expect("a lock serialises");
        match self
            .objects
            .put(
                &self.layout.lock,
                &bytes,
                Precondition::IfMatch(lock.etag.clone()),
            )
            .await
        {
            Ok(written) => Ok(HeldLock {
                info,
                etag: written.etag,
            }),
            Err(StoreError::PreconditionFailed { .. }) => Err(StateError::LockLost {
                id: lock.info.id.clone(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Releases a lock this process holds; fails if it is no longer ours.
    pub async fn unlock(&self, lock: &HeldLock) -> Result<(), StateError> {
        match self.objects.delete(&self.layout.lock, &lock.etag).await {
            Ok(()) => Ok(()),
            Err(StoreError::PreconditionFailed { .. }) => Err(StateError::LockLost {
                id: lock.info.id.clone(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes someone else's lock, only if its id is `id`, and while its lease runs only when
    /// `live` says so (a run renews its lease while it works).
    pub async fn force_unlock(
        &self,
        id: &str,
        now: OffsetDateTime,
        live: bool,
    ) -> Result<LockInfo, StateError> {
        let Some((info, etag)) = self.current_lock().await? else {
            return Err(StateError::NotLocked);
        };
        if info.id != id {
            return Err(StateError::LockIdMismatch {
                given: id.to_string(),
                info: Box::new(info),
            });
        }
        if !live && !info.expired_at(now) {
            return Err(StateError::LockLive {
                info: Box::new(info),
            });
        }
        match self.objects.delete(&self.layout.lock, &etag).await {
            Ok(()) => Ok(info),
            Err(StoreError::PreconditionFailed { .. }) => Err(StateError::LockContended),
            Err(e) => Err(e.into()),
        }
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
        match self.current_lock().await? {
            Some((info, _)) if info.id == lock.info.id => {}
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
        match self.current_lock().await? {
            Some((info, _)) if info.id == lock.info.id => {}
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
        if !self.still_holds(lock).await? {
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
