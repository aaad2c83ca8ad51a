//! How a command ends: its exit code, as Terraform's (0 success, 1 error, 2 only with
//! `plan --detailed-exitcode`: there are changes), and the one place `error:` is printed.

use std::process::ExitCode;

use super::views;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success,
    /// Any error: bad input, a refusal, a failed or interrupted apply, a usage error.
    Error,
    /// `plan --detailed-exitcode` found changes.
    Changes,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Error => 1,
            Exit::Changes => 2,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}

/// Prints `error: …` to stderr, with the message's control characters escaped, and ends
/// with [`Exit::Error`].
pub fn fail(message: &str) -> Exit {
    eprint!("{}", views::error_text(message));
    Exit::Error
}
