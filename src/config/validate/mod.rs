//! Semantic checks of a parsed `cluster.yaml`: the mistakes a type system cannot see, such as
//! subnets outside the VPC or a DNS service IP outside the service CIDR.

use ipnet::Ipv4Net;

use super::locate::{Locator, Segment};
use super::{ClusterConfig, DEFAULT_POOL, POOL_LABEL, StateBackendKind};
use crate::finding::Finding;

mod network;
mod pools;
mod settings;

use network::network_problems;
use pools::{limit_problems, pool_problems, pool_shape_problems};
use settings::{control_character_problems, settings_problems, storage_problems};

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

/// Every semantic problem, each positioned at the field it is about.
pub fn semantic_problems(c: &ClusterConfig, at: &Locator) -> Vec<Finding> {
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
