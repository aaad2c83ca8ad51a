//! `validate`: every finding in cluster.yaml, the rendered cloud-configs and the stack
//! template (file, line, severity, message), before anything reaches AWS; and, online, the
//! external resources the stack integrates with.

pub mod cloudconfig;
pub mod rendered;
pub mod template;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One thing wrong, where it is, and how bad.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The file's role (`UserDataWorker`), or its path (`cluster.yaml`, `stack-template.json`).
    pub file: String,
    /// 1-based line in the rendered file.
    pub line: Option<usize>,
    /// The matching line of the template the file was rendered from, when it can be told.
    pub template_line: Option<usize>,
    pub severity: Severity,
    pub message: String,
}

impl Finding {
    pub fn error(file: &str, line: Option<usize>, message: impl Into<String>) -> Finding {
        Finding {
            file: file.to_string(),
            line,
            template_line: None,
            severity: Severity::Error,
            message: message.into(),
        }
    }

    pub fn warning(file: &str, line: Option<usize>, message: impl Into<String>) -> Finding {
        Finding {
            severity: Severity::Warning,
            ..Finding::error(file, line, message)
        }
    }
}

impl std::fmt::Display for Finding {
    /// The original kube-aws form: `UserDataWorker: line 4: warning: unrecognized key "x"`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: ", self.file)?;
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        write!(f, "{}: {}", self.severity.as_str(), self.message)?;
        if let Some(t) = self.template_line {
            write!(f, " (template line {t})")?;
        }
        Ok(())
    }
}

/// The line of `template` that rendered as `rendered_line`, when exactly one line matches
/// (lines without substitutions render unchanged).
pub fn template_line(template: &str, rendered_line: &str) -> Option<usize> {
    let wanted = rendered_line.trim();
    if wanted.is_empty() {
        return None;
    }
    let mut matches = template
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == wanted);
    match (matches.next(), matches.next()) {
        (Some((i, _)), None) => Some(i + 1),
        _ => None,
    }
}
