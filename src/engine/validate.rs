//! `validate`: cluster.yaml, every rendered cloud-config and the stack template offline, then
//! (online) CloudFormation ValidateTemplate and the external resources the stack relies on.

use std::collections::BTreeSet;
use std::path::Path;

use time::OffsetDateTime;

use super::ZoneProblem;
use super::backend::Backend;
use super::plan::records::configured_zone;
use super::{AwsOptions, BuildInputs, EngineError, at_setting, build, setting_line};
use crate::aws::AwsContext;
use crate::aws::cloudformation::StackService;
use crate::aws::images::Ec2Images;
use crate::aws::kms::KmsVault;
use crate::config::{CLUSTER_FILE, ClusterConfig, StateBackendKind};
use crate::finding::Finding;
use crate::render::{self, RenderError};
use crate::validate::template;

fn render_finding(e: &RenderError) -> Finding {
    match e {
        RenderError::Template {
            template,
            line,
            message,
        } => Finding::error(template, *line, message.clone()),
        RenderError::StackJson { line, .. } => {
            Finding::error(render::STACK, Some(*line), e.to_string())
        }
        RenderError::MissingTls(_) | RenderError::PoolStackHoldsMore { .. } => {
            Finding::error(render::STACK, None, e.to_string())
        }
        RenderError::NoArtifactBucket => {
            Finding::error("cluster.yaml", None, crate::config::MISSING_TEMPLATE_BUCKET)
                .in_field("templateBucket")
        }
    }
}

/// What the offline checks found, and what they rendered (for the online checks).
pub struct Offline {
    pub config: Option<ClusterConfig>,
    pub stack_template: Option<String>,
    pub findings: Vec<Finding>,
}

/// Everything that needs no AWS. Certificates and the AMI are stand-ins: only the shape of
/// the rendered files is checked.
pub async fn offline(dir: &Path, now: OffsetDateTime) -> Result<Offline, EngineError> {
    let config = match ClusterConfig::load(dir) {
        Ok(c) => c,
        Err(e) => {
            return Ok(Offline {
                config: None,
                stack_template: None,
                findings: e.problems,
            });
        }
    };
    let mut lifecycle = end_of_life_findings(dir, &config, now);
    lifecycle.extend(weakening_findings(dir, &config));
    lifecycle.extend(zone_findings(dir, &config));
    // Without the state: certificates and the AMI are stand-ins, only the shape is checked.
    let inputs = BuildInputs {
        offline_ami: "ami-00000000000000000",
        ..BuildInputs::new(&config, None, now)
    };
    let (stack_template, findings) =
        match build::<KmsVault, Ec2Images>(dir, &inputs, None, None, &mut |_| {}).await {
            Ok(built) => {
                let findings = crate::validate::rendered::check(&built.rendered, &built.templates);
                (Some(built.rendered.stack_template), findings)
            }
            Err(EngineError::Render(e)) => (None, vec![render_finding(&e)]),
            Err(e) => return Err(e),
        };
    lifecycle.extend(findings);
    Ok(Offline {
        config: Some(config),
        stack_template,
        findings: lifecycle,
    })
}

/// A warning for every weakening of the secure defaults the configuration opts into.
fn weakening_findings(dir: &Path, config: &ClusterConfig) -> Vec<Finding> {
    let everywhere = |cidrs: &[ipnet::Ipv4Net]| cidrs.iter().any(|c| c.prefix_len() == 0);
    let mut out = Vec::new();
    if everywhere(&config.ssh_access_allowed_source_cidrs) {
        out.push(at_setting(
            dir,
            "sshAccessAllowedSourceCIDRs",
            Finding::warning(
                CLUSTER_FILE,
                None,
                "SSH (port 22) is open to the whole internet on every instance, etcd included; allow your own networks, or use ssmSessionManager instead",
            ),
        ));
    }
    let internal = config
        .api_load_balancer()
        .is_some_and(|lb| lb.scheme == crate::config::LoadBalancerScheme::Internal);
    if everywhere(&config.api_access_allowed_source_cidrs) && !internal {
        out.push(at_setting(
            dir,
            "apiAccessAllowedSourceCIDRs",
            Finding::warning(
                CLUSTER_FILE,
                None,
                "the Kubernetes API (port 443) is reachable from the whole internet (the default); list the networks your users and CI reach it from",
            ),
        ));
    }
    out
}

/// Where the control plane sits, when it is meant to survive a failure (more than one etcd
/// member or controller): a warning when one zone's loss stops it. Members go to subnet
/// `i mod n` and the controllers' group spans every subnet, so the subnets' zones decide.
fn zone_findings(dir: &Path, config: &ClusterConfig) -> Vec<Finding> {
    if config.etcd_count <= 1 && config.controller_count <= 1 {
        return Vec::new();
    }
    let setting = match (config.private_subnets.is_empty(), config.subnets.is_empty()) {
        (false, _) => "privateSubnets",
        (true, false) => "subnets",
        (true, true) => "availabilityZone",
    };
    let warn = |message: String| {
        vec![at_setting(
            dir,
            setting,
            Finding::warning(CLUSTER_FILE, None, message),
        )]
    };
    let zones: BTreeSet<String> = config
        .node_subnets()
        .into_iter()
        .map(|s| s.availability_zone)
        .collect();
    if zones.len() == 1 {
        let zone = zones.first().cloned().unwrap_or_default();
        return warn(format!(
            "the control plane ({} etcd member(s), {} controller(s)) sits in one zone, {zone}: losing it loses the cluster; list subnets in three zones (etcd member i runs in subnet i mod the number of subnets, the controllers in all of them)",
            config.etcd_count, config.controller_count
        ));
    }
    let members = config.etcd_members();
    let quorum = members.len() / 2 + 1;
    let crowded = zones.iter().find_map(|zone| {
        let here = members
            .iter()
            .filter(|m| &m.availability_zone == zone)
            .count();
        (members.len() > 1 && here >= quorum).then_some((zone, here))
    });
    match crowded {
        Some((zone, here)) => warn(format!(
            "{here} of the {} etcd members run in {zone}, a quorum: losing that zone stops etcd and the cluster with it; etcd member i runs in subnet i mod {}, so order the subnets to alternate zones, in three zones or more",
            members.len(),
            config.node_subnets().len()
        )),
        None => Vec::new(),
    }
}

/// Upstream end of life of the cluster's Kubernetes minor: an error once it has passed (the
/// version gets no security fixes), a warning in the 90 days before.
fn end_of_life_findings(dir: &Path, config: &ClusterConfig, now: OffsetDateTime) -> Vec<Finding> {
    let version = &config.kubernetes_version;
    let Some(end) = crate::releases::end_of_life(version) else {
        return Vec::new();
    };
    let Ok(end_date) = time::Date::parse(
        end,
        time::macros::format_description!("[year]-[month]-[day]"),
    ) else {
        return Vec::new();
    };
    let today = now.date();
    let finding = if end_date < today {
        Finding::error(
            CLUSTER_FILE,
            None,
            format!(
                "{version} reached its upstream end of life on {end} and gets no security fixes; the default is {}",
                crate::releases::DEFAULT_KUBERNETES_VERSION
            ),
        )
    } else if end_date - today < time::Duration::days(90) {
        Finding::warning(
            CLUSTER_FILE,
            None,
            format!("{version} reaches its upstream end of life on {end}; plan an upgrade"),
        )
    } else {
        return Vec::new();
    };
    vec![at_setting(dir, "kubernetesVersion", finding)]
}

/// The external resources: the KMS key, the hosted zone, an existing VPC and route table, the
/// key pair, the state and template buckets, the plan signing key and the zones; and
/// CloudFormation's own ValidateTemplate.
async fn online(
    dir: &Path,
    config: &ClusterConfig,
    context: &AwsContext,
    stack_template: Option<&str>,
) -> Vec<Finding> {
    let mut out = places_and_keys(dir, config, context).await;
    let external = "AWS";
    match context
        .kms()
        .check_key(
            &config.kms_key_arn,
            &crate::assets::encryption_context(&config.cluster_name, "validate"),
        )
        .await
    {
        Ok(None) => {}
        Ok(Some(problem)) => {
            out.push(Finding::error(external, None, problem.to_string()).in_field("kmsKeyArn"))
        }
        Err(e) => out.push(Finding::error(external, None, e.to_string()).in_field("kmsKeyArn")),
    }
    if config.create_record_set {
        match configured_zone(config, &context.route53()).await {
            Ok(_) => {}
            Err(ZoneProblem::Missing(_)) => out.push(
                Finding::error(external, None, "the hosted zone does not exist")
                    .in_field("hostedZoneId"),
            ),
            Err(e) => {
                out.push(Finding::error(external, None, e.to_string()).in_field("hostedZoneId"))
            }
        }
    }
    let network = context.network();
    if let Some(vpc_id) = &config.vpc_id {
        match network.vpc(vpc_id).await {
            Ok(None) => out.push(
                Finding::error(external, None, format!("VPC {vpc_id} does not exist"))
                    .in_field("vpcId"),
            ),
            Ok(Some(vpc)) => {
                for subnet in config.effective_subnets() {
                    if !vpc.cidrs.iter().any(|c| c.contains(&subnet.instance_cidr)) {
                        out.push(Finding::error(
                            external,
                            None,
                            format!(
                                "instanceCIDR {} is not inside VPC {vpc_id} ({})",
                                subnet.instance_cidr,
                                vpc.cidrs
                                    .iter()
                                    .map(|c| c.to_string())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ));
                    }
                    if let Some(id) = &subnet.id {
                        // An existing subnet: it must be this VPC's, with the zone and CIDR given.
                        match vpc.subnets.iter().find(|e| &e.id == id) {
                            None => out.push(Finding::error(external, None, format!("subnet {id} is not a subnet of VPC {vpc_id}")).in_field("subnets")),
                            Some(e) if e.cidr != subnet.instance_cidr || e.availability_zone != subnet.availability_zone => out.push(Finding::error(external, None, format!(
                                "subnet {id} is {} in {}, not {} in {} as cluster.yaml says",
                                e.cidr, e.availability_zone, subnet.instance_cidr, subnet.availability_zone
                            )).in_field("subnets")),
                            Some(_) => {}
                        }
                        continue;
                    }
                    for existing in &vpc.subnets {
                        if existing.cidr.contains(&subnet.instance_cidr.network())
                            || subnet.instance_cidr.contains(&existing.cidr.network())
                        {
                            out.push(Finding::error(
                                external,
                                None,
                                format!(
                                    "instanceCIDR {} overlaps existing subnet {} of VPC {vpc_id}",
                                    subnet.instance_cidr, existing.cidr
                                ),
                            ));
                        }
                    }
                }
            }
            Err(e) => out.push(Finding::error(external, None, e.to_string()).in_field("vpcId")),
        }
        if let Some(rtb) = &config.route_table_id {
            match network.route_table_exists(rtb).await {
                Ok(true) => {}
                Ok(false) => out.push(
                    Finding::error(external, None, format!("route table {rtb} does not exist"))
                        .in_field("routeTableId"),
                ),
                Err(e) => {
                    out.push(Finding::error(external, None, e.to_string()).in_field("routeTableId"))
                }
            }
        }
    }
    if let Some(key_name) = &config.key_name {
        match network.key_pair_exists(key_name).await {
            Ok(true) => {}
            Ok(false) => out.push(
                Finding::error(
                    external,
                    None,
                    format!("EC2 key pair {} does not exist", key_name),
                )
                .in_field("keyName"),
            ),
            Err(e) => out.push(Finding::error(external, None, e.to_string()).in_field("keyName")),
        }
    }
    if let Some(body) = stack_template
        .map(render::submitted_stack)
        .filter(|t| t.len() <= template::INLINE_LIMIT)
        && let Err(e) = context.cloudformation().validate_template(&body).await
    {
        out.push(Finding::error(
            render::STACK,
            None,
            format!("CloudFormation ValidateTemplate: {e}"),
        ));
    }
    out
}

/// What plan needs before it changes anything, each at its cluster.yaml line: the state
/// bucket (there, versioned), the template bucket (there), the plan signing key (an enabled
/// SIGN_VERIFY ECC_NIST_P256 key) and the subnets' zones (the region's). Each would otherwise
/// fail only in plan, after a change set was made, or in apply.
async fn places_and_keys(dir: &Path, config: &ClusterConfig, context: &AwsContext) -> Vec<Finding> {
    use crate::aws::s3::{BucketVersioning, S3Objects};
    let mut out = Vec::new();
    let mut out_warnings = Vec::new();
    // Placed at the top-level key's line, about the (possibly nested) field.
    let mut found = |key: &str, field: &str, message: String| {
        out.push(Finding::error(CLUSTER_FILE, setting_line(dir, key), message).in_field(field))
    };
    if let (StateBackendKind::S3, Some(bucket)) = (config.state.backend, &config.state.bucket) {
        let region = config.state.region.as_deref().unwrap_or(&config.region);
        match S3Objects::connect(context, region, bucket)
            .versioning()
            .await
        {
            Ok(BucketVersioning::Enabled) => {}
            Ok(BucketVersioning::NoBucket) => found(
                "state",
                "state.bucket",
                format!(
                    "S3 bucket {bucket} does not exist in {region} (or this caller may not see it)"
                ),
            ),
            Ok(BucketVersioning::Off) => found(
                "state",
                "state.bucket",
                crate::state::StateError::Unversioned {
                    bucket: bucket.clone(),
                }
                .to_string(),
            ),
            Err(e) => found("state", "state.bucket", e.to_string()),
        }
    }
    if let Some(bucket) = &config.template_bucket {
        match S3Objects::connect(context, &config.region, bucket)
            .versioning()
            .await
        {
            Ok(BucketVersioning::NoBucket) => found(
                "templateBucket",
                "templateBucket",
                format!(
                    "S3 bucket {bucket} does not exist in {} (or this caller may not see it)",
                    config.region
                ),
            ),
            Ok(_) => {}
            // Plan needs only to put and get objects there: a role without
            // s3:GetBucketVersioning cannot be told from a missing bucket, nor is it wrong.
            Err(e) if e.code.as_deref() == Some("AccessDenied") => out_warnings.push(
                Finding::warning(
                    CLUSTER_FILE,
                    setting_line(dir, "templateBucket"),
                    format!("not checked, this caller may not read the bucket's versioning ({e})"),
                )
                .in_field("templateBucket"),
            ),
            Err(e) => found("templateBucket", "templateBucket", e.to_string()),
        }
    }
    if let Some(key) = &config.plan_signing_key_arn {
        match context.kms().check_signing_key(key).await {
            Ok(None) => {}
            Ok(Some(problem)) => found(
                "planSigningKeyArn",
                "planSigningKeyArn",
                problem.to_string(),
            ),
            Err(e) => found("planSigningKeyArn", "planSigningKeyArn", e.to_string()),
        }
    }
    match context.network().availability_zones().await {
        Ok(zones) => {
            let named = config
                .effective_subnets()
                .into_iter()
                .map(|s| (s.availability_zone, config.subnets.is_empty()))
                .map(|(zone, top)| (zone, if top { "availabilityZone" } else { "subnets" }))
                .chain(
                    config
                        .private_subnets
                        .iter()
                        .map(|s| (s.availability_zone.clone(), "privateSubnets")),
                )
                .collect::<BTreeSet<_>>();
            for (zone, key) in named.iter().filter(|(z, _)| !zones.contains(z)) {
                found(
                    key,
                    key,
                    format!(
                        "availability zone {zone} is not a zone of {} (it has {})",
                        config.region,
                        zones.join(", ")
                    ),
                );
            }
        }
        Err(e) => found("availabilityZone", "availabilityZone", e.to_string()),
    }
    out.extend(out_warnings);
    out
}

/// `kube-aws validate`: all findings, offline part first.
pub async fn validate(
    dir: &Path,
    aws: &AwsOptions,
    offline_only: bool,
    now: OffsetDateTime,
) -> Result<Vec<Finding>, EngineError> {
    let Offline {
        config,
        stack_template,
        mut findings,
    } = offline(dir, now).await?;
    let Some(config) = config else {
        return Ok(findings);
    };
    let context = match offline_only {
        true => None,
        false => Some(aws.context(&config).await?),
    };
    if let Some(context) = &context {
        findings.extend(online(dir, &config, context, stack_template.as_deref()).await);
    }
    findings.extend(against_the_running_cluster(dir, &config, context.as_ref()).await);
    Ok(findings)
}

/// cluster.yaml against the cluster the state records (the local state always; one in S3
/// only online): `kubernetesVersion` one minor up at most, never back; `etcdCount` as it runs.
async fn against_the_running_cluster(
    dir: &Path,
    config: &ClusterConfig,
    context: Option<&AwsContext>,
) -> Vec<Finding> {
    let backend = match (config.state.backend, context) {
        (StateBackendKind::Local, _) => Backend::local(dir),
        (StateBackendKind::S3, Some(context)) => Backend::open(dir, config, context),
        (StateBackendKind::S3, None) => return Vec::new(),
    };
    match backend.load(config).await {
        Ok(loaded) => {
            super::plan::running_cluster_findings(dir, config, loaded.as_ref().map(|l| &l.state))
        }
        Err(e) => vec![Finding::warning(
            "state",
            None,
            format!(
                "cannot read the state to check kubernetesVersion and etcdCount against the running cluster: {e}"
            ),
        )],
    }
}
