//! What a plan says in words besides its changes: a move between stack layouts, a single
//! controller or etcd member replaced, a stack left in review, a renewal window, a Kubernetes
//! upgrade's order.

use super::*;

/// A renewal window as long as the leaves' lifetime makes every leaf due on every plan: fine
/// once, to renew them all now, but never as a standing setting. (A window reaching the CA's
/// expiry is refused where the CA would be issued.)
pub(super) fn renewal_window_note(
    config: &ClusterConfig,
    renew_before: Duration,
) -> Option<String> {
    let lifetime = config.tls_cert_duration_days;
    (renew_before >= Duration::days(lifetime.into())).then(|| {
        format!(
            "the renewal window (--renew-before, {} days) is not shorter than tlsCertDurationDays ({lifetime}): every leaf certificate is due now, and would be on every plan with this window",
            renew_before.whole_days()
        )
    })
}

/// What the plan says in words besides its changes: a move between layouts, a replaced single
/// controller or etcd member, a stack left in review, a renewal window as long as a lifetime,
/// an unfinished Secrets key rotation.
pub(super) fn plan_notes(
    (config, prior, options): (&ClusterConfig, Option<&State>, &PlanOptions),
    (keep_pools_in_cluster_stack, overrides): (bool, &[&str]),
    change: &StackChange,
    pool_stacks: &[PoolStackChange],
) -> Vec<String> {
    let mut notes = migration_notes(config, keep_pools_in_cluster_stack, change, pool_stacks);
    notes.extend(overrides_note(overrides));
    notes.extend(controller_replacement_note(config, change));
    // The members that vote while this plan rolls them: those running before a step adds one.
    let voters = prior
        .filter(|s| s.stack.is_some())
        .map(super::running_etcd_members)
        .filter(|&running| running > 0)
        .map_or(config.etcd_count as usize, |running| {
            running.min(config.etcd_count as usize)
        });
    notes.extend(etcd_replacement_note(config, voters, change));
    notes.extend(subnet_replacement_note(change));
    notes.extend(
        std::iter::once(change)
            .chain(pool_stacks.iter().map(|p| &p.stack))
            .filter_map(|change| review_in_progress_note(change, options.preview)),
    );
    notes.extend(renewal_window_note(config, options.renew_before));
    notes.extend(rotation_in_flight_note(prior, options));
    notes.extend(state_catches_up_note(prior, change, pool_stacks));
    notes.extend(upgrade_note(config, prior, change));
    notes
}

/// A stack in which CloudFormation finds nothing to change while the state records another
/// template: what an apply leaves that executed its change set and stopped before writing the
/// state. The plan changes no stack, yet has something to apply: the state learns the template.
pub(super) fn state_catches_up_note(
    prior: Option<&State>,
    cluster: &StackChange,
    pool_stacks: &[PoolStackChange],
) -> Option<String> {
    let prior = prior?;
    let behind = |change: &StackChange, recorded: Option<&crate::state::StackState>| {
        change.action == Action::NoOp
            && change.template_sha256.is_some()
            && recorded.is_some_and(|r| Some(&r.template_sha256) != change.template_sha256.as_ref())
    };
    let stacks: Vec<&str> = std::iter::once((cluster, prior.stack.as_ref()))
        .chain(
            pool_stacks
                .iter()
                .map(|p| (&p.stack, prior.pool_stacks.get(&p.pool))),
        )
        .filter(|(change, recorded)| behind(change, *recorded))
        .map(|(change, _)| change.name.as_str())
        .collect();
    (!stacks.is_empty()).then(|| {
        format!(
            "CloudFormation finds nothing to change in {}, but the state records another template than this plan's (an apply that executed it and stopped before writing the state leaves it so): no stack changes; apply records the plan's template",
            stacks.join(", ")
        )
    })
}

/// A plan that does not move an unfinished Secrets key rotation on says it is unfinished: the
/// old key still reads until step 3, whatever else the plan changes.
pub(super) fn rotation_in_flight_note(
    prior: Option<&State>,
    options: &PlanOptions,
) -> Option<String> {
    let rotation = prior?.secrets_rotation?;
    (!options.rotate_secrets_key).then(|| rotation.describe())
}

/// Templates of the cluster directory replace built-ins: a reviewer (and whoever upgrades
/// kube-aws) should know the built-ins' fixes do not reach them.
pub(super) fn overrides_note(overrides: &[&str]) -> Option<String> {
    (!overrides.is_empty()).then(|| {
        format!(
            "the cluster directory's own {} replace{} the built-in{}: what a newer kube-aws changes in {} does not reach this cluster (`kube-aws --dir EMPTY_DIR render` writes the built-ins to compare)",
            overrides.join(", "),
            if overrides.len() == 1 { "s" } else { "" },
            if overrides.len() == 1 { "" } else { "s" },
            if overrides.len() == 1 { "it" } else { "them" },
        )
    })
}

/// What happens to the API while a single controller is replaced (a new AMI, instance type,
/// key or subnet): CloudFormation creates the new instance first and waits for its signal, so
/// the old one serves until the new one is up; then it moves the nodes' record and the
/// elastic IP, and deletes the old instance.
pub(super) fn controller_replacement_note(
    config: &ClusterConfig,
    cluster: &StackChange,
) -> Option<String> {
    let change = cluster
        .resource_changes
        .iter()
        .find(|c| c.logical_id == "InstanceController")?;
    if change.action == crate::planfile::ResourceAction::Add || !change.may_get_new_identity() {
        return None;
    }
    let how = if change.replaces() {
        "replaced"
    } else {
        "perhaps replaced"
    };
    Some(format!(
        "the controller is {how}: CloudFormation starts the new one beside the old, which keeps serving the API until the new one signals that its own API is ready; then {} and the elastic IP (what externalDNSName points at) move to the new one, nodes follow within the record's 60-second TTL, and the old one is terminated. Running pods are not touched. With controllerCount 2 or more the controllers roll one at a time behind a load balancer instead",
        config.api_internal_dns_name()
    ))
}

/// A CREATE change set makes its stack exist, empty, in REVIEW_IN_PROGRESS until it is
/// executed; `status` and `destroy` see it. The reviewer is told, and how to drop it.
pub(super) fn review_in_progress_note(change: &StackChange, preview: bool) -> Option<String> {
    let until = match preview {
        true => "until a plan of the merged change is applied (apply never takes a preview)",
        false => "until apply executes it",
    };
    (change.action == crate::planfile::Action::Create && change.change_set_name.is_some()).then(
        || {
            format!(
                "CloudFormation now holds stack {name} in REVIEW_IN_PROGRESS (empty, with this plan's change set) {until}; an abandoned plan leaves it so, the next plan makes a new change set for it, and `aws cloudformation delete-stack --stack-name {name}` removes it",
                name = change.name
            )
        },
    )
}

/// Which etcd members this plan replaces (their groups roll or are replaced), and what that
/// means for the cluster: each group holds one member and may drop to none while it rolls,
/// which with one member is etcd, and so the API, down; with more, the groups roll one after
/// another (each waits for its member's signal), so quorum holds.
pub(super) fn etcd_replacement_note(
    config: &ClusterConfig,
    voters: usize,
    cluster: &StackChange,
) -> Option<String> {
    let members = config.etcd_members();
    let replaced: Vec<&str> = members
        .iter()
        .filter(|m| {
            cluster.resource_changes.iter().any(|c| {
                c.logical_id == m.logical_id
                    && c.action != crate::planfile::ResourceAction::Add
                    && c.may_get_new_identity()
            })
        })
        .map(|m| m.name.as_str())
        .collect();
    if replaced.is_empty() {
        return None;
    }
    // While one member rolls, the others must still be a majority of the voters.
    Some(if voters < 3 {
        format!(
            "{} replaced while etcd has {voters} voting member(s): with one of them down there is no quorum, so etcd, and with it the Kubernetes API, is down until the new instance has attached the member's volume and started (at most etcdCreateTimeout, {}), once per member; running pods keep running. Three members (etcdCount: 3) roll without an outage",
            match replaced.as_slice() {
                [only] if voters == 1 => format!("etcd's only member ({only}) is"),
                _ => format!("etcd members {} are", replaced.join(", ")),
            },
            config.etcd_create_timeout
        )
    } else {
        format!(
            "etcd members {} are replaced one at a time (each waits for its member's health signal), so {} of {voters} keep quorum throughout; each member's group shows 0 in service only for its own member",
            replaced.join(", "),
            voters - 1
        )
    })
}

/// A subnet is replaced when its availabilityZone or instanceCIDR changes, and what runs in it
/// goes with it; the change set names the subnet, but for the groups it can say only that
/// their subnets are known after apply.
pub(super) fn subnet_replacement_note(cluster: &StackChange) -> Option<String> {
    let replaced: Vec<&str> = cluster
        .resource_changes
        .iter()
        .filter(|c| {
            c.resource_type == "AWS::EC2::Subnet"
                && c.action != crate::planfile::ResourceAction::Add
                && c.may_get_new_identity()
        })
        .map(|c| c.logical_id.as_str())
        .collect();
    let (first, rest) = replaced.split_first()?;
    let named = if rest.is_empty() {
        format!("subnet {first} is")
    } else {
        format!("subnets {} are", replaced.join(", "))
    };
    let them = if rest.is_empty() { "it" } else { "them" };
    Some(format!(
        "{named} replaced (availability zone or CIDR changed), and every instance in {them} with it: the worker groups roll all their instances onto the new subnet, and a controller or etcd member placed there is replaced (an etcd member's data volume cannot follow it to another zone)"
    ))
}

/// What the reviewer of a move to `stackPerPool` is told. Step 1 creates every pool's stack
/// beside the cluster stack, whose pools keep running as they are (capacity doubles); step 2,
/// the next plan, removes them from the cluster stack, so their instances terminate once the
/// pool stacks' are serving. No moment is without workers, and the control plane is untouched.
pub(super) fn migration_notes(
    config: &ClusterConfig,
    keep_pools_in_cluster_stack: bool,
    cluster: &StackChange,
    pool_stacks: &[PoolStackChange],
) -> Vec<String> {
    if keep_pools_in_cluster_stack {
        let mut notes = vec![format!(
            "moving to a stack per pool, step 1 of 2: {} pool stacks are created beside stack {}, which stays as it runs (until step 2 each pool runs twice its instances). Once they are serving, the next plan removes the pools from stack {} (step 2): their instances terminate",
            pool_stacks.len(),
            config.stack_name(),
            config.stack_name()
        )];
        let autoscaled: Vec<String> = config
            .worker_pools()
            .into_iter()
            .filter(|p| p.autoscaled)
            .map(|p| format!("{} (minSize {})", p.name, p.min_size))
            .collect();
        if !autoscaled.is_empty() {
            notes.push(format!(
                "autoscaled pools start at their minSize in their own stacks: {}. Before step 2 removes their old groups, let the cluster-autoscaler grow the new ones (or raise minSize for the move)",
                autoscaled.join(", ")
            ));
        }
        return notes;
    }
    let moved: Vec<&str> = cluster
        .resource_changes
        .iter()
        .filter(|c| c.action == crate::planfile::ResourceAction::Remove)
        .filter_map(|c| c.logical_id.strip_prefix("AutoScale"))
        .filter(|logical| {
            pool_stacks
                .iter()
                .any(|p| crate::config::logical_name(&p.pool) == *logical)
        })
        .collect();
    if moved.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "moving to a stack per pool, step 2 of 2: stack {} no longer holds the groups of {} pool(s), which run in their own stacks; the groups it removes terminate their instances",
        config.stack_name(),
        moved.len()
    )]
}

/// A minor upgrade in words: which step of the upgrade this plan is and the order apply keeps
/// (the control plane first, the nodes after it). A state that records no version says so,
/// since the skew check starts only once one is recorded.
pub(super) fn upgrade_note(
    config: &ClusterConfig,
    prior: Option<&State>,
    change: &StackChange,
) -> Option<String> {
    use crate::releases::{VersionMove, version_move};
    let prior = prior.filter(|s| s.stack.is_some())?;
    let desired = &config.kubernetes_version;
    let Some(deployed) = prior.running_kubernetes_version() else {
        return Some(format!(
            "the state records no Kubernetes version (it was written before kube-aws recorded one): the next apply records {desired}, and later plans move it one minor at a time from there"
        ));
    };
    let VersionMove::NextMinor { from, to } = version_move(deployed, desired).ok()? else {
        return None;
    };
    let pools_after = if config.stack_per_pool {
        "apply changes the pool stacks only once the cluster stack has"
    } else {
        "every pool's group waits for the controllers"
    };
    let changes = if change.action == Action::NoOp {
        " (this plan changes no stack: the cluster already runs it)"
    } else {
        ""
    };
    Some(format!(
        "Kubernetes minor upgrade {deployed} → {desired}, 1.{from} to 1.{to}: the one step this plan may take (one minor per plan){changes}. The control plane goes first: etcd, then the controllers roll and report ready before any node rolls ({pools_after}), so kubelets run at most one minor behind the API servers and never ahead"
    ))
}
