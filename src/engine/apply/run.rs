//! One apply under the lock: what its steps share, and one method per step of the README's
//! "What apply does, in order" from step 3 on. After the `started` entry every step ends in
//! an [`ApplyFailure`] or goes on, and the run's closing entry says which.

use std::collections::BTreeMap;
use std::time::Instant;

use super::failure::{ApplyFailure, nothing_started};
use super::lease::Lease;
use super::next_state::{issues_assets, next_state};
use super::stacks::{PoolStart, StackOutcome, check_change_set, check_pool_stacks, outcome};
use super::{ApplyEvent, ApplyOutcome, Observer, checks, now, records, stale, staleness};
use crate::audit::{AuditResult, NewEntry, Provenance};
use crate::aws::AwsContext;
use crate::aws::cloudformation::{CloudFormation, StackDescription, StackService};
use crate::aws::route53::RecordChange as DnsChange;
use crate::config::ClusterConfig;
use crate::engine::EngineError;
use crate::engine::backend::Backend;
use crate::engine::interrupt::Interrupt;
use crate::planfile::{Action, Plan, PlanKind};
use crate::render::Rendered;
use crate::state::store::Loaded;
use crate::state::{AuditHead, PendingAssets, StackState, StateError};

/// Who runs the apply, for the lock and the audit log.
pub(super) struct Actor<'a> {
    pub(super) arn: &'a str,
    pub(super) command: &'a str,
    pub(super) provenance: &'a Provenance,
}

/// What the run's steps share.
pub(super) struct Run<'a> {
    pub(super) config: &'a ClusterConfig,
    pub(super) context: &'a AwsContext,
    pub(super) backend: &'a Backend,
    pub(super) lease: &'a Lease<'a>,
    pub(super) plan: &'a Plan,
    /// What this directory renders with the plan's AMI and certificates (apply plans only).
    pub(super) rendered: Option<&'a Rendered>,
    pub(super) actor: Actor<'a>,
    pub(super) interrupt: &'a Interrupt,
    pub(super) observer: Observer<'a>,
    pub(super) cfn: CloudFormation,
    started: Instant,
    /// The state under the lock (step 3).
    loaded: Option<Loaded>,
    serial_before: u64,
    /// The pending assets this run clears once the state holds them: the ones it reuses from
    /// an interrupted apply, or its own.
    pending_etag: Option<String>,
    /// The hash of the state this run wrote, for its closing entry.
    written_sha256: Option<String>,
}

/// What steps 5 to 8 leave: the state serial written and, if Route53 failed, why.
struct Written {
    serial: u64,
    records_error: Option<String>,
}

/// An earlier apply that wrote the state and ended before its closing entry: the entry that
/// started it, and the hash of the state it wrote.
pub(super) type Unclosed = Option<(u64, String)>;

impl<'a> Run<'a> {
    #[allow(clippy::too_many_arguments)] // the run's parts, named once here
    pub(super) fn new(
        config: &'a ClusterConfig,
        context: &'a AwsContext,
        backend: &'a Backend,
        lease: &'a Lease<'a>,
        (plan, rendered): (&'a Plan, Option<&'a Rendered>),
        actor: Actor<'a>,
        interrupt: &'a Interrupt,
        observer: Observer<'a>,
    ) -> Run<'a> {
        Run {
            config,
            context,
            backend,
            lease,
            plan,
            rendered,
            actor,
            interrupt,
            observer,
            cfn: context.cloudformation(),
            started: Instant::now(),
            loaded: None,
            serial_before: 0,
            pending_etag: None,
            written_sha256: None,
        }
    }

    /// Steps 3 to 9.
    pub(super) async fn run(mut self, unclosed: Unclosed) -> Result<ApplyOutcome, EngineError> {
        self.check_under_lock().await?;
        self.close_unclosed_run(unclosed).await?;
        // Step 4. The state this run writes names this entry, so the log cannot lose it unseen.
        self.lease.keep_alive().await;
        let started = self
            .backend
            .append_audit(now(), self.entry(AuditResult::Started, None, None))
            .await?;
        let head = AuditHead {
            seq: started.seq,
            entry_sha256: started.entry_sha256.clone(),
        };
        // Step 9.
        match self.execute(head).await {
            Ok(Written {
                serial,
                records_error: None,
            }) => {
                self.finish(AuditResult::Succeeded, Some(serial), None)
                    .await
            }
            Ok(Written {
                serial,
                records_error: Some(error),
            }) => {
                let message = format!(
                    "the stack was applied but Route53 failed: {error}; the next plan shows the record change again"
                );
                self.finish(AuditResult::Failed, Some(serial), Some(message))
                    .await
            }
            Err(failure) => {
                let result = failure.result();
                self.finish(result, None, Some(failure.into_message()))
                    .await
            }
        }
    }

    /// Steps 5 to 8.
    async fn execute(&mut self, head: AuditHead) -> Result<Written, ApplyFailure> {
        self.check_change_sets().await?;
        let pools_deleted = self.delete_removed_pool_stacks().await?;
        let (stack, stack_changed) = self.change_cluster_stack(pools_deleted).await?;
        let pools_applied = self
            .change_pool_stacks(stack.as_ref(), stack_changed)
            .await?;
        // Step 7: records, with values known only now taken from the stack's outputs; after
        // the pool stacks, so a failed one leaves Route53 as the state records it.
        let outputs = stack
            .as_ref()
            .map(|s| s.outputs.clone())
            .unwrap_or_default();
        self.lease.keep_alive().await;
        let records = self.apply_records(&outputs).await;
        let serial = self
            .write_state(stack.as_ref(), &records.applied, pools_applied, head)
            .await?;
        if let Some(etag) = &self.pending_etag {
            // The state holds them now; a leftover is ignored once the serial moves on anyway.
            let _ = self.backend.store.clear_pending(etag).await;
        }
        Ok(Written {
            serial,
            records_error: records.error,
        })
    }

    fn recorded_pools(&self) -> Option<&'_ BTreeMap<String, StackState>> {
        self.loaded.as_ref().map(|l| &l.state.pool_stacks)
    }

    /// The cluster stack's change set, by its ARN when the plan made it: a change set of the
    /// same name on another stack is never executed.
    fn cluster_change_set(&self) -> String {
        let stack = &self.plan.stack;
        stack
            .change_set_arn
            .clone()
            .or(stack.change_set_name.clone())
            .unwrap_or_default()
    }

    /// Step 3: the state is still the one the plan was made against, and nothing from the
    /// plan is used before it is checked against what this run derives itself.
    async fn check_under_lock(&mut self) -> Result<(), EngineError> {
        let loaded = self.backend.load(self.config).await?;
        if let Some(why) = staleness(self.plan, loaded.as_ref()) {
            // A retry of this very plan that won the race is not "another apply".
            let already = super::applied_already(self.backend, self.plan, loaded.as_ref()).await;
            return Err(stale(already.unwrap_or(why)));
        }
        let prior = loaded.as_ref().map(|l| &l.state);
        let shipped = self.check_plan(prior).await?;
        self.pending_etag = shipped.map(|(_, etag)| etag);
        self.serial_before = prior.map_or(0, |s| s.serial);
        self.loaded = loaded;
        // The reviewed plan is kept beside the log: `history show` prints it from there.
        self.backend.keep_plan(self.plan).await?;
        Ok(())
    }

    /// Step 3's checks of what apply re-derives (see `checks`). Returns the assets an
    /// interrupted apply shipped, when the plan keeps some the state does not hold yet.
    async fn check_plan(
        &self,
        prior: Option<&crate::state::State>,
    ) -> Result<Option<(PendingAssets, String)>, EngineError> {
        let (config, plan) = (self.config, self.plan);
        let account = crate::engine::plan::stack::arn_account(self.actor.arn);
        checks::check_target(config, plan, account, prior)?;
        let shipped = if checks::keeps_unrecorded_certificates(plan, prior) {
            crate::engine::pending::proven(config, self.backend, prior).await?
        } else {
            None
        };
        checks::check_new_state(config, plan, prior, shipped.as_ref().map(|(p, _)| &p.tls))?;
        checks::check_pool_changes(config, plan)?;
        if let Some(rendered) = self.rendered {
            checks::check_rendered_templates(plan, rendered)?;
            checks::check_rendered_assets(config, plan, rendered)?;
        }
        let looked_up_zone = records::zone_to_look_up(config, plan, self.context).await?;
        checks::check_records(config, plan, prior, looked_up_zone.as_deref())?;
        Ok(shipped)
    }

    /// An earlier apply wrote the state and ended before its closing entry (killed, or the log
    /// write failed): its run is closed first, so the log again names the entry that wrote the
    /// state this run starts from; else a second such run in a row leaves a state no entry
    /// accounts for.
    async fn close_unclosed_run(&self, unclosed: Unclosed) -> Result<(), EngineError> {
        let (Some((started, sha256)), Some(state)) = (unclosed, self.loaded.as_ref()) else {
            return Ok(());
        };
        if state.sha256 != sha256 {
            return Ok(());
        }
        self.lease.keep_alive().await;
        let run = self.backend.audit.read(started).await?;
        let Actor {
            arn,
            command,
            provenance,
        } = &self.actor;
        self.backend
            .append_audit(
                now(),
                NewEntry {
                    actor: arn.to_string(),
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
                    provenance: Some((*provenance).clone()),
                },
            )
            .await?;
        Ok(())
    }

    /// This run's audit entry ending with `result`.
    fn entry(
        &self,
        result: AuditResult,
        serial_after: Option<u64>,
        message: Option<String>,
    ) -> NewEntry {
        let plan = self.plan;
        NewEntry {
            actor: self.actor.arn.to_string(),
            command: self.actor.command.to_string(),
            result: Some(result),
            plan_sha256: Some(plan.plan_sha256.clone()),
            change_set_arn: plan.stack.change_set_arn.clone(),
            state_serial_before: Some(self.serial_before),
            state_serial_after: serial_after,
            state_sha256_after: self.written_sha256.clone(),
            duration_ms: (result != AuditResult::Started)
                .then(|| self.started.elapsed().as_millis() as u64),
            summary: Some(plan.summary),
            message,
            provenance: Some(self.actor.provenance.clone()),
        }
    }

    /// Step 9: the entry that closes the run.
    async fn finish(
        &self,
        result: AuditResult,
        serial_after: Option<u64>,
        message: Option<String>,
    ) -> Result<ApplyOutcome, EngineError> {
        let new = self.entry(result, serial_after, message.clone());
        self.lease.keep_alive().await;
        let written = self.backend.append_audit(now(), new).await?;
        Ok(ApplyOutcome {
            result,
            serial_before: self.serial_before,
            serial_after: serial_after.unwrap_or(self.serial_before),
            message,
            audit_seq: written.seq,
            api_url: (self.plan.kind == PlanKind::Apply)
                .then(|| format!("https://{}", self.config.external_dns_name)),
        })
    }

    /// Step 5: all this run executes is checked before anything changes: the cluster stack's
    /// change set, each pool stack's (or the template apply makes one from), and each pool
    /// stack it deletes.
    async fn check_change_sets(&self) -> Result<(), ApplyFailure> {
        let plan = self.plan;
        if plan.kind == PlanKind::Apply && plan.stack.action != Action::NoOp {
            let expected_template = plan.stack.template_sha256.clone().unwrap_or_default();
            check_change_set(
                &self.cfn,
                &plan.stack.name,
                plan.target.stack_id.as_ref(),
                &expected_template,
                &self.cluster_change_set(),
            )
            .await?;
        }
        check_pool_stacks(&self.cfn, self.config, plan, self.recorded_pools()).await
    }

    /// Step 6, first: pool stacks go first on destroy, and a removed pool's before the
    /// cluster stack changes (it may remove the subnets the pool runs in). Returns how many
    /// were deleted.
    async fn delete_removed_pool_stacks(&mut self) -> Result<usize, ApplyFailure> {
        let mut deleted = 0;
        for pool in self
            .plan
            .pool_stacks
            .iter()
            .filter(|p| p.stack.action == Action::Delete)
        {
            // By the id the state records; by name only what destroy found unrecorded
            // (checked in step 5 to be this cluster's name for the pool).
            let target = self
                .recorded_pools()
                .and_then(|r| r.get(&pool.pool))
                .map(|s| s.id.clone().unwrap_or_else(|| s.name.clone()))
                .unwrap_or_else(|| pool.stack.name.clone());
            // An interrupt stops apply before each stack it would change, never one that is
            // changing.
            if self.interrupt.fired() {
                let what = format!("pool stack {target} was deleted");
                return Err(ApplyFailure::Interrupted(match deleted {
                    0 => nothing_started(&what),
                    n => format!(
                        "interrupted before {what}, after {n} pool stack(s) were deleted; plan again to see what is left"
                    ),
                }));
            }
            deleted += 1;
            self.delete_stack(&target).await?;
        }
        Ok(deleted)
    }

    /// Step 6 for the cluster stack: executes the reviewed change set, or deletes the stack
    /// on destroy, and follows it. Returns the stack as it now is and whether it changed.
    async fn change_cluster_stack(
        &mut self,
        pools_deleted: usize,
    ) -> Result<(Option<StackDescription>, bool), ApplyFailure> {
        let plan = self.plan;
        let followed = match (plan.kind, plan.stack.action) {
            (_, Action::NoOp) => {
                return Ok((self.cfn.describe_stack(&plan.stack.name).await?, false));
            }
            (PlanKind::Destroy, _) => self.delete_cluster_stack(pools_deleted).await?,
            (PlanKind::Apply, _) => self.execute_cluster_change_set().await?,
        };
        match followed {
            StackOutcome::Done(description) => Ok((description, true)),
            StackOutcome::Failed(failure) => Err(failure),
            StackOutcome::Interrupted => Err(ApplyFailure::Interrupted(format!(
                "interrupted while waiting; stack {} continues in CloudFormation and `kube-aws status` follows it ({} was {}); plan again once it is done",
                plan.stack.name,
                match plan.kind {
                    PlanKind::Destroy => "its deletion".to_string(),
                    PlanKind::Apply => format!("change set {}", self.cluster_change_set()),
                },
                match plan.kind {
                    PlanKind::Destroy => "started",
                    PlanKind::Apply => "executed",
                },
            ))),
        }
    }

    async fn delete_cluster_stack(
        &mut self,
        pools_deleted: usize,
    ) -> Result<StackOutcome, ApplyFailure> {
        (self.observer)(ApplyEvent::Step("deleting the stack"));
        // By the id the state records: a name could reach another stack of that name. A
        // deleted stack is only describable by its id, not its name.
        let target = self
            .loaded
            .as_ref()
            .and_then(|l| l.state.stack.as_ref())
            .and_then(|s| s.id.clone())
            .unwrap_or_else(|| self.plan.stack.name.clone());
        let id = match self.cfn.describe_stack(&target).await? {
            Some(d) => d.id,
            None => target.clone(),
        };
        let last = self.last_event_id(&id).await;
        if self.interrupt.fired() {
            return Err(ApplyFailure::Interrupted(match pools_deleted {
                0 => nothing_started(&format!("stack {id} was deleted")),
                n => format!(
                    "interrupted before stack {id} was deleted, after its {n} pool stack(s) were; plan again to see what is left"
                ),
            }));
        }
        if let Some(why) = self.lease.lost_before_change().await {
            return Err(ApplyFailure::Refused(why));
        }
        self.cfn.delete_stack(&id).await?;
        Ok(self.follow(&id, last).await?)
    }

    async fn execute_cluster_change_set(&mut self) -> Result<StackOutcome, ApplyFailure> {
        let plan = self.plan;
        let stack_name = &plan.stack.name;
        let change_set = self.cluster_change_set();
        (self.observer)(ApplyEvent::Step(&format!(
            "executing change set {change_set}"
        )));
        let last = self.last_event_id(stack_name).await;
        if self.interrupt.fired() {
            return Err(ApplyFailure::Interrupted(nothing_started(&format!(
                "change set {change_set} was executed"
            ))));
        }
        // The last moment to find out the lock is gone: after this, AWS changes.
        if let Some(why) = self.lease.lost_before_change().await {
            return Err(ApplyFailure::Refused(why));
        }
        // Certificates this plan issued ship with the change set: kept aside first, so a run
        // that dies before the state write does not lose them (the next plan reuses them).
        if issues_assets(plan) {
            self.keep_issued_assets_aside().await?;
        }
        self.cfn.execute_change_set(stack_name, &change_set).await?;
        Ok(self.follow(stack_name, last).await?)
    }

    async fn keep_issued_assets_aside(&mut self) -> Result<(), ApplyFailure> {
        let plan = self.plan;
        let pending = PendingAssets {
            format_version: 1,
            lineage: self.loaded.as_ref().map(|l| l.state.lineage.clone()),
            prior_serial: self.serial_before,
            plan_sha256: plan.plan_sha256.clone(),
            change_set_arn: plan.stack.change_set_arn.clone(),
            written: now()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            tls: plan.new_state.tls.clone(),
        };
        match self
            .backend
            .store
            .put_pending(&pending, &self.lease.current())
            .await
        {
            Ok(etag) => {
                self.pending_etag = Some(etag);
                Ok(())
            }
            Err(e) => Err(ApplyFailure::Refused(format!(
                "the certificates this plan issues could not be kept aside before execution ({e}); nothing was executed"
            ))),
        }
    }

    /// Step 6 for the pool stacks that are created or updated: every one starts before any
    /// is followed, so CloudFormation updates them side by side (a rolling update each); then
    /// each is followed to its end. Returns each applied pool's stack id and parameters.
    async fn change_pool_stacks(
        &mut self,
        cluster: Option<&StackDescription>,
        cluster_changed: bool,
    ) -> Result<BTreeMap<String, AppliedPool>, ApplyFailure> {
        let plan = self.plan;
        let changed: Vec<_> = plan
            .pool_stacks
            .iter()
            .filter(|p| matches!(p.stack.action, Action::Create | Action::Update))
            .collect();
        if changed.is_empty() {
            return Ok(BTreeMap::new());
        }
        if self.interrupt.fired() {
            return Err(ApplyFailure::Interrupted(match cluster_changed {
                true => format!(
                    "interrupted before the pool stacks were started; stack {} was applied, so plan again: it shows the pool stacks still to apply",
                    plan.stack.name
                ),
                false => nothing_started("the pool stacks were started"),
            }));
        }
        // What the pool stacks take as parameters: the cluster stack's resources as they now
        // are.
        let cluster_resources = self
            .cfn
            .physical_ids(cluster.map_or(&plan.stack.name, |c| &c.id))
            .await?;
        let mut applied = BTreeMap::new();
        let mut executing = Vec::new();
        let mut failure = None;
        for pool in changed {
            // Starting one may take a while (it may make a change set): asked again before each.
            if self.interrupt.fired() {
                failure = Some(ApplyFailure::Interrupted(format!(
                    "interrupted before pool stack {} was started; the pool stacks started before it continue in CloudFormation (`kube-aws status` follows them); plan again once they are done: it shows what is left",
                    pool.stack.name
                )));
                break;
            }
            self.lease.keep_alive().await;
            let recorded_id = self
                .recorded_pools()
                .and_then(|r| r.get(&pool.pool))
                .and_then(|s| s.id.clone());
            match self
                .start_pool_stack(pool, &cluster_resources, recorded_id.as_deref())
                .await
            {
                Ok(PoolStart::Executing {
                    last_event,
                    parameters,
                }) => executing.push((pool, last_event, parameters)),
                Ok(PoolStart::AlreadyApplied { id, parameters }) => {
                    applied.insert(pool.pool.clone(), (id, parameters));
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        for (pool, last_event, parameters) in executing {
            let stack_name = &pool.stack.name;
            let followed = self.follow(stack_name, last_event).await;
            let interrupted = matches!(followed, Ok(StackOutcome::Interrupted));
            match outcome(followed, stack_name) {
                Ok(done) => {
                    applied.insert(pool.pool.clone(), (done.map(|d| d.id), parameters));
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
        match failure {
            Some(failure) => Err(failure),
            None => Ok(applied),
        }
    }

    /// Step 8: the new state; on a record failure it keeps the old records, so the next plan
    /// shows the change again. Returns the serial written.
    async fn write_state(
        &mut self,
        stack: Option<&StackDescription>,
        applied_records: &[(String, DnsChange)],
        pools_applied: BTreeMap<String, AppliedPool>,
        head: AuditHead,
    ) -> Result<u64, ApplyFailure> {
        let mut next = next_state(
            self.plan,
            self.loaded.as_ref().map(|l| &l.state),
            stack,
            applied_records,
            // Where the cluster lives is what this run knows, not what the plan says.
            (
                crate::engine::plan::stack::arn_account(self.actor.arn),
                &self.config.region,
            ),
            head,
        );
        for (pool, (id, parameters)) in pools_applied {
            if let Some(recorded) = next.pool_stacks.get_mut(&pool) {
                recorded.id = id.or(recorded.id.take());
                recorded.parameters = parameters;
            }
        }
        (self.observer)(ApplyEvent::Step("writing the state"));
        self.lease.keep_alive().await;
        let lost = self.lease.lost();
        match self
            .backend
            .store
            .persist(&next, self.loaded.as_ref(), &self.lease.current())
            .await
        {
            Ok(written) => {
                self.written_sha256 = Some(written.sha256.clone());
                Ok(written.state.serial)
            }
            // Whoever removed the lock may be writing now: the state is theirs to write.
            Err(StateError::LockLost { id }) => Err(ApplyFailure::LockLost(format!(
                "{}; the stack was applied but the state was not written. Make sure no other run is active, then run `kube-aws plan`: it shows what the stack now differs from the state",
                lost.unwrap_or_else(|| format!(
                    "the state lock {id} was removed or taken over while this apply ran"
                ))
            ))),
            // The stack changed but the state could not be written: the audit log still says
            // how this run ended.
            Err(e) => Err(ApplyFailure::Failed(format!(
                "lock lost or state write failed after the stack was applied ({e}); the state is unchanged, so run `kube-aws plan`: it shows what the stack now differs from the state"
            ))),
        }
    }
}

/// An applied pool stack: its id (when known) and the parameters it was applied with.
type AppliedPool = (Option<String>, BTreeMap<String, String>);
