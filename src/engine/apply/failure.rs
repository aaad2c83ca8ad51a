//! Why an apply stopped once its `started` entry was written, as a value: each kind closes the
//! run with its audit result, and the message says what happened and what to do next.

use crate::audit::AuditResult;
use crate::engine::EngineError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ApplyFailure {
    /// A check before a change found the run may not make it (the change set is not the
    /// reviewed one, the lock is gone): that change was not made.
    Refused(String),
    /// AWS failed a request, or a stack ended failed.
    Failed(String),
    /// CloudFormation rolled the stack back.
    RolledBack(String),
    /// Ctrl-C or SIGTERM, between two stacks or while waiting on one.
    Interrupted(String),
    /// The lock was removed or taken over before the state was written: the state is left to
    /// whoever holds it now.
    LockLost(String),
}

impl ApplyFailure {
    pub(super) fn result(&self) -> AuditResult {
        match self {
            ApplyFailure::Refused(_) | ApplyFailure::Failed(_) => AuditResult::Failed,
            ApplyFailure::RolledBack(_) => AuditResult::RolledBack,
            ApplyFailure::Interrupted(_) => AuditResult::Interrupted,
            ApplyFailure::LockLost(_) => AuditResult::LockLost,
        }
    }

    pub(super) fn into_message(self) -> String {
        match self {
            ApplyFailure::Refused(m)
            | ApplyFailure::Failed(m)
            | ApplyFailure::RolledBack(m)
            | ApplyFailure::Interrupted(m)
            | ApplyFailure::LockLost(m) => m,
        }
    }
}

/// An error of the engine (an AWS request, a store) after `started`: the run fails with it.
impl From<EngineError> for ApplyFailure {
    fn from(e: EngineError) -> ApplyFailure {
        ApplyFailure::Failed(e.to_string())
    }
}

/// Why an interrupt stopped apply before a change, when no change of the plan had started.
pub(super) fn nothing_started(what: &str) -> String {
    format!(
        "interrupted before {what}; nothing of this plan was started, so apply it again or plan again"
    )
}

impl From<crate::aws::AwsError> for ApplyFailure {
    fn from(e: crate::aws::AwsError) -> ApplyFailure {
        ApplyFailure::Failed(e.to_string())
    }
}
