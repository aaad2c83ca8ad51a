//! Node pools as cluster.yaml declares them: inherited defaults, names, sizes, zones, instance
//! mixes, roles, labels and autoscaling, each refused at its field.

use super::*;

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
    assert!(include_str!("../../../data/kubelet-rules.json").contains("well_known_labels.go"));
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
