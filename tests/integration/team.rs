//! The team workflow's contracts: the IAM policies in examples/iam allow every AWS operation
//! plan and apply make, shell completion works, and --version names the build.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::cluster::Cluster;
use crate::iam::{Request, allows};
use crate::proxy::Seen;
use crate::release::actionlint;

/// The IAM action an observed request needs.
fn iam_action(seen: &Seen) -> String {
    let op = seen.operation.as_str();
    match seen.service.as_str() {
        "kms" => format!("kms:{}", op.trim_start_matches("TrentService.")),
        "route53" => {
            let (method, path) = op.split_once(' ').unwrap_or((op, ""));
            let action = match (method, path) {
                ("POST", p) if p.ends_with("/rrset") => "ChangeResourceRecordSets",
                ("GET", p) if p.ends_with("/rrset") => "ListResourceRecordSets",
                ("GET", p) if p.starts_with("/2013-04-01/change/") => "GetChange",
                ("GET", p) if p.starts_with("/2013-04-01/hostedzonesbyname") => {
                    "ListHostedZonesByName"
                }
                ("GET", p) if p.starts_with("/2013-04-01/hostedzone/") => "GetHostedZone",
                _ => panic!("unmapped Route53 request {op}"),
            };
            format!("route53:{action}")
        }
        "s3" => {
            let (method, path) = op.split_once(' ').unwrap_or((op, ""));
            // Path-style: /bucket/key; a bucket-level request is /bucket or /bucket/.
            let object = path
                .trim_start_matches('/')
                .split_once('/')
                .is_some_and(|(_, key)| !key.is_empty());
            let action = match (method, object, seen.query.as_str()) {
                ("GET", false, q)
                    if q.split('&')
                        .any(|p| p.trim_end_matches('=') == "versioning") =>
                {
                    "GetBucketVersioning"
                }
                ("GET", false, q) if q.contains("versions") => "ListBucketVersions",
                ("GET", false, _) => "ListBucket",
                ("GET", true, q) if q.contains("versionId") => "GetObjectVersion",
                ("GET", true, _) | ("HEAD", true, _) => "GetObject",
                ("PUT", true, _) => "PutObject",
                ("DELETE", true, _) => "DeleteObject",
                _ => panic!("unmapped S3 request {op}?{}", seen.query),
            };
            format!("s3:{action}")
        }
        // Query protocols name the operation in `Action`.
        service => format!("{service}:{op}"),
    }
}

/// moto's account.
const ACCOUNT: &str = "123456789012";

/// `application/x-www-form-urlencoded` pairs (the query protocols' bodies and URL queries).
fn form(text: &str) -> BTreeMap<String, String> {
    form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect()
}

/// The authorisation question an observed request asks IAM: its action, the resource it names
/// and the condition keys it carries.
fn request(seen: &Seen) -> Request {
    let action = iam_action(seen);
    let region = seen.region.as_str();
    let request = match seen.service.as_str() {
        "kms" => {
            let body: Value = serde_json::from_str(&seen.body).unwrap_or(Value::Null);
            let key = body["KeyId"].as_str().unwrap_or("*");
            let resource = if key.starts_with("arn:") || key == "*" {
                key.to_string()
            } else {
                format!("arn:aws:kms:{region}:{ACCOUNT}:key/{key}")
            };
            let mut r = Request::new(&action, &resource);
            for (k, v) in body["EncryptionContext"].as_object().into_iter().flatten() {
                r = r
                    .with(&format!("kms:EncryptionContext:{k}"), v.as_str().unwrap())
                    .with("kms:EncryptionContextKeys", k);
            }
            for (field, key) in [
                ("MessageType", "kms:MessageType"),
                ("SigningAlgorithm", "kms:SigningAlgorithm"),
            ] {
                if let Some(v) = body[field].as_str() {
                    r = r.with(key, v);
                }
            }
            r
        }
        "s3" => {
            let path = seen.operation.split_once(' ').map_or("", |(_, p)| p);
            let path = path.trim_start_matches('/');
            let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
            let key = percent_encoding::percent_decode_str(key)
                .decode_utf8_lossy()
                .into_owned();
            if key.is_empty() {
                let mut r = Request::new(&action, &format!("arn:aws:s3:::{bucket}"));
                if let Some(prefix) = form(&seen.query).get("prefix") {
                    r = r.with("s3:prefix", prefix);
                }
                r
            } else {
                Request::new(&action, &format!("arn:aws:s3:::{bucket}/{key}"))
            }
        }
        "route53" => {
            let path = seen.operation.split_once(' ').map_or("", |(_, p)| p);
            let resource = if let Some(rest) = path.strip_prefix("/2013-04-01/hostedzone/") {
                format!(
                    "arn:aws:route53:::hostedzone/{}",
                    rest.split('/').next().unwrap()
                )
            } else if let Some(id) = path.strip_prefix("/2013-04-01/change/") {
                format!("arn:aws:route53:::change/{id}")
            } else {
                "*".to_string()
            };
            Request::new(&action, &resource)
        }
        "cloudformation" => {
            let params = form(&seen.body);
            let arn = |kind: &str, name: &str| {
                if name.starts_with("arn:") {
                    name.to_string()
                } else {
                    format!(
                        "arn:aws:cloudformation:{region}:{ACCOUNT}:{kind}/{name}/00000000-0000-4000-8000-000000000000"
                    )
                }
            };
            let resource = match (params.get("StackName"), params.get("ChangeSetName")) {
                (Some(stack), _) => arn("stack", stack),
                (None, Some(change_set)) => arn("changeSet", change_set),
                (None, None) => "*".to_string(),
            };
            Request::new(&action, &resource)
        }
        _ => Request::new(&action, "*"),
    };
    request.with("aws:RequestedRegion", region)
}

/// An example policy with its placeholders filled in for cluster `c`.
fn policy_for(name: &str, c: &Cluster) -> Value {
    let config = kube_aws::config::ClusterConfig::load(c.dir.path()).unwrap();
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/iam")
            .join(name),
    )
    .unwrap();
    let filled = text
        .replace(
            "PLAN_SIGNING_KEY_ARN",
            config.plan_signing_key_arn.as_deref().unwrap(),
        )
        .replace("KMS_KEY_ARN", &config.kms_key_arn)
        .replace("STATE_BUCKET", config.state.bucket.as_deref().unwrap())
        .replace("STATE_KEY", config.state.key.as_deref().unwrap())
        .replace("HOSTED_ZONE_ID", &c.zone_id)
        .replace(
            "CLOUDFORMATION_ROLE_ARN",
            config.cloud_formation_role_arn.as_deref().unwrap_or("none"),
        )
        .replace(
            "PERMISSIONS_BOUNDARY_ARN",
            config
                .iam_permissions_boundary_arn
                .as_deref()
                .unwrap_or("none"),
        )
        .replace("CLUSTER_DOMAIN", &config.etcd_domain())
        .replace("CLUSTER_NAME", &c.name)
        .replace("REGION", "us-west-2")
        .replace("ACCOUNT", ACCOUNT);
    serde_json::from_str(&filled).unwrap()
}

fn missing(policy: &Value, needed: &[Request]) -> Vec<String> {
    needed
        .iter()
        .filter(|r| !allows(policy, r))
        .map(|r| r.to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[test]
fn the_example_iam_policies_allow_every_operation_plan_and_apply_make() {
    let c = Cluster::new("iam", true, None);
    // A stack per pool: the layout that asks for more (the cluster stack's resources for the
    // pool stacks' parameters, each pool's stack and change set).
    c.set("stackPerPool", "true");
    // The stacks run as a CloudFormation service role, and every role they create carries
    // the permissions boundary: the apply role itself creates nothing but change sets.
    c.set(
        "cloudFormationRoleArn",
        &format!("arn:aws:iam::{ACCOUNT}:role/{}-cloudformation", c.name),
    );
    c.set(
        "iamPermissionsBoundaryArn",
        &format!("arn:aws:iam::{ACCOUNT}:policy/{}-boundary", c.name),
    );
    let mut plan_needs: Vec<Request> = Vec::new();
    let mut apply_needs: Vec<Request> = Vec::new();
    let mut preview_needs: Vec<Request> = Vec::new();
    let record = |into: &mut Vec<Request>, c: &Cluster| {
        for seen in c.proxy.forwarded(None) {
            into.push(request(&seen));
            // A change set or deletion that names a service role passes it: iam:PassRole.
            if seen.service == "cloudformation"
                && let Some(role) = form(&seen.body).get("RoleARN")
            {
                into.push(
                    Request::new("iam:PassRole", role)
                        .with("iam:PassedToService", "cloudformation.amazonaws.com"),
                );
            }
        }
        c.proxy.reset();
    };
    // First validate, plan and apply, then a change that renews certificates and rolls
    // workers, and what auditors run: every call each role makes.
    crate::harness::moto().ensure_key_pair();
    // A pull request's offline validation and preview of the first apply, then the protected
    // job's validation and plan of the merge.
    c.expect(0, &["validate", "--offline"]);
    c.expect(0, &["plan", "--preview"]);
    record(&mut preview_needs, &c);
    c.expect(0, &["validate"]);
    c.expect(0, &["plan", "-o", "plan.json"]);
    record(&mut plan_needs, &c);
    c.expect(0, &["apply", "plan.json"]);
    record(&mut apply_needs, &c);
    c.set("workerInstanceType", "m5.large");
    c.expect(0, &["plan", "--preview", "--renew-before", "400"]);
    record(&mut preview_needs, &c);
    c.expect(0, &["plan", "--renew-before", "400", "-o", "plan.json"]);
    record(&mut plan_needs, &c);
    c.expect(0, &["apply", "plan.json"]);
    record(&mut apply_needs, &c);
    for args in [
        &["status"][..],
        &["history"],
        &["history", "--verify"],
        &["state", "versions"],
    ] {
        c.expect(0, args);
    }
    record(&mut plan_needs, &c);
    let actions = |needs: &[Request]| -> BTreeSet<String> {
        needs.iter().map(|r| r.action.clone()).collect()
    };
    eprintln!(
        "plan role uses {:?}\napply role uses {:?}",
        actions(&plan_needs),
        actions(&apply_needs)
    );

    // Each request as IAM sees it (action, resource, condition keys) is allowed.
    let plan_policy = policy_for("plan-policy.json", &c);
    let apply_policy = policy_for("apply-policy.json", &c);
    let preview_policy = policy_for("preview-policy.json", &c);
    assert_eq!(
        missing(&preview_policy, &preview_needs),
        Vec::<String>::new(),
        "preview-policy.json"
    );
    assert_eq!(
        missing(&plan_policy, &plan_needs),
        Vec::<String>::new(),
        "plan-policy.json"
    );
    assert_eq!(
        missing(&apply_policy, &apply_needs),
        Vec::<String>::new(),
        "apply-policy.json"
    );
    // The split holds: plans never execute, write state or change records.
    let stack_arn = format!(
        "arn:aws:cloudformation:us-west-2:{ACCOUNT}:stack/{}/1",
        c.name
    );
    let config = kube_aws::config::ClusterConfig::load(c.dir.path()).unwrap();
    let state_object = format!(
        "arn:aws:s3:::{}/{}",
        c.bucket.as_ref().unwrap(),
        config.state.key.as_deref().unwrap()
    );
    let zone = format!("arn:aws:route53:::hostedzone/{}", c.zone_id);
    for (action, resource) in [
        ("cloudformation:ExecuteChangeSet", stack_arn.as_str()),
        ("s3:DeleteObject", state_object.as_str()),
        ("s3:PutObject", state_object.as_str()),
        ("route53:ChangeResourceRecordSets", zone.as_str()),
    ] {
        let asked = Request::new(action, resource).with("aws:RequestedRegion", "us-west-2");
        assert!(
            !allows(&plan_policy, &asked),
            "the plan role must not be allowed {asked}"
        );
        assert!(
            !plan_needs
                .iter()
                .any(|r| r.action == action && r.resource == resource),
            "plan called {action} on {resource}"
        );
    }
    // A pull request's role holds no key: it decrypts, seals and signs nothing, and writes no
    // add-on object a controller would fetch (nor anything plan's role may not).
    let kms_key = config.kms_key_arn.clone();
    let signing_key = config.plan_signing_key_arn.clone().unwrap();
    let addon_object = format!(
        "arn:aws:s3:::{}/{}.addons/x.yaml",
        c.bucket.as_ref().unwrap(),
        config.state.key.as_deref().unwrap()
    );
    assert!(
        preview_needs.iter().all(|r| !r.action.starts_with("kms:")),
        "the preview called KMS: {:?}",
        actions(&preview_needs)
    );
    for asked in [
        Request::new("kms:Decrypt", &kms_key)
            .with("kms:EncryptionContext:kube-aws:cluster", &c.name)
            .with("kms:EncryptionContext:kube-aws:asset", "ca"),
        Request::new("kms:Encrypt", &kms_key)
            .with("kms:EncryptionContext:kube-aws:cluster", &c.name)
            .with("kms:EncryptionContext:kube-aws:asset", "admin"),
        Request::new("kms:Sign", &signing_key)
            .with("kms:MessageType", "DIGEST")
            .with("kms:SigningAlgorithm", "ECDSA_SHA_256"),
        Request::new("s3:PutObject", &addon_object),
        Request::new("s3:PutObject", &state_object),
        Request::new("cloudformation:ExecuteChangeSet", &stack_arn),
    ] {
        let asked = asked.with("aws:RequestedRegion", "us-west-2");
        assert!(
            !allows(&preview_policy, &asked),
            "the preview role must not be allowed {asked}"
        );
    }
    assert!(
        allows(
            &plan_policy,
            &Request::new("kms:Decrypt", &kms_key)
                .with("kms:EncryptionContext:kube-aws:cluster", &c.name)
                .with("kms:EncryptionContext:kube-aws:asset", "ca")
                .with("aws:RequestedRegion", "us-west-2")
        ),
        "the protected plan role signs certificates with the CA"
    );

    // stackPerPool's stacks, `<cluster>-pool-<name>`, are this cluster's too.
    for policy in [&plan_policy, &apply_policy] {
        let pool_stack = Request::new(
            "cloudformation:CreateChangeSet",
            &format!(
                "arn:aws:cloudformation:us-west-2:{ACCOUNT}:stack/{}-pool-gpu/1",
                c.name
            ),
        )
        .with("aws:RequestedRegion", "us-west-2");
        assert!(allows(policy, &pool_stack), "{pool_stack}");
    }
    // Resources and conditions bind the roles to this cluster: the same actions on another
    // cluster's stack, state or keys are refused.
    let others = [
        // An import change set would adopt an existing resource, a CI policy say, into the
        // stack the service role then rewrites.
        Request::new(
            "cloudformation:CreateChangeSet",
            &format!(
                "arn:aws:cloudformation:us-west-2:{ACCOUNT}:stack/{}/1",
                c.name
            ),
        )
        .with(
            "cloudformation:ImportResourceTypes",
            "AWS::IAM::ManagedPolicy",
        ),
        Request::new(
            "cloudformation:ExecuteChangeSet",
            &format!("arn:aws:cloudformation:us-west-2:{ACCOUNT}:stack/someone-else/1"),
        ),
        Request::new(
            "s3:PutObject",
            &format!(
                "arn:aws:s3:::{}/someone-else/state.json",
                c.bucket.as_ref().unwrap()
            ),
        ),
        Request::new(
            "route53:ChangeResourceRecordSets",
            "arn:aws:route53:::hostedzone/ZOTHER",
        ),
        Request::new("kms:Decrypt", &kms_key)
            .with("kms:EncryptionContext:kube-aws:cluster", "someone-else")
            .with("kms:EncryptionContext:kube-aws:asset", "ca"),
    ];
    for other in others {
        let other = other.with("aws:RequestedRegion", "us-west-2");
        assert!(!allows(&apply_policy, &other), "apply role allowed {other}");
        assert!(!allows(&plan_policy, &other), "plan role allowed {other}");
    }

    // Every change set runs as the service role (plan passes it when it makes them; apply
    // only when it makes a pool's or deletes a stack), and the apply role can no longer
    // create an instance, a role or a policy itself: only through the stack.
    assert!(
        plan_needs.iter().any(|r| r.action == "iam:PassRole"),
        "no change set named the service role"
    );
    for (action, resource) in [
        (
            "ec2:RunInstances",
            format!("arn:aws:ec2:us-west-2:{ACCOUNT}:instance/*"),
        ),
        (
            "iam:CreateRole",
            format!("arn:aws:iam::{ACCOUNT}:role/{}-x", c.name),
        ),
        (
            "iam:PutRolePolicy",
            format!("arn:aws:iam::{ACCOUNT}:role/admin"),
        ),
    ] {
        let asked = Request::new(action, &resource).with("aws:RequestedRegion", "us-west-2");
        assert!(!allows(&apply_policy, &asked), "apply role allowed {asked}");
    }
    // The service role cannot raise privileges: roles only under the cluster's prefix and
    // with the boundary, passed only to EC2, and the boundary never lifted.
    let service_role = policy_for("cloudformation-role-policy.json", &c);
    let boundary = config.iam_permissions_boundary_arn.clone().unwrap();
    let role_arn = |name: &str| format!("arn:aws:iam::{ACCOUNT}:role/{name}");
    let ours = role_arn(&format!("{}-IAMRoleWorker-ABC", c.name));
    let create = |role: &str, with: Option<&str>| {
        let r = Request::new("iam:CreateRole", role);
        match with {
            Some(b) => r.with("iam:PermissionsBoundary", b),
            None => r,
        }
    };
    let our_policy = format!(
        "arn:aws:iam::{ACCOUNT}:policy/kube-aws/{}-IAMPolicyCloudController-ABC",
        c.name
    );
    // What a change set could ask of EC2 on resources outside the cluster: refused by their tag.
    let elsewhere = |action: &str, resource: &str, cluster: Option<&str>| {
        let request = Request::new(
            action,
            &format!("arn:aws:ec2:us-west-2:{ACCOUNT}:{resource}"),
        )
        .with("aws:RequestedRegion", "us-west-2");
        match cluster {
            Some(name) => request.with("aws:ResourceTag/KubernetesCluster", name),
            None => request,
        }
    };
    let record = |name: &str| {
        Request::new(
            "route53:ChangeResourceRecordSets",
            "arn:aws:route53:::hostedzone/Z0OTHER",
        )
        .with(
            "route53:ChangeResourceRecordSetsNormalizedRecordNames",
            name,
        )
    };
    let sqs = |queue: &str| format!("arn:aws:sqs:us-west-2:{ACCOUNT}:{queue}");
    let rule = |name: &str| format!("arn:aws:events:us-west-2:{ACCOUNT}:rule/{name}");
    let service_table = [
        (
            "creates the cluster's node drain queue",
            Request::new("sqs:CreateQueue", &sqs(&format!("{}-node-drain", c.name))),
            true,
        ),
        (
            "… and sets its policy",
            Request::new("sqs:SetQueueAttributes", &sqs(&format!("{}-node-drain", c.name))),
            true,
        ),
        (
            "… but no other queue's",
            Request::new("sqs:SetQueueAttributes", &sqs("billing-jobs")),
            false,
        ),
        (
            "puts the cluster's drain rules and their targets",
            Request::new("events:PutTargets", &rule(&format!("{}-NodeDrainRuleSpotInt-X", c.name))),
            true,
        ),
        (
            "… but not another rule's",
            Request::new("events:PutTargets", &rule("billing-nightly")),
            false,
        ),
        (
            "… nor a rule of another cluster whose name starts with this one's",
            Request::new("events:PutTargets", &rule(&format!("{}-eu-NodeDrainRuleSpotInt-X", c.name))),
            false,
        ),
        (
            "creates a cluster role under the boundary",
            create(&ours, Some(&boundary)),
            true,
        ),
        ("… not without it", create(&ours, None), false),
        (
            "… not under another boundary",
            create(&ours, Some(&format!("arn:aws:iam::{ACCOUNT}:policy/lax"))),
            false,
        ),
        (
            "… not outside the cluster's prefix",
            create(&role_arn("admin"), Some(&boundary)),
            false,
        ),
        (
            "passes a cluster role to EC2",
            Request::new("iam:PassRole", &ours).with("iam:PassedToService", "ec2.amazonaws.com"),
            true,
        ),
        (
            "… not to Lambda",
            Request::new("iam:PassRole", &ours).with("iam:PassedToService", "lambda.amazonaws.com"),
            false,
        ),
        (
            "never lifts the boundary",
            Request::new("iam:DeleteRolePermissionsBoundary", &ours),
            false,
        ),
        (
            "attaches another workload's volume (no cluster tag)",
            elsewhere("ec2:AttachVolume", "volume/vol-0other", None),
            false,
        ),
        (
            "… nor another cluster's",
            elsewhere("ec2:AttachVolume", "volume/vol-0other", Some("other")),
            false,
        ),
        (
            "… but changes its own cluster's",
            elsewhere("ec2:ModifyVolume", "volume/vol-0ours", Some(&c.name)),
            true,
        ),
        (
            "snapshots no other volume",
            elsewhere("ec2:CreateSnapshot", "volume/vol-0other", None),
            false,
        ),
        (
            "rewrites no other instance's user data",
            elsewhere("ec2:ModifyInstanceAttribute", "instance/i-0other", None),
            false,
        ),
        (
            "opens no other security group",
            elsewhere("ec2:AuthorizeSecurityGroupIngress", "security-group/sg-0other", None),
            false,
        ),
        (
            "… but its own",
            elsewhere("ec2:AuthorizeSecurityGroupIngress", "security-group/sg-0ours", Some(&c.name)),
            true,
        ),
        (
            "creates a group in a VPC brought by id (untagged)",
            elsewhere("ec2:CreateSecurityGroup", "vpc/vpc-0brought", None),
            true,
        ),
        (
            "deletes no other VPC",
            elsewhere("ec2:DeleteVpc", "vpc/vpc-0other", None),
            false,
        ),
        (
            "resizes no other Auto Scaling group",
            Request::new(
                "autoscaling:UpdateAutoScalingGroup",
                &format!("arn:aws:autoscaling:us-west-2:{ACCOUNT}:autoScalingGroup:1:autoScalingGroupName/other"),
            )
            .with("aws:RequestedRegion", "us-west-2"),
            false,
        ),
        (
            "deletes no other network load balancer",
            Request::new(
                "elasticloadbalancing:DeleteLoadBalancer",
                &format!("arn:aws:elasticloadbalancing:us-west-2:{ACCOUNT}:loadbalancer/net/other/1"),
            )
            .with("aws:RequestedRegion", "us-west-2"),
            false,
        ),
        (
            "points a name under the cluster's private domain (the API record)",
            record(&format!("api.{}", config.etcd_domain())),
            true,
        ),
        (
            "… but no other name (a company zone's)",
            record("www.example.com"),
            false,
        ),
        (
            "reroutes no other subnet",
            elsewhere("ec2:AssociateRouteTable", "subnet/subnet-0other", None),
            false,
        ),
        (
            "… but puts its own subnets in a route table brought by id",
            elsewhere("ec2:AssociateRouteTable", "route-table/rtb-0brought", None),
            true,
        ),
        (
            "routes no other route table",
            elsewhere("ec2:CreateRoute", "route-table/rtb-0other", None),
            false,
        ),
        (
            "creates the cluster's managed policies (the cloud controller's)",
            Request::new("iam:CreatePolicy", &our_policy),
            true,
        ),
        (
            "… and updates them",
            Request::new("iam:CreatePolicyVersion", &our_policy),
            true,
        ),
        (
            "… but rewrites no other policy",
            Request::new(
                "iam:CreatePolicyVersion",
                &format!("arn:aws:iam::{ACCOUNT}:policy/AdministratorsOnly"),
            ),
            false,
        ),
        (
            "… not even one of the cluster's name outside kube-aws/ (a CI job's)",
            Request::new(
                "iam:CreatePolicyVersion",
                &format!("arn:aws:iam::{ACCOUNT}:policy/{}-plan", c.name),
            ),
            false,
        ),
        (
            "… nor the boundary, even under the cluster's prefix",
            Request::new("iam:CreatePolicyVersion", &boundary),
            false,
        ),
        (
            "never makes a user",
            Request::new("iam:CreateUser", &format!("arn:aws:iam::{ACCOUNT}:user/x")),
            false,
        ),
    ];
    for (what, request, allowed) in service_table {
        assert_eq!(
            allows(&service_role, &request),
            allowed,
            "service role {what}: {request}"
        );
    }
    // Each role the stack creates carries the boundary.
    let exported = c.expect(0, &["export"]);
    let template: Value = serde_json::from_slice(&exported.stdout).unwrap();
    let roles: Vec<(&String, &Value)> = template["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::IAM::Role")
        .collect();
    assert!(!roles.is_empty());
    for (id, role) in roles {
        assert_eq!(
            role["Properties"]["PermissionsBoundary"],
            boundary.as_str(),
            "{id}"
        );
    }

    // Plans are signed as a DIGEST by the plan role only. The apply role signs audit entries
    // as RAW messages (KMS hashes them), which can never pass for a plan's signature: it cannot
    // make a plan of its own.
    let sign = |message_type: &str| {
        Request::new("kms:Sign", &signing_key)
            .with("kms:MessageType", message_type)
            .with("kms:SigningAlgorithm", "ECDSA_SHA_256")
            .with("aws:RequestedRegion", "us-west-2")
    };
    assert!(allows(&apply_policy, &sign("RAW")) && !allows(&apply_policy, &sign("DIGEST")));
    assert!(allows(&plan_policy, &sign("DIGEST")) && !allows(&plan_policy, &sign("RAW")));
    assert!(
        actions(&plan_needs).contains("kms:Sign") && actions(&apply_needs).contains("kms:Verify")
    );
    assert!(
        actions(&apply_needs).contains("kms:Sign"),
        "apply signs its audit entries"
    );

    // The check can fail: without CreateChangeSet the plan policy falls behind the code, and
    // with the state statement narrowed to another key, every state read is missing.
    let mut weakened = plan_policy.clone();
    for statement in weakened["Statement"].as_array_mut().unwrap() {
        if let Value::Array(actions) = &mut statement["Action"] {
            actions.retain(|a| a != "cloudformation:CreateChangeSet");
        }
    }
    let missed = missing(&weakened, &plan_needs);
    assert!(
        !missed.is_empty()
            && missed
                .iter()
                .all(|m| m.starts_with("cloudformation:CreateChangeSet on ")),
        "{missed:?}"
    );
    let mut elsewhere = plan_policy.clone();
    elsewhere["Statement"][0]["Resource"] = Value::String(format!(
        "arn:aws:s3:::{}/another/state.json",
        c.bucket.as_ref().unwrap()
    ));
    let missed = missing(&elsewhere, &plan_needs);
    assert!(
        missed.iter().any(
            |m| m.starts_with(&format!("s3:GetObject on {state_object} "))
                || m == &format!("s3:GetObject on {state_object}")
        ),
        "{missed:?}"
    );
}

/// A pull request's preview is planned against AWS with no key: certificates due are listed,
/// not issued; it makes no KMS call, writes no add-on object and cannot be written to a file;
/// its JSON, fed to apply, is refused.
#[test]
fn a_pull_requests_preview_holds_no_key_and_apply_refuses_it() {
    let c = Cluster::new("preview", false, None);
    c.plan_and_apply();
    c.proxy.reset();
    let args = [
        "plan",
        "--preview",
        "--renew-before",
        "400",
        "--detailed-exitcode",
    ];
    let out = c.expect(2, &[&args[..], &["--format", "json"]].concat());
    let seen = c.proxy.seen();
    assert!(!seen.is_empty());
    let kms: Vec<&String> = seen
        .iter()
        .filter(|s| s.service == "kms")
        .map(|s| &s.operation)
        .collect();
    assert!(kms.is_empty(), "the preview called KMS: {kms:?}");
    let addon_writes: Vec<&String> = seen
        .iter()
        .filter(|s| {
            s.service == "s3" && s.operation.starts_with("PUT") && s.operation.contains("addons")
        })
        .map(|s| &s.operation)
        .collect();
    assert!(addon_writes.is_empty(), "{addon_writes:?}");
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["preview"], true);
    assert!(plan["signature"].is_null(), "a preview is never signed");
    let certificates = plan["certificates"].as_array().unwrap();
    assert!(
        certificates
            .iter()
            .any(|c| c["name"] == "apiserver" && c["action"] == "issue"),
        "{certificates:?}"
    );
    std::fs::write(c.path("preview.json"), &out.stdout).unwrap();
    let markdown = c.expect(2, &[&args[..], &["--format", "markdown"]].concat());
    assert!(
        crate::cluster::stdout(&markdown).contains("Preview for review, made without keys"),
        "{}",
        crate::cluster::stdout(&markdown)
    );

    let out = c.expect(1, &["apply", "preview.json"]);
    assert!(
        crate::cluster::stderr(&out).contains("made with --preview"),
        "{}",
        crate::cluster::stderr(&out)
    );
    assert!(c.proxy.cluster_writes().is_empty(), "apply wrote to AWS");
    let out = c.run(&["plan", "--preview", "-o", "preview-file.json"]);
    assert_eq!(out.status.code(), Some(1), "a usage error");
    assert!(
        crate::cluster::stderr(&out).contains("cannot be used with"),
        "{}",
        crate::cluster::stderr(&out)
    );
    assert!(!c.path("preview-file.json").exists());
}

#[test]
fn bash_completion_completes_pl_to_plan() {
    let out = crate::harness::kube_aws_without_aws(Path::new("."))
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("kube-aws.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let probe = format!(
        "source {}; COMP_WORDS=(kube-aws pl); COMP_CWORD=1; COMP_LINE='kube-aws pl'; COMP_POINT=11; _kube__aws kube-aws pl kube-aws; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let completed = Command::new("bash").args(["-c", &probe]).output().unwrap();
    assert!(
        completed.status.success(),
        "{}",
        String::from_utf8_lossy(&completed.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&completed.stdout).trim(), "plan");
}

#[test]
fn version_names_the_crate_version_and_the_commit() {
    let out = crate::harness::kube_aws_without_aws(Path::new("."))
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let expected = format!("kube-aws {} (", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&expected), "{text}");
    let commit = text
        .trim()
        .trim_end_matches(')')
        .rsplit('(')
        .next()
        .unwrap();
    let hex = commit.trim_end_matches("-dirty");
    assert!(
        hex == "unknown" || (hex.len() == 12 && hex.chars().all(|c| c.is_ascii_hexdigit())),
        "{text}"
    );
}

#[test]
fn the_man_page_is_generated_from_the_same_definitions() {
    let out = crate::harness::kube_aws_without_aws(Path::new("."))
        .arg("man")
        .output()
        .unwrap();
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH kube-aws 1"), "{page}");
    for command in ["plan", "apply", "history", "kubeconfig"] {
        assert!(
            page.contains(command),
            "{command} missing from the man page"
        );
    }
}

#[test]
#[ignore = "real-component tier (actionlint): scripts/test and CI run it"]
fn the_example_ci_workflow_passes_actionlint_and_the_check_can_fail() {
    let workflow =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/github-actions/kube-aws.yml");
    let out = actionlint(&workflow);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = std::fs::read_to_string(&workflow).unwrap();
    assert!(text.contains("run: kube-aws validate"));
    assert!(text.contains("kube-aws plan --preview --format markdown --detailed-exitcode"));
    assert!(
        text.contains("if [ \"$code\" -eq 1 ] || [ ! -s plan.md ]; then exit 1; fi"),
        "exit 2 must not fail the check, unless nothing was planned"
    );
    assert!(text.contains("kube-aws apply plan.json"));
    assert!(text.contains("concurrency:"));
    // Every job installs the pinned, checksum-checked release; nothing builds or fetches an
    // unpinned kube-aws (the crate name is not on crates.io).
    assert!(!text.contains("cargo install"), "no cargo install");
    assert_eq!(
        text.matches("uses: ./.github/actions/install-kube-aws")
            .count(),
        3
    );
    assert!(text.contains("sha256: ${{ env.KUBE_AWS_SHA256 }}"));
    // A pull request's code runs with the preview role only; the keys' roles are for jobs in
    // protected environments that pull requests do not start.
    let doc: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    for (name, job) in doc["jobs"].as_mapping().unwrap() {
        let job_text = serde_norway::to_string(job).unwrap();
        let name = name.as_str().unwrap();
        let condition = job["if"].as_str().unwrap_or("");
        if job_text.contains("KUBE_AWS_PLAN_ROLE") || job_text.contains("KUBE_AWS_APPLY_ROLE") {
            assert!(
                job["environment"].as_str().is_some(),
                "{name} holds keys outside an environment"
            );
            assert!(
                condition.contains("github.event_name == 'push'")
                    || job["needs"].as_str() == Some("plan"),
                "{name} may run for a pull request"
            );
        } else if job_text.contains("KUBE_AWS_PREVIEW_ROLE") {
            assert!(condition.contains("pull_request"), "{name}");
            assert!(job_text.contains("--preview"), "{name}");
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yml");
    std::fs::write(
        &broken,
        text.replace("needs: ", "needs: [nothing]\n    x: ")
            .replace(
                "runs-on: ubuntu-latest\n    environment",
                "runs-on: ubuntu-latest\n    needs: [missing-job]\n    environment",
            ),
    )
    .unwrap();
    let out = actionlint(&broken);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("missing-job"));
}

#[test]
fn moving_from_local_to_s3_state_with_pull_and_push() {
    let c = Cluster::new("migrate", false, None);
    c.plan_and_apply();
    let pulled = c.expect(0, &["state", "pull"]).stdout;
    std::fs::write(c.path("local-state.json"), &pulled).unwrap();

    // Point cluster.yaml at a versioned bucket, push, and carry on there.
    let bucket = crate::harness::moto().create_bucket("migrate", true);
    c.set(
        "state",
        &format!(
            "{{backend: s3, bucket: {bucket}, key: {}/state.json}}",
            c.name
        ),
    );
    let out = c.expect(0, &["state", "push", "local-state.json"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("serial 1; recorded as audit entry 1"));
    assert_eq!(
        c.expect(0, &["state", "pull"]).stdout,
        pulled,
        "the S3 state is the local one, byte for byte"
    );
    // Pushing the same serial again is refused: nothing newer is ever replaced.
    let again = c.expect(1, &["state", "push", "local-state.json"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("not older than the pushed serial 1"));
    c.expect(0, &["plan", "--detailed-exitcode"]);
    c.set("workerCount", "2");
    c.plan_and_apply();
    let state: Value = serde_json::from_slice(&c.expect(0, &["state", "pull"]).stdout).unwrap();
    assert_eq!(state["serial"], 2);
    c.expect(0, &["history", "--verify"]);
}
