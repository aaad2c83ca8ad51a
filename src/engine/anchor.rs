//! The state is what the audit log says it is: a state object edited, replaced by an older
//! version or deleted in the bucket would otherwise be planned from, applied over and
//! laundered into a new serial. Plan, apply and `history --verify` hold the state to the
//! newest entry that wrote one.

use crate::audit::{AuditEntry, AuditResult};
use crate::state::State;
use crate::state::store::Loaded;

use super::EngineError;
use super::backend::Backend;

/// How far back the newest state-writing entry is looked for. Only applies, `state push`
/// and `state unlock` write entries, and only an apply that failed before its state write
/// records no serial (an apply closing an earlier run that died after its write records that
/// run's), so a real log has its writer among its newest few; the bound keeps a planted high
/// sequence number from turning every plan into a scan.
const ENTRIES_SEARCHED: u64 = 1000;

/// What the log holds about the state: the newest entry that wrote one, and the entries after
/// it (newest first).
struct LogTail {
    writer: Option<AuditEntry>,
    after_writer: Vec<AuditEntry>,
    /// The whole searched window held no writer, but older entries exist.
    searched_out: bool,
    /// Where the walked entries stop being the log as written: an entry that does not hash to
    /// its own hash, sits under another sequence number (an old signed entry replayed), does
    /// not chain to the one before it, or is missing.
    broken: Option<String>,
}

async fn log_tail(backend: &Backend) -> Result<LogTail, EngineError> {
    let newest = backend.audit.newest_entry().await?;
    let latest = newest.as_ref().map_or(0, |(seq, _)| *seq);
    let newest = newest.and_then(|(_, entry)| entry);
    let oldest = latest.saturating_sub(ENTRIES_SEARCHED - 1).max(1);
    let mut tail = LogTail {
        writer: None,
        after_writer: Vec::new(),
        searched_out: false,
        broken: None,
    };
    let mut newest = newest;
    let mut newer: Option<AuditEntry> = None;
    for seq in (oldest..=latest).rev() {
        let read = match newest.take() {
            Some(entry) => Some(entry),
            None => backend.audit.read(seq).await?,
        };
        let problem = match &read {
            None => Some(format!("audit entry {seq} is missing")),
            Some(entry) if entry.seq != seq => Some(format!(
                "audit entry {seq} holds entry {} (an old entry copied forward?)",
                entry.seq
            )),
            Some(entry) if entry.compute_sha256() != entry.entry_sha256 => Some(format!(
                "audit entry {seq} was edited: its content does not hash to its entry_sha256"
            )),
            Some(entry) => newer
                .as_ref()
                .filter(|n| n.prev_sha256 != entry.entry_sha256)
                .map(|n| format!("audit entry {} does not chain to entry {seq}", n.seq)),
        };
        if let Some(problem) = problem {
            tail.broken = Some(problem);
            return Ok(tail);
        }
        let entry = read.expect("checked above");
        if entry.state_serial_after.is_some() {
            tail.writer = Some(entry);
            return Ok(tail);
        }
        newer = Some(entry.clone());
        tail.after_writer.push(entry);
    }
    tail.searched_out = oldest > 1;
    Ok(tail)
}

/// The serial the newest state-writing entry wrote, if any did.
pub(crate) async fn last_written_serial(backend: &Backend) -> Result<Option<u64>, EngineError> {
    Ok(log_tail(backend)
        .await?
        .writer
        .and_then(|w| w.state_serial_after))
}

/// Whether the entries that account for the state must carry the signature of the key it
/// records. Apply and `history --verify` check it; plan, a preview whose every write apply
/// re-checks, skips it and so makes no KMS call when nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signatures {
    Verify,
    Skip,
}

/// How the log accounts for the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Anchor {
    /// There is no state, and no entry says one was written.
    NoState,
    /// The newest state-writing entry (this one) wrote it.
    WrittenBy(u64),
    /// The apply of this `started` entry wrote it and has no closing entry: it died before
    /// writing one, or the entry was deleted (the two look the same).
    UnclosedApply(u64),
}

/// Refuses a state the audit log does not account for (see [`anchor`]).
pub(crate) async fn check(
    backend: &Backend,
    loaded: Option<&Loaded>,
    signatures: Signatures,
) -> Result<(), EngineError> {
    anchor(backend, loaded, signatures)
        .await?
        .map(|_| ())
        .map_err(|why| EngineError::StateNotInLog {
            location: backend.store.location(),
            why,
        })
}

/// How the log accounts for the current state, or why it does not: it is the state the log
/// says was written last. It is that state when the newest entry that wrote a state names its serial and hash
/// (and, when the state records a signing key, is signed with it), or when an apply wrote it
/// and died before its closing entry: then the state's own `audit_head` is that apply's
/// `started` entry, newer than the last writer and from its serial, and the state is the
/// kept plan's `new_state` with only what the run itself learns filled in.
pub(crate) async fn anchor(
    backend: &Backend,
    loaded: Option<&Loaded>,
    signatures: Signatures,
) -> Result<Result<Anchor, String>, EngineError> {
    let tail = log_tail(backend).await?;
    if let Some(broken) = tail.broken {
        return Ok(Err(format!(
            "the audit log is not as it was written: {broken}"
        )));
    }
    let Some(loaded) = loaded else {
        return Ok(match tail.writer {
            None => Ok(Anchor::NoState),
            Some(w) => Err(format!(
                "there is no state, but audit entry {} wrote serial {}: the state was deleted",
                w.seq,
                w.state_serial_after.unwrap_or_default()
            )),
        });
    };
    let state = &loaded.state;
    let signing_key = match signatures {
        Signatures::Verify => state.plan_signing.as_ref().and_then(|s| s.key()),
        Signatures::Skip => None,
    };
    let written_serial = tail.writer.as_ref().and_then(|w| w.state_serial_after);
    if let Some(writer) = &tail.writer
        && written_serial == Some(state.serial)
        && writer
            .state_sha256_after
            .as_ref()
            .is_none_or(|sha256| *sha256 == loaded.sha256)
    {
        let unsigned = match signing_key {
            Some(key) => backend.entry_signed_with(writer, key).await,
            // A state that records no key vouches for nothing: an unsigned writer after
            // signed entries needs the reviewed plan that switched signing off.
            None if writer.signature.is_none() && backend.signs_entries() => {
                unreviewed_switch_off(backend, writer).await?
            }
            None => None,
        };
        return Ok(match unsigned {
            None => Ok(Anchor::WrittenBy(writer.seq)),
            Some(problem) => Err(problem),
        });
    }
    // Not the last written state: unless an apply wrote it and died before closing, say what
    // it is instead.
    let unclosed = match unclosed_write(backend, state, &tail, written_serial, signing_key).await? {
        Ok(started) => return Ok(Ok(Anchor::UnclosedApply(started))),
        Err(why) => why,
    };
    Ok(Err(match (&tail.writer, written_serial) {
        (Some(writer), Some(serial)) if state.serial < serial => format!(
            "it is serial {}, but audit entry {} wrote serial {serial}: an older version was restored",
            state.serial, writer.seq
        ),
        (Some(writer), Some(serial)) if state.serial == serial => format!(
            "it hashes to {}, but audit entry {} wrote serial {serial} hashing to {}: it was edited",
            loaded.sha256,
            writer.seq,
            writer.state_sha256_after.as_deref().unwrap_or("?")
        ),
        (Some(writer), Some(serial)) => format!(
            "it is serial {}, but the newest audit entry that wrote a state ({}) wrote serial {serial}, and {unclosed}",
            state.serial, writer.seq
        ),
        _ if tail.searched_out => format!(
            "none of the newest {ENTRIES_SEARCHED} audit entries wrote a state, and {unclosed}"
        ),
        _ => format!("no audit entry wrote a state, and {unclosed}"),
    }))
}

/// Why an unsigned `writer` (its state recording no signing key, while cluster.yaml signs) is
/// not to be trusted, if it is not: entries before it were signed with a key, and no apply
/// between them ran a plan that moved signing from that key to unsigned and was signed with
/// it. A cluster that never signed (signing being switched on now) has no signed entry.
async fn unreviewed_switch_off(
    backend: &Backend,
    writer: &AuditEntry,
) -> Result<Option<String>, EngineError> {
    let oldest = writer.seq.saturating_sub(ENTRIES_SEARCHED).max(1);
    let mut started_since = Vec::new();
    for seq in (oldest..writer.seq).rev() {
        let Some(entry) = backend.audit.read(seq).await? else {
            continue;
        };
        let Some(signature) = &entry.signature else {
            if entry.result == AuditResult::Started {
                started_since.push(entry);
            }
            continue;
        };
        let key = signature.key_arn.clone();
        for started in &started_since {
            let Some(plan) = (match &started.plan_sha256 {
                Some(sha256) => backend.kept_plan(sha256).await?,
                None => None,
            }) else {
                continue;
            };
            let switched_off = plan.signing.as_ref().is_some_and(|c| {
                c.from == Some(crate::state::PlanSigning::Key(key.clone()))
                    && c.to == crate::state::PlanSigning::Unsigned
            });
            if switched_off && backend.plan_signed_with(&plan, &key).await {
                return Ok(None);
            }
        }
        return Ok(Some(format!(
            "audit entry {} wrote it unsigned, but entry {seq} before it is signed with {key}, and no reviewed plan signed with that key switched signing off",
            writer.seq
        )));
    }
    Ok(None)
}

/// Whether `state` is what an apply wrote before dying between the state write and its
/// closing entry (the apply's `started` entry); the error says why not.
async fn unclosed_write(
    backend: &Backend,
    state: &State,
    tail: &LogTail,
    written_serial: Option<u64>,
    signing_key: Option<&str>,
) -> Result<Result<u64, String>, EngineError> {
    let Some(head) = &state.audit_head else {
        return Ok(Err(
            "it names no audit entry of the run that wrote it".into()
        ));
    };
    let Some(started) = tail.after_writer.iter().find(|e| e.seq == head.seq) else {
        return Ok(Err(format!(
            "the entry it names ({}) is not an entry after that",
            head.seq
        )));
    };
    if started.entry_sha256 != head.entry_sha256 || started.result != AuditResult::Started {
        return Ok(Err(format!(
            "the entry it names ({}) is not the `started` entry it records",
            head.seq
        )));
    }
    let from = written_serial.unwrap_or(0);
    if started.state_serial_before != Some(from) || Some(state.serial) != from.checked_add(1) {
        return Ok(Err(format!(
            "the apply of entry {} began from serial {:?}, not {from}",
            started.seq, started.state_serial_before
        )));
    }
    if let Some(key) = signing_key
        && let Some(problem) = backend.entry_signed_with(started, key).await
    {
        return Ok(Err(problem));
    }
    let kept = match &started.plan_sha256 {
        Some(sha256) => backend.kept_plan(sha256).await?,
        None => None,
    };
    let Some(kept) = kept else {
        return Ok(Err(format!(
            "the plan of entry {} was not kept",
            started.seq
        )));
    };
    if !is_written_from(state, &kept.new_state) {
        return Ok(Err(format!(
            "it is not what the plan of entry {} writes",
            started.seq
        )));
    }
    Ok(Ok(started.seq))
}

/// Whether `state` is `planned` with only what apply itself fills in (the stack's and pools'
/// ids and parameters, the records Route53 took, where the cluster lives, the run's entry).
fn is_written_from(state: &State, planned: &State) -> bool {
    let mut expected = planned.clone();
    if let (Some(e), Some(s)) = (expected.stack.as_mut(), state.stack.as_ref()) {
        e.id = s.id.clone();
    }
    for (pool, recorded) in &mut expected.pool_stacks {
        if let Some(s) = state.pool_stacks.get(pool) {
            recorded.id = s.id.clone();
            recorded.parameters = s.parameters.clone();
        }
    }
    expected.records = state.records.clone();
    expected.account_id = state.account_id.clone();
    expected.region = state.region.clone();
    expected.audit_head = state.audit_head.clone();
    expected == *state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_state_differs_from_its_plan_only_in_what_apply_learns() {
        let planned = State::new("demo", "lineage".into());
        let mut written = planned.clone();
        written.account_id = Some("123456789012".into());
        written.region = Some("us-west-2".into());
        written.audit_head = Some(crate::state::AuditHead {
            seq: 4,
            entry_sha256: "e".into(),
        });
        assert!(is_written_from(&written, &planned));
        let mut other = written.clone();
        other.serial += 1;
        assert!(!is_written_from(&other, &planned));
        let mut other = written.clone();
        other.image = Some(crate::state::ImageState {
            release_channel: crate::config::ReleaseChannel::Stable,
            ami_id: "ami-0".into(),
        });
        assert!(!is_written_from(&other, &planned));
    }
}
