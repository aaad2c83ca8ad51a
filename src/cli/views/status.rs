//! `status`'s views: text, and JSON for scripts.

use std::fmt::Write;

use serde_json::{Value, json};

use crate::aws::cloudformation::{StackDescription, StackEvent};
use crate::engine::status::{Status, UnfinishedApply};

/// `status --format json`: the same facts as the text, under stable keys.
pub fn status_json(s: &Status) -> Value {
    let stack = |d: &StackDescription| {
        json!({
            "name": d.name,
            "id": d.id,
            "status": d.status.as_str(),
            "status_reason": d.status_reason,
            "outputs": d.outputs,
        })
    };
    let event = |e: &StackEvent| {
        json!({
            "timestamp": e.timestamp,
            "logical_id": e.logical_id,
            "resource_type": e.resource_type,
            "status": e.status.as_str(),
            "reason": e.reason,
        })
    };
    json!({
        "stack_name": s.stack_name,
        "stack": s.stack.as_ref().map(stack),
        "events": s.events.iter().map(event).collect::<Vec<_>>(),
        "pool_stacks": s.pool_stacks.iter().map(|(name, d)| json!({
            "name": name,
            "stack": d.as_ref().map(stack),
        })).collect::<Vec<_>>(),
        "records": s.records,
        "lock": s.lock,
        "lock_expired": s.lock_expired,
        "serial": s.serial,
        "secrets_rotation": s.secrets_rotation.map(|r| json!({
            "step": r.step(),
            "of": 3,
            "at": r,
        })),
        "last_audit": s.last_audit,
        "unfinished_apply": s.unfinished_apply.as_ref().map(|u| json!({
            "started": u.started,
            "lock_held": u.lock_held,
            "change_set": u.change_set.as_ref().map(|c| json!({
                "arn": c.arn,
                "execution_status": c.execution.as_ref().map(|e| e.as_str()),
            })),
            "kept_certificates": u.kept_certificates,
            "summary": unfinished_text(s, u),
        })),
    })
}

/// What an unfinished apply means and what to do, in one paragraph.
fn unfinished_text(s: &Status, u: &UnfinishedApply) -> String {
    use crate::aws::cloudformation::ExecutionStatus;
    let e = &u.started;
    let change_set = match &u.change_set {
        None => "made no change set".to_string(),
        Some(c) => {
            let fate = match &c.execution {
                Some(ExecutionStatus::Available) => "was never executed".to_string(),
                Some(ExecutionStatus::ExecuteComplete) => "was executed".to_string(),
                Some(ExecutionStatus::ExecuteInProgress) => "is executing".to_string(),
                Some(ExecutionStatus::ExecuteFailed) => "failed to execute".to_string(),
                Some(other) => format!("is {other}"),
                None => "is gone (executed, or deleted)".to_string(),
            };
            format!("change set {} {fate}", c.arn)
        }
    };
    let kept = u.kept_certificates.map_or(String::new(), |n| {
        format!(
            " The {n} certificates and keys it shipped were kept aside; the next plan reuses them rather than issuing new ones."
        )
    });
    format!(
        "apply #{} (`{}` by {}, {}) recorded `started` and nothing after it: {}. Its {}, {}; the state is at serial {}.{kept} Run `kube-aws plan` to see what is left to converge.",
        e.seq,
        e.command,
        e.actor,
        e.time,
        if u.lock_held {
            "it is still running, or it stopped while holding the lock"
        } else {
            "it stopped mid-run"
        },
        change_set,
        match &s.stack {
            Some(stack) => format!("the stack is {}", stack.status),
            None => "there is no stack".into(),
        },
        s.serial.unwrap_or(0),
    )
}

/// `status`.
pub fn status_text(s: &Status) -> String {
    let mut out = String::new();
    match &s.stack {
        None => {
            let _ = writeln!(out, "Stack {}: not deployed", s.stack_name);
        }
        Some(stack) => {
            let _ = writeln!(out, "Stack {}: {}", stack.name, stack.status);
            if let Some(reason) = &stack.status_reason {
                let _ = writeln!(out, "  reason: {reason}");
            }
            if let Some(api) = stack.outputs.get("APIEndpoint") {
                let _ = writeln!(out, "  API endpoint: {api}");
            }
            for (k, v) in &stack.outputs {
                let _ = writeln!(out, "  output {k} = {v}");
            }
            if !s.events.is_empty() {
                let _ = writeln!(out, "  last events:");
                for e in &s.events {
                    let _ = writeln!(
                        out,
                        "    {} {} {} {}",
                        e.timestamp,
                        e.logical_id,
                        e.status,
                        e.reason.clone().unwrap_or_default()
                    );
                }
            }
        }
    }
    for (name, stack) in &s.pool_stacks {
        match stack {
            None => {
                let _ = writeln!(out, "Pool stack {name}: not deployed");
            }
            Some(stack) => {
                let _ = writeln!(out, "Pool stack {name}: {}", stack.status);
                if let Some(reason) = &stack.status_reason {
                    let _ = writeln!(out, "  reason: {reason}");
                }
            }
        }
    }
    for r in &s.records {
        let live = r
            .live
            .as_ref()
            .map(|v| v.join(","))
            .unwrap_or_else(|| "(missing)".into());
        let verdict = if r.live.as_ref() == Some(&r.in_state) {
            "in sync"
        } else {
            "DIFFERS from state"
        };
        let _ = writeln!(
            out,
            "Record {} {}: live {live}, state {} ({verdict})",
            r.name,
            r.record_type,
            r.in_state.join(",")
        );
    }
    match &s.lock {
        None => {
            let _ = writeln!(out, "Lock: free");
        }
        Some(l) => {
            let _ = writeln!(
                out,
                "Lock: HELD by {} for `{}` since {}, lease {} {} (id {}){}",
                super::one_line(&l.holder),
                super::one_line(&l.operation),
                super::one_line(&l.created),
                if s.lock_expired {
                    "expired at"
                } else {
                    "until"
                },
                super::one_line(&l.lease_expires),
                super::one_line(&l.id),
                if s.lock_expired {
                    format!(
                        "; `kube-aws state unlock {}` clears it",
                        super::one_line(&l.id)
                    )
                } else {
                    format!(
                        "; if its run is dead, `kube-aws state unlock {} --force` clears it",
                        super::one_line(&l.id)
                    )
                }
            );
        }
    }
    let _ = writeln!(
        out,
        "State serial: {}",
        s.serial
            .map(|n| n.to_string())
            .unwrap_or_else(|| "none (nothing applied)".into())
    );
    if let Some(rotation) = s.secrets_rotation {
        let _ = writeln!(out, "Secrets key: {}", rotation.describe());
    }
    match &s.last_audit {
        None => {
            let _ = writeln!(out, "Last audit entry: none");
        }
        Some(e) => {
            let _ = writeln!(
                out,
                "Last audit entry: #{} {} {} `{}` {}{}",
                e.seq,
                e.time,
                e.actor,
                e.command,
                e.result.as_str(),
                e.message
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            );
        }
    }
    if let Some(unfinished) = &s.unfinished_apply {
        let _ = writeln!(out, "Warning: {}", unfinished_text(s, unfinished));
    }
    // Stack reasons, events and the audit entry come from outside too.
    super::printable(&out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditResult;
    use crate::aws::cloudformation::{ExecutionStatus, ResourceStatus, StackStatus};
    use crate::engine::status::{ChangeSetFate, RecordStatus};
    use crate::state::store::LockInfo;

    fn status() -> Status {
        let stack = |name: &str, status: StackStatus, reason: Option<&str>| StackDescription {
            id: format!("arn:aws:cloudformation:us-west-2:123456789012:stack/{name}/1"),
            name: name.into(),
            description: None,
            status,
            status_reason: reason.map(str::to_string),
            outputs: [("APIEndpoint".to_string(), "10.0.0.50".to_string())].into(),
        };
        Status {
            stack_name: "demo".into(),
            stack: Some(stack(
                "demo",
                StackStatus::UpdateRollbackComplete,
                Some("The following resource(s) failed to update: [AutoScaleWorker]."),
            )),
            pool_stacks: vec![
                (
                    "demo-pool-gpu".into(),
                    Some(stack("demo-pool-gpu", StackStatus::UpdateInProgress, None)),
                ),
                ("demo-pool-spot".into(), None),
            ],
            events: vec![StackEvent {
                id: "e1".into(),
                timestamp: "2026-12-07T00:00:01Z".into(),
                logical_id: "AutoScaleWorker".into(),
                resource_type: "AWS::AutoScaling::AutoScalingGroup".into(),
                status: ResourceStatus::UpdateFailed,
                reason: Some("Received 0 SUCCESS signal(s) out of 1".into()),
            }],
            records: vec![RecordStatus {
                name: "k8s.example.com.".into(),
                record_type: "A".into(),
                in_state: vec!["10.0.0.50".into()],
                live: Some(vec!["10.0.0.51".into()]),
            }],
            lock: Some(LockInfo {
                format_version: 1,
                id: "lock-1".into(),
                holder: "arn:aws:sts::123456789012:assumed-role/ci/\u{1b}]0;x".into(),
                operation: "apply plan.json".into(),
                created: "2026-12-07T00:00:00Z".into(),
                lease_expires: "2026-12-07T01:00:00Z".into(),
            }),
            lock_expired: false,
            serial: Some(4),
            secrets_rotation: Some(crate::state::SecretsRotation::NewKeyAdded),
            last_audit: Some(super::super::fixtures::audit_entry(9, AuditResult::Started)),
            unfinished_apply: Some(UnfinishedApply {
                started: super::super::fixtures::audit_entry(9, AuditResult::Started),
                lock_held: true,
                change_set: Some(ChangeSetFate {
                    arn: "arn:aws:cloudformation:us-west-2:123456789012:changeSet/kube-aws-9/1"
                        .into(),
                    execution: Some(ExecutionStatus::ExecuteInProgress),
                }),
                kept_certificates: Some(3),
            }),
        }
    }

    #[test]
    fn status_text_snapshot() {
        insta::assert_snapshot!(status_text(&status()));
    }

    #[test]
    fn status_json_snapshot() {
        insta::assert_snapshot!(serde_json::to_string_pretty(&status_json(&status())).unwrap());
    }
}
