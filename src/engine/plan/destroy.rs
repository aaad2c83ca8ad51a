//! The destroy plan: every stack and owned record to delete, and the keys the state drops.

use super::*;

/// What a destroy plan tells the reviewer about the cluster's keys.
const DESTROY_DROPS_KEYS: &str = "The cluster's CA, admin credentials, service-account key and Secrets encryption key leave the state: a cluster created again under this name gets new ones, and this cluster's kubeconfigs will not work there.";

/// The plan for `destroy`: delete the stack and the records this tool created.
pub(super) async fn plan_destroy(
    config: &ClusterConfig,
    prior: Option<Loaded>,
    online: Option<&AwsContext>,
    progress: Progress<'_>,
) -> Result<Plan, EngineError> {
    let Some(context) = online else {
        return Err(EngineError::DestroyOffline);
    };
    let binding = prior_binding(prior.as_ref());
    let prior = prior.as_ref().map(|p| &p.state);
    let stack_name = config.stack_name();
    progress("describing the stack");
    let live = context.cloudformation().describe_stack(&stack_name).await?;
    let recorded = prior.and_then(|s| s.stack.as_ref());
    let recorded_id = recorded.and_then(|s| s.id.clone());
    stack::check_stack_binding(
        config,
        &stack_name,
        recorded_id.as_deref(),
        live.as_ref().map(|s| s.id.as_str()),
        context,
    )
    .await?;
    let stack_id = live.as_ref().map(|s| s.id.clone()).or(recorded_id);
    let target = Target {
        region: config.region.clone(),
        account_id: match stack_id.as_deref().and_then(stack::stack_account) {
            Some(account) => Some(account),
            None => Some(stack::caller_account(context).await?),
        },
        stack_id,
    };
    let action = if live.is_some() {
        Action::Delete
    } else {
        Action::NoOp
    };
    let stack = StackChange::without_change_set(
        stack_name,
        action,
        recorded.map(|s| s.template_sha256.clone()),
    );
    // Every pool stack the state records goes first (apply skips one already gone).
    let mut pool_stacks: Vec<PoolStackChange> = prior
        .map(|s| &s.pool_stacks)
        .into_iter()
        .flatten()
        .map(|(pool, recorded)| PoolStackChange::of_recorded(pool, recorded, Action::Delete))
        .collect();
    // And those an apply created but did not record (it failed before writing the state),
    // found by name and known by the description the template gives them.
    if config.stack_per_pool {
        let cfn = context.cloudformation();
        for pool in config.worker_pools() {
            if pool_stacks.iter().any(|p| p.pool == pool.name) {
                continue;
            }
            let name = config.pool_stack_name(&pool.name);
            let Some(live) = cfn.describe_stack(&name).await? else {
                continue;
            };
            if live.description.as_deref()
                != Some(stack::pool_stack_description(config, &pool.name).as_str())
            {
                continue;
            }
            pool_stacks.push(PoolStackChange {
                pool: pool.name.clone(),
                stack: StackChange::without_change_set(name, Action::Delete, None),
                parameters: Vec::new(),
                template: None,
            });
        }
    }
    let records = records::removed_records(prior, &[]);
    let summary = ChangeSummary {
        remove: u32::from(stack.action == Action::Delete)
            + pool_stacks.len() as u32
            + records.len() as u32,
        ..ChangeSummary::default()
    };
    let mut notes = Vec::new();
    if prior.is_some_and(|s| !s.tls.is_empty()) {
        notes.push(DESTROY_DROPS_KEYS.to_string());
    }
    Ok(Plan {
        pool_stacks,
        assets: changes::destroyed_assets(prior),
        records,
        notes,
        new_state: changes::destroyed_state(config, prior, uuid::Uuid::new_v4().to_string()),
        summary,
        ..unsealed(config, PlanKind::Destroy, binding, target, stack)
    })
}
