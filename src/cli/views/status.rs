//! `status`'s views: text, and JSON for scripts.

use std::fmt::Write;

use serde_json::{Value, json};

use crate::aws::cloudformation::{StackDescription, StackEvent};
use crate::engine::status::Status;

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
        "last_audit": s.last_audit,
        "unfinished_apply": s.unfinished_apply,
    })
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
                super::printable(&l.holder),
                super::printable(&l.operation),
                super::printable(&l.created),
                if s.lock_expired {
                    "expired at"
                } else {
                    "until"
                },
                super::printable(&l.lease_expires),
                super::printable(&l.id),
                if s.lock_expired {
                    format!(
                        "; `kube-aws state unlock {}` clears it",
                        super::printable(&l.id)
                    )
                } else {
                    format!(
                        "; if its run is dead, `kube-aws state unlock {} --force` clears it",
                        super::printable(&l.id)
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
    if let Some(warning) = &s.unfinished_apply {
        let _ = writeln!(out, "Warning: {warning}");
    }
    // Stack reasons, events and the audit entry come from outside too.
    super::printable(&out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditResult;
    use crate::aws::cloudformation::{ResourceStatus, StackStatus};
    use crate::engine::status::RecordStatus;
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
            last_audit: Some(super::super::fixtures::audit_entry(9, AuditResult::Started)),
            unfinished_apply: None,
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
