//! `history` (a table, newest first), `history show SEQ` (one entry and the plan it applied)
//! and `state versions`.

use std::fmt::Write;

use super::plan::plan_text;
use super::table;
use crate::audit::AuditEntry;
use crate::engine::history::History;
use crate::planfile::Plan;
use crate::state::store::StateVersion;

/// `history`: the table, then what the state says is still under way.
pub fn history_text(history: &History) -> String {
    let mut out = history_table(&history.entries);
    if let Some(rotation) = history.secrets_rotation {
        let _ = writeln!(out, "Under way: {}", rotation.describe());
    }
    out
}

/// One line per entry, newest first.
pub fn history_table(entries: &[AuditEntry]) -> String {
    if entries.is_empty() {
        return "No audit entries yet.\n".to_string();
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let summary = e
                .summary
                .map(|s| format!("+{} ~{} -{} ±{}", s.add, s.change, s.remove, s.replace))
                .unwrap_or_else(|| "-".into());
            let serial = match (e.state_serial_before, e.state_serial_after) {
                (Some(a), Some(b)) if a != b => format!("{a}→{b}"),
                (_, Some(b)) => b.to_string(),
                (Some(a), None) => a.to_string(),
                (None, None) => "-".into(),
            };
            vec![
                e.seq.to_string(),
                super::printable(&e.time),
                super::printable(&e.actor),
                super::printable(&e.command),
                e.result.as_str().to_string(),
                summary,
                serial,
            ]
        })
        .collect();
    table(
        &[
            "SEQ", "TIME", "ACTOR", "COMMAND", "RESULT", "CHANGES", "SERIAL",
        ],
        &rows,
    )
}

/// `history show SEQ`: the entry, where it came from, and the plan it applied as it was
/// reviewed (diffs redacted when the plan was made; keys are only ever KMS ciphertext).
pub fn history_entry_text(entry: &AuditEntry, plan: Option<&Plan>, color: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Audit entry {}: `{}` {}",
        entry.seq,
        super::printable(&entry.command),
        entry.result.as_str()
    );
    let mut field = |name: &str, value: String| {
        let _ = writeln!(out, "  {name:<13} {}", super::printable(&value));
    };
    field("time", entry.time.clone());
    field("actor", entry.actor.clone());
    match (entry.state_serial_before, entry.state_serial_after) {
        (Some(a), Some(b)) => field("state serial", format!("{a} → {b}")),
        (Some(a), None) => field("state serial", format!("{a} (not written)")),
        (None, Some(b)) => field("state serial", b.to_string()),
        (None, None) => {}
    }
    if let Some(s) = entry.summary {
        field(
            "changes",
            format!(
                "{} to add, {} to change, {} to remove, {} to replace",
                s.add, s.change, s.remove, s.replace
            ),
        );
    }
    if let Some(arn) = &entry.change_set_arn {
        field("change set", arn.clone());
    }
    if let Some(p) = &entry.provenance {
        if let Some(commit) = &p.git_commit {
            let dirty = match p.git_dirty {
                Some(true) => " (with uncommitted changes)",
                _ => "",
            };
            field("git commit", format!("{commit}{dirty}"));
        }
        if let Some(url) = &p.ci_run_url {
            field("CI run", url.clone());
        }
        if let Some(pr) = &p.pull_request {
            field("pull request", pr.clone());
        }
    }
    if let Some(message) = &entry.message {
        field("message", message.clone());
    }
    field(
        "signed",
        entry
            .signature
            .as_ref()
            .map_or("no".to_string(), |s| format!("by {}", s.key_arn)),
    );
    match (plan, &entry.plan_sha256) {
        (Some(plan), _) => {
            let _ = writeln!(out, "\nThe plan it applied, as reviewed:\n");
            out.push_str(&plan_text(plan, color));
        }
        (None, Some(sha256)) => {
            let _ = writeln!(
                out,
                "\nPlan {sha256} was not kept (applied before kube-aws kept plans)."
            );
        }
        (None, None) => {}
    }
    out
}

/// `state versions`: newest first.
pub fn versions_table(versions: &[StateVersion]) -> String {
    if versions.is_empty() {
        return "No state versions yet.\n".to_string();
    }
    let rows: Vec<Vec<String>> = versions
        .iter()
        .map(|v| {
            vec![
                v.version.version_id.clone(),
                v.version.last_modified.clone(),
                v.serial
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "?".into()),
                if v.version.is_latest {
                    "latest".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    table(&["VERSION", "LAST MODIFIED", "SERIAL", "LATEST"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditResult;
    use crate::cli::views::fixtures::audit_entry;
    use crate::planfile::fixtures::rolling_plan;

    #[test]
    fn history_table_and_entry_snapshot() {
        let mut hostile = audit_entry(12, AuditResult::Failed);
        hostile.command = "apply \u{1b}[2Jplan.json".into();
        let entries = [
            hostile,
            audit_entry(11, AuditResult::RolledBack),
            audit_entry(10, AuditResult::Succeeded),
            audit_entry(9, AuditResult::Started),
        ];
        let mut out = history_text(&History {
            entries: entries.to_vec(),
            secrets_rotation: Some(crate::state::SecretsRotation::EncryptingWithNewKey),
        });
        out.push_str("---\n");
        out.push_str(&history_entry_text(
            &entries[1],
            Some(&rolling_plan()),
            false,
        ));
        insta::assert_snapshot!(out);
    }

    #[test]
    fn an_empty_log_says_so() {
        assert_eq!(history_table(&[]), "No audit entries yet.\n");
    }
}
