use std::path::Path;

use super::*;

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

fn problems(text: &str) -> Vec<Problem> {
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
    assert!(p.message.contains("invalid type"), "{}", p.message);
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
fn worker_pools_inherit_worker_defaults() {
    let text = format!(
        "{MINIMAL}workerInstanceType: m5.large\nnodePools:\n  - name: gpu-big\n    count: 3\n"
    );
    let pools = parse(&text).unwrap().worker_pools();
    assert_eq!(pools.len(), 2);
    assert_eq!(pools[0].name, DEFAULT_POOL);
    assert_eq!(pools[1].logical_name, "GpuBig");
    assert_eq!(pools[1].count, 3);
    assert_eq!(pools[1].instance_type, "m5.large");
}

#[test]
fn unsupported_kubernetes_version_is_refused() {
    let found = problems(&format!("{MINIMAL}kubernetesVersion: v1.12.0\n"));
    assert_eq!(found[0].field, "kubernetesVersion");
}

#[test]
fn pool_labels_kubelet_would_refuse_are_errors_naming_the_label() {
    let text = format!(
        "{MINIMAL}nodePools:\n  - name: gpu\n    labels:\n      node-role.kubernetes.io/gpu: \"\"\n      node.kubernetes.io/accelerator: nvidia\n      team: ml\n      node-restriction.kubernetes.io/trusted: \"yes\"\n"
    );
    let err = parse(&text).unwrap_err();
    let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "nodePools[0].labels.node-restriction.kubernetes.io/trusted",
            "nodePools[0].labels.node-role.kubernetes.io/gpu",
        ],
        "{err}"
    );
    assert!(err.problems.iter().all(|p| p.line.is_some()), "{err}");
    assert!(
        err.to_string().contains("kubelet refuses --node-labels"),
        "{err}"
    );
}

#[test]
fn kubelet_rules_data_parses_and_names_its_sources() {
    let rules = KubeletRules::get();
    assert!(
        rules
            .removed_flags
            .iter()
            .any(|f| f.flag == "--pod-infra-container-image" && f.removed_in == 35)
    );
    assert_eq!(rules.label_refusal("node.kubernetes.io/pool"), None);
    assert_eq!(rules.label_refusal("example.com/team"), None);
    assert!(rules.label_refusal("kubernetes.io/role").is_some());
    assert!(include_str!("../../data/kubelet-rules.json").contains("well_known_labels.go"));
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
fn pools_whose_names_give_one_logical_id_are_an_error_naming_both() {
    let found = problems(&format!(
        "{MINIMAL}nodePools:\n  - name: gpu-large\n    count: 3\n  - name: gpu-large-\n  - name: workers-\n"
    ));
    let messages: Vec<(&str, &str)> = found
        .iter()
        .map(|p| (p.field.as_str(), p.message.as_str()))
        .collect();
    assert!(
        messages.iter().any(|(f, m)| *f == "nodePools[1].name"
            && m.contains(
                "\"gpu-large-\" and \"gpu-large\" both name CloudFormation resources GpuLarge"
            )),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|(f, m)| *f == "nodePools[2].name"
            && m.contains(
                "\"workers-\" and \"workers\" both name CloudFormation resources Workers"
            )),
        "{messages:?}"
    );
}

#[test]
fn extreme_numbers_are_range_errors_not_allocations_or_panics() {
    for (setting, field, words) in [
        ("etcdCount: 20001", "etcdCount", "must be at most 9"),
        ("etcdCount: 4294967295", "etcdCount", "must be at most 9"),
        (
            "tlsCADurationDays: 4000000",
            "tlsCADurationDays",
            "between 1 and 36500",
        ),
        (
            "controllerCount: 100000",
            "controllerCount",
            "between 1 and 50",
        ),
        ("workerCount: 5000000", "workerCount", "at most 1000"),
        (
            "workerRootVolumeSize: 0",
            "workerRootVolumeSize",
            "between 8 and 16384",
        ),
        (
            "recordSetTTL: 4294967295",
            "recordSetTTL",
            "between 1 and 604800",
        ),
    ] {
        let started = std::time::Instant::now();
        refused_at_line_8(setting, field, words);
        // Not a timing test: a runaway (the old etcdCount: 20001 took a minute) fails loudly.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{setting}"
        );
    }
}

#[test]
fn deep_or_huge_yaml_is_refused_before_the_parsers_recurse() {
    let deep = format!("{MINIMAL}nodePools:\n{}\n", "- ".repeat(20_000));
    let found = problems(&deep);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].line, Some(9));
    let explicit = problems(&format!("{MINIMAL}{}a\n", "? ".repeat(200_000)));
    assert!(
        explicit[0].message.contains("nested more than 64 levels"),
        "{explicit:?}"
    );
    let alone = problems(&"- ".repeat(20_000));
    assert!(
        alone[0].message.contains("nested more than 64 levels"),
        "{alone:?}"
    );
    assert!(
        found[0].message.contains("nested more than 64 levels"),
        "{found:?}"
    );

    let flow = format!(
        "{MINIMAL}stackTags: {}{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let found = problems(&flow);
    assert!(
        found[0].message.contains("nested more than 64 levels"),
        "{found:?}"
    );

    let huge = format!("{MINIMAL}# {}\n", "x".repeat(2 * 1024 * 1024));
    let found = problems(&huge);
    assert!(
        found[0].message.contains("larger than the 1048576 bytes"),
        "{found:?}"
    );

    // Ordinary nesting is untouched.
    parse(&format!("{MINIMAL}nodePools:\n  - name: gpu\n    labels: {{a: b}}\n    taints: [{{key: k, value: v, effect: NoSchedule}}]\n")).unwrap();
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
    at(9, "recordSetTTL", "invalid type");
    at(10, "serviceCIDR", "overlaps vpcCIDR");
    at(12, "nodePools[0].count", "invalid type");
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
fn a_pool_whose_count_is_outside_its_min_and_max_is_refused_at_the_field() {
    let found = problems(&format!(
        "{MINIMAL}nodePools:\n  - name: a\n    count: 3\n    minSize: 4\n    maxSize: 2\n  - name: b\n    maxSize: 1001\n  - name: c\n    count: 0\n    maxSize: 0\n"
    ));
    let at = |field: &str| found.iter().find(|p| p.field == field);
    let min = at("nodePools[0].minSize").expect("minSize above count");
    assert_eq!(min.line, Some(11));
    assert!(min.message.contains("at most count (3)"), "{min:?}");
    let max = at("nodePools[0].maxSize").expect("maxSize below count");
    assert_eq!(max.line, Some(12));
    assert!(max.message.contains("at least count (3)"), "{max:?}");
    assert!(
        at("nodePools[1].maxSize").is_some_and(|p| p.message.contains("at most 1000")),
        "{found:?}"
    );
    assert!(
        at("nodePools[2].maxSize").is_some(),
        "a group of at most 0: {found:?}"
    );
    assert_eq!(found.len(), 4, "{found:?}");
    assert!(
        parse(&format!(
            "{MINIMAL}nodePools:\n  - name: a\n    count: 3\n    minSize: 1\n    maxSize: 9\n"
        ))
        .is_ok()
    );
}

#[test]
fn pool_zones_instance_mix_iam_and_autoscaling_are_checked_at_the_field() {
    // Line 8 is `nodePools:`, each pool's fields follow on their own lines.
    let found = problems(&format!(
        "{MINIMAL}nodePools:\n  - name: a\n    subnets: [us-west-2a, us-west-2z]\n    instanceType: m5.large\n    instanceTypes: [m6i.large, m6i.large]\n    onDemandPercentageAboveBaseCapacity: 101\n  - name: b\n    onDemandBaseCapacity: 1\n    managedPolicies: [arn:aws:iam::aws:policy/X, not-an-arn]\n    instanceProfileArn: arn:aws:iam::123456789012:instance-profile/p\n  - name: c\n    autoscaled: true\n    count: 2\n    minSize: 3\n    maxSize: 3\n  - name: controller\n  - name: etcd0\n"
    ));
    let at = |field: &str| {
        found
            .iter()
            .find(|p| p.field == field)
            .unwrap_or_else(|| panic!("nothing at {field}: {found:#?}"))
    };
    let zone = at("nodePools[0].subnets[1]");
    assert_eq!(zone.line, Some(10));
    assert!(
        zone.message
            .contains("\"us-west-2z\" is neither the availability zone nor the id")
            && zone.message.contains("(subnets: us-west-2a)"),
        "{zone:?}"
    );
    assert!(
        at("nodePools[0].instanceTypes")
            .message
            .contains("not both")
    );
    assert_eq!(at("nodePools[0].instanceTypes[1]").line, Some(12));
    assert!(
        at("nodePools[0].onDemandPercentageAboveBaseCapacity")
            .message
            .contains("between 0 and 100")
    );
    assert!(
        at("nodePools[1].onDemandBaseCapacity")
            .message
            .contains("only applies to a pool with instanceTypes")
    );
    assert!(
        at("nodePools[1].managedPolicies")
            .message
            .contains("attach the policies to it instead")
    );
    assert!(
        at("nodePools[1].managedPolicies[1]")
            .message
            .contains("\"not-an-arn\" is not a managed policy ARN")
    );
    assert!(
        at("nodePools[2].autoscaled")
            .message
            .contains("clusterAutoscaler.enabled")
    );
    assert!(
        at("nodePools[2].count")
            .message
            .contains("give minSize and maxSize instead")
    );
    assert!(
        at("nodePools[2].maxSize")
            .message
            .contains("above minSize (3)")
    );
    assert!(
        at("nodePools[3].name")
            .message
            .contains("AutoScaleController")
    );
    assert!(
        at("nodePools[4].name")
            .message
            .contains("LaunchTemplateEtcd0")
    );
    assert_eq!(found.len(), 12, "{found:#?}");

    // The same settings, each where it belongs, pass.
    let fine = parse(&format!(
        "{MINIMAL}clusterAutoscaler: {{enabled: true}}\nnodePools:\n  - name: a\n    subnets: [us-west-2a]\n    instanceTypes: [m6i.large, m5.large]\n    onDemandPercentageAboveBaseCapacity: 20\n    spotAllocationStrategy: capacity-optimized\n  - name: b\n    managedPolicies: [arn:aws:iam::aws:policy/X, arn:aws:iam::123456789012:policy/path/Y]\n  - name: c\n    autoscaled: true\n    maxSize: 5\n    instanceProfileArn: arn:aws:iam::123456789012:instance-profile/p\n"
    ))
    .expect("valid pools");
    let pools = fine.worker_pools();
    assert_eq!(
        pools[1].instance_type, "m6i.large",
        "the first type names the launch template's"
    );
    assert_eq!(
        (pools[3].count, pools[3].min_size, pools[3].max_size),
        (0, 0, 5)
    );
}

#[test]
fn an_autoscaled_pools_tags_and_a_pools_iam_are_held_to_aws_limits() {
    let long_key = format!("example.com/{}", "k".repeat(80));
    let found = problems(&format!(
        "region: cn-north-1\nssmSessionManager: true\nstackTags: {{team: a, cost: b}}\nclusterAutoscaler: {{enabled: true}}\n{}nodePools:\n  - name: a\n    autoscaled: true\n    maxSize: 3\n    labels: {{\"{long_key}\": x, kube-aws.coreos.com/pool: other}}\n    taints: [{{key: t, effect: NoSchedule}}, {{key: t, effect: NoExecute}}]\n    managedPolicies: [{}]\n  - name: b\n    instanceTypes: [m6i.large]\n    onDemandPercentageAboveBaseCapacity: 100\n    spotPrice: \"0.1\"\n",
        MINIMAL.replace("region: us-west-2\n", ""),
        (0..21)
            .map(|n| format!("arn:aws:iam::aws:policy/P{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let messages: Vec<String> = found
        .iter()
        .map(|p| format!("{}: {}", p.field, p.message))
        .collect();
    let has = |field: &str, words: &str| {
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with(&format!("{field}: ")) && m.contains(words)),
            "{field} / {words}: {messages:#?}"
        )
    };
    has(
        &format!("nodePools[0].labels.{long_key}"),
        "at most 82 for the key (got 92)",
    );
    has(
        "nodePools[0].labels.kube-aws.coreos.com/pool",
        "sets kube-aws.coreos.com/pool to the pool's name itself",
    );
    has("nodePools[0].taints[1].key", "\"t\" is tainted twice");
    has(
        "nodePools[0].managedPolicies",
        "at most 20 managed policies to a role (10 unless the account's quota was raised); this role would have 21",
    );
    // cn-north-1 is in aws-cn: arn:aws:… policies are another partition's.
    has(
        "nodePools[0].managedPolicies[0]",
        "is not a managed policy ARN of aws-cn",
    );
    has(
        "nodePools[1].spotPrice",
        "has no effect: onDemandPercentageAboveBaseCapacity is 100",
    );
    // 8 of kube-aws's + 2 labels + 2 taints + 2 stackTags = 14: within 50.
    assert!(
        !messages.iter().any(|m| m.contains("Auto Scaling takes 50")),
        "{messages:#?}"
    );
    // The same key is not a Kubernetes label key either: its name is over 63 characters.
    has(
        &format!("nodePools[0].labels.{long_key}"),
        "is longer than 63 characters",
    );
    assert_eq!(found.len(), 27, "{messages:#?}");
}

#[test]
fn a_spot_pool_with_instance_types_is_all_spot_above_its_base_unless_told_otherwise() {
    let config = parse(&format!(
        "{MINIMAL}workerSpotPrice: \"0.05\"\nnodePools:\n  - name: mix\n    instanceTypes: [m6i.large]\n  - name: od\n    instanceTypes: [m6i.large]\n    spotPrice: \"0.1\"\n    onDemandPercentageAboveBaseCapacity: 50\n"
    ))
    .unwrap();
    let pools = config.worker_pools();
    assert_eq!(pools[1].on_demand_percentage_above_base_capacity, 0);
    assert_eq!(pools[2].on_demand_percentage_above_base_capacity, 50);
    let plain = parse(&format!(
        "{MINIMAL}nodePools:\n  - name: mix\n    instanceTypes: [m6i.large]\n"
    ))
    .unwrap();
    assert_eq!(
        plain.worker_pools()[1].on_demand_percentage_above_base_capacity,
        100
    );
}

#[test]
fn stack_tags_ec2_or_cloudformation_would_refuse_are_refused_at_their_line() {
    let long_key = "k".repeat(129);
    let long_value = format!("v: {}", "x".repeat(257));
    for (tags, field, words) in [
        ("  team/name: a", "stackTags.team/name", "no space or '/'"),
        ("  has space: a", "stackTags.has space", "no space or '/'"),
        (
            "  _index: a",
            "stackTags._index",
            "not '.', '..' or '_index'",
        ),
        (
            "  aws:cloudformation:x: a",
            "stackTags.aws:cloudformation:x",
            "the aws: prefix is AWS's own",
        ),
        (
            "  AWS:x: a",
            "stackTags.AWS:x",
            "the aws: prefix is AWS's own",
        ),
        (
            "  KubernetesCluster: other",
            "stackTags.KubernetesCluster",
            "kube-aws sets itself",
        ),
        (
            "  kube-aws:etcd-volume: vol-1",
            "stackTags.kube-aws:etcd-volume",
            "kube-aws sets itself",
        ),
        (
            &format!("  {long_key}: a"),
            &format!("stackTags.{long_key}"),
            "1 to 128 characters",
        ),
        (
            &format!("  {long_value}"),
            "stackTags.v",
            "at most 256 characters (this one has 257)",
        ),
    ] {
        let found = problems(&format!("{MINIMAL}stackTags:\n{tags}\n"));
        assert!(
            found
                .iter()
                .any(|p| p.field == field && p.message.contains(words) && p.line == Some(9)),
            "{tags}: {found:?}"
        );
    }
    let many: String = (0..43).map(|i| format!("  t{i}: v\n")).collect();
    let found = problems(&format!("{MINIMAL}stackTags:\n{many}"));
    assert!(
        found
            .iter()
            .any(|p| p.field == "stackTags" && p.message.contains("43 tags")),
        "{found:?}"
    );
    parse(&format!(
        "{MINIMAL}stackTags:\n  team: platform\n  cost-center: '42'\n  owner@example.com: yes\n"
    ))
    .unwrap();
}

#[test]
fn load_balancer_tag_keys_that_would_claim_a_cluster_are_refused_at_their_line() {
    for (key, words) in [
        ("kubernetes.io/cluster/other", "is reserved"),
        ("KubernetesCluster", "is reserved"),
        ("k8s.io/cluster-autoscaler/enabled", "is reserved"),
        ("Kube-AWS:pool", "is reserved"),
        ("ebs.csi.aws.com/cluster-name", "is reserved"),
        ("aws:x", "is reserved"),
        ("''", "1 to 128 characters"),
    ] {
        let found = problems(&format!(
            "{MINIMAL}loadBalancerTagKeys:\n  - team\n  - {key}\n"
        ));
        assert!(
            found.iter().any(|p| p.field == "loadBalancerTagKeys[1]"
                && p.message.contains(words)
                && p.line == Some(10)),
            "{key}: {found:?}"
        );
    }
    parse(&format!(
        "{MINIMAL}loadBalancerTagKeys: [team, cost-center]\n"
    ))
    .unwrap();
}

#[test]
fn values_that_would_reach_a_unit_or_aws_unchecked_are_refused_at_their_line() {
    for (setting, field, words) in [
        // Labels and taints land on the kubelet's command line: Kubernetes' syntax only.
        (
            "nodePools:\n  - name: p\n    labels: {team: \"x --anonymous-auth=true\"}",
            "nodePools[0].labels.team",
            "not a Kubernetes label value",
        ),
        (
            "nodePools:\n  - name: p\n    labels: {\"a b\": x}",
            "nodePools[0].labels.a b",
            "not a Kubernetes label key",
        ),
        (
            "nodePools:\n  - name: p\n    labels: {team: \"x\\nExecStartPre=/bin/sh\"}",
            "nodePools[0].labels.team",
            "not a Kubernetes label value",
        ),
        (
            "nodePools:\n  - name: p\n    taints: [{key: dedicated, value: \"x --authorization-mode=AlwaysAllow\", effect: NoSchedule}]",
            "nodePools[0].taints[0].value",
            "not a Kubernetes taint value",
        ),
        (
            "nodePools:\n  - name: p\n    taints: [{key: \"Bad/Prefix/x\", effect: NoSchedule}]",
            "nodePools[0].taints[0].key",
            "not a Kubernetes taint key",
        ),
        (
            "nodePools:\n  - name: p\n    spotPrice: \"0.05; rm\"",
            "nodePools[0].spotPrice",
            "not a price in dollars per hour",
        ),
        ("workerSpotPrice: \"-1\"", "workerSpotPrice", "not a price"),
        (
            "etcdSnapshotSchedule: never ever",
            "etcdSnapshotSchedule",
            "not a systemd calendar expression",
        ),
        (
            "kubernetesVersion: v1.37.99",
            "kubernetesVersion",
            "newer than the newest 1.37 patch",
        ),
        (
            "kubernetesVersion: v01.37.1",
            "kubernetesVersion",
            "no leading zeros",
        ),
        (
            "nodePools:\n  - name: p\n    instanceTypes: [banana]",
            "nodePools[0].instanceTypes[0]",
            "not an EC2 instance type",
        ),
        (
            "nodePools:\n  - name: p\n    instanceTypes: []",
            "nodePools[0].instanceTypes",
            "an empty list: name at least one instance type",
        ),
        (
            "workerInstanceType: \"m5.large; x\"",
            "workerInstanceType",
            "not an EC2 instance type",
        ),
    ] {
        let found = problems(&format!("{MINIMAL}{setting}\n"));
        assert!(
            found
                .iter()
                .any(|p| p.field == field && p.message.contains(words) && p.line.is_some()),
            "{setting}: {found:?}"
        );
    }
    // What a careful user writes still passes.
    parse(&format!(
        "{MINIMAL}etcdSnapshotSchedule: \"Mon,Thu *-*-* 02:00:00\"\nkubernetesVersion: v1.37.1\nnodePools:\n  - name: p\n    instanceTypes: [m6i.large, c7gn.16xlarge]\n    spotPrice: \"0.08\"\n    labels: {{example.com/team: a.b-c_d, tier: \"\"}}\n    taints: [{{key: dedicated, value: gpu, effect: NoSchedule}}]\n"
    ))
    .unwrap();
    for schedule in [
        "daily",
        "hourly",
        "*-*-* 00/6:00:00",
        "Sun *-*-* 03:30",
        "*:0/15",
    ] {
        parse(&format!("{MINIMAL}etcdSnapshotSchedule: \"{schedule}\"\n")).unwrap();
    }
}

#[test]
fn a_cluster_name_holding_another_clusters_pool_stack_name_is_refused() {
    let found = problems(&MINIMAL.replace("clusterName: demo", "clusterName: prod-pool-x"));
    assert!(
        found
            .iter()
            .any(|p| p.field == "clusterName" && p.message.contains("must not contain \"-pool-\"")),
        "{found:?}"
    );
    assert!(parse(&MINIMAL.replace("clusterName: demo", "clusterName: prod-pools")).is_ok());
}
