//! One shape for everything a check finds wrong in a file — cluster.yaml's problems, the
//! rendered cloud-configs and stack template, the checks against AWS — and one way to say
//! where it is: `file:line:column:`, the form compilers print and editors jump to.

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
    /// The file's role (`UserDataWorker`), or its name (`cluster.yaml`, `stack-template.json`).
    pub file: String,
    /// 1-based line in the file (the rendered file, for a rendered one).
    pub line: Option<usize>,
    /// 1-based column, when the check knows it.
    pub column: Option<usize>,
    /// Dotted path of the setting (`nodePools[1].name`); empty when the finding is about the
    /// file or a line of it.
    pub field: String,
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
            column: None,
            field: String::new(),
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

    /// The same finding about setting `field`.
    pub fn in_field(self, field: impl Into<String>) -> Finding {
        Finding {
            field: field.into(),
            ..self
        }
    }

    /// The same finding at `column` of its line.
    pub fn at_column(self, column: Option<usize>) -> Finding {
        Finding { column, ..self }
    }

    /// `file:line:column`, as much of it as is known, naming the file `file`.
    pub fn position_in(&self, file: &str) -> String {
        match (self.line, self.column) {
            (Some(line), Some(column)) => format!("{file}:{line}:{column}"),
            (Some(line), None) => format!("{file}:{line}"),
            (None, _) => file.to_string(),
        }
    }

    /// What is wrong, after the setting it is about: `workerCount: expected a whole number`.
    pub fn what(&self) -> String {
        if self.field.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.field, self.message)
        }
    }
}

impl std::fmt::Display for Finding {
    /// `UserDataWorker:4: warning: unrecognized key "x" (template line 4)`;
    /// `cluster.yaml:8:1: error: workerCont: unknown key`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.position_in(&self.file),
            self.severity.as_str(),
            self.what()
        )?;
        if let Some(t) = self.template_line {
            write!(f, " (template line {t})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_finding_says_where_in_one_form() {
        let config = Finding::error("cluster.yaml", Some(8), "unknown key")
            .in_field("workerCont")
            .at_column(Some(1));
        assert_eq!(
            config.to_string(),
            "cluster.yaml:8:1: error: workerCont: unknown key"
        );
        assert_eq!(config.position_in("./cluster.yaml"), "./cluster.yaml:8:1");
        let rendered = Finding {
            template_line: Some(4),
            ..Finding::warning("UserDataWorker", Some(5), "unrecognized key \"x\"")
        };
        assert_eq!(
            rendered.to_string(),
            "UserDataWorker:5: warning: unrecognized key \"x\" (template line 4)"
        );
        assert_eq!(
            Finding::error("stack-template.json", None, "not JSON").to_string(),
            "stack-template.json: error: not JSON"
        );
    }
}
