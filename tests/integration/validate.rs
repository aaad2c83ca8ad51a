//! `kube-aws validate`: every finding with its file and line, in one run; the external
//! resources against moto; and the built-in templates clean, by us and by cfn-lint.

use std::process::Command;

use crate::cluster::{Cluster, stderr, stdout};
use crate::harness::moto;

fn lines(out: &std::process::Output) -> Vec<String> {
    stdout(out).lines().map(str::to_string).collect()
}

#[test]
fn a_worker_cloud_config_with_two_misspelled_keys_reports_both_with_their_lines() {
    let c = Cluster::new("valcc", false, None);
    c.expect(0, &["render"]);
    let path = c.path("userdata/cloud-config-worker");
    let text = std::fs::read_to_string(&path).unwrap();
    // Line 4 of the rendered file is this header comment: put a misspelled key there, and
    // misspell `enable` of the first unit deeper in coreos.units.
    let mut lines_of: Vec<String> = text.lines().map(str::to_string).collect();
    lines_of.insert(3, "hostnme: worker".to_string());
    let text = lines_of.join("\n") + "\n";
    let text = text.replacen("      enable: true", "      enabel: true", 1);
    std::fs::write(&path, &text).unwrap();

    let out = c.expect(1, &["validate", "--offline", "--strict"]);
    let found = lines(&out);
    assert!(
        found.contains(
            &"UserDataWorker:4: warning: unrecognized key \"hostnme\" (template line 4)"
                .to_string()
        ),
        "{found:#?}"
    );
    // The template's `import` line renders to nothing, so the rendered line is one less.
    let unit_line = text.lines().position(|l| l.contains("enabel")).unwrap() + 1;
    assert!(
        found.iter().any(|l| l.starts_with(&format!(
            "UserDataWorker:{}: warning: unrecognized key \"enabel\" (template line {unit_line})",
            unit_line - 1
        ))),
        "{found:#?}"
    );
}

#[test]
fn warnings_pass_unless_strict_and_the_built_ins_validate_clean() {
    let c = Cluster::new("valok", false, None);
    // The defaults open the API to everywhere: said, as the one warning.
    let out = c.expect(0, &["validate", "--offline"]);
    let found = lines(&out);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found[0].starts_with("cluster.yaml: warning: apiAccessAllowedSourceCIDRs: the Kubernetes API (port 443) is reachable from the whole internet"), "{found:#?}");
    c.expect(1, &["validate", "--offline", "--strict"]);
    // Each weakening a user opts into is a warning at its line.
    c.set("sshAccessAllowedSourceCIDRs", "[0.0.0.0/0]");
    let found = lines(&c.expect(0, &["validate", "--offline"]));
    let line = std::fs::read_to_string(c.path("cluster.yaml"))
        .unwrap()
        .lines()
        .position(|l| l.starts_with("sshAccessAllowedSourceCIDRs:"))
        .unwrap()
        + 1;
    assert!(
        found.iter().any(|l| l.starts_with(&format!("cluster.yaml:{line}: warning: sshAccessAllowedSourceCIDRs: SSH (port 22) is open to the whole internet"))),
        "{found:#?}"
    );
    c.set("sshAccessAllowedSourceCIDRs", "[]");
    c.set("apiAccessAllowedSourceCIDRs", "[198.51.100.0/24]");
    let out = c.expect(0, &["validate", "--offline"]);
    assert_eq!(stdout(&out).trim(), "Validation OK");
    c.expect(0, &["render"]);
    let path = c.path("userdata/cloud-config-etcd");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replacen("  update:", "  updat:", 1);
    std::fs::write(&path, text).unwrap();
    c.expect(0, &["validate", "--offline"]);
    c.expect(1, &["validate", "--offline", "--strict"]);
    let json: serde_json::Value = serde_json::from_slice(
        &c.expect(0, &["validate", "--offline", "--format", "json"])
            .stdout,
    )
    .unwrap();
    assert_eq!(json["warnings"], 1);
    assert_eq!(json["findings"][0]["file"], "UserDataEtcd[0]");
}

#[test]
fn a_cluster_yaml_with_three_mistakes_gives_three_findings_in_one_run() {
    let c = Cluster::new("valcfg", false, None);
    let path = c.path("cluster.yaml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("workerInstanceTyp: m5.large\ndnsServiceIP: 10.9.9.9\nsubnets:\n  - availabilityZone: us-west-2a\n    instanceCIDR: 10.0.0.0/24\n  - availabilityZone: us-west-2b\n    instanceCIDR: 10.0.0.0/25\n");
    std::fs::write(&path, &text).unwrap();
    let out = c.expect(1, &["validate", "--offline"]);
    let found: Vec<String> = lines(&out)
        .into_iter()
        .filter(|l| l.starts_with("cluster.yaml"))
        .collect();
    assert_eq!(found.len(), 3, "{found:#?}");
    let at = |needle: &str| text.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
    assert!(
        found.iter().any(|l| l.starts_with(&format!(
            "cluster.yaml:{}:1: error: workerInstanceTyp: unknown key",
            at("workerInstanceTyp:")
        ))),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|l| l.starts_with(&format!(
            "cluster.yaml:{}:1: error: dnsServiceIP:",
            at("dnsServiceIP: 10.9.9.9")
        ))),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|l| l.starts_with(&format!(
            "cluster.yaml:{}:5: error: subnets[1].instanceCIDR:",
            at("    instanceCIDR: 10.0.0.0/25")
        ))),
        "{found:#?}"
    );
    // plan refuses to plan a configuration validate rejects.
    let plan = c.expect(1, &["plan"]);
    assert!(stderr(&plan).contains("cluster.yaml"), "{}", stderr(&plan));
}

#[test]
fn a_template_with_a_missing_ref_and_oversized_userdata_reports_both_and_plan_refuses() {
    let c = Cluster::new("valtpl", false, None);
    c.expect(0, &["render"]);
    let stack = c.path("stack-template.json");
    let text = std::fs::read_to_string(&stack).unwrap().replacen(
        "{\"Ref\": \"SecurityGroupEtcd\"}",
        "{\"Ref\": \"SecurityGroupGhost\"}",
        1,
    );
    std::fs::write(&stack, text).unwrap();
    // 48,000 hex digits of hashes (4 bits each, barely compressible) in the etcd cloud-config
    // push its gzipped userdata over 16 KiB.
    let etcd = c.path("userdata/cloud-config-etcd");
    let noise: String = (0..750u32)
        .map(|i| kube_aws::hash::sha256_hex(i.to_string()))
        .collect();
    let mut cc = std::fs::read_to_string(&etcd).unwrap();
    cc.push_str(&format!("  - path: /etc/noise\n    content: {noise}\n"));
    std::fs::write(&etcd, cc).unwrap();

    let out = c.expect(1, &["validate", "--offline"]);
    let found = lines(&out);
    assert!(
        found.iter().any(|l| l.contains(
            "error: Ref names \"SecurityGroupGhost\", which is not a resource or parameter"
        )),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|l| l.contains("LaunchTemplateEtcd0: UserData is")
                && l.contains("over EC2's 16384-byte limit")),
        "{found:#?}"
    );
    let plan = c.expect(1, &["plan"]);
    assert!(
        stderr(&plan).contains("validation found 2 error(s)"),
        "{}",
        stderr(&plan)
    );
    assert!(
        c.proxy.forwarded(Some("cloudformation")).is_empty(),
        "nothing reached CloudFormation"
    );
}

#[test]
fn against_moto_a_missing_kms_key_a_foreign_zone_and_a_missing_vpc_are_findings() {
    let c = Cluster::new("valaws", false, None);
    moto().ensure_key_pair();
    c.expect(0, &["validate"]);
    c.set(
        "kmsKeyArn",
        "\"arn:aws:kms:us-west-2:123456789012:key/00000000-0000-0000-0000-000000000000\"",
    );
    c.set("hostedZoneId", &moto().create_zone("elsewhere.org"));
    c.set("vpcId", "vpc-0123456789abcdef0");
    let out = c.expect(1, &["validate"]);
    let found = lines(&out);
    assert!(found.iter().any(|l| l.contains("kmsKeyArn: KMS key arn:aws:kms:us-west-2:123456789012:key/00000000-0000-0000-0000-000000000000 does not exist")), "{found:#?}");
    assert!(
        found
            .iter()
            .any(|l| l.contains("hostedZoneId: hosted zone elsewhere.org")
                && l.contains("is not a parent of externalDNSName")),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|l| l.contains("vpcId: VPC vpc-0123456789abcdef0 does not exist")),
        "{found:#?}"
    );
}

/// What plan would otherwise meet only after it made a change set, or apply at the end: a
/// missing or unversioned state bucket, a missing template bucket, a signing key that cannot
/// sign plans, a zone the region lacks. Each is an error at its cluster.yaml line, in one run.
#[test]
fn against_moto_the_buckets_the_signing_key_and_the_zones_are_checked_before_any_plan() {
    let c = Cluster::new("valplaces", true, None);
    moto().ensure_key_pair();
    c.expect(0, &["validate"]);
    let config = kube_aws::config::ClusterConfig::load(c.dir.path()).unwrap();
    let found_at = |lines: &[String], key: &str, text: &str| {
        let line = c.setting_line(key);
        assert!(
            lines.iter().any(
                |l| l.starts_with(&format!("cluster.yaml:{line}: error: ")) && l.contains(text)
            ),
            "{key} at line {line}: {text}\n{lines:#?}"
        );
    };

    let missing = "kube-aws-no-such-bucket-4711";
    // The state's bucket, the `bucket:` line of cluster.yaml's `state:` block.
    let state_bucket = |bucket: &str| {
        let path = c.path("cluster.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("  bucket: "))
            .unwrap()
            .to_string();
        std::fs::write(&path, text.replace(&line, &format!("  bucket: {bucket}"))).unwrap();
    };
    state_bucket(missing);
    // The cluster's own key encrypts; it cannot sign.
    c.set("planSigningKeyArn", &format!("\"{}\"", config.kms_key_arn));
    c.set("availabilityZone", "us-west-2q");
    let out = c.expect(1, &["validate"]);
    let found = lines(&out);
    found_at(
        &found,
        "state",
        &format!("state.bucket: S3 bucket {missing} does not exist in us-west-2"),
    );
    found_at(
        &found,
        "planSigningKeyArn",
        "cannot sign plans: its KeyUsage is (none given) and its KeySpec SYMMETRIC_DEFAULT",
    );
    found_at(
        &found,
        "availabilityZone",
        "availabilityZone: availability zone us-west-2q is not a zone of us-west-2 (it has us-west-2a",
    );
    println!("{}", found.join("\n"));

    let unversioned = moto().create_bucket("unversioned", false);
    state_bucket(&unversioned);
    c.set("templateBucket", missing);
    let found = lines(&c.expect(1, &["validate"]));
    found_at(&found, "state", "does not have versioning enabled");
    found_at(
        &found,
        "templateBucket",
        &format!("templateBucket: S3 bucket {missing} does not exist"),
    );
    println!("{}", found.join("\n"));
}

/// Exports the template (`extra` may pick a pool's stack) and runs cfn-lint on it.
fn lint_export(c: &Cluster, extra: &[&str]) {
    let mut args = vec!["export", "-o", "stack.json"];
    args.extend_from_slice(extra);
    c.expect(0, &args);
    let out = Command::new("cfn-lint")
        .arg(c.path("stack.json"))
        .output()
        .expect("cfn-lint runs (scripts/ensure-tools installs it)");
    // cfn-lint's exit code is a bit field: 2 errors, 4 warnings, 8 informational; 1 is a
    // crash or bad arguments. Only clean and informational pass. The one warning the template
    // expects (W3010, pinned zones) is ignored in its Metadata, with why.
    let code = out.status.code();
    assert!(
        matches!(code, Some(0 | 8)),
        "cfn-lint exited {code:?} on {extra:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "real-component tier (cfn-lint): scripts/test and CI run it"]
fn cfn_lint_reports_no_errors_on_the_exported_template() {
    let c = Cluster::new("cfnlint", false, None);
    lint_export(&c, &[]);
    // The API behind an internal network load balancer, in private subnets.
    c.set(
        "apiEndpointLoadBalancer",
        "{type: network, scheme: internal}",
    );
    c.use_private_subnets();
    lint_export(&c, &[]);
    // Pools sized by minSize/maxSize, one of them full (it rolls with one fewer in service;
    // the render tests check that number, which cfn-lint does not).
    c.set(
        "nodePools",
        "[{name: elastic, count: 1, minSize: 0, maxSize: 5}, {name: full, count: 2, maxSize: 2}]",
    );
    lint_export(&c, &[]);
    // Pools in one zone, of several instance types with spot, with their own role or the
    // user's instance profile, and one the cluster-autoscaler sizes (no desired capacity).
    c.set("clusterAutoscaler", "{enabled: true}");
    c.set(
        "nodePools",
        "[{name: spot, count: 2, instanceTypes: [m6i.large, m5.large], onDemandBaseCapacity: 1, spotPrice: '0.08', subnets: [us-west-2b]}, {name: batch, autoscaled: true, minSize: 0, maxSize: 20, labels: {workload: batch}, taints: [{key: dedicated, value: batch, effect: NoSchedule}], managedPolicies: ['arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess']}, {name: byo, instanceProfileArn: 'arn:aws:iam::123456789012:instance-profile/byo-nodes'}]",
    );
    lint_export(&c, &[]);
    // The same pools, each in a stack of its own: the cluster stack and every pool stack.
    c.set("stackPerPool", "true");
    lint_export(&c, &[]);
    for pool in ["workers", "spot", "batch", "byo"] {
        lint_export(&c, &["--pool", pool]);
    }
}

#[test]
fn an_end_of_life_kubernetes_version_is_an_error_and_a_near_one_a_warning() {
    let c = Cluster::new("valeol", false, None);
    c.set("kubernetesVersion", "v1.35.8");
    let findings_on = |date: time::Date| {
        let now = date.with_hms(12, 0, 0).unwrap().assume_utc();
        crate::harness::block_on(kube_aws::engine::validate::offline(c.dir.path(), now))
            .expect("validate runs")
            .findings
    };
    let line = std::fs::read_to_string(c.path("cluster.yaml"))
        .unwrap()
        .lines()
        .position(|l| l.starts_with("kubernetesVersion:"))
        .map(|i| i + 1);
    let after = findings_on(time::macros::date!(2027 - 03 - 01));
    let eol = after
        .iter()
        .find(|f| f.message.contains("end of life"))
        .expect("a finding");
    assert_eq!(eol.severity, kube_aws::finding::Severity::Error);
    assert_eq!((eol.file.as_str(), eol.line), ("cluster.yaml", line));
    assert!(
        eol.message
            .contains("v1.35.8 reached its upstream end of life on 2027-02-28"),
        "{}",
        eol.message
    );
    let near = findings_on(time::macros::date!(2027 - 01 - 15));
    let warning = near
        .iter()
        .find(|f| f.message.contains("end of life"))
        .expect("a warning");
    assert_eq!(warning.severity, kube_aws::finding::Severity::Warning);
    let today = findings_on(time::macros::date!(2026 - 11 - 26));
    assert!(
        !today.iter().any(|f| f.message.contains("end of life")),
        "{today:?}"
    );
    // An unsupported minor is refused before anything renders, with the supported list.
    c.set("kubernetesVersion", "v1.31.4");
    let out = c.expect(1, &["validate", "--offline"]);
    let text = stdout(&out) + &stderr(&out);
    assert!(text.contains("Kubernetes v1.31.4 is not a supported release (supported: v1.35 (until 2027-02-28), v1.36 (until 2027-06-28), v1.37 (until 2027-10-28))"), "{text}");
}

#[test]
fn existing_subnets_by_id_are_checked_against_aws_and_used_by_the_stack() {
    let c = Cluster::new("valsub", false, None);
    moto().ensure_key_pair();
    let (vpc, subnet) = crate::harness::block_on(async {
        let ec2 = aws_sdk_ec2::Client::new(&moto().sdk_config().await);
        let vpc = ec2
            .create_vpc()
            .cidr_block("10.20.0.0/16")
            .send()
            .await
            .unwrap()
            .vpc()
            .and_then(|v| v.vpc_id())
            .unwrap()
            .to_string();
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block("10.20.1.0/24")
            .availability_zone("us-west-2a")
            .send()
            .await
            .unwrap()
            .subnet()
            .and_then(|s| s.subnet_id())
            .unwrap()
            .to_string();
        (vpc, subnet)
    });
    c.set("vpcId", &vpc);
    c.set("vpcCIDR", "10.20.0.0/16");
    c.set("apiAccessAllowedSourceCIDRs", "[198.51.100.0/24]");
    c.set(
        "subnets",
        &format!("[{{id: {subnet}, availabilityZone: us-west-2b, instanceCIDR: 10.20.1.0/24}}]"),
    );
    let found = lines(&c.expect(1, &["validate"]));
    assert!(
        found.iter().any(|l| l.contains(&format!(
            "subnets: subnet {subnet} is 10.20.1.0/24 in us-west-2a, not 10.20.1.0/24 in us-west-2b as cluster.yaml says"
        ))),
        "{found:#?}"
    );
    c.set(
        "subnets",
        &format!("[{{id: {subnet}, availabilityZone: us-west-2a, instanceCIDR: 10.20.1.0/24}}]"),
    );
    assert_eq!(stdout(&c.expect(0, &["validate"])).trim(), "Validation OK");
    c.plan_and_apply();
    let (created_subnets, controller_subnet) = crate::harness::block_on(async {
        let resources = moto().stack_resources(&c.name).await;
        let created = resources
            .iter()
            .filter(|(_, kind, _)| kind == "AWS::EC2::Subnet")
            .count();
        let instance = resources
            .iter()
            .find(|(logical, _, _)| logical == "InstanceController")
            .map(|(_, _, id)| id.clone())
            .unwrap();
        let ec2 = aws_sdk_ec2::Client::new(&moto().sdk_config().await);
        let described = ec2
            .describe_instances()
            .instance_ids(&instance)
            .send()
            .await
            .unwrap();
        let subnet = described.reservations()[0].instances()[0]
            .subnet_id()
            .unwrap_or_default()
            .to_string();
        (created, subnet)
    });
    assert_eq!(
        created_subnets, 0,
        "the existing subnet is used, none is created"
    );
    assert_eq!(controller_subnet, subnet);
}
