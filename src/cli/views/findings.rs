//! `validate`'s views: findings grouped by file, as coloured text or as Markdown for a pull
//! request comment.

use std::fmt::Write;

use super::{Palette, markdown_cell};

/// `validate`: findings grouped by file, coloured by severity, and a summary line.
pub fn findings_text(findings: &[crate::finding::Finding], color: bool) -> String {
    use crate::finding::Severity;
    let p = Palette::new(color);
    let mut out = String::new();
    let mut files: Vec<&str> = Vec::new();
    for f in findings {
        if !files.contains(&f.file.as_str()) {
            files.push(&f.file);
        }
    }
    for file in &files {
        for f in findings.iter().filter(|f| f.file == *file) {
            let style = match f.severity {
                Severity::Error => &p.remove,
                Severity::Warning => &p.change,
            };
            // A message quotes what the files say (a key, a value): one finding stays one
            // line, and its control characters cannot drive the terminal.
            let line = super::one_line(&f.to_string());
            let _ = writeln!(out, "{}", style.apply_to(line));
        }
        out.push('\n');
    }
    let (errors, warnings) = counts(findings);
    if findings.is_empty() {
        let _ = writeln!(out, "{}", p.add.apply_to("Validation OK"));
    } else {
        let _ = writeln!(
            out,
            "{}",
            p.bold.apply_to(format!(
                "Validation: {errors} error(s), {warnings} warning(s) in {} file(s).",
                files.len()
            ))
        );
    }
    out
}

/// How many findings are errors, and how many warnings.
pub fn counts(findings: &[crate::finding::Finding]) -> (usize, usize) {
    let errors = findings
        .iter()
        .filter(|f| f.severity == crate::finding::Severity::Error)
        .count();
    (errors, findings.len() - errors)
}

/// `validate --format markdown`: a summary and one table row per finding, for a pull request
/// comment (a message's `|` and line breaks cannot break the table).
pub fn findings_markdown(findings: &[crate::finding::Finding]) -> String {
    let (errors, warnings) = counts(findings);
    let mut out = String::from("### kube-aws validate\n\n");
    if findings.is_empty() {
        out.push_str("**Validation OK.**\n");
        return out;
    }
    let _ = writeln!(
        out,
        "**Validation: {errors} error(s), {warnings} warning(s).**\n"
    );
    out.push_str("| | File | Line | Finding |\n|---|---|---:|---|\n");
    for f in findings {
        let line = match (f.line, f.template_line) {
            (Some(line), Some(t)) => format!("{line} (template {t})"),
            (Some(line), None) => line.to_string(),
            (None, _) => String::new(),
        };
        let _ = writeln!(
            out,
            "| {} | <code>{}</code> | {line} | {} |",
            f.severity.as_str(),
            markdown_cell(&f.file),
            markdown_cell(&f.what())
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Finding;

    #[test]
    fn findings_markdown_snapshot() {
        let findings = [
            Finding::error(
                "cluster.yaml",
                Some(12),
                "subnets[1].instanceCIDR: 10.0.0.0/24 overlaps subnets[0] | line two\nand a third",
            ),
            Finding::warning("UserDataWorker", None, "unrecognized key \"x\""),
            Finding::error(
                "user`data",
                Some(3),
                "unrecognized key \"<!--\": see [here](https://x) @team **now**\rmore",
            ),
        ];
        insta::assert_snapshot!(findings_markdown(&findings));
        insta::assert_snapshot!("findings_markdown_ok", findings_markdown(&[]));
        insta::assert_snapshot!("findings_text", findings_text(&findings, false));
    }
}
