//! plan's decisions that need no AWS: notes, layouts and the offline shortcut.

use super::notes::*;
use super::*;
use crate::planfile::{ResourceAction, ResourceChange};

fn config(extra: &str) -> ClusterConfig {
    let text = format!(
        "clusterName: demo\nexternalDNSName: k8s.example.com\nregion: us-west-2\navailabilityZone: us-west-2a\nkmsKeyArn: arn:aws:kms:us-west-2:1:key/x\ntemplateBucket: demo-artifacts\n{extra}"
    );
    ClusterConfig::parse(Path::new("cluster.yaml"), &text).unwrap()
}

fn rolling(logical_id: &str) -> ResourceChange {
    ResourceChange {
        action: ResourceAction::Modify,
        logical_id: logical_id.into(),
        resource_type: "AWS::AutoScaling::AutoScalingGroup".into(),
        physical_id: None,
        replacement: Some(crate::planfile::Replacement::True),
        replacement_source: None,
        scope: vec![],
        details: vec![],
        changed_properties: vec![],
        rolling: None,
    }
}

/// A replaced etcd member is said in words: the API is down with one member, quorum holds
/// with three; a change that replaces none says nothing.
#[test]
fn an_etcd_replacement_says_whether_the_api_goes_down() {
    for (extra, words) in [
        (
            "",
            "etcd's only member (etcd-0) is replaced: etcd, and with it the Kubernetes API, is down",
        ),
        (
            "etcdCount: 3\n",
            "etcd members etcd-0, etcd-1, etcd-2 are replaced one at a time (each waits for its member's health signal), so 2 of 3 keep quorum",
        ),
    ] {
        let config = config(extra);
        let members = config.etcd_members();
        let change = StackChange {
            resource_changes: members.iter().map(|m| rolling(&m.logical_id)).collect(),
            ..StackChange::without_change_set("demo".into(), crate::planfile::Action::Update, None)
        };
        let note = etcd_replacement_note(&config, &change).unwrap();
        assert!(note.starts_with(words), "{note}");
        let untouched = StackChange {
            resource_changes: vec![rolling("AutoScaleWorkers")],
            ..change
        };
        assert_eq!(etcd_replacement_note(&config, &untouched), None);
    }
}

/// A subnet replaced (a new zone or CIDR) is said with what goes with it; one only modified
/// (its tags) says nothing.
#[test]
fn a_replaced_subnet_says_its_instances_go_with_it() {
    let subnet = |id: &str, replacement| ResourceChange {
        resource_type: "AWS::EC2::Subnet".into(),
        replacement,
        ..rolling(id)
    };
    let change = |changes| StackChange {
        resource_changes: changes,
        ..StackChange::without_change_set("demo".into(), crate::planfile::Action::Update, None)
    };
    let note = subnet_replacement_note(&change(vec![
        subnet("Subnet0", Some(crate::planfile::Replacement::True)),
        rolling("AutoScaleWorkers"),
    ]))
    .unwrap();
    assert!(
        note.starts_with("subnet Subnet0 is replaced (availability zone or CIDR changed), and every instance in it with it: the worker groups roll all their instances"),
        "{note}"
    );
    let two = subnet_replacement_note(&change(vec![
        subnet("Subnet0", Some(crate::planfile::Replacement::True)),
        subnet("Subnet1", Some(crate::planfile::Replacement::Conditional)),
    ]))
    .unwrap();
    assert!(
        two.starts_with("subnets Subnet0, Subnet1 are replaced"),
        "{two}"
    );
    assert_eq!(
        subnet_replacement_note(&change(vec![subnet(
            "Subnet0",
            Some(crate::planfile::Replacement::False)
        )])),
        None
    );
}

/// A stack that runs the plan's template while the state records another is said; one that
/// the plan changes, or whose state agrees, is not.
#[test]
fn a_stack_already_running_the_template_is_said_to_be_recorded_only() {
    let mut prior = State::new("demo", "l".into());
    prior.stack = Some(crate::state::StackState {
        name: "demo".into(),
        id: None,
        template_sha256: "old".into(),
        parameters: Default::default(),
        tags: Default::default(),
        render_key: None,
    });
    let change = |action, sha: &str| {
        StackChange::without_change_set("demo".into(), action, Some(sha.to_string()))
    };
    let note = state_catches_up_note(Some(&prior), &change(Action::NoOp, "new"), &[]).unwrap();
    assert!(
        note.starts_with(
            "CloudFormation finds nothing to change in demo, but the state records another template than this plan's"
        ),
        "{note}"
    );
    assert_eq!(
        state_catches_up_note(Some(&prior), &change(Action::NoOp, "old"), &[]),
        None
    );
    assert_eq!(
        state_catches_up_note(Some(&prior), &change(Action::Update, "new"), &[]),
        None
    );
    assert_eq!(
        state_catches_up_note(None, &change(Action::NoOp, "new"), &[]),
        None
    );
}

#[test]
fn overridden_templates_are_named_and_none_says_nothing() {
    assert_eq!(overrides_note(&[]), None);
    let one = overrides_note(&["stack-template.json"]).unwrap();
    assert!(
        one.starts_with("the cluster directory's own stack-template.json replaces the built-in:"),
        "{one}"
    );
    let two = overrides_note(&["stack-template.json", "userdata/cloud-config-worker"]).unwrap();
    assert!(
        two.contains("stack-template.json, userdata/cloud-config-worker replace the built-ins"),
        "{two}"
    );
}
