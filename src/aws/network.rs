//! EC2 lookups `validate` makes about what the stack plugs into: an existing VPC (its CIDRs
//! and subnets), a route table, the SSH key pair.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::Filter;
use ipnet::Ipv4Net;

use super::AwsError;

#[derive(Debug, Clone)]
pub struct Vpc {
    pub cidrs: Vec<Ipv4Net>,
    pub subnets: Vec<ExistingSubnet>,
}

/// A subnet the VPC already has.
#[derive(Debug, Clone)]
pub struct ExistingSubnet {
    pub id: String,
    pub cidr: Ipv4Net,
    pub availability_zone: String,
}

#[derive(Clone, Debug)]
pub struct Ec2Network {
    client: aws_sdk_ec2::Client,
}

fn not_found(code: Option<&str>) -> bool {
    code.is_some_and(|c| c.ends_with(".NotFound") || c.ends_with(".Malformed"))
}

impl Ec2Network {
    pub fn new(client: aws_sdk_ec2::Client) -> Ec2Network {
        Ec2Network { client }
    }

    /// The names of the region's availability zones (local and wavelength zones included).
    pub async fn availability_zones(&self) -> Result<Vec<String>, AwsError> {
        let out = self
            .client
            .describe_availability_zones()
            .all_availability_zones(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("EC2", "DescribeAvailabilityZones", e))?;
        Ok(out
            .availability_zones()
            .iter()
            .filter_map(|z| z.zone_name().map(str::to_string))
            .collect())
    }

    pub async fn vpc(&self, id: &str) -> Result<Option<Vpc>, AwsError> {
        let vpc = match self.client.describe_vpcs().vpc_ids(id).send().await {
            Ok(out) => out.vpcs().first().cloned(),
            Err(e) if not_found(e.code()) => return Ok(None),
            Err(e) => return Err(AwsError::from_sdk("EC2", "DescribeVpcs", e)),
        };
        let Some(vpc) = vpc else { return Ok(None) };
        let mut cidrs: Vec<Ipv4Net> = vpc
            .cidr_block()
            .and_then(|c| c.parse().ok())
            .into_iter()
            .collect();
        cidrs.extend(
            vpc.cidr_block_association_set()
                .iter()
                .filter_map(|a| a.cidr_block().and_then(|c| c.parse::<Ipv4Net>().ok())),
        );
        cidrs.dedup();
        let subnets = self
            .client
            .describe_subnets()
            .filters(Filter::builder().name("vpc-id").values(id).build())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("EC2", "DescribeSubnets", e))?
            .subnets()
            .iter()
            .filter_map(|s| {
                Some(ExistingSubnet {
                    id: s.subnet_id()?.to_string(),
                    cidr: s.cidr_block()?.parse().ok()?,
                    availability_zone: s.availability_zone().unwrap_or_default().to_string(),
                })
            })
            .collect();
        Ok(Some(Vpc { cidrs, subnets }))
    }

    pub async fn route_table_exists(&self, id: &str) -> Result<bool, AwsError> {
        match self
            .client
            .describe_route_tables()
            .route_table_ids(id)
            .send()
            .await
        {
            Ok(out) => Ok(!out.route_tables().is_empty()),
            Err(e) if not_found(e.code()) => Ok(false),
            Err(e) => Err(AwsError::from_sdk("EC2", "DescribeRouteTables", e)),
        }
    }

    pub async fn key_pair_exists(&self, name: &str) -> Result<bool, AwsError> {
        match self
            .client
            .describe_key_pairs()
            .key_names(name)
            .send()
            .await
        {
            Ok(out) => Ok(!out.key_pairs().is_empty()),
            Err(e) if not_found(e.code()) => Ok(false),
            Err(e) => Err(AwsError::from_sdk("EC2", "DescribeKeyPairs", e)),
        }
    }
}
