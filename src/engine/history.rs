//! `history`: the audit log, newest first, one entry with the plan it applied, and `--verify`
//! (every hash, link and signature, and the log against the state it anchors).

use std::path::Path;

use super::{AwsOptions, EngineError, open};
use crate::audit::{AuditEntry, AuditResult, Verification};
use crate::planfile::Plan;

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
        .ok_or(EngineError::NoAuditEntry(seq))?;
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
