//! The default of each cluster.yaml field serde fills in when the file leaves it out.

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
