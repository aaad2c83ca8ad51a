//! What every command shares at the terminal: the async runtime, Ctrl-C, colour detection, the
//! progress spinner, stdout writes, JSON output and the `yes` prompt.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use crate::engine::EngineError;
use crate::engine::interrupt::Interrupt;

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime can be built")
}

/// Whether this process ignores SIGHUP (started under nohup): tokio's handler would replace it.
#[cfg(unix)]
fn hangup_ignored() -> bool {
    // SAFETY: with a null new action, sigaction only writes the current disposition into
    // `current`, a plain C struct for which all-zero bytes are a valid value.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGHUP, std::ptr::null(), &mut current) == 0
            && current.sa_sigaction == libc::SIG_IGN
    }
}

/// Catches Ctrl-C, SIGTERM and SIGHUP (unless ignored) from now until the process ends, so
/// none kills apply between two steps: the first fires the returned interrupt, each later one
/// is answered, not obeyed (the stack goes on in CloudFormation either way; the lock must
/// still be released). Call inside the runtime, before the lock is taken.
pub fn catch_interrupts() -> Result<Interrupt, EngineError> {
    let (sender, interrupt) = Interrupt::channel();
    let announce = move |count: usize| {
        sender.raise();
        let text = match count {
            1 => {
                "Interrupt received: apply stops at its next safe point (never in the middle of a stack CloudFormation is changing), records the run as interrupted and releases the lock."
            }
            _ => {
                "Already stopping: the stack keeps going in CloudFormation whatever happens here; apply is recording the interruption and releasing the lock (killing it now would leave the lock for `kube-aws state unlock`)."
            }
        };
        // Never a panic: after a Ctrl-C in `apply | tee log`, stderr may be a closed pipe.
        let _ = writeln!(std::io::stderr(), "{text}");
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind| {
            signal(kind).map_err(|source| EngineError::Io {
                path: PathBuf::from("<signal handler>"),
                source,
            })
        };
        // SIGHUP too: a closed terminal or a dropped SSH session must not kill apply mid-run.
        // Under nohup it stays ignored: the user asked apply to outlive the terminal.
        let (mut int, mut term) = (
            listen(SignalKind::interrupt())?,
            listen(SignalKind::terminate())?,
        );
        let mut hangup = match hangup_ignored() {
            true => None,
            false => Some(listen(SignalKind::hangup())?),
        };
        tokio::spawn(async move {
            for count in 1.. {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                    Some(_) = async {
                        match hangup.as_mut() {
                            Some(signal) => signal.recv().await,
                            None => std::future::pending().await,
                        }
                    } => {}
                }
                announce(count);
            }
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        for count in 1.. {
            if tokio::signal::ctrl_c().await.is_err() {
                return;
            }
            announce(count);
        }
    });
    Ok(interrupt)
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
            ApplyProgress::Lines => {
                let _ = writeln!(std::io::stderr(), "{}", crate::cli::views::printable(step));
            }
        }
    }

    pub fn line(&self, text: &str) {
        let text = crate::cli::views::printable(text);
        match self {
            ApplyProgress::Spinner(bar) => bar.println(text),
            ApplyProgress::Lines => {
                let _ = writeln!(std::io::stderr(), "{text}");
            }
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

/// `value` as one line of JSON on stdout, flushed at once: a tool reading apply's events sees
/// each as it happens.
pub fn print_json_line<T: serde::Serialize>(value: &T) -> Result<(), EngineError> {
    let mut line = serde_json::to_vec(value).map_err(|e| EngineError::Output(e.to_string()))?;
    line.push(b'\n');
    write_stdout(&line)
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
