//! What each command prints, as pure functions from the engine's results to text: no I/O, so
//! each view is tested (and snapshot-tested) on its own.

pub mod findings;
pub mod history;
pub mod plan;
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
