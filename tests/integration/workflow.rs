//! plan → apply → history against moto, through a recording (and optionally faulty) proxy:
//! what plan shows, what it costs, and that apply executes exactly what was reviewed.

use std::collections::BTreeSet;

use kube_aws::planfile::{CertificateAction, RecordAction};
use serde_json::{Value, json};

use crate::cluster::{Cluster, stderr, stdout};
use crate::harness::{block_on, moto};
use crate::proxy::Faults;
use kube_aws::state::lock::Locker;

const CFN_WRITES: [&str; 6] = [
    "CreateChangeSet",
    "ExecuteChangeSet",
    "DeleteChangeSet",
    "CreateStack",
    "UpdateStack",
    "DeleteStack",
];

#[test]
fn plan_from_nothing_creates_every_asset_the_stack_and_the_record() {
    let c = Cluster::new("fresh", false, None);
    // The layout of one stack, which clusters made before init wrote stackPerPool keep.
    c.set("stackPerPool", "false");
    c.expect(2, &["plan", "-o", "plan.json", "--detailed-exitcode"]);
    let plan = c.plan_file("plan.json");
    crate::schemas::assert_valid("plan.schema.json", &plan);
    let assets = plan["assets"].as_array().unwrap();
    // The stack, the controller, etcd member and worker cloud-configs, every add-on manifest
    // and controller script, every key asset, the record.
    assert_eq!(
        assets.len(),
        1 + 3
            + crate::harness::default_addons()
            + kube_aws::render::CONTROLLER_SCRIPTS.len()
            + kube_aws::assets::tls::NAMES.len()
            + 1,
        "{assets:#?}"
    );
    assert!(
        assets.iter().all(|a| a["action"] == "create"),
        "{assets:#?}"
    );
    assert_eq!(plan["stack"]["action"], "create");
    assert!(
        plan["stack"]["change_set_arn"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:cloudformation:")
    );
    let changes = plan["stack"]["resource_changes"].as_array().unwrap();
    assert!(changes.len() > 20 && changes.iter().all(|c| c["action"] == "Add"));
    // Making a CREATE change set leaves a stack in REVIEW_IN_PROGRESS: the plan says so.
    assert!(
        plan["notes"].to_string().contains(&format!(
            "CloudFormation now holds stack {} in REVIEW_IN_PROGRESS",
            c.name
        )),
        "{}",
        plan["notes"]
    );
    let record = &plan["records"][0];
    assert_eq!(record["action"], "UPSERT");
    assert_eq!(record["name"], format!("api.{}.example.com.", c.name));
    assert_eq!(record["new_values"][0], "(known after apply)");
    assert_eq!(
        plan["summary"]["add"].as_u64().unwrap(),
        changes.len() as u64 + 1
    );
    // Planning writes no state.
    assert!(!c.path("state/state.json").exists());
}

#[test]
fn a_no_op_plan_makes_no_kms_call_no_cloudformation_write_and_at_most_8_requests() {
    for pools in [0, 5] {
        let c = Cluster::new("noop", true, None);
        if pools > 0 {
            let list: Vec<String> = (0..pools).map(|i| format!("{{name: pool{i}}}")).collect();
            c.set("nodePools", &format!("[{}]", list.join(", ")));
        }
        c.plan_and_apply();
        c.proxy.reset();
        let out = c.expect(0, &["plan", "--detailed-exitcode"]);
        assert!(stdout(&out).contains("No changes."), "{}", stdout(&out));
        let requests = c.proxy.forwarded(None);
        let kms = requests.iter().filter(|r| r.service == "kms").count();
        let cfn_writes = requests
            .iter()
            .filter(|r| CFN_WRITES.contains(&r.operation.as_str()))
            .count();
        let operations: Vec<String> = requests
            .iter()
            .map(|r| format!("{}:{}", r.service, r.operation))
            .collect();
        eprintln!(
            "no-op plan with {pools} node pools: {} AWS requests {operations:?}",
            requests.len()
        );
        assert_eq!(kms, 0, "{operations:?}");
        assert_eq!(cfn_writes, 0, "{operations:?}");
        // The lock (a plan refuses a locked state); the state; the audit log's HEAD, the entry
        // it names and a listing of any after it (the state must be the one the newest writing
        // entry wrote); DescribeStacks, the artifact bucket, the zone's records.
        assert!(requests.len() <= 8, "{operations:?}");
    }
}

/// `nodePools` with 30 pools of one instance each; pool `changed` of another instance type.
fn thirty_pools(changed: Option<usize>) -> String {
    let list: Vec<String> = (0..30)
        .map(|i| match changed {
            Some(n) if n == i => format!("{{name: pool{i}, count: 1, instanceType: m6i.large}}"),
            _ => format!("{{name: pool{i}, count: 1}}"),
        })
        .collect();
    format!("[{}]", list.join(", "))
}

/// What the cluster's proxy forwarded to AWS since its last reset, as `service:operation`.
fn forwarded_operations(c: &Cluster) -> Vec<String> {
    c.proxy
        .forwarded(None)
        .iter()
        .map(|r| format!("{}:{}", r.service, r.operation))
        .collect()
}

/// A plan with no changes makes at most 4 AWS requests whatever the pools; prints them.
fn assert_no_op_plan_within_four_requests(c: &Cluster, what: &str) {
    c.proxy.reset();
    let out = c.expect(0, &["plan", "--detailed-exitcode"]);
    assert!(stdout(&out).contains("No changes."), "{}", stdout(&out));
    let operations = forwarded_operations(c);
    println!(
        "no-op plan with {what}: {} AWS requests {operations:?}",
        operations.len()
    );
    assert!(operations.len() <= 4, "{operations:?}");
}

#[test]
fn thirty_pools_on_local_state_apply_through_the_template_bucket_and_one_pool_changes_alone() {
    // Local state: the template (over the 51,200-byte inline limit) goes to templateBucket.
    let c = Cluster::new("pools30", false, None);
    // The layout of one stack, which clusters made before init wrote stackPerPool keep.
    c.set("stackPerPool", "false");
    c.set("nodePools", &thirty_pools(None));
    c.plan_and_apply();
    let plan = c.plan_file("plan.json");
    let url = plan["stack"]["template_url"].as_str().expect("uploaded");
    let bytes = plan["template"].as_str().unwrap().len();
    let groups = plan["stack"]["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["resource_type"] == "AWS::AutoScaling::AutoScalingGroup")
        .count();
    println!("30 pools: {bytes}-byte template through {url}, {groups} Auto Scaling groups");
    assert!(bytes > 51_200, "{bytes}");
    assert_eq!(
        groups,
        31 + 1,
        "30 pools, the default workers and the etcd member"
    );

    // One pool's instance type: that pool's launch template (and its group, which rolls) only.
    c.set("nodePools", &thirty_pools(Some(7)));
    c.expect(2, &["plan", "-o", "change.json", "--detailed-exitcode"]);
    let change = c.plan_file("change.json");
    let changed: BTreeSet<String> = change["stack"]["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["logical_id"].as_str().unwrap().to_string())
        .collect();
    println!("one pool's instance type changed: {changed:?}");
    assert!(changed.contains("LaunchTemplatePool7"), "{changed:?}");
    assert!(
        changed
            .iter()
            .all(|id| id == "LaunchTemplatePool7" || id == "AutoScalePool7"),
        "{changed:?}"
    );
    c.expect(0, &["apply", "change.json"]);

    // The no-op plan: no more requests with 30 pools than with none.
    assert_no_op_plan_within_four_requests(&c, "30 node pools");
}

#[test]
fn thirty_pools_each_in_its_own_stack_apply_and_one_pool_changes_in_its_stack_alone() {
    let c = Cluster::new("stacks30", false, None);
    c.set("stackPerPool", "true");
    c.set("nodePools", &thirty_pools(None));
    c.plan_and_apply();
    let plan = c.plan_file("plan.json");
    let cluster_bytes = plan["template"].as_str().unwrap().len();
    let pool_stacks = plan["pool_stacks"].as_array().unwrap();
    let largest = pool_stacks
        .iter()
        .map(|p| p["template"].as_str().unwrap().len())
        .max()
        .unwrap();
    println!(
        "30 pools in their own stacks: cluster template {cluster_bytes} bytes, {} pool stacks, largest pool template {largest} bytes",
        pool_stacks.len()
    );
    assert_eq!(pool_stacks.len(), 31, "30 pools and the default workers");
    // The cluster stack holds no pool: its template does not grow with them.
    assert!(
        !plan["template"].as_str().unwrap().contains("AutoScalePool"),
        "a pool's group is in the cluster stack"
    );
    let created = (0..30)
        .filter(|i| stack_resources(&format!("{}-pool-pool{i}", c.name)).0 == "CREATE_COMPLETE")
        .count();
    assert_eq!(created, 30);

    // One pool's instance type: a change set for that pool's stack alone.
    c.set("nodePools", &thirty_pools(Some(7)));
    c.proxy.reset();
    c.expect(2, &["plan", "-o", "change.json", "--detailed-exitcode"]);
    let operations = forwarded_operations(&c);
    let change = c.plan_file("change.json");
    assert_eq!(change["stack"]["action"], "no-op");
    let changed: Vec<(String, BTreeSet<String>)> = change["pool_stacks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["stack"]["action"] != "no-op")
        .map(|p| {
            assert!(p["stack"]["change_set_arn"].is_string(), "{p}");
            (
                p["stack"]["name"].as_str().unwrap().to_string(),
                p["stack"]["resource_changes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["logical_id"].as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    println!(
        "one pool's instance type changed: {changed:?}; plan made {} AWS requests {operations:?}",
        operations.len()
    );
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0].0, format!("{}-pool-pool7", c.name));
    assert!(changed[0].1.contains("LaunchTemplatePool7"), "{changed:?}");
    c.expect(0, &["apply", "change.json"]);
    assert_no_op_plan_within_four_requests(&c, "31 pool stacks");
}

/// One way to edit a sealed plan, what it is, and the refusal apply must give.
type Forgery = (
    &'static str,
    Box<dyn Fn(&mut kube_aws::planfile::Plan)>,
    &'static str,
);

/// Applies each forgery of `plan` (edited, then re-sealed): apply refuses it with its refusal,
/// says nothing was executed, and neither executes a change set, deletes a stack nor writes a
/// record.
fn apply_each_forgery_and_expect_refusal(
    c: &Cluster,
    plan: &kube_aws::planfile::Plan,
    forgeries: Vec<Forgery>,
) {
    for (what, edit, refusal) in forgeries {
        let mut forged = plan.clone();
        edit(&mut forged);
        let forged = forged.seal();
        std::fs::write(c.path("forged.json"), kube_aws::planfile::encode(&forged)).unwrap();
        c.proxy.reset();
        let zone_before = moto().zone_records(&c.zone_id);
        let out = c.expect(1, &["apply", "forged.json"]);
        assert!(stderr(&out).contains(refusal), "{what}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("nothing was executed"),
            "{what}: {}",
            stderr(&out)
        );
        let writes = c.proxy.cluster_writes();
        assert!(writes.is_empty(), "{what}: {writes:?}");
        assert_eq!(
            moto().zone_records(&c.zone_id),
            zone_before,
            "{what}: the zone changed"
        );
    }
}

/// The guard the forgery tests rely on can fire: a first apply executes a change set and
/// writes the API record, and the guard names both, and the zone listing shows the record.
#[test]
fn the_write_guard_sees_the_change_set_and_the_record_a_first_apply_writes() {
    let c = Cluster::new("guard", false, None);
    c.expect(0, &["plan", "-o", "plan.json"]);
    let zone_before = moto().zone_records(&c.zone_id);
    c.proxy.reset();
    c.expect(0, &["apply", "plan.json"]);
    let writes: BTreeSet<&str> = c.proxy.cluster_writes().into_iter().collect();
    assert_eq!(
        writes,
        BTreeSet::from(["ChangeResourceRecordSets", "ExecuteChangeSet"])
    );
    let zone_after = moto().zone_records(&c.zone_id);
    let added: Vec<&String> = zone_after
        .iter()
        .filter(|r| !zone_before.contains(r))
        .collect();
    assert_eq!(added.len(), 1, "{zone_after:?}");
    assert!(
        added[0].starts_with(&format!("api.{}.example.com. A ", c.name)),
        "{added:?}"
    );
}

/// A cluster that plans unsigned, with pool `gpu` in a stack of its own (not applied yet).
fn unsigned_cluster_with_a_gpu_pool_stack(prefix: &str) -> Cluster {
    let c = Cluster::new(prefix, false, None);
    c.set("planSigningKeyArn", "null");
    c.set("unsignedPlans", "true");
    c.set("stackPerPool", "true");
    c.set("nodePools", "[{name: gpu, count: 1}]");
    c
}

/// Where pool `pool`'s stack stands in the plan's list.
fn pool_position(plan: &kube_aws::planfile::Plan, pool: &str) -> usize {
    plan.pool_stacks
        .iter()
        .position(|p| p.pool == pool)
        .unwrap()
}

#[test]
fn an_unsigned_plan_edited_to_reach_other_pool_stacks_is_refused_before_anything_changes() {
    let c = unsigned_cluster_with_a_gpu_pool_stack("poolforge");
    c.plan_and_apply();
    c.set(
        "nodePools",
        "[{name: gpu, count: 1, instanceType: m6i.large}]",
    );
    c.expect(0, &["plan", "-o", "plan.json"]);
    let plan = c.decoded_plan("plan.json");
    let gpu = pool_position(&plan, "gpu");
    assert!(plan.pool_stacks[gpu].stack.change_set_arn.is_some());
    let attempts: Vec<Forgery> = vec![
        (
            "a stack the state does not record deleted",
            Box::new(move |p| {
                let mut other = p.pool_stacks[gpu].clone();
                other.pool = "victim".into();
                other.stack.name = "someone-elses-stack".into();
                other.stack.action = kube_aws::planfile::Action::Delete;
                other.stack.change_set_arn = None;
                p.pool_stacks.push(other);
            }),
            "the plan deletes stack someone-elses-stack, which the state does not record",
        ),
        (
            "a pool's stack renamed",
            Box::new(move |p| p.pool_stacks[gpu].stack.name = "someone-elses-stack".into()),
            "the plan names stack someone-elses-stack for node pool gpu",
        ),
        (
            "another change set",
            Box::new(move |p| {
                p.pool_stacks[gpu].stack.change_set_arn = Some(
                    "arn:aws:cloudformation:us-west-2:123456789012:changeSet/kube-aws-evil/1"
                        .into(),
                )
            }),
            "is gone or unreadable",
        ),
        (
            "a pool stack's template hash in new_state",
            Box::new(|p| {
                p.new_state
                    .pool_stacks
                    .get_mut("gpu")
                    .unwrap()
                    .template_sha256 = "0".repeat(64)
            }),
            "records other pool stacks than the plan reviews: gpu",
        ),
        // Issue 25, item 4: each of these reached AWS before (a stack `pa-pool-evil` was
        // created; a pool was handed the etcd group; apply built a change set from the plan's
        // template), and each is refused now before the first change.
        (
            "a pool cluster.yaml does not declare",
            Box::new(move |p| {
                let mut evil = p.pool_stacks[gpu].clone();
                evil.pool = "evil".into();
                evil.stack.name = format!("{}-pool-evil", p.cluster_name);
                evil.stack.action = kube_aws::planfile::Action::Create;
                let mut recorded = p.new_state.pool_stacks["gpu"].clone();
                recorded.name = evil.stack.name.clone();
                recorded.id = None;
                p.new_state.pool_stacks.insert("evil".into(), recorded);
                p.pool_stacks.push(evil);
            }),
            "the plan gives node pool evil a stack, but cluster.yaml declares no such pool",
        ),
        (
            "a pool handed the etcd security group",
            Box::new(move |p| {
                p.pool_stacks[gpu]
                    .parameters
                    .push("SecurityGroupEtcd".into())
            }),
            "passes stack",
        ),
        (
            "a pool's change set removed, so apply would make one from the plan's template",
            Box::new(move |p| {
                p.pool_stacks[gpu].stack.change_set_arn = None;
                p.pool_stacks[gpu].template = Some("{}".into());
            }),
            "the cluster stack does not change, so plan made it",
        ),
    ];
    apply_each_forgery_and_expect_refusal(&c, &plan, attempts);
    c.expect(0, &["apply", "plan.json"]);
}

/// Issue 25, item 4: an unsigned plan's pool template swapped together with its hashes (here
/// one whose role trusts another account) reached CloudFormation when apply made the pool's
/// change set (a first apply); apply now renders the stacks itself from cluster.yaml and the
/// plan's AMI and certificates and refuses a template it does not render, before anything
/// changes.
#[test]
fn an_unsigned_plan_with_a_swapped_pool_template_is_refused_by_what_apply_renders() {
    let c = unsigned_cluster_with_a_gpu_pool_stack("poolswap");
    c.expect(0, &["plan", "-o", "plan.json"]);
    let plan = c.decoded_plan("plan.json");
    let gpu = pool_position(&plan, "gpu");
    assert!(
        plan.pool_stacks[gpu].change_set_at_apply(),
        "a first apply makes the pool's change set"
    );
    let swap = move |p: &mut kube_aws::planfile::Plan| {
        let mut template: Value =
            serde_json::from_str(p.pool_stacks[gpu].template.as_deref().unwrap()).unwrap();
        template["Resources"]["Backdoor"] = serde_json::json!({
            "Type": "AWS::IAM::Role",
            "Properties": {"AssumeRolePolicyDocument": {"Statement": [{
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
                "Action": "sts:AssumeRole"}]},
                "ManagedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"]}
        });
        let text = serde_json::to_string(&template).unwrap();
        let sha256 = kube_aws::hash::sha256_hex(&text);
        p.pool_stacks[gpu].template = Some(text);
        p.pool_stacks[gpu].stack.template_sha256 = Some(sha256.clone());
        p.new_state
            .pool_stacks
            .get_mut("gpu")
            .unwrap()
            .template_sha256 = sha256;
    };
    apply_each_forgery_and_expect_refusal(
        &c,
        &plan,
        vec![
            (
                "a pool template swapped with its hashes",
                Box::new(swap),
                "but cluster.yaml and the cluster directory render",
            ),
            (
                "a pool's parameters changed",
                Box::new(move |p| {
                    p.pool_stacks[gpu]
                        .parameters
                        .retain(|n| n != "SecurityGroupWorker")
                }),
                "but its rendered template takes",
            ),
        ],
    );
    assert_eq!(
        stack_resources(&format!("{}-pool-gpu", c.name)).0,
        "absent",
        "no pool stack was created"
    );
    c.expect(0, &["apply", "plan.json"]);
    c.expect(0, &["plan", "--detailed-exitcode"]);
}

#[test]
fn a_single_stack_cluster_moves_to_a_stack_per_pool_in_two_reviewed_steps_and_is_never_without_workers()
 {
    let c = Cluster::new("move", false, None);
    // The layout of one stack, which clusters made before init wrote stackPerPool keep.
    c.set("stackPerPool", "false");
    c.set("nodePools", "[{name: gpu, count: 1}]");
    c.plan_and_apply();
    let groups_in_cluster_stack = || {
        stack_resources(&c.name)
            .1
            .into_iter()
            .filter(|id| id.starts_with("AutoScale") && id != "AutoScaleEtcd0")
            .collect::<BTreeSet<_>>()
    };
    let before = groups_in_cluster_stack();
    assert_eq!(
        before,
        ["AutoScaleGpu", "AutoScaleWorkers"]
            .into_iter()
            .map(String::from)
            .collect()
    );

    // The move changes nothing else: a plan that would also change the cluster stack is
    // refused.
    c.set("stackPerPool", "true");
    c.set("workerCount", "2");
    let refused = stderr(&c.expect(1, &["plan"]));
    assert!(refused.contains("would also change it"), "{refused}");
    c.set("workerCount", "1");

    // Step 1: the pool stacks are created; the cluster stack keeps its groups as they run.
    let text = stdout(&c.expect(2, &["plan", "-o", "step1.json", "--detailed-exitcode"]));
    println!("step 1 plan:\n{text}");
    let step1 = c.plan_file("step1.json");
    assert_eq!(step1["stack"]["action"], "no-op", "{text}");
    assert!(
        step1["notes"][0].as_str().unwrap().contains("step 1 of 2"),
        "{text}"
    );
    let created: Vec<(&str, bool)> = step1["pool_stacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["stack"]["action"], "create", "{p}");
            (
                p["pool"].as_str().unwrap(),
                p["stack"]["change_set_arn"].is_string(),
            )
        })
        .collect();
    assert_eq!(
        created,
        [("gpu", true), ("workers", true)],
        "change sets made at plan time"
    );
    c.expect(0, &["apply", "step1.json"]);
    assert_eq!(
        groups_in_cluster_stack(),
        before,
        "the cluster stack's groups still run"
    );
    for pool in ["gpu", "workers"] {
        assert_eq!(
            stack_resources(&format!("{}-pool-{pool}", c.name)).0,
            "CREATE_COMPLETE"
        );
    }

    // Step 2: the cluster stack lets go of its groups, their launch templates and the shared
    // workers' role; nothing else in it changes.
    let text = stdout(&c.expect(2, &["plan", "-o", "step2.json", "--detailed-exitcode"]));
    println!("step 2 plan:\n{text}");
    let step2 = c.plan_file("step2.json");
    assert!(
        step2["notes"][0].as_str().unwrap().contains("step 2 of 2"),
        "{text}"
    );
    let changes: BTreeSet<(String, String)> = step2["stack"]["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_string(),
                r["logical_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [
        "AutoScaleGpu",
        "AutoScaleWorkers",
        "IAMInstanceProfileWorker",
        "IAMRoleWorker",
        "LaunchTemplateGpu",
        "LaunchTemplateWorkers",
    ]
    .into_iter()
    .map(|id| ("Remove".to_string(), id.to_string()))
    .collect();
    assert_eq!(changes, expected, "{text}");
    assert!(
        step2["pool_stacks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["stack"]["action"] == "no-op"),
        "{text}"
    );
    c.expect(0, &["apply", "step2.json"]);
    assert!(groups_in_cluster_stack().is_empty());
    c.expect(0, &["plan", "--detailed-exitcode"]);
    c.expect(0, &["plan", "--offline", "--detailed-exitcode"]);
}

/// CloudFormation's view of one stack in moto: its status and the type of each resource.
fn stack_resources(stack: &str) -> (String, BTreeSet<String>) {
    block_on(async {
        let client = aws_sdk_cloudformation::Client::new(&moto().sdk_config().await);
        let described = client.describe_stacks().stack_name(stack).send().await;
        let status = match described {
            Ok(out) => out.stacks()[0]
                .stack_status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            // Only CloudFormation's answer for a stack that does not exist means absent.
            Err(e) => {
                let e = aws_sdk_cloudformation::error::DisplayErrorContext(e).to_string();
                assert!(
                    e.contains("does not exist"),
                    "DescribeStacks {stack} failed: {e}"
                );
                return ("absent".to_string(), BTreeSet::new());
            }
        };
        let resources = client
            .list_stack_resources()
            .stack_name(stack)
            .send()
            .await
            .map(|out| {
                out.stack_resource_summaries()
                    .iter()
                    .map(|r| r.logical_resource_id().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default();
        (status, resources)
    })
}

#[test]
fn with_a_stack_per_pool_a_pool_changes_in_its_own_stack_alone_and_goes_first_on_destroy() {
    let c = Cluster::new("perpool", false, None);
    c.set("stackPerPool", "true");
    let pools = |instance_type: &str, with_batch: bool| {
        let batch = if with_batch {
            ", {name: batch, count: 1}"
        } else {
            ""
        };
        format!("[{{name: gpu, count: 1, instanceType: {instance_type}}}{batch}]")
    };
    c.set("nodePools", &pools("m5.large", true));
    c.plan_and_apply();
    let plan = c.plan_file("plan.json");
    // The cluster stack is created, so each pool's change set is made by apply after it.
    let pool_stacks = plan["pool_stacks"].as_array().unwrap();
    let planned: Vec<(&str, &str, bool)> = pool_stacks
        .iter()
        .map(|p| {
            (
                p["stack"]["name"].as_str().unwrap(),
                p["stack"]["action"].as_str().unwrap(),
                p["template"].is_string(),
            )
        })
        .collect();
    println!("first plan: {planned:?}");
    let stack_name = |pool: &str| format!("{}-pool-{pool}", c.name);
    assert_eq!(
        planned,
        [
            (stack_name("batch").as_str(), "create", true),
            (stack_name("gpu").as_str(), "create", true),
            (stack_name("workers").as_str(), "create", true)
        ]
    );
    let cluster_ids = plan["stack"]["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["logical_id"].as_str().unwrap().to_string())
        .collect::<BTreeSet<_>>();
    assert!(
        !cluster_ids
            .iter()
            .any(|id| id.starts_with("AutoScale") && id != "AutoScaleEtcd0"),
        "{cluster_ids:?}"
    );
    let (status, gpu) = stack_resources(&stack_name("gpu"));
    println!("{}: {status} {gpu:?}", stack_name("gpu"));
    assert_eq!(status, "CREATE_COMPLETE");
    assert_eq!(
        gpu,
        [
            "AutoScaleGpu",
            "IAMInstanceProfilePoolGpu",
            "IAMRolePoolGpu",
            "LaunchTemplateGpu"
        ]
        .into_iter()
        .map(String::from)
        .collect()
    );
    let state: Value = serde_json::from_slice(&c.expect(0, &["state", "pull"]).stdout).unwrap();
    let recorded = &state["pool_stacks"]["gpu"];
    assert!(
        recorded["id"]
            .as_str()
            .unwrap()
            .contains(&stack_name("gpu")),
        "{recorded}"
    );
    assert!(
        recorded["parameters"]["SecurityGroupWorker"]
            .as_str()
            .unwrap()
            .starts_with("sg-"),
        "{recorded}"
    );

    // A pool's labels change its cloud-config, which its own stack carries: the plan shows
    // the diff against what that stack runs, not only a hash.
    c.set(
        "nodePools",
        "[{name: gpu, count: 1, instanceType: m5.large, labels: {tier: gpu-reviewed}}, {name: batch, count: 1}]",
    );
    let labelled = stdout(&c.expect(2, &["plan", "--detailed-exitcode"]));
    let hunk: Vec<&str> = labelled
        .lines()
        .skip_while(|l| !l.contains("~ userdata/cloud-config-worker-gpu"))
        .take_while(|l| !l.trim().is_empty())
        .collect();
    assert!(
        hunk.iter()
            .any(|l| l.trim_start().starts_with('+') && l.contains("tier=gpu-reviewed")),
        "{labelled}"
    );

    // One pool's instance type: a change set for that pool's stack only, made at plan time
    // (the cluster stack stays as it is, so its outputs are known).
    c.set("nodePools", &pools("m6i.large", true));
    c.proxy.reset();
    let text = stdout(&c.expect(2, &["plan", "-o", "change.json", "--detailed-exitcode"]));
    let requests = c.proxy.forwarded(None).len();
    let change = c.plan_file("change.json");
    assert_eq!(change["stack"]["action"], "no-op", "{text}");
    let changed: Vec<(&str, &str)> = change["pool_stacks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["stack"]["action"] != "no-op")
        .map(|p| {
            (
                p["stack"]["name"].as_str().unwrap(),
                p["stack"]["change_set_arn"].as_str().unwrap_or("(none)"),
            )
        })
        .collect();
    println!("one pool's instance type changed: {changed:?}, {requests} AWS requests\n{text}");
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0].0, stack_name("gpu"));
    assert!(
        changed[0].1.starts_with("arn:aws:cloudformation:"),
        "{changed:?}"
    );
    assert!(
        text.contains("Node pool stacks: 2 without changes"),
        "{text}"
    );
    let skipped = change["skipped"].to_string();
    assert!(
        skipped.contains("rendering 2 unchanged node pool(s)"),
        "{skipped}"
    );
    // The two pools not rendered give the plan rendering them gives: offline, with the
    // state's pool keys and without them.
    c.expect(
        2,
        &[
            "plan",
            "--offline",
            "-o",
            "reused.json",
            "--detailed-exitcode",
        ],
    );
    let kept = std::fs::read(c.path("state/state.json")).unwrap();
    let mut keyless: Value = serde_json::from_slice(&kept).unwrap();
    for (_, stack) in keyless["pool_stacks"].as_object_mut().unwrap() {
        stack.as_object_mut().unwrap().remove("render_key");
    }
    c.with_state_as_if_written(&serde_json::to_vec(&keyless).unwrap(), || {
        c.expect(
            2,
            &[
                "plan",
                "--offline",
                "-o",
                "rendered.json",
                "--detailed-exitcode",
            ],
        );
    });
    let (reused, rendered) = (c.plan_file("reused.json"), c.plan_file("rendered.json"));
    for field in ["assets", "stack", "pool_stacks", "summary"] {
        assert_eq!(reused[field], rendered[field], "{field}");
    }
    assert_eq!(
        reused["new_state"]["pool_stacks"],
        rendered["new_state"]["pool_stacks"]
    );
    assert_eq!(
        reused["new_state"]["assets"],
        rendered["new_state"]["assets"]
    );
    assert!(
        reused["skipped"]
            .to_string()
            .contains("rendering 2 unchanged")
    );
    assert!(
        !rendered["skipped"]
            .to_string()
            .contains("rendering 2 unchanged")
    );
    c.expect(0, &["apply", "change.json"]);

    // The no-op plan asks nothing about the pool stacks.
    assert_no_op_plan_within_four_requests(&c, "3 pool stacks");

    // Leaving the layout would replace every worker: refused, naming the setting.
    c.set("stackPerPool", "false");
    let refused = stderr(&c.expect(1, &["plan"]));
    assert!(refused.contains("stackPerPool"), "{refused}");
    c.set("stackPerPool", "true");

    // A removed pool's stack is deleted.
    c.set("nodePools", &pools("m6i.large", false));
    c.expect(2, &["plan", "-o", "remove.json", "--detailed-exitcode"]);
    let remove = c.plan_file("remove.json");
    let deleted: Vec<&str> = remove["pool_stacks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["stack"]["action"] == "delete")
        .map(|p| p["pool"].as_str().unwrap())
        .collect();
    assert_eq!(deleted, ["batch"]);
    c.expect(0, &["apply", "remove.json"]);
    assert_eq!(stack_resources(&stack_name("batch")).0, "absent");

    // Destroy: every pool stack, then the cluster stack. moto cannot delete the full cluster
    // stack (it deletes the VPC before what is in it; edges.rs destroys a small template for
    // that reason), so the run fails there, after the pool stacks are gone.
    let text = stdout(&c.expect(0, &["destroy", "--plan-only", "-o", "destroy.json"]));
    let destroy = c.plan_file("destroy.json");
    assert_eq!(
        destroy["summary"]["remove"], 4,
        "two pool stacks, the cluster stack, the record\n{text}"
    );
    let failed = stderr(&c.expect(1, &["apply", "destroy.json"]));
    assert!(
        failed.contains("DeleteStack") && failed.contains("vpc"),
        "{failed}"
    );
    for stack in [stack_name("gpu"), stack_name("workers")] {
        let (status, _) = stack_resources(&stack);
        assert!(
            status == "absent" || status == "DELETE_COMPLETE",
            "{stack}: {status}"
        );
    }
}

#[test]
fn changing_the_worker_instance_type_shows_the_rolling_replacement_everywhere() {
    let c = Cluster::new("roll", false, None);
    // The layout of one stack, which clusters made before init wrote stackPerPool keep.
    c.set("stackPerPool", "false");
    c.set("workerCount", "3");
    c.plan_and_apply();
    c.set("workerInstanceType", "m5.large");
    let text = stdout(&c.expect(2, &["plan", "-o", "plan.json", "--detailed-exitcode"]));
    let plan = c.plan_file("plan.json");
    let changes = plan["stack"]["resource_changes"].as_array().unwrap();
    let lt = changes
        .iter()
        .find(|c| c["logical_id"] == "LaunchTemplateWorkers")
        .expect("launch template changes");
    assert_eq!(lt["action"], "Modify");
    assert_eq!(lt["changed_properties"][0], "LaunchTemplateData");
    let group = changes
        .iter()
        .find(|c| c["logical_id"] == "AutoScaleWorkers")
        .expect("the group rolls");
    assert_eq!(group["rolling"]["instances"], 3);
    assert_eq!(group["rolling"]["max_batch_size"], 1);
    assert_eq!(group["rolling"]["batches"], 3);
    assert_eq!(plan["summary"]["replace"], 1);
    assert!(text.contains("± AutoScaleWorkers"), "{text}");
    assert!(
        text.contains("3 instance(s) will roll, 1 at a time"),
        "{text}"
    );
    assert!(text.contains("LaunchTemplateWorkers"), "{text}");
    assert!(
        text.contains("-          \"InstanceType\": \"t3.medium\","),
        "{text}"
    );
    assert!(
        text.contains("+          \"InstanceType\": \"m5.large\","),
        "{text}"
    );
    let markdown = stdout(&c.expect(0, &["plan", "--format", "markdown"]));
    assert!(markdown.starts_with("### kube-aws plan for"), "{markdown}");
    assert!(
        markdown.contains("> [!WARNING]\n> **`AutoScaleWorkers`**"),
        "{markdown}"
    );
    assert!(
        markdown.contains("| ± | <code>AutoScaleWorkers</code> |"),
        "{markdown}"
    );
    let json: Value =
        serde_json::from_slice(&c.expect(0, &["plan", "--format", "json"]).stdout).unwrap();
    assert_eq!(json["summary"]["replace"], 1);
    c.expect(0, &["apply", "plan.json"]);
}

#[test]
fn a_stale_plan_is_refused_and_nothing_is_executed() {
    let c = Cluster::new("stale", false, None);
    c.plan_and_apply();
    c.set("workerCount", "2");
    c.expect(0, &["plan", "-o", "first.json"]);
    c.set("workerCount", "3");
    c.expect(0, &["plan", "-o", "second.json"]);
    c.expect(0, &["apply", "second.json"]);
    c.proxy.reset();
    let out = c.expect(1, &["apply", "first.json"]);
    let message = stderr(&out);
    assert!(
        message.contains(
            "stale: the plan was made against state serial 1 but the state is now at serial 2"
        ),
        "{message}"
    );
    let executed: Vec<_> = c
        .proxy
        .forwarded(Some("cloudformation"))
        .into_iter()
        .filter(|r| CFN_WRITES.contains(&r.operation.as_str()))
        .collect();
    assert!(executed.is_empty(), "{executed:?}");
    let history = stdout(&c.expect(0, &["history", "--json"]));
    let entries: Value = serde_json::from_str(&history).unwrap();
    assert_eq!(
        entries[0]["result"], "succeeded",
        "the refused apply left no entry: {history}"
    );
    // The plan that was applied, applied again: not blamed on another apply.
    let again = stderr(&c.expect(1, &["apply", "second.json"]));
    assert!(
        again.contains(
            "stale: this plan was already applied: state serial 2 is what it wrote (audit entry"
        ),
        "{again}"
    );
    assert!(!again.contains("another apply"), "{again}");
}

#[test]
fn a_plan_with_one_byte_changed_is_refused_before_any_aws_call() {
    let c = Cluster::new("tamper", false, None);
    c.expect(0, &["plan", "-o", "plan.json"]);
    let mut bytes = std::fs::read(c.path("plan.json")).unwrap();
    let at = bytes.windows(7).position(|w| w == b"\"ttl\": ").unwrap() + 7;
    bytes[at] = if bytes[at] == b'9' { b'8' } else { b'9' };
    std::fs::write(c.path("plan.json"), &bytes).unwrap();
    c.proxy.reset();
    let out = c.expect(1, &["apply", "plan.json"]);
    assert!(
        stderr(&out).contains("the plan was changed after it was made"),
        "{}",
        stderr(&out)
    );
    assert!(c.proxy.seen().is_empty(), "{:?}", c.proxy.seen());
    assert!(!c.path("state/state.json").exists());
}

#[test]
fn a_re_hashed_plan_is_refused_by_its_signature_and_a_re_signed_one_by_its_key() {
    use base64::Engine;
    let c = Cluster::new("signed", false, None);
    c.expect(0, &["plan", "-o", "plan.json"]);
    let reviewed = std::fs::read(c.path("plan.json")).unwrap();
    let plan = kube_aws::planfile::decode("plan.json", &reviewed).unwrap();
    let signature = plan.signature.clone().expect("plans are signed");
    assert_eq!(signature.key_arn, moto().plan_signing_key());

    // What an attacker with write access to the artifact store does: point the record
    // elsewhere, plant a CA, and re-hash, which the hash alone would accept.
    let mut forged = plan.clone();
    for record in &mut forged.records {
        record.new_values = vec!["203.0.113.66".into()];
    }
    if let Some(ca) = forged.new_state.tls.get_mut("ca") {
        ca.certificate_pem =
            "-----BEGIN CERTIFICATE-----\nforged\n-----END CERTIFICATE-----\n".into();
    }
    let forged = forged.seal();
    assert_ne!(forged.plan_sha256, plan.plan_sha256);
    let attempts = [
        (
            "re-hashed, signature kept",
            forged.clone(),
            "does not verify with",
        ),
        (
            "re-hashed and re-signed with the attacker's own key",
            {
                let key = moto().create_signing_key();
                let own = block_on(async {
                    let kms = aws_sdk_kms::Client::new(&moto().sdk_config().await);
                    let signed = kube_aws::aws::kms::KmsVault::new(kms)
                        .sign_digest(&key, &forged.digest().unwrap())
                        .await
                        .unwrap();
                    (key, signed)
                });
                let mut resigned = forged.clone();
                resigned.signature = Some(kube_aws::planfile::PlanSignature {
                    key_arn: own.0,
                    algorithm: "ECDSA_SHA_256".into(),
                    value: base64::engine::general_purpose::STANDARD.encode(own.1),
                });
                resigned
            },
            "not with planSigningKeyArn",
        ),
        (
            "signature removed",
            {
                let mut unsigned = forged.clone();
                unsigned.signature = None;
                unsigned
            },
            "the plan is not signed",
        ),
    ];
    for (what, attempt, refusal) in attempts {
        std::fs::write(c.path("forged.json"), kube_aws::planfile::encode(&attempt)).unwrap();
        c.proxy.reset();
        let out = c.expect(1, &["apply", "forged.json"]);
        assert!(stderr(&out).contains(refusal), "{what}: {}", stderr(&out));
        let calls: Vec<String> = c.proxy.seen().iter().map(|r| r.operation.clone()).collect();
        assert!(
            calls.iter().all(|op| op.ends_with("Verify")),
            "{what}: only the signature was checked before the refusal: {calls:?}"
        );
        assert!(!c.path("state/state.json").exists(), "{what}");
    }

    // export --plan writes exactly the reviewed template, and refuses one that is not.
    c.expect(0, &["export", "--plan", "plan.json", "-o", "reviewed.json"]);
    assert_eq!(
        std::fs::read_to_string(c.path("reviewed.json")).unwrap(),
        plan.template.clone().unwrap()
    );
    let mut swapped = plan.clone();
    swapped.template = Some(swapped.template.unwrap().replace("t3.medium", "t3.nano"));
    std::fs::write(
        c.path("swapped.json"),
        kube_aws::planfile::encode(&swapped.seal()),
    )
    .unwrap();
    let out = c.expect(1, &["export", "--plan", "swapped.json"]);
    assert!(
        stderr(&out).contains("not to the template_sha256 it records"),
        "{}",
        stderr(&out)
    );

    // The reviewed plan, untouched, applies.
    c.expect(0, &["apply", "plan.json"]);
}

#[test]
fn secrets_never_appear_in_plan_output() {
    let c = Cluster::new("secrets", false, None);
    c.plan_and_apply();
    c.set("externalDNSName", &format!("k8s.{}.example.com", c.name));
    let runs = [
        c.expect(0, &["plan", "-o", "plan.json"]),
        c.expect(0, &["plan", "--format", "markdown"]),
        c.expect(0, &["plan", "--format", "json"]),
    ];
    let [text, markdown, json] = runs.each_ref().map(stdout);
    let progress: String = runs.iter().map(stderr).collect();
    // The renewal says which names changed, read off the certificate it replaces.
    assert!(
        text.contains(&format!(
            "its spec changed: names +DNS:k8s.{0}.example.com -DNS:api.{0}.example.com",
            c.name
        )),
        "{text}"
    );
    let state: Value =
        serde_json::from_slice(&std::fs::read(c.path("state/state.json")).unwrap()).unwrap();
    let plan = c.plan_file("plan.json");
    let plan_text = std::fs::read_to_string(c.path("plan.json")).unwrap();
    let mut ciphertexts: Vec<String> = Vec::new();
    let mut needles = Vec::new();
    for tls in [&state["tls"], &plan["new_state"]["tls"]] {
        ciphertexts.extend(
            tls.as_object()
                .unwrap()
                .values()
                .map(|a| a["key_ciphertext"].as_str().unwrap().to_string()),
        );
        needles.extend(secret_needles(&c, tls));
    }
    // The secrets searched for: private keys, the Secrets encryption key, the bootstrap token.
    for asset in ["apiserver", "secrets-encryption", "bootstrap-token"] {
        assert!(
            needles.iter().any(|(a, _)| a == asset),
            "no plaintext of {asset} to look for"
        );
    }
    for (name, output) in [
        ("text", &text),
        ("markdown", &markdown),
        ("json", &json),
        ("plan file", &plan_text),
        ("standard error", &progress),
    ] {
        for (asset, needle) in &needles {
            if let Some(at) = output.find(needle.as_str()) {
                let from = output.floor_char_boundary(at.saturating_sub(300));
                panic!(
                    "the {name} output shows the plaintext of {asset} ({needle}):\n{}",
                    &output[from..output.ceil_char_boundary(at + needle.len() + 100)]
                );
            }
        }
    }
    assert!(
        text.contains("tls/apiserver"),
        "the apiserver certificate is re-issued: {text}"
    );
    assert!(
        text.contains("<redacted sha256:"),
        "the diff shows redacted keys: {text}"
    );
    for (name, output) in [("text", &text), ("markdown", &markdown)] {
        assert!(!output.contains("PRIVATE KEY"), "{name}");
        for c in &ciphertexts {
            assert!(
                !output.contains(c.as_str()),
                "{name} shows a key ciphertext"
            );
        }
    }
    assert!(!json.contains("PRIVATE KEY"));
    crate::schemas::assert_valid("plan.schema.json", &serde_json::from_str(&json).unwrap());
}

#[test]
fn offline_plan_makes_no_aws_request_and_says_what_it_skipped() {
    let c = Cluster::new("offline", false, None);
    c.plan_and_apply();
    c.set("workerCount", "2");
    c.proxy.reset();
    let out = c.expect(
        2,
        &[
            "plan",
            "--offline",
            "--detailed-exitcode",
            "-o",
            "offline.json",
        ],
    );
    assert!(c.proxy.seen().is_empty(), "{:?}", c.proxy.seen());
    let text = stdout(&out);
    assert!(text.contains("Offline preview"), "{text}");
    assert!(
        text.contains("CloudFormation: no change set was created or described"),
        "{text}"
    );
    let refused = c.expect(1, &["apply", "offline.json"]);
    assert!(
        stderr(&refused).contains("--offline"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn an_offline_plan_of_unchanged_inputs_renders_nothing_and_says_what_rendering_would() {
    let c = Cluster::new("renderkey", false, None);
    // The layout of one stack, which clusters made before init wrote stackPerPool keep.
    c.set("stackPerPool", "false");
    c.set(
        "nodePools",
        "[{name: batch}, {name: spot, spotPrice: '0.1'}]",
    );
    c.plan_and_apply();
    let state_path = c.path("state/state.json");
    let original = std::fs::read(&state_path).unwrap();
    let state: Value = serde_json::from_slice(&original).unwrap();
    let key = state["render_key"]
        .as_str()
        .expect("apply records the render key");
    assert_eq!(key.len(), 64, "{key}");

    // The key matches: the plan is made from the state, without rendering.
    c.proxy.reset();
    c.expect(
        0,
        &[
            "plan",
            "--offline",
            "--detailed-exitcode",
            "-o",
            "fast.json",
        ],
    );
    assert!(c.proxy.seen().is_empty(), "{:?}", c.proxy.seen());
    // The same state without its key: the full render, which must say exactly the same.
    let mut keyless = state.clone();
    keyless.as_object_mut().unwrap().remove("render_key");
    // Written as it is, the log refuses it (it is not the state the last apply wrote); the
    // render needs it as if written.
    std::fs::write(&state_path, serde_json::to_vec_pretty(&keyless).unwrap()).unwrap();
    let out = c.expect(1, &["plan", "--offline"]);
    assert!(stderr(&out).contains("it was edited"), "{}", stderr(&out));
    std::fs::write(&state_path, &original).unwrap();
    c.with_state_as_if_written(&serde_json::to_vec_pretty(&keyless).unwrap(), || {
        c.expect(
            0,
            &[
                "plan",
                "--offline",
                "--detailed-exitcode",
                "-o",
                "full.json",
            ],
        );
    });
    let comparable = |file: &str| {
        let mut plan = c.plan_file(file);
        crate::schemas::assert_valid("plan.schema.json", &plan);
        // The prior state's bytes differ by the key; what the plan says does not.
        plan["prior"]["state_sha256"] = Value::Null;
        plan["plan_sha256"] = Value::Null;
        plan["provenance"] = Value::Null;
        plan
    };
    let (mut fast, full) = (comparable("fast.json"), comparable("full.json"));
    // The one difference: the plan made from the state says it rendered nothing.
    let said = fast["skipped"].as_array_mut().unwrap().pop().unwrap();
    assert_eq!(said, kube_aws::engine::plan::RENDER_SKIPPED);
    assert!(
        !full["skipped"]
            .as_array()
            .unwrap()
            .contains(&Value::from(kube_aws::engine::plan::RENDER_SKIPPED)),
        "{full:#}"
    );
    assert_eq!(
        fast, full,
        "the unrendered plan differs from the rendered one"
    );
    assert_eq!(
        full["new_state"]["render_key"], key,
        "the full render recomputes the same key"
    );
    assert_eq!(
        fast["summary"],
        serde_json::json!({"add": 0, "change": 0, "remove": 0, "replace": 0})
    );

    // A state whose assets were edited with its key kept is not taken for the render: the key
    // binds the assets it was recorded with.
    let mut edited = state.clone();
    edited["assets"]["userdata/cloud-config-worker"]["sha256"] = Value::from("0".repeat(64));
    c.with_state_as_if_written(&serde_json::to_vec_pretty(&edited).unwrap(), || {
        let out = c.expect(2, &["plan", "--offline", "--detailed-exitcode"]);
        assert!(!stdout(&out).contains("render key"), "{}", stdout(&out));
    });

    // Any input changed (here an override of a built-in template) renders again and shows it.
    c.expect(0, &["render"]);
    let worker = c.path("userdata/cloud-config-worker");
    let text = std::fs::read_to_string(&worker).unwrap();
    std::fs::write(&worker, format!("{text}\n# an operator's note\n")).unwrap();
    let out = c.expect(2, &["plan", "--offline", "--detailed-exitcode"]);
    assert!(
        stdout(&out).contains("cloud-config-worker"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn apply_without_a_plan_file_needs_a_terminal_or_auto_approve() {
    let c = Cluster::new("confirm", false, None);
    let out = c.expect(1, &["apply"]);
    assert!(
        stderr(&out).contains("standard input is not a terminal"),
        "{}",
        stderr(&out)
    );
    assert!(!c.path("state/state.json").exists());
    c.expect(0, &["apply", "--auto-approve"]);
    assert!(c.path("state/state.json").exists());
}

#[test]
fn kubeconfig_is_private_and_not_overwritten() {
    use std::os::unix::fs::PermissionsExt;
    let c = Cluster::new("kubecfg", false, None);
    c.plan_and_apply();
    c.expect(0, &["kubeconfig", "-o", "admin.kubeconfig"]);
    let path = c.path("admin.kubeconfig");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(&format!("server: https://api.{}.example.com", c.name)));
    let key_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("client-key-data:"))
        .unwrap();
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD
        .decode(key_line.split(':').nth(1).unwrap().trim())
        .unwrap();
    assert!(
        String::from_utf8(key)
            .unwrap()
            .starts_with(&format!("-----BEGIN {}-----", "PRIVATE KEY"))
    );
    let again = c.expect(1, &["kubeconfig", "-o", "admin.kubeconfig"]);
    assert!(stderr(&again).contains("--force"));
    c.expect(0, &["kubeconfig", "-o", "admin.kubeconfig", "--force"]);
}

/// Reads a moto resource the way a user would check it, through the SDK.
fn describe_stack_status(name: &str) -> String {
    block_on(async {
        let client = aws_sdk_cloudformation::Client::new(&moto().sdk_config().await);
        let out = client
            .describe_stacks()
            .stack_name(name)
            .send()
            .await
            .unwrap();
        out.stacks()[0].stack_status().unwrap().as_str().to_string()
    })
}

#[test]
fn the_main_job_on_s3_state_leaves_stack_record_state_versions_and_a_verified_history() {
    // init's layout: a stack per pool.
    let c = Cluster::new("main", true, None);
    c.plan_and_apply();
    c.set("workerCount", "2");
    c.plan_and_apply();
    // The workers changed in their own stack; the control plane's stack was left as it was.
    assert_eq!(
        describe_stack_status(&format!("{}-pool-workers", c.name)),
        "UPDATE_COMPLETE"
    );
    assert_eq!(describe_stack_status(&c.name), "CREATE_COMPLETE");
    let (record, versions) = block_on(async {
        let sdk = moto().sdk_config().await;
        let dns = aws_sdk_route53::Client::new(&sdk);
        let records = dns
            .list_resource_record_sets()
            .hosted_zone_id(&c.zone_id)
            .send()
            .await
            .unwrap();
        let a = records
            .resource_record_sets()
            .iter()
            .find(|r| r.r#type().as_str() == "A")
            .map(|r| r.name().to_string());
        let s3 = moto().s3().await;
        let versions = s3
            .list_object_versions()
            .bucket(c.bucket.as_ref().unwrap())
            .prefix(format!("{}/state.json", c.name))
            .send()
            .await
            .unwrap();
        let count = versions
            .versions()
            .iter()
            .filter(|v| v.key() == Some(&format!("{}/state.json", c.name)))
            .count();
        (a, count)
    });
    assert_eq!(record, Some(format!("api.{}.example.com.", c.name)));
    assert_eq!(versions, 2, "two applies, two state versions");
    let versions_out = stdout(&c.expect(0, &["state", "versions"]));
    assert_eq!(versions_out.lines().count(), 3, "{versions_out}");
    let history = stdout(&c.expect(0, &["history"]));
    assert_eq!(history.lines().count(), 5, "{history}");
    assert!(
        history.lines().nth(1).unwrap().contains("succeeded"),
        "{history}"
    );
    c.expect(0, &["history", "--verify"]);
    let status = stdout(&c.expect(0, &["status"]));
    assert!(
        status.contains("UPDATE_COMPLETE")
            && status.contains("Lock: free")
            && status.contains("State serial: 2"),
        "{status}"
    );
}

#[test]
fn twenty_plan_apply_rounds_with_a_quarter_of_requests_faulted_lose_nothing() {
    let c = Cluster::new(
        "faults",
        true,
        Some(Faults {
            fraction: 0.25,
            seed: 7,
        }),
    );
    // The state as the bucket holds it, read past the faulty proxy.
    let config = kube_aws::config::ClusterConfig::load(c.dir.path()).unwrap();
    let state_key = config.state.key.clone().expect("an S3 state key");
    let backend = kube_aws::engine::backend::Backend::s3(
        kube_aws::aws::s3::S3Objects::new(block_on(moto().s3()), c.bucket.as_ref().unwrap()),
        &state_key,
    );
    let stored = || block_on(backend.store.load()).unwrap();
    let serial = || stored().map_or(0, |l| l.state.serial);
    let faulted = |seen: &[crate::proxy::Seen]| {
        seen.iter()
            .filter(|s| s.fault.is_some())
            .map(|s| format!("{} {} ({:?})", s.service, s.operation, s.fault.unwrap()))
            .collect::<Vec<_>>()
    };
    let mut succeeded = 0;
    let mut failed = 0;
    let mut applied_count = None;
    let mut written = 0;
    for round in 0..20 {
        let count = 1 + round % 3;
        c.set("workerCount", &count.to_string());
        let _ = std::fs::remove_file(c.path("plan.json"));
        c.proxy.reset();
        let plan = c.run(&["plan", "-o", "plan.json"]);
        if !plan.status.success() {
            failed += 1;
            assert_eq!(plan.status.code(), Some(1), "{}", stderr(&plan));
            // A plan fails only because of a fault it met, and then writes no plan file.
            let met = faulted(&c.proxy.seen());
            assert!(
                !met.is_empty(),
                "round {round}: plan failed with no fault injected: {}",
                stderr(&plan)
            );
            assert!(
                !c.path("plan.json").exists(),
                "round {round}: a failed plan wrote its file"
            );
            eprintln!("round {round}: plan failed cleanly after {met:?}");
            continue;
        }
        let before = serial();
        c.proxy.reset();
        let apply = c.run(&["apply", "plan.json"]);
        let seen = c.proxy.seen();
        let after = serial();
        match apply.status.code() {
            Some(0) => {
                succeeded += 1;
                assert_eq!(
                    after,
                    before + 1,
                    "round {round}: a successful apply writes one serial"
                );
                applied_count = Some(count);
                written += 1;
            }
            Some(1) => {
                failed += 1;
                let met = faulted(&seen);
                assert!(
                    !met.is_empty(),
                    "round {round}: apply failed with no fault injected: {}",
                    stderr(&apply)
                );
                assert!(
                    after == before || after == before + 1,
                    "round {round}: serial {before} became {after}"
                );
                if after == before + 1 {
                    // The state was written, so the stack was applied: only what follows failed.
                    applied_count = Some(count);
                    written += 1;
                }
                eprintln!(
                    "round {round}: apply failed cleanly after {met:?}: {}",
                    stderr(&apply).lines().last().unwrap_or("")
                );
                // A failed apply leaves no lock unless releasing it was itself refused by
                // every retry; then the user's `state unlock` must remove it.
                if let Some(lock) = block_on(backend.store.locker.current()).unwrap() {
                    let unlock_faulted = seen.iter().rev().find(|s| {
                        s.service == "s3"
                            && s.operation.starts_with("DELETE ")
                            && s.operation.ends_with(".lock")
                    });
                    assert!(
                        unlock_faulted.is_some_and(|s| s.fault.is_some()),
                        "round {round}: apply left lock {} behind although releasing it met no fault: {seen:?}",
                        lock.id
                    );
                    c.proxy.stop_faults();
                    c.expect(0, &["state", "unlock", &lock.id, "--force"]);
                    assert!(block_on(backend.store.locker.current()).unwrap().is_none());
                    panic!(
                        "round {round}: the lock release failed on every retry; rerun with another seed"
                    );
                }
            }
            other => panic!("apply exited {other:?}: {}", stderr(&apply)),
        }
    }
    eprintln!("20 rounds: {succeeded} applied, {failed} failed cleanly");
    assert!(failed >= 1, "the faults made some round fail");
    assert!(succeeded >= 5, "rounds get through the SDK's retries");

    // Nothing lost or corrupt: every successful apply wrote exactly one serial, the state
    // validates and the audit chain verifies; the stack runs what the last applied plan said.
    c.proxy.stop_faults();
    assert_eq!(
        serial(),
        written,
        "every state write is one serial, none lost"
    );
    crate::schemas::assert_valid(
        "state.schema.json",
        &serde_json::from_slice(&c.expect(0, &["state", "pull"]).stdout).unwrap(),
    );
    let verify = c.run(&["history", "--verify"]);
    assert_eq!(verify.status.code(), Some(0), "{}", stdout(&verify));
    let template: Value = block_on(async {
        let cfn = aws_sdk_cloudformation::Client::new(&moto().sdk_config().await);
        // init's layout: the workers' group is in their own stack.
        let pool_stack = format!("{}-pool-workers", c.name);
        let out = cfn
            .get_template()
            .stack_name(&pool_stack)
            .send()
            .await
            .unwrap();
        serde_json::from_str(out.template_body().unwrap()).unwrap()
    });
    let applied = applied_count.expect("some round applied");
    assert_eq!(
        template["Resources"]["AutoScaleWorkers"]["Properties"]["DesiredCapacity"],
        Value::String(applied.to_string()),
        "the stack runs the worker count of the last applied plan"
    );
    // And the state agrees with the stack: with the last applied count, nothing to change.
    c.set("workerCount", &applied.to_string());
    c.expect(0, &["plan", "--detailed-exitcode"]);
}

/// The plaintext of one asset's KMS-encrypted key, decrypted through moto with the asset's
/// encryption context (as the instances decrypt it).
fn decrypt_asset_key(cluster: &str, asset: &str, key_ciphertext: &str) -> String {
    use base64::Engine;
    let ciphertext = base64::engine::general_purpose::STANDARD
        .decode(key_ciphertext)
        .unwrap();
    let plaintext = block_on(async {
        let kms = aws_sdk_kms::Client::new(&moto().sdk_config().await);
        let mut request = kms
            .decrypt()
            .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(ciphertext));
        for (k, v) in kube_aws::assets::encryption_context(cluster, asset) {
            request = request.encryption_context(k, v);
        }
        request
            .send()
            .await
            .expect("moto decrypts with the asset's context")
    });
    String::from_utf8(plaintext.plaintext().unwrap().as_ref().to_vec()).unwrap()
}

/// The secretbox keys of the cluster's Secrets encryption configuration, write key first, as
/// (name, secret), decrypted from the state.
fn secrets_keys(c: &Cluster) -> Vec<(String, String)> {
    let state: Value =
        serde_json::from_slice(&std::fs::read(c.path("state/state.json")).unwrap()).unwrap();
    let text = decrypt_asset_key(
        &c.name,
        "secrets-encryption",
        state["tls"]["secrets-encryption"]["key_ciphertext"]
            .as_str()
            .unwrap(),
    );
    let mut keys = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if let Some(name) = line.strip_prefix("- name: ") {
            let secret = lines
                .next()
                .and_then(|l| l.strip_prefix("secret: "))
                .unwrap_or_else(|| panic!("key {name} has no secret line:\n{text}"));
            keys.push((name.to_string(), secret.to_string()));
        }
    }
    keys
}

/// Every secret a cluster's state holds, as the strings that must never be printed: the
/// base64 lines of each private key, each Secrets encryption key and the bootstrap token
/// (whole, and its secret half).
fn secret_needles(c: &Cluster, tls: &Value) -> Vec<(String, String)> {
    // A private key's PEM carries its public key too (an EC point, an RSA modulus), which
    // certificates show, base64 at any alignment: a key line found in a certificate or public
    // key, once their lines are joined, is public.
    let public: String = tls
        .as_object()
        .unwrap()
        .values()
        .flat_map(|a| {
            [&a["certificate_pem"], &a["public_key_pem"]]
                .into_iter()
                .filter_map(|v| v.as_str())
                .flat_map(str::lines)
        })
        .collect();
    let mut needles = Vec::new();
    for (asset, entry) in tls.as_object().unwrap() {
        let plaintext =
            decrypt_asset_key(&c.name, asset, entry["key_ciphertext"].as_str().unwrap());
        if plaintext.contains("-----BEGIN") {
            needles.extend(
                plaintext
                    .lines()
                    .filter(|l| l.len() >= 40 && !l.starts_with("-----") && !public.contains(*l))
                    .map(|l| (asset.clone(), l.to_string())),
            );
        } else if plaintext.contains("secret: ") {
            needles.extend(
                plaintext
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix("secret: "))
                    .map(|s| (asset.clone(), s.to_string())),
            );
        } else {
            let token = plaintext.trim().to_string();
            let (_, secret) = token.split_once('.').expect("a bootstrap token id.secret");
            needles.push((asset.clone(), secret.to_string()));
            needles.push((asset.clone(), token));
        }
    }
    needles
}

#[test]
fn rotating_the_secrets_key_takes_three_reviewed_plans_and_never_drops_a_key_in_use() {
    let c = Cluster::new("rotate", false, None);
    c.plan_and_apply();
    let names = |keys: &[(String, String)]| keys.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    let first = secrets_keys(&c);
    assert_eq!(names(&first), ["key1"]);
    // Each key keeps its secret from the plan that added it to the one that removes it.
    let mut secrets: std::collections::BTreeMap<String, String> = first.into_iter().collect();

    let out = c.expect(1, &["plan", "--offline", "--rotate-secrets-key"]);
    assert!(
        stderr(&out).contains("--rotate-secrets-key decrypts the key through KMS"),
        "{}",
        stderr(&out)
    );

    for (applied, (step, keys)) in (1..).zip([
        (
            "step 1 of 3: a new key is added, for reading only",
            vec!["key1", "key2"],
        ),
        ("step 2 of 3: the new key encrypts", vec!["key2", "key1"]),
        ("step 3 of 3: the old key is removed", vec!["key2"]),
    ]) {
        let out = c.expect(
            2,
            &[
                "plan",
                "--rotate-secrets-key",
                "-o",
                "plan.json",
                "--detailed-exitcode",
            ],
        );
        let text = stdout(&out);
        assert!(text.contains(step), "{text}");
        assert!(
            text.contains("~ userdata/cloud-config-controller"),
            "{text}"
        );
        assert!(
            !text.contains("secret: "),
            "the configuration's keys never reach the plan output"
        );
        let plan = c.plan_file("plan.json");
        crate::schemas::assert_valid("plan.schema.json", &plan);
        let certificate = plan["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "secrets-encryption")
            .unwrap();
        assert_eq!(certificate["action"], "rotate", "{certificate}");
        c.expect(0, &["apply", "plan.json"]);
        let now = secrets_keys(&c);
        assert_eq!(names(&now), keys, "after {step}");
        // Between steps, a plain plan and status say the rotation is unfinished and how to
        // go on; after the last, neither does.
        let plain = stdout(&c.expect(0, &["plan", "--detailed-exitcode"]));
        let status = stdout(&c.expect(0, &["status"]));
        if applied == 3 {
            assert!(!plain.contains("rotation"), "{plain}");
            assert!(!status.contains("Secrets key:"), "{status}");
            let history = stdout(&c.expect(0, &["history", "--limit", "3"]));
            assert!(!history.contains("Under way"), "{history}");
        } else {
            let said = format!("a Secrets key rotation is at step {applied} of 3");
            assert!(plain.contains("No changes."), "{plain}");
            assert!(plain.contains(&format!("Note: {said}")), "{plain}");
            assert!(
                plain.contains("`kube-aws plan --rotate-secrets-key` makes step"),
                "{plain}"
            );
            assert!(status.contains(&format!("Secrets key: {said}")), "{status}");
            let history = stdout(&c.expect(0, &["history", "--limit", "3"]));
            assert!(history.contains(&format!("Under way: {said}")), "{history}");
        }
        for (name, secret) in &now {
            let kept = secrets
                .entry(name.clone())
                .or_insert_with(|| secret.clone());
            assert_eq!(kept, secret, "{step}: key {name} changed its secret");
        }
    }
    assert_ne!(
        secrets["key1"], secrets["key2"],
        "the new key is a new secret"
    );
    let out = c.expect(0, &["plan", "--detailed-exitcode"]);
    assert!(stdout(&out).contains("No changes."), "{}", stdout(&out));
}

/// With signing switched off, apply still re-derives where a plan applies, which records it
/// may write and what state it may keep: each forged field below is refused before anything
/// is executed, and the untouched plan then applies.
#[test]
fn an_unsigned_plan_edited_and_re_hashed_is_refused_by_what_apply_re_derives() {
    let c = Cluster::new("rederive", false, None);
    // The layout of one stack, which clusters made before init wrote stackPerPool keep.
    c.set("stackPerPool", "false");
    c.set("planSigningKeyArn", "null");
    c.set("unsignedPlans", "true");
    c.plan_and_apply();
    c.set("workerCount", "2");
    c.expect(0, &["plan", "-o", "plan.json"]);
    let plan = c.decoded_plan("plan.json");
    assert!(plan.signature.is_none());
    assert_eq!(plan.target.region, "us-west-2");
    assert_eq!(plan.target.account_id.as_deref(), Some("123456789012"));
    assert!(
        plan.target
            .stack_id
            .as_deref()
            .unwrap()
            .starts_with("arn:aws:cloudformation:us-west-2:123456789012:stack/")
    );
    let serial = |c: &Cluster| {
        crate::schemas::json(&c.path("state/state.json"))["serial"]
            .as_u64()
            .unwrap()
    };
    let before = serial(&c);
    let sa_cert = plan.new_state.tls["service-account"].clone();

    let attempts: Vec<Forgery> = vec![
        (
            "record renamed",
            Box::new(|p| {
                p.records[0].name = "evil.example.com.".into();
                p.records[0].action = RecordAction::Upsert;
            }),
            "the plan writes A evil.example.com.",
        ),
        (
            "record moved to another zone",
            Box::new(|p| {
                p.records[0].hosted_zone_id = "/hostedzone/ZEVIL".into();
                p.records[0].action = RecordAction::Upsert;
            }),
            "in zone /hostedzone/ZEVIL",
        ),
        (
            "a record the cluster never made deleted",
            Box::new(|p| {
                let mut other = p.records[0].clone();
                other.action = RecordAction::Delete;
                other.name = "www.example.com.".into();
                p.records.push(other);
            }),
            "which the state does not record as this cluster's",
        ),
        (
            "a kept certificate swapped",
            Box::new(move |p| {
                let api = p.new_state.tls.get_mut("apiserver").unwrap();
                api.certificate_pem = sa_cert.certificate_pem.clone();
                api.certificate_sha256 = sa_cert.certificate_sha256.clone();
            }),
            "changes certificate apiserver, which the plan says it keeps",
        ),
        (
            "a certificate the CA did not issue, declared as issued",
            Box::new(|p| {
                let sa = p.new_state.tls["service-account"].clone();
                let api = p.new_state.tls.get_mut("apiserver").unwrap();
                api.certificate_pem = sa.certificate_pem;
                api.certificate_sha256 = sa.certificate_sha256;
                for cert in &mut p.certificates {
                    if cert.name == "apiserver" {
                        cert.action = CertificateAction::Issue;
                    }
                }
            }),
            "holds certificate apiserver, which the state's CA did not issue",
        ),
        (
            "an asset hash in new_state",
            Box::new(|p| {
                p.new_state
                    .assets
                    .get_mut("userdata/cloud-config-worker")
                    .unwrap()
                    .sha256 = "0".repeat(64);
            }),
            "holds other assets than the plan lists: userdata/cloud-config-worker",
        ),
        (
            "another region",
            Box::new(|p| p.target.region = "us-east-1".into()),
            "the plan is for region us-east-1",
        ),
        (
            "another account",
            Box::new(|p| p.target.account_id = Some("210987654321".into())),
            "the plan is for account 210987654321 but these credentials are for account 123456789012",
        ),
        (
            "another stack",
            Box::new(|p| {
                p.target.stack_id =
                    Some("arn:aws:cloudformation:us-west-2:123456789012:stack/other/1".into())
            }),
            "the plan is for stack arn:aws:cloudformation:us-west-2:123456789012:stack/other/1",
        ),
        (
            "another change set",
            Box::new(|p| {
                p.stack.change_set_arn = Some(
                    "arn:aws:cloudformation:us-west-2:123456789012:changeSet/kube-aws-evil/1"
                        .into(),
                )
            }),
            "is gone or unreadable",
        ),
    ];
    apply_each_forgery_and_expect_refusal(&c, &plan, attempts);
    assert_eq!(serial(&c), before, "no forgery wrote the state");
    c.expect(0, &["apply", "plan.json"]);
    assert_eq!(serial(&c), before + 1);
}

/// Issue 29, item 3: in a CI log (stderr is not a terminal) apply shows each step and the
/// stack's events as they happen; before, it printed nothing until the end.
#[test]
fn apply_in_a_ci_log_prints_its_steps_and_the_stacks_events() {
    let c = Cluster::new("cilog", false, None);
    c.expect(0, &["plan", "-o", "plan.json"]);
    let out = c.expect(0, &["apply", "plan.json"]);
    let log = stderr(&out);
    println!("{log}");
    for step in [
        "verifying the plan's signature",
        "taking the state lock",
        "writing the state",
    ] {
        assert!(log.lines().any(|l| l == step), "{step}: {log}");
    }
    assert!(
        log.lines()
            .any(|l| l.contains("AWS::CloudFormation::Stack") && l.contains("CREATE_COMPLETE")),
        "{log}"
    );

    // For tools: the same as JSON lines on stdout, one per step and stack event, then the end.
    c.set("workerCount", "2");
    c.expect(0, &["plan", "-o", "plan.json"]);
    let out = c.expect(0, &["apply", "plan.json", "--format", "json"]);
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines[0]["event"], "step", "{lines:#?}");
    assert_eq!(lines[0]["step"], "verifying the plan's signature");
    assert!(
        lines.iter().any(|l| l["event"] == "stack"
            && l["resource_type"] == "AWS::CloudFormation::Stack"
            && l["status"] == "UPDATE_COMPLETE"),
        "{lines:#?}"
    );
    let end = lines.last().unwrap();
    assert_eq!(
        (&end["event"], &end["result"], &end["serial_after"]),
        (&json!("end"), &json!("succeeded"), &json!(2)),
        "{end}"
    );
    // A tool gets JSON only with a plan file: apply without one plans and asks first.
    let refused = stderr(&c.expect(1, &["apply", "--format", "json"]));
    assert!(refused.contains("--format"), "{refused}");
}

#[test]
fn a_cluster_yaml_typo_awaiting_review_refuses_plan_but_not_status_history_or_unlock() {
    let c = Cluster::new("typo", false, None);
    c.plan_and_apply();
    c.set("workerCont", "3");
    c.set("controllerCount", "0");
    let refused = stderr(&c.expect(1, &["plan"]));
    assert!(refused.contains("unknown key \"workerCont\""), "{refused}");
    let status = c.expect(0, &["status"]);
    assert!(
        stdout(&status).contains(&format!("Stack {}: CREATE_COMPLETE", c.name)),
        "{}",
        stdout(&status)
    );
    let warned = stderr(&status);
    assert!(
        warned.starts_with("warning: cluster.yaml has problems (plan and apply refuse it;")
            && warned.contains("workerCont: unknown key")
            && warned.contains("controllerCount: must be between 1 and 50"),
        "{warned}"
    );
    let history = c.expect(0, &["history", "--format", "json"]);
    let entries: Value = serde_json::from_str(&stdout(&history)).unwrap();
    assert_eq!(entries[0]["result"], "succeeded", "{entries}");
    assert!(
        stderr(&history).contains("workerCont"),
        "{}",
        stderr(&history)
    );
    c.expect(0, &["history", "--verify"]);
    c.expect(0, &["state", "show"]);
    // A field of the wrong type leaves nothing to read the state by: refused as before.
    c.set("workerCount", "many");
    let unreadable = stderr(&c.expect(1, &["status"]));
    assert!(
        unreadable.contains("workerCount: expected a whole number"),
        "{unreadable}"
    );
}
