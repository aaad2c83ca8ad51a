//! `apply`: executes exactly the reviewed plan, in DESIGN's nine steps, each safe to crash
//! after: verify the plan, lock, refuse a stale plan, audit `started`, check the change set,
//! execute and follow it, apply the records, write the state, audit the result and unlock.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration as StdDuration, Instant};

use time::OffsetDateTime;

use super::backend::Backend;
use super::interrupt::Interrupt;
use super::plan::records::ENDPOINT_OUTPUT;
use super::{AwsOptions, EngineError, plan_checks};
use crate::audit::{AuditResult, NewEntry, Provenance};
use crate::aws::AwsContext;
use crate::aws::cloudformation::{StackEnding, StackEvent, StackService, StackStatus};
use crate::aws::route53::{DnsService, RecordChange as DnsChange};
use crate::config::ClusterConfig;
use crate::hash::{canonical_json_pretty, sha256_hex};
use crate::planfile::{self, Action, KNOWN_AFTER_APPLY, Plan, PlanKind, RecordAction};
use crate::state::store::{DEFAULT_LEASE, HeldLock, Loaded};
use crate::state::{AuditHead, PendingAssets, RecordState, StateError};

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
        return Err(stale(why));
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
    verify_signature(&config, plan, &context.kms(), prior).await?;
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
    let lock = backend.store.lock(&actor, command, now(), length).await?;
    let lease = Lease::new(&backend, lock, length);
    // Applied after the merge, the run knows no pull request; the plan, made in it, does.
    let mut provenance = super::provenance::collect(dir);
    if provenance.pull_request.is_none() {
        provenance.pull_request = plan
            .provenance
            .as_ref()
            .and_then(|p| p.pull_request.clone());
    }
    let outcome = locked(
        &config,
        &context,
        &backend,
        &lease,
        (plan, rendered.as_ref()),
        (&actor, command, &provenance),
        unclosed,
        interrupt,
        observer,
    )
    .await;
    let held = lease.current();
    let released = super::backend::tried_again(
        || backend.store.unlock(&held),
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

/// The key that must sign a plan for this cluster: cluster.yaml's, except when the state
/// records another one: then that recorded key, so that a change to cluster.yaml alone can
/// never switch signing off or over to a key of its own.
pub(super) fn signing_key_for(
    config: &ClusterConfig,
    recorded: Option<&crate::state::PlanSigning>,
) -> Option<String> {
    match recorded {
        Some(crate::state::PlanSigning::Key(recorded))
            if config.plan_signing_key_arn.as_ref() != Some(recorded) =>
        {
            Some(recorded.clone())
        }
        _ => config.plan_signing_key_arn.clone(),
    }
}

/// Refuses a plan that the key [`signing_key_for`] names did not sign as it stands. The key
/// comes from cluster.yaml and the state, never from the plan, so a plan re-signed with
/// another key is refused too.
pub(super) async fn verify_signature(
    config: &ClusterConfig,
    plan: &Plan,
    kms: &crate::aws::kms::KmsVault,
    prior: Option<&crate::state::State>,
) -> Result<(), EngineError> {
    use base64::Engine;
    let Some(key) = signing_key_for(config, prior.and_then(|s| s.plan_signing.as_ref())) else {
        return if config.unsigned_plans {
            Ok(())
        } else {
            Err(EngineError::SigningKeyRequired)
        };
    };
    // While the plan moves signing away from the recorded key, only that key vouches for it.
    let changing = config.plan_signing_key_arn.as_ref() != Some(&key);
    let other_key = |signed_with: Option<&str>| match changing {
        true => EngineError::SigningChangeNotSignedByRecordedKey {
            change: match config.plan_signing() {
                Some(to) => format!("{} → {to}", crate::state::PlanSigning::Key(key.clone())),
                None => format!(
                    "{} → neither a key nor unsignedPlans",
                    crate::state::PlanSigning::Key(key.clone())
                ),
            },
            key: key.clone(),
        },
        false => match signed_with {
            None => EngineError::Unsigned { key: key.clone() },
            Some(other) => EngineError::SignedWithOtherKey {
                signed_with: other.to_string(),
                key: key.clone(),
            },
        },
    };
    let Some(signature) = &plan.signature else {
        return Err(other_key(None));
    };
    if signature.key_arn != key {
        return Err(other_key(Some(&signature.key_arn)));
    }
    let value = base64::engine::general_purpose::STANDARD
        .decode(&signature.value)
        .map_err(|e| EngineError::SignatureNotBase64(e.to_string()))?;
    let digest = plan.digest().ok_or(EngineError::DigestNotSha256)?;
    if !kms.verify_digest(&key, &digest, &value).await? {
        return Err(EngineError::BadSignature { key });
    }
    Ok(())
}

fn stale(why: String) -> EngineError {
    EngineError::State(StateError::Stale {
        message: format!("{why}; nothing was executed. Make a new plan."),
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

/// How long the lock's lease runs: an hour, or `KUBE_AWS_LOCK_LEASE_SECONDS` (at least 3).
fn lease_length() -> time::Duration {
    std::env::var("KUBE_AWS_LOCK_LEASE_SECONDS")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|s| (3..=86_400).contains(s))
        .map_or(DEFAULT_LEASE, time::Duration::seconds)
}

/// The lock this apply holds, renewed while it waits on CloudFormation and Route53 and before
/// each step after them, so that neither a long rolling update nor a slow state or audit write
/// ever shows an expired, removable lock.
struct Lease<'a> {
    backend: &'a Backend,
    held: RefCell<HeldLock>,
    length: time::Duration,
    renewed: Cell<Instant>,
    /// Set when a renewal found the lock removed or replaced.
    lost: RefCell<Option<String>>,
}

impl<'a> Lease<'a> {
    fn new(backend: &'a Backend, lock: HeldLock, length: time::Duration) -> Lease<'a> {
        Lease {
            backend,
            held: RefCell::new(lock),
            length,
            renewed: Cell::new(Instant::now()),
            lost: RefCell::new(None),
        }
    }

    fn current(&self) -> HeldLock {
        self.held.borrow().clone()
    }

    /// How long a wait between two polls may last so the next poll still renews in time: the
    /// backoff of a long wait would otherwise outgrow a short lease.
    /// A lost lock needs no renewal, and a failing renewal is retried at most once a second.
    fn bound(&self, delay: StdDuration) -> StdDuration {
        if self.lost.borrow().is_some() {
            return delay;
        }
        let third = StdDuration::from_secs_f64(self.length.as_seconds_f64() / 3.0);
        let due = third.saturating_sub(self.renewed.get().elapsed());
        delay.min(due.max(StdDuration::from_secs(1)))
    }

    /// Renews the lease once a third of it has run. A renewal that fails for another reason
    /// than a lost lock is tried again at the next poll, while two thirds of the lease remain.
    async fn keep_alive(&self) {
        let third = StdDuration::from_secs_f64(self.length.as_seconds_f64() / 3.0);
        if self.lost.borrow().is_some() || self.renewed.get().elapsed() < third {
            return;
        }
        let lock = self.current();
        match self.backend.store.renew(&lock, now(), self.length).await {
            Ok(renewed) => {
                *self.held.borrow_mut() = renewed;
                self.renewed.set(Instant::now());
            }
            Err(StateError::LockLost { id }) => {
                *self.lost.borrow_mut() = Some(format!(
                    "the state lock {id} was removed or taken over while the stack was changing"
                ));
            }
            Err(_) => {}
        }
    }
}

#[allow(clippy::too_many_arguments)] // the steps share these; one call site
async fn locked(
    config: &ClusterConfig,
    context: &AwsContext,
    backend: &Backend,
    lease: &Lease<'_>,
    (plan, rendered): (&Plan, Option<&crate::render::Rendered>),
    (actor, command, provenance): (&str, &str, &Provenance),
    unclosed: Option<(u64, String)>,
    interrupt: &Interrupt,
    observer: Observer<'_>,
) -> Result<ApplyOutcome, EngineError> {
    let started = Instant::now();
    let loaded = backend.load(config).await?;
    if let Some(why) = staleness(plan, loaded.as_ref()) {
        return Err(stale(why));
    }
    // Nothing from the plan is used before it is checked against what this run derives itself.
    let shipped = check_plan(
        config,
        context,
        backend,
        (plan, rendered),
        loaded.as_ref().map(|l| &l.state),
        actor,
    )
    .await?;
    let serial_before = loaded.as_ref().map_or(0, |l| l.state.serial);
    let written_sha256: RefCell<Option<String>> = RefCell::new(None);
    // The reviewed plan is kept beside the log: `history show` prints it from there.
    backend.keep_plan(plan).await?;
    let entry =
        |result: AuditResult, serial_after: Option<u64>, message: Option<String>| NewEntry {
            actor: actor.to_string(),
            command: command.to_string(),
            result: Some(result),
            plan_sha256: Some(plan.plan_sha256.clone()),
            change_set_arn: plan.stack.change_set_arn.clone(),
            state_serial_before: Some(serial_before),
            state_serial_after: serial_after,
            state_sha256_after: written_sha256.borrow().clone(),
            duration_ms: (result != AuditResult::Started)
                .then(|| started.elapsed().as_millis() as u64),
            summary: Some(plan.summary),
            message,
            provenance: Some(provenance.clone()),
        };

    // An earlier apply wrote the state and ended before its closing entry (killed, or the log
    // write failed): its run is closed first, so the log again names the entry that wrote the
    // state this run starts from; else a second such run in a row leaves a state no entry
    // accounts for.
    if let (Some((dead, sha256)), Some(l)) = (unclosed, loaded.as_ref())
        && l.sha256 == sha256
    {
        lease.keep_alive().await;
        close_unclosed_run(backend, dead, l, (actor, command, provenance)).await?;
    }

    // Step 4. The state this run writes names this entry, so the log cannot lose it unseen.
    lease.keep_alive().await;
    let started_entry = backend
        .append_audit(now(), entry(AuditResult::Started, None, None))
        .await?;
    let finish = |result: AuditResult, serial_after: Option<u64>, message: Option<String>| {
        let new = entry(result, serial_after, message.clone());
        async move {
            lease.keep_alive().await;
            let written = backend.append_audit(now(), new).await?;
            Ok::<ApplyOutcome, EngineError>(ApplyOutcome {
                result,
                serial_before,
                serial_after: serial_after.unwrap_or(serial_before),
                message,
                audit_seq: written.seq,
            })
        }
    };

    // Steps 5 and 6.
    let cfn = context.cloudformation();
    let stack_name = &plan.stack.name;
    let mut stack_outcome = StackOutcome::Unchanged;
    // The pending assets this run clears once the state holds them: the ones it reuses from
    // an interrupted apply, or its own.
    let mut pending_etag = shipped.map(|(_, etag)| etag);
    // Step 5: all this run executes is checked before anything changes: the cluster stack's
    // change set, each pool stack's (or the template apply makes one from), and each pool
    // stack it deletes.
    let recorded_pools = loaded.as_ref().map(|l| &l.state.pool_stacks);
    let cluster_change_set = plan
        .stack
        .change_set_arn
        .clone()
        .or(plan.stack.change_set_name.clone())
        .unwrap_or_default();
    if plan.kind == PlanKind::Apply && plan.stack.action != Action::NoOp {
        let expected_template = plan.stack.template_sha256.clone().unwrap_or_default();
        if let Err(why) = check_change_set(
            &cfn,
            stack_name,
            plan.target.stack_id.as_ref(),
            &expected_template,
            &cluster_change_set,
        )
        .await
        {
            return finish(AuditResult::Failed, None, Some(why)).await;
        }
    }
    if let Err(why) = check_pool_stacks(&cfn, config, plan, recorded_pools).await {
        return finish(AuditResult::Failed, None, Some(why)).await;
    }
    // An interrupt stops apply before each stack it would change, never one that is changing.
    let nothing_started = |what: &str| {
        format!(
            "interrupted before {what}; nothing of this plan was started, so apply it again or plan again"
        )
    };
    // Pool stacks go first on destroy, and a removed pool's before the cluster stack changes
    // (it may remove the subnets the pool runs in); by the id the state records.
    let mut pools_deleted = 0;
    for pool in plan
        .pool_stacks
        .iter()
        .filter(|p| p.stack.action == Action::Delete)
    {
        // By the id the state records; by name only what destroy found unrecorded (checked
        // above to be this cluster's name for the pool).
        let recorded = recorded_pools
            .and_then(|r| r.get(&pool.pool))
            .map(|s| s.id.clone().unwrap_or_else(|| s.name.clone()))
            .unwrap_or_else(|| pool.stack.name.clone());
        if interrupt.fired() {
            let what = format!("pool stack {recorded} was deleted");
            let message = match pools_deleted {
                0 => nothing_started(&what),
                n => format!(
                    "interrupted before {what}, after {n} pool stack(s) were deleted; plan again to see what is left"
                ),
            };
            return finish(AuditResult::Interrupted, None, Some(message)).await;
        }
        pools_deleted += 1;
        if let Err((result, message)) =
            delete_stack(&cfn, &recorded, backend, lease, interrupt, observer).await
        {
            return finish(result, None, Some(message)).await;
        }
    }
    match (plan.kind, plan.stack.action) {
        (_, Action::NoOp) => {}
        (PlanKind::Destroy, _) => {
            observer(ApplyEvent::Step("deleting the stack"));
            // By the id the state records: a name could reach another stack of that name.
            // A deleted stack is only describable by its id, not its name.
            let target = loaded
                .as_ref()
                .and_then(|l| l.state.stack.as_ref())
                .and_then(|s| s.id.clone())
                .unwrap_or_else(|| stack_name.clone());
            let id = match cfn.describe_stack(&target).await {
                Ok(Some(d)) => d.id,
                Ok(None) => target.clone(),
                Err(e) => return finish(AuditResult::Failed, None, Some(e.to_string())).await,
            };
            let last = last_event_id(&cfn, &id).await;
            if interrupt.fired() {
                let message = match pools_deleted {
                    0 => nothing_started(&format!("stack {id} was deleted")),
                    n => format!(
                        "interrupted before stack {id} was deleted, after its {n} pool stack(s) were; plan again to see what is left"
                    ),
                };
                return finish(AuditResult::Interrupted, None, Some(message)).await;
            }
            if let Some(why) = lock_lost(backend, &lease.current()).await {
                return finish(AuditResult::Failed, None, Some(why)).await;
            }
            if let Err(e) = cfn.delete_stack(&id).await {
                return finish(AuditResult::Failed, None, Some(e.to_string())).await;
            }
            stack_outcome = match follow(&cfn, &id, last, lease, interrupt, observer).await {
                Ok(outcome) => outcome,
                Err(e) => return finish(AuditResult::Failed, None, Some(e.to_string())).await,
            };
        }
        (PlanKind::Apply, _) => {
            // By its ARN (checked above): a change set of the same name on another stack is
            // never executed.
            let change_set = &cluster_change_set;
            observer(ApplyEvent::Step(&format!(
                "executing change set {change_set}"
            )));
            let last = last_event_id(&cfn, stack_name).await;
            if interrupt.fired() {
                let message = nothing_started(&format!("change set {change_set} was executed"));
                return finish(AuditResult::Interrupted, None, Some(message)).await;
            }
            // The last moment to find out the lock is gone: after this, AWS changes.
            if let Some(why) = lock_lost(backend, &lease.current()).await {
                return finish(AuditResult::Failed, None, Some(why)).await;
            }
            // Certificates this plan issued ship with the change set: kept aside first, so a
            // run that dies before the state write does not lose them (the next plan reuses).
            if issues_assets(plan) {
                let pending = PendingAssets {
                    format_version: 1,
                    lineage: loaded.as_ref().map(|l| l.state.lineage.clone()),
                    prior_serial: serial_before,
                    plan_sha256: plan.plan_sha256.clone(),
                    change_set_arn: plan.stack.change_set_arn.clone(),
                    written: now()
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                    tls: plan.new_state.tls.clone(),
                };
                match backend.store.put_pending(&pending, &lease.current()).await {
                    Ok(etag) => pending_etag = Some(etag),
                    Err(e) => {
                        let message = format!(
                            "the certificates this plan issues could not be kept aside before execution ({e}); nothing was executed"
                        );
                        return finish(AuditResult::Failed, None, Some(message)).await;
                    }
                }
            }
            if let Err(e) = cfn.execute_change_set(stack_name, change_set).await {
                return finish(AuditResult::Failed, None, Some(e.to_string())).await;
            }
            stack_outcome = match follow(&cfn, stack_name, last, lease, interrupt, observer).await {
                Ok(outcome) => outcome,
                Err(e) => return finish(AuditResult::Failed, None, Some(e.to_string())).await,
            };
        }
    }
    let stack_outcome_changed = matches!(stack_outcome, StackOutcome::Done(_));
    let stack = match stack_outcome {
        StackOutcome::Interrupted => {
            let message = format!(
                "interrupted while waiting; stack {stack_name} continues in CloudFormation and `kube-aws status` follows it ({} was {}); plan again once it is done",
                match plan.kind {
                    PlanKind::Destroy => "its deletion".to_string(),
                    PlanKind::Apply => format!("change set {cluster_change_set}"),
                },
                match plan.kind {
                    PlanKind::Destroy => "started",
                    PlanKind::Apply => "executed",
                },
            );
            return finish(AuditResult::Interrupted, None, Some(message)).await;
        }
        StackOutcome::Failed { result, message } => {
            return finish(result, None, Some(message)).await;
        }
        StackOutcome::Unchanged => cfn.describe_stack(stack_name).await?,
        StackOutcome::Done(description) => description,
    };

    let outputs: BTreeMap<String, String> = stack
        .as_ref()
        .map(|s| s.outputs.clone())
        .unwrap_or_default();

    // Every changed pool stack starts before any is followed, so CloudFormation updates them
    // side by side (a rolling update each); then each is followed to its end.
    let mut pools_applied = BTreeMap::new();
    let mut executing = Vec::new();
    let mut failure: Option<StackFailure> = None;
    let changed_pools: Vec<_> = plan
        .pool_stacks
        .iter()
        .filter(|p| matches!(p.stack.action, Action::Create | Action::Update))
        .collect();
    if !changed_pools.is_empty() && interrupt.fired() {
        let message = match stack_outcome_changed {
            true => format!(
                "interrupted before the pool stacks were started; stack {stack_name} was applied, so plan again: it shows the pool stacks still to apply"
            ),
            false => nothing_started("the pool stacks were started"),
        };
        return finish(AuditResult::Interrupted, None, Some(message)).await;
    }
    // What the pool stacks take as parameters: the cluster stack's resources as they now are.
    let cluster_resources = if changed_pools.is_empty() {
        BTreeMap::new()
    } else {
        let listed = match stack.as_ref() {
            Some(cluster) => cfn.physical_ids(&cluster.id).await,
            None => cfn.physical_ids(stack_name).await,
        };
        match listed {
            Ok(ids) => ids,
            Err(e) => return finish(AuditResult::Failed, None, Some(e.to_string())).await,
        }
    };
    for pool in changed_pools {
        // Starting one may take a while (it may make a change set): asked again before each.
        if interrupt.fired() {
            failure.get_or_insert((
                AuditResult::Interrupted,
                format!(
                    "interrupted before pool stack {} was started; the pool stacks started before it continue in CloudFormation (`kube-aws status` follows them); plan again once they are done: it shows what is left",
                    pool.stack.name
                ),
            ));
            break;
        }
        lease.keep_alive().await;
        match start_pool_stack(
            config,
            context,
            plan,
            pool,
            &cluster_resources,
            recorded_pools
                .and_then(|r| r.get(&pool.pool))
                .and_then(|s| s.id.as_deref()),
            backend,
            lease,
            observer,
        )
        .await
        {
            Ok(PoolStart::Executing {
                last_event,
                parameters,
            }) => {
                executing.push((pool, last_event, parameters));
            }
            Ok(PoolStart::AlreadyApplied { id, parameters }) => {
                pools_applied.insert(pool.pool.clone(), (id, parameters));
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    for (pool, last_event, parameters) in executing {
        let stack_name = &pool.stack.name;
        let followed = follow(&cfn, stack_name, last_event, lease, interrupt, observer).await;
        let interrupted = matches!(followed, Ok(StackOutcome::Interrupted));
        match outcome(followed, stack_name) {
            Ok(done) => {
                pools_applied.insert(pool.pool.clone(), (done.map(|d| d.id), parameters));
            }
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
        // The interrupt has fired: it is not waited on again.
        if interrupted {
            break;
        }
    }
    if let Some((result, message)) = failure {
        return finish(result, None, Some(message)).await;
    }

    // Step 7: records, with values known only now taken from the stack's outputs; after the
    // pool stacks, so a failed one leaves Route53 as the state records it.
    lease.keep_alive().await;
    let records = apply_plan_records(plan, &outputs, context, lease, observer).await;

    // Step 8: the new state; on a record failure it keeps the old records, so the next plan
    // shows the change again.
    let mut next = next_state(
        plan,
        loaded.as_ref().map(|l| &l.state),
        stack.as_ref(),
        &records.applied,
        // Where the cluster lives is what this run knows, not what the plan says.
        (super::plan::stack::arn_account(actor), &config.region),
        AuditHead {
            seq: started_entry.seq,
            entry_sha256: started_entry.entry_sha256.clone(),
        },
    );
    for (pool, (id, parameters)) in pools_applied {
        if let Some(recorded) = next.pool_stacks.get_mut(&pool) {
            recorded.id = id.or(recorded.id.take());
            recorded.parameters = parameters;
        }
    }
    observer(ApplyEvent::Step("writing the state"));
    lease.keep_alive().await;
    let lost = lease.lost.borrow().clone();
    let written = match backend
        .store
        .persist(&next, loaded.as_ref(), &lease.current())
        .await
    {
        Ok(written) => {
            *written_sha256.borrow_mut() = Some(written.sha256.clone());
            written
        }
        Err(StateError::LockLost { id }) => {
            // Whoever removed the lock may be writing now: the state is theirs to write.
            let message = format!(
                "{}; the stack was applied but the state was not written. Make sure no other run is active, then run `kube-aws plan`: it shows what the stack now differs from the state",
                lost.unwrap_or_else(|| format!(
                    "the state lock {id} was removed or taken over while this apply ran"
                ))
            );
            return finish(AuditResult::LockLost, None, Some(message)).await;
        }
        Err(e) => {
            // The stack changed but the state could not be written (the lock was removed
            // mid-run, or the store failed): the audit log still says how this run ended.
            let message = format!(
                "lock lost or state write failed after the stack was applied ({e}); the state is unchanged, so run `kube-aws plan`: it shows what the stack now differs from the state"
            );
            return finish(AuditResult::Failed, None, Some(message)).await;
        }
    };

    if let Some(etag) = &pending_etag {
        // The state holds them now; a leftover is ignored once the serial moves on anyway.
        let _ = backend.store.clear_pending(etag).await;
    }

    // Step 9.
    if records.error.is_none() {
        finish(AuditResult::Succeeded, Some(written.state.serial), None).await
    } else {
        let message = format!(
            "the stack was applied but Route53 failed: {}; the next plan shows the record change again",
            records.error.unwrap_or_default()
        );
        finish(
            AuditResult::Failed,
            Some(written.state.serial),
            Some(message),
        )
        .await
    }
}

/// Appends the closing entry the apply of `started` never wrote: it wrote `state` (its serial
/// and hash) and ended there.
async fn close_unclosed_run(
    backend: &Backend,
    started: u64,
    state: &Loaded,
    (actor, command, provenance): (&str, &str, &Provenance),
) -> Result<(), EngineError> {
    let run = backend.audit.read(started).await?;
    backend
        .append_audit(
            now(),
            NewEntry {
                actor: actor.to_string(),
                command: format!("{command} (closing the run of entry {started})"),
                result: Some(AuditResult::Failed),
                plan_sha256: run.as_ref().and_then(|r| r.plan_sha256.clone()),
                change_set_arn: run.as_ref().and_then(|r| r.change_set_arn.clone()),
                state_serial_before: run.as_ref().and_then(|r| r.state_serial_before),
                state_serial_after: Some(state.state.serial),
                state_sha256_after: Some(state.sha256.clone()),
                duration_ms: None,
                summary: run.as_ref().and_then(|r| r.summary),
                message: Some(format!(
                    "the apply of entry {started} wrote state serial {} and has no closing entry (it was killed, writing the entry failed, or the entry was deleted); that state is what its reviewed plan writes. Closed by the next apply",
                    state.state.serial
                )),
                provenance: Some(provenance.clone()),
            },
        )
        .await?;
    Ok(())
}

/// Step 3's checks of what apply re-derives (see `plan_checks`). Returns the assets an
/// interrupted apply shipped, when the plan keeps some the state does not hold yet.
async fn check_plan(
    config: &ClusterConfig,
    context: &AwsContext,
    backend: &Backend,
    (plan, rendered): (&Plan, Option<&crate::render::Rendered>),
    prior: Option<&crate::state::State>,
    actor: &str,
) -> Result<Option<(PendingAssets, String)>, EngineError> {
    plan_checks::check_target(config, plan, super::plan::stack::arn_account(actor), prior)?;
    let shipped = if plan_checks::keeps_unrecorded_certificates(plan, prior) {
        super::pending::proven(config, backend, prior).await?
    } else {
        None
    };
    plan_checks::check_new_state(config, plan, prior, shipped.as_ref().map(|(p, _)| &p.tls))?;
    plan_checks::check_pool_changes(config, plan)?;
    if let Some(rendered) = rendered {
        plan_checks::check_rendered_templates(plan, rendered)?;
        plan_checks::check_rendered_assets(config, plan, rendered)?;
    }
    let looked_up_zone = zone_to_look_up(config, plan, context).await?;
    plan_checks::check_records(config, plan, prior, looked_up_zone.as_deref())?;
    Ok(shipped)
}

/// What step 7 did to Route53: the changes applied (by zone), and the last failure.
struct RecordsApplied {
    applied: Vec<(String, DnsChange)>,
    error: Option<String>,
}

/// Step 7: the plan's record changes, each pointing where the stack's endpoint output says.
async fn apply_plan_records(
    plan: &Plan,
    outputs: &BTreeMap<String, String>,
    context: &AwsContext,
    lease: &Lease<'_>,
    observer: Observer<'_>,
) -> RecordsApplied {
    let mut record_error = None;
    let mut applied_records = Vec::new();
    let changes: Vec<_> = plan.records.iter().filter(|r| r.action.changes()).collect();
    if changes.is_empty() {
        return RecordsApplied {
            applied: applied_records,
            error: None,
        };
    }
    observer(ApplyEvent::Step("applying Route53 records"));
    let dns = context.route53();
    let mut by_zone: BTreeMap<&str, Vec<DnsChange>> = BTreeMap::new();
    for r in &changes {
        // The API record always points where the stack says its endpoint is, whatever value
        // the plan carries; a deletion removes exactly what the state recorded.
        let values = if r.action == RecordAction::Delete {
            r.new_values.clone()
        } else {
            match outputs.get(ENDPOINT_OUTPUT) {
                Some(v)
                    if r.new_values
                        .iter()
                        .all(|n| n == v || n == KNOWN_AFTER_APPLY) =>
                {
                    vec![v.clone()]
                }
                Some(v) => {
                    record_error = Some(format!(
                        "the plan points {} at {} but the stack's endpoint is {v}; the record was left as it is",
                        r.name,
                        r.new_values.join(", ")
                    ));
                    continue;
                }
                None => {
                    record_error = Some(format!(
                        "the stack has no {ENDPOINT_OUTPUT} output to point the record at"
                    ));
                    continue;
                }
            }
        };
        by_zone
            .entry(&r.hosted_zone_id)
            .or_default()
            .push(DnsChange {
                action: r.action,
                name: r.name.clone(),
                record_type: r.record_type.clone(),
                ttl: r.ttl,
                values,
            });
    }
    for (zone, batch) in &by_zone {
        match apply_records(&dns, zone, batch, lease).await {
            Ok(()) => applied_records.extend(batch.iter().map(|c| (zone.to_string(), c.clone()))),
            Err(e) => record_error = Some(e.to_string()),
        }
    }
    RecordsApplied {
        applied: applied_records,
        error: record_error,
    }
}

/// Step 8's state: the plan's `new_state` with what only this run knows (the stack's id, the
/// records Route53 took, where the cluster lives, this run's audit entry). On a record failure
/// it keeps the old records, so the next plan shows the change again.
fn next_state(
    plan: &Plan,
    prior: Option<&crate::state::State>,
    stack: Option<&crate::aws::cloudformation::StackDescription>,
    applied: &[(String, DnsChange)],
    (account, region): (&str, &str),
    head: AuditHead,
) -> crate::state::State {
    let mut next = plan.new_state.clone();
    if plan.kind == PlanKind::Apply
        && let (Some(s), Some(desc)) = (next.stack.as_mut(), stack)
    {
        s.id = Some(desc.id.clone());
    }
    let mut records: Vec<RecordState> = prior.map(|s| s.records.clone()).unwrap_or_default();
    for (zone, change) in applied {
        records.retain(|r| !(r.name == change.name && r.record_type == change.record_type));
        if change.action == RecordAction::Upsert {
            records.push(RecordState {
                hosted_zone_id: zone.clone(),
                name: change.name.clone(),
                record_type: change.record_type.clone(),
                ttl: change.ttl,
                values: change.values.clone(),
            });
        }
    }
    records.sort_by(|a, b| (&a.name, &a.record_type).cmp(&(&b.name, &b.record_type)));
    next.records = records;
    next.account_id = Some(account.to_string());
    next.region = Some(region.to_string());
    next.audit_head = Some(head);
    next
}

/// The zone an UPSERT's hosted zone must be, looked up by the name cluster.yaml gives when
/// it does not name the zone's id.
async fn zone_to_look_up(
    config: &ClusterConfig,
    plan: &Plan,
    context: &AwsContext,
) -> Result<Option<String>, EngineError> {
    if !plan
        .records
        .iter()
        .any(|r| r.action == RecordAction::Upsert)
        || plan_checks::expected_zone(config).is_some()
    {
        return Ok(None);
    }
    let Some(name) = &config.hosted_zone else {
        return Ok(None);
    };
    Ok(context
        .route53()
        .zone_by_name(name)
        .await?
        .map(|z| super::plan::records::bare_zone(&z.id).to_string()))
}

/// Whether the plan ships assets the state does not hold yet: a certificate or key issued or
/// rotated by this plan.
fn issues_assets(plan: &Plan) -> bool {
    plan.certificates.iter().any(|c| c.action.is_new())
}

/// Why this apply may not change AWS any more: its lock was removed (`state unlock`) or
/// replaced by another run's. `None` while it still holds it.
async fn lock_lost(backend: &Backend, lock: &HeldLock) -> Option<String> {
    match backend.store.still_holds(lock).await {
        Ok(true) => None,
        Ok(false) => Some(format!(
            "the state lock {} was removed or taken over while this apply ran; nothing was executed. Make a new plan once no other run is active.",
            lock.info.id
        )),
        Err(e) => Some(format!(
            "the state lock could not be re-checked ({e}); nothing was executed"
        )),
    }
}

/// Step 5: the change set must still be there, unexecuted, with exactly the reviewed template.
async fn check_change_set<C: StackService>(
    cfn: &C,
    stack: &str,
    expected_stack_id: Option<&String>,
    expected_template_sha256: &str,
    change_set: &str,
) -> Result<(), String> {
    let described = cfn
        .describe_change_set(stack, change_set)
        .await
        .map_err(|e| {
            format!("change set {change_set} is gone or unreadable ({e}); nothing was executed")
        })?;
    // A stack's ARN names it: `arn:…:stack/NAME/UUID`.
    let on_named_stack = described
        .stack_id
        .as_deref()
        .is_some_and(|id| id.contains(&format!(":stack/{stack}/")));
    if !on_named_stack {
        return Err(format!(
            "change set {change_set} belongs to stack {}, not to {stack}; nothing was executed",
            described.stack_id.as_deref().unwrap_or("(unknown)")
        ));
    }
    if let Some(expected) = expected_stack_id
        && described.stack_id.as_ref() != Some(expected)
    {
        return Err(format!(
            "change set {change_set} belongs to stack {}, not the planned {expected}; nothing was executed",
            described.stack_id.as_deref().unwrap_or("(unknown)")
        ));
    }
    if !described.is_executable() {
        return Err(format!(
            "change set {change_set} is {} / {}, not AVAILABLE; nothing was executed. Make a new plan.",
            described.status, described.execution_status
        ));
    }
    let body = cfn
        .get_template(stack, Some(change_set))
        .await
        .map_err(|e| format!("cannot read the template of change set {change_set}: {e}"))?;
    let actual = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| canonical_json_pretty(&v).ok())
        .map(sha256_hex)
        .unwrap_or_else(|| sha256_hex(&body));
    let expected = expected_template_sha256;
    if actual != expected {
        return Err(format!(
            "change set {change_set} holds a template hashing to {actual}, not the reviewed {expected}; nothing was executed"
        ));
    }
    Ok(())
}

/// A stack apply failed to change: how the audit entry ends, and why.
type StackFailure = (AuditResult, String);

/// Deletes a stack by its id (or name) and follows it until it is gone.
async fn delete_stack<C: StackService>(
    cfn: &C,
    target: &str,
    backend: &Backend,
    lease: &Lease<'_>,
    interrupt: &Interrupt,
    observer: Observer<'_>,
) -> Result<(), StackFailure> {
    let failed = |e: &dyn std::fmt::Display| (AuditResult::Failed, e.to_string());
    let id = match cfn.describe_stack(target).await {
        Ok(Some(d)) => d.id,
        Ok(None) => return Ok(()),
        Err(e) => return Err(failed(&e)),
    };
    observer(ApplyEvent::Step(&format!("deleting stack {id}")));
    let last = last_event_id(cfn, &id).await;
    if let Some(why) = lock_lost(backend, &lease.current()).await {
        return Err((AuditResult::Failed, why));
    }
    cfn.delete_stack(&id).await.map_err(|e| failed(&e))?;
    outcome(
        follow(cfn, &id, last, lease, interrupt, observer).await,
        &id,
    )
    .map(|_| ())
}

/// A followed stack's end as a success (its description) or the audit result it gives.
fn outcome(
    followed: Result<StackOutcome, EngineError>,
    stack: &str,
) -> Result<Option<crate::aws::cloudformation::StackDescription>, StackFailure> {
    match followed {
        Ok(StackOutcome::Done(description)) => Ok(description),
        Ok(StackOutcome::Unchanged) => Ok(None),
        Ok(StackOutcome::Failed { result, message }) => Err((result, message)),
        Ok(StackOutcome::Interrupted) => Err((
            AuditResult::Interrupted,
            format!(
                "interrupted while waiting; stack {stack} continues in CloudFormation and `kube-aws status` follows it"
            ),
        )),
        Err(e) => Err((AuditResult::Failed, e.to_string())),
    }
}

/// Step 5 for the pool stacks: each is this cluster's by name, a pool stack is deleted only
/// as the state records it, a change set made at plan time is still there with the reviewed
/// template on the reviewed stack, and a template apply makes a change set from hashes to
/// what was reviewed.
async fn check_pool_stacks<C: StackService>(
    cfn: &C,
    config: &ClusterConfig,
    plan: &Plan,
    recorded: Option<&BTreeMap<String, crate::state::StackState>>,
) -> Result<(), String> {
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
                return Err(format!(
                    "the plan deletes stack {name}, which the state does not record; nothing was executed"
                ));
            }
            _ => config.pool_stack_name(&pool.pool),
        };
        if *name != expected_name {
            return Err(format!(
                "the plan names stack {name} for node pool {}, not {expected_name}; nothing was executed",
                pool.pool
            ));
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
                return Err(format!(
                    "the plan's template for stack {name} does not hash to the reviewed {expected}; nothing was executed"
                ));
            }
        }
    }
    Ok(())
}

/// How a pool stack's change started.
enum PoolStart {
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

/// Starts one pool stack's creation or update after the cluster stack: executes the reviewed
/// change set, or makes it now from the reviewed template (checked against its hash) with the
/// parameters the cluster stack's resources give.
#[allow(clippy::too_many_arguments)] // apply's run context, as `locked` holds it
async fn start_pool_stack(
    config: &ClusterConfig,
    context: &AwsContext,
    plan: &Plan,
    pool: &planfile::PoolStackChange,
    cluster_resources: &BTreeMap<String, String>,
    recorded_id: Option<&str>,
    backend: &Backend,
    lease: &Lease<'_>,
    observer: Observer<'_>,
) -> Result<PoolStart, StackFailure> {
    use super::plan::stack;
    let failed = |e: &dyn std::fmt::Display| (AuditResult::Failed, e.to_string());
    let cfn = context.cloudformation();
    let stack_name = &pool.stack.name;
    let expected = pool.stack.template_sha256.clone().unwrap_or_default();
    let parameters =
        stack::pool_parameters(&pool.parameters, cluster_resources).map_err(|e| failed(&e))?;
    let change_set = if pool.change_set_at_apply() {
        let Some(template) = pool.template.as_deref() else {
            return Err(failed(&format!(
                "the plan has no template for stack {stack_name}; it was not changed"
            )));
        };
        if sha256_hex(template) != expected {
            return Err(failed(&format!(
                "the plan's template for stack {stack_name} does not hash to the reviewed {expected}; it was not changed"
            )));
        }
        let live = stack::live_stack(&cfn, stack_name)
            .await
            .map_err(|e| failed(&e))?;
        // The stack the plan reviewed: none to create, or the one the state records to update
        // (a stack of that name could be another cluster's).
        let recorded = recorded_id;
        match (pool.stack.action, &live, recorded) {
            (Action::Create, Some(found), _) => {
                return Err(failed(&format!(
                    "the plan creates stack {stack_name}, but {} exists; it was not changed. Make a new plan",
                    found.id
                )));
            }
            (Action::Update, Some(found), Some(recorded)) if found.id != *recorded => {
                return Err(failed(&format!(
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
                return Err(failed(&format!(
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
        observer(ApplyEvent::Step(&format!(
            "creating change set {name} for stack {stack_name}"
        )));
        let mut quiet = |_: &str| {};
        match stack::create_pool_change_set(
            config,
            context,
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
    observer(ApplyEvent::Step(&format!(
        "executing change set {change_set} on stack {stack_name}"
    )));
    let last_event = last_event_id(&cfn, stack_name).await;
    if let Some(why) = lock_lost(backend, &lease.current()).await {
        return Err((AuditResult::Failed, why));
    }
    cfn.execute_change_set(stack_name, &change_set)
        .await
        .map_err(|e| failed(&e))?;
    Ok(PoolStart::Executing {
        last_event,
        parameters,
    })
}

enum StackOutcome {
    Unchanged,
    Done(Option<crate::aws::cloudformation::StackDescription>),
    Failed {
        result: AuditResult,
        message: String,
    },
    Interrupted,
}

async fn last_event_id<C: StackService>(cfn: &C, stack: &str) -> Option<String> {
    cfn.events_since(stack, None)
        .await
        .ok()
        .and_then(|events| events.first().map(|e| e.id.clone()))
}

/// Step 6: streams events until the stack reaches a terminal status. A rollback is a failure.
async fn follow<C: StackService>(
    cfn: &C,
    stack: &str,
    mut last_event: Option<String>,
    lease: &Lease<'_>,
    interrupt: &Interrupt,
    observer: Observer<'_>,
) -> Result<StackOutcome, EngineError> {
    let mut delay = StdDuration::from_millis(500);
    let mut failures: Vec<StackEvent> = Vec::new();
    loop {
        let mut events = cfn.events_since(stack, last_event.as_deref()).await?;
        events.reverse();
        for event in &events {
            observer(ApplyEvent::Stack(event));
            if event.status.is_failure() {
                failures.push(event.clone());
            }
        }
        if let Some(newest) = events.last() {
            last_event = Some(newest.id.clone());
        }
        let described = cfn.describe_stack(stack).await?;
        // Only a deleted stack is gone.
        let status = described
            .as_ref()
            .map_or(StackStatus::DeleteComplete, |d| d.status.clone());
        let reasons = || {
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
            let reason = described
                .as_ref()
                .and_then(|d| d.status_reason.clone())
                .unwrap_or_default();
            if shown.is_empty() {
                reason
            } else {
                shown.join("; ")
            }
        };
        match status.ending() {
            Some(StackEnding::Succeeded) => return Ok(StackOutcome::Done(described)),
            Some(StackEnding::RolledBack) => {
                return Ok(StackOutcome::Failed {
                    result: AuditResult::RolledBack,
                    message: format!("stack {stack} rolled back ({status}): {}", reasons()),
                });
            }
            Some(StackEnding::Failed) => {
                return Ok(StackOutcome::Failed {
                    result: AuditResult::Failed,
                    message: format!("stack {stack} failed ({status}): {}", reasons()),
                });
            }
            None => {}
        }
        lease.keep_alive().await;
        tokio::select! {
            () = interrupt.wait() => return Ok(StackOutcome::Interrupted),
            () = tokio::time::sleep(lease.bound(delay)) => {}
        }
        delay = (delay * 3 / 2).min(StdDuration::from_secs(10));
    }
}

async fn apply_records<D: DnsService>(
    dns: &D,
    zone: &str,
    batch: &[DnsChange],
    lease: &Lease<'_>,
) -> Result<(), EngineError> {
    let change_id = dns.change(zone, batch).await?;
    let mut delay = StdDuration::from_millis(500);
    let deadline = Instant::now() + StdDuration::from_secs(10 * 60);
    while !dns.in_sync(&change_id).await? {
        if Instant::now() > deadline {
            return Err(EngineError::RecordsNotInSync {
                change_id: change_id.clone(),
            });
        }
        lease.keep_alive().await;
        tokio::time::sleep(lease.bound(delay)).await;
        delay = (delay * 3 / 2).min(StdDuration::from_secs(10));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planfile::fixtures::rolling_plan;

    #[test]
    fn the_written_state_takes_what_route53_took_and_where_this_run_found_the_cluster() {
        let record = |name: &str, value: &str| RecordState {
            hosted_zone_id: "/hostedzone/Z".into(),
            name: name.into(),
            record_type: "A".into(),
            ttl: 300,
            values: vec![value.into()],
        };
        let mut prior = crate::state::State::new("demo", "l".into());
        prior.records = vec![record("api.", "10.0.0.1"), record("old.", "10.0.0.2")];
        let change = |action, name: &str, value: &str| DnsChange {
            action,
            name: name.into(),
            record_type: "A".into(),
            ttl: 60,
            values: vec![value.into()],
        };
        let applied = [
            (
                "Z".to_string(),
                change(RecordAction::Upsert, "api.", "10.0.0.9"),
            ),
            (
                "Z".to_string(),
                change(RecordAction::Delete, "old.", "10.0.0.2"),
            ),
        ];
        let head = AuditHead {
            seq: 7,
            entry_sha256: "e".into(),
        };
        let next = next_state(
            &rolling_plan(),
            Some(&prior),
            None,
            &applied,
            ("210987654321", "eu-west-1"),
            head.clone(),
        );
        assert_eq!(next.records.len(), 1);
        assert_eq!(
            (
                next.records[0].name.as_str(),
                next.records[0].values.as_slice(),
                next.records[0].ttl
            ),
            ("api.", ["10.0.0.9".to_string()].as_slice(), 60)
        );
        assert_eq!(next.account_id.as_deref(), Some("210987654321"));
        assert_eq!(next.region.as_deref(), Some("eu-west-1"));
        assert_eq!(next.audit_head, Some(head.clone()));
        // Nothing applied (Route53 failed): the state keeps the records it had.
        let kept = next_state(&rolling_plan(), Some(&prior), None, &[], ("1", "r"), head);
        assert_eq!(kept.records, prior.records);
    }
}
