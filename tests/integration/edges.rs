//! The edges of plan and apply: destroy's ownership rule, a Route53 failure after a good stack
//! update, Ctrl-C while the stack updates, certificate renewal, large templates, wrong zones.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::{Cluster, stderr, stdout};
use crate::harness::{block_on, kube_aws, moto};

/// A stack template override with only what moto can also delete: the API endpoint's EIP.
const SMALL_STACK: &str = r#"{
  "AWSTemplateFormatVersion": "2010-09-09",
  "Description": "kube-aws test stack {{ cluster.clusterName }}",
  "Resources": {"EIPController": {"Type": "AWS::EC2::EIP", "Properties": {"Domain": "vpc"}}},
  "Outputs": {"ControllerEndpoint": {"Value": {"Ref": "EIPController"}}}
}
"#;

fn records(zone: &str) -> Vec<(String, String)> {
    block_on(async {
        let client = aws_sdk_route53::Client::new(&moto().sdk_config().await);
        let out = client
            .list_resource_record_sets()
            .hosted_zone_id(zone)
            .send()
            .await
            .unwrap();
        out.resource_record_sets()
            .iter()
            .filter(|r| matches!(r.r#type().as_str(), "A" | "CNAME"))
            .map(|r| (r.name().to_string(), r.r#type().as_str().to_string()))
            .collect()
    })
}

#[test]
fn destroy_deletes_the_stack_and_only_the_records_it_created() {
    let c = Cluster::new("destroy", false, None);
    // The layout of one stack, which clusters made before init wrote stackPerPool keep.
    c.set("stackPerPool", "false");
    c.expect(0, &["render"]);
    std::fs::write(c.path("stack-template.json"), SMALL_STACK).unwrap();
    let planned = stdout(&c.expect(0, &["plan"]));
    assert!(
        planned.contains("Note: the cluster directory's own ")
            && planned.contains("stack-template.json")
            && planned.contains("does not reach this cluster"),
        "{planned}"
    );
    c.plan_and_apply();
    // Somebody else's record in the same zone.
    block_on(async {
        let client = aws_sdk_route53::Client::new(&moto().sdk_config().await);
        use aws_sdk_route53::types::*;
        let set = ResourceRecordSet::builder()
            .name(format!("www.{}.example.com.", c.name))
            .r#type(RrType::A)
            .ttl(60)
            .resource_records(
                ResourceRecord::builder()
                    .value("192.0.2.7")
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let change = Change::builder()
            .action(ChangeAction::Create)
            .resource_record_set(set)
            .build()
            .unwrap();
        client
            .change_resource_record_sets()
            .hosted_zone_id(&c.zone_id)
            .change_batch(ChangeBatch::builder().changes(change).build().unwrap())
            .send()
            .await
            .unwrap();
    });
    assert_eq!(records(&c.zone_id).len(), 2);

    let out = c.expect(0, &["destroy", "--plan-only", "-o", "destroy.json"]);
    let text = stdout(&out);
    assert!(text.contains("- delete the stack"), "{text}");
    assert!(
        text.contains(&format!("DELETE api.{}.example.com.", c.name)),
        "{text}"
    );
    assert!(!text.contains("www."), "{text}");
    c.expect(0, &["apply", "destroy.json"]);

    assert_eq!(
        records(&c.zone_id),
        vec![(format!("www.{}.example.com.", c.name), "A".to_string())]
    );
    let status = stdout(&c.expect(0, &["status"]));
    assert!(status.contains("not deployed"), "{status}");
    let state: Value = serde_json::from_slice(&c.expect(0, &["state", "pull"]).stdout).unwrap();
    assert_eq!(state["serial"], 2);
    assert_eq!(state["stack"], Value::Null);
    assert_eq!(state["records"], serde_json::json!([]));
    // The keys left with the cluster: a cluster created again under the name gets a new CA,
    // and this one's admin credentials are gone.
    assert!(
        text.contains("Note: The cluster's CA, admin credentials"),
        "{text}"
    );
    assert_eq!(state["tls"], serde_json::json!({}), "{}", state["tls"]);
    let out = c.expect(1, &["kubeconfig", "-o", "after-destroy.kubeconfig"]);
    assert!(
        !c.path("after-destroy.kubeconfig").exists(),
        "{}",
        crate::cluster::stderr(&out)
    );
    let again: Value =
        serde_json::from_slice(&c.expect(0, &["plan", "--format", "json"]).stdout).unwrap();
    let ca = again["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "ca")
        .unwrap();
    assert_eq!(ca["action"], "issue", "{ca}");
    let history: Value =
        serde_json::from_slice(&c.expect(0, &["history", "--json", "--limit", "1"]).stdout)
            .unwrap();
    assert_eq!(history[0]["command"], "apply destroy.json");
    assert_eq!(history[0]["result"], "succeeded");
}

#[test]
fn a_route53_failure_after_the_stack_is_recorded_and_the_next_plan_shows_the_record_again() {
    let c = Cluster::new("r53fail", false, None);
    c.expect(0, &["plan", "-o", "plan.json"]);
    c.proxy.intercept(Arc::new(|req| {
        (req.service == "route53" && req.operation.starts_with("POST ") && req.operation.ends_with("/rrset")).then(|| {
            (400, r#"<?xml version="1.0"?><ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Error><Type>Sender</Type><Code>InvalidChangeBatch</Code><Message>[RRSet with DNS name api.example.com. is not permitted in zone example.com.]</Message></Error><RequestId>r1</RequestId></ErrorResponse>"#.to_string())
        })
    }));
    let out = c.expect(1, &["apply", "plan.json"]);
    assert!(
        stderr(&out).contains("the stack was applied but Route53 failed"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("InvalidChangeBatch"),
        "{}",
        stderr(&out)
    );
    let state: Value =
        serde_json::from_slice(&std::fs::read(c.path("state/state.json")).unwrap()).unwrap();
    assert_eq!(state["serial"], 1, "the stack's success is kept");
    assert_eq!(
        state["records"],
        serde_json::json!([]),
        "the record is not claimed"
    );
    let history: Value =
        serde_json::from_slice(&c.expect(0, &["history", "--json", "--limit", "1"]).stdout)
            .unwrap();
    assert_eq!(history[0]["result"], "failed");

    c.proxy.intercept(Arc::new(|_| None));
    c.expect(2, &["plan", "-o", "plan.json", "--detailed-exitcode"]);
    let plan: Value = serde_json::from_slice(&std::fs::read(c.path("plan.json")).unwrap()).unwrap();
    assert_eq!(plan["stack"]["action"], "no-op");
    assert_eq!(plan["records"][0]["action"], "UPSERT");
    c.expect(0, &["apply", "plan.json"]);
    c.expect(0, &["plan", "--detailed-exitcode"]);
}

#[test]
fn ctrl_c_while_the_stack_updates_leaves_it_running_records_interrupted_and_releases_the_lock() {
    let c = Cluster::new("ctrlc", false, None);
    // The layout of one stack, which clusters made before init wrote stackPerPool keep.
    c.set("stackPerPool", "false");
    c.plan_and_apply();
    c.set("workerCount", "2");
    c.expect(0, &["plan", "-o", "plan.json"]);
    // Held in progress far longer than the test runs: apply is interrupted while following.
    let child = apply_while_the_stack_is_busy(&c, Duration::from_secs(600), &[]);
    signal(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    let message = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{message}");
    for said in [
        "Interrupt received: apply stops at its next safe point",
        "continues in CloudFormation and `kube-aws status` follows it (change set",
        " was executed); plan again once it is done",
    ] {
        assert!(message.contains(said), "{said}: {message}");
    }
    interrupted_and_unlocked(&c);
    assert_eq!(local_serial(&c), 1);

    // The transcript an operator sees (cargo test -- --nocapture prints it), and the way on:
    // once the stack is done, a new plan applies.
    let status = stdout(&c.expect(0, &["status"]));
    let history = stdout(&c.expect(0, &["history", "--limit", "3"]));
    c.proxy.intercept(Arc::new(|_| None));
    let plan = stdout(&c.expect(0, &["plan", "-o", "plan.json"]));
    let next = c.expect(0, &["apply", "plan.json"]);
    println!(
        "$ kube-aws apply plan.json\n^C\n{message}\n$ kube-aws status\n{status}\n$ kube-aws history --limit 3\n{history}\n$ kube-aws plan -o plan.json\n{plan}\n$ kube-aws apply plan.json\n{}",
        stderr(&next)
    );
    assert!(status.contains("Lock: free"), "{status}");
    assert!(history.contains("interrupted"), "{history}");
    assert!(
        plan.contains(&format!(
            "Note: CloudFormation finds nothing to change in {}, but the state records another template than this plan's",
            c.name
        )),
        "{plan}"
    );
    assert_eq!(local_serial(&c), 2);
}

/// Ctrl-C, then a hang-up (the terminal closed, SIGHUP) while apply records the interruption in
/// the S3 state bucket: the second is answered, not obeyed, and the run still closes its audit
/// entry and its lock. (SIGTERM as a first signal: the test after the next.)
#[test]
fn a_second_signal_while_apply_stops_is_answered_and_the_lock_is_still_released() {
    let c = Cluster::new("twice", true, None);
    c.plan_and_apply();
    c.set("workerCount", "2");
    c.expect(0, &["plan", "-o", "plan.json"]);
    let pid = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let (executed, first_sent, second_sent) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let name = c.name.clone();
    let (p, e, first, second) = (
        pid.clone(),
        executed.clone(),
        first_sent.clone(),
        second_sent.clone(),
    );
    c.proxy.intercept(Arc::new(move |req| {
        let pid = p.load(Ordering::SeqCst);
        match (req.service, req.operation) {
            ("cloudformation", "ExecuteChangeSet") => e.store(true, Ordering::SeqCst),
            ("cloudformation", "DescribeStacks") if e.load(Ordering::SeqCst) => {
                if !first.swap(true, Ordering::SeqCst) {
                    kill("-INT", pid);
                }
                return Some((200, stack_updating(&name)));
            }
            // Apply now writes its closing entry to the bucket and waits for the answer.
            ("s3", _) if first.load(Ordering::SeqCst) && !second.swap(true, Ordering::SeqCst) => {
                kill("-HUP", pid);
                std::thread::sleep(Duration::from_millis(300));
            }
            _ => {}
        }
        None
    }));
    let message = apply_failing_with_pid_in(&c, &pid);
    assert!(second_sent.load(Ordering::SeqCst), "{message}");
    for said in [
        "Interrupt received: apply stops at its next safe point",
        "Already stopping: the stack keeps going in CloudFormation",
        "error: apply interrupted: interrupted while waiting",
    ] {
        assert!(message.contains(said), "{said}: {message}");
    }
    c.proxy.intercept(Arc::new(|_| None));
    interrupted_and_unlocked(&c);
    c.expect(0, &["history", "--verify"]);
}

/// The last run is recorded as interrupted, the lock is free and the log verifies.
fn interrupted_and_unlocked(c: &Cluster) {
    let history: Value =
        serde_json::from_slice(&c.expect(0, &["history", "--json", "--limit", "1"]).stdout)
            .unwrap();
    assert_eq!(history[0]["result"], "interrupted");
    assert!(stdout(&c.expect(0, &["status"])).contains("Lock: free"));
    c.expect(0, &["history", "--verify"]);
}

/// Ctrl-C while the first of two changed pool stacks starts: the second is never started
/// (starting one may take a while, so apply asks before each).
#[test]
fn ctrl_c_while_a_pool_stack_starts_leaves_the_next_one_unstarted() {
    let c = Cluster::new("poolint", false, None);
    c.set("stackPerPool", "true");
    let pools = |instance_type: &str| {
        format!(
            "[{{name: gpu, count: 1, instanceType: {instance_type}}}, {{name: batch, count: 1, instanceType: {instance_type}}}]"
        )
    };
    c.set("nodePools", &pools("m5.large"));
    c.plan_and_apply();
    c.set("nodePools", &pools("m6i.large"));
    c.expect(0, &["plan", "-o", "plan.json"]);
    let pid = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let executed = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (p, e) = (pid.clone(), executed.clone());
    c.proxy.intercept(Arc::new(move |req| {
        if req.service == "cloudformation" && req.operation == "ExecuteChangeSet" {
            let mut executed = e.lock().unwrap();
            executed.push(req.body.to_string());
            if executed.len() == 1 {
                kill("-INT", p.load(Ordering::SeqCst));
                // Delivered while the first pool stack starts.
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        None
    }));
    let message = apply_failing_with_pid_in(&c, &pid);
    assert!(
        message.contains("interrupted before pool stack")
            && message.contains("-pool-gpu was started"),
        "{message}"
    );
    let executed = executed.lock().unwrap().clone();
    assert_eq!(executed.len(), 1, "{executed:#?}");
    assert!(executed[0].contains("pool-batch"), "{executed:#?}");
    c.proxy.intercept(Arc::new(|_| None));
    interrupted_and_unlocked(&c);
}

fn local_serial(c: &Cluster) -> u64 {
    let state: Value =
        serde_json::from_slice(&std::fs::read(c.path("state/state.json")).unwrap()).unwrap();
    state["serial"].as_u64().unwrap()
}

fn signal(child: &std::process::Child, which: &str) {
    kill(which, child.id());
}

fn kill(which: &str, pid: u32) {
    let sent = std::process::Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// Runs `apply plan.json` with its pid in `pid` (for the proxy's interceptor to signal) and
/// returns its stderr once it has exited 1.
fn apply_failing_with_pid_in(c: &Cluster, pid: &std::sync::atomic::AtomicU32) -> String {
    let child = c.spawn_apply(&[]);
    pid.store(child.id(), Ordering::SeqCst);
    let out = child.wait_with_output().unwrap();
    let message = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{message}");
    message
}

/// SIGTERM (a CI job cancelled) while apply checks the change set, before executing it: apply
/// stops there, nothing in AWS changes, and the same plan applies afterwards, under nohup
/// through a hang-up.
#[test]
fn sigterm_before_the_change_set_executes_changes_nothing_and_the_plan_still_applies() {
    let c = Cluster::new("sigterm", false, None);
    // The layout of one stack, which clusters made before init wrote stackPerPool keep.
    c.set("stackPerPool", "false");
    c.plan_and_apply();
    c.set("workerCount", "2");
    c.expect(0, &["plan", "-o", "plan.json"]);
    let pid = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let executed = Arc::new(AtomicBool::new(false));
    let (p, e) = (pid.clone(), executed.clone());
    c.proxy.intercept(Arc::new(move |req| {
        if req.service == "cloudformation" && req.operation == "ExecuteChangeSet" {
            e.store(true, Ordering::SeqCst);
        }
        let pid = p.load(Ordering::SeqCst);
        if req.service == "cloudformation" && req.operation == "DescribeChangeSet" && pid != 0 {
            kill("-TERM", pid);
            // Delivered before apply reads the answer.
            std::thread::sleep(Duration::from_millis(300));
        }
        None
    }));
    let message = apply_failing_with_pid_in(&c, &pid);
    assert!(
        message.contains("was executed; nothing of this plan was started"),
        "{message}"
    );
    assert!(
        !executed.load(Ordering::SeqCst),
        "the change set was executed"
    );
    c.proxy.intercept(Arc::new(|_| None));
    interrupted_and_unlocked(&c);
    // The same plan, applied under nohup: a hang-up while it follows the stack is ignored.
    let pid = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let (p, hung_up) = (pid.clone(), Arc::new(AtomicBool::new(false)));
    let h = hung_up.clone();
    c.proxy.intercept(Arc::new(move |req| {
        let pid = p.load(Ordering::SeqCst);
        if req.service == "cloudformation"
            && req.operation == "DescribeStacks"
            && pid != 0
            && !h.swap(true, Ordering::SeqCst)
        {
            kill("-HUP", pid);
            std::thread::sleep(Duration::from_millis(300));
        }
        None
    }));
    let child = c.spawn_apply_under_nohup();
    pid.store(child.id(), Ordering::SeqCst);
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(hung_up.load(Ordering::SeqCst), "{said}");
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(!said.contains("Interrupt received"), "{said}");
    c.proxy.intercept(Arc::new(|_| None));
    assert_eq!(local_serial(&c), 2);
    c.expect(0, &["history", "--verify"]);
}

#[test]
fn certificates_near_expiry_are_reissued_and_every_not_after_is_in_the_plan() {
    let c = Cluster::new("renew", false, None);
    c.plan_and_apply();
    c.expect(0, &["plan", "-o", "keep.json"]);
    let keep: Value = serde_json::from_slice(&std::fs::read(c.path("keep.json")).unwrap()).unwrap();
    let certs = keep["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), kube_aws::assets::tls::NAMES.len());
    assert!(certs.iter().all(|c| c["action"] == "keep"));
    for c in certs {
        let not_after = c["not_after"].as_str().unwrap();
        if c["name"] == "bootstrap-token" || c["name"] == "secrets-encryption" {
            assert!(not_after.starts_with("never"), "{c}");
        } else {
            assert!(not_after.ends_with('Z'), "{c}");
        }
    }

    c.expect(
        2,
        &[
            "plan",
            "--renew-before",
            "400",
            "-o",
            "renew.json",
            "--detailed-exitcode",
        ],
    );
    let renew: Value =
        serde_json::from_slice(&std::fs::read(c.path("renew.json")).unwrap()).unwrap();
    // Fine once, to renew every leaf now; the plan says it would be so on every plan.
    assert!(
        renew["notes"].to_string().contains(
            "the renewal window (--renew-before, 400 days) is not shorter than tlsCertDurationDays (365): every leaf certificate is due now"
        ),
        "{}",
        renew["notes"]
    );
    for cert in renew["certificates"].as_array().unwrap() {
        if cert["name"] == "ca" {
            assert_eq!(cert["action"], "keep", "the CA lasts ten years");
        } else if ["service-account", "bootstrap-token", "secrets-encryption"]
            .contains(&cert["name"].as_str().unwrap())
        {
            assert_eq!(
                cert["action"], "keep",
                "{} is never rotated by a renewal: what it signed or encrypted would be lost",
                cert["name"]
            );
        } else {
            assert_eq!(cert["action"], "issue", "{cert}");
            assert!(
                cert["reason"]
                    .as_str()
                    .unwrap()
                    .contains("within the renewal window"),
                "{cert}"
            );
        }
    }
    let apiserver = renew["assets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["path"] == "tls/apiserver")
        .unwrap();
    assert_eq!(apiserver["action"], "update");

    // A window that reaches the CA's expiry would issue a new CA, which the control-plane boot
    // test showed breaks the running cluster (the restarted API server could not reach etcd:
    // "x509: certificate signed by unknown authority"); plan refuses and writes nothing.
    let out = c.expect(1, &["plan", "--renew-before", "36500", "-o", "ca.json"]);
    let text = stderr(&out);
    assert!(
        text.contains("the cluster CA expires at") && text.contains("would issue a new cluster CA"),
        "{text}"
    );
    assert!(!c.path("ca.json").exists());
    // So does a changed CA setting.
    c.set("tlsCADurationDays", "4000");
    let out = c.expect(1, &["plan", "-o", "ca.json"]);
    assert!(
        stderr(&out).contains("tlsCADurationDays"),
        "{}",
        stderr(&out)
    );
    assert!(!c.path("ca.json").exists());
}

#[test]
fn a_template_over_51200_bytes_goes_through_the_template_bucket_or_the_state_bucket() {
    let pools = "[{name: a}, {name: b}, {name: c}, {name: d}]";
    let local = Cluster::new("biglocal", false, None);
    local.set("nodePools", pools);
    local.expect(0, &["plan", "-o", "plan.json"]);
    let plan: Value =
        serde_json::from_slice(&std::fs::read(local.path("plan.json")).unwrap()).unwrap();
    let url = plan["stack"]["template_url"].as_str().unwrap();
    let sha256 = plan["stack"]["template_sha256"].as_str().unwrap();
    assert_eq!(
        url,
        format!(
            "https://{}.s3.us-west-2.amazonaws.com/{}/templates/{sha256}.json",
            moto().artifact_bucket(),
            local.name
        )
    );
    local.expect(0, &["apply", "plan.json"]);

    let s3 = Cluster::new("bigs3", true, None);
    s3.set("nodePools", pools);
    s3.expect(0, &["plan", "-o", "plan.json"]);
    let plan: Value =
        serde_json::from_slice(&std::fs::read(s3.path("plan.json")).unwrap()).unwrap();
    let url = plan["stack"]["template_url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!(
            "https://{}.s3.us-west-2.amazonaws.com/",
            s3.bucket.as_ref().unwrap()
        )),
        "{url}"
    );
    assert!(plan["template"].as_str().unwrap().len() > 51_200);
    s3.expect(0, &["apply", "plan.json"]);
}

#[test]
fn a_hosted_zone_that_is_not_a_parent_of_the_dns_name_is_refused() {
    let c = Cluster::new("zone", false, None);
    let other = moto().create_zone("unrelated.org");
    c.set("hostedZoneId", &other);
    let out = c.expect(1, &["plan"]);
    assert!(
        stderr(&out).contains("hosted zone unrelated.org"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains(&format!(
            "is not a parent of externalDNSName api.{}.example.com",
            c.name
        )),
        "{}",
        stderr(&out)
    );
    c.set("hostedZoneId", "Z0000000000000000MISSING");
    let out = c.expect(1, &["plan"]);
    assert!(
        stderr(&out).contains("hosted zone Z0000000000000000MISSING does not exist"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn another_region_or_another_accounts_stack_is_refused_before_anything_is_planned() {
    let c = Cluster::new("bind", false, None);
    c.plan_and_apply();

    // --region elsewhere would have planned a second cluster there.
    c.proxy.reset();
    let out = c.expect(1, &["plan", "--region", "us-east-1"]);
    assert!(
        stderr(&out).contains(
            "--region (or AWS_REGION) is us-east-1 but cluster.yaml's region is us-west-2"
        ),
        "{}",
        stderr(&out)
    );
    assert!(c.proxy.seen().is_empty(), "{:?}", c.proxy.seen());

    // Credentials for another account that has a stack of the same name.
    let name = c.name.clone();
    let other = format!(
        "arn:aws:cloudformation:us-west-2:210987654321:stack/{name}/00000000-0000-4000-8000-00000000beef"
    );
    let served = other.clone();
    c.proxy.intercept(std::sync::Arc::new(move |req| {
        (req.service == "cloudformation" && req.operation == "DescribeStacks").then(|| {
            (200, format!(
                r#"<DescribeStacksResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><DescribeStacksResult><Stacks><member><StackName>{name}</StackName><StackId>{served}</StackId><CreationTime>2026-11-25T20:00:00.000Z</CreationTime><StackStatus>CREATE_COMPLETE</StackStatus><Outputs/></member></Stacks></DescribeStacksResult><ResponseMetadata><RequestId>b1</RequestId></ResponseMetadata></DescribeStacksResponse>"#
            ))
        })
    }));
    c.proxy.reset();
    let out = c.expect(1, &["plan"]);
    assert!(
        stderr(&out).contains(&format!("here is {other}, not the stack the state records")),
        "{}",
        stderr(&out)
    );
    let writes: Vec<String> = c
        .proxy
        .seen()
        .iter()
        .map(|r| r.operation.clone())
        .filter(|op| op.contains("ChangeSet"))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
}

#[test]
fn an_apply_whose_caller_sts_cannot_name_is_refused_before_the_lock() {
    let c = Cluster::new("nosts", false, None);
    c.expect(0, &["plan", "-o", "plan.json"]);
    c.proxy.intercept(std::sync::Arc::new(|req| {
        (req.service == "sts").then(|| {
            (403, r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not allowed</Message></Error><RequestId>s1</RequestId></ErrorResponse>"#.to_string())
        })
    }));
    let out = c.expect(1, &["apply", "plan.json"]);
    assert!(
        stderr(&out).contains("STS cannot say who this caller is"),
        "{}",
        stderr(&out)
    );
    assert!(!c.path("state/state.lock").exists());
    assert!(!c.path("state/state.json").exists());
    let history = stdout(&c.expect(0, &["history", "--json"]));
    assert_eq!(
        history.trim(),
        "[]",
        "no audit entry under an unverified name"
    );
}

#[test]
fn a_local_state_write_behind_a_stopped_holder_gives_up_with_a_reason() {
    let c = Cluster::new("caslock", false, None);
    c.plan_and_apply();
    // What a kube-aws stopped inside a compare-and-swap holds.
    let held = std::fs::OpenOptions::new()
        .write(true)
        .open(c.path("state/.cas.lock"))
        .expect("the lock file exists after an apply");
    c.set("workerCount", "2");
    c.expect(0, &["plan", "-o", "plan.json"]);
    held.lock().unwrap();
    let out = c.expect(1, &["apply", "plan.json"]);
    assert!(
        stderr(&out).contains("a kube-aws that was stopped (Ctrl-Z, a debugger) keeps it"),
        "{}",
        stderr(&out)
    );
    held.unlock().unwrap();
    // Nothing was half-done: the same reviewed plan applies once the holder is gone.
    c.expect(0, &["apply", "plan.json"]);
}

/// Serves `UPDATE_IN_PROGRESS` for the stack for `busy` after ExecuteChangeSet reaches moto,
/// then lets moto answer again; returns whether apply has started following.
pub(crate) fn hold_stack_in_progress(c: &Cluster, busy: Duration) -> Arc<AtomicBool> {
    let executed: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
    let polled = Arc::new(AtomicBool::new(false));
    let name = c.name.clone();
    let (e, p) = (executed.clone(), polled.clone());
    c.proxy.intercept(Arc::new(move |req| {
        if req.service != "cloudformation" {
            return None;
        }
        match req.operation {
            "ExecuteChangeSet" => {
                *e.lock().unwrap() = Some(Instant::now());
                None
            }
            "DescribeStacks" => {
                let since = (*e.lock().unwrap())?;
                if since.elapsed() > busy {
                    return None;
                }
                p.store(true, Ordering::SeqCst);
                Some((200, stack_updating(&name)))
            }
            _ => None,
        }
    }));
    polled
}

/// CloudFormation's DescribeStacks answer for stack `name` while it updates.
fn stack_updating(name: &str) -> String {
    format!(
        r#"<DescribeStacksResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><DescribeStacksResult><Stacks><member><StackName>{name}</StackName><StackId>arn:aws:cloudformation:us-west-2:123456789012:stack/{name}/1</StackId><CreationTime>2026-11-25T20:00:00.000Z</CreationTime><StackStatus>UPDATE_IN_PROGRESS</StackStatus></member></Stacks></DescribeStacksResult><ResponseMetadata><RequestId>y</RequestId></ResponseMetadata></DescribeStacksResponse>"#
    )
}

/// Starts `apply plan.json` (with `env`) while CloudFormation is held `UPDATE_IN_PROGRESS` for
/// `busy` after the change set executes, and returns once apply is following the stack.
pub(crate) fn apply_while_the_stack_is_busy(
    c: &Cluster,
    busy: Duration,
    env: &[(&str, &str)],
) -> std::process::Child {
    let polled = hold_stack_in_progress(c, busy);
    let child = c.spawn_apply(env);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !polled.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "apply never followed the stack");
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

pub(crate) fn read_lock(c: &Cluster) -> Option<Value> {
    let bytes = std::fs::read(c.path("state/state.lock")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[test]
fn a_stack_update_longer_than_the_lease_keeps_the_lock_renewed_and_never_expired() {
    let c = Cluster::new("lease", false, None);
    c.plan_and_apply();
    c.set("workerCount", "2");
    c.expect(0, &["plan", "-o", "plan.json"]);
    // A 3-second lease over a 14-second update: without renewal it expires four times over,
    // and polls backing off to several seconds apart would let it lapse between two of them.
    let child = apply_while_the_stack_is_busy(
        &c,
        Duration::from_secs(14),
        &[("KUBE_AWS_LOCK_LEASE_SECONDS", "3")],
    );
    let mut leases = std::collections::BTreeSet::new();
    let mut expired_seen = Vec::new();
    while let Some(lock) = read_lock(&c) {
        let expires = lock["lease_expires"].as_str().unwrap().to_string();
        let at =
            time::OffsetDateTime::parse(&expires, &time::format_description::well_known::Rfc3339)
                .unwrap();
        // One second of slack for the file's whole-second timestamps.
        if at + time::Duration::seconds(1) < time::OffsetDateTime::now_utc() {
            expired_seen.push(expires.clone());
        }
        leases.insert(expires);
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "lease: 3 s lease over a 14 s update: {} distinct lease_expires values seen, {} expired",
        leases.len(),
        expired_seen.len()
    );
    assert!(
        leases.len() >= 3,
        "the lease was renewed while following: {leases:?}"
    );
    assert!(
        expired_seen.is_empty(),
        "the lock looked expired: {expired_seen:?}"
    );
    let history: Value =
        serde_json::from_slice(&c.expect(0, &["history", "--json", "--limit", "1"]).stdout)
            .unwrap();
    assert_eq!(history[0]["result"], "succeeded");
}

#[test]
fn a_lock_removed_while_the_stack_changes_ends_the_apply_as_lock_lost_without_writing_state() {
    let c = Cluster::new("lostlock", false, None);
    c.plan_and_apply();
    c.set("workerCount", "2");
    c.expect(0, &["plan", "-o", "plan.json"]);
    let child = apply_while_the_stack_is_busy(
        &c,
        Duration::from_secs(5),
        &[("KUBE_AWS_LOCK_LEASE_SECONDS", "3")],
    );
    let id = read_lock(&c).unwrap()["id"].as_str().unwrap().to_string();
    c.expect(0, &["state", "unlock", &id, "--force"]);
    let out = child.wait_with_output().unwrap();
    let message = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{message}");
    assert!(
        message.contains(&format!("the state lock {id} was removed or taken over")),
        "{message}"
    );
    assert!(message.contains("the state was not written"), "{message}");
    let history: Value =
        serde_json::from_slice(&c.expect(0, &["history", "--json", "--limit", "3"]).stdout)
            .unwrap();
    assert_eq!(history[0]["result"], "lock_lost", "{history}");
    assert_eq!(history[1]["command"], "state unlock", "{history}");
    assert_eq!(history[2]["result"], "started", "{history}");
    let state: Value =
        serde_json::from_slice(&std::fs::read(c.path("state/state.json")).unwrap()).unwrap();
    assert_eq!(state["serial"], 1);
    // Nobody holds the lock now; the next plan shows what the stack differs from the state.
    c.expect(0, &["plan"]);
}

/// Real credentials for a second moto account (STS AssumeRole into 210987654321): the
/// cluster's stack is not there, so plan asks STS, finds another account and refuses; apply of
/// the reviewed plan with those credentials is refused before the lock. Nothing is written.
#[test]
fn credentials_for_a_second_account_are_refused_by_plan_and_apply_before_any_write() {
    let c = Cluster::new("account", false, None);
    c.plan_and_apply();
    c.set("workerCount", "2");
    c.expect(0, &["plan", "-o", "plan.json"]);
    let creds = block_on(async {
        let sts = aws_sdk_sts::Client::new(&moto().sdk_config().await);
        sts.assume_role()
            .role_arn("arn:aws:iam::210987654321:role/other-team")
            .role_session_name("elsewhere")
            .send()
            .await
            .unwrap()
            .credentials
            .unwrap()
    });
    let other = |args: &[&str]| {
        kube_aws(moto(), c.dir.path())
            .env("AWS_ENDPOINT_URL", &c.proxy.endpoint)
            .env("AWS_ACCESS_KEY_ID", creds.access_key_id())
            .env("AWS_SECRET_ACCESS_KEY", creds.secret_access_key())
            .env("AWS_SESSION_TOKEN", creds.session_token())
            .args(args)
            .output()
            .unwrap()
    };
    let state_before = std::fs::read(c.path("state/state.json")).unwrap();
    let entries_before = std::fs::read_dir(c.path("state/audit")).unwrap().count();
    let zone_before = moto().zone_records(&c.zone_id);
    c.proxy.reset();
    let out = other(&["plan"]);
    let message = String::from_utf8_lossy(&out.stderr).to_string();
    println!("plan as 210987654321: {message}");
    assert_eq!(out.status.code(), Some(1), "{message}");
    assert!(
        message.contains("the state records the stack in account 123456789012")
            && message.contains("these credentials are for account 210987654321"),
        "{message}"
    );
    let out = other(&["apply", "plan.json"]);
    let message = String::from_utf8_lossy(&out.stderr).to_string();
    println!("apply as 210987654321: {message}");
    assert_eq!(out.status.code(), Some(1), "{message}");
    let writes: Vec<String> = c
        .proxy
        .seen()
        .iter()
        .filter(|r| {
            r.cluster_write().is_some()
                || r.operation.starts_with("Create")
                || r.operation.starts_with("PUT")
        })
        .map(|r| r.operation.clone())
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert_eq!(moto().zone_records(&c.zone_id), zone_before);
    assert_eq!(
        std::fs::read(c.path("state/state.json")).unwrap(),
        state_before
    );
    assert_eq!(
        std::fs::read_dir(c.path("state/audit")).unwrap().count(),
        entries_before,
        "no audit entry, no lock"
    );
    assert!(!c.path("state/state.lock").exists());
}

/// Someone who can write the state's folder (or bucket) writes pending certificates naming
/// the state's lineage and serial, with a CA of their own appended: the next plan that issues
/// a certificate would have reused them. Without a `started` audit entry of their plan that
/// nothing closed, and a kept plan issuing exactly them, they are refused, and the plan says
/// how to clear them.
#[test]
fn forged_pending_certificates_are_refused_not_reused() {
    let c = Cluster::new("pendforge", false, None);
    c.plan_and_apply();
    let state: Value =
        serde_json::from_slice(&std::fs::read(c.path("state/state.json")).unwrap()).unwrap();
    let applied: Value =
        serde_json::from_slice(&c.expect(0, &["history", "--json", "--limit", "1"]).stdout)
            .unwrap();
    let applied_plan = applied[0]["plan_sha256"].as_str().unwrap().to_string();
    let mut tls = state["tls"].clone();
    let ca = tls["ca"]["certificate_pem"].as_str().unwrap().to_string();
    tls["ca"]["certificate_pem"] = Value::String(format!("{ca}{ca}"));
    c.set("externalDNSName", &format!("k8s.{}.example.com", c.name));
    for (what, plan_sha256, refusal) in [
        (
            "a plan nobody applied",
            "d".repeat(64),
            "the audit log has no `started` entry of that plan",
        ),
        (
            "the plan the last apply finished",
            applied_plan.clone(),
            "already closed that apply (succeeded)",
        ),
    ] {
        let pending = serde_json::json!({
            "format_version": 1,
            "lineage": state["lineage"],
            "prior_serial": state["serial"],
            "plan_sha256": plan_sha256,
            "change_set_arn": null,
            "written": "2026-12-06T00:00:00Z",
            "tls": tls,
        });
        std::fs::write(
            c.path("state/pending.json"),
            serde_json::to_vec_pretty(&pending).unwrap(),
        )
        .unwrap();
        let _ = std::fs::remove_file(c.path("plan.json"));
        let out = c.expect(1, &["plan", "-o", "plan.json"]);
        let message = stderr(&out);
        assert!(
            message.contains("certificates said to be shipped by an interrupted apply")
                && message.contains(refusal)
                && message.contains("remove"),
            "{what}: {message}"
        );
        assert!(!c.path("plan.json").exists(), "{what}: a plan was written");
    }
    // Cleared as the message says, the plan issues afresh from the state's own CA.
    std::fs::remove_file(c.path("state/pending.json")).unwrap();
    let out = c.expect(0, &["plan", "-o", "plan.json"]);
    let plan = c.plan_file("plan.json");
    assert_eq!(
        plan["new_state"]["tls"]["ca"]["certificate_pem"],
        Value::String(ca),
        "{}",
        stdout(&out)
    );
}
