//! `history` and `state`: reading the audit log and the state, and the audited forced unlock.

use std::path::Path;

use time::OffsetDateTime;

use super::{AwsOptions, EngineError, open};
use crate::audit::{AuditEntry, AuditResult, NewEntry, Verification};
use crate::planfile::Plan;
use crate::state::State;
use crate::state::store::{LockInfo, StateVersion};

/// The newest `limit` audit entries, newest first.
pub async fn history(
    dir: &Path,
    aws: &AwsOptions,
    limit: u64,
) -> Result<Vec<AuditEntry>, EngineError> {
    let (_, _, backend) = open(dir, aws).await?;
    Ok(backend.audit.newest(limit).await?)
}

/// One audit entry, and the plan it applied when that was kept.
pub async fn history_entry(
    dir: &Path,
    aws: &AwsOptions,
    seq: u64,
) -> Result<(AuditEntry, Option<Plan>), EngineError> {
    let (_, _, backend) = open(dir, aws).await?;
    let entry = backend
        .audit
        .read(seq)
        .await?
        .ok_or_else(|| EngineError::Refused(format!("there is no audit entry {seq}")))?;
    // A kept plan that cannot be read (or was planted) is shown as not kept; the entry
    // itself still prints.
    let plan = match &entry.plan_sha256 {
        Some(sha256) => backend.kept_plan(sha256).await.ok().flatten(),
        None => None,
    };
    Ok((entry, plan))
}

/// Checks every entry and link of the audit log, every entry's signature (when the cluster
/// signs them), and the log against the state: it must still hold the entry the current state
/// names and the entry that wrote it, and every state an entry says it wrote must be stored.
pub async fn verify_history(dir: &Path, aws: &AwsOptions) -> Result<Verification, EngineError> {
    let (config, _, backend) = open(dir, aws).await?;
    let writes = std::cell::RefCell::new(Vec::new());
    let commands = std::cell::RefCell::new(std::collections::BTreeMap::new());
    let signatures = std::cell::RefCell::new(Vec::new());
    let mut verification = backend
        .audit
        .verify_with(async |entry: &AuditEntry| {
            writes.borrow_mut().push((
                entry.seq,
                entry.result,
                entry.state_serial_after,
                entry.state_sha256_after.clone(),
            ));
            commands
                .borrow_mut()
                .insert(entry.seq, entry.command.clone());
            let problem = backend.entry_signature_problem(entry).await;
            signatures
                .borrow_mut()
                .push((entry.seq, entry.signature.is_some(), problem));
            None
        })
        .await?;
    // Entries written before the cluster signed them stay unsigned; from the first signed
    // entry on, every entry must be signed, and a log with none signed is a problem too.
    let signatures = signatures.into_inner();
    let first_signed = signatures
        .iter()
        .find(|(_, signed, _)| *signed)
        .map(|s| s.0);
    if first_signed.is_none() && backend.signs_entries() && !signatures.is_empty() {
        verification.problems.push(
            "no entry is signed, and cluster.yaml signs every entry: the log was rewritten, or nothing was written since entries were signed".into(),
        );
    }
    for (seq, signed, problem) in signatures {
        let before_signing = !signed && first_signed.is_none_or(|first| seq < first);
        if let Some(problem) = problem.filter(|_| !before_signing) {
            verification.problems.push(problem);
        }
    }
    let writes = writes.into_inner();
    let commands = commands.into_inner();
    let Some(loaded) = backend.load(&config).await? else {
        return Ok(verification);
    };
    let state = &loaded.state;
    let problems = &mut verification.problems;
    // A pushed state keeps the anchor of the log it came from: the signed `state push` entry
    // that wrote it is what this log holds of it.
    let pushed = writes.iter().any(|(seq, _, serial, _)| {
        *serial == Some(state.serial) && commands.get(seq).is_some_and(|c| c == "state push")
    });
    if let Some(head) = state.audit_head.as_ref().filter(|_| !pushed) {
        match backend.audit.read(head.seq).await {
            Ok(Some(entry)) if entry.entry_sha256 == head.entry_sha256 => {}
            Ok(Some(entry)) => problems.push(format!(
                "entry {} is not the entry the state (serial {}) records: it hashes to {}, the state says {}; it was rewritten",
                head.seq, state.serial, entry.entry_sha256, head.entry_sha256
            )),
            Ok(None) => problems.push(format!(
                "entry {} is missing: the state (serial {}) was written by the run it records, so the newest entries were deleted",
                head.seq, state.serial
            )),
            Err(e) => problems.push(format!("entry {} is unreadable: {e}", head.seq)),
        }
        if !writes
            .iter()
            .any(|(_, _, serial, _)| *serial == Some(state.serial))
        {
            problems.push(format!(
                "no entry records writing the current state (serial {}): the entry that closed its run was deleted",
                state.serial
            ));
        }
    }
    let stored: std::collections::BTreeSet<u64> = backend
        .store
        .versions()
        .await?
        .iter()
        .filter_map(|v| v.serial)
        .collect();
    // The entry that wrote the current serial says what it wrote: an edited state differs.
    if let Some((seq, _, _, Some(sha256))) = writes
        .iter()
        .rev()
        .find(|(_, _, serial, _)| *serial == Some(state.serial))
        && *sha256 != loaded.sha256
    {
        problems.push(format!(
            "the current state (serial {}) is not the one entry {seq} wrote: it hashes to {}, the entry says {sha256}; it was edited",
            state.serial, loaded.sha256
        ));
    }
    for (seq, result, serial, _) in &writes {
        if let (AuditResult::Succeeded, Some(serial)) = (result, serial)
            && !stored.contains(serial)
        {
            problems.push(format!(
                "entry {seq} says it wrote state serial {serial}, which no stored version of the state holds"
            ));
        }
    }
    Ok(verification)
}

/// The current state with key ciphertexts replaced by a short fingerprint, unless `raw`.
pub async fn state_show(dir: &Path, aws: &AwsOptions, raw: bool) -> Result<State, EngineError> {
    let (config, _, backend) = open(dir, aws).await?;
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
    EngineError::Refused(format!(
        "there is no state at {location} yet (nothing has been applied)"
    ))
}

/// The stored state's exact bytes, for `state pull`.
pub async fn state_pull(dir: &Path, aws: &AwsOptions) -> Result<Vec<u8>, EngineError> {
    let (config, _, backend) = open(dir, aws).await?;
    let loaded = backend
        .load(&config)
        .await?
        .ok_or_else(|| no_state(&backend.store.location()))?;
    Ok(crate::state::encode(&loaded.state))
}

/// Every stored version of the state, newest first.
pub async fn state_versions(
    dir: &Path,
    aws: &AwsOptions,
) -> Result<Vec<StateVersion>, EngineError> {
    let (_, _, backend) = open(dir, aws).await?;
    Ok(backend.store.versions().await?)
}

/// The current lock, if any.
pub async fn current_lock(dir: &Path, aws: &AwsOptions) -> Result<Option<LockInfo>, EngineError> {
    let (_, _, backend) = open(dir, aws).await?;
    Ok(backend.store.current_lock().await?.map(|(info, _)| info))
}

/// `state push`: writes a state file (e.g. from `state pull` on another backend) to this
/// cluster's backend, under the lock, and records it in this backend's audit log.
pub async fn state_push(
    dir: &Path,
    aws: &AwsOptions,
    origin: &str,
    bytes: &[u8],
    now: OffsetDateTime,
) -> Result<(State, AuditEntry), EngineError> {
    let state = crate::state::decode(origin, bytes)?;
    let (config, context, backend) = open(dir, aws).await?;
    if state.cluster_name != config.cluster_name {
        return Err(EngineError::Refused(format!(
            "{origin} is the state of cluster \"{}\", but cluster.yaml names \"{}\"",
            state.cluster_name, config.cluster_name
        )));
    }
    let actor = context
        .actor()
        .await
        .map_err(super::apply::unverified_actor)?;
    let lock = backend
        .store
        .lock(
            &actor,
            "state push",
            now,
            crate::state::store::DEFAULT_LEASE,
        )
        .await?;
    let result = async {
        let loaded = backend.store.push(&state, &lock).await?;
        let new = NewEntry {
            actor: actor.clone(),
            command: "state push".into(),
            result: Some(AuditResult::Succeeded),
            provenance: Some(super::provenance::collect(dir)),
            state_serial_after: Some(state.serial),
            state_sha256_after: Some(loaded.sha256.clone()),
            message: Some(format!(
                "pushed {origin} (lineage {}, serial {}, sha256 {})",
                state.lineage, state.serial, loaded.sha256
            )),
            ..NewEntry::default()
        };
        backend.append_audit(now, new).await
    }
    .await;
    let released = backend.store.unlock(&lock).await;
    let entry = result?;
    released?;
    Ok((state, entry))
}

/// Removes the lock `id` and records who forced it.
pub async fn state_unlock(
    dir: &Path,
    aws: &AwsOptions,
    id: &str,
    now: OffsetDateTime,
) -> Result<(LockInfo, AuditEntry), EngineError> {
    let (_, context, backend) = open(dir, aws).await?;
    // Who unlocks is known before the lock goes, so the unlock is never left unaudited for
    // want of a name.
    let actor = context
        .actor()
        .await
        .map_err(super::apply::unverified_actor)?;
    let info = backend.store.force_unlock(id).await?;
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
