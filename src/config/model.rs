//! The parts of cluster.yaml's model below `ClusterConfig`: subnets, node pools, load
//! balancers, the state's backend, and the pools and etcd members as resolved.

use super::*;

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

impl EtcdMember {
    /// Where clients (the API servers, etcdctl) reach the member.
    pub fn client_url(&self) -> String {
        format!("https://{}:2379", self.host)
    }

    /// Where its peers reach it: its address in the member list.
    pub fn peer_url(&self) -> String {
        format!("https://{}:2380", self.host)
    }
}
