//! The stack templates' parts that are not user data: the network's references, the
//! instance roles, and each pool's own stack (`stackPerPool`).

use std::collections::BTreeMap;

use minijinja::context;
use minijinja::value::{Serde, Value};

use super::{PoolStackTemplate, RenderError, Renderer, STACK, canonical_stack, check_pool_stack};
use crate::config::{ClusterConfig, WorkerPool};

/// How the stack template names the cluster's network: the subnets, their references (an
/// existing one by id, one the stack creates by Ref), the VPC and route table, and the API's
/// load balancer.
pub(super) struct Network {
    pub subnets: Vec<crate::config::SubnetConfig>,
    pub private_subnets: Vec<Value>,
    pub nat_subnets: Vec<usize>,
    pub public_subnet_refs: Vec<Value>,
    pub node_subnet_refs: Vec<Value>,
    pub load_balancer_subnet_refs: Vec<Value>,
    /// Each pool's node subnets, by pool name.
    pub pool_subnet_refs: BTreeMap<String, Vec<Value>>,
    pub vpc_ref: String,
    pub route_table_ref: Option<String>,
    pub api_load_balancer: Option<Value>,
}

pub(super) fn network(c: &ClusterConfig, pools: &[WorkerPool]) -> Network {
    let subnets = c.effective_subnets();
    // Instances go to the private subnets when there are any; each routes out through the NAT
    // gateway in its zone's public subnet (perAZ), or all through the first one (single).
    let nat_subnet_of: Vec<usize> = c
        .private_subnets
        .iter()
        .map(|p| match c.nat_gateways {
            crate::config::NatGateways::Single => 0,
            crate::config::NatGateways::PerAz => subnets
                .iter()
                .position(|s| s.availability_zone == p.availability_zone)
                .unwrap_or(0),
        })
        .collect();
    let nat_subnets: std::collections::BTreeSet<usize> = nat_subnet_of.iter().copied().collect();
    let private_subnets: Vec<_> = c
        .private_subnets
        .iter()
        .zip(&nat_subnet_of)
        .map(|(p, nat)| {
            context! {
                availabilityZone => p.availability_zone.clone(),
                instanceCIDR => p.instance_cidr.to_string(),
                natSubnet => *nat,
            }
        })
        .collect();
    // How the template names each subnet: an existing one by its id, one it creates by Ref.
    let public_subnet_refs: Vec<Value> = subnets
        .iter()
        .enumerate()
        .map(|(i, s)| match &s.id {
            Some(id) => serde_json::to_string(id).expect("a string serialises"),
            None => format!(r#"{{"Ref": "Subnet{i}"}}"#),
        })
        .map(Value::from_safe_string)
        .collect();
    let node_subnet_refs: Vec<Value> = if c.private_subnets.is_empty() {
        public_subnet_refs.clone()
    } else {
        (0..c.private_subnets.len())
            .map(|i| Value::from_safe_string(format!(r#"{{"Ref": "PrivateSubnet{i}"}}"#)))
            .collect()
    };
    // Where the cloud controller may place a Service's load balancer: the cluster's subnets.
    let load_balancer_subnet_refs: Vec<Value> = if c.private_subnets.is_empty() {
        public_subnet_refs.clone()
    } else {
        public_subnet_refs
            .iter()
            .chain(&node_subnet_refs)
            .cloned()
            .collect()
    };
    // Each pool in the node subnets it names (by zone or id), or in all of them.
    let node_subnets = c.node_subnets();
    let pool_subnet_refs: BTreeMap<String, Vec<Value>> = pools
        .iter()
        .map(|pool| {
            let refs = node_subnets
                .iter()
                .zip(&node_subnet_refs)
                .filter(|(subnet, _)| {
                    pool.subnets.is_empty() || pool.subnets.iter().any(|w| subnet.is_named(w))
                })
                .map(|(_, reference)| reference.clone())
                .collect();
            (pool.name.clone(), refs)
        })
        .collect();
    // An internal API load balancer sits beside the nodes; an internet-facing one in the
    // public subnets.
    let api_load_balancer = c.api_load_balancer().map(|lb| {
        let internal = lb.scheme == crate::config::LoadBalancerScheme::Internal;
        context! {
            type => if lb.kind == crate::config::LoadBalancerKind::Network { "network" } else { "classic" },
            scheme => if internal { "internal" } else { "internet-facing" },
            subnetRefs => if internal { node_subnet_refs.clone() } else { public_subnet_refs.clone() },
        }
    });
    let vpc_ref = match &c.vpc_id {
        Some(id) => serde_json::to_string(id).expect("a string serialises"),
        None => r#"{"Ref": "VPC"}"#.to_string(),
    };
    let route_table_ref = match (&c.vpc_id, &c.route_table_id) {
        (None, _) => Some(r#"{"Ref": "RouteTable"}"#.to_string()),
        (Some(_), Some(id)) => Some(serde_json::to_string(id).expect("a string serialises")),
        (Some(_), None) => None,
    };
    Network {
        subnets,
        private_subnets,
        nat_subnets: nat_subnets.into_iter().collect(),
        public_subnet_refs,
        node_subnet_refs,
        load_balancer_subnet_refs,
        pool_subnet_refs,
        vpc_ref,
        route_table_ref,
        api_load_balancer,
    }
}

/// The instance roles of the cluster stack: the three shared ones, then one per pool with
/// managed policies. A pool in its own stack has its own role there (unless it brings an
/// instance profile), so the cluster stack then has no workers' role.
pub(super) fn iam_roles(c: &ClusterConfig, pools: &[WorkerPool], keep_pools: bool) -> Vec<Value> {
    let shared_roles: &[&str] = if c.stack_per_pool && !keep_pools {
        &["Controller", "Etcd"]
    } else {
        &["Controller", "Worker", "Etcd"]
    };
    let iam_roles: Vec<Value> = shared_roles
        .iter()
        .map(|&kind| context! { id => kind, kind => kind, managedPolicies => Vec::<String>::new() })
        .chain(
            pools
                .iter()
                .filter(|p| p.has_own_role() && (!c.stack_per_pool || keep_pools))
                .map(pool_role),
        )
        .collect();
    iam_roles
}

/// A pool's own role: the workers' policy, with the pool's managed policies.
pub(super) fn pool_role(p: &WorkerPool) -> Value {
    context! {
        id => format!("Pool{}", p.logical_name), kind => "Worker",
        managedPolicies => p.managed_policies.clone(),
    }
}

// What a pool stack takes from the cluster stack, as parameters of the same names (apply
// holds a plan to exactly these): the workers' security group and the node subnets it
// creates (a subnet given by id is written in as it is).
fn pool_parameters(pool: &WorkerPool, network: &Network) -> Vec<(String, &'static str)> {
    let subnets = network.pool_subnet_refs[&pool.name]
        .iter()
        .filter_map(|reference| {
            let value: serde_json::Value = serde_json::from_str(reference.as_str()?).ok()?;
            Some((
                value.get("Ref")?.as_str()?.to_string(),
                "AWS::EC2::Subnet::Id",
            ))
        });
    // By name, as the state's map keeps them, so a reused pool lists them alike.
    let mut parameters: Vec<(String, &'static str)> = std::iter::once((
        "SecurityGroupWorker".to_string(),
        "AWS::EC2::SecurityGroup::Id",
    ))
    .chain(subnets)
    .collect();
    parameters.sort();
    parameters
}

/// With `stackPerPool`, each pool's own stack: the stack template with `poolStack` set, its
/// own role and the parameters it takes from the cluster stack.
pub(super) fn pool_stacks(
    r: &Renderer,
    c: &ClusterConfig,
    pools: &[WorkerPool],
    network: &Network,
    stack_context: &Value,
) -> Result<BTreeMap<String, PoolStackTemplate>, RenderError> {
    let mut pool_stacks = BTreeMap::new();
    for pool in pools.iter().filter(|_| c.stack_per_pool) {
        let parameters = pool_parameters(pool, network);
        let own_role = match pool.instance_profile_arn {
            None => vec![pool_role(pool)],
            Some(_) => vec![],
        };
        let parameter_context: Vec<_> = parameters
            .iter()
            .map(|(name, kind)| context! { name => name, type => *kind })
            .collect();
        let text = r.one(
            STACK,
            context! {
                poolStack => context! { pool => pool.name.clone(), parameters => parameter_context },
                iamRoles => own_role,
                workerPools => Serde(std::slice::from_ref(pool)),
                ..stack_context.clone()
            },
        )?;
        let template = canonical_stack(&text)?;
        check_pool_stack(&pool.name, &pool.logical_name, &template)?;
        pool_stacks.insert(
            pool.name.clone(),
            PoolStackTemplate {
                stack_name: c.pool_stack_name(&pool.name),
                template,
                parameters: parameters.into_iter().map(|(name, _)| name).collect(),
            },
        );
    }
    Ok(pool_stacks)
}
