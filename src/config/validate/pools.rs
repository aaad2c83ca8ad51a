//! Checks of the node pools: AWS's limits on what one stack holds, names, counts, and each
//! pool's subnets, instance mix, roles and autoscaling.

use std::collections::BTreeSet;

use super::*;
/// The counts, sizes and durations, within what AWS, CloudFormation and etcd allow.
pub(super) fn limit_problems(c: &ClusterConfig, problem: &mut dyn FnMut(&[Segment], String)) {
    // Counts and sizes, within what AWS, CloudFormation and etcd allow.
    if !(1..=50).contains(&c.controller_count) {
        problem(
            &[key("controllerCount")],
            format!("must be between 1 and 50 (got {})", c.controller_count),
        );
    }
    if c.etcd_count > 9 {
        problem(
            &[key("etcdCount")],
            format!(
                "must be at most 9 (got {}): etcd recommends 3, 5 or 7 members, and each member is its own stack resources",
                c.etcd_count
            ),
        );
    } else if c.etcd_count == 0 || c.etcd_count.is_multiple_of(2) {
        problem(
            &[key("etcdCount")],
            format!(
                "must be odd and at least 1 so etcd keeps a quorum (got {})",
                c.etcd_count
            ),
        );
    }
    if !(1..=16_384).contains(&c.etcd_data_volume_size) {
        problem(
            &[key("etcdDataVolumeSize")],
            format!(
                "must be between 1 and 16384 GiB, the EBS limit (got {})",
                c.etcd_data_volume_size
            ),
        );
    }
    if !(1..=3_650).contains(&c.etcd_snapshot_retention_days) {
        problem(
            &[key("etcdSnapshotRetentionDays")],
            format!(
                "must be between 1 and 3650 days (got {})",
                c.etcd_snapshot_retention_days
            ),
        );
    }
    // It lands in a unit file: one line of a calendar expression, nothing else.
    let schedule_ok =
        c.etcd_snapshot_schedule.len() <= 100 && is_calendar_expression(&c.etcd_snapshot_schedule);
    if !schedule_ok {
        problem(
            &[key("etcdSnapshotSchedule")],
            format!(
                "\"{}\" is not a systemd calendar expression such as hourly, daily or *-*-* 00/6:00:00",
                c.etcd_snapshot_schedule
            ),
        );
    }
    for (field, value) in [
        ("controllerCreateTimeout", &c.controller_create_timeout),
        ("workerCreateTimeout", &c.worker_create_timeout),
        ("etcdCreateTimeout", &c.etcd_create_timeout),
    ] {
        if iso_minutes(value).is_none_or(|m| !(1..=720).contains(&m)) {
            problem(
                &[key(field)],
                format!(
                    "\"{value}\" is not a duration like PT15M or PT1H between 1 minute and 12 hours (CloudFormation's limit)"
                ),
            );
        }
    }
    if !(1..=36_500).contains(&c.tls_ca_duration_days) {
        problem(
            &[key("tlsCADurationDays")],
            format!(
                "must be between 1 and 36500 days (100 years) (got {})",
                c.tls_ca_duration_days
            ),
        );
    }
    group_size_problems(c, problem);
    for (field, size) in [
        ("controllerRootVolumeSize", c.controller_root_volume_size),
        ("workerRootVolumeSize", c.worker_root_volume_size),
    ] {
        if !(8..=16_384).contains(&size) {
            problem(
                &[key(field)],
                format!("must be between 8 and 16384 GiB (got {size})"),
            );
        }
    }
    if !(1..=604_800).contains(&c.record_set_ttl) {
        problem(
            &[key("recordSetTTL")],
            format!(
                "must be between 1 and 604800 seconds (got {})",
                c.record_set_ttl
            ),
        );
    }
    if c.tls_cert_duration_days == 0 || c.tls_cert_duration_days > c.tls_ca_duration_days {
        problem(
            &[key("tlsCertDurationDays")],
            format!(
                "must be between 1 and tlsCADurationDays ({})",
                c.tls_ca_duration_days
            ),
        );
    }
    if let Err(message) = crate::releases::check_kubernetes_version(&c.kubernetes_version) {
        problem(&[key("kubernetesVersion")], message);
    }
}

/// Each group's size: at most 1,000 instances, a start size within [minSize, maxSize], an
/// autoscaled pool's bounds.
fn group_size_problems(c: &ClusterConfig, problem: &mut dyn FnMut(&[Segment], String)) {
    let too_many = |count: u32| format!("must be at most 1000 instances per group (got {count})");
    if c.worker_count > 1_000 {
        problem(&[key("workerCount")], too_many(c.worker_count));
    }
    for (i, pool) in c.node_pools.iter().enumerate() {
        let at = |field: &'static str| [key("nodePools"), Segment::Index(i), key(field)];
        for (field, size) in [
            ("count", pool.count),
            ("minSize", pool.min_size),
            ("maxSize", pool.max_size),
        ] {
            if let Some(size) = size.filter(|n| *n > 1_000) {
                problem(&at(field), too_many(size));
            }
        }
        if pool.autoscaled {
            // Its size is the cluster-autoscaler's, within [minSize, maxSize].
            match (pool.min_size, pool.max_size) {
                (_, None) => problem(
                    &at("autoscaled"),
                    "an autoscaled pool needs maxSize, the most instances the cluster-autoscaler may start".into(),
                ),
                (min, Some(max)) if max <= min.unwrap_or(0) => problem(
                    &at("maxSize"),
                    format!(
                        "must be above minSize ({}), or there is nothing to autoscale (got {max})",
                        min.unwrap_or(0)
                    ),
                ),
                _ => {}
            }
            continue;
        }
        // The group starts with `count` instances: CloudFormation refuses a desired capacity
        // outside [minSize, maxSize].
        let count = pool.count.unwrap_or(c.worker_count);
        if let Some(min) = pool.min_size
            && min > count
        {
            problem(
                &at("minSize"),
                format!(
                    "must be at most count ({count}), the size the group starts with (got {min})"
                ),
            );
        }
        if let Some(max) = pool.max_size
            && (max < count || max == 0)
        {
            problem(
                &at("maxSize"),
                format!("must be at least count ({count}) and at least 1 (got {max})"),
            );
        }
    }
}

/// The node pools: unique, usable as logical-id fragments, no two with the same fragment.
pub(super) fn pool_problems(c: &ClusterConfig, problem: &mut dyn FnMut(&[Segment], String)) {
    // Node pools: unique, usable as logical-id fragments, and no two with the same fragment
    // (`gpu-large` and `gpu-large-` are both GpuLarge: the stack would keep one group).
    let mut seen = BTreeSet::from([DEFAULT_POOL.to_string()]);
    let mut logical_ids = std::collections::BTreeMap::from([(
        crate::config::logical_name(DEFAULT_POOL),
        DEFAULT_POOL,
    )]);
    for (i, pool) in c.node_pools.iter().enumerate() {
        let logical = crate::config::logical_name(&pool.name);
        if let Some(other) = logical_ids.get(&logical)
            && *other != pool.name
        {
            problem(
                &[key("nodePools"), Segment::Index(i), key("name")],
                format!(
                    "\"{}\" and \"{other}\" both name CloudFormation resources {logical} (AutoScale{logical}, LaunchTemplate{logical}); rename one",
                    pool.name
                ),
            );
        } else {
            logical_ids.insert(logical, &pool.name);
        }
        let path = [key("nodePools"), Segment::Index(i), key("name")];
        let valid = !pool.name.is_empty()
            && pool.name.len() <= 40
            && pool.name.starts_with(|ch: char| ch.is_ascii_lowercase())
            && pool
                .name
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-');
        if !valid {
            problem(
                &path,
                format!(
                    "\"{}\" must start with a lower-case letter and contain only a-z, 0-9 and '-'",
                    pool.name
                ),
            );
        }
        for (label, value) in &pool.labels {
            let at_label = [
                key("nodePools"),
                Segment::Index(i),
                key("labels"),
                key(label),
            ];
            if let Some(why) = qualified_name_problem(label) {
                problem(&at_label, format!("not a Kubernetes label key: {why}"));
                continue;
            }
            if let Some(why) = label_value_problem(value) {
                problem(&at_label, format!("not a Kubernetes label value: {why}"));
            }
            if let Some(why) = crate::config::KubeletRules::get().label_refusal(label) {
                problem(
                    &[
                        key("nodePools"),
                        Segment::Index(i),
                        key("labels"),
                        key(label),
                    ],
                    format!("label \"{label}\": {why}"),
                );
            }
        }
        for (j, taint) in pool.taints.iter().enumerate() {
            let at = |field: &str| {
                [
                    key("nodePools"),
                    Segment::Index(i),
                    key("taints"),
                    Segment::Index(j),
                    key(field),
                ]
            };
            if let Some(why) = qualified_name_problem(&taint.key) {
                problem(&at("key"), format!("not a Kubernetes taint key: {why}"));
            }
            if let Some(why) = label_value_problem(&taint.value) {
                problem(&at("value"), format!("not a Kubernetes taint value: {why}"));
            }
        }
        if !seen.insert(pool.name.clone()) {
            let why = if pool.name == DEFAULT_POOL {
                " (the name of the default worker pool)"
            } else {
                ""
            };
            problem(
                &path,
                format!("duplicate node pool name \"{}\"{why}", pool.name),
            );
        }
    }
}

/// What each pool runs as and where: its subnets, instance types and spot mix, IAM, and the
/// cluster-autoscaler's part.
pub(super) fn pool_shape_problems(c: &ClusterConfig, problem: &mut dyn FnMut(&[Segment], String)) {
    for (i, pool) in c.node_pools.iter().enumerate() {
        let at = PoolAt(i);
        pool_placement_problems(c, pool, &at, problem);
        instance_mix_problems(pool, &at, problem);
        pool_role_problems(c, pool, &at, problem);
        if pool.autoscaled {
            autoscaled_pool_problems(c, pool, &at, problem);
        }
    }
}

/// Where a field of node pool `.0` is in cluster.yaml.
struct PoolAt(usize);

impl PoolAt {
    fn field(&self, field: &str) -> Vec<Segment> {
        vec![key("nodePools"), Segment::Index(self.0), key(field)]
    }

    fn item(&self, field: &str, j: usize) -> Vec<Segment> {
        let mut at = self.field(field);
        at.push(Segment::Index(j));
        at
    }

    fn key_of(&self, field: &str, name: &str) -> Vec<Segment> {
        let mut at = self.field(field);
        at.push(key(name));
        at
    }
}

/// Its name, the subnets it names and its labels: where the pool goes and what it is called.
fn pool_placement_problems(
    c: &ClusterConfig,
    pool: &crate::config::NodePoolConfig,
    at: &PoolAt,
    problem: &mut dyn FnMut(&[Segment], String),
) {
    let node_subnets = c.node_subnets();
    let node_subnets_field = if c.private_subnets.is_empty() {
        "subnets"
    } else {
        "privateSubnets"
    };
    // Its logical ids must not be the control plane's (`controller` would be
    // AutoScaleController, `etcd0` LaunchTemplateEtcd0).
    let logical = crate::config::logical_name(&pool.name);
    let etcd_like = logical
        .strip_prefix("Etcd")
        .is_some_and(|n| !n.is_empty() && n.chars().all(|ch| ch.is_ascii_digit()));
    if logical == "Controller" || etcd_like {
        problem(
            &at.field("name"),
            format!(
                "\"{}\" would name the control plane's resources (AutoScale{logical}, LaunchTemplate{logical}); rename the pool",
                pool.name
            ),
        );
    }
    for (j, wanted) in pool.subnets.iter().enumerate() {
        let found = node_subnets.iter().any(|s| s.is_named(wanted));
        if !found {
            let known: Vec<String> = node_subnets
                .iter()
                .flat_map(|s| std::iter::once(s.availability_zone.clone()).chain(s.id.clone()))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            problem(
                &at.item("subnets", j),
                format!(
                    "\"{wanted}\" is neither the availability zone nor the id of one of the cluster's node subnets ({node_subnets_field}: {})",
                    known.join(", ")
                ),
            );
        }
    }
    if pool.labels.contains_key(POOL_LABEL) {
        problem(
            &at.key_of("labels", POOL_LABEL),
            format!("kube-aws sets {POOL_LABEL} to the pool's name itself"),
        );
    }
}

/// Its instance type or mix of types, spot price and on-demand share.
fn instance_mix_problems(
    pool: &crate::config::NodePoolConfig,
    at: &PoolAt,
    problem: &mut dyn FnMut(&[Segment], String),
) {
    if let Some(instance_type) = &pool.instance_type
        && !is_instance_type(instance_type)
    {
        problem(
            &at.field("instanceType"),
            format!("\"{instance_type}\" is not an EC2 instance type like m6i.large"),
        );
    }
    if let Some(price) = &pool.spot_price
        && !is_spot_price(price)
    {
        problem(
            &at.field("spotPrice"),
            format!("\"{price}\" is not a price in dollars per hour like 0.05"),
        );
    }
    if pool.instance_types.as_ref().is_some_and(Vec::is_empty) {
        problem(
            &at.field("instanceTypes"),
            "an empty list: name at least one instance type, or leave instanceTypes out".into(),
        );
    }
    let instance_types = pool.instance_types.as_deref().unwrap_or_default();
    if !instance_types.is_empty() {
        if pool.instance_type.is_some() {
            problem(
                &at.field("instanceTypes"),
                "give instanceType or instanceTypes, not both".into(),
            );
        }
        if instance_types.len() > 40 {
            problem(
                &at.field("instanceTypes"),
                format!(
                    "at most 40 instance types per Auto Scaling group (got {})",
                    instance_types.len()
                ),
            );
        }
        let mut seen = BTreeSet::new();
        for (j, instance_type) in instance_types.iter().enumerate() {
            if !is_instance_type(instance_type) {
                problem(
                    &at.item("instanceTypes", j),
                    format!("\"{instance_type}\" is not an EC2 instance type like m6i.large"),
                );
            }
            if !seen.insert(instance_type) {
                problem(
                    &at.item("instanceTypes", j),
                    format!("\"{instance_type}\" is listed twice"),
                );
            }
        }
    } else {
        for (field, given) in [
            (
                "onDemandBaseCapacity",
                pool.on_demand_base_capacity.is_some(),
            ),
            (
                "onDemandPercentageAboveBaseCapacity",
                pool.on_demand_percentage_above_base_capacity.is_some(),
            ),
            (
                "spotAllocationStrategy",
                pool.spot_allocation_strategy.is_some(),
            ),
        ] {
            if given {
                problem(
                    &at.field(field),
                    "only applies to a pool with instanceTypes (a mixed instances policy)".into(),
                );
            }
        }
    }
    match pool.on_demand_percentage_above_base_capacity {
        Some(percent) if percent > 100 => problem(
            &at.field("onDemandPercentageAboveBaseCapacity"),
            format!("must be between 0 and 100 (got {percent})"),
        ),
        // All on-demand: a spot setting would be dropped without a word.
        Some(100) => {
            for (field, given) in [
                ("spotPrice", pool.spot_price.is_some()),
                (
                    "spotAllocationStrategy",
                    pool.spot_allocation_strategy.is_some(),
                ),
            ] {
                if given {
                    problem(
                        &at.field(field),
                        "has no effect: onDemandPercentageAboveBaseCapacity is 100, so the pool runs no spot instances".into(),
                    );
                }
            }
        }
        _ => {}
    }
}

/// Its instance profile and managed policies.
fn pool_role_problems(
    c: &ClusterConfig,
    pool: &crate::config::NodePoolConfig,
    at: &PoolAt,
    problem: &mut dyn FnMut(&[Segment], String),
) {
    let partition = partition_of(&c.region);
    if let Some(arn) = &pool.instance_profile_arn {
        if !pool.managed_policies.is_empty() {
            problem(
                &at.field("managedPolicies"),
                "a pool with instanceProfileArn runs with that profile's role; attach the policies to it instead".into(),
            );
        }
        if !is_iam_arn(arn, partition, "instance-profile/") {
            problem(
                &at.field("instanceProfileArn"),
                format!(
                    "\"{arn}\" is not an instance profile ARN of {partition} ({} is there): arn:{partition}:iam::123456789012:instance-profile/NAME",
                    c.region
                ),
            );
        }
    }
    let attached = pool.managed_policies.len();
    if attached > 20 {
        problem(
            &at.field("managedPolicies"),
            format!(
                "IAM attaches at most 20 managed policies to a role (10 unless the account's quota was raised); this role would have {attached}"
            ),
        );
    }
    for (j, arn) in pool.managed_policies.iter().enumerate() {
        if !is_iam_arn(arn, partition, "policy/") {
            problem(
                &at.item("managedPolicies", j),
                format!(
                    "\"{arn}\" is not a managed policy ARN of {partition} ({} is there): arn:{partition}:iam::aws:policy/NAME or arn:{partition}:iam::123456789012:policy/NAME",
                    c.region
                ),
            );
        }
    }
}

/// An autoscaled pool: the cluster-autoscaler is on, its size is the autoscaler's, and its
/// labels and taints fit the tags the autoscaler reads.
fn autoscaled_pool_problems(
    c: &ClusterConfig,
    pool: &crate::config::NodePoolConfig,
    at: &PoolAt,
    problem: &mut dyn FnMut(&[Segment], String),
) {
    if !c.cluster_autoscaler.enabled {
        problem(
            &at.field("autoscaled"),
            "needs the cluster-autoscaler: set clusterAutoscaler.enabled: true".into(),
        );
    }
    if pool.count.is_some() {
        problem(
            &at.field("count"),
            "an autoscaled pool's size is the cluster-autoscaler's: give minSize and maxSize instead".into(),
        );
    }
    // Each label and taint becomes a tag of the group: keys of at most 128 characters,
    // each once, and 50 tags in all, with kube-aws's 8 and the propagated stackTags.
    let tags = OWN_TAGS_PER_RESOURCE + pool.labels.len() + pool.taints.len() + c.stack_tags.len();
    if tags > 50 {
        problem(
            &at.field("labels"),
            format!(
                "an autoscaled pool's group carries each label and taint as a tag, beside kube-aws's {OWN_TAGS_PER_RESOURCE} and the {} stackTags: {tags} tags, and Auto Scaling takes 50",
                c.stack_tags.len()
            ),
        );
    }
    let longest = 128 - NODE_TEMPLATE_TAINT.len();
    let longest_label = 128 - NODE_TEMPLATE_LABEL.len();
    for label in pool.labels.keys().filter(|k| k.len() > longest_label) {
        problem(
            &at.key_of("labels", label),
            format!(
                "an autoscaled pool's label keys become tags {NODE_TEMPLATE_LABEL}KEY, at most 128 characters: at most {longest_label} for the key (got {})",
                label.len()
            ),
        );
    }
    let mut taint_keys = BTreeSet::new();
    for (j, taint) in pool.taints.iter().enumerate() {
        let mut taint_key = at.item("taints", j);
        taint_key.push(key("key"));
        if taint.key.len() > longest {
            problem(
                &taint_key,
                format!(
                    "an autoscaled pool's taint keys become tags {NODE_TEMPLATE_TAINT}KEY, at most 128 characters: at most {longest} for the key (got {})",
                    taint.key.len()
                ),
            );
        }
        if !taint_keys.insert(&taint.key) {
            problem(
                &taint_key,
                format!(
                    "\"{}\" is tainted twice; an autoscaled pool's taints are tags, one per key",
                    taint.key
                ),
            );
        }
    }
}

/// The tag prefixes of what the cluster-autoscaler assumes of a node of an empty group.
const NODE_TEMPLATE_LABEL: &str = "k8s.io/cluster-autoscaler/node-template/label/";
const NODE_TEMPLATE_TAINT: &str = "k8s.io/cluster-autoscaler/node-template/taint/";
