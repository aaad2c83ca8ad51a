//! `apply`: executes exactly the reviewed plan, in DESIGN's nine steps, each safe to crash
//! after: verify the plan, lock, refuse a stale plan, audit `started`, check the change set,
//! execute and follow it, apply the records, write the state, audit the result and unlock.

pub(super) mod checks;
mod failure;
mod lease;
mod next_state;
mod records;
mod run;
mod stacks;

use std::path::Path;

use time::OffsetDateTime;

use super::backend::Backend;
use super::interrupt::Interrupt;
use super::{AwsOptions, EngineError};
use crate::audit::AuditResult;
use crate::aws::cloudformation::StackEvent;
use crate::config::ClusterConfig;
use crate::planfile::{self, Plan, PlanKind};
use crate::state::StateError;
use crate::state::lock::Locker;
use crate::state::store::Loaded;
use lease::{Lease, lease_length};
use run::{Actor, Run};

/// What apply reports while it works, for the progress display.
pub enum ApplyEvent<'a> {
    Step(&'a str),
    Stack(&'a StackEvent),
}

pub type Observer<'a> = &'a mut dyn FnMut(ApplyEvent<'_>);

/// How an apply ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOutcome {
    pub result: AuditResult,
    pub serial_before: u64,
    pub serial_after: u64,
    /// What went wrong, for failed, rolled back and interrupted applies.
    pub message: Option<String>,
    pub audit_seq: u64,
    /// Where the cluster's API answers, after an apply (not a destroy).
    pub api_url: Option<String>,
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Reads a plan file and checks its hash (step 1 begins here).
pub fn read_plan_file(path: &Path) -> Result<Plan, EngineError> {
    read_plan(&path.display().to_string(), &super::read_file(path)?)
}

/// Reads and verifies a plan file (step 1).
fn read_plan(origin: &str, bytes: &[u8]) -> Result<Plan, EngineError> {
    Ok(planfile::decode(origin, bytes)?)
}

/// Applies `plan`. `interrupt` firing (Ctrl-C) stops the wait for a stack and the start of
/// the next, never a stack CloudFormation is changing.
pub async fn apply(
    dir: &Path,
    aws: &AwsOptions,
    plan: &Plan,
    command: &str,
    interrupt: &Interrupt,
    observer: Observer<'_>,
) -> Result<ApplyOutcome, EngineError> {
    let config = ClusterConfig::load(dir)?;
    if plan.offline {
        return Err(EngineError::OfflinePlan);
    }
    if plan.preview {
        return Err(EngineError::PreviewPlan);
    }
    if plan.cluster_name != config.cluster_name {
        return Err(EngineError::PlanForOtherCluster {
            planned: plan.cluster_name.clone(),
            configured: config.cluster_name.clone(),
        });
    }
    let context = aws.context(&config).await?;
    let backend = Backend::open(dir, &config, &context);
    // Step 1 ends with the signature: nothing else is trusted from a plan that fails it. Which
    // key must have signed it depends on the state, so the state is read (and held to the
    // audit log) first; under the lock, step 3 finds it unchanged or refuses.
    observer(ApplyEvent::Step("verifying the plan's signature"));
    let current = backend.load(&config).await?;
    if let Some(why) = staleness(plan, current.as_ref()) {
        return Err(stale(
            applied_already(&backend, plan, current.as_ref())
                .await
                .unwrap_or(why),
        ));
    }
    let anchored = super::anchor::anchor(
        &backend,
        current.as_ref(),
        super::anchor::Signatures::Verify,
    )
    .await?
    .map_err(|why| EngineError::StateNotInLog {
        location: backend.store.location(),
        why,
    })?;
    // The state an earlier apply wrote without closing its run, as the log found it then.
    let unclosed = match (anchored, current.as_ref()) {
        (super::anchor::Anchor::UnclosedApply(seq), Some(state)) => {
            Some((seq, state.sha256.clone()))
        }
        _ => None,
    };
    let prior = current.as_ref().map(|l| &l.state);
    super::signing::verify_signature(&config, plan, &context.kms(), prior).await?;
    // A signature says who made the plan, not that it is what this (merged) directory asks
    // for: the stacks and assets must be what the directory renders with the plan's own AMI
    // and certificates (checked in step 3, after what the plan's new_state must hold).
    let rendered = match plan.kind == PlanKind::Apply {
        true => Some(super::plan::render_for_apply(
            dir,
            &config,
            prior,
            &plan.new_state,
        )?),
        false => None,
    };
    let actor = context
        .actor()
        .await
        .map_err(EngineError::ActorUnverified)?;

    // Step 2: the lock. From here on, every path releases it.
    if interrupt.fired() {
        return Err(EngineError::InterruptedBeforeLock);
    }
    observer(ApplyEvent::Step("taking the state lock"));
    let length = lease_length();
    let lock = backend
        .store
        .locker
        .lock(&actor, command, now(), length)
        .await?;
    let lease = Lease::new(&backend, lock, length);
    // Applied after the merge, the run knows no pull request; the plan, made in it, does.
    let mut provenance = super::provenance::collect(dir);
    if provenance.pull_request.is_none() {
        provenance.pull_request = plan
            .provenance
            .as_ref()
            .and_then(|p| p.pull_request.clone());
    }
    let actor = Actor {
        arn: &actor,
        command,
        provenance: &provenance,
    };
    let outcome = Run::new(
        &config,
        &context,
        &backend,
        &lease,
        (plan, rendered.as_ref()),
        actor,
        interrupt,
        observer,
    )
    .run(unclosed)
    .await;
    let held = lease.current();
    let released = super::backend::tried_again(
        || backend.store.locker.unlock(&held),
        |e| !matches!(e, StateError::LockLost { .. }),
    )
    .await;
    let outcome = outcome?;
    match released {
        // Someone removed it mid-run: the outcome (and its audit entry) already says so.
        Err(StateError::LockLost { .. }) if outcome.result != AuditResult::Succeeded => {}
        other => other?,
    }
    Ok(outcome)
}

fn stale(why: String) -> EngineError {
    EngineError::State(StateError::Stale {
        message: format!("{why}; nothing was executed. Make a new plan."),
    })
}

/// When the state is the one this very plan wrote (applied twice, or its apply finished
/// while CI retried), says so: the state moved, but not because of another apply.
async fn applied_already(
    backend: &Backend,
    plan: &Plan,
    current: Option<&Loaded>,
) -> Option<String> {
    let loaded = current?;
    let head = loaded.state.audit_head.as_ref()?;
    let entry = backend.audit.read(head.seq).await.ok()??;
    (entry.plan_sha256.as_deref() == Some(plan.plan_sha256.as_str())).then(|| {
        format!(
            "this plan was already applied: state serial {} is what it wrote (audit entry {}, `kube-aws history show {}`)",
            loaded.state.serial, head.seq, head.seq
        )
    })
}

/// Says what changed since the plan was made, or `None` if the state is the one it was made
/// against (step 3).
fn staleness(plan: &Plan, current: Option<&Loaded>) -> Option<String> {
    let prior = &plan.prior;
    match current {
        None if prior.serial == 0 && prior.lineage.is_none() => None,
        None => Some(format!(
            "the plan was made against state serial {} but there is no state now",
            prior.serial
        )),
        Some(loaded) => {
            if prior.lineage.as_deref() != Some(loaded.state.lineage.as_str()) {
                Some(match &prior.lineage {
                    None => format!(
                        "the plan was made before any state existed; the state is now at serial {} (lineage {})",
                        loaded.state.serial, loaded.state.lineage
                    ),
                    Some(l) => format!(
                        "the plan is for lineage {l} but the state's lineage is {}",
                        loaded.state.lineage
                    ),
                })
            } else if prior.serial != loaded.state.serial
                || prior.state_sha256.as_deref() != Some(loaded.sha256.as_str())
            {
                Some(format!(
                    "the plan was made against state serial {} but the state is now at serial {} (written by another apply since)",
                    prior.serial, loaded.state.serial
                ))
            } else {
                None
            }
        }
    }
}
