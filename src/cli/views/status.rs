//! `status`'s text view.

use std::fmt::Write;

use crate::engine::status::Status;

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
    out
}
