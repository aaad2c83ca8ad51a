//! The typed model of `cluster.yaml`: field names and defaults of the original kube-aws, parsed
//! with positions so every mistake names its file, line and column.

mod defaults;
mod kubelet;
mod locate;
mod model;
mod parse_limits;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::finding::Finding;
pub use kubelet::*;
pub use locate::Locator;
use locate::Segment;
pub use model::*;
pub(crate) use parse_limits::nested_beyond;
use parse_limits::{beyond_bounds, lenient_findings};

/// File name of the cluster definition inside a cluster directory.
pub const CLUSTER_FILE: &str = "cluster.yaml";

/// The whole cluster definition. Field names follow the original kube-aws `cluster.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConfig {
    pub cluster_name: String,
    #[serde(rename = "externalDNSName")]
    pub external_dns_name: String,
    pub region: String,
    #[serde(default)]
    pub availability_zone: Option<String>,
    /// EC2 key pair for SSH; optional, since SSH is closed unless `sshAccessAllowedSourceCIDRs`
    /// opens it (and `ssmSessionManager` gives shell access without one).
    #[serde(default)]
    pub key_name: Option<String>,
    pub kms_key_arn: String,
    /// Sources allowed to SSH (port 22) to the instances; none by default.
    #[serde(rename = "sshAccessAllowedSourceCIDRs", default)]
    pub ssh_access_allowed_source_cidrs: Vec<Ipv4Net>,
    /// Sources allowed to reach the Kubernetes API (port 443); everywhere by default, which
    /// `validate` warns about.
    #[serde(
        rename = "apiAccessAllowedSourceCIDRs",
        default = "defaults::api_access_allowed_source_cidrs"
    )]
    pub api_access_allowed_source_cidrs: Vec<Ipv4Net>,
    /// Lets AWS Systems Manager Session Manager open shells on the instances (their roles get
    /// the agent's five actions, as AWS's AWSCloud9SSMInstanceProfile lists them, and none of
    /// AmazonSSMManagedInstanceCore's Parameter Store reads): shell access without SSH, a key
    /// pair or an open port.
    #[serde(default)]
    pub ssm_session_manager: bool,
    /// Customer managed KMS key that encrypts every EBS volume; the AWS-managed EBS key if unset.
    #[serde(default)]
    pub ebs_kms_key_arn: Option<String>,
    #[serde(default)]
    pub create_record_set: bool,
    #[serde(default)]
    pub hosted_zone_id: Option<String>,
    /// The hosted zone by name, for users who know the name rather than the id.
    #[serde(default)]
    pub hosted_zone: Option<String>,
    #[serde(rename = "recordSetTTL", default = "defaults::record_set_ttl")]
    pub record_set_ttl: u32,
    #[serde(default)]
    pub vpc_id: Option<String>,
    #[serde(default)]
    pub route_table_id: Option<String>,
    #[serde(rename = "vpcCIDR", default = "defaults::vpc_cidr")]
    pub vpc_cidr: Ipv4Net,
    #[serde(rename = "instanceCIDR", default = "defaults::instance_cidr")]
    pub instance_cidr: Ipv4Net,
    #[serde(default)]
    pub subnets: Vec<SubnetConfig>,
    /// When set, every instance runs in these subnets, without a public address, reaching out
    /// through NAT gateways in `subnets`, which then hold only those and the API load balancer.
    #[serde(default)]
    pub private_subnets: Vec<SubnetConfig>,
    /// `perAZ` (a NAT gateway in each zone of the private subnets) or `single` (one, shared).
    #[serde(default)]
    pub nat_gateways: NatGateways,
    /// The load balancer in front of the API servers. Setting it puts the controllers behind
    /// one even when there is a single controller; without it, several controllers (or private
    /// subnets) get the classic ELB of earlier releases.
    #[serde(default)]
    pub api_endpoint_load_balancer: Option<ApiLoadBalancer>,
    #[serde(default = "defaults::one")]
    pub controller_count: u32,
    #[serde(default = "defaults::instance_type")]
    pub controller_instance_type: String,
    #[serde(default = "defaults::root_volume_size")]
    pub controller_root_volume_size: u32,
    #[serde(default = "defaults::root_volume_type")]
    pub controller_root_volume_type: String,
    #[serde(default = "defaults::one")]
    pub etcd_count: u32,
    #[serde(default = "defaults::instance_type")]
    pub etcd_instance_type: String,
    /// GiB of each member's own data volume (gp3, encrypted), which outlives its instances.
    #[serde(default = "defaults::etcd_data_volume_size")]
    pub etcd_data_volume_size: u32,
    #[serde(default = "defaults::root_volume_type")]
    pub etcd_data_volume_type: String,
    /// systemd calendar expression of the snapshots the leader saves to S3.
    #[serde(default = "defaults::etcd_snapshot_schedule")]
    pub etcd_snapshot_schedule: String,
    /// Days a snapshot is kept in the snapshot bucket.
    #[serde(default = "defaults::etcd_snapshot_retention_days")]
    pub etcd_snapshot_retention_days: u32,
    #[serde(default = "defaults::one")]
    pub worker_count: u32,
    #[serde(default = "defaults::instance_type")]
    pub worker_instance_type: String,
    #[serde(default = "defaults::root_volume_size")]
    pub worker_root_volume_size: u32,
    #[serde(default = "defaults::root_volume_type")]
    pub worker_root_volume_type: String,
    #[serde(default)]
    pub worker_spot_price: Option<String>,
    /// How long CloudFormation waits for a new controller to signal that its API server is
    /// ready (ISO 8601 duration); a controller that does not makes the stack roll back.
    #[serde(default = "defaults::create_timeout")]
    pub controller_create_timeout: String,
    /// How long CloudFormation waits for a new worker to signal that its Node is Ready.
    #[serde(default = "defaults::create_timeout")]
    pub worker_create_timeout: String,
    /// How long CloudFormation waits for a new etcd member to signal that it is healthy: above
    /// the worst case of attaching its data volume while its previous instance lets go.
    #[serde(default = "defaults::etcd_create_timeout")]
    pub etcd_create_timeout: String,
    #[serde(default)]
    pub node_pools: Vec<NodePoolConfig>,
    /// Each worker pool in a CloudFormation stack of its own (`<cluster>-pool-<name>`), beside
    /// the cluster stack: a pool changes without touching the control plane, and a cluster
    /// outgrows one stack's 500 resources and 1 MB template.
    #[serde(default)]
    pub stack_per_pool: bool,
    #[serde(default)]
    pub cluster_autoscaler: ClusterAutoscalerConfig,
    /// No longer placed: a fixed address made the single controller impossible to replace
    /// (CloudFormation creates the new instance before it deletes the old one). Kept only so
    /// that `validate` can say so at its line.
    #[serde(rename = "controllerIP", default)]
    pub controller_ip: Option<Ipv4Addr>,
    #[serde(rename = "serviceCIDR", default = "defaults::service_cidr")]
    pub service_cidr: Ipv4Net,
    #[serde(rename = "podCIDR", default = "defaults::pod_cidr")]
    pub pod_cidr: Ipv4Net,
    #[serde(rename = "dnsServiceIP", default = "defaults::dns_service_ip")]
    pub dns_service_ip: Ipv4Addr,
    #[serde(default = "defaults::kubernetes_version")]
    pub kubernetes_version: String,
    #[serde(default)]
    pub release_channel: ReleaseChannel,
    #[serde(default)]
    pub ami_id: Option<String>,
    #[serde(rename = "tlsCADurationDays", default = "defaults::ca_days")]
    pub tls_ca_duration_days: u32,
    #[serde(default = "defaults::cert_days")]
    pub tls_cert_duration_days: u32,
    #[serde(default)]
    pub stack_tags: BTreeMap<String, String>,
    /// Tag keys a Service may give its load balancer through the cloud controller's
    /// `service.beta.kubernetes.io/aws-load-balancer-additional-resource-tags` annotation,
    /// beyond the cluster's own: the controller role may create load balancers tagged with
    /// these keys only.
    #[serde(default)]
    pub load_balancer_tag_keys: Vec<String>,
    #[serde(default)]
    pub state: StateConfig,
    /// S3 bucket (in `region`) for what the stack reads from S3: the add-on manifests the
    /// controllers fetch at boot and templates over the inline limit. Defaults to the state
    /// bucket; required with local state, since EC2 user data holds only 16 KB.
    #[serde(default)]
    pub template_bucket: Option<String>,
    /// A CloudFormation service role (`RoleARN`) the stacks are created, changed and deleted
    /// as, so the apply job's own identity needs no EC2, IAM or Auto Scaling rights:
    /// `examples/iam/cloudformation-role-policy.json` is what it needs, bounded so that the
    /// roles it creates can never exceed `iamPermissionsBoundaryArn`.
    #[serde(default, rename = "cloudFormationRoleArn")]
    pub cloud_formation_role_arn: Option<String>,
    /// A managed policy every IAM role the stack creates carries as its permissions boundary
    /// (`examples/iam/instance-role-boundary.json`); the CloudFormation role may create roles
    /// only with it.
    #[serde(default, rename = "iamPermissionsBoundaryArn")]
    pub iam_permissions_boundary_arn: Option<String>,
    /// Asymmetric KMS key (`ECC_NIST_P256`, `SIGN_VERIFY`) that signs every plan; apply
    /// verifies the signature first, so a plan edited and re-hashed in the artifact store is
    /// refused. The plan role may `kms:Sign` with it, the apply role `kms:Verify`.
    #[serde(default)]
    pub plan_signing_key_arn: Option<String>,
    /// Accept unsigned plans: the explicit opt-out when there is no `planSigningKeyArn`.
    #[serde(default)]
    pub unsigned_plans: bool,
}

/// Why a cluster on local state needs `templateBucket`. Only rendering needs it, so a cluster
/// from before add-ons moved to S3 can still be inspected and destroyed without one.
pub const MISSING_TEMPLATE_BUCKET: &str = "required with the local state backend: the controllers fetch their add-on manifests from S3 at boot (EC2 user data holds only 16 KB), and large templates go there too; name an S3 bucket in the cluster's region (or use state.backend s3, whose bucket is the default)";

/// Why a cluster needs `planSigningKeyArn` (or the explicit opt-out). Only plan and apply
/// need it, so an older cluster can still be inspected without one.
pub const MISSING_PLAN_SIGNING_KEY: &str = "planSigningKeyArn: required: plans are signed with an asymmetric KMS key (KeySpec ECC_NIST_P256, KeyUsage SIGN_VERIFY) and apply verifies the signature, so a plan edited after review is refused; name one, or set unsignedPlans: true to accept unsigned plans";

/// Where plan uploads what the stack reads from S3, under content-addressed keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactLocation {
    pub bucket: String,
    pub region: String,
    /// Prepended to `templates/…` and `addons/…`.
    pub prefix: String,
}

impl ArtifactLocation {
    /// Where the add-on manifests are, as a key prefix.
    pub fn addons_prefix(&self) -> String {
        format!("{}addons/", self.prefix)
    }

    /// The key of an add-on manifest with this content hash.
    pub fn addon_key(&self, sha256: &str) -> String {
        format!("{}{sha256}.yaml", self.addons_prefix())
    }

    /// The key of a stack template with this content hash.
    pub fn template_key(&self, sha256: &str) -> String {
        format!("{}templates/{sha256}.json", self.prefix)
    }

    /// The HTTPS URL CloudFormation reads an object from.
    pub fn url(&self, key: &str) -> String {
        format!(
            "https://{}.s3.{}.amazonaws.com/{key}",
            self.bucket, self.region
        )
    }
}

/// Name of the implicit pool made from the top-level `worker*` settings.
pub const DEFAULT_POOL: &str = "workers";

/// The label every node carries with its pool's name.
pub const POOL_LABEL: &str = "kube-aws.coreos.com/pool";

impl ClusterConfig {
    /// Parses `text` (read from `file`) and runs the semantic checks.
    pub fn parse(file: &Path, text: &str) -> Result<ClusterConfig, ConfigError> {
        match ClusterConfig::parse_lenient(file, text)? {
            (config, None) => Ok(config),
            (_, Some(problems)) => Err(problems),
        }
    }

    /// Parses `cluster.yaml` as far as it parses: a file whose fields all have their types is
    /// a configuration, with its unknown keys and semantic problems beside it (for the
    /// commands that only report, which must work while a bad edit waits for review). A
    /// field of the wrong type, or a file beyond the bounds, is an error as for `parse`.
    pub fn parse_lenient(
        file: &Path,
        text: &str,
    ) -> Result<(ClusterConfig, Option<ConfigError>), ConfigError> {
        let err = |problems| ConfigError {
            file: file.to_path_buf(),
            problems,
        };
        // The parsers recurse per nesting level: bound the input before either sees it.
        if let Some(problem) = beyond_bounds(text) {
            return Err(err(vec![problem]));
        }
        let locator = Locator::new(text).map_err(|p| err(vec![*p]))?;
        let mut unknown = Vec::new();
        let de = serde_norway::Deserializer::from_str(text);
        let parsed: Result<ClusterConfig, _> =
            serde_ignored::deserialize(de, |path| unknown.push(locate::segments(&path)));
        let mut problems: Vec<Finding> = unknown
            .iter()
            .map(|segments| locator.unknown_key(segments))
            .collect();
        match parsed {
            Ok(config) => {
                problems.extend(validate::semantic_problems(&config, &locator));
                let problems = (!problems.is_empty()).then(|| err(problems));
                Ok((config, problems))
            }
            Err(e) => {
                problems.push(yaml_problem(&e));
                problems.extend(lenient_findings(text, &e, &locator));
                problems.sort_by_key(|p| (p.line, p.column));
                problems.dedup();
                Err(err(problems))
            }
        }
    }

    /// Reads `cluster.yaml` from the cluster directory.
    pub fn load(dir: &Path) -> Result<ClusterConfig, ConfigError> {
        match ClusterConfig::load_lenient(dir)? {
            (config, None) => Ok(config),
            (_, Some(problems)) => Err(problems),
        }
    }

    /// [`ClusterConfig::parse_lenient`] of the cluster directory's `cluster.yaml`.
    pub fn load_lenient(dir: &Path) -> Result<(ClusterConfig, Option<ConfigError>), ConfigError> {
        let file = dir.join(CLUSTER_FILE);
        let unreadable = |why: String| ConfigError {
            file: file.clone(),
            problems: vec![general_problem(format!("cannot read: {why}"))],
        };
        let bytes = crate::bounded::read_in(dir, CLUSTER_FILE, crate::bounded::CLUSTER_FILE_LIMIT)
            .map_err(|e| unreadable(e.to_string()))?;
        let text = String::from_utf8(bytes)
            .map_err(|e| unreadable(format!("stream did not contain valid UTF-8: {e}")))?;
        ClusterConfig::parse_lenient(&file, &text)
    }

    /// The instance subnets: `subnets`, or the single `availabilityZone`/`instanceCIDR` pair.
    pub fn effective_subnets(&self) -> Vec<SubnetConfig> {
        if !self.subnets.is_empty() {
            return self.subnets.clone();
        }
        vec![SubnetConfig {
            id: None,
            availability_zone: self.availability_zone.clone().unwrap_or_default(),
            instance_cidr: self.instance_cidr,
        }]
    }

    /// The subnets instances run in: the private subnets when there are any, else the public ones.
    pub fn node_subnets(&self) -> Vec<SubnetConfig> {
        if self.private_subnets.is_empty() {
            self.effective_subnets()
        } else {
            self.private_subnets.clone()
        }
    }

    /// Whether the controllers sit behind the API load balancer (an Auto Scaling group) rather
    /// than being one instance with an Elastic IP: with several controllers, or in private subnets.
    pub fn controllers_behind_load_balancer(&self) -> bool {
        self.controller_count > 1
            || !self.private_subnets.is_empty()
            || self.api_endpoint_load_balancer.is_some()
    }

    /// The API load balancer the controllers are behind, if they are behind one.
    pub fn api_load_balancer(&self) -> Option<ApiLoadBalancer> {
        if !self.controllers_behind_load_balancer() {
            return None;
        }
        Some(self.api_endpoint_load_balancer.unwrap_or(ApiLoadBalancer {
            kind: LoadBalancerKind::Classic,
            scheme: LoadBalancerScheme::InternetFacing,
        }))
    }

    /// The default worker pool followed by every node pool, with defaults filled in.
    pub fn worker_pools(&self) -> Vec<WorkerPool> {
        let default_pool = WorkerPool {
            name: DEFAULT_POOL.to_string(),
            logical_name: logical_name(DEFAULT_POOL),
            count: self.worker_count,
            min_size: self.worker_count,
            max_size: self.worker_count.saturating_add(1),
            min_in_service: self.worker_count,
            instance_type: self.worker_instance_type.clone(),
            instance_types: Vec::new(),
            on_demand_base_capacity: 0,
            on_demand_percentage_above_base_capacity: 100,
            spot_allocation_strategy: SpotAllocationStrategy::default(),
            spot_price: self.worker_spot_price.clone(),
            root_volume_size: self.worker_root_volume_size,
            root_volume_type: self.worker_root_volume_type.clone(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            subnets: Vec::new(),
            managed_policies: Vec::new(),
            instance_profile_arn: None,
            autoscaled: false,
        };
        let pools = self.node_pools.iter().map(|p| {
            // An autoscaled group starts at minSize and the cluster-autoscaler moves it from
            // there; `count` (which validate refuses on such a pool) plays no part.
            let count = if p.autoscaled {
                p.min_size.unwrap_or(0)
            } else {
                p.count.unwrap_or(self.worker_count)
            };
            let max_size = p.max_size.unwrap_or(count.saturating_add(1));
            let spot_price = p
                .spot_price
                .clone()
                .or_else(|| self.worker_spot_price.clone());
            WorkerPool {
                name: p.name.clone(),
                logical_name: logical_name(&p.name),
                count,
                min_size: p.min_size.unwrap_or(count),
                max_size,
                min_in_service: count.min(max_size.saturating_sub(1)),
                instance_type: p
                    .instance_type
                    .clone()
                    .or_else(|| p.instance_types.iter().flatten().next().cloned())
                    .unwrap_or_else(|| self.worker_instance_type.clone()),
                instance_types: p.instance_types.clone().unwrap_or_default(),
                on_demand_base_capacity: p.on_demand_base_capacity.unwrap_or(0),
                on_demand_percentage_above_base_capacity: p
                    .on_demand_percentage_above_base_capacity
                    .unwrap_or(if spot_price.is_some() { 0 } else { 100 }),
                spot_allocation_strategy: p.spot_allocation_strategy.unwrap_or_default(),
                spot_price,
                root_volume_size: p.root_volume_size.unwrap_or(self.worker_root_volume_size),
                root_volume_type: p
                    .root_volume_type
                    .clone()
                    .unwrap_or_else(|| self.worker_root_volume_type.clone()),
                labels: p.labels.clone(),
                taints: p.taints.clone(),
                subnets: p.subnets.clone(),
                managed_policies: p.managed_policies.clone(),
                instance_profile_arn: p.instance_profile_arn.clone(),
                autoscaled: p.autoscaled,
            }
        });
        std::iter::once(default_pool).chain(pools).collect()
    }

    /// The bucket and key prefix for uploads: `templateBucket` under `CLUSTER/`, else the state
    /// bucket beside the state object (`KEY.templates/`, `KEY.addons/`).
    pub fn artifacts(&self) -> Option<ArtifactLocation> {
        if let Some(bucket) = &self.template_bucket {
            return Some(ArtifactLocation {
                bucket: bucket.clone(),
                region: self.region.clone(),
                prefix: format!("{}/", self.cluster_name),
            });
        }
        match (&self.state.backend, &self.state.bucket, &self.state.key) {
            (StateBackendKind::S3, Some(bucket), Some(key)) => Some(ArtifactLocation {
                bucket: bucket.clone(),
                region: self.state.region.clone().unwrap_or(self.region.clone()),
                prefix: format!("{key}."),
            }),
            _ => None,
        }
    }

    /// CloudFormation stack name for this cluster.
    pub fn stack_name(&self) -> String {
        self.cluster_name.clone()
    }

    /// CloudFormation stack name of a worker pool's own stack (`stackPerPool`).
    pub fn pool_stack_name(&self, pool: &str) -> String {
        format!("{}-pool-{pool}", self.stack_name())
    }

    /// The private DNS zone in which each etcd member keeps its name pointed at its instance.
    pub fn etcd_domain(&self) -> String {
        format!(
            "{}.kube-aws.internal",
            self.cluster_name.to_ascii_lowercase()
        )
    }

    /// Until when (seconds of instance uptime) a boot script waiting for the signal it sends
    /// under `timeout` keeps trying: a minute (a quarter of a short timeout) before
    /// CloudFormation gives up, so the stack records the node's own FAILURE, not a timeout.
    pub fn signal_deadline_seconds(timeout: &str) -> u64 {
        let total = iso_seconds(timeout).unwrap_or(900);
        total - (total / 4).min(60)
    }

    /// The name nodes reach the API by, in the cluster's private zone: the stack itself points
    /// it at the load balancer or at the single controller while it creates them, so it
    /// resolves before any node needs it, and follows a replaced controller.
    pub fn api_internal_dns_name(&self) -> String {
        format!("api.{}", self.etcd_domain())
    }

    /// The etcd members: member `i` is `etcd-i`, known to its peers and clients by
    /// `etcd-i.<etcd_domain>` (so its certificate's SANs are known before anything runs), and
    /// placed in subnet `i mod n`.
    pub fn etcd_members(&self) -> Vec<EtcdMember> {
        let subnets = self.node_subnets();
        let domain = self.etcd_domain();
        (0..self.etcd_count as usize)
            .map(|index| {
                let subnet_index = index % subnets.len().max(1);
                EtcdMember {
                    index,
                    name: format!("etcd-{index}"),
                    host: format!("etcd-{index}.{domain}"),
                    logical_id: format!("AutoScaleEtcd{index}"),
                    subnet_index,
                    availability_zone: subnets
                        .get(subnet_index)
                        .map(|s| s.availability_zone.clone())
                        .unwrap_or_default(),
                }
            })
            .collect()
    }

    /// The first address of the service CIDR: the `kubernetes` service's cluster IP.
    pub fn kubernetes_service_ip(&self) -> Ipv4Addr {
        let base = u32::from(self.service_cidr.network());
        Ipv4Addr::from(base + 1)
    }
}

/// `gpu-large` → `GpuLarge`: node pool names become parts of CloudFormation logical ids.
pub fn logical_name(name: &str) -> String {
    name.split('-')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// Seconds of an ISO 8601 duration of hours, minutes and seconds (`PT1H30M`), as
/// CloudFormation takes for signal timeouts.
pub fn iso_seconds(value: &str) -> Option<u64> {
    let mut rest = value.strip_prefix("PT")?;
    let mut seconds = 0u64;
    if rest.is_empty() {
        return None;
    }
    for (unit, factor) in [('H', 3600u64), ('M', 60), ('S', 1)] {
        if let Some(at) = rest.find(unit) {
            let number: u64 = rest[..at].parse().ok()?;
            seconds = seconds.checked_add(number.checked_mul(factor)?)?;
            rest = &rest[at + 1..];
        }
    }
    rest.is_empty().then_some(seconds)
}

/// A mistake in `cluster.yaml` at `field`, `line` and `column`.
pub(crate) fn problem(
    field: String,
    line: Option<usize>,
    column: Option<usize>,
    message: impl Into<String>,
) -> Finding {
    Finding::error(CLUSTER_FILE, line, message)
        .in_field(field)
        .at_column(column)
}

/// A mistake in `cluster.yaml` as a whole.
fn general_problem(message: String) -> Finding {
    Finding::error(CLUSTER_FILE, None, message)
}

/// A serde error about `cluster.yaml`, at its place and in plain words.
fn yaml_problem(e: &serde_norway::Error) -> Finding {
    let location = e.location();
    // serde_norway appends " at line L column C" to its message; the position is reported
    // in our own prefix instead, so strip it to avoid saying it twice.
    let full = e.to_string();
    let message = match full.find(" at line ") {
        Some(at) => full[..at].to_string(),
        None => full,
    };
    let (field, message) = match message.split_once(": ") {
        Some((path, rest)) if !path.contains(' ') => (path.to_string(), rest.to_string()),
        _ => (String::new(), message),
    };
    problem(
        field,
        location.as_ref().map(|l| l.line()),
        location.as_ref().map(|l| l.column()),
        in_plain_words(&message),
    )
}

/// serde's type words in cluster.yaml's: `invalid type: string "many", expected u32` says
/// `expected a whole number from 0 to 4294967295, found the string "many"`. Anything else
/// serde says is kept as it is.
fn in_plain_words(message: &str) -> String {
    let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
    else {
        return message.to_string();
    };
    let Some((found, expected)) = rest.rsplit_once(", expected ") else {
        return message.to_string();
    };
    let expected = match expected {
        "u8" => "a whole number from 0 to 255",
        "u16" => "a whole number from 0 to 65535",
        "u32" => "a whole number from 0 to 4294967295",
        "u64" | "usize" => "a whole number of 0 or more",
        "i32" | "i64" => "a whole number",
        "f32" | "f64" => "a number",
        "a sequence" => "a list",
        "a map" => "a mapping (key: value lines)",
        struct_name if struct_name.starts_with("struct ") => "a mapping (key: value lines)",
        other => other,
    };
    let unquoted = |value: &str| value.trim_matches('`').to_string();
    let found = match found.split_once(' ') {
        Some(("string", value)) => format!("the string {value}"),
        Some(("integer" | "floating", value)) => {
            format!(
                "the number {}",
                unquoted(value.trim_start_matches("point "))
            )
        }
        Some(("boolean", value)) => unquoted(value),
        _ => match found {
            "sequence" => "a list".to_string(),
            "map" => "a mapping".to_string(),
            "unit value" => "nothing (an empty value)".to_string(),
            other => other.to_string(),
        },
    };
    format!("expected {expected}, found {found}")
}

/// Everything wrong with one `cluster.yaml`, each problem on its own line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Every one an error about `cluster.yaml`; the file is named by `file` when shown.
    pub problems: Vec<Finding>,
}

impl fmt::Display for ConfigError {
    /// `./cluster.yaml:8:1: workerCont: unknown key`, one problem per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display().to_string();
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {}", p.position_in(&file), p.what())?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests;
