//! What moto cannot show, served from loopback in the shapes of the AWS API reference: a
//! rolled-back update with per-resource failure events, Replacement details in a change set,
//! and FAILED change sets (with and without changes). Everything else is moto.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use crate::cluster::{Cluster, stderr, stdout};

const NS: &str = "http://cloudformation.amazonaws.com/doc/2010-05-15/";

fn param(body: &str, name: &str) -> Option<String> {
    body.split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .map(|v| v.replace("%2F", "/").replace("%3A", ":").replace("+", " "))
}

fn stack_id(name: &str) -> String {
    format!(
        "arn:aws:cloudformation:us-west-2:123456789012:stack/{name}/5b2a3c4d-0000-4000-8000-000000000001"
    )
}

fn describe_stacks(name: &str, status: &str, reason: &str) -> String {
    format!(
        r#"<DescribeStacksResponse xmlns="{NS}"><DescribeStacksResult><Stacks><member><StackName>{name}</StackName><StackId>{id}</StackId><CreationTime>2026-11-25T20:00:00.000Z</CreationTime><StackStatus>{status}</StackStatus><StackStatusReason>{reason}</StackStatusReason><Outputs/></member></Stacks></DescribeStacksResult><ResponseMetadata><RequestId>a1</RequestId></ResponseMetadata></DescribeStacksResponse>"#,
        id = stack_id(name)
    )
}

fn event(name: &str, n: u32, logical: &str, kind: &str, status: &str, reason: &str) -> String {
    format!(
        r#"<member><EventId>served-{n}</EventId><StackId>{id}</StackId><StackName>{name}</StackName><LogicalResourceId>{logical}</LogicalResourceId><PhysicalResourceId>{logical}-physical</PhysicalResourceId><ResourceType>{kind}</ResourceType><Timestamp>2026-11-25T21:00:{n:02}.000Z</Timestamp><ResourceStatus>{status}</ResourceStatus><ResourceStatusReason>{reason}</ResourceStatusReason></member>"#,
        id = stack_id(name)
    )
}

/// The events of an update in which `logical` fails for `reason` and the stack rolls back,
/// newest first, as DescribeStackEvents lists them.
fn rollback_events(
    stack: &str,
    logical: &str,
    kind: &str,
    reason: &str,
    started: &str,
) -> Vec<String> {
    let failed = format!("The following resource(s) failed to update: [{logical}].");
    vec![
        event(
            stack,
            9,
            stack,
            "AWS::CloudFormation::Stack",
            "UPDATE_ROLLBACK_COMPLETE",
            "",
        ),
        event(stack, 8, logical, kind, "UPDATE_COMPLETE", ""),
        event(
            stack,
            7,
            stack,
            "AWS::CloudFormation::Stack",
            "UPDATE_ROLLBACK_IN_PROGRESS",
            &failed,
        ),
        event(stack, 6, logical, kind, "UPDATE_FAILED", reason),
        event(stack, 5, logical, kind, "UPDATE_IN_PROGRESS", started),
    ]
}

/// Serves CloudFormation's side of an update that rolls back: `events` (newest first) once the
/// change set is executed, and the stack in UPDATE_ROLLBACK_COMPLETE for `stack_reason`.
fn serve_rolled_back_update(c: &Cluster, events: Vec<String>, stack_reason: &'static str) {
    serve_execution(
        c,
        events,
        describe_stacks(&c.name, "UPDATE_ROLLBACK_COMPLETE", stack_reason),
    );
}

/// Once the change set is executed (which is served too), DescribeStackEvents lists `events`
/// (newest first) and DescribeStacks answers `described`; everything before is moto.
fn serve_execution(c: &Cluster, events: Vec<String>, described: String) {
    let executed = Arc::new(AtomicBool::new(false));
    let events = events.join("");
    c.proxy.intercept(Arc::new(move |req| {
        if req.service != "cloudformation" {
            return None;
        }
        match req.operation {
            "ExecuteChangeSet" => {
                executed.store(true, Ordering::SeqCst);
                Some((200, format!(r#"<ExecuteChangeSetResponse xmlns="{NS}"><ExecuteChangeSetResult/><ResponseMetadata><RequestId>e1</RequestId></ResponseMetadata></ExecuteChangeSetResponse>"#)))
            }
            "DescribeStackEvents" if executed.load(Ordering::SeqCst) => Some((200, format!(r#"<DescribeStackEventsResponse xmlns="{NS}"><DescribeStackEventsResult><StackEvents>{events}</StackEvents></DescribeStackEventsResult><ResponseMetadata><RequestId>e2</RequestId></ResponseMetadata></DescribeStackEventsResponse>"#))),
            "DescribeStacks" if executed.load(Ordering::SeqCst) => Some((200, described.clone())),
            _ => None,
        }
    }));
}

#[test]
fn a_rolled_back_update_exits_1_keeps_the_serial_and_audits_the_failing_resource() {
    let c = Cluster::new("rollback", false, None);
    c.plan_and_apply();
    c.set("workerInstanceType", "x9.mega");
    c.expect(0, &["plan", "-o", "plan.json"]);

    let name = c.name.clone();
    let reason =
        "The instance type x9.mega is not supported in us-west-2a (Service: Ec2, Status Code: 400)";
    serve_rolled_back_update(
        &c,
        rollback_events(
            &name,
            "LaunchTemplateWorkers",
            "AWS::EC2::LaunchTemplate",
            reason,
            "",
        ),
        "The following resource(s) failed to update: [LaunchTemplateWorkers].",
    );

    let out = c.expect(1, &["apply", "plan.json"]);
    let message = stderr(&out);
    assert!(message.contains("apply rolled_back"), "{message}");
    assert!(
        message.contains("LaunchTemplateWorkers (AWS::EC2::LaunchTemplate): UPDATE_FAILED"),
        "{message}"
    );
    assert!(message.contains("x9.mega is not supported"), "{message}");

    let state: Value =
        serde_json::from_slice(&std::fs::read(c.path("state/state.json")).unwrap()).unwrap();
    assert_eq!(state["serial"], 1, "the state stays at its prior serial");
    let history: Value = serde_json::from_str(&stdout(
        &c.expect(0, &["history", "--json", "--limit", "1"]),
    ))
    .unwrap();
    assert_eq!(history[0]["result"], "rolled_back");
    assert!(
        history[0]["message"]
            .as_str()
            .unwrap()
            .contains("x9.mega is not supported")
    );
    assert_eq!(history[0]["state_serial_after"], Value::Null);
    let status = stdout(&c.expect(0, &["status"]));
    assert!(status.contains("Lock: free"), "{status}");
}

#[test]
fn a_node_that_never_signals_ready_rolls_the_update_back_and_apply_names_the_group() {
    let c = Cluster::new("nosignal", false, None);
    c.plan_and_apply();
    c.set("workerInstanceType", "m5.large");
    c.expect(0, &["plan", "-o", "plan.json"]);
    let name = c.name.clone();
    // CloudFormation's words when a rolling update's new instance never signals (its
    // Node never became Ready before node-ready-signaller's deadline, or the instance died).
    let timeout = "Received 0 SUCCESS signal(s) out of 1. Unable to satisfy 100% MinSuccessfulInstancesPercent requirement";
    serve_rolled_back_update(
        &c,
        rollback_events(
            &name,
            "AutoScaleWorkers",
            "AWS::AutoScaling::AutoScalingGroup",
            timeout,
            "Rolling update initiated. Terminating 1 obsolete instance(s) in batches of 1, while keeping at least 1 instance(s) in service. Waiting on resource signals with a timeout of PT15M when new instances are added to the autoscaling group.",
        ),
        "The following resource(s) failed to update: [AutoScaleWorkers].",
    );
    let out = c.expect(1, &["apply", "plan.json"]);
    let message = stderr(&out);
    assert!(message.contains("apply rolled_back"), "{message}");
    assert!(
        message.contains("AutoScaleWorkers (AWS::AutoScaling::AutoScalingGroup): UPDATE_FAILED Received 0 SUCCESS signal(s) out of 1"),
        "{message}"
    );
    println!("{}", message.trim());
    let history: Value = serde_json::from_str(&stdout(
        &c.expect(0, &["history", "--json", "--limit", "1"]),
    ))
    .unwrap();
    assert_eq!(history[0]["result"], "rolled_back");
    let state: Value =
        serde_json::from_slice(&std::fs::read(c.path("state/state.json")).unwrap()).unwrap();
    assert_eq!(state["serial"], 1, "the state stays at its prior serial");
}

fn change_set(name: &str, stack: &str, status: &str, reason: &str, changes: &str) -> String {
    format!(
        r#"<DescribeChangeSetResponse xmlns="{NS}"><DescribeChangeSetResult><ChangeSetName>{name}</ChangeSetName><ChangeSetId>arn:aws:cloudformation:us-west-2:123456789012:changeSet/{name}/6c3b4d5e-0000-4000-8000-000000000002</ChangeSetId><StackId>{id}</StackId><StackName>{stack}</StackName><CreationTime>2026-11-25T21:00:00.000Z</CreationTime><Status>{status}</Status><StatusReason>{reason}</StatusReason><ExecutionStatus>{execution}</ExecutionStatus><Changes>{changes}</Changes></DescribeChangeSetResult><ResponseMetadata><RequestId>c1</RequestId></ResponseMetadata></DescribeChangeSetResponse>"#,
        id = stack_id(stack),
        execution = if status == "FAILED" {
            "UNAVAILABLE"
        } else {
            "AVAILABLE"
        },
    )
}

#[test]
fn replacement_details_from_the_change_set_are_shown_as_cloudformation_gave_them() {
    let c = Cluster::new("replace", false, None);
    // The layout of one stack, which clusters made before init wrote stackPerPool keep.
    c.set("stackPerPool", "false");
    c.plan_and_apply();
    c.set("amiId", "ami-0123456789abcdef0");
    let stack = c.name.clone();
    c.proxy.intercept(Arc::new(move |req| {
        (req.service == "cloudformation" && req.operation == "DescribeChangeSet").then(|| {
            let name = param(req.body, "ChangeSetName").unwrap();
            let changes = r#"<member><Type>Resource</Type><ResourceChange><Action>Modify</Action><LogicalResourceId>InstanceController</LogicalResourceId><PhysicalResourceId>i-0a1b2c3d4e5f60718</PhysicalResourceId><ResourceType>AWS::EC2::Instance</ResourceType><Replacement>True</Replacement><Scope><member>Properties</member></Scope><Details><member><Target><Attribute>Properties</Attribute><Name>ImageId</Name><RequiresRecreation>Always</RequiresRecreation></Target><Evaluation>Static</Evaluation><ChangeSource>DirectModification</ChangeSource></member></Details></ResourceChange></member>"#;
            (200, change_set(&name, &stack, "CREATE_COMPLETE", "", changes))
        })
    }));
    let out = c.expect(0, &["plan", "--format", "json"]);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let changes = plan["stack"]["resource_changes"].as_array().unwrap();
    let change = changes
        .iter()
        .find(|c| c["logical_id"] == "InstanceController")
        .unwrap();
    assert_eq!(change["logical_id"], "InstanceController");
    assert_eq!(change["replacement"], "True");
    assert_eq!(change["replacement_source"], "change-set");
    assert_eq!(change["physical_id"], "i-0a1b2c3d4e5f60718");
    assert_eq!(
        change["details"][0],
        "Properties.ImageId (recreation Always, Static)"
    );
    // The new AMI also rolls the workers and the etcd member (their launch templates change).
    assert_eq!(plan["summary"]["replace"], 3);
    let text = stdout(&c.expect(0, &["plan"]));
    assert!(
        text.contains("± InstanceController (AWS::EC2::Instance) [ImageId] replacement: True\n"),
        "{text}"
    );
}

#[test]
fn a_failed_change_set_is_a_no_op_when_nothing_changes_and_an_error_otherwise() {
    let c = Cluster::new("csfail", false, None);
    c.plan_and_apply();
    c.set("stackTags", "{team: platform}");
    let reason = Arc::new(std::sync::Mutex::new(String::new()));
    let stack = c.name.clone();
    let served = reason.clone();
    c.proxy.intercept(Arc::new(move |req| {
        (req.service == "cloudformation" && req.operation == "DescribeChangeSet").then(|| {
            let name = param(req.body, "ChangeSetName").unwrap();
            (
                200,
                change_set(&name, &stack, "FAILED", &served.lock().unwrap(), ""),
            )
        })
    }));

    *reason.lock().unwrap() = "The submitted information didn't contain changes. Submit different information to create a change set.".into();
    let out = c.expect(0, &["plan", "--format", "json"]);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["stack"]["action"], "no-op");
    assert_eq!(plan["stack"]["change_set_name"], Value::Null);
    assert!(
        c.proxy
            .forwarded(Some("cloudformation"))
            .iter()
            .any(|r| r.operation == "DeleteChangeSet"),
        "the empty change set is cleaned up"
    );

    *reason.lock().unwrap() = "Template format error: Unresolved resource dependencies [Missing] in the Resources block of the template".into();
    let out = c.expect(1, &["plan"]);
    assert!(
        stderr(&out)
            .contains("failed: Template format error: Unresolved resource dependencies [Missing]"),
        "{}",
        stderr(&out)
    );
}

/// Serves CloudFormation's side of a create that succeeds (moto cannot create network load
/// balancers): the stack in CREATE_COMPLETE with `outputs`, and `events` (newest first), once
/// the change set is executed. The change set itself, its template and everything else is moto.
fn serve_created_stack(c: &Cluster, events: Vec<String>, outputs: &[(&str, &str)]) {
    let outputs: String = outputs
        .iter()
        .map(|(k, v)| {
            format!("<member><OutputKey>{k}</OutputKey><OutputValue>{v}</OutputValue></member>")
        })
        .collect();
    let described = describe_stacks(&c.name, "CREATE_COMPLETE", "")
        .replace("<Outputs/>", &format!("<Outputs>{outputs}</Outputs>"));
    serve_execution(c, events, described);
}

#[test]
fn an_internal_network_load_balancer_plans_on_moto_applies_and_points_the_record_at_it() {
    let c = Cluster::new("nlb", false, None);
    // The layout of one stack, which clusters made before init wrote stackPerPool keep.
    c.set("stackPerPool", "false");
    c.set(
        "apiEndpointLoadBalancer",
        "{type: network, scheme: internal}",
    );
    let text = stdout(&c.expect(2, &["plan", "-o", "plan.json", "--detailed-exitcode"]));
    let plan = c.plan_file("plan.json");
    let added: Vec<&str> = plan["stack"]["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "Add")
        .map(|r| r["logical_id"].as_str().unwrap())
        .collect();
    for id in [
        "NlbAPIServer",
        "NlbAPIServerTargets",
        "NlbAPIServerListener",
        "AutoScaleController",
    ] {
        assert!(added.contains(&id), "{id} in {added:?}");
    }
    assert!(!added.contains(&"ElbAPIServer") && !added.contains(&"InstanceController"));
    assert!(
        text.contains("CNAME"),
        "the record points at the load balancer's name: {text}"
    );

    let nlb = "kube-aws-nlb-0123456789abcdef.elb.us-west-2.amazonaws.com";
    let name = c.name.clone();
    serve_created_stack(
        &c,
        vec![
            event(
                &name,
                4,
                &name,
                "AWS::CloudFormation::Stack",
                "CREATE_COMPLETE",
                "",
            ),
            event(
                &name,
                3,
                "NlbAPIServerListener",
                "AWS::ElasticLoadBalancingV2::Listener",
                "CREATE_COMPLETE",
                "",
            ),
            event(
                &name,
                2,
                "NlbAPIServer",
                "AWS::ElasticLoadBalancingV2::LoadBalancer",
                "CREATE_COMPLETE",
                "",
            ),
            event(
                &name,
                1,
                "NlbAPIServer",
                "AWS::ElasticLoadBalancingV2::LoadBalancer",
                "CREATE_IN_PROGRESS",
                "",
            ),
        ],
        &[
            ("ControllerEndpoint", nlb),
            ("APIEndpoint", &format!("https://api.{name}.example.com")),
        ],
    );
    let out = c.expect(0, &["apply", "plan.json"]);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("Apply complete"), "{said}");
    assert!(
        stdout(&out).contains(&format!(
            "The API is at https://api.{name}.example.com: `kube-aws kubeconfig -o admin.kubeconfig`"
        )),
        "{said}"
    );
    let record = crate::harness::block_on(async {
        let r53 = aws_sdk_route53::Client::new(&crate::harness::moto().sdk_config().await);
        r53.list_resource_record_sets()
            .hosted_zone_id(&c.zone_id)
            .send()
            .await
            .expect("moto lists the zone")
            .resource_record_sets()
            .iter()
            .find(|r| r.name().trim_end_matches('.') == format!("api.{name}.example.com"))
            .map(|r| {
                (
                    r.r#type().as_str().to_string(),
                    r.resource_records()
                        .iter()
                        .map(|v| v.value().to_string())
                        .collect::<Vec<_>>(),
                )
            })
    });
    assert_eq!(record, Some(("CNAME".to_string(), vec![nlb.to_string()])));
    let out = c.expect(0, &["plan", "--detailed-exitcode"]);
    assert!(stdout(&out).contains("No changes."), "{}", stdout(&out));
}
