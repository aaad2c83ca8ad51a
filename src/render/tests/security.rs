//! The rendered stack held to its security baseline: defaults, subnets, the roles' reach, the load balancer, and no injection from cluster.yaml.

use super::*;

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
            || s["Sid"] == "FetchTheAddonManifests"
            // A resource of the cluster's own stack (the node drainer's queue).
            || s["Resource"]["Fn::GetAtt"][0]
                .as_str()
                .is_some_and(|id| stack["Resources"].get(id).is_some());
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

/// Every string field of cluster.yaml set to a value that would start a line of its own (a
/// unit directive, a cloud-config file, an environment line): refused at that field, or
/// rendered with the value kept inside its own line everywhere (cloud-configs, the stack
/// template, add-on manifests).
/// Every top-level cluster.yaml field that holds a string.
const STRING_FIELDS: [&str; 31] = [
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
    let top_level = STRING_FIELDS;
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
