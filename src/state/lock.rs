//! The lock on a cluster's state, as a seam: [`Locker`] is what `plan`, `apply` and `state
//! unlock` need of a lock (take, renew, check, release, remove a dead run's), and
//! [`ObjectLock`] keeps it as an object beside the state with conditional writes. A lock
//! elsewhere (a DynamoDB table) is another `Locker`; the state store takes any.

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use super::StateError;
use super::objects::{ObjectStore, Precondition, StoreError};

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

/// A lock this process holds; released with [`Locker::unlock`].
#[derive(Debug, Clone)]
pub struct HeldLock {
    pub info: LockInfo,
    /// What the locker needs to prove this is still the lock it gave (an object's ETag).
    token: String,
}

impl HeldLock {
    /// A lock a [`Locker`] gives, with what proves it later.
    pub fn new(info: LockInfo, token: String) -> HeldLock {
        HeldLock { info, token }
    }

    pub fn token(&self) -> &str {
        &self.token
    }
}

/// A lease-based lock on one cluster's state.
#[allow(async_fn_in_trait)] // used through generics only
pub trait Locker {
    /// The lock as it stands; `None` when nobody holds it.
    async fn current(&self) -> Result<Option<LockInfo>, StateError>;
    /// Takes the lock, or says who holds it (and whether their lease has run out).
    async fn lock(
        &self,
        holder: &str,
        operation: &str,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<HeldLock, StateError>;
    /// Extends the lease of a lock this process holds to `now + lease`, only if nobody removed
    /// or replaced it since.
    async fn renew(
        &self,
        lock: &HeldLock,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<HeldLock, StateError>;
    /// Releases a lock this process holds; fails if it is no longer ours.
    async fn unlock(&self, lock: &HeldLock) -> Result<(), StateError>;
    /// Removes someone else's lock, only if its id is `id`, and while its lease runs only when
    /// `live` says so.
    async fn force_unlock(
        &self,
        id: &str,
        now: OffsetDateTime,
        live: bool,
    ) -> Result<LockInfo, StateError>;
    /// Whether `lock` is still the lock on the state (nobody removed or replaced it).
    async fn still_holds(&self, lock: &HeldLock) -> Result<bool, StateError>;
}

/// The lock as an object beside the state: created with `If-None-Match: *`, renewed and
/// released with `If-Match` on its ETag, so two runs never both hold it.
#[derive(Debug, Clone)]
pub struct ObjectLock<O> {
    objects: O,
    key: String,
    /// S3 backends refuse to work without bucket versioning: the lock's write is the first,
    /// and its version id says whether the bucket keeps versions.
    require_versioning: Option<String>,
}

impl<O: ObjectStore> ObjectLock<O> {
    pub fn new(objects: O, key: String, require_versioning: Option<String>) -> ObjectLock<O> {
        ObjectLock {
            objects,
            key,
            require_versioning,
        }
    }

    /// The lock object as it stands, with its ETag.
    async fn current_with_etag(&self) -> Result<Option<(LockInfo, String)>, StateError> {
        let Some(object) = self.objects.get(&self.key).await? else {
            return Ok(None);
        };
        let info: LockInfo =
            serde_json::from_slice(&object.bytes).map_err(|source| StateError::Malformed {
                origin: self.objects.location(&self.key),
                source,
            })?;
        Ok(Some((info, object.etag)))
    }
}

impl<O: ObjectStore> Locker for ObjectLock<O> {
    async fn current(&self) -> Result<Option<LockInfo>, StateError> {
        Ok(self.current_with_etag().await?.map(|(info, _)| info))
    }

    /// Whether `lock` is still the lock on the state (nobody removed or replaced it).
    async fn still_holds(&self, lock: &HeldLock) -> Result<bool, StateError> {
        Ok(self
            .current_with_etag()
            .await?
            .is_some_and(|(info, etag)| info.id == lock.info.id && etag == lock.token))
    }

    /// Takes the lock, or says who holds it (and whether their lease has run out).
    async fn lock(
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
            .put(&self.key, &bytes, Precondition::IfAbsent)
            .await
        {
            Ok(written) => {
                let held = HeldLock {
                    info,
                    token: written.etag,
                };
                // Only versioned buckets return a version id: a cheap, exact check that needs
                // no extra request, made before anything else is written.
                if self.require_versioning.is_some() && written.version_id.is_none() {
                    self.unlock(&held).await?;
                    return Err(StateError::Unversioned {
                        bucket: self.require_versioning.clone().unwrap_or_default(),
                    });
                }
                Ok(held)
            }
            Err(StoreError::PreconditionFailed { .. }) => match self.current_with_etag().await? {
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
    async fn renew(
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
            .put(&self.key, &bytes, Precondition::IfMatch(lock.token.clone()))
            .await
        {
            Ok(written) => Ok(HeldLock {
                info,
                token: written.etag,
            }),
            Err(StoreError::PreconditionFailed { .. }) => Err(StateError::LockLost {
                id: lock.info.id.clone(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Releases a lock this process holds; fails if it is no longer ours.
    async fn unlock(&self, lock: &HeldLock) -> Result<(), StateError> {
        match self.objects.delete(&self.key, &lock.token).await {
            Ok(()) => Ok(()),
            Err(StoreError::PreconditionFailed { .. }) => Err(StateError::LockLost {
                id: lock.info.id.clone(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes someone else's lock, only if its id is `id`, and while its lease runs only when
    /// `live` says so (a run renews its lease while it works).
    async fn force_unlock(
        &self,
        id: &str,
        now: OffsetDateTime,
        live: bool,
    ) -> Result<LockInfo, StateError> {
        let Some((info, etag)) = self.current_with_etag().await? else {
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
        match self.objects.delete(&self.key, &etag).await {
            Ok(()) => Ok(info),
            Err(StoreError::PreconditionFailed { .. }) => Err(StateError::LockContended),
            Err(e) => Err(e.into()),
        }
    }
}
