//! `validate`: every finding in cluster.yaml, the rendered cloud-configs and the stack
//! template (file, line, severity, message), before anything reaches AWS; and, online, the
//! external resources the stack integrates with.

pub mod cloudconfig;
pub mod rendered;
pub mod template;

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
