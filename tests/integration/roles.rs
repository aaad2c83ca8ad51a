//! Each instance role, as rendered, held to a table of what it may and may not do (issue 31):
//! IAM evaluation of the rendered inline policy (`iam.rs`: actions, resources, conditions),
//! with the template's intrinsics resolved to the names one deployed stack would have.

use serde_json::{Map, Value};

use crate::iam::{Decision, Request, allows, evaluate};
use crate::payload::{THREE_AND_THREE, render_cluster};

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-west-2";

/// The ARN, id or attribute a resource of the stack would have: resource `X` is `physical-X`.
fn physical(name: &str, stack_id: &str) -> String {
    match name {
        "AWS::Partition" => "aws".into(),
        "AWS::Region" => REGION.into(),
        "AWS::AccountId" => ACCOUNT.into(),
        "AWS::StackId" => stack_id.into(),
        other => match other.split_once('.') {
            Some((resource, "Arn")) if resource.starts_with("EtcdSnapshots") => {
                format!("arn:aws:s3:::physical-{resource}")
            }
            Some((resource, attribute)) => format!("physical-{resource}-{attribute}"),
            None => format!("physical-{other}"),
        },
    }
}

/// `Ref`, `Fn::Sub` (both forms), `Fn::Join` and `Fn::GetAtt` resolved, recursively.
fn resolve(value: &Value, stack_id: &str) -> Value {
    let sub = |text: &str, vars: &Map<String, Value>| -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').expect("a closed ${…}") + start;
            let name = &rest[start + 2..end];
            out.push_str(&match (name.strip_prefix('!'), vars.get(name)) {
                // `${!X}` is CloudFormation's escape for a literal `${X}` (a policy variable).
                (Some(literal), _) => format!("${{{literal}}}"),
                (None, Some(v)) => resolve(v, stack_id).as_str().unwrap().to_string(),
                (None, None) => physical(name, stack_id),
            });
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    };
    match value {
        Value::Object(map) if map.len() == 1 => {
            let (key, inner) = map.iter().next().unwrap();
            match (key.as_str(), inner) {
                ("Ref", Value::String(name)) => Value::from(physical(name, stack_id)),
                ("Fn::Sub", Value::String(text)) => Value::from(sub(text, &Map::new())),
                ("Fn::Sub", Value::Array(parts)) => Value::from(sub(
                    parts[0].as_str().unwrap(),
                    parts[1].as_object().unwrap(),
                )),
                ("Fn::Join", Value::Array(parts)) => Value::from(
                    parts[1]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| resolve(p, stack_id).as_str().unwrap().to_string())
                        .collect::<Vec<_>>()
                        .join(parts[0].as_str().unwrap()),
                ),
                ("Fn::GetAtt", Value::Array(parts)) => Value::from(physical(
                    &format!(
                        "{}.{}",
                        parts[0].as_str().unwrap(),
                        parts[1].as_str().unwrap()
                    ),
                    stack_id,
                )),
                _ => Value::Object(
                    map.iter()
                        .map(|(k, v)| (k.clone(), resolve(v, stack_id)))
                        .collect(),
                ),
            }
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), resolve(v, stack_id)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| resolve(v, stack_id)).collect()),
        other => other.clone(),
    }
}

#[test]
fn each_instance_role_is_held_to_a_table_of_what_it_may_and_may_not_do() {
    let cluster = render_cluster(
        "roles",
        &format!(
            "stackPerPool: false\n{THREE_AND_THREE}ssmSessionManager: true\nloadBalancerTagKeys: [team]\nclusterAutoscaler:\n  enabled: true\nebsKmsKeyArn: arn:aws:kms:us-west-2:123456789012:key/11111111-2222-3333-4444-555555555555\n"
        ),
    );
    let name = cluster.config.cluster_name.clone();
    let domain = cluster.config.etcd_domain();
    let stack_id = format!("arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{name}/guid");
    let template: Value = serde_json::from_str(&cluster.rendered.stack_template).unwrap();
    // A role's permissions: its inline policy and the stack's managed policies it carries,
    // resolved; each held to IAM's size quotas (white space is not counted), with every
    // placeholder name counted as 40 characters, longer than the ids and ARNs it stands for.
    let mut oversized = Vec::new();
    let mut within_quota = |what: String, document: &Value, quota: usize| {
        let text = serde_json::to_string(document).unwrap();
        let size = text.len() + text.matches("physical-").count() * 40;
        println!("{what:<45} {size:>6} of {quota} characters");
        if size > quota {
            oversized.push(format!("{what}: {size} > {quota}"));
        }
    };
    let mut role = |id: &str| -> Value {
        let properties = &template["Resources"][id]["Properties"];
        let mut document = resolve(&properties["Policies"][0]["PolicyDocument"], &stack_id);
        within_quota(format!("{id}'s inline policy"), &document, 10_240);
        let managed = properties["ManagedPolicyArns"].as_array().cloned();
        for arn in managed.unwrap_or_default() {
            let policy = arn["Ref"]
                .as_str()
                .unwrap_or_else(|| panic!("{id} carries a policy the stack does not hold: {arn}"));
            let policy = resolve(
                &template["Resources"][policy]["Properties"]["PolicyDocument"],
                &stack_id,
            );
            within_quota(format!("{id}'s {arn}"), &policy, 6_144);
            let statements = policy["Statement"].as_array().unwrap().clone();
            document["Statement"]
                .as_array_mut()
                .unwrap()
                .extend(statements);
        }
        document
    };
    let (etcd, worker, controller) = (
        role("IAMRoleEtcd"),
        role("IAMRoleWorker"),
        role("IAMRoleController"),
    );
    assert!(oversized.is_empty(), "over IAM's quota: {oversized:?}");

    let volume = |i: usize| format!("arn:aws:ec2:{REGION}:{ACCOUNT}:volume/physical-VolumeEtcd{i}");
    let instance = format!("arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0123456789abcdef0");
    let tagged_volume = |i: usize| {
        Request::new("ec2:AttachVolume", &volume(i))
            .with("aws:ResourceTag/KubernetesCluster", &name)
    };
    let instance_named = |tag: &str| {
        Request::new("ec2:AttachVolume", &instance)
            .with("aws:ResourceTag/KubernetesCluster", &name)
            .with("aws:ResourceTag/Name", &format!("{name}-{tag}"))
    };
    let record = |record: &str, kind: &str, action: &str| {
        Request::new(
            "route53:ChangeResourceRecordSets",
            "arn:aws:route53:::hostedzone/physical-EtcdZone",
        )
        .with(
            "route53:ChangeResourceRecordSetsNormalizedRecordNames",
            record,
        )
        .with("route53:ChangeResourceRecordSetsRecordTypes", kind)
        .with("route53:ChangeResourceRecordSetsActions", action)
    };
    let decrypt = |asset: &str| {
        Request::new("kms:Decrypt", &cluster.config.kms_key_arn)
            .with("kms:EncryptionContext:kube-aws:cluster", &name)
            .with("kms:EncryptionContext:kube-aws:asset", asset)
    };
    let parameter = Request::new(
        "ssm:GetParameter",
        &format!("arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/prod/db-password"),
    );
    let snapshot = Request::new(
        "s3:GetObject",
        &format!("arn:aws:s3:::physical-EtcdSnapshots/{name}/etcd/snapshot.db"),
    );
    // The bucket's own policy decides too: a principal reads a snapshot only if its identity
    // policy allows it and the bucket policy denies it nothing (one account, so either allows).
    let bucket_policy = resolve(
        &template["Resources"]["EtcdSnapshotsPolicy"]["Properties"]["PolicyDocument"],
        &stack_id,
    );
    let etcd_role_arn = "physical-IAMRoleEtcd-Arn";
    let by = |request: &Request, principal: &str, tls: bool| {
        request
            .clone()
            .with("aws:PrincipalArn", principal)
            .with("aws:SecureTransport", &tls.to_string())
    };
    let s3_allows = |identity: &Value, request: &Request| {
        allows(identity, request) && evaluate(&bucket_policy, request) != Decision::ExplicitDeny
    };
    // What AmazonS3ReadOnlyAccess grants, held by some other role of the account.
    let s3_read_only = serde_json::json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:Get*", "s3:List*", "s3:Describe*"], "Resource": "*"}
    ]});
    let reader = format!("arn:aws:iam::{ACCOUNT}:role/analytics");
    let s3_rows = [
        (
            "etcd reads a snapshot (bucket policy too)",
            &etcd,
            by(&snapshot, etcd_role_arn, true),
            true,
        ),
        (
            "… and saves one",
            &etcd,
            Request {
                action: "s3:PutObject".into(),
                ..by(&snapshot, etcd_role_arn, true)
            },
            true,
        ),
        (
            "… but not over plain HTTP",
            &etcd,
            by(&snapshot, etcd_role_arn, false),
            false,
        ),
        (
            "a role with AmazonS3ReadOnlyAccess reads no snapshot",
            &s3_read_only,
            by(&snapshot, &reader, true),
            false,
        ),
        (
            "… nor an old version of one",
            &s3_read_only,
            Request {
                action: "s3:GetObjectVersion".into(),
                ..by(&snapshot, &reader, true)
            },
            false,
        ),
    ];
    let through_s3 = |action: &str, bucket: &str| {
        Request::new(action, &cluster.config.kms_key_arn)
            .with("kms:ViaService", &format!("s3.{REGION}.amazonaws.com"))
            .with("kms:EncryptionContext:aws:s3:arn", bucket)
    };
    let node_key = "kube-aws:node-client-key";
    let worker_instance = format!("arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0aaaaaaaaaaaaaaa1");
    let other_instance = format!("arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0bbbbbbbbbbbbbbb2");
    let tag_from_worker = |target: &str, key: &str| {
        Request::new("ec2:CreateTags", target)
            .with("ec2:InstanceID", target.rsplit('/').next().unwrap())
            .with("ec2:SourceInstanceARN", &worker_instance)
            .with("aws:TagKeys", key)
    };
    let signal = |stack: &str| Request::new("cloudformation:SignalResource", stack);
    let stack_name = cluster.config.stack_name();
    let pool_stack =
        format!("arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{stack_name}-pool-spot/guid");
    let other_stack =
        format!("arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{stack_name}x-pool-spot/guid");
    // What the cloud controller asks for when a Service needs a load balancer (buildTags and
    // ensureLoadBalancer in cloud-provider-aws), and the groups it opens node ports in.
    let cluster_key = format!("kubernetes.io/cluster/{name}");
    let load_balancer =
        format!("arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:loadbalancer/a0123456789abcdef");
    // kube-aws names the cluster by KubernetesClusterID, so the legacy KubernetesCluster tag
    // is not among them (buildTags adds it only with KubernetesClusterTag).
    let new_load_balancer = |subnets: &[&str], keys: &[&str]| {
        let mut request = Request::new("elasticloadbalancing:CreateLoadBalancer", &load_balancer)
            .with(&format!("aws:RequestTag/{cluster_key}"), "owned")
            .with("elasticloadbalancing:SecurityGroup", "sg-0loadbalancer");
        for subnet in subnets {
            request = request.with("elasticloadbalancing:Subnet", subnet);
        }
        for key in [cluster_key.as_str(), "kubernetes.io/service-name"]
            .iter()
            .chain(keys)
        {
            request = request.with("aws:TagKeys", key);
        }
        request
    };
    let on_its_load_balancer = |action: &str| {
        Request::new(action, &load_balancer)
            .with(&format!("aws:ResourceTag/{cluster_key}"), "owned")
    };
    let group = format!("arn:aws:ec2:{REGION}:{ACCOUNT}:security-group/sg-0123456789abcdef0");
    let created_for_the_cluster = |action: &str, resource: &str| {
        Request::new(action, resource)
            .with(&format!("aws:RequestTag/{cluster_key}"), "owned")
            .with("aws:TagKeys", &cluster_key)
            .with("aws:TagKeys", "kubernetes.io/service-name")
    };
    let on_group = |action: &str, ownership: Option<&str>| {
        let request = Request::new(action, &group).with("aws:ResourceTag/KubernetesCluster", &name);
        match ownership {
            Some(value) => request.with(&format!("aws:ResourceTag/{cluster_key}"), value),
            None => request,
        }
    };
    let (subnet_a, subnet_b) = ("physical-Subnet0", "physical-Subnet1");
    let member = format!("etcd-0.{domain}");
    let api = format!("api.{domain}");
    // The node drainer: the controllers read and delete this cluster's queue, and complete a
    // termination hook only on a group tagged as this cluster's.
    let queue = "physical-NodeDrainQueue-Arn";
    let other_queue = format!("arn:aws:sqs:{REGION}:{ACCOUNT}:billing-jobs");
    let complete = |tagged_as: &str| {
        Request::new(
            "autoscaling:CompleteLifecycleAction",
            &format!("arn:aws:autoscaling:{REGION}:{ACCOUNT}:autoScalingGroup:uuid:autoScalingGroupName/{name}-AutoScaleWorkers-X"),
        )
        .with(&format!("aws:ResourceTag/kubernetes.io/cluster/{tagged_as}"), "owned")
    };
    let drain_rows: Vec<(&str, &Value, Request, bool)> = vec![
        (
            "the controllers receive the drain queue's messages",
            &controller,
            Request::new("sqs:ReceiveMessage", queue),
            true,
        ),
        (
            "… and delete them",
            &controller,
            Request::new("sqs:DeleteMessage", queue),
            true,
        ),
        (
            "… but no other queue's",
            &controller,
            Request::new("sqs:ReceiveMessage", &other_queue),
            false,
        ),
        (
            "… and send to none",
            &controller,
            Request::new("sqs:SendMessage", queue),
            false,
        ),
        (
            "… nor purge it",
            &controller,
            Request::new("sqs:PurgeQueue", queue),
            false,
        ),
        (
            "the controllers complete a hook of this cluster's groups",
            &controller,
            complete(&name),
            true,
        ),
        (
            "… but not of another cluster's",
            &controller,
            complete("other"),
            false,
        ),
        (
            "workers read no drain message",
            &worker,
            Request::new("sqs:ReceiveMessage", queue),
            false,
        ),
        ("… nor complete a hook", &worker, complete(&name), false),
        ("etcd completes no hook", &etcd, complete(&name), false),
    ];
    // The queue's own policy: EventBridge delivers for this cluster's rules, over TLS; no one
    // else sends, whatever their identity policy allows (a forged event would drain a node).
    let queue_policy = resolve(
        &template["Resources"]["NodeDrainQueuePolicy"]["Properties"]["PolicyDocument"],
        &stack_id,
    );
    let send = |source: Option<&str>, tls: bool| {
        let request =
            Request::new("sqs:SendMessage", queue).with("aws:SecureTransport", &tls.to_string());
        match source {
            Some(rule) => request.with("aws:SourceArn", rule),
            None => request,
        }
    };
    let rule_arn = "physical-NodeDrainRuleAsgTerminate-Arn";
    let queue_rows = [
        (
            "EventBridge delivers a rule's event to the queue",
            send(Some(rule_arn), true),
            Decision::Allow,
        ),
        (
            "… not over plain HTTP",
            send(Some(rule_arn), false),
            Decision::ExplicitDeny,
        ),
        (
            "… nor for another rule",
            send(
                Some("arn:aws:events:us-west-2:123456789012:rule/other"),
                true,
            ),
            Decision::ExplicitDeny,
        ),
        (
            "a role of the account allowed sqs:* sends nothing",
            send(None, true),
            Decision::ExplicitDeny,
        ),
    ];
    for (what, request, wanted) in queue_rows {
        let decided = evaluate(&queue_policy, &request);
        println!("{what:<45} {decided:?} {request}");
        assert_eq!(decided, wanted, "{what}: {request}");
    }
    let table: Vec<(&str, &Value, Request, bool)> = drain_rows
        .into_iter()
        .chain(vec![
            (
                "etcd attaches its member's volume",
                &etcd,
                tagged_volume(0),
                true,
            ),
            ("… to an etcd member", &etcd, instance_named("etcd-0"), true),
            (
                "… but not to a worker",
                &etcd,
                instance_named("workers"),
                false,
            ),
            (
                "… nor to a controller",
                &etcd,
                instance_named("controller"),
                false,
            ),
            (
                "… nor to another cluster's instance",
                &etcd,
                Request::new("ec2:AttachVolume", &instance)
                    .with("aws:ResourceTag/KubernetesCluster", "other")
                    .with("aws:ResourceTag/Name", &format!("{name}-etcd-0")),
                false,
            ),
            (
                "etcd points its member name",
                &etcd,
                record(&member, "A", "UPSERT"),
                true,
            ),
            (
                "… but not the API name nodes use",
                &etcd,
                record(&api, "A", "UPSERT"),
                false,
            ),
            (
                "… nor deletes a member name",
                &etcd,
                record(&member, "A", "DELETE"),
                false,
            ),
            (
                "… nor writes another type",
                &etcd,
                record(&member, "TXT", "UPSERT"),
                false,
            ),
            (
                "etcd decrypts its server key",
                &etcd,
                decrypt("etcd-server"),
                true,
            ),
            ("… but not the CA's", &etcd, decrypt("ca"), false),
            ("etcd reads its snapshots", &etcd, snapshot.clone(), true),
            (
                "etcd decrypts a snapshot through S3 (SSE-KMS)",
                &etcd,
                through_s3("kms:Decrypt", "arn:aws:s3:::physical-EtcdSnapshots"),
                true,
            ),
            (
                "… and encrypts one",
                &etcd,
                through_s3("kms:GenerateDataKey", "arn:aws:s3:::physical-EtcdSnapshots"),
                true,
            ),
            (
                "… but not another bucket's objects",
                &etcd,
                through_s3("kms:Decrypt", "arn:aws:s3:::someone-elses-bucket"),
                false,
            ),
            (
                "… nor outside S3",
                &etcd,
                Request::new("kms:Decrypt", &cluster.config.kms_key_arn).with(
                    "kms:EncryptionContext:aws:s3:arn",
                    "arn:aws:s3:::physical-EtcdSnapshots",
                ),
                false,
            ),
            (
                "a worker decrypts no snapshot",
                &worker,
                through_s3("kms:Decrypt", "arn:aws:s3:::physical-EtcdSnapshots"),
                false,
            ),
            (
                "a worker attaches no etcd volume",
                &worker,
                tagged_volume(0),
                false,
            ),
            (
                "… nor points an etcd name",
                &worker,
                record(&member, "A", "UPSERT"),
                false,
            ),
            ("… nor reads a snapshot", &worker, snapshot.clone(), false),
            ("… nor decrypts the CA key", &worker, decrypt("ca"), false),
            (
                "… only the bootstrap token",
                &worker,
                decrypt("bootstrap-token"),
                true,
            ),
            (
                "a worker tags its own instance with its node key",
                &worker,
                tag_from_worker(&worker_instance, node_key),
                true,
            ),
            (
                "… but not another instance (a controller's)",
                &worker,
                tag_from_worker(&other_instance, node_key),
                false,
            ),
            (
                "… nor with another tag",
                &worker,
                tag_from_worker(&worker_instance, "kube-aws:pool"),
                false,
            ),
            (
                "… nor with its key and another tag",
                &worker,
                tag_from_worker(&worker_instance, node_key).with("aws:TagKeys", "Name"),
                false,
            ),
            (
                "… nor in a request that names no source instance",
                &worker,
                Request::new("ec2:CreateTags", &worker_instance)
                    .with("ec2:InstanceID", "i-0aaaaaaaaaaaaaaa1")
                    .with("aws:TagKeys", node_key),
                false,
            ),
            (
                "a controller sets no node key",
                &controller,
                tag_from_worker(&worker_instance, node_key),
                false,
            ),
            (
                "an etcd member sets no node key",
                &etcd,
                tag_from_worker(&worker_instance, node_key),
                false,
            ),
            (
                "an etcd member reads its stack's status (etcd-join: found or join)",
                &etcd,
                Request::new("cloudformation:DescribeStacks", &stack_id),
                true,
            ),
            (
                "… but not another stack's",
                &etcd,
                Request::new("cloudformation:DescribeStacks", &pool_stack),
                false,
            ),
            (
                "a worker signals no stack (it would reach every group of it)",
                &worker,
                signal(&stack_id),
                false,
            ),
            (
                "… nor its pool's stack",
                &worker,
                signal(&pool_stack),
                false,
            ),
            (
                "a controller signals for its cluster stack's groups",
                &controller,
                signal(&stack_id),
                true,
            ),
            (
                "… and its pool stacks'",
                &controller,
                signal(&pool_stack),
                true,
            ),
            (
                "… but not another cluster's",
                &controller,
                signal(&other_stack),
                false,
            ),
            (
                "the cloud controller makes a load balancer in the cluster's subnets",
                &controller,
                new_load_balancer(&[subnet_a, subnet_b], &[]),
                true,
            ),
            (
                "… with a key loadBalancerTagKeys lists",
                &controller,
                new_load_balancer(&[subnet_a], &["team"]),
                true,
            ),
            (
                "… but not in another VPC's subnet",
                &controller,
                new_load_balancer(&[subnet_a, "subnet-0elsewhere"], &[]),
                false,
            ),
            (
                "… nor without naming a subnet",
                &controller,
                new_load_balancer(&[], &[]),
                false,
            ),
            (
                "… nor tagged as another cluster's too",
                &controller,
                new_load_balancer(&[subnet_a], &["kubernetes.io/cluster/other"]),
                false,
            ),
            (
                "… nor with an unlisted key",
                &controller,
                new_load_balancer(&[subnet_a], &["cost-center"]),
                false,
            ),
            (
                "… nor with the legacy tag naming another cluster",
                &controller,
                new_load_balancer(&[subnet_a], &["KubernetesCluster"])
                    .with("aws:RequestTag/KubernetesCluster", "other"),
                false,
            ),
            (
                "… nor in the controllers' security group",
                &controller,
                new_load_balancer(&[subnet_a], &[]).with(
                    "elasticloadbalancing:SecurityGroup",
                    "physical-SecurityGroupController",
                ),
                false,
            ),
            (
                "… nor puts one of its load balancers in the etcd members' group later",
                &controller,
                on_its_load_balancer("elasticloadbalancing:ApplySecurityGroupsToLoadBalancer")
                    .with(
                        "elasticloadbalancing:SecurityGroup",
                        "physical-SecurityGroupEtcd",
                    ),
                false,
            ),
            (
                "it makes target groups and listeners tagged for the cluster",
                &controller,
                created_for_the_cluster("elasticloadbalancing:CreateTargetGroup", &load_balancer),
                true,
            ),
            (
                "… and tags them as it makes them",
                &controller,
                Request::new("elasticloadbalancing:AddTags", &load_balancer)
                    .with("elasticloadbalancing:CreateAction", "CreateTargetGroup")
                    .with("aws:TagKeys", &cluster_key)
                    .with("aws:TagKeys", "kubernetes.io/service-name"),
                true,
            ),
            (
                "it makes a load balancer's security group tagged for the cluster",
                &controller,
                created_for_the_cluster("ec2:CreateSecurityGroup", &group),
                true,
            ),
            (
                "… and tags it as it makes it",
                &controller,
                Request::new("ec2:CreateTags", &group)
                    .with("ec2:CreateAction", "CreateSecurityGroup")
                    .with("aws:TagKeys", &cluster_key),
                true,
            ),
            (
                "the EBS CSI controller makes a volume tagged for the cluster",
                &controller,
                Request::new("ec2:CreateVolume", &volume(9))
                    .with("aws:RequestTag/ebs.csi.aws.com/cluster-name", &name),
                true,
            ),
            (
                "… but not one claiming another cluster's KubernetesCluster",
                &controller,
                Request::new("ec2:CreateVolume", &volume(9))
                    .with("aws:RequestTag/ebs.csi.aws.com/cluster-name", &name)
                    .with("aws:RequestTag/KubernetesCluster", "other"),
                false,
            ),
            (
                "… nor tags its load balancer later as another cluster's",
                &controller,
                on_its_load_balancer("elasticloadbalancing:AddTags")
                    .with("aws:TagKeys", "kubernetes.io/cluster/other"),
                false,
            ),
            (
                "it moves its load balancer into a cluster subnet",
                &controller,
                on_its_load_balancer("elasticloadbalancing:AttachLoadBalancerToSubnets")
                    .with("elasticloadbalancing:Subnet", subnet_b),
                true,
            ),
            (
                "… but not into another VPC's",
                &controller,
                on_its_load_balancer("elasticloadbalancing:AttachLoadBalancerToSubnets")
                    .with("elasticloadbalancing:Subnet", "subnet-0elsewhere"),
                false,
            ),
            (
                "it opens node ports in the workers' group (shared)",
                &controller,
                on_group("ec2:AuthorizeSecurityGroupIngress", Some("shared")),
                true,
            ),
            (
                "… but not in the controllers' group (no cluster tag)",
                &controller,
                on_group("ec2:AuthorizeSecurityGroupIngress", None),
                false,
            ),
            (
                "it deletes a group it created (owned)",
                &controller,
                on_group("ec2:DeleteSecurityGroup", Some("owned")),
                true,
            ),
            (
                "… but not the workers' group",
                &controller,
                on_group("ec2:DeleteSecurityGroup", Some("shared")),
                false,
            ),
            (
                "… and creates none tagged as another cluster's too",
                &controller,
                Request::new("ec2:CreateSecurityGroup", &group)
                    .with(&format!("aws:RequestTag/{cluster_key}"), "owned")
                    .with("aws:TagKeys", &cluster_key)
                    .with("aws:TagKeys", "kubernetes.io/cluster/other"),
                false,
            ),
            (
                "a controller attaches no etcd volume",
                &controller,
                tagged_volume(0),
                false,
            ),
            (
                "… nor reads a snapshot",
                &controller,
                snapshot.clone(),
                false,
            ),
            (
                "no role reads Parameter Store (etcd)",
                &etcd,
                parameter.clone(),
                false,
            ),
            ("… (worker)", &worker, parameter.clone(), false),
            ("… (controller)", &controller, parameter.clone(), false),
            (
                "Session Manager's agent still connects",
                &worker,
                Request::new("ssmmessages:OpenControlChannel", "*").with(
                    "ec2:SourceInstanceARN",
                    &format!("arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0123456789abcdef0"),
                ),
                true,
            ),
        ])
        .collect();
    let mut wrong = Vec::new();
    let s3_table = s3_rows
        .iter()
        .map(|(what, policy, request, allowed)| (what, *policy, request, allowed, true));
    let all = table
        .iter()
        .map(|(what, policy, request, allowed)| (what, *policy, request, allowed, false))
        .chain(s3_table);
    for (what, policy, request, allowed, with_bucket_policy) in all {
        let decided = match with_bucket_policy {
            true => s3_allows(policy, request),
            false => allows(policy, request),
        };
        println!(
            "{:<45} {:<6} {request}",
            what,
            if decided { "allow" } else { "deny" }
        );
        if decided != *allowed {
            wrong.push(format!("{what}: {request} is {decided}, wanted {allowed}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");

    // The example permissions boundary the stack's roles are created under must leave every
    // action the rendered roles allow: a missing one fails only on real AWS.
    let boundary: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples/iam/instance-role-boundary.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut outside = Vec::new();
    for (id, policy) in [
        ("etcd", &etcd),
        ("worker", &worker),
        ("controller", &controller),
    ] {
        for statement in policy["Statement"].as_array().unwrap() {
            let actions = match &statement["Action"] {
                Value::String(one) => vec![one.clone()],
                many => many
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string())
                    .collect(),
            };
            for action in actions {
                if !allows(&boundary, &Request::new(&action, "arn:aws:any")) {
                    outside.push(format!("{id}: {action}"));
                }
            }
        }
    }
    assert!(
        outside.is_empty(),
        "outside examples/iam/instance-role-boundary.json: {outside:?}"
    );
}
