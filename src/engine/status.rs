//! `status`: what is deployed, who holds the lock, what was last done, and what an unfinished
//! apply left behind.

use std::path::Path;

use serde::Serialize;

use super::{AwsOptions, EngineError, open_reading};
use crate::audit::AuditEntry;
use crate::aws::cloudformation::{ExecutionStatus, StackDescription, StackEvent, StackService};
use crate::aws::route53::DnsService;
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
    pub last_audit: Option<AuditEntry>,
    /// An apply that recorded `started` and nothing after it, while nobody holds the lock: the
    /// process died mid-run. What it means and what to do.
    pub unfinished_apply: Option<String>,
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
            None => "made no change set".to_string(),
            Some(arn) => {
                let fate = match cfn.describe_change_set(&stack_name, arn).await {
                    Ok(cs) => match cs.execution_status {
                        ExecutionStatus::Available => "was never executed".to_string(),
                        ExecutionStatus::ExecuteComplete => "was executed".to_string(),
                        ExecutionStatus::ExecuteInProgress => "is executing".to_string(),
                        ExecutionStatus::ExecuteFailed => "failed to execute".to_string(),
                        other => format!("is {other}"),
                    },
                    Err(_) => "is gone (executed, or deleted)".to_string(),
                };
                format!("change set {arn} {fate}")
            }
        };
        let prior = loaded.as_ref().map(|l| &l.state);
        let kept = backend
            .store
            .pending_for(prior)
            .await
            .map(|(pending, _)| pending)
            .filter(|p| Some(&p.plan_sha256) == e.plan_sha256.as_ref())
            .map_or(String::new(), |p| {
                format!(
                    " The {} certificates and keys it shipped were kept aside; the next plan reuses them rather than issuing new ones.",
                    p.tls.len()
                )
            });
        unfinished_apply = Some(format!(
            "apply #{} (`{}` by {}, {}) recorded `started` and nothing after it: {}. Its {}, {}; the state is at serial {}.{kept} Run `kube-aws plan` to see what is left to converge.",
            e.seq,
            e.command,
            e.actor,
            e.time,
            if lock.is_some() && !lock_expired {
                "it is still running, or it stopped while holding the lock"
            } else {
                "it stopped mid-run"
            },
            change_set,
            match &stack {
                Some(s) => format!("the stack is {}", s.status),
                None => "there is no stack".into(),
            },
            loaded.as_ref().map_or(0, |l| l.state.serial),
        ));
    }
    Ok(Status {
        stack_name,
        stack,
        pool_stacks,
        events,
        records,
        lock,
        lock_expired,
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
