//! CloudFormation's status words as types, so the engine asks a status what it means
//! (`is_busy`, `ending`, `is_executable`) instead of comparing strings. Only a word newer than
//! this build is read by AWS's naming, here and nowhere else.

use std::fmt;

/// An enum of AWS's words, one variant each, and `Other` for a word this version does not
/// know (shown as AWS wrote it, and treated as in progress: never as done or failed).
macro_rules! aws_words {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $word:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum $name {
            $($variant,)+
            Other(String),
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $word,)+
                    $name::Other(word) => word,
                }
            }
        }

        impl From<&str> for $name {
            fn from(word: &str) -> $name {
                match word {
                    $($word => $name::$variant,)+
                    other => $name::Other(other.to_string()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

aws_words! {
    /// A stack's status (`DescribeStacks`).
    StackStatus {
        CreateInProgress = "CREATE_IN_PROGRESS",
        CreateFailed = "CREATE_FAILED",
        CreateComplete = "CREATE_COMPLETE",
        RollbackInProgress = "ROLLBACK_IN_PROGRESS",
        RollbackFailed = "ROLLBACK_FAILED",
        RollbackComplete = "ROLLBACK_COMPLETE",
        DeleteInProgress = "DELETE_IN_PROGRESS",
        DeleteFailed = "DELETE_FAILED",
        DeleteComplete = "DELETE_COMPLETE",
        UpdateInProgress = "UPDATE_IN_PROGRESS",
        UpdateCompleteCleanupInProgress = "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
        UpdateComplete = "UPDATE_COMPLETE",
        UpdateFailed = "UPDATE_FAILED",
        UpdateRollbackInProgress = "UPDATE_ROLLBACK_IN_PROGRESS",
        UpdateRollbackFailed = "UPDATE_ROLLBACK_FAILED",
        UpdateRollbackCompleteCleanupInProgress = "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS",
        UpdateRollbackComplete = "UPDATE_ROLLBACK_COMPLETE",
        ReviewInProgress = "REVIEW_IN_PROGRESS",
        ImportInProgress = "IMPORT_IN_PROGRESS",
        ImportComplete = "IMPORT_COMPLETE",
        ImportRollbackInProgress = "IMPORT_ROLLBACK_IN_PROGRESS",
        ImportRollbackFailed = "IMPORT_ROLLBACK_FAILED",
        ImportRollbackComplete = "IMPORT_ROLLBACK_COMPLETE",
    }
}

/// How a stack's change ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackEnding {
    Succeeded,
    RolledBack,
    Failed,
}

impl StackStatus {
    /// Only a CREATE change set made it: an empty stack waiting for its first change set.
    pub fn is_review(&self) -> bool {
        *self == StackStatus::ReviewInProgress
    }

    /// Its creation failed and was rolled back: such a stack can only be deleted.
    pub fn failed_create(&self) -> bool {
        matches!(
            self,
            StackStatus::RollbackComplete | StackStatus::RollbackFailed
        )
    }

    /// CloudFormation is changing it: no change set can be made or executed until it ends.
    pub fn is_busy(&self) -> bool {
        use StackStatus::*;
        match self {
            CreateInProgress
            | RollbackInProgress
            | DeleteInProgress
            | UpdateInProgress
            | UpdateCompleteCleanupInProgress
            | UpdateRollbackInProgress
            | UpdateRollbackCompleteCleanupInProgress
            | ImportInProgress
            | ImportRollbackInProgress => true,
            CreateFailed
            | RollbackFailed
            | RollbackComplete
            | DeleteFailed
            | DeleteComplete
            | UpdateComplete
            | UpdateFailed
            | UpdateRollbackFailed
            | UpdateRollbackComplete
            | ReviewInProgress
            | ImportComplete
            | ImportRollbackFailed
            | ImportRollbackComplete
            | CreateComplete => false,
            // A word newer than this build: AWS's naming says whether it is a change going on.
            Other(word) => word.ends_with("_IN_PROGRESS"),
        }
    }

    /// How the last change ended, or `None` while it goes on. A word newer than this build
    /// is read by AWS's naming (`…ROLLBACK_COMPLETE`, `…_FAILED`), so that apply never waits
    /// forever on a final status it does not know; an unknown `…_COMPLETE` is not taken for
    /// success.
    pub fn ending(&self) -> Option<StackEnding> {
        use StackStatus::*;
        match self {
            CreateComplete | UpdateComplete | ImportComplete | DeleteComplete => {
                Some(StackEnding::Succeeded)
            }
            RollbackComplete | UpdateRollbackComplete | ImportRollbackComplete => {
                Some(StackEnding::RolledBack)
            }
            CreateFailed | RollbackFailed | DeleteFailed | UpdateFailed | UpdateRollbackFailed
            | ImportRollbackFailed => Some(StackEnding::Failed),
            CreateInProgress
            | RollbackInProgress
            | DeleteInProgress
            | UpdateInProgress
            | UpdateCompleteCleanupInProgress
            | UpdateRollbackInProgress
            | UpdateRollbackCompleteCleanupInProgress
            | ReviewInProgress
            | ImportInProgress
            | ImportRollbackInProgress => None,
            Other(word) if word.ends_with("ROLLBACK_COMPLETE") => Some(StackEnding::RolledBack),
            Other(word) if word.ends_with("_FAILED") => Some(StackEnding::Failed),
            Other(_) => None,
        }
    }
}

aws_words! {
    /// Whether a change set is made (`DescribeChangeSet`'s `Status`).
    ChangeSetStatus {
        CreatePending = "CREATE_PENDING",
        CreateInProgress = "CREATE_IN_PROGRESS",
        CreateComplete = "CREATE_COMPLETE",
        DeletePending = "DELETE_PENDING",
        DeleteInProgress = "DELETE_IN_PROGRESS",
        DeleteComplete = "DELETE_COMPLETE",
        DeleteFailed = "DELETE_FAILED",
        Failed = "FAILED",
    }
}

aws_words! {
    /// Whether a change set can run, runs or ran (`DescribeChangeSet`'s `ExecutionStatus`).
    ExecutionStatus {
        Unavailable = "UNAVAILABLE",
        Available = "AVAILABLE",
        ExecuteInProgress = "EXECUTE_IN_PROGRESS",
        ExecuteComplete = "EXECUTE_COMPLETE",
        ExecuteFailed = "EXECUTE_FAILED",
        Obsolete = "OBSOLETE",
    }
}

aws_words! {
    /// A stack event's status: a resource's, or for the stack itself one of
    /// [`StackStatus`]'s words (those it does not list are `Other`).
    ResourceStatus {
        CreateInProgress = "CREATE_IN_PROGRESS",
        CreateFailed = "CREATE_FAILED",
        CreateComplete = "CREATE_COMPLETE",
        DeleteInProgress = "DELETE_IN_PROGRESS",
        DeleteFailed = "DELETE_FAILED",
        DeleteComplete = "DELETE_COMPLETE",
        DeleteSkipped = "DELETE_SKIPPED",
        UpdateInProgress = "UPDATE_IN_PROGRESS",
        UpdateFailed = "UPDATE_FAILED",
        UpdateComplete = "UPDATE_COMPLETE",
        ImportFailed = "IMPORT_FAILED",
        ImportComplete = "IMPORT_COMPLETE",
        ImportInProgress = "IMPORT_IN_PROGRESS",
        ImportRollbackInProgress = "IMPORT_ROLLBACK_IN_PROGRESS",
        ImportRollbackFailed = "IMPORT_ROLLBACK_FAILED",
        ImportRollbackComplete = "IMPORT_ROLLBACK_COMPLETE",
        ExportFailed = "EXPORT_FAILED",
        ExportComplete = "EXPORT_COMPLETE",
        ExportInProgress = "EXPORT_IN_PROGRESS",
        ExportRollbackInProgress = "EXPORT_ROLLBACK_IN_PROGRESS",
        ExportRollbackFailed = "EXPORT_ROLLBACK_FAILED",
        ExportRollbackComplete = "EXPORT_ROLLBACK_COMPLETE",
        UpdateRollbackInProgress = "UPDATE_ROLLBACK_IN_PROGRESS",
        UpdateRollbackComplete = "UPDATE_ROLLBACK_COMPLETE",
        UpdateRollbackFailed = "UPDATE_ROLLBACK_FAILED",
        RollbackInProgress = "ROLLBACK_IN_PROGRESS",
        RollbackComplete = "ROLLBACK_COMPLETE",
        RollbackFailed = "ROLLBACK_FAILED",
    }
}

impl ResourceStatus {
    /// The event reports a failure: apply shows it as the reason the stack failed.
    pub fn is_failure(&self) -> bool {
        use ResourceStatus::*;
        match self {
            // A word newer than this build, read by AWS's naming.
            Other(word) => word.ends_with("_FAILED"),
            known => matches!(
                known,
                CreateFailed
                    | DeleteFailed
                    | UpdateFailed
                    | ImportFailed
                    | ImportRollbackFailed
                    | ExportFailed
                    | ExportRollbackFailed
                    | UpdateRollbackFailed
                    | RollbackFailed
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudformation::types as sdk;

    /// Every word the SDK knows has a variant here, spelled as the SDK spells it: a word added
    /// to CloudFormation (and the SDK) fails this test until it is classified.
    #[test]
    fn every_word_the_sdk_knows_is_a_variant_and_round_trips() {
        fn check<W: for<'a> From<&'a str> + fmt::Display>(
            words: &[&str],
            is_other: impl Fn(&W) -> bool,
        ) {
            for word in words {
                let parsed = W::from(word);
                assert!(!is_other(&parsed), "{word} has no variant");
                assert_eq!(parsed.to_string(), *word);
            }
        }
        check::<StackStatus>(sdk::StackStatus::values(), |w| {
            matches!(w, StackStatus::Other(_))
        });
        check::<ChangeSetStatus>(sdk::ChangeSetStatus::values(), |w| {
            matches!(w, ChangeSetStatus::Other(_))
        });
        check::<ExecutionStatus>(sdk::ExecutionStatus::values(), |w| {
            matches!(w, ExecutionStatus::Other(_))
        });
        check::<ResourceStatus>(sdk::ResourceStatus::values(), |w| {
            matches!(w, ResourceStatus::Other(_))
        });
        assert_eq!(
            StackStatus::from("SOMETHING_NEW"),
            StackStatus::Other("SOMETHING_NEW".into())
        );
    }

    /// The classification by AWS's naming: `_IN_PROGRESS` is busy (but review), `_COMPLETE`
    /// and `_FAILED` end a change, rollbacks end as rolled back. The names are only the
    /// test's oracle; the product never reads them.
    #[test]
    fn stack_statuses_are_classified_as_their_names_say() {
        for word in sdk::StackStatus::values() {
            let status = StackStatus::from(*word);
            let review = *word == "REVIEW_IN_PROGRESS";
            assert_eq!(status.is_review(), review, "{word}");
            assert_eq!(
                status.is_busy(),
                word.ends_with("_IN_PROGRESS") && !review,
                "{word}"
            );
            let expected = if word.ends_with("_IN_PROGRESS") {
                None
            } else if word.ends_with("ROLLBACK_COMPLETE") {
                Some(StackEnding::RolledBack)
            } else if word.ends_with("_COMPLETE") {
                Some(StackEnding::Succeeded)
            } else if word.ends_with("_FAILED") {
                Some(StackEnding::Failed)
            } else {
                panic!("{word} is neither in progress, complete nor failed")
            };
            assert_eq!(status.ending(), expected, "{word}");
            assert_eq!(
                status.failed_create(),
                matches!(*word, "ROLLBACK_COMPLETE" | "ROLLBACK_FAILED"),
                "{word}"
            );
        }
        for word in sdk::ResourceStatus::values() {
            assert_eq!(
                ResourceStatus::from(*word).is_failure(),
                word.ends_with("_FAILED"),
                "{word}"
            );
        }
        // Words newer than this build: read by their naming, never taken for success.
        assert!(StackStatus::Other("X_IN_PROGRESS".into()).is_busy());
        assert_eq!(StackStatus::Other("X_COMPLETE".into()).ending(), None);
        assert_eq!(
            StackStatus::Other("X_ROLLBACK_COMPLETE".into()).ending(),
            Some(StackEnding::RolledBack)
        );
        assert_eq!(
            StackStatus::Other("X_FAILED".into()).ending(),
            Some(StackEnding::Failed)
        );
        assert!(ResourceStatus::Other("X_FAILED".into()).is_failure());
    }
}
