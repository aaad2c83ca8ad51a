//! `status`: what is deployed, who holds the lock, what was last done, and what an unfinished
//! apply left behind.

use std::path::Path;

use serde::Serialize;

use super::{AwsOptions, EngineError, open_reading};
use crate::audit::AuditEntry;
use crate::aws::cloudformation::{ExecutionStatus, StackDescription, StackEvent, StackService};
use crate::aws::route53::DnsService;
use crate::state::SecretsRotation;
use crate::state::lock::Locker;
use crate::state::store::LockInfo;

#[derive(Debug, Clone, Serialize)]
pub struct RecordStatus {
    pub name: String,
    pub record_type: String,
    pub in_state: Vec<String>,
    pub live: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct Status {
    pub stack_name: String,
    pub stack: Option<StackDescription>,
    /// Each pool stack (`stackPerPool`) the state records or cluster.yaml names: its name, and
    /// what CloudFormation says of it.
    pub pool_stacks: Vec<(String, Option<StackDescription>)>,
    pub events: Vec<StackEvent>,
    pub records: Vec<RecordStatus>,
    pub lock: Option<LockInfo>,
    pub lock_expired: bool,
    pub serial: Option<u64>,
    /// An unfinished Secrets key rotation the state records.
    pub secrets_rotation: Option<SecretsRotation>,
    pub last_audit: Option<AuditEntry>,
    /// An apply that recorded `started` and nothing after it, while nobody holds the lock: the
    /// process died mid-run.
    pub unfinished_apply: Option<UnfinishedApply>,
}

/// What an apply that never closed its run left behind, as far as status can tell.
#[derive(Debug, Clone)]
pub struct UnfinishedApply {
    /// Its `started` audit entry.
    pub started: AuditEntry,
    /// Someone holds the lock with its lease running: the apply may still be running.
    pub lock_held: bool,
    /// The change set it was to execute, if it made one, and what became of it.
    pub change_set: Option<ChangeSetFate>,
    /// How many certificates and keys it shipped were kept aside for the next plan to reuse.
    pub kept_certificates: Option<usize>,
}

/// What CloudFormation says of an unfinished apply's change set.
#[derive(Debug, Clone)]
pub struct ChangeSetFate {
    pub arn: String,
    /// Its execution status, or `None` when CloudFormation no longer has it (executed, or
    /// deleted).
    pub execution: Option<ExecutionStatus>,
}

pub async fn status(dir: &Path, aws: &AwsOptions) -> Result<Status, EngineError> {
    let (config, context, backend) = open_reading(dir, aws).await?;
    let loaded = backend.load(&config).await?;
    let cfn = context.cloudformation();
    let stack_name = config.stack_name();
    let stack = cfn.describe_stack(&stack_name).await?;
    let events = match &stack {
        Some(_) => cfn
            .events_since(&stack_name, None)
            .await?
            .into_iter()
            .take(10)
            .collect(),
        None => Vec::new(),
    };
    // One request per pool stack: status is asked for, unlike a plan.
    let mut pool_names: std::collections::BTreeSet<String> = loaded
        .iter()
        .flat_map(|l| l.state.pool_stacks.values().map(|s| s.name.clone()))
        .collect();
    if config.stack_per_pool {
        pool_names.extend(
            config
                .worker_pools()
                .iter()
                .map(|p| config.pool_stack_name(&p.name)),
        );
    }
    let mut pool_stacks = Vec::new();
    for name in pool_names {
        let described = cfn.describe_stack(&name).await?;
        pool_stacks.push((name, described));
    }
    let dns = context.route53();
    let mut records = Vec::new();
    for r in loaded
        .as_ref()
        .map(|l| l.state.records.clone())
        .unwrap_or_default()
    {
        let live = dns
            .record(&r.hosted_zone_id, &r.name, &r.record_type)
            .await?;
        records.push(RecordStatus {
            name: r.name,
            record_type: r.record_type,
            in_state: r.values,
            live: live.map(|l| l.values),
        });
    }
    let lock = backend.store.locker.current().await?;
    let lock_expired = lock
        .as_ref()
        .is_some_and(|l| l.expired_at(time::OffsetDateTime::now_utc()));
    let recent = backend.audit.newest(10).await?;
    let last_audit = recent.first().cloned();
    let mut unfinished_apply = None;
    if let Some(e) = unfinished(&recent) {
        let change_set = match &e.change_set_arn {
            None => None,
            Some(arn) => Some(ChangeSetFate {
                arn: arn.clone(),
                execution: cfn
                    .describe_change_set(&stack_name, arn)
                    .await
                    .ok()
                    .map(|cs| cs.execution_status),
            }),
        };
        let prior = loaded.as_ref().map(|l| &l.state);
        let kept_certificates = backend
            .store
            .pending_for(prior)
            .await
            .map(|(pending, _)| pending)
            .filter(|p| Some(&p.plan_sha256) == e.plan_sha256.as_ref())
            .map(|p| p.tls.len());
        unfinished_apply = Some(UnfinishedApply {
            started: e.clone(),
            lock_held: lock.is_some() && !lock_expired,
            change_set,
            kept_certificates,
        });
    }
    Ok(Status {
        stack_name,
        stack,
        pool_stacks,
        events,
        records,
        lock,
        lock_expired,
        secrets_rotation: loaded.as_ref().and_then(|l| l.state.secrets_rotation),
        serial: loaded.map(|l| l.state.serial),
        last_audit,
        unfinished_apply,
    })
}

/// The newest `started` entry (of `newest`, newest first) that no later entry closes: a later
/// entry of the same plan with another result closes it, and a later successful apply
/// supersedes everything before it.
fn unfinished(newest: &[AuditEntry]) -> Option<&AuditEntry> {
    use crate::audit::AuditResult;
    let mut closed = std::collections::BTreeSet::new();
    for entry in newest {
        match entry.result {
            AuditResult::Started if !closed.contains(&entry.plan_sha256) => return Some(entry),
            AuditResult::Succeeded if entry.plan_sha256.is_some() => return None,
            _ => {
                closed.insert(entry.plan_sha256.clone());
            }
        }
    }
    None
}
