//! Semantic checks of a parsed `cluster.yaml`: the mistakes a type system cannot see, such as
//! subnets outside the VPC or a DNS service IP outside the service CIDR.

use std::collections::BTreeSet;

use ipnet::Ipv4Net;

use super::locate::{Locator, Segment};
use super::{ClusterConfig, DEFAULT_POOL, POOL_LABEL, Problem, StateBackendKind};

fn key(k: &str) -> Segment {
    Segment::Key(k.to_string())
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn is_dns_label_list(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Minutes of an ISO 8601 duration, as CloudFormation takes for signal timeouts.
fn iso_minutes(value: &str) -> Option<u64> {
    super::iso_seconds(value).map(|s| s / 60)
}

/// Why `name` is not the name part of a Kubernetes qualified name (at most 63 characters of
/// letters, digits, '-', '_' and '.', starting and ending with a letter or digit), if it is not.
fn name_part_problem(name: &str) -> Option<String> {
    let ends_ok = |ch: Option<char>| ch.is_some_and(|c| c.is_ascii_alphanumeric());
    if name.len() > 63 {
        return Some(format!("\"{name}\" is longer than 63 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        || !ends_ok(name.chars().next())
        || !ends_ok(name.chars().last())
    {
        return Some(format!(
            "\"{name}\" must be letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
        ));
    }
    None
}

/// Why `key` is not a Kubernetes label or taint key (`[prefix/]name`, the prefix a DNS
/// subdomain), if it is not. Such keys reach the kubelet's command line, so nothing else may.
fn qualified_name_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && (prefix.len() > 253
            || !prefix.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            }))
    {
        return Some(format!(
            "the prefix \"{prefix}\" of \"{key}\" is not a DNS subdomain (lower-case letters, digits, '-' and '.')"
        ));
    }
    if name.is_empty() {
        return Some(format!("\"{key}\" has no name"));
    }
    name_part_problem(name)
}

/// Why `value` is not a Kubernetes label (or taint) value: empty, or a name part.
fn label_value_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        None
    } else {
        name_part_problem(value)
    }
}

/// A systemd calendar expression of the shapes kube-aws documents: a shorthand (`daily`), or
/// an optional weekday list, an optional date and a time, each of calendar characters.
fn is_calendar_expression(text: &str) -> bool {
    const SHORTHANDS: [&str; 9] = [
        "minutely",
        "hourly",
        "daily",
        "weekly",
        "monthly",
        "quarterly",
        "semiannually",
        "yearly",
        "annually",
    ];
    let words: Vec<&str> = text.split_whitespace().collect();
    if let [one] = words.as_slice()
        && SHORTHANDS.contains(one)
    {
        return true;
    }
    let Some((time, rest)) = words.split_last() else {
        return false;
    };
    let field =
        |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || "*/,.~".contains(c));
    let parts: Vec<&str> = time.split(':').collect();
    if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| field(p)) {
        return false;
    }
    let weekday = |w: &str| {
        w.split([',', '.'])
            .filter(|d| !d.is_empty())
            .all(|d| ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].contains(&d))
    };
    let date = |d: &str| {
        let parts: Vec<&str> = d.split('-').collect();
        (2..=3).contains(&parts.len()) && parts.iter().all(|p| field(p))
    };
    match rest {
        [] => true,
        [one] => weekday(one) || date(one),
        [days, day] => weekday(days) && date(day),
        _ => false,
    }
}

/// An EC2 instance type's shape: a family and a size (`m6i.large`, `c7gn.16xlarge`).
fn is_instance_type(name: &str) -> bool {
    match name.split_once('.') {
        Some((family, size)) => {
            family.starts_with(|c: char| c.is_ascii_lowercase())
                && family
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !size.is_empty()
                && size
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        }
        None => false,
    }
}

/// An AWS region's shape: `us-west-2`, `us-gov-west-1`, `cn-north-1`, `us-isob-east-1`.
fn is_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

/// A KMS key (or alias) ARN: `arn:PARTITION:kms:REGION:ACCOUNT:key/ID` or `…:alias/NAME`, in
/// the characters ARNs use, since it is written into the nodes' scripts.
fn is_kms_key_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", partition, "kms", _, account, resource]
        if partition.starts_with("aws")
            && account.bytes().all(|b| b.is_ascii_digit())
            && (resource.starts_with("key/") || resource.starts_with("alias/")))
        && arn
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":/_-.".contains(&b))
}

/// A spot price as EC2 takes one: a positive decimal number of dollars per hour.
fn is_spot_price(price: &str) -> bool {
    let (whole, fraction) = price.split_once('.').unwrap_or((price, "0"));
    !whole.is_empty()
        && whole.chars().all(|c| c.is_ascii_digit())
        && !fraction.is_empty()
        && fraction.chars().all(|c| c.is_ascii_digit())
        && price.parse::<f64>().is_ok_and(|p| p > 0.0)
}

/// The most tags kube-aws itself puts on one resource (an autoscaled pool's group adds its
/// labels and taints, checked with the pool).
const OWN_TAGS_PER_RESOURCE: usize = 8;

/// Keys a Service may not add to its load balancer: tags that say which cluster owns a
/// resource, or that another policy of the cluster trusts.
const RESERVED_TAG_PREFIXES: [&str; 5] = [
    "aws:",
    "kubernetes.io/",
    "k8s.io/",
    "kube-aws:",
    "ebs.csi.aws.com/",
];

/// loadBalancerTagKeys the controller role would be allowed to tag with: each is granted as it
/// is written, so a reserved key would let a load balancer claim another cluster.
fn load_balancer_tag_key_problems(c: &ClusterConfig, problem: &mut dyn FnMut(&[Segment], String)) {
    for (i, k) in c.load_balancer_tag_keys.iter().enumerate() {
        let at = [key("loadBalancerTagKeys"), Segment::Index(i)];
        let lower = k.to_ascii_lowercase();
        if k.is_empty() || k.chars().count() > 128 {
            problem(&at, "a tag key has 1 to 128 characters".into());
        } else if k == "KubernetesCluster"
            || RESERVED_TAG_PREFIXES.iter().any(|p| lower.starts_with(p))
        {
            problem(
                &at,
                format!(
                    "\"{k}\" is reserved: keys starting with {} and KubernetesCluster say which cluster owns a resource; the cloud controller sets its own",
                    RESERVED_TAG_PREFIXES.join(", ")
                ),
            );
        }
    }
}

/// stackTags that CloudFormation, EC2 or the instances would refuse: CloudFormation copies
/// them onto every resource and instance, and the etcd members expose their tags in instance
/// metadata (InstanceMetadataTags), where EC2 refuses to launch an instance with a key it
/// cannot serve as a path.
fn stack_tag_problems(c: &ClusterConfig, problem: &mut dyn FnMut(&[Segment], String)) {
    if c.stack_tags.len() + OWN_TAGS_PER_RESOURCE > 50 {
        problem(
            &[key("stackTags")],
            format!(
                "{} tags: with the up to {OWN_TAGS_PER_RESOURCE} kube-aws puts on a resource that is more than the 50 AWS allows on one",
                c.stack_tags.len()
            ),
        );
    }
    let metadata_safe = |k: &str| {
        k.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "+-=.,_:@".contains(ch))
            && !matches!(k, "." | ".." | "_index")
    };
    for (k, v) in &c.stack_tags {
        let at = [key("stackTags"), key(k)];
        let lower = k.to_ascii_lowercase();
        if k.is_empty() || k.chars().count() > 128 {
            problem(&at, "a tag key has 1 to 128 characters".into());
        } else if lower.starts_with("aws:") {
            problem(
                &at,
                format!(
                    "\"{k}\": the aws: prefix is AWS's own; CloudFormation refuses it in a tag"
                ),
            );
        } else if k == "KubernetesCluster" || lower.starts_with("kube-aws:") {
            problem(
                &at,
                format!("\"{k}\" is a tag kube-aws sets itself on the cluster's resources"),
            );
        } else if !metadata_safe(k) {
            problem(
                &at,
                format!(
                    "\"{k}\" cannot be an instance tag the etcd members read from instance metadata: EC2 then allows only letters, digits and + - = . , _ : @ in a key (no space or '/'), and not '.', '..' or '_index', and refuses to launch the instance otherwise"
                ),
            );
        }
        if v.chars().count() > 256 {
            problem(
                &at,
                format!(
                    "a tag value has at most 256 characters (this one has {})",
                    v.chars().count()
                ),
            );
        }
    }
}

/// Every semantic problem, each positioned at the field it is about.
pub fn semantic_problems(c: &ClusterConfig, at: &Locator) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut problem = |path: &[Segment], message: String| out.push(at.problem(path, message));
    control_character_problems(c, &mut problem);
    settings_problems(c, &mut problem);
    network_problems(c, &mut problem);
    limit_problems(c, &mut problem);
    pool_problems(c, &mut problem);
    pool_shape_problems(c, &mut problem);
    storage_problems(c, &mut problem);
    out
}

/// Any string of cluster.yaml (value or map key) holding a control character: values end up
/// in units, scripts and cloud-configs, where a newline would start a directive or a file of
/// its own and a carriage return or escape would hide it. No setting has a use for one.
fn control_character_problems(c: &ClusterConfig, problem: &mut dyn FnMut(&[Segment], String)) {
    fn walk(
        value: &serde_json::Value,
        path: &mut Vec<Segment>,
        problem: &mut dyn FnMut(&[Segment], String),
    ) {
        let holds = |text: &str| text.chars().find(|ch| ch.is_control());
        let say = |ch: char| {
            format!(
                "holds the control character {:?}: values of cluster.yaml are written into units and scripts, where it would start a line of its own",
                ch
            )
        };
        match value {
            serde_json::Value::String(text) => {
                if let Some(ch) = holds(text) {
                    problem(path, say(ch));
                }
            }
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(Segment::Index(i));
                    walk(item, path, problem);
                    path.pop();
                }
            }
            serde_json::Value::Object(map) => {
                for (name, item) in map {
                    path.push(key(name));
                    if let Some(ch) = holds(name) {
                        problem(path, say(ch));
                    }
                    walk(item, path, problem);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    if let Ok(value) = serde_json::to_value(c) {
        walk(&value, &mut Vec::new(), problem);
    }
}

/// The cluster's identity, DNS, keys and access: the settings every cluster names.
fn settings_problems(c: &ClusterConfig, problem: &mut dyn FnMut(&[Segment], String)) {
    let name_ok = c.cluster_name.len() <= 64
        && c.cluster_name
            .starts_with(|ch: char| ch.is_ascii_alphabetic())
        && c.cluster_name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-');
    if !name_ok {
        problem(
            &[key("clusterName")],
            "must start with a letter and contain only letters, digits and '-' (at most 64 characters), because it names the CloudFormation stack".into(),
        );
    }
    if c.cluster_name.contains("-pool-") {
        problem(
            &[key("clusterName")],
            "must not contain \"-pool-\": the stacks of a cluster's pools are named <clusterName>-pool-<pool>, so another cluster's stacks could be taken for this one's (and its controllers may signal them)".into(),
        );
    }
    stack_tag_problems(c, problem);
    load_balancer_tag_key_problems(c, problem);
    for (field, value) in [
        ("controllerInstanceType", &c.controller_instance_type),
        ("etcdInstanceType", &c.etcd_instance_type),
        ("workerInstanceType", &c.worker_instance_type),
    ] {
        if !is_instance_type(value) {
            problem(
                &[key(field)],
                format!("\"{value}\" is not an EC2 instance type like m6i.large"),
            );
        }
    }
    if let Some(price) = &c.worker_spot_price
        && !is_spot_price(price)
    {
        problem(
            &[key("workerSpotPrice")],
            format!("\"{price}\" is not a price in dollars per hour like 0.05"),
        );
    }
    if !is_dns_label_list(&c.external_dns_name) {
        problem(
            &[key("externalDNSName")],
            format!("\"{}\" is not a valid DNS name", c.external_dns_name),
        );
    }
    if !is_region(&c.region) {
        problem(
            &[key("region")],
            format!(
                "\"{}\" is not an AWS region like us-west-2 (it is written into the nodes' scripts)",
                c.region
            ),
        );
    }
    if !is_kms_key_arn(&c.kms_key_arn) {
        problem(
            &[key("kmsKeyArn")],
            format!(
                "\"{}\" is not a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)",
                c.kms_key_arn
            ),
        );
    }
    if c.subnets.is_empty() && c.availability_zone.as_deref().unwrap_or("").is_empty() {
        problem(
            &[key("availabilityZone")],
            "required when `subnets` is not given".into(),
        );
    }
    if c.create_record_set && c.hosted_zone_id.is_none() && c.hosted_zone.is_none() {
        problem(
            &[key("createRecordSet")],
            "needs `hostedZoneId` or `hostedZone` to know where the record goes".into(),
        );
    }
    if let Some(zone) = &c.hosted_zone {
        let zone = zone.trim_end_matches('.');
        let inside =
            c.external_dns_name == zone || c.external_dns_name.ends_with(&format!(".{zone}"));
        if !inside {
            problem(
                &[key("hostedZone")],
                format!(
                    "externalDNSName \"{}\" is not inside the zone \"{zone}\"",
                    c.external_dns_name
                ),
            );
        }
    }
    if let Some(arn) = &c.ebs_kms_key_arn
        && (!arn.starts_with("arn:") || !arn.contains(":kms:"))
    {
        problem(
            &[key("ebsKmsKeyArn")],
            format!("\"{arn}\" is not a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)"),
        );
    }
    if c.api_access_allowed_source_cidrs.is_empty() {
        problem(
            &[key("apiAccessAllowedSourceCIDRs")],
            "must allow at least one source, or nothing (not even kubectl) reaches the API".into(),
        );
    }
    if c.route_table_id.is_some() && c.vpc_id.is_none() {
        problem(
            &[key("routeTableId")],
            "only makes sense with `vpcId`".into(),
        );
    }
}

/// The networking: instance subnets inside the VPC and disjoint, cluster ranges outside it,
/// private subnets with a NAT gateway in their zone.
fn network_problems(c: &ClusterConfig, problem: &mut dyn FnMut(&[Segment], String)) {
    // Networking: instance subnets inside the VPC and disjoint; cluster ranges outside it.
    let subnets = c.effective_subnets();
    let subnet_path = |i: usize| {
        if c.subnets.is_empty() {
            vec![key("instanceCIDR")]
        } else {
            vec![key("subnets"), Segment::Index(i), key("instanceCIDR")]
        }
    };
    for (i, subnet) in c.subnets.iter().enumerate() {
        if let Some(id) = &subnet.id {
            let path = [key("subnets"), Segment::Index(i), key("id")];
            if c.vpc_id.is_none() {
                problem(
                    &path,
                    "an existing subnet needs `vpcId`, the VPC it belongs to".into(),
                );
            }
            if !id.starts_with("subnet-") {
                problem(&path, format!("\"{id}\" is not a subnet id (subnet-…)"));
            }
        }
    }
    for (i, subnet) in subnets.iter().enumerate() {
        if !c.vpc_cidr.contains(&subnet.instance_cidr) {
            problem(
                &subnet_path(i),
                format!(
                    "{} is not inside vpcCIDR {}",
                    subnet.instance_cidr, c.vpc_cidr
                ),
            );
        }
        for (j, other) in subnets.iter().enumerate().skip(i + 1) {
            if overlaps(&subnet.instance_cidr, &other.instance_cidr) {
                problem(
                    &subnet_path(j),
                    format!(
                        "{} overlaps subnets[{i}] {}",
                        other.instance_cidr, subnet.instance_cidr
                    ),
                );
            }
        }
    }
    if overlaps(&c.service_cidr, &c.vpc_cidr) {
        problem(
            &[key("serviceCIDR")],
            format!("{} overlaps vpcCIDR {}", c.service_cidr, c.vpc_cidr),
        );
    }
    if overlaps(&c.pod_cidr, &c.vpc_cidr) {
        problem(
            &[key("podCIDR")],
            format!("{} overlaps vpcCIDR {}", c.pod_cidr, c.vpc_cidr),
        );
    }
    if overlaps(&c.pod_cidr, &c.service_cidr) {
        problem(
            &[key("podCIDR")],
            format!("{} overlaps serviceCIDR {}", c.pod_cidr, c.service_cidr),
        );
    }
    if !c.service_cidr.contains(&c.dns_service_ip) {
        problem(
            &[key("dnsServiceIP")],
            format!(
                "{} is not inside serviceCIDR {}",
                c.dns_service_ip, c.service_cidr
            ),
        );
    } else if c.dns_service_ip == c.service_cidr.network()
        || c.dns_service_ip == c.service_cidr.broadcast()
    {
        problem(
            &[key("dnsServiceIP")],
            format!(
                "{} is the network or broadcast address of serviceCIDR {}, which the API server never allocates",
                c.dns_service_ip, c.service_cidr
            ),
        );
    } else if c.dns_service_ip == c.kubernetes_service_ip() {
        problem(
            &[key("dnsServiceIP")],
            format!(
                "{} is reserved for the kubernetes service",
                c.dns_service_ip
            ),
        );
    }
    // Private subnets: inside the VPC, disjoint from every other subnet, each with a public
    // subnet in its zone for its NAT gateway.
    for (i, private) in c.private_subnets.iter().enumerate() {
        let path = [
            key("privateSubnets"),
            Segment::Index(i),
            key("instanceCIDR"),
        ];
        if !c.vpc_cidr.contains(&private.instance_cidr) {
            problem(
                &path,
                format!(
                    "{} is not inside vpcCIDR {}",
                    private.instance_cidr, c.vpc_cidr
                ),
            );
        }
        let clash = subnets
            .iter()
            .map(|s| s.instance_cidr)
            .chain(c.private_subnets[..i].iter().map(|s| s.instance_cidr))
            .find(|other| overlaps(&private.instance_cidr, other));
        if let Some(other) = clash {
            problem(
                &path,
                format!("{} overlaps subnet {other}", private.instance_cidr),
            );
        }
        if c.nat_gateways == super::NatGateways::PerAz
            && !subnets
                .iter()
                .any(|s| s.availability_zone == private.availability_zone)
        {
            problem(
                &[
                    key("privateSubnets"),
                    Segment::Index(i),
                    key("availabilityZone"),
                ],
                format!(
                    "{} has no public subnet (in `subnets`) for its NAT gateway; add one, or use natGateways: single",
                    private.availability_zone
                ),
            );
        }
    }
    if !c.private_subnets.is_empty() && c.vpc_id.is_some() {
        problem(
            &[key("privateSubnets")],
            "private subnets are created only in a VPC kube-aws creates (without vpcId)".into(),
        );
    }
    if let Some(ip) = c.controller_ip {
        problem(
            &[key("controllerIP")],
            format!(
                "a fixed controller address ({ip}) is no longer supported: CloudFormation replaces an instance by creating the new one before deleting the old, and two instances cannot share an address, so any AMI, key or subnet change would fail. Remove it; nodes reach the API as {}, which the stack points at the controller",
                c.api_internal_dns_name()
            ),
        );
    }
}

/// The counts, sizes and durations, within what AWS, CloudFormation and etcd allow.
fn limit_problems(c: &ClusterConfig, problem: &mut dyn FnMut(&[Segment], String)) {
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

/// The node pools: unique, usable as logical-id fragments, no two with the same fragment.
fn pool_problems(c: &ClusterConfig, problem: &mut dyn FnMut(&[Segment], String)) {
    // Node pools: unique, usable as logical-id fragments, and no two with the same fragment
    // (`gpu-large` and `gpu-large-` are both GpuLarge: the stack would keep one group).
    let mut seen = BTreeSet::from([DEFAULT_POOL.to_string()]);
    let mut logical_ids =
        std::collections::BTreeMap::from([(super::logical_name(DEFAULT_POOL), DEFAULT_POOL)]);
    for (i, pool) in c.node_pools.iter().enumerate() {
        let logical = super::logical_name(&pool.name);
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
            if let Some(why) = super::KubeletRules::get().label_refusal(label) {
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
fn pool_shape_problems(c: &ClusterConfig, problem: &mut dyn FnMut(&[Segment], String)) {
    let node_subnets = c.node_subnets();
    let partition = partition_of(&c.region);
    let node_subnets_field = if c.private_subnets.is_empty() {
        "subnets"
    } else {
        "privateSubnets"
    };
    for (i, pool) in c.node_pools.iter().enumerate() {
        let at = |field: &str| vec![key("nodePools"), Segment::Index(i), key(field)];
        let at_item = |field: &str, j: usize| {
            vec![
                key("nodePools"),
                Segment::Index(i),
                key(field),
                Segment::Index(j),
            ]
        };
        // Its logical ids must not be the control plane's (`controller` would be
        // AutoScaleController, `etcd0` LaunchTemplateEtcd0).
        let logical = super::logical_name(&pool.name);
        let etcd_like = logical
            .strip_prefix("Etcd")
            .is_some_and(|n| !n.is_empty() && n.chars().all(|ch| ch.is_ascii_digit()));
        if logical == "Controller" || etcd_like {
            problem(
                &at("name"),
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
                    &at_item("subnets", j),
                    format!(
                        "\"{wanted}\" is neither the availability zone nor the id of one of the cluster's node subnets ({node_subnets_field}: {})",
                        known.join(", ")
                    ),
                );
            }
        }
        if let Some(instance_type) = &pool.instance_type
            && !is_instance_type(instance_type)
        {
            problem(
                &at("instanceType"),
                format!("\"{instance_type}\" is not an EC2 instance type like m6i.large"),
            );
        }
        if let Some(price) = &pool.spot_price
            && !is_spot_price(price)
        {
            problem(
                &at("spotPrice"),
                format!("\"{price}\" is not a price in dollars per hour like 0.05"),
            );
        }
        if pool.instance_types.as_ref().is_some_and(Vec::is_empty) {
            problem(
                &at("instanceTypes"),
                "an empty list: name at least one instance type, or leave instanceTypes out".into(),
            );
        }
        let instance_types = pool.instance_types.as_deref().unwrap_or_default();
        if !instance_types.is_empty() {
            if pool.instance_type.is_some() {
                problem(
                    &at("instanceTypes"),
                    "give instanceType or instanceTypes, not both".into(),
                );
            }
            if instance_types.len() > 40 {
                problem(
                    &at("instanceTypes"),
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
                        &at_item("instanceTypes", j),
                        format!("\"{instance_type}\" is not an EC2 instance type like m6i.large"),
                    );
                }
                if !seen.insert(instance_type) {
                    problem(
                        &at_item("instanceTypes", j),
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
                        &at(field),
                        "only applies to a pool with instanceTypes (a mixed instances policy)"
                            .into(),
                    );
                }
            }
        }
        match pool.on_demand_percentage_above_base_capacity {
            Some(percent) if percent > 100 => problem(
                &at("onDemandPercentageAboveBaseCapacity"),
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
                            &at(field),
                            "has no effect: onDemandPercentageAboveBaseCapacity is 100, so the pool runs no spot instances".into(),
                        );
                    }
                }
            }
            _ => {}
        }
        if pool.labels.contains_key(POOL_LABEL) {
            problem(
                &[
                    key("nodePools"),
                    Segment::Index(i),
                    key("labels"),
                    key(POOL_LABEL),
                ],
                format!("kube-aws sets {POOL_LABEL} to the pool's name itself"),
            );
        }
        if let Some(arn) = &pool.instance_profile_arn {
            if !pool.managed_policies.is_empty() {
                problem(
                    &at("managedPolicies"),
                    "a pool with instanceProfileArn runs with that profile's role; attach the policies to it instead".into(),
                );
            }
            if !is_iam_arn(arn, partition, "instance-profile/") {
                problem(
                    &at("instanceProfileArn"),
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
                &at("managedPolicies"),
                format!(
                    "IAM attaches at most 20 managed policies to a role (10 unless the account's quota was raised); this role would have {attached}"
                ),
            );
        }
        for (j, arn) in pool.managed_policies.iter().enumerate() {
            if !is_iam_arn(arn, partition, "policy/") {
                problem(
                    &at_item("managedPolicies", j),
                    format!(
                        "\"{arn}\" is not a managed policy ARN of {partition} ({} is there): arn:{partition}:iam::aws:policy/NAME or arn:{partition}:iam::123456789012:policy/NAME",
                        c.region
                    ),
                );
            }
        }
        if pool.autoscaled {
            if !c.cluster_autoscaler.enabled {
                problem(
                    &at("autoscaled"),
                    "needs the cluster-autoscaler: set clusterAutoscaler.enabled: true".into(),
                );
            }
            if pool.count.is_some() {
                problem(
                    &at("count"),
                    "an autoscaled pool's size is the cluster-autoscaler's: give minSize and maxSize instead".into(),
                );
            }
            // Each label and taint becomes a tag of the group: keys of at most 128 characters,
            // each once, and 50 tags in all, with kube-aws's 8 and the propagated stackTags.
            let tags =
                OWN_TAGS_PER_RESOURCE + pool.labels.len() + pool.taints.len() + c.stack_tags.len();
            if tags > 50 {
                problem(
                    &at("labels"),
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
                    &[
                        key("nodePools"),
                        Segment::Index(i),
                        key("labels"),
                        key(label),
                    ],
                    format!(
                        "an autoscaled pool's label keys become tags {NODE_TEMPLATE_LABEL}KEY, at most 128 characters: at most {longest_label} for the key (got {})",
                        label.len()
                    ),
                );
            }
            let mut taint_keys = BTreeSet::new();
            for (j, taint) in pool.taints.iter().enumerate() {
                let taint_key = [
                    key("nodePools"),
                    Segment::Index(i),
                    key("taints"),
                    Segment::Index(j),
                    key("key"),
                ];
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
    }
}

/// The tag prefixes of what the cluster-autoscaler assumes of a node of an empty group.
const NODE_TEMPLATE_LABEL: &str = "k8s.io/cluster-autoscaler/node-template/label/";
const NODE_TEMPLATE_TAINT: &str = "k8s.io/cluster-autoscaler/node-template/taint/";

/// The AWS partition of a region, as ARNs there spell it.
fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// Whether `arn` is an IAM ARN of `partition` whose resource starts with `resource`
/// (`policy/`, …): `arn:PARTITION:iam::ACCOUNT:RESOURCE`, ACCOUNT 12 digits or `aws` for AWS
/// managed policies.
fn is_iam_arn(arn: &str, partition: &str, resource: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let expected_partition = partition;
    let [scheme, partition, service, region, account, rest] = parts[..] else {
        return false;
    };
    let account_ok = (account.len() == 12 && account.chars().all(|ch| ch.is_ascii_digit()))
        || (account == "aws" && resource == "policy/");
    scheme == "arn"
        && partition == expected_partition
        && service == "iam"
        && region.is_empty()
        && account_ok
        && rest
            .strip_prefix(resource)
            .is_some_and(|name| !name.is_empty())
}

/// Where the state, the artifacts and the plan signatures live.
fn storage_problems(c: &ClusterConfig, problem: &mut dyn FnMut(&[Segment], String)) {
    let partition = partition_of(&c.region);
    for (field, value, resource) in [
        (
            "cloudFormationRoleArn",
            &c.cloud_formation_role_arn,
            "role/",
        ),
        (
            "iamPermissionsBoundaryArn",
            &c.iam_permissions_boundary_arn,
            "policy/",
        ),
    ] {
        if let Some(arn) = value
            && !is_iam_arn(arn, partition, resource)
        {
            problem(
                &[key(field)],
                format!(
                    "\"{arn}\" is not an IAM {} ARN of {partition}: arn:{partition}:iam::123456789012:{resource}NAME",
                    resource.trim_end_matches('/')
                ),
            );
        }
    }
    if c.state.backend == StateBackendKind::S3 {
        for field in ["bucket", "key"] {
            let value = if field == "bucket" {
                &c.state.bucket
            } else {
                &c.state.key
            };
            if value.as_deref().unwrap_or("").is_empty() {
                problem(
                    &[key("state"), key("backend")],
                    format!("backend s3 needs state.{field}"),
                );
            }
        }
    }
    if let Some(arn) = &c.plan_signing_key_arn {
        if !arn.starts_with("arn:") || !arn.contains(":kms:") {
            problem(
                &[key("planSigningKeyArn")],
                format!("\"{arn}\" is not a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)"),
            );
        } else if c.unsigned_plans {
            problem(
                &[key("unsignedPlans")],
                "unsignedPlans: true contradicts planSigningKeyArn: apply would still refuse unsigned plans; remove one".into(),
            );
        }
    }
    if let Some(bucket) = &c.template_bucket
        && !is_bucket_name(bucket)
    {
        problem(
            &[key("templateBucket")],
            format!(
                "\"{bucket}\" is not an S3 bucket name (3-63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit)"
            ),
        );
    }
}

/// S3's general purpose bucket naming rules, the part that can be checked without AWS.
fn is_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '.' || ch == '-')
        && name.starts_with(|ch: char| ch.is_ascii_alphanumeric())
        && name.ends_with(|ch: char| ch.is_ascii_alphanumeric())
        && !name.contains("..")
}
