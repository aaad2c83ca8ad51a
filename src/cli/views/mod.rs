//! What each command prints, as pure functions from the engine's results to text: no I/O, so
//! each view is tested (and snapshot-tested) on its own.

pub mod apply;
pub mod findings;
pub mod history;
pub mod plan;
pub mod state;
pub mod status;

use std::fmt::Write;

use console::Style;

/// `text` with every control character but a newline shown escaped (`\u{1b}`): text from
/// outside (a lock's holder, an audit entry's actor, an AWS error) must not move the cursor,
/// recolour or retitle the user's terminal.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if ch.is_control() && ch != '\n' {
            out.extend(ch.escape_default());
        } else {
            out.push(ch);
        }
    }
    out
}

/// The first 12 characters of a hash, as every view shortens them.
pub fn short_hash(hash: &str) -> String {
    hash.chars().take(12).collect()
}

/// A value from outside as one line of its own: [`printable`], with line breaks shown as `\n`
/// too, so a value cannot add lines that look like the view's.
pub fn one_line(value: &str) -> String {
    printable(value).replace('\n', "\\n")
}

/// [`printable`] for text a view has coloured: its own colour sequences (`ESC [ digits m`) stay,
/// every other control character (a cursor move, a title, a carriage return) from outside is
/// shown escaped. A colour from outside stays a colour, which cannot hide or move anything.
pub fn printable_keeping_colour(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(ch) = rest.chars().next() {
        if ch == '\u{1b}'
            && let Some(sgr) = rest.strip_prefix("\u{1b}[").and_then(|after| {
                let end = after.find(|c: char| !(c.is_ascii_digit() || c == ';'))?;
                (after.as_bytes()[end] == b'm').then(|| &rest[..2 + end + 1])
            })
        {
            out.push_str(sgr);
            rest = &rest[sgr.len()..];
            continue;
        }
        if ch.is_control() && ch != '\n' {
            out.extend(ch.escape_default());
        } else {
            out.push(ch);
        }
        rest = &rest[ch.len_utf8()..];
    }
    out
}

/// `text` as the inside of a Markdown table cell, read literally: a message quotes what a pull
/// request wrote (a YAML key, a value), which must not hide rows (`<!--`), link, mention,
/// format or break the table. Control characters are shown escaped, line breaks become `<br>`.
pub(crate) fn markdown_cell(text: &str) -> String {
    let text = printable(&text.replace("\r\n", "\n"));
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\n' => out.push_str("<br>"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '#' | '@' | '!' | '|' | '~' => {
                out.push('\\');
                out.push(ch);
            }
            other => out.push(other),
        }
    }
    out
}

/// A fenced code block holding `text` whatever it holds: the fence is longer than any run of
/// backticks in it, so a diff cannot close the block and write Markdown of its own.
pub(crate) fn fenced(info: &str, text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    let text = printable(text);
    let newline = if text.ends_with('\n') { "" } else { "\n" };
    format!("{fence}{info}\n{text}{newline}{fence}")
}

/// An error as every command prints it: `error: ` and the message, control characters
/// escaped.
pub fn error_text(message: &str) -> String {
    format!("error: {}\n", printable(message))
}

/// A cluster.yaml with problems that a reading command goes on with.
pub fn config_warning_text(problems: &str) -> String {
    format!(
        "warning: cluster.yaml has problems (plan and apply refuse it; `kube-aws validate` lists them), read as far as it parses:\n{}\n",
        printable(problems)
    )
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
pub(super) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
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

/// Colours for plan output; all plain when colour is off.
pub(super) struct Palette {
    pub add: Style,
    pub change: Style,
    pub remove: Style,
    pub replace: Style,
    pub dim: Style,
    pub bold: Style,
}

impl Palette {
    pub(super) fn new(color: bool) -> Palette {
        let style = |s: Style| s.force_styling(color);
        Palette {
            add: style(Style::new().green()),
            change: style(Style::new().yellow()),
            remove: style(Style::new().red()),
            replace: style(Style::new().red().bold()),
            dim: style(Style::new().dim()),
            bold: style(Style::new().bold()),
        }
    }
}

/// What the view tests print.
#[cfg(test)]
pub(super) mod fixtures {
    use crate::audit::{AuditEntry, AuditResult, ChangeSummary};

    /// An apply's audit entry, as the S3 backend stores one.
    pub fn audit_entry(seq: u64, result: AuditResult) -> AuditEntry {
        let wrote = matches!(result, AuditResult::Succeeded);
        AuditEntry {
            format_version: 1,
            seq,
            prev_sha256: "0".repeat(64),
            time: format!("2026-12-07T00:{seq:02}:00Z"),
            actor: "arn:aws:sts::123456789012:assumed-role/ci-apply/run-77".into(),
            command: "apply plan.json".into(),
            result,
            plan_sha256: Some("ab".repeat(32)),
            change_set_arn: Some(
                "arn:aws:cloudformation:us-west-2:123456789012:changeSet/kube-aws-5/1".into(),
            ),
            state_serial_before: Some(4),
            state_serial_after: wrote.then_some(5),
            state_sha256_after: wrote.then(|| "cd".repeat(32)),
            duration_ms: (result != AuditResult::Started).then_some(81_250),
            summary: Some(ChangeSummary {
                add: 1,
                change: 2,
                remove: 0,
                replace: 1,
            }),
            message: (result == AuditResult::RolledBack)
                .then(|| "stack demo rolled back (UPDATE_ROLLBACK_COMPLETE)".into()),
            provenance: None,
            tool_version: "0.1.0".into(),
            entry_sha256: "ef".repeat(32),
            signature: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::AwsError;
    use crate::aws::cloudformation::StackStatus;
    use crate::engine::{EngineError, PlanMismatch};
    use crate::state::StateError;
    use crate::state::store::LockInfo;

    /// One error of each class as the user sees it: a cluster.yaml mistake at its line, a
    /// refusal, a held lock, a stale plan, a plan apply re-derives otherwise, AWS's own error
    /// (with a control character it must not pass to the terminal), a file.
    #[test]
    fn every_error_class_snapshot() {
        let config = crate::config::ClusterConfig::parse(
            std::path::Path::new("cluster.yaml"),
            "clusterName: demo\nregion: us-west-2\nworkerCount: many\n",
        )
        .unwrap_err();
        let errors: Vec<EngineError> = vec![
            config.into(),
            EngineError::StackBusy {
                stack: "demo".into(),
                status: StackStatus::UpdateInProgress,
            },
            StateError::Locked {
                info: Box::new(LockInfo {
                    format_version: 1,
                    id: "lock-1".into(),
                    holder: "arn:aws:sts::123456789012:assumed-role/ci-apply/run-77".into(),
                    operation: "apply plan.json".into(),
                    created: "2026-12-07T00:00:00Z".into(),
                    lease_expires: "2026-12-07T01:00:00Z".into(),
                }),
                expired: false,
            }
            .into(),
            StateError::Stale {
                message: "the plan was made against state serial 4 but the state is now at serial 5 (written by another apply since); nothing was executed. Make a new plan.".into(),
            }
            .into(),
            PlanMismatch::NoImage.into(),
            AwsError {
                service: "KMS",
                operation: "Sign",
                code: Some("NotFoundException".into()),
                message: "Key 'arn:aws:kms:us-west-2:123456789012:key/x' does not exist\u{1b}[2J"
                    .into(),
            }
            .into(),
            EngineError::Io {
                path: "plan.json".into(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            },
        ];
        let out: String = errors.iter().map(|e| error_text(&e.to_string())).collect();
        insta::assert_snapshot!(out);
    }
}
