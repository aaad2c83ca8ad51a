//! What apply prints: a line per stack event, and how the run ended.

use crate::audit::AuditResult;
use crate::aws::cloudformation::StackEvent;
use crate::engine::apply::{ApplyEvent, ApplyOutcome};
use serde_json::{Value, json};

/// One stack event, as apply streams them.
pub fn event_line(e: &StackEvent) -> String {
    super::printable(&format!(
        "  {} {} ({}) {}{}",
        e.timestamp,
        e.logical_id,
        e.resource_type,
        e.status,
        e.reason
            .as_ref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    ))
}

/// One step or stack event as `apply --format json` reports it.
pub fn event_json(event: &ApplyEvent<'_>) -> Value {
    match event {
        ApplyEvent::Step(step) => json!({"event": "step", "step": step}),
        ApplyEvent::Stack(e) => json!({
            "event": "stack",
            "timestamp": e.timestamp,
            "logical_id": e.logical_id,
            "resource_type": e.resource_type,
            "status": e.status.as_str(),
            "reason": e.reason,
        }),
    }
}

/// How the run ended, as `apply --format json`'s last line.
pub fn outcome_json(outcome: &ApplyOutcome) -> Value {
    json!({
        "event": "end",
        "result": outcome.result.as_str(),
        "serial_before": outcome.serial_before,
        "serial_after": outcome.serial_after,
        "audit_entry": outcome.audit_seq,
        "message": outcome.message,
        "api_url": outcome.api_url,
    })
}

/// How the run ended: `Ok` with the line for stdout when it succeeded, `Err` with the error
/// message otherwise.
pub fn outcome(outcome: &ApplyOutcome) -> Result<String, String> {
    match outcome.result {
        AuditResult::Succeeded => {
            let mut said = format!(
                "Apply complete: state serial {} → {}, audit entry {}.\n",
                outcome.serial_before, outcome.serial_after, outcome.audit_seq
            );
            if let Some(api) = &outcome.api_url {
                said.push_str(&format!(
                    "The API is at {api}: `kube-aws kubeconfig -o admin.kubeconfig` writes an admin kubeconfig for it, and `kube-aws status` shows the stacks and the lock.\n"
                ));
            }
            Ok(super::printable(&said))
        }
        other => Err(format!(
            "apply {}: {} (state serial {}, audit entry {})",
            other.as_str(),
            outcome.message.clone().unwrap_or_default(),
            outcome.serial_after,
            outcome.audit_seq
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::cloudformation::ResourceStatus;

    #[test]
    fn apply_event_stream_and_endings_snapshot() {
        let event = |id: &str, status: &str, reason: Option<&str>| StackEvent {
            id: id.into(),
            timestamp: "2026-12-07T00:00:01Z".into(),
            logical_id: "AutoScaleWorker".into(),
            resource_type: "AWS::AutoScaling::AutoScalingGroup".into(),
            status: ResourceStatus::from(status),
            reason: reason.map(str::to_string),
        };
        let mut out = String::new();
        for e in [
            event("1", "UPDATE_IN_PROGRESS", None),
            event(
                "2",
                "UPDATE_FAILED",
                Some("Received 0 SUCCESS signal(s)\u{1b}[2J"),
            ),
            event("3", "UPDATE_ROLLBACK_COMPLETE", None),
        ] {
            out.push_str(&event_line(&e));
            out.push('\n');
        }
        let ended = |result, message: Option<&str>| ApplyOutcome {
            result,
            serial_before: 4,
            serial_after: if result == AuditResult::Succeeded {
                5
            } else {
                4
            },
            message: message.map(str::to_string),
            audit_seq: 9,
            api_url: Some("https://k8s.example.com".into()),
        };
        for ending in [
            ended(AuditResult::Succeeded, None),
            ended(AuditResult::RolledBack, Some("stack demo rolled back")),
            ended(AuditResult::Interrupted, Some("interrupted before …")),
        ] {
            match outcome(&ending) {
                Ok(line) => out.push_str(&line),
                Err(message) => out.push_str(&super::super::error_text(&message)),
            }
            out.push_str(&format!("{}\n", outcome_json(&ending)));
        }
        let failed = event("2", "UPDATE_FAILED", Some("Received 0 SUCCESS signal(s)"));
        for e in [
            ApplyEvent::Step("taking the state lock"),
            ApplyEvent::Stack(&failed),
        ] {
            out.push_str(&format!("{}\n", event_json(&e)));
        }
        insta::assert_snapshot!(out);
    }
}
