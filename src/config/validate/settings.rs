//! Checks of the cluster-wide settings: control characters anywhere, names, versions, keys,
//! tags and the state's storage.

use super::*;
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
pub(super) fn load_balancer_tag_key_problems(
    c: &ClusterConfig,
    problem: &mut dyn FnMut(&[Segment], String),
) {
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
pub(super) fn stack_tag_problems(c: &ClusterConfig, problem: &mut dyn FnMut(&[Segment], String)) {
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

/// Any string of cluster.yaml (value or map key) holding a control character: values end up
/// in units, scripts and cloud-configs, where a newline would start a directive or a file of
/// its own and a carriage return or escape would hide it. No setting has a use for one.
pub(super) fn control_character_problems(
    c: &ClusterConfig,
    problem: &mut dyn FnMut(&[Segment], String),
) {
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
pub(super) fn settings_problems(c: &ClusterConfig, problem: &mut dyn FnMut(&[Segment], String)) {
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

/// Where the state, the artifacts and the plan signatures live.
pub(super) fn storage_problems(c: &ClusterConfig, problem: &mut dyn FnMut(&[Segment], String)) {
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
