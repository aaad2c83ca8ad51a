//! What cluster.yaml may not hold: extreme numbers, deep or huge YAML, tags AWS refuses,
//! and values that would reach a unit or AWS unchecked.

use super::*;

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
