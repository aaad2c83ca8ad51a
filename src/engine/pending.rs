//! Certificates an interrupted apply shipped are reused only with proof that such an apply
//! ran: anyone who can write the state bucket can write the pending object, and a plan that
//! reused it unchecked would install their CA.

use crate::audit::AuditResult;
use crate::config::ClusterConfig;
use crate::state::objects::ObjectStore;
use crate::state::{PendingAssets, State};

use super::EngineError;
use super::backend::Backend;

/// How many of the newest audit entries are searched for the interrupted apply's `started`
/// (after it come only entries of other commands, such as the `state unlock` of its lock).
const ENTRIES_SEARCHED: u64 = 20;

/// The pending assets shipped on top of `prior`, with their ETag, once proven: the audit log
/// holds the `started` entry of an apply of their plan from `prior`'s serial, no entry closes
/// it, the entry's signature holds (when the cluster signs), and that plan, as kept, issued
/// exactly these certificates and is signed with `planSigningKeyArn` (when the cluster signs).
/// Unproven pending assets are refused, never silently dropped: the plan stops and says how
/// to clear them.
pub(crate) async fn proven(
    config: &ClusterConfig,
    backend: &Backend,
    prior: Option<&State>,
) -> Result<Option<(PendingAssets, String)>, EngineError> {
    let Some((pending, etag)) = backend.store.pending_for(prior).await else {
        return Ok(None);
    };
    let location = backend
        .store
        .objects()
        .location(&backend.store.layout().pending);
    let plan = pending.plan_sha256.clone();
    let refuse = |why: String| EngineError::UnprovenPending {
        location: location.clone(),
        plan: plan.get(..12).unwrap_or(&plan).to_string(),
        why,
    };
    let entries = backend.audit.newest(ENTRIES_SEARCHED).await?;
    let Some(started) = entries.iter().position(|e| {
        e.result == AuditResult::Started && e.plan_sha256.as_deref() == Some(plan.as_str())
    }) else {
        return Err(refuse(
            "the audit log has no `started` entry of that plan among its newest entries".into(),
        ));
    };
    let entry = &entries[started];
    // `newest` lists the newest first: what comes before `started` came after it.
    if let Some(closing) = entries[..started]
        .iter()
        .find(|e| e.plan_sha256.as_deref() == Some(plan.as_str()))
    {
        return Err(refuse(format!(
            "audit entry {} already closed that apply ({})",
            closing.seq,
            closing.result.as_str()
        )));
    }
    if entry.state_serial_before != Some(pending.prior_serial) {
        return Err(refuse(format!(
            "its `started` entry {} began from state serial {:?}, not {}",
            entry.seq, entry.state_serial_before, pending.prior_serial
        )));
    }
    if let Some(problem) = backend.entry_signature_problem(entry).await {
        return Err(refuse(problem));
    }
    let Some(kept) = backend.kept_plan(&plan).await? else {
        return Err(refuse("that plan was not kept".into()));
    };
    if kept.new_state.tls != pending.tls {
        return Err(refuse(
            "they are not the certificates that plan issued".into(),
        ));
    }
    if let Some((kms, _)) = backend.signer() {
        super::signing::verify_signature(config, &kept, kms, prior)
            .await
            .map_err(|e| refuse(format!("that plan's signature does not hold: {e}")))?;
    }
    Ok(Some((pending, etag)))
}
