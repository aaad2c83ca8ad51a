//! Apply's work on CloudFormation: the checks of every change set and template before the
//! first change (step 5), and starting, deleting and following stacks (step 6).

use std::collections::BTreeMap;

use super::ApplyEvent;
use super::failure::ApplyFailure;
use super::run::Run;
use crate::aws::cloudformation::watch::{self, Followed, PollSchedule};
use crate::aws::cloudformation::{StackDescription, StackEnding, StackEvent, StackService};
use crate::config::ClusterConfig;
use crate::engine::EngineError;
use crate::hash::{canonical_json_pretty, sha256_hex};
use crate::planfile::{self, Action, Plan, PlanKind};

/// Step 5: the change set must still be there, unexecuted, with exactly the reviewed template.
pub(super) async fn check_change_set<C: StackService>(
    cfn: &C,
    stack: &str,
    expected_stack_id: Option<&String>,
    expected_template_sha256: &str,
    change_set: &str,
) -> Result<(), ApplyFailure> {
    let described = cfn
        .describe_change_set(stack, change_set)
        .await
        .map_err(|e| {
            ApplyFailure::Refused(format!(
                "change set {change_set} is gone or unreadable ({e}); nothing was executed"
            ))
        })?;
    // A stack's ARN names it: `arn:…:stack/NAME/UUID`.
    let on_named_stack = described
        .stack_id
        .as_deref()
        .is_some_and(|id| id.contains(&format!(":stack/{stack}/")));
    if !on_named_stack {
        return Err(ApplyFailure::Refused(format!(
            "change set {change_set} belongs to stack {}, not to {stack}; nothing was executed",
            described.stack_id.as_deref().unwrap_or("(unknown)")
        )));
    }
    if let Some(expected) = expected_stack_id
        && described.stack_id.as_ref() != Some(expected)
    {
        return Err(ApplyFailure::Refused(format!(
            "change set {change_set} belongs to stack {}, not the planned {expected}; nothing was executed",
            described.stack_id.as_deref().unwrap_or("(unknown)")
        )));
    }
    if !described.is_executable() {
        return Err(ApplyFailure::Refused(format!(
            "change set {change_set} is {} / {}, not AVAILABLE; nothing was executed. Make a new plan.",
            described.status, described.execution_status
        )));
    }
    let body = cfn
        .get_template(stack, Some(change_set))
        .await
        .map_err(|e| {
            ApplyFailure::Refused(format!(
                "cannot read the template of change set {change_set}: {e}; nothing was executed"
            ))
        })?;
    let actual = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| canonical_json_pretty(&v).ok())
        .map(sha256_hex)
        .unwrap_or_else(|| sha256_hex(&body));
    let expected = expected_template_sha256;
    if actual != expected {
        return Err(ApplyFailure::Refused(format!(
            "change set {change_set} holds a template hashing to {actual}, not the reviewed {expected}; nothing was executed"
        )));
    }
    Ok(())
}

/// Step 5 for the pool stacks: each is this cluster's by name, a pool stack is deleted only
/// as the state records it, a change set made at plan time is still there with the reviewed
/// template on the reviewed stack, and a template apply makes a change set from hashes to
/// what was reviewed.
pub(super) async fn check_pool_stacks<C: StackService>(
    cfn: &C,
    config: &ClusterConfig,
    plan: &Plan,
    recorded: Option<&BTreeMap<String, crate::state::StackState>>,
) -> Result<(), ApplyFailure> {
    for pool in &plan.pool_stacks {
        let name = &pool.stack.name;
        let recorded = recorded.and_then(|r| r.get(&pool.pool));
        let expected_name = match (pool.stack.action, recorded) {
            (Action::Delete, Some(r)) => r.name.clone(),
            // One an apply made but did not record (it failed before writing the state).
            (Action::Delete, None) if plan.kind == PlanKind::Destroy => {
                config.pool_stack_name(&pool.pool)
            }
            (Action::Delete, None) => {
                return Err(ApplyFailure::Refused(format!(
                    "the plan deletes stack {name}, which the state does not record; nothing was executed"
                )));
            }
            _ => config.pool_stack_name(&pool.pool),
        };
        if *name != expected_name {
            return Err(ApplyFailure::Refused(format!(
                "the plan names stack {name} for node pool {}, not {expected_name}; nothing was executed",
                pool.pool
            )));
        }
        let expected = pool.stack.template_sha256.clone().unwrap_or_default();
        if let Some(change_set) = &pool.stack.change_set_arn
            && pool.stack.action != Action::Delete
        {
            let recorded_id = recorded.and_then(|r| r.id.clone());
            check_change_set(cfn, name, recorded_id.as_ref(), &expected, change_set).await?;
        } else if pool.change_set_at_apply() {
            let template = pool.template.as_deref().unwrap_or_default();
            if sha256_hex(template) != expected {
                return Err(ApplyFailure::Refused(format!(
                    "the plan's template for stack {name} does not hash to the reviewed {expected}; nothing was executed"
                )));
            }
        }
    }
    Ok(())
}

/// How a followed stack ended.
pub(super) enum StackOutcome {
    Done(Option<StackDescription>),
    Failed(ApplyFailure),
    Interrupted,
}

/// A followed stack's end as a success (its description) or why the run stops.
pub(super) fn outcome(
    followed: Result<StackOutcome, EngineError>,
    stack: &str,
) -> Result<Option<StackDescription>, ApplyFailure> {
    match followed? {
        StackOutcome::Done(description) => Ok(description),
        StackOutcome::Failed(failure) => Err(failure),
        StackOutcome::Interrupted => Err(ApplyFailure::Interrupted(format!(
            "interrupted while waiting; stack {stack} continues in CloudFormation and `kube-aws status` follows it"
        ))),
    }
}

/// How a pool stack's change started.
pub(super) enum PoolStart {
    /// Its change set is executing; follow it from this event.
    Executing {
        last_event: Option<String>,
        parameters: BTreeMap<String, String>,
    },
    /// The stack already runs the reviewed template (a change set made now found nothing).
    AlreadyApplied {
        id: Option<String>,
        parameters: BTreeMap<String, String>,
    },
}

impl Run<'_> {
    /// Deletes a stack by its id (or name) and follows it until it is gone.
    pub(super) async fn delete_stack(&mut self, target: &str) -> Result<(), ApplyFailure> {
        let Some(stack) = self.cfn.describe_stack(target).await? else {
            return Ok(());
        };
        let id = stack.id;
        (self.observer)(ApplyEvent::Step(&format!("deleting stack {id}")));
        let last = self.last_event_id(&id).await;
        if let Some(why) = self.lease.lost_before_change().await {
            return Err(ApplyFailure::Refused(why));
        }
        self.cfn.delete_stack(&id).await?;
        outcome(self.follow(&id, last).await, &id).map(|_| ())
    }

    /// Starts one pool stack's creation or update after the cluster stack: executes the reviewed
    /// change set, or makes it now from the reviewed template (checked against its hash) with the
    /// parameters the cluster stack's resources give.
    pub(super) async fn start_pool_stack(
        &mut self,
        pool: &planfile::PoolStackChange,
        cluster_resources: &BTreeMap<String, String>,
        recorded_id: Option<&str>,
    ) -> Result<PoolStart, ApplyFailure> {
        use crate::engine::plan::stack;
        let (config, plan) = (self.config, self.plan);
        let failed = |e: &dyn std::fmt::Display| ApplyFailure::Failed(e.to_string());
        let refused = |why: String| ApplyFailure::Refused(why);
        let stack_name = &pool.stack.name;
        let expected = pool.stack.template_sha256.clone().unwrap_or_default();
        let parameters =
            stack::pool_parameters(&pool.parameters, cluster_resources).map_err(|e| failed(&e))?;
        let change_set = if pool.change_set_at_apply() {
            let Some(template) = pool.template.as_deref() else {
                return Err(refused(format!(
                    "the plan has no template for stack {stack_name}; it was not changed"
                )));
            };
            if sha256_hex(template) != expected {
                return Err(refused(format!(
                    "the plan's template for stack {stack_name} does not hash to the reviewed {expected}; it was not changed"
                )));
            }
            let live = stack::live_stack(&self.cfn, stack_name)
                .await
                .map_err(|e| failed(&e))?;
            // The stack the plan reviewed: none to create, or the one the state records to update
            // (a stack of that name could be another cluster's).
            let recorded = recorded_id;
            match (pool.stack.action, &live, recorded) {
                (Action::Create, Some(found), _) => {
                    return Err(refused(format!(
                        "the plan creates stack {stack_name}, but {} exists; it was not changed. Make a new plan",
                        found.id
                    )));
                }
                (Action::Update, Some(found), Some(recorded)) if found.id != *recorded => {
                    return Err(refused(format!(
                        "stack {stack_name} is {}, not the {recorded} the state records; it was not changed",
                        found.id
                    )));
                }
                // Unrecorded (an apply that failed before writing the state made it): only while
                // its description says it is this cluster's pool stack, as plan checked.
                (Action::Update, Some(found), None)
                    if found.description.as_deref()
                        != Some(stack::pool_stack_description(config, &pool.pool).as_str()) =>
                {
                    return Err(refused(format!(
                        "stack {stack_name} ({}) is not this cluster's pool stack; it was not changed",
                        found.id
                    )));
                }
                _ => {}
            }
            let request = stack::PoolChangeSet {
                stack_name,
                template,
                template_sha256: &expected,
                parameters: parameters.clone(),
                exists: live.is_some(),
            };
            let name = stack::pool_change_set_name(config, &plan.prior, &request);
            (self.observer)(ApplyEvent::Step(&format!(
                "creating change set {name} for stack {stack_name}"
            )));
            let mut quiet = |_: &str| {};
            match stack::create_pool_change_set(
                config,
                self.context,
                &request,
                &name,
                plan.prior.serial,
                &mut quiet,
            )
            .await
            .map_err(|e| failed(&e))?
            {
                Some((described, _)) => described.arn,
                None => {
                    let id = live.map(|s| s.id);
                    return Ok(PoolStart::AlreadyApplied { id, parameters });
                }
            }
        } else {
            // Checked with everything else before the first change.
            pool.stack.change_set_arn.clone().unwrap_or_default()
        };
        (self.observer)(ApplyEvent::Step(&format!(
            "executing change set {change_set} on stack {stack_name}"
        )));
        let last_event = self.last_event_id(stack_name).await;
        if let Some(why) = self.lease.lost_before_change().await {
            return Err(ApplyFailure::Refused(why));
        }
        self.cfn
            .execute_change_set(stack_name, &change_set)
            .await
            .map_err(|e| failed(&e))?;
        Ok(PoolStart::Executing {
            last_event,
            parameters,
        })
    }

    /// The newest event of a stack, from which [`Run::follow`] shows what comes after.
    pub(super) async fn last_event_id(&self, stack: &str) -> Option<String> {
        self.cfn
            .events_since(stack, None)
            .await
            .ok()
            .and_then(|events| events.first().map(|e| e.id.clone()))
    }

    /// Step 6: streams events until the stack reaches a terminal status, keeping the lease
    /// and heeding an interrupt between requests. A rollback is a failure.
    pub(super) async fn follow(
        &mut self,
        stack: &str,
        last_event: Option<String>,
    ) -> Result<StackOutcome, EngineError> {
        let (observer, lease, interrupt) = (&mut self.observer, &self.lease, &self.interrupt);
        let followed = watch::follow(
            &self.cfn,
            stack,
            last_event,
            &PollSchedule::APPLY,
            |event| observer(ApplyEvent::Stack(event)),
            async |delay| {
                lease.keep_alive().await;
                tokio::select! {
                    () = interrupt.wait() => false,
                    () = tokio::time::sleep(lease.bound(delay)) => true,
                }
            },
        )
        .await?;
        let Followed::Ended {
            ending,
            status,
            description,
            failures,
        } = followed
        else {
            return Ok(StackOutcome::Interrupted);
        };
        let reasons = || failure_reasons(&failures, description.as_ref());
        Ok(match ending {
            StackEnding::Succeeded => StackOutcome::Done(description),
            StackEnding::RolledBack => StackOutcome::Failed(ApplyFailure::RolledBack(format!(
                "stack {stack} rolled back ({status}): {}",
                reasons()
            ))),
            StackEnding::Failed => StackOutcome::Failed(ApplyFailure::Failed(format!(
                "stack {stack} failed ({status}): {}",
                reasons()
            ))),
        })
    }
}

/// Why a stack failed: its first five failed events, or else the stack's own reason.
fn failure_reasons(failures: &[StackEvent], stack: Option<&StackDescription>) -> String {
    let shown: Vec<String> = failures
        .iter()
        .take(5)
        .map(|e| {
            format!(
                "{} ({}): {} {}",
                e.logical_id,
                e.resource_type,
                e.status,
                e.reason.clone().unwrap_or_default()
            )
        })
        .collect();
    if shown.is_empty() {
        stack
            .and_then(|d| d.status_reason.clone())
            .unwrap_or_default()
    } else {
        shown.join("; ")
    }
}
