//! `history`: the audit log, newest first, one entry with the plan it applied, and `--verify`
//! (every hash, link and signature, and the log against the state it anchors).

use std::path::Path;

use super::anchor::{Anchor, Signatures};
use super::{AwsOptions, EngineError, open_reading};
use crate::audit::{AuditEntry, AuditResult, Verification};
use crate::planfile::Plan;
use crate::state::{PlanSigning, SecretsRotation};

/// The newest audit entries, and the work the last of them left in flight.
pub struct History {
    /// Newest first.
    pub entries: Vec<AuditEntry>,
    /// A Secrets key rotation the state records as applied part way.
    pub secrets_rotation: Option<SecretsRotation>,
}

/// The newest `limit` audit entries, newest first, and what the state says is under way.
pub async fn history(dir: &Path, aws: &AwsOptions, limit: u64) -> Result<History, EngineError> {
    let (config, _, backend) = open_reading(dir, aws).await?;
    let entries = backend.audit.newest(limit).await?;
    // Only words hang on it: a state that does not load (another cluster's, corrupt) must not
    // keep anyone from reading the log, which is where they look when it does not.
    let secrets_rotation = backend
        .load(&config)
        .await
        .ok()
        .flatten()
        .and_then(|loaded| loaded.state.secrets_rotation);
    Ok(History {
        entries,
        secrets_rotation,
    })
}

/// One audit entry, and the plan it applied when that was kept.
pub async fn history_entry(
    dir: &Path,
    aws: &AwsOptions,
    seq: u64,
) -> Result<(AuditEntry, Option<Plan>), EngineError> {
    let (_, _, backend) = open_reading(dir, aws).await?;
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
/// signs them), and the log against the state: the state must be the one the newest writing
/// entry wrote (`anchor`), the log must still hold the entry the state names, and every state
/// an entry says it wrote must be stored. `checked` says what was verified.
pub async fn verify_history(dir: &Path, aws: &AwsOptions) -> Result<Verification, EngineError> {
    let (config, _, backend) = open_reading(dir, aws).await?;
    let read = std::cell::RefCell::new(Vec::new());
    let mut verification = backend
        .audit
        .verify_with(async |entry: &AuditEntry| {
            read.borrow_mut().push(entry.clone());
            None
        })
        .await?;
    let entries = read.into_inner();
    // Entries written before the cluster signed them stay unsigned; from the first signed
    // entry on, every entry must be signed, and a log with none signed is a problem too.
    let (signatures, keys) = match backend.signer() {
        Some((_, key)) => check_signatures(&backend, key, &entries).await?,
        None => (Vec::new(), Vec::new()),
    };
    let first_signed = signatures
        .iter()
        .find(|(_, signed, _)| *signed)
        .map(|s| s.0);
    if first_signed.is_none() && backend.signs_entries() && !signatures.is_empty() {
        verification.problems.push(
            "no entry is signed, and cluster.yaml signs every entry: the log was rewritten, or nothing was written since entries were signed".into(),
        );
    }
    for (seq, signed, problem) in &signatures {
        let before_signing = !signed && first_signed.is_none_or(|first| *seq < first);
        if let Some(problem) = problem.as_ref().filter(|_| !before_signing) {
            verification.problems.push(problem.clone());
        }
    }
    verification
        .checked
        .push(signature_coverage(&keys, &signatures, first_signed));
    let Some(loaded) = backend.load(&config).await? else {
        match super::anchor::anchor(&backend, None, Signatures::Verify).await? {
            Err(why) => verification.problems.push(format!("the state: {why}")),
            Ok(_) => verification
                .checked
                .push("there is no state, and no entry says one was written".into()),
        }
        return Ok(verification);
    };
    let state = &loaded.state;
    // The state is the one the newest writing entry wrote (or an apply's that died closing).
    match super::anchor::anchor(&backend, Some(&loaded), Signatures::Verify).await? {
        Err(why) => verification
            .problems
            .push(format!("the current state: {why}")),
        // Plan and apply go on from it (its content is the kept plan's), but the log lacks
        // the entry that ends the run, and only the next apply's entries make up for that.
        Ok(Anchor::UnclosedApply(started)) => verification.problems.push(format!(
            "the current state (serial {}) was written by the apply of entry {started}, which has no closing entry: the run died before writing it, or the entry was deleted. Its content is what that apply's kept plan writes; the next apply writes a state the log records",
            state.serial
        )),
        Ok(_) => verification.checked.push(format!(
            "the state (serial {}, sha256 {}) is the one the newest entry that wrote a state wrote",
            state.serial, loaded.sha256
        )),
    }
    let problems = &mut verification.problems;
    // A pushed state keeps the anchor of the log it came from: the signed `state push` entry
    // that wrote it is what this log holds of it.
    let pushed = entries
        .iter()
        .any(|e| e.state_serial_after == Some(state.serial) && e.command == "state push");
    if let Some(head) = state.audit_head.as_ref().filter(|_| !pushed) {
        match entries.iter().find(|e| e.seq == head.seq) {
            Some(entry) if entry.entry_sha256 == head.entry_sha256 => {}
            Some(entry) => problems.push(format!(
                "entry {} is not the entry the state (serial {}) records: it hashes to {}, the state says {}; it was rewritten",
                head.seq, state.serial, entry.entry_sha256, head.entry_sha256
            )),
            None => problems.push(format!(
                "entry {} is missing: the state (serial {}) was written by the run it records, so the newest entries were deleted",
                head.seq, state.serial
            )),
        }
    }
    let stored: std::collections::BTreeSet<u64> = backend
        .store
        .versions()
        .await?
        .iter()
        .filter_map(|v| v.serial)
        .collect();
    for entry in &entries {
        if let (AuditResult::Succeeded, Some(serial)) = (entry.result, entry.state_serial_after)
            && !stored.contains(&serial)
        {
            problems.push(format!(
                "entry {} says it wrote state serial {serial}, which no stored version of the state holds",
                entry.seq
            ));
        }
    }
    Ok(verification)
}

/// Each entry's signature (in log order: seq, signed, problem) checked with the key in force
/// when it was written, and those keys, newest first. The newest entries are held to
/// cluster.yaml's key; going back past an apply whose reviewed plan moved signing from key K
/// to the key in force (its `started` entry signed with the key in force, naming that plan),
/// older entries are held to K. A key nothing vouches for so is a problem.
async fn check_signatures(
    backend: &super::backend::Backend,
    configured: &str,
    entries: &[AuditEntry],
) -> Result<(Vec<(u64, bool, Option<String>)>, Vec<String>), EngineError> {
    let mut key = configured.to_string();
    let mut keys = vec![key.clone()];
    let mut newer_started: Option<&AuditEntry> = None;
    let mut out = Vec::new();
    for entry in entries.iter().rev() {
        if let (Some(signature), Some(started)) = (&entry.signature, newer_started)
            && signature.key_arn != key
            && rotated_from(backend, started, &key).await? == Some(signature.key_arn.clone())
        {
            key = signature.key_arn.clone();
            keys.push(key.clone());
            newer_started = None;
        }
        let problem = backend.entry_signed_with(entry, &key).await;
        if entry.result == AuditResult::Started && problem.is_none() {
            newer_started = Some(entry);
        }
        out.push((entry.seq, entry.signature.is_some(), problem));
    }
    out.reverse();
    Ok((out, keys))
}

/// The key a `started` entry's kept plan moved signing away from, to `to`.
async fn rotated_from(
    backend: &super::backend::Backend,
    started: &AuditEntry,
    to: &str,
) -> Result<Option<String>, EngineError> {
    let Some(sha256) = &started.plan_sha256 else {
        return Ok(None);
    };
    let plan = backend.kept_plan(sha256).await?;
    Ok(plan
        .and_then(|p| p.signing)
        .and_then(|change| match (change.from, change.to) {
            (Some(PlanSigning::Key(from)), PlanSigning::Key(new)) if new == to => Some(from),
            _ => None,
        }))
}

/// One line on what the signature check covered: which entries, with which keys.
fn signature_coverage(
    keys: &[String],
    signatures: &[(u64, bool, Option<String>)],
    first_signed: Option<u64>,
) -> String {
    if keys.is_empty() {
        return "signatures: not checked (cluster.yaml names no planSigningKeyArn)".into();
    }
    let key = keys.join(", and before the reviewed rotation to it, ");
    let verified = signatures.iter().filter(|(_, _, p)| p.is_none()).count();
    match first_signed {
        None => format!("signatures: none of the entries is signed with {key}"),
        Some(1) => format!(
            "signatures: {verified} of {} entries verified with {key}",
            signatures.len()
        ),
        Some(first) => format!(
            "signatures: {verified} of {} entries verified with {key}; entries before {first} were written before entries were signed",
            signatures.len()
        ),
    }
}
