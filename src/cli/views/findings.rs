//! `validate`'s text view: findings grouped by file, coloured by severity.

use std::fmt::Write;

use super::Palette;

/// `validate`: findings grouped by file, coloured by severity, and a summary line.
pub fn findings_text(findings: &[crate::validate::Finding], color: bool) -> String {
    use crate::validate::Severity;
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
            let _ = writeln!(out, "{}", style.apply_to(f.to_string()));
        }
        out.push('\n');
    }
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let warnings = findings.len() - errors;
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
