//! The stack half of a plan: checks the live stack is the one the state records, creates and
//! describes the change set (uploading what the stack reads from S3 first), and says what the
//! stack would do offline.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Progress, artifacts, changes};
use crate::aws::AwsContext;
use crate::aws::cloudformation::{
    ChangeSetDescription, ChangeSetRequest, ChangeSetStatus, StackService,
};
use crate::config::ClusterConfig;
use crate::engine::EngineError;
use crate::hash::{canonical_json, sha256_hex};
use crate::planfile::{Action, PoolStackChange, PriorBinding, StackChange};
use crate::render::{self, Rendered};
use crate::state::State;

/// What an offline plan says it did not do for the stack.
pub const OFFLINE_SKIPPED: &str = "CloudFormation: no change set was created or described";

/// What planning the stack found out.
#[derive(Debug)]
pub struct StackPlan {
    pub change: StackChange,
    /// The live stack's ARN, or the state's when offline.
    pub stack_id: Option<String>,
    /// The template the live stack runs, read only when the stack changes.
    pub deployed_template: Option<Value>,
    /// The live stack's outputs.
    pub outputs: BTreeMap<String, String>,
    /// What was not looked at (offline).
    pub skipped: Option<String>,
}

/// The region and account an ARN names (`arn:PARTITION:SERVICE:REGION:ACCOUNT:…`), when it is
/// one of `service`'s.
fn arn_place<'a>(arn: &'a str, service: &str) -> Option<(&'a str, &'a str)> {
    let mut parts = arn.split(':');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("arn"), Some(_), Some(s), Some(region), Some(account)) if s == service => {
            Some((region, account))
        }
        _ => None,
    }
}

/// The account a stack ARN names.
pub(crate) fn stack_account(arn: &str) -> Option<String> {
    arn_place(arn, "cloudformation").map(|(_, account)| account.to_string())
}

/// The account an ARN names (its fifth field), whatever the service.
pub(crate) fn arn_account(arn: &str) -> &str {
    arn.split(':').nth(4).unwrap_or_default()
}

/// Plans the stack: offline from the state alone, online through a change set.
#[allow(clippy::too_many_arguments)] // one call site; the pieces are the plan's inputs
pub async fn plan_stack(
    dir: &std::path::Path,
    config: &ClusterConfig,
    prior: Option<&State>,
    binding: &PriorBinding,
    online: Option<&AwsContext>,
    rendered: &Rendered,
    new_template: &Value,
    progress: Progress<'_>,
) -> Result<StackPlan, EngineError> {
    let template_sha256 = sha256_hex(&rendered.stack_template);
    let recorded = prior.and_then(|s| s.stack.as_ref());
    let mut plan = StackPlan {
        change: StackChange {
            name: config.stack_name(),
            action: Action::NoOp,
            change_set_name: None,
            change_set_arn: None,
            template_sha256: Some(template_sha256.clone()),
            template_url: None,
            resource_changes: Vec::new(),
        },
        stack_id: recorded.and_then(|s| s.id.clone()),
        deployed_template: None,
        outputs: BTreeMap::new(),
        skipped: None,
    };
    // What the stack was last applied with: its template and its tags.
    let applied = recorded.map(|s| (&s.template_sha256, &s.tags));
    let unchanged = applied == Some((&template_sha256, &config.stack_tags));
    let Some(context) = online else {
        plan.skipped = Some(OFFLINE_SKIPPED.into());
        plan.change.action = match (applied, unchanged) {
            (None, _) => Action::Create,
            (Some(_), false) => Action::Update,
            (Some(_), true) => Action::NoOp,
        };
        return Ok(plan);
    };
    let cfn = context.cloudformation();
    let stack_name = &plan.change.name;
    progress("describing the stack");
    let live = cfn.describe_stack(stack_name).await?;
    // A stack only in REVIEW_IN_PROGRESS is an earlier plan's change set for a stack deleted
    // outside kube-aws, not a stack: planned as an absent one.
    let live_stack = match &live {
        Some(s) => usable(stack_name, s)?.then_some(s),
        None => None,
    };
    check_stack_binding(
        config,
        stack_name,
        recorded.and_then(|s| s.id.as_deref()),
        live_stack.map(|s| s.id.as_str()),
        context,
    )
    .await?;
    if let Some(s) = &live {
        plan.stack_id = Some(s.id.clone());
        plan.outputs = s.outputs.clone();
    }
    // Before any change set: the version the stack runs may be newer than the state's.
    let skew = super::live_version_findings(dir, config, prior, &plan.outputs);
    if !skew.is_empty() {
        return Err(EngineError::Invalid { findings: skew });
    }
    let exists = live_stack.is_some();
    if exists && unchanged {
        // The stack stays as it is, but a replaced controller fetches its add-ons again: put
        // back any object that was deleted since (one listing).
        artifacts::restore_missing_addons(config, context, rendered).await?;
        return Ok(plan);
    }
    if exists {
        progress("reading the deployed template");
        let body = cfn.get_template(stack_name, None).await?;
        plan.deployed_template = serde_json::from_str(&body).ok();
    }
    let change_set_name = change_set_name(config, binding, &template_sha256);
    let body = render::submitted_stack(&rendered.stack_template);
    progress("uploading the add-on manifests");
    let template_url =
        artifacts::upload_artifacts(config, context, rendered, &template_sha256, &body).await?;
    let request = ChangeSetRequest {
        stack_name: stack_name.clone(),
        change_set_name: change_set_name.clone(),
        create: !exists,
        template_body: template_url.is_none().then_some(body),
        template_url: template_url.clone(),
        tags: config.stack_tags.clone(),
        parameters: BTreeMap::new(),
        description: format!(
            "kube-aws plan for {} (state serial {})",
            config.cluster_name, binding.serial
        ),
    };
    let (created_id, described) = make_change_set(&cfn, &request, progress).await?;
    if let Some(id) = created_id {
        plan.stack_id = Some(id);
    }
    match described {
        None => {}
        Some(described) => {
            plan.change.action = if exists {
                Action::Update
            } else {
                Action::Create
            };
            plan.change.change_set_name = Some(change_set_name);
            plan.change.change_set_arn = Some(described.arn.clone());
            plan.change.template_url = template_url;
            if let Some(id) = described.stack_id.clone() {
                plan.stack_id = Some(id);
            }
            plan.change.resource_changes = changes::resource_changes(
                &described.changes,
                plan.deployed_template.as_ref(),
                new_template,
            );
        }
    }
    Ok(plan)
}

/// Plans each worker pool's own stack (`stackPerPool`). A pool stack whose template and tags
/// are the state's is unchanged and asked nothing, so a no-op plan makes no request per pool.
/// A changed one gets its change set now when the cluster stack stays as it is (the physical
/// ids of its resources, the pool's parameters, are known); otherwise apply makes it after the
/// cluster stack, from the template the plan carries. A pool the state records but the config no longer has is
/// deleted.
pub async fn plan_pool_stacks(
    config: &ClusterConfig,
    prior: Option<&State>,
    binding: &PriorBinding,
    online: Option<&AwsContext>,
    rendered: &Rendered,
    cluster: &StackPlan,
    progress: Progress<'_>,
) -> Result<PoolStacksPlan, EngineError> {
    let recorded = prior.map(|s| &s.pool_stacks);
    let mut planned = Vec::new();
    let mut settled = BTreeMap::new();
    let mut deployed_templates = Vec::new();
    // The cluster stack's resources, listed once, when a pool stack's change set needs them.
    let mut cluster_resources: Option<BTreeMap<String, String>> = None;
    for (pool, rendered_pool) in &rendered.pool_stacks {
        let template_sha256 = sha256_hex(&rendered_pool.template);
        let recorded = recorded.and_then(|r| r.get(pool));
        let mut change = PoolStackChange {
            pool: pool.clone(),
            stack: StackChange::without_change_set(
                rendered_pool.stack_name.clone(),
                Action::NoOp,
                Some(template_sha256.clone()),
            ),
            parameters: rendered_pool.parameters.clone(),
            template: None,
        };
        let moved =
            changes::moving_parameters(&rendered_pool.parameters, &cluster.change.resource_changes);
        let applied = recorded.map(|s| (&s.template_sha256, &s.tags));
        if applied == Some((&template_sha256, &config.stack_tags)) && moved.is_empty() {
            planned.push(change);
            continue;
        }
        change.stack.action = if recorded.is_some() {
            Action::Update
        } else {
            Action::Create
        };
        let Some(context) = online else {
            planned.push(change);
            continue;
        };
        let cfn = context.cloudformation();
        change.template = Some(rendered_pool.template.clone());
        let new_template: Value = serde_json::from_str(&rendered_pool.template).unwrap_or_default();
        progress(&format!("describing stack {}", rendered_pool.stack_name));
        let live = match live_stack(&cfn, &rendered_pool.stack_name).await {
            // Only this pool's stack: the rest of the cluster is fine.
            Err(EngineError::StackFailedCreate { stack, status }) => {
                return Err(EngineError::PoolStackFailedCreate { stack, status });
            }
            other => other?,
        };
        check_stack_binding(
            config,
            &rendered_pool.stack_name,
            recorded.and_then(|s| s.id.as_deref()),
            live.as_ref().map(|s| s.id.as_str()),
            context,
        )
        .await?;
        if recorded.is_none() {
            refuse_foreign_pool_stack(config, pool, &rendered_pool.stack_name, live.as_ref())?;
        }
        // What the pool stack runs now, to diff against.
        let deployed: Option<Value> = match &live {
            Some(_) => {
                let body = cfn.get_template(&rendered_pool.stack_name, None).await?;
                serde_json::from_str(&body).ok()
            }
            None => None,
        };
        deployed_templates.extend(deployed.clone());
        if live.is_none() {
            change.stack.action = Action::Create;
        }
        if cluster.stack_id.is_none() || !moved.is_empty() {
            // Its parameters are what the cluster stack's resources are after apply: apply
            // makes the change set, from this template. The plan shows the template's diff.
            change.stack.resource_changes =
                changes::forecast_from_templates(deployed.as_ref(), &new_template);
            planned.push(change);
            continue;
        }
        // The cluster stack keeps every resource the pool stack names as it is: the change
        // set can be made now, with the parameters as they stay.
        if cluster_resources.is_none() {
            let stack = cluster.stack_id.as_deref().unwrap_or(&cluster.change.name);
            progress(&format!("listing the resources of stack {stack}"));
            cluster_resources = Some(cfn.physical_ids(stack).await?);
        }
        let parameters = pool_parameters(
            &rendered_pool.parameters,
            cluster_resources.as_ref().expect("listed above"),
        )?;
        let request = PoolChangeSet {
            stack_name: &rendered_pool.stack_name,
            template: &rendered_pool.template,
            template_sha256: &template_sha256,
            parameters,
            exists: live.is_some(),
        };
        let name = pool_change_set_name(config, binding, &request);
        let Some((described, template_url)) =
            create_pool_change_set(config, context, &request, &name, binding.serial, progress)
                .await?
        else {
            // It already runs this template with these parameters (an apply that stopped
            // before writing the state made it so): the state learns its id and parameters.
            if let Some(live) = &live {
                settled.insert(pool.clone(), (live.id.clone(), request.parameters.clone()));
            }
            change.stack.action = Action::NoOp;
            planned.push(change);
            continue;
        };
        change.stack.action = if live.is_some() {
            Action::Update
        } else {
            Action::Create
        };
        change.stack.change_set_name = Some(name);
        change.stack.change_set_arn = Some(described.arn.clone());
        change.stack.template_url = template_url;
        change.stack.resource_changes =
            changes::resource_changes(&described.changes, deployed.as_ref(), &new_template);
        planned.push(change);
    }
    planned.extend(plan_reused_pools(config, recorded, online, rendered, cluster).await?);
    // Pools removed from cluster.yaml: their stacks go, before the cluster stack changes (it
    // may remove what they use).
    for (pool, stack) in recorded.into_iter().flatten() {
        if !rendered.pool_stacks.contains_key(pool) && !rendered.reused_pools.contains(pool) {
            planned.push(PoolStackChange::of_recorded(pool, stack, Action::Delete));
        }
    }
    planned.sort_by(|a, b| a.pool.cmp(&b.pool));
    Ok(PoolStacksPlan {
        changes: planned,
        settled,
        deployed_templates,
    })
}

/// A stack of a pool's name the state does not record is this cluster's only if its template
/// says so (an apply that failed before writing the state made it); otherwise it is another's
/// (a cluster named `<this>-pool-<name>`), never to be changed.
fn refuse_foreign_pool_stack(
    config: &ClusterConfig,
    pool: &str,
    stack_name: &str,
    live: Option<&crate::aws::cloudformation::StackDescription>,
) -> Result<(), EngineError> {
    match live {
        Some(found) => {
            let expected = pool_stack_description(config, pool);
            if found.description.as_deref() != Some(expected.as_str()) {
                return Err(EngineError::ForeignPoolStack {
                    stack: stack_name.to_string(),
                    live: found.id.clone(),
                    expected,
                });
            }
            Ok(())
        }
        None => Ok(()),
    }
}

/// Pools not rendered because their key is the state's: unchanged, unless the cluster stack
/// moves one of their parameters. Then the template they run (read back, and held to the hash
/// the state records) is the one apply makes their change set from.
async fn plan_reused_pools(
    config: &ClusterConfig,
    recorded: Option<&BTreeMap<String, crate::state::StackState>>,
    online: Option<&AwsContext>,
    rendered: &Rendered,
    cluster: &StackPlan,
) -> Result<Vec<PoolStackChange>, EngineError> {
    let mut planned = Vec::new();
    for pool in &rendered.reused_pools {
        let Some(recorded) = recorded.and_then(|r| r.get(pool)) else {
            continue;
        };
        let mut change = PoolStackChange::of_recorded(pool, recorded, Action::NoOp);
        let moved =
            changes::moving_parameters(&change.parameters, &cluster.change.resource_changes);
        let needs_update = !moved.is_empty() || recorded.tags != config.stack_tags;
        if let (true, Some(context)) = (needs_update, online) {
            let cfn = context.cloudformation();
            let body = cfn.get_template(&recorded.name, None).await?;
            let template = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| crate::hash::canonical_json_pretty(&v).ok())
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .unwrap_or(body);
            if sha256_hex(&template) != recorded.template_sha256 {
                return Err(EngineError::PoolTemplateDrifted {
                    stack: recorded.name.clone(),
                });
            }
            change.stack.action = Action::Update;
            change.template = Some(template);
        } else if needs_update {
            change.stack.action = Action::Update;
        }
        planned.push(change);
    }
    Ok(planned)
}

/// What planning the pool stacks found.
pub struct PoolStacksPlan {
    pub changes: Vec<PoolStackChange>,
    /// Pool stacks found already running what the plan would apply, by pool: their id and
    /// parameters, for the state (which did not record them).
    pub settled: BTreeMap<String, (String, BTreeMap<String, String>)>,
    /// What the changed pool stacks run now: where their cloud-configs' deployed text is.
    pub deployed_templates: Vec<Value>,
}

/// The `Description` the stack template gives a pool stack, which tells this cluster's pool
/// stacks from others of the same name.
pub(crate) fn pool_stack_description(config: &ClusterConfig, pool: &str) -> String {
    format!(
        "kube-aws node pool {pool} of cluster {}",
        config.cluster_name
    )
}

/// A pool stack's parameter values: the physical ids of the cluster stack's resources of the
/// same names (listed, not exported, so the cluster stack stays free to change them).
pub(crate) fn pool_parameters(
    names: &[String],
    cluster_resources: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, EngineError> {
    names
        .iter()
        .map(|name| match cluster_resources.get(name) {
            Some(value) => Ok((name.clone(), value.clone())),
            None => Err(EngineError::PoolParameterMissing {
                resource: name.clone(),
            }),
        })
        .collect()
}

/// The stack as it is, or `None` when there is none (or only an earlier plan's change set for
/// one); refuses a stack that is busy or failed to create.
pub(crate) async fn live_stack<C: StackService>(
    cfn: &C,
    stack_name: &str,
) -> Result<Option<crate::aws::cloudformation::StackDescription>, EngineError> {
    match cfn.describe_stack(stack_name).await? {
        Some(s) if usable(stack_name, &s)? => Ok(Some(s)),
        _ => Ok(None),
    }
}

/// Whether a described stack is one to plan against: `false` for one only in
/// REVIEW_IN_PROGRESS (an earlier plan's CREATE change set, not a stack); refuses one that
/// failed to create or that CloudFormation is changing.
fn usable(
    stack_name: &str,
    stack: &crate::aws::cloudformation::StackDescription,
) -> Result<bool, EngineError> {
    if stack.status.is_review() {
        Ok(false)
    } else if stack.status.failed_create() {
        Err(EngineError::StackFailedCreate {
            stack: stack_name.to_string(),
            status: stack.status.clone(),
        })
    } else if stack.status.is_busy() {
        Err(EngineError::StackBusy {
            stack: stack_name.to_string(),
            status: stack.status.clone(),
        })
    } else {
        Ok(true)
    }
}

/// What a pool stack's change set is made of.
pub(crate) struct PoolChangeSet<'a> {
    pub stack_name: &'a str,
    pub template: &'a str,
    pub template_sha256: &'a str,
    pub parameters: BTreeMap<String, String>,
    pub exists: bool,
}

/// Creates a pool stack's change set and waits for it: at plan time, or at apply time for a
/// pool whose parameters were known only after the cluster stack. `None` when CloudFormation
/// finds nothing to change (the empty change set is deleted).
pub(crate) async fn create_pool_change_set(
    config: &ClusterConfig,
    context: &AwsContext,
    request: &PoolChangeSet<'_>,
    change_set_name: &str,
    serial: u64,
    progress: Progress<'_>,
) -> Result<Option<(ChangeSetDescription, Option<String>)>, EngineError> {
    let cfn = context.cloudformation();
    let body = render::submitted_stack(request.template);
    let template_url =
        artifacts::upload_template(config, context, request.template_sha256, &body).await?;
    let create = ChangeSetRequest {
        stack_name: request.stack_name.to_string(),
        change_set_name: change_set_name.to_string(),
        create: !request.exists,
        template_body: template_url.is_none().then_some(body),
        template_url: template_url.clone(),
        tags: config.stack_tags.clone(),
        parameters: request.parameters.clone(),
        description: format!(
            "kube-aws plan for {} (state serial {serial})",
            config.cluster_name
        ),
    };
    Ok(make_change_set(&cfn, &create, progress)
        .await?
        .1
        .map(|described| (described, template_url)))
}

/// Creates the change set `request` describes and waits for it, for the cluster stack and the
/// pool stacks alike: the stack id CloudFormation answered with, when it gave one, and the
/// change set, or `None` when CloudFormation found nothing to change (the empty change set is
/// deleted).
async fn make_change_set<C: StackService>(
    cfn: &C,
    request: &ChangeSetRequest,
    progress: Progress<'_>,
) -> Result<(Option<String>, Option<ChangeSetDescription>), EngineError> {
    let (stack, name) = (&request.stack_name, &request.change_set_name);
    progress(&format!("creating change set {name} for stack {stack}"));
    let created_id = match cfn.create_change_set(request).await {
        Ok((_, id)) if !id.is_empty() => Some(id),
        Ok(_) => None,
        // The same inputs were planned before: that change set is this plan's.
        Err(e) if e.code.as_deref() == Some("AlreadyExistsException") => None,
        Err(e) => return Err(e.into()),
    };
    let described = wait_for_change_set(cfn, stack, name, progress).await?;
    if described.is_none() {
        progress("no changes: deleting the empty change set");
        cfn.delete_change_set(stack, name).await?;
    }
    Ok((created_id, described))
}

/// A pool stack's change set name: like the cluster stack's, and bound to the stack and its
/// parameters too, so a change set made with other parameters is never taken for this one.
pub(crate) fn pool_change_set_name(
    config: &ClusterConfig,
    binding: &PriorBinding,
    request: &PoolChangeSet<'_>,
) -> String {
    let inputs = (
        binding,
        request.template_sha256,
        &config.stack_tags,
        request.stack_name,
        &request.parameters,
    );
    let digest = sha256_hex(canonical_json(&inputs).expect("plain data serialises"));
    format!("kube-aws-{}", &digest[..12])
}

/// The change set's name: the same inputs planned twice name the same change set, so a second
/// plan reuses the first's rather than piling up change sets.
pub(crate) fn change_set_name(
    config: &ClusterConfig,
    binding: &PriorBinding,
    template_sha256: &str,
) -> String {
    let inputs = (
        binding,
        template_sha256,
        &config.stack_tags,
        &config.cluster_name,
    );
    let digest = sha256_hex(canonical_json(&inputs).expect("plain data serialises"));
    format!("kube-aws-{}", &digest[..12])
}

/// Refuses to plan a stack other than the one the state records: another region, another
/// account's stack of the same name, or none at all where another account is asked. Without
/// this, credentials for the wrong account plan (and apply) a second cluster.
pub(super) async fn check_stack_binding(
    config: &ClusterConfig,
    stack: &str,
    recorded: Option<&str>,
    live: Option<&str>,
    context: &AwsContext,
) -> Result<(), EngineError> {
    let Some(recorded) = recorded else {
        return Ok(());
    };
    let Some((region, account)) = arn_place(recorded, "cloudformation") else {
        return Err(EngineError::NotAStackArn {
            recorded: recorded.to_string(),
        });
    };
    if region != config.region {
        return Err(EngineError::StateInOtherRegion {
            recorded: recorded.to_string(),
            region: region.to_string(),
            configured: config.region.clone(),
        });
    }
    match live {
        Some(id) if id == recorded => Ok(()),
        Some(id) => Err(EngineError::OtherStack {
            stack: stack.to_string(),
            live: id.to_string(),
            recorded: recorded.to_string(),
        }),
        None => {
            let caller = context
                .actor()
                .await
                .map_err(|source| EngineError::AccountUnknown {
                    recorded: recorded.to_string(),
                    source,
                })?;
            if arn_account(&caller) != account {
                return Err(EngineError::StateInOtherAccount {
                    recorded: recorded.to_string(),
                    account: account.to_string(),
                    caller_account: arn_account(&caller).to_string(),
                    caller,
                });
            }
            // Deleted outside kube-aws, in this account: planning creates it again.
            Ok(())
        }
    }
}

/// The account these credentials belong to, from STS.
pub(super) async fn caller_account(context: &AwsContext) -> Result<String, EngineError> {
    let caller = context
        .actor()
        .await
        .map_err(EngineError::ActorUnverified)?;
    Ok(arn_account(&caller).to_string())
}

/// Polls until the change set is created. `None` when CloudFormation found nothing to change.
async fn wait_for_change_set<C: StackService>(
    cfn: &C,
    stack: &str,
    name: &str,
    progress: Progress<'_>,
) -> Result<Option<ChangeSetDescription>, EngineError> {
    let mut delay = Duration::from_millis(500);
    let deadline = Instant::now() + Duration::from_secs(30 * 60);
    loop {
        let described = cfn.describe_change_set(stack, name).await?;
        match described.status {
            ChangeSetStatus::CreateComplete => return Ok(Some(described)),
            ChangeSetStatus::Failed if described.found_no_changes() => return Ok(None),
            ChangeSetStatus::Failed => {
                return Err(EngineError::ChangeSetFailed {
                    name: name.to_string(),
                    reason: described.status_reason.clone().unwrap_or_default(),
                });
            }
            status => progress(&format!("change set {name}: {status}")),
        }
        if Instant::now() > deadline {
            return Err(EngineError::ChangeSetTimedOut {
                name: name.to_string(),
            });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 3 / 2).min(Duration::from_secs(10));
    }
}
