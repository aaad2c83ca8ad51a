//! Checks of the network: the VPC, its subnets and their CIDRs, NAT, the service and pod
//! ranges, the API's load balancer and who may reach it.

use super::*;
/// The networking: instance subnets inside the VPC and disjoint, cluster ranges outside it,
/// private subnets with a NAT gateway in their zone.
pub(super) fn network_problems(c: &ClusterConfig, problem: &mut dyn FnMut(&[Segment], String)) {
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
    private_subnet_problems(c, &subnets, problem);
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

/// Private subnets: inside the VPC, disjoint from every other subnet, each with a public
/// subnet in its zone for its NAT gateway.
fn private_subnet_problems(
    c: &ClusterConfig,
    subnets: &[crate::config::SubnetConfig],
    problem: &mut dyn FnMut(&[Segment], String),
) {
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
        if c.nat_gateways == crate::config::NatGateways::PerAz
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
}
