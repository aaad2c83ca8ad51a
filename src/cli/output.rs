//! Human-readable tables for `history` and `state versions`.

use std::fmt::Write;

use crate::audit::AuditEntry;
use crate::state::store::StateVersion;

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                let _ = write!(out, "{cell}");
            } else {
                let _ = write!(out, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// `history`: one line per entry, newest first.
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
                e.time.clone(),
                e.actor.clone(),
                e.command.clone(),
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
    table(&["VERSION", "LAST MODIFIED", "SERIAL", ""], &rows)
}
