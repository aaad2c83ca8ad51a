//! Node pools as rendered: sizes, zones, instance mixes, roles, autoscaling, and a stack per pool.

use super::*;

#[test]
fn a_pool_sized_by_min_and_max_starts_at_count_and_rolls_below_its_max() {
    let rendered = render_with(
        &config(
            "workerCount: 2\nnodePools:\n  - name: elastic\n    count: 3\n    minSize: 0\n    maxSize: 10\n  - name: fixed\n    count: 2\n    maxSize: 2\n",
        ),
        &Templates::built_in(),
    )
    .unwrap();
    let stack = stack(&rendered);
    // (group, MinSize, MaxSize, DesiredCapacity, MinInstancesInService)
    for (group, min, max, desired, in_service) in [
        ("AutoScaleWorkers", "2", "3", "2", "2"),
        ("AutoScaleElastic", "0", "10", "3", "3"),
        // CloudFormation wants MinInstancesInService below MaxSize: a full group rolls one
        // instance at a time with one fewer in service.
        ("AutoScaleFixed", "2", "2", "2", "1"),
    ] {
        let asg = &stack["Resources"][group];
        let properties = &asg["Properties"];
        assert_eq!(
            (
                &properties["MinSize"],
                &properties["MaxSize"],
                &properties["DesiredCapacity"],
                &asg["UpdatePolicy"]["AutoScalingRollingUpdate"]["MinInstancesInService"],
            ),
            (
                &Value::from(min),
                &Value::from(max),
                &Value::from(desired),
                &Value::from(in_service)
            ),
            "{group}"
        );
    }
}

#[test]
fn pools_take_their_zones_and_instance_mix() {
    let rendered = render_with(&config(SHAPED_POOLS), &Templates::built_in()).unwrap();
    let stack = stack(&rendered);
    let resources = &stack["Resources"];
    let subnets = |group: &str| resources[group]["Properties"]["VPCZoneIdentifier"].clone();
    // Every node subnet by default; a pool's own by zone or id.
    assert_eq!(
        subnets("AutoScaleWorkers"),
        serde_json::json!([{"Ref": "Subnet0"}, {"Ref": "Subnet1"}, "subnet-0123456789abcdef0"])
    );
    assert_eq!(
        subnets("AutoScaleSpot"),
        serde_json::json!([{"Ref": "Subnet1"}, "subnet-0123456789abcdef0"])
    );

    // Instance types and the spot mix in a mixed instances policy; the spot price there, not
    // in the launch template (AWS refuses a spot launch template in a mixed group).
    let spot = &resources["AutoScaleSpot"]["Properties"];
    assert!(spot.get("LaunchTemplate").is_none(), "{spot:#}");
    let policy = &spot["MixedInstancesPolicy"];
    assert_eq!(
        policy["LaunchTemplate"]["Overrides"],
        serde_json::json!([{"InstanceType": "m6i.large"}, {"InstanceType": "m5.large"}, {"InstanceType": "m5a.large"}])
    );
    assert_eq!(
        policy["LaunchTemplate"]["LaunchTemplateSpecification"]["LaunchTemplateId"],
        serde_json::json!({"Ref": "LaunchTemplateSpot"})
    );
    assert_eq!(
        policy["InstancesDistribution"],
        serde_json::json!({"OnDemandAllocationStrategy": "prioritized", "OnDemandBaseCapacity": 1, "OnDemandPercentageAboveBaseCapacity": 0, "SpotAllocationStrategy": "price-capacity-optimized", "SpotMaxPrice": "0.08"})
    );
    let spot_launch = &resources["LaunchTemplateSpot"]["Properties"]["LaunchTemplateData"];
    assert!(
        spot_launch.get("InstanceMarketOptions").is_none(),
        "{spot_launch:#}"
    );
    assert_eq!(spot_launch["InstanceType"], "m6i.large");
}

#[test]
fn pools_take_their_iam_and_autoscaling() {
    let rendered = render_with(&config(SHAPED_POOLS), &Templates::built_in()).unwrap();
    let stack = stack(&rendered);
    let resources = &stack["Resources"];
    // Per-pool IAM: a role of its own with the workers' policy plus the managed ones, or the
    // user's instance profile and no role at all.
    let batch_role = &resources["IAMRolePoolBatch"]["Properties"];
    assert_eq!(
        batch_role["ManagedPolicyArns"],
        serde_json::json!(["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"])
    );
    assert_eq!(
        batch_role["Policies"], resources["IAMRoleWorker"]["Properties"]["Policies"],
        "the pool's role may do what a worker's may, no more"
    );
    let profile = |pool: &str| {
        resources[format!("LaunchTemplate{pool}")]["Properties"]["LaunchTemplateData"]["IamInstanceProfile"]["Arn"].clone()
    };
    assert_eq!(
        profile("Batch"),
        serde_json::json!({"Fn::GetAtt": ["IAMInstanceProfilePoolBatch", "Arn"]})
    );
    assert_eq!(
        profile("Byo"),
        serde_json::json!("arn:aws:iam::123456789012:instance-profile/byo-nodes")
    );
    assert_eq!(
        profile("Spot"),
        serde_json::json!({"Fn::GetAtt": ["IAMInstanceProfileWorker", "Arn"]})
    );
    assert!(resources.get("IAMRolePoolByo").is_none());
    assert!(resources.get("IAMRolePoolSpot").is_none());

    // The autoscaled pool: no desired capacity (CloudFormation keeps the autoscaler's), the
    // discovery tags and the node-template tags for scaling up from zero.
    let batch = &resources["AutoScaleBatch"];
    assert!(
        batch["Properties"].get("DesiredCapacity").is_none(),
        "{batch:#}"
    );
    assert_eq!(
        (
            &batch["Properties"]["MinSize"],
            &batch["Properties"]["MaxSize"]
        ),
        (&Value::from("0"), &Value::from("20"))
    );
    assert!(
        batch.get("CreationPolicy").is_none(),
        "nothing to signal at zero"
    );
    let tags: BTreeMap<String, (String, bool)> = batch["Properties"]["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["Key"].as_str().unwrap().to_string(),
                (
                    t["Value"].as_str().unwrap_or_default().to_string(),
                    t["PropagateAtLaunch"].as_bool().unwrap(),
                ),
            )
        })
        .collect();
    for (key, value) in [
        ("k8s.io/cluster-autoscaler/enabled", "true"),
        ("k8s.io/cluster-autoscaler/demo", "owned"),
        (
            "k8s.io/cluster-autoscaler/node-template/label/kube-aws.coreos.com/pool",
            "batch",
        ),
        (
            "k8s.io/cluster-autoscaler/node-template/label/workload",
            "batch",
        ),
        (
            "k8s.io/cluster-autoscaler/node-template/taint/dedicated",
            "batch:NoSchedule",
        ),
    ] {
        assert_eq!(
            tags.get(key),
            Some(&(value.to_string(), false)),
            "{key}: {tags:#?}"
        );
    }
    let spot_tags = resources["AutoScaleSpot"]["Properties"]["Tags"].to_string();
    assert!(
        !spot_tags.contains("cluster-autoscaler"),
        "a pool not marked autoscaled is never resized: {spot_tags}"
    );

    // The controllers' role may resize only this cluster's autoscaled groups.
    let controller_policy = role_statements(&stack, "IAMRoleController");
    let resize = controller_policy
        .iter()
        .find(|s| s["Sid"] == "ResizeOnlyThisClustersAutoscaledPools")
        .expect("the resize statement");
    assert_eq!(
        resize["Condition"],
        serde_json::json!({"StringEquals": {"aws:ResourceTag/k8s.io/cluster-autoscaler/demo": "owned"}})
    );
    // The add-on itself: applied last, on the controllers, discovering by this cluster's tag.
    let manifest = &rendered.manifests["cluster-autoscaler.yaml"];
    assert!(
        manifest.contains("--node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,k8s.io/cluster-autoscaler/demo"),
        "{manifest}"
    );
    assert!(manifest.contains("registry.k8s.io/autoscaling/cluster-autoscaler:v1."));
    let controller = &rendered.cloud_configs["cloud-config-controller"];
    assert!(
        controller.contains("cluster-autoscaler.yaml"),
        "the controller applies it"
    );
}

#[test]
fn with_a_stack_per_pool_each_pool_is_its_own_stack_taking_the_cluster_stacks_resources() {
    // SHAPED_POOLS creates its VPC's subnets here, so the pools read them as parameters.
    let shaped = SHAPED_POOLS
        .replace("vpcId: vpc-0123456789abcdef0\nrouteTableId: rtb-0123456789abcdef0\n", "")
        .replace("  - {id: subnet-0123456789abcdef0, availabilityZone: us-west-2c, instanceCIDR: 10.0.2.0/24}\n", "")
        .replace("subnets: [us-west-2b, subnet-0123456789abcdef0]", "subnets: [us-west-2b]");
    let single = render_with(&config(&shaped), &Templates::built_in()).unwrap();
    let split = render_with(
        &config(&format!("{shaped}stackPerPool: true\n")),
        &Templates::built_in(),
    )
    .unwrap();
    assert!(single.pool_stacks.is_empty());
    let cluster = stack(&split);
    let resources = cluster["Resources"].as_object().unwrap();
    // No pool resource and no workers' role is left in the cluster stack; the rest is as in
    // the single stack.
    let single_ids: BTreeSet<String> = stack(&single)["Resources"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let split_ids: BTreeSet<String> = resources.keys().cloned().collect();
    let moved: BTreeSet<String> = single_ids.difference(&split_ids).cloned().collect();
    assert_eq!(
        moved,
        [
            "AutoScaleBatch",
            "AutoScaleByo",
            "AutoScaleSpot",
            "AutoScaleWorkers",
            "IAMInstanceProfilePoolBatch",
            "IAMInstanceProfileWorker",
            "IAMRolePoolBatch",
            "IAMRoleWorker",
            "LaunchTemplateBatch",
            "LaunchTemplateByo",
            "LaunchTemplateSpot",
            "LaunchTemplateWorkers",
        ]
        .into_iter()
        .map(String::from)
        .collect()
    );
    assert!(split_ids.is_subset(&single_ids));
    assert_references_resolve(&cluster);
    // Each pool stack's parameter names a resource of the cluster stack (apply passes its
    // physical id); the cluster stack's outputs are the single stack's.
    for (pool, stack) in &split.pool_stacks {
        for parameter in &stack.parameters {
            assert!(resources.contains_key(parameter), "{pool}: {parameter}");
        }
    }
    assert_eq!(cluster["Outputs"], stack(&single)["Outputs"]);

    assert_eq!(
        split.pool_stacks.keys().collect::<Vec<_>>(),
        ["batch", "byo", "spot", "workers"]
    );
    let spot = &split.pool_stacks["spot"];
    assert_eq!(spot.stack_name, "demo-pool-spot");
    assert_eq!(spot.parameters, ["SecurityGroupWorker", "Subnet1"]);
    let template: Value = serde_json::from_str(&spot.template).unwrap();
    assert_references_resolve(&template);
    assert_eq!(
        template["Parameters"]["Subnet1"]["Type"],
        "AWS::EC2::Subnet::Id"
    );
    assert!(template.get("Outputs").is_none());
    // The same group as in the single stack, but with a role of its own in its stack, so
    // its instances may signal their own stack.
    let pool_resources = template["Resources"].as_object().unwrap();
    assert_eq!(
        pool_resources.keys().collect::<Vec<_>>(),
        [
            "AutoScaleSpot",
            "IAMInstanceProfilePoolSpot",
            "IAMRolePoolSpot",
            "LaunchTemplateSpot"
        ]
    );
    // Beside the cluster's resources the group waits for the API's record and the controller
    // (and its network); a pool stack is created after the cluster stack completes.
    let mut in_cluster_stack = stack(&single)["Resources"]["AutoScaleSpot"].clone();
    let waits_for = in_cluster_stack
        .as_object_mut()
        .unwrap()
        .remove("DependsOn")
        .unwrap();
    assert_eq!(waits_for[0], "APIEndpointRecord");
    assert_eq!(waits_for[1], "InstanceController");
    assert_eq!(pool_resources["AutoScaleSpot"], in_cluster_stack);
    let launch = &pool_resources["LaunchTemplateSpot"]["Properties"]["LaunchTemplateData"];
    assert_eq!(
        launch["IamInstanceProfile"],
        serde_json::json!({"Arn": {"Fn::GetAtt": ["IAMInstanceProfilePoolSpot", "Arn"]}})
    );
    assert_eq!(
        pool_resources["IAMRolePoolSpot"]["Properties"]["Policies"],
        stack(&single)["Resources"]["IAMRoleWorker"]["Properties"]["Policies"]
    );
    // A worker signals nothing; its group tags it with the stack and group the controllers'
    // node-ready-signaller signals for it: the pool's own stack, whichever stack that is.
    for rendered in [&single, &split] {
        assert!(!rendered.cloud_configs["cloud-config-worker-spot"].contains("signal-resource"));
    }
    let tags = pool_resources["AutoScaleSpot"]["Properties"]["Tags"]
        .as_array()
        .unwrap();
    let tag = |key: &str| tags.iter().find(|t| t["Key"] == key).unwrap().clone();
    assert_eq!(
        tag("kube-aws:signal-stack"),
        serde_json::json!({"Key": "kube-aws:signal-stack", "Value": {"Ref": "AWS::StackName"}, "PropagateAtLaunch": true})
    );
    assert_eq!(
        tag("kube-aws:signal-resource"),
        serde_json::json!({"Key": "kube-aws:signal-resource", "Value": "AutoScaleSpot", "PropagateAtLaunch": true})
    );
    // A pool with the user's instance profile has no role in its stack either.
    let byo: Value = serde_json::from_str(&split.pool_stacks["byo"].template).unwrap();
    assert_eq!(
        byo["Resources"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["AutoScaleByo", "LaunchTemplateByo"]
    );
}

#[test]
fn moving_to_a_stack_per_pool_first_keeps_the_cluster_stack_as_it_runs() {
    let extra = "nodePools: [{name: gpu, managedPolicies: [arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess]}]\n";
    let single = render_with(&config(extra), &Templates::built_in()).unwrap();
    let split_config = config(&format!("{extra}stackPerPool: true\n"));
    let split = render_with(&split_config, &Templates::built_in()).unwrap();
    let moving = render(
        &Templates::built_in(),
        &RenderInputs {
            config: &split_config,
            ami_id: "ami-0123456789abcdef0",
            tls: &tls(),
            keep_pools_in_cluster_stack: true,
            reuse_pools: &Default::default(),
        },
    )
    .unwrap();
    // Step 1: the cluster stack byte for byte as the single stack (nothing in it changes, so
    // nothing rolls), the pool stacks as they will stay, the cloud-configs the pool stacks'.
    assert_eq!(moving.stack_template, single.stack_template);
    assert_eq!(moving.pool_stacks, split.pool_stacks);
    assert_eq!(moving.cloud_configs, split.cloud_configs);
    assert_ne!(split.stack_template, single.stack_template);
}

#[test]
fn an_override_that_renders_the_whole_cluster_into_a_pool_stack_is_refused() {
    let mut templates = Templates::built_in();
    let text = templates
        .text(STACK)
        .unwrap()
        .replace("{%- if not poolStack %}", "{%- if true %}");
    templates.sources.insert(STACK, (text, Origin::BuiltIn));
    let e = render_with(&config("stackPerPool: true\n"), &templates).unwrap_err();
    assert!(
        matches!(&e, RenderError::PoolStackHoldsMore { pool, resources } if pool == "workers" && resources.contains(&"VPC".to_string())),
        "{e}"
    );
}

#[test]
fn the_cluster_autoscaler_is_off_unless_enabled() {
    let rendered = render_with(&config(""), &Templates::built_in()).unwrap();
    assert!(!rendered.manifests.contains_key("cluster-autoscaler.yaml"));
    assert!(!rendered.stack_template.contains("cluster-autoscaler"));
    assert!(!rendered.stack_template.contains("MixedInstancesPolicy"));
    assert!(!rendered.stack_template.contains("IAMRolePool"));
}

#[test]
fn one_auto_scaling_group_per_pool_with_a_rolling_update_policy() {
    let rendered = render_with(
        &config("workerCount: 2\nnodePools:\n  - name: gpu-big\n    count: 4\n"),
        &Templates::built_in(),
    )
    .unwrap();
    let stack = stack(&rendered);
    for (group, count) in [("AutoScaleWorkers", "2"), ("AutoScaleGpuBig", "4")] {
        let asg = &stack["Resources"][group];
        assert_eq!(asg["Type"], "AWS::AutoScaling::AutoScalingGroup");
        assert_eq!(asg["Properties"]["DesiredCapacity"], count);
        let policy = &asg["UpdatePolicy"]["AutoScalingRollingUpdate"];
        assert_eq!(policy["MinInstancesInService"], count);
        assert_eq!(policy["MaxBatchSize"], "1");
    }
    assert!(
        rendered
            .cloud_configs
            .contains_key("cloud-config-worker-gpu-big")
    );
    assert!(
        rendered.cloud_configs["cloud-config-worker-gpu-big"]
            .contains("--node-labels=kube-aws.coreos.com/pool=gpu-big")
    );
}

#[test]
fn each_optional_addon_is_switched_by_a_field_init_writes_and_only_when_on() {
    let init_text = include_str!("../../../templates/cluster.yaml");
    for addon in ADDONS {
        let Some(switch) = addon.enabled_by else {
            continue;
        };
        let top = switch.field.split('.').next().unwrap();
        assert!(
            init_text.contains(top),
            "{} is not in cluster.yaml",
            switch.field
        );
        let off = config("");
        let on = config("clusterAutoscaler:\n  enabled: true\n");
        assert!(
            !(switch.enabled)(&off) && (switch.enabled)(&on),
            "{}",
            switch.field
        );
        assert!(!addons(&off).contains(&addon.template.path));
        assert!(addons(&on).contains(&addon.template.path));
    }
}
