//! `state show|pull|push|versions|unlock`: reading the state and its versions, and the audited
//! writes an operator makes by hand (a pushed state, a forced unlock).

use std::path::Path;

use time::OffsetDateTime;

use super::{AwsOptions, EngineError, open, open_reading};
use crate::audit::{AuditEntry, AuditResult, NewEntry};
use crate::state::State;
use crate::state::lock::Locker;
use crate::state::store::{LockInfo, StateVersion};

/// The current state with key ciphertexts replaced by a short fingerprint, unless `raw`.
pub async fn show(dir: &Path, aws: &AwsOptions, raw: bool) -> Result<State, EngineError> {
    let (config, _, backend) = open_reading(dir, aws).await?;
    let mut state = backend
        .load(&config)
        .await?
        .ok_or_else(|| no_state(&backend.store.location()))?
        .state;
    if !raw {
        for asset in state.tls.values_mut() {
            asset.key_ciphertext = crate::hash::redacted(&asset.key_ciphertext);
        }
    }
    Ok(state)
}

fn no_state(location: &str) -> EngineError {
    EngineError::NoState(location.to_string())
}

/// The stored state's exact bytes, for `state pull`; with `version`, that stored version's
/// (checked to be a state of this cluster).
pub async fn pull(
    dir: &Path,
    aws: &AwsOptions,
    version: Option<&str>,
) -> Result<Vec<u8>, EngineError> {
    let (config, _, backend) = open_reading(dir, aws).await?;
    if let Some(version) = version {
        let bytes = backend.store.version_bytes(version).await?;
        let origin = format!("{} (version {version})", backend.store.location());
        let state = crate::state::decode(&origin, &bytes)?;
        if state.cluster_name != config.cluster_name {
            return Err(EngineError::StateOfOtherCluster {
                location: origin,
                found: state.cluster_name,
                configured: config.cluster_name,
            });
        }
        return Ok(bytes);
    }
    let loaded = backend
        .load(&config)
        .await?
        .ok_or_else(|| no_state(&backend.store.location()))?;
    Ok(crate::state::encode(&loaded.state))
}

/// Every stored version of the state, newest first.
pub async fn versions(dir: &Path, aws: &AwsOptions) -> Result<Vec<StateVersion>, EngineError> {
    let (_, _, backend) = open_reading(dir, aws).await?;
    Ok(backend.store.versions().await?)
}

/// `state push`: writes a state file (e.g. from `state pull` on another backend) to this
/// cluster's backend, under the lock, and records it in this backend's audit log. With
/// `rollback`, the file is an older state of this lineage (from `state versions`), written
/// as the next serial: going back is a write the log records, never a silent restore.
pub async fn push(
    dir: &Path,
    aws: &AwsOptions,
    origin: &str,
    bytes: &[u8],
    rollback: bool,
    now: OffsetDateTime,
) -> Result<(State, AuditEntry), EngineError> {
    let mut state = crate::state::decode(origin, bytes)?;
    let restored_serial = state.serial;
    let (config, context, backend) = open(dir, aws).await?;
    if state.cluster_name != config.cluster_name {
        return Err(EngineError::PushedStateOfOtherCluster {
            origin: origin.to_string(),
            found: state.cluster_name.clone(),
            configured: config.cluster_name.clone(),
        });
    }
    let actor = context
        .actor()
        .await
        .map_err(EngineError::ActorUnverified)?;
    let lock = backend
        .store
        .locker
        .lock(
            &actor,
            "state push",
            now,
            crate::state::store::DEFAULT_LEASE,
        )
        .await?;
    let result = async {
        let current = backend.store.load().await?;
        // How plans are signed changes only through a plan signed with the recorded key: a
        // pushed state (an older one above all) keeps the current state's setting.
        if let Some(current) = &current
            && current.state.plan_signing.is_some()
        {
            state.plan_signing = current.state.plan_signing.clone();
        }
        if rollback {
            // Older than the newest state there is, or the log says was written: a state
            // someone restored in the bucket is taken back this way too.
            let written = super::anchor::last_written_serial(&backend).await?;
            let newest = current
                .as_ref()
                .map_or(0, |c| c.state.serial)
                .max(written.unwrap_or(0));
            // The same serial too: the genuine version of a state someone edited in place.
            let next = newest.checked_add(1);
            match next {
                Some(next) if state.serial <= newest => state.serial = next,
                _ => {
                    return Err(EngineError::NotARollback {
                        origin: origin.to_string(),
                        pushed: state.serial,
                        current: newest,
                    });
                }
            }
        }
        let loaded = backend.store.push(&state, &lock).await?;
        let new = NewEntry {
            actor: actor.clone(),
            command: "state push".into(),
            result: Some(AuditResult::Succeeded),
            provenance: Some(super::provenance::collect(dir)),
            state_serial_after: Some(state.serial),
            state_sha256_after: Some(loaded.sha256.clone()),
            message: Some(match rollback {
                false => format!(
                    "pushed {origin} (lineage {}, serial {}, sha256 {})",
                    state.lineage, state.serial, loaded.sha256
                ),
                true => format!(
                    "rolled back to {origin}: the state of serial {restored_serial}, written as serial {} (lineage {}, sha256 {})",
                    state.serial, state.lineage, loaded.sha256
                ),
            }),
            ..NewEntry::default()
        };
        backend.append_audit(now, new).await
    }
    .await;
    let released = backend.store.locker.unlock(&lock).await;
    let entry = result?;
    released?;
    Ok((state, entry))
}

/// Removes the lock `id` (one whose lease still runs only with `force`) and records who
/// forced it.
pub async fn unlock(
    dir: &Path,
    aws: &AwsOptions,
    id: &str,
    force: bool,
    now: OffsetDateTime,
) -> Result<(LockInfo, AuditEntry), EngineError> {
    let (_, context, backend) = open_reading(dir, aws).await?;
    // Who unlocks is known before the lock goes, so the unlock is never left unaudited for
    // want of a name.
    let actor = context
        .actor()
        .await
        .map_err(EngineError::ActorUnverified)?;
    let info = backend.store.locker.force_unlock(id, now, force).await?;
    let entry = backend
        .append_audit(
            now,
            NewEntry {
                actor,
                command: "state unlock".into(),
                result: Some(AuditResult::Succeeded),
                provenance: Some(super::provenance::collect(dir)),
                message: Some(format!(
                    "forced unlock of lock {} held by {} for `{}` since {} (lease until {})",
                    info.id, info.holder, info.operation, info.created, info.lease_expires
                )),
                ..NewEntry::default()
            },
        )
        .await?;
    Ok((info, entry))
}
