//! The typed model of `cluster.yaml`: field names and defaults of the original kube-aws, parsed
//! with positions so every mistake names its file, line and column.

mod locate;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

pub use locate::Locator;
use locate::Segment;

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

/// One instance subnet. Without `subnets`, `availabilityZone` + `instanceCIDR` make the only one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubnetConfig {
    /// An existing subnet of `vpcId` to use instead of creating one; its zone and CIDR must be
    /// given too (validate checks them against AWS).
    #[serde(default)]
    pub id: Option<String>,
    pub availability_zone: String,
    #[serde(rename = "instanceCIDR")]
    pub instance_cidr: Ipv4Net,
}

impl SubnetConfig {
    /// Whether a pool's `subnets` entry names this subnet: by its zone or by its id.
    pub fn is_named(&self, name: &str) -> bool {
        self.availability_zone == name || self.id.as_deref() == Some(name)
    }
}

/// An extra group of workers with its own Auto Scaling group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePoolConfig {
    pub name: String,
    #[serde(default)]
    pub count: Option<u32>,
    /// The fewest instances the group may shrink to (cluster-autoscaler, or by hand); `count`
    /// when unset.
    #[serde(default)]
    pub min_size: Option<u32>,
    /// The most instances the group may grow to; `count + 1` when unset (room for the rolling
    /// update's extra instance).
    #[serde(default)]
    pub max_size: Option<u32>,
    #[serde(default)]
    pub instance_type: Option<String>,
    /// Instance types the group may launch, most preferred first (an Auto Scaling mixed
    /// instances policy); instead of `instanceType`. Give types of one size (vCPU and memory)
    /// so the cluster-autoscaler's guesses hold.
    /// `None` when not given; an empty list given is refused by `validate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_types: Option<Vec<String>>,
    /// With `instanceTypes`: how many instances are on-demand before any spot (0 when unset).
    #[serde(default)]
    pub on_demand_base_capacity: Option<u32>,
    /// With `instanceTypes`: the on-demand share, in percent, above the base; 0 (all spot) for
    /// a pool with a `spotPrice`, else 100 (all on-demand).
    #[serde(default)]
    pub on_demand_percentage_above_base_capacity: Option<u32>,
    /// With `instanceTypes`: how spot capacity is chosen (`price-capacity-optimized` when unset).
    #[serde(default)]
    pub spot_allocation_strategy: Option<SpotAllocationStrategy>,
    #[serde(default)]
    pub spot_price: Option<String>,
    #[serde(default)]
    pub root_volume_size: Option<u32>,
    #[serde(default)]
    pub root_volume_type: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub taints: Vec<TaintConfig>,
    /// Which of the cluster's node subnets the pool runs in, each by availability zone (every
    /// node subnet in it) or by subnet `id`; all of them when unset.
    #[serde(default)]
    pub subnets: Vec<String>,
    /// IAM managed policies attached to the pool's own role (the pool gets a role of its own,
    /// with the workers' permissions, instead of sharing theirs).
    #[serde(default)]
    pub managed_policies: Vec<String>,
    /// An existing instance profile the pool's instances run with instead of one kube-aws
    /// makes; its role must have what the workers' role has (README, "Node pools").
    #[serde(default)]
    pub instance_profile_arn: Option<String>,
    /// The cluster-autoscaler sizes this group between `minSize` and `maxSize` (needs
    /// `clusterAutoscaler.enabled`); the template then sets no desired capacity, so a stack
    /// update never undoes its choice.
    #[serde(default)]
    pub autoscaled: bool,
}

/// How an Auto Scaling group picks spot capacity among its instance types (AWS's words).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SpotAllocationStrategy {
    /// AWS's recommendation: the pools least likely to be interrupted, among the cheapest.
    #[default]
    PriceCapacityOptimized,
    CapacityOptimized,
    CapacityOptimizedPrioritized,
    LowestPrice,
}

/// The cluster-autoscaler add-on: it runs on the controllers with their role, whose policy
/// then lets it resize only the groups tagged as this cluster's autoscaled pools.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterAutoscalerConfig {
    #[serde(default)]
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaintConfig {
    pub key: String,
    #[serde(default)]
    pub value: String,
    pub effect: TaintEffect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

/// The API servers' load balancer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiLoadBalancer {
    #[serde(default, rename = "type")]
    pub kind: LoadBalancerKind,
    #[serde(default)]
    pub scheme: LoadBalancerScheme,
}

/// Which Elastic Load Balancing generation fronts the API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadBalancerKind {
    /// A network load balancer: TCP pass-through (TLS ends at the API servers), its own
    /// security group, cross-zone.
    #[default]
    Network,
    /// The classic ELB of earlier releases.
    Classic,
}

/// Whether the API is reachable from the internet or only from inside the VPC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadBalancerScheme {
    #[default]
    InternetFacing,
    /// Private addresses only, in the private subnets when there are some.
    Internal,
}

/// How many NAT gateways the private subnets route through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NatGateways {
    /// One per availability zone of the private subnets: a zone's outage leaves the others' egress.
    #[default]
    #[serde(rename = "perAZ")]
    PerAz,
    /// One for all: cheaper, and a single point of failure for egress.
    Single,
}

/// Flatcar Container Linux release channel whose newest AMI is used when `amiId` is not set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseChannel {
    #[default]
    Stable,
    Beta,
    Alpha,
    Lts,
}

impl ReleaseChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseChannel::Stable => "stable",
            ReleaseChannel::Beta => "beta",
            ReleaseChannel::Alpha => "alpha",
            ReleaseChannel::Lts => "lts",
        }
    }
}

/// Where the state file, lock and audit log live.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateConfig {
    #[serde(default)]
    pub backend: StateBackendKind,
    #[serde(default)]
    pub bucket: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateBackendKind {
    #[default]
    Local,
    S3,
}

/// A worker group as the templates see it: the default workers and each node pool, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerPool {
    pub name: String,
    /// CloudFormation logical-id fragment, e.g. `Gpu` for `gpu`, `Workers` for the default pool.
    pub logical_name: String,
    /// How many instances the group starts with (`DesiredCapacity`).
    pub count: u32,
    pub min_size: u32,
    pub max_size: u32,
    /// What a rolling update keeps running: `count`, but always below `max_size`, which
    /// CloudFormation requires ("Must be less than the Auto Scaling group's Max size",
    /// UpdatePolicy attribute reference; cfn-lint does not check it).
    pub min_in_service: u32,
    pub instance_type: String,
    /// A mixed instances policy's types; empty for a group of `instance_type` alone.
    pub instance_types: Vec<String>,
    pub on_demand_base_capacity: u32,
    pub on_demand_percentage_above_base_capacity: u32,
    pub spot_allocation_strategy: SpotAllocationStrategy,
    pub spot_price: Option<String>,
    pub root_volume_size: u32,
    pub root_volume_type: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<TaintConfig>,
    /// Zones or subnet ids of the node subnets it runs in; empty for all of them.
    pub subnets: Vec<String>,
    pub managed_policies: Vec<String>,
    pub instance_profile_arn: Option<String>,
    /// The cluster-autoscaler owns its size: no desired capacity in the template.
    pub autoscaled: bool,
}

impl WorkerPool {
    /// Whether the pool runs with a role of its own rather than the workers' shared one.
    pub fn has_own_role(&self) -> bool {
        !self.managed_policies.is_empty()
    }
}

/// One etcd member as the templates see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EtcdMember {
    pub index: usize,
    /// `etcd-<index>`: the member's etcd name.
    pub name: String,
    /// The DNS name peers and clients use; the member points it at whichever instance it runs on.
    pub host: String,
    /// Logical id of the member's Auto Scaling group (one instance), which it signals.
    pub logical_id: String,
    pub subnet_index: usize,
    pub availability_zone: String,
}

/// The largest cluster.yaml kube-aws reads; real ones are a few kilobytes.
const MAX_CONFIG_BYTES: usize = 1024 * 1024;
/// The deepest nesting kube-aws reads; cluster.yaml needs five levels.
const MAX_NESTING: usize = 64;

/// Why `text` is too large or too deeply nested to parse, at the line where it gets so. Depth
/// is over-estimated (each indentation column and each `- ` counts as a level, plus open flow
/// brackets), which is safe: the parsers' recursion is what must stay bounded.
fn beyond_bounds(text: &str) -> Option<Problem> {
    nested_beyond(text, MAX_NESTING)
}

/// [`beyond_bounds`] with another depth: rendered cloud-configs carry scripts and manifests
/// in block scalars, indented further than any cluster.yaml, and get a wider bound.
pub(crate) fn nested_beyond(text: &str, max_nesting: usize) -> Option<Problem> {
    if text.len() > MAX_CONFIG_BYTES {
        return Some(Problem::general(format!(
            "{} bytes: larger than the {MAX_CONFIG_BYTES} bytes kube-aws reads",
            text.len()
        )));
    }
    let mut flow = 0usize;
    for (index, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let mut rest = line.trim_start_matches(' ');
        let mut dashes = 0;
        // `- `, and the explicit key and value indicators `? ` and `: `, each open a level.
        while let Some(after) = rest
            .strip_prefix("- ")
            .or_else(|| rest.strip_prefix("? "))
            .or_else(|| rest.strip_prefix(": "))
            .or_else(|| matches!(rest, "-" | "?" | ":").then_some(""))
        {
            dashes += 1;
            rest = after.trim_start_matches(' ');
            if rest.is_empty() {
                break;
            }
        }
        let mut deepest_flow = flow;
        let mut quoted: Option<char> = None;
        for ch in rest.chars() {
            match (quoted, ch) {
                (Some(q), c) if c == q => quoted = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quoted = Some(ch),
                (None, '#') => break,
                (None, '[' | '{') => {
                    flow += 1;
                    deepest_flow = deepest_flow.max(flow);
                }
                (None, ']' | '}') => flow = flow.saturating_sub(1),
                _ => {}
            }
        }
        if indent + dashes + deepest_flow > max_nesting {
            return Some(Problem {
                field: String::new(),
                line: Some(index + 1),
                column: None,
                message: format!(
                    "nested more than {max_nesting} levels deep, which no file kube-aws reads needs"
                ),
            });
        }
    }
    None
}

/// How many fields that fail to parse are set aside, one at a time, before the rest of the
/// file is checked without them.
const MAX_SET_ASIDE: usize = 32;

/// Everything else wrong with a file whose field failed to parse: that field is set aside
/// (and each next one that fails, up to [`MAX_SET_ASIDE`]), and the rest is parsed and checked
/// semantically, so one run reports the type errors, the unknown keys and the semantic errors
/// together. A field that cannot be set aside (a required one) ends the search.
fn lenient_findings(text: &str, first: &serde_norway::Error, locator: &Locator) -> Vec<Problem> {
    let mut findings = Vec::new();
    let Ok(mut value) = serde_norway::from_str::<serde_norway::Value>(text) else {
        return findings; // not even YAML: the syntax error is the finding
    };
    let mut failed = first.to_string();
    let mut set_aside: Vec<Vec<Segment>> = Vec::new();
    for _ in 0..MAX_SET_ASIDE {
        let Some(path) = failed
            .split_once(": ")
            .and_then(|(path, _)| locate::parse_path(path))
        else {
            return findings;
        };
        if !locate::remove_path(&mut value, &path) {
            return findings;
        }
        set_aside.push(path);
        let Ok(rest) = serde_norway::to_string(&value) else {
            return findings;
        };
        let mut unknown = Vec::new();
        let de = serde_norway::Deserializer::from_str(&rest);
        let parsed: Result<ClusterConfig, _> =
            serde_ignored::deserialize(de, |path| unknown.push(locate::segments(&path)));
        findings.extend(unknown.iter().map(|segments| locator.unknown_key(segments)));
        match parsed {
            Ok(config) => {
                findings.extend(validate::semantic_problems(&config, locator));
                return findings;
            }
            Err(e) => {
                // Positions in the re-serialised text mean nothing: place it in the original.
                let problem = Problem::from_yaml_error(&e);
                match locate::parse_path(&problem.field) {
                    // An error about what was set aside (a required field now missing, an
                    // element now null) is that field's finding again, not a new one.
                    Some(path) if set_aside.iter().any(|gone| gone.starts_with(&path)) => {
                        return findings;
                    }
                    Some(path) => findings.push(locator.problem(&path, problem.message)),
                    None => return findings,
                }
                failed = e.to_string();
            }
        }
    }
    findings
}

/// Name of the implicit pool made from the top-level `worker*` settings.
pub const DEFAULT_POOL: &str = "workers";

/// The label every node carries with its pool's name.
pub const POOL_LABEL: &str = "kube-aws.coreos.com/pool";

impl ClusterConfig {
    /// Parses `text` (read from `file`) and runs the semantic checks.
    pub fn parse(file: &Path, text: &str) -> Result<ClusterConfig, ConfigError> {
        let err = |problems| ConfigError {
            file: file.to_path_buf(),
            problems,
        };
        // The parsers recurse per nesting level: bound the input before either sees it.
        if let Some(problem) = beyond_bounds(text) {
            return Err(err(vec![problem]));
        }
        let locator = Locator::new(text).map_err(|p| err(vec![p]))?;
        let mut unknown = Vec::new();
        let de = serde_norway::Deserializer::from_str(text);
        let parsed: Result<ClusterConfig, _> =
            serde_ignored::deserialize(de, |path| unknown.push(locate::segments(&path)));
        let mut problems: Vec<Problem> = unknown
            .iter()
            .map(|segments| locator.unknown_key(segments))
            .collect();
        match parsed {
            Ok(config) => {
                problems.extend(validate::semantic_problems(&config, &locator));
                if problems.is_empty() {
                    Ok(config)
                } else {
                    Err(err(problems))
                }
            }
            Err(e) => {
                problems.push(Problem::from_yaml_error(&e));
                problems.extend(lenient_findings(text, &e, &locator));
                problems.sort_by_key(|p| (p.line, p.column));
                problems.dedup();
                Err(err(problems))
            }
        }
    }

    /// Reads `cluster.yaml` from the cluster directory.
    pub fn load(dir: &Path) -> Result<ClusterConfig, ConfigError> {
        let file = dir.join(CLUSTER_FILE);
        let unreadable = |why: String| ConfigError {
            file: file.clone(),
            problems: vec![Problem::general(format!("cannot read: {why}"))],
        };
        let bytes = crate::bounded::read_in(dir, CLUSTER_FILE, crate::bounded::CLUSTER_FILE_LIMIT)
            .map_err(|e| unreadable(e.to_string()))?;
        let text = String::from_utf8(bytes)
            .map_err(|e| unreadable(format!("stream did not contain valid UTF-8: {e}")))?;
        ClusterConfig::parse(&file, &text)
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

/// What kubelet and the NodeRestriction admission plugin refuse (`data/kubelet-rules.json`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeletRules {
    pub removed_flags: Vec<RemovedFlag>,
    pub cloud_provider_values: Vec<String>,
    pub allowed_labels: Vec<String>,
    pub allowed_label_namespaces: Vec<String>,
    pub restricted_label_namespaces: Vec<String>,
    pub forbidden_label_namespaces: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemovedFlag {
    pub flag: String,
    /// The minor release that removed it.
    pub removed_in: u32,
}

impl KubeletRules {
    /// `data/kubelet-rules.json`, parsed once.
    pub fn get() -> &'static KubeletRules {
        static RULES: std::sync::LazyLock<KubeletRules> = std::sync::LazyLock::new(|| {
            serde_json::from_str(include_str!("../../data/kubelet-rules.json"))
                .expect("data/kubelet-rules.json is checked by a unit test")
        });
        &RULES
    }

    /// Why kubelet (`--node-labels`) or NodeRestriction would refuse label `key`, if they would.
    pub fn label_refusal(&self, key: &str) -> Option<String> {
        let namespace = key.split_once('/').map(|(ns, _)| ns).unwrap_or("");
        let within = |ns: &str, list: &[String]| {
            list.iter()
                .any(|n| ns == n || ns.ends_with(&format!(".{n}")))
        };
        if within(namespace, &self.forbidden_label_namespaces) {
            return Some(format!(
                "the {namespace} namespace is reserved for labels only administrators set; kubelet may not"
            ));
        }
        if within(namespace, &self.restricted_label_namespaces)
            && !self.allowed_labels.iter().any(|l| l == key)
            && !within(namespace, &self.allowed_label_namespaces)
        {
            return Some(format!(
                "kubelet refuses --node-labels in the kubernetes.io and k8s.io namespaces except {} and the {} prefixes",
                self.allowed_labels.join(", "),
                self.allowed_label_namespaces.join(", ")
            ));
        }
        None
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

mod defaults {
    use super::*;

    pub fn record_set_ttl() -> u32 {
        300
    }
    pub fn vpc_cidr() -> Ipv4Net {
        "10.0.0.0/16".parse().expect("valid literal")
    }
    pub fn instance_cidr() -> Ipv4Net {
        "10.0.0.0/24".parse().expect("valid literal")
    }
    pub fn one() -> u32 {
        1
    }
    pub fn instance_type() -> String {
        "t3.medium".to_string()
    }
    pub fn root_volume_size() -> u32 {
        30
    }
    pub fn root_volume_type() -> String {
        "gp3".to_string()
    }
    pub fn service_cidr() -> Ipv4Net {
        "10.3.0.0/24".parse().expect("valid literal")
    }
    pub fn pod_cidr() -> Ipv4Net {
        "10.2.0.0/16".parse().expect("valid literal")
    }
    pub fn dns_service_ip() -> Ipv4Addr {
        Ipv4Addr::new(10, 3, 0, 10)
    }
    pub fn kubernetes_version() -> String {
        crate::releases::DEFAULT_KUBERNETES_VERSION.to_string()
    }
    pub fn api_access_allowed_source_cidrs() -> Vec<Ipv4Net> {
        vec!["0.0.0.0/0".parse().expect("valid literal")]
    }
    pub fn create_timeout() -> String {
        "PT15M".to_string()
    }
    pub fn etcd_create_timeout() -> String {
        "PT30M".to_string()
    }
    pub fn etcd_data_volume_size() -> u32 {
        30
    }
    pub fn etcd_snapshot_schedule() -> String {
        "hourly".to_string()
    }
    pub fn etcd_snapshot_retention_days() -> u32 {
        7
    }
    pub fn ca_days() -> u32 {
        3650
    }
    pub fn cert_days() -> u32 {
        365
    }
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

/// One mistake in `cluster.yaml`: which field, where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Dotted path of the field, e.g. `nodePools[1].name`; empty for the document itself.
    pub field: String,
    /// 1-based line, when the field (or its parent) appears in the file.
    pub line: Option<usize>,
    /// 1-based column.
    pub column: Option<usize>,
    pub message: String,
}

impl Problem {
    fn general(message: String) -> Problem {
        Problem {
            field: String::new(),
            line: None,
            column: None,
            message,
        }
    }

    fn from_yaml_error(e: &serde_norway::Error) -> Problem {
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
        Problem {
            field,
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
            message,
        }
    }
}

/// Everything wrong with one `cluster.yaml`, each problem on its own line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.file.display())?;
            if let Some(line) = p.line {
                write!(f, ":{line}")?;
                if let Some(column) = p.column {
                    write!(f, ":{column}")?;
                }
            }
            if p.field.is_empty() {
                write!(f, ": {}", p.message)?;
            } else {
                write!(f, ": {}: {}", p.field, p.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests;
