//! What every command shares at the terminal: the async runtime, colour detection, the
//! progress spinner, stdout writes, JSON output and the `yes` prompt.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use crate::engine::EngineError;

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime can be built")
}

/// Colour only on a terminal, and never with NO_COLOR set.
pub fn stdout_color() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
}

/// Apply's progress on stderr: a spinner with the step and the stack's events above it on a
/// terminal; elsewhere (a CI log) each step and event as a plain line as it happens, which a
/// spinner would not draw at all. Text from CloudFormation is printed escaped.
pub enum ApplyProgress {
    Spinner(indicatif::ProgressBar),
    Lines,
}

impl ApplyProgress {
    pub fn new() -> ApplyProgress {
        match std::io::stderr().is_terminal() {
            true => ApplyProgress::Spinner(spinner()),
            false => ApplyProgress::Lines,
        }
    }

    pub fn step(&self, step: &str) {
        match self {
            ApplyProgress::Spinner(bar) => bar.set_message(step.to_string()),
            ApplyProgress::Lines => eprintln!("{}", crate::cli::views::printable(step)),
        }
    }

    pub fn line(&self, text: &str) {
        let text = crate::cli::views::printable(text);
        match self {
            ApplyProgress::Spinner(bar) => bar.println(text),
            ApplyProgress::Lines => eprintln!("{text}"),
        }
    }

    pub fn finish(&self) {
        if let ApplyProgress::Spinner(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// A spinner on stderr that shows the engine's current step.
pub fn spinner() -> indicatif::ProgressBar {
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

pub fn write_stdout(bytes: &[u8]) -> Result<(), EngineError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|source| EngineError::Io {
            path: PathBuf::from("<stdout>"),
            source,
        })
}

/// Canonical JSON (sorted keys), so output diffs cleanly between runs.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<(), EngineError> {
    let bytes = crate::hash::canonical_json_pretty(value)
        .map_err(|e| EngineError::Output(e.to_string()))?;
    write_stdout(&bytes)
}

/// Asks for `yes` on the terminal; refuses without one.
pub fn confirm(what: &str) -> Result<bool, EngineError> {
    if !std::io::stdin().is_terminal() {
        return Err(EngineError::NeedsConfirmation {
            what: what.to_string(),
        });
    }
    eprint!("Do you want to {what}? Only 'yes' will be accepted: ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|source| EngineError::Io {
            path: PathBuf::from("<stdin>"),
            source,
        })?;
    Ok(answer.trim() == "yes")
}
