//! cluster.yaml's parsing: defaults, positions of every mistake, and the semantic checks.

use std::path::Path;

use super::*;

mod limits;
mod pools;

const MINIMAL: &str = "\
clusterName: demo
externalDNSName: demo.example.com
region: us-west-2
availabilityZone: us-west-2a
keyName: demo-key
kmsKeyArn: arn:aws:kms:us-west-2:123456789012:key/0000
templateBucket: demo-artifacts
";

fn parse(text: &str) -> Result<ClusterConfig, ConfigError> {
    ClusterConfig::parse(Path::new("cluster.yaml"), text)
}

fn problems(text: &str) -> Vec<crate::finding::Finding> {
    parse(text).expect_err("expected a config error").problems
}

/// `setting`, added as line 8 of the minimal file, is refused there, naming `field`.
fn refused_at_line_8(setting: &str, field: &str, words: &str) {
    let found = problems(&format!("{MINIMAL}{setting}\n"));
    assert!(
        found
            .iter()
            .any(|p| p.field == field && p.message.contains(words) && p.line == Some(8)),
        "{setting}: {found:?}"
    );
}

#[test]
fn minimal_config_gets_the_original_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.vpc_cidr.to_string(), "10.0.0.0/16");
    assert_eq!(c.instance_cidr.to_string(), "10.0.0.0/24");
    assert_eq!(c.controller_ip, None);
    assert_eq!(c.service_cidr.to_string(), "10.3.0.0/24");
    assert_eq!(c.pod_cidr.to_string(), "10.2.0.0/16");
    assert_eq!(c.dns_service_ip.to_string(), "10.3.0.10");
    assert_eq!(c.record_set_ttl, 300);
    assert_eq!(
        (c.controller_count, c.etcd_count, c.worker_count),
        (1, 1, 1)
    );
    assert_eq!(c.release_channel, ReleaseChannel::Stable);
    assert_eq!(c.state.backend, StateBackendKind::Local);
    assert_eq!(c.kubernetes_service_ip().to_string(), "10.3.0.1");
    let members = c.etcd_members();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].host, "etcd-0.demo.kube-aws.internal");
    assert_eq!(members[0].logical_id, "AutoScaleEtcd0");
    assert_eq!(c.etcd_data_volume_size, 30);
    assert_eq!(c.etcd_snapshot_retention_days, 7);
}

#[test]
fn unknown_key_names_file_line_column_and_suggests_the_real_key() {
    let text = format!("{MINIMAL}workerInstanceTyp: m5.large\n");
    let err = parse(&text).unwrap_err();
    assert_eq!(err.problems.len(), 1);
    let p = &err.problems[0];
    assert_eq!((p.line, p.column), (Some(8), Some(1)));
    assert_eq!(p.field, "workerInstanceTyp");
    assert_eq!(
        err.to_string(),
        "cluster.yaml:8:1: workerInstanceTyp: unknown key \"workerInstanceTyp\" (did you mean \"workerInstanceType\"?)"
    );
}

#[test]
fn every_unknown_key_is_reported_including_nested_ones() {
    let text = format!(
        "{MINIMAL}nodePools:\n  - name: gpu\n    instanceTyp: g5.xlarge\nstate:\n  bucke: b\n"
    );
    let found = problems(&text);
    let fields: Vec<_> = found.iter().map(|p| (p.field.as_str(), p.line)).collect();
    assert_eq!(
        fields,
        vec![
            ("nodePools[0].instanceTyp", Some(10)),
            ("state.bucke", Some(12))
        ]
    );
    assert!(found[0].message.contains("did you mean \"instanceType\""));
    assert!(found[1].message.contains("did you mean \"bucket\""));
}

#[test]
fn wrong_type_names_the_field_and_its_position() {
    let text = format!("{MINIMAL}workerCount: many\n");
    let err = parse(&text).unwrap_err();
    let p = &err.problems[0];
    assert_eq!(p.field, "workerCount");
    assert_eq!(p.line, Some(8));
    assert!(p.column.is_some());
    assert_eq!(
        p.message,
        "expected a whole number from 0 to 4294967295, found the string \"many\""
    );
    assert!(err.to_string().starts_with("cluster.yaml:8:"), "{err}");
}

#[test]
fn invalid_cidr_is_a_positioned_error() {
    let text = format!("{MINIMAL}vpcCIDR: 10.0.0.0/99\n");
    let p = &problems(&text)[0];
    assert_eq!((p.field.as_str(), p.line), ("vpcCIDR", Some(8)));
}

#[test]
fn yaml_syntax_error_has_a_position() {
    let p = &problems("clusterName: [unclosed\n")[0];
    assert!(p.message.starts_with("YAML syntax error"), "{}", p.message);
    assert!(p.line.is_some());
}

#[test]
fn missing_required_field_is_reported() {
    let p = &problems("clusterName: demo\n")[0];
    assert!(p.message.contains("missing field"), "{}", p.message);
}

#[test]
fn overlapping_subnets_name_the_later_subnet() {
    let text = format!(
        "{MINIMAL}subnets:\n  - availabilityZone: us-west-2a\n    instanceCIDR: 10.0.0.0/24\n  - availabilityZone: us-west-2b\n    instanceCIDR: 10.0.0.128/25\n"
    );
    let found = problems(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].field, "subnets[1].instanceCIDR");
    assert_eq!(found[0].line, Some(12));
    assert!(found[0].message.contains("overlaps subnets[0]"));
}

#[test]
fn semantic_checks_report_each_problem_at_its_field() {
    let text = format!(
        "{MINIMAL}instanceCIDR: 10.1.0.0/24\nserviceCIDR: 10.0.128.0/24\ndnsServiceIP: 10.9.0.10\netcdCount: 2\nnodePools:\n  - name: a\n  - name: a\n"
    );
    let found = problems(&text);
    let fields: Vec<&str> = found.iter().map(|p| p.field.as_str()).collect();
    assert!(fields.contains(&"instanceCIDR"), "{fields:?}");
    assert!(fields.contains(&"serviceCIDR"), "{fields:?}");
    assert!(fields.contains(&"dnsServiceIP"), "{fields:?}");
    assert!(fields.contains(&"etcdCount"), "{fields:?}");
    assert!(fields.contains(&"nodePools[1].name"), "{fields:?}");
    for p in &found {
        assert!(p.line.is_some(), "{p:?}");
    }
}

#[test]
fn record_set_needs_a_zone_and_the_zone_must_contain_the_name() {
    let found = problems(&format!(
        "{MINIMAL}createRecordSet: true\nhostedZone: other.org\n"
    ));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].field, "hostedZone");
    let found = problems(&format!("{MINIMAL}createRecordSet: true\n"));
    assert_eq!(found[0].field, "createRecordSet");
}

#[test]
fn s3_backend_needs_bucket_and_key() {
    let found = problems(&format!("{MINIMAL}state:\n  backend: s3\n"));
    assert_eq!(found.len(), 2, "{found:?}");
}

#[test]
fn unsupported_kubernetes_version_is_refused() {
    let found = problems(&format!("{MINIMAL}kubernetesVersion: v1.12.0\n"));
    assert_eq!(found[0].field, "kubernetesVersion");
}

#[test]
fn private_subnets_need_a_public_subnet_in_their_zone_and_must_not_overlap() {
    let text = format!(
        "{MINIMAL}subnets:\n  - availabilityZone: us-west-2a\n    instanceCIDR: 10.0.0.0/24\nprivateSubnets:\n  - availabilityZone: us-west-2b\n    instanceCIDR: 10.0.10.0/24\n  - availabilityZone: us-west-2a\n    instanceCIDR: 10.0.0.128/25\n"
    );
    let err = parse(&text).unwrap_err();
    let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "privateSubnets[0].availabilityZone",
            "privateSubnets[1].instanceCIDR"
        ],
        "{err}"
    );
    let single = format!(
        "{MINIMAL}natGateways: single\nprivateSubnets:\n  - availabilityZone: us-west-2b\n    instanceCIDR: 10.0.10.0/24\n"
    );
    let c = parse(&single).unwrap();
    assert!(c.controllers_behind_load_balancer());
    assert_eq!(c.etcd_members()[0].availability_zone, "us-west-2b");
}

#[test]
fn an_existing_subnet_needs_the_vpc_it_belongs_to() {
    let text = format!(
        "{MINIMAL}subnets:\n  - id: subnet-0123\n    availabilityZone: us-west-2a\n    instanceCIDR: 10.0.0.0/24\n  - id: sub-x\n    availabilityZone: us-west-2b\n    instanceCIDR: 10.0.1.0/24\n"
    );
    let err = parse(&text).unwrap_err();
    let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        vec!["subnets[0].id", "subnets[1].id", "subnets[1].id"],
        "{err}"
    );
    assert!(err.to_string().contains("needs `vpcId`"), "{err}");
    assert!(
        err.to_string().contains("\"sub-x\" is not a subnet id"),
        "{err}"
    );
}

#[test]
fn the_artifact_bucket_is_the_template_bucket_or_the_state_bucket_and_has_a_valid_name() {
    // Only rendering needs a bucket (so an older cluster can still be destroyed without one):
    // the render tests check that it refuses without one.
    let without = MINIMAL.replace("templateBucket: demo-artifacts\n", "");
    assert_eq!(parse(&without).expect("parses").artifacts(), None);

    let s3_state =
        format!("{without}state:\n  backend: s3\n  bucket: team-state\n  key: demo/state.json\n");
    let config = parse(&s3_state).expect("the state bucket is the default");
    let artifacts = config.artifacts().expect("a location");
    assert_eq!(artifacts.bucket, "team-state");
    assert_eq!(artifacts.addon_key("ab"), "demo/state.json.addons/ab.yaml");

    let bad = MINIMAL.replace("demo-artifacts", "Demo_Artifacts");
    let found = problems(&bad);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].field.as_str(), found[0].line),
        ("templateBucket", Some(7))
    );
    assert!(
        found[0].message.contains("is not an S3 bucket name"),
        "{found:?}"
    );

    let config = parse(MINIMAL).unwrap();
    let artifacts = config.artifacts().unwrap();
    assert_eq!(artifacts.template_key("cd"), "demo/templates/cd.json");
    assert_eq!(
        artifacts.url("demo/templates/cd.json"),
        "https://demo-artifacts.s3.us-west-2.amazonaws.com/demo/templates/cd.json"
    );
}

#[test]
fn a_type_error_does_not_hide_unknown_keys_or_semantic_errors() {
    // Line 8: an unknown key; line 9: a type error; line 10: an overlap the semantic checks
    // refuse (which also leaves the default dnsServiceIP outside serviceCIDR); line 12: a
    // nested type error.
    let text = format!(
        "{MINIMAL}recordSetTTLs: 60\nrecordSetTTL: soon\nserviceCIDR: 10.0.0.0/24\nnodePools:\n  - {{name: gpu, count: many}}\n"
    );
    let found = problems(&text);
    let at = |line: usize, field: &str, words: &str| {
        assert!(
            found
                .iter()
                .any(|p| p.line == Some(line) && p.field == field && p.message.contains(words)),
            "line {line} {field} {words:?}: {found:?}"
        );
    };
    at(8, "recordSetTTLs", "unknown key");
    at(9, "recordSetTTL", "expected a whole number");
    at(10, "serviceCIDR", "overlaps vpcCIDR");
    at(12, "nodePools[0].count", "expected a whole number");
    assert!(found.iter().any(|p| p.field == "dnsServiceIP"), "{found:?}");
    // In file order, each once.
    let lines: Vec<_> = found.iter().map(|p| p.line).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted, "{found:?}");
    assert_eq!(found.len(), 5, "{found:?}");
}

#[test]
fn a_controller_address_aws_reserves_or_a_dns_ip_at_the_edge_of_its_range_is_refused() {
    for (setting, field, words) in [
        (
            "controllerIP: 10.0.0.4",
            "controllerIP",
            "a fixed controller address (10.0.0.4) is no longer supported",
        ),
        (
            "dnsServiceIP: 10.3.0.255",
            "dnsServiceIP",
            "network or broadcast address",
        ),
        (
            "dnsServiceIP: 10.3.0.1",
            "dnsServiceIP",
            "reserved for the kubernetes service",
        ),
    ] {
        refused_at_line_8(setting, field, words);
    }
}

#[test]
fn type_errors_are_said_in_cluster_yaml_words_not_serdes() {
    for (line, said) in [
        (
            "controllerCount: -1",
            "expected a whole number from 0 to 4294967295, found the number -1",
        ),
        (
            "controllerCount: 1.5",
            "expected a whole number from 0 to 4294967295, found the number 1.5",
        ),
        (
            "createRecordSet: maybe",
            "expected a boolean, found the string \"maybe\"",
        ),
        (
            "nodePools: gpu",
            "expected a list, found the string \"gpu\"",
        ),
        (
            "stackTags: [a]",
            "expected a mapping (key: value lines), found a list",
        ),
        ("hostedZone: [a]", "expected a string, found a list"),
    ] {
        let err = parse(&format!("{MINIMAL}{line}\n")).unwrap_err();
        let messages: Vec<&str> = err.problems.iter().map(|p| p.message.as_str()).collect();
        assert!(messages.contains(&said), "{line}: {messages:?}");
        assert!(
            !err.to_string().contains("invalid type") && !err.to_string().contains("u32"),
            "{err}"
        );
    }
}
