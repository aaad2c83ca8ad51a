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
    for (count, voters, words) in [
        (
            1,
            1,
            "etcd's only member (etcd-0) is replaced while etcd has 1 voting member(s): with one of them down there is no quorum, so etcd, and with it the Kubernetes API, is down",
        ),
        (
            3,
            3,
            "etcd members etcd-0, etcd-1, etcd-2 are replaced one at a time (each waits for its member's health signal), so 2 of 3 keep quorum",
        ),
        // A step from 3 to 4 rolls the three voters before the fourth joins.
        (
            4,
            3,
            "etcd members etcd-0, etcd-1, etcd-2, etcd-3 are replaced one at a time (each waits for its member's health signal), so 2 of 3 keep quorum",
        ),
        // Two voters (a step between 1 and 3): each roll takes the quorum with it.
        (
            2,
            2,
            "etcd members etcd-0, etcd-1 are replaced while etcd has 2 voting member(s): with one of them down there is no quorum",
        ),
    ] {
        // Even counts are steps a plan deploys, never what cluster.yaml may say.
        let config = ClusterConfig {
            etcd_count: count,
            ..config("")
        };
        let members = config.etcd_members();
        let change = StackChange {
            resource_changes: members.iter().map(|m| rolling(&m.logical_id)).collect(),
            ..StackChange::without_change_set("demo".into(), crate::planfile::Action::Update, None)
        };
        let note = etcd_replacement_note(&config, voters, &change).unwrap();
        assert!(note.starts_with(words), "{note}");
        let untouched = StackChange {
            resource_changes: vec![rolling("AutoScaleWorkers")],
            ..change
        };
        assert_eq!(etcd_replacement_note(&config, voters, &untouched), None);
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
    let prior = running_with_etcd(0, "old");
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

/// A running cluster with `members` etcd members and the template `template_sha256`, as its
/// state records them.
fn running_with_etcd(members: usize, template_sha256: &str) -> State {
    use crate::assets::{AssetKind, AssetRecord, CloudConfigId, asset_path};
    let mut prior = State::new("demo", "l".into());
    prior.stack = Some(crate::state::StackState {
        name: "demo".into(),
        id: None,
        template_sha256: template_sha256.into(),
        parameters: Default::default(),
        tags: Default::default(),
        render_key: None,
    });
    for i in 0..members {
        let path = asset_path(AssetKind::CloudConfig, &CloudConfigId::Etcd(i).name());
        let record = AssetRecord {
            kind: AssetKind::CloudConfig,
            sha256: "s".into(),
        };
        prior.assets.insert(path, record);
    }
    prior
}

/// An etcd count change moves one member per plan, and only on a running cluster.
#[test]
fn an_etcd_count_change_is_one_member_per_plan() {
    let step = |running: usize, wanted: &str| {
        let config = config(&format!("etcdCount: {wanted}\n"));
        let prior = running_with_etcd(running, "t");
        EtcdStep::of(&config, Some(&prior)).map(|s| {
            let deployed = as_deployed(&config, Some(&prior)).etcd_count as usize;
            assert_eq!(deployed, s.deployed);
            (s.deployed, s.plans_left())
        })
    };
    assert_eq!(step(3, "5"), Some((4, 2)));
    assert_eq!(step(4, "5"), Some((5, 1)));
    assert_eq!(step(5, "3"), Some((4, 2)));
    assert_eq!(step(1, "3"), Some((2, 2)));
    assert_eq!(step(3, "3"), None);
    // Nothing runs yet: the first apply creates etcdCount members at once.
    let five = config("etcdCount: 5\n");
    assert_eq!(EtcdStep::of(&five, None), None);
    assert_eq!(as_deployed(&five, None).etcd_count, 5);
    let mut destroyed = running_with_etcd(3, "t");
    destroyed.stack = None;
    assert_eq!(EtcdStep::of(&five, Some(&destroyed)), None);

    let grow = EtcdStep::of(&five, Some(&running_with_etcd(3, "t")))
        .unwrap()
        .describe();
    assert!(
        grow.starts_with("etcd grows from 3 to 4 members, one member per plan: etcd-3 starts, joins the running cluster as a learner")
            && grow.ends_with("1 more plan(s) after this one reach etcdCount: 5 (plan again after each apply)"),
        "{grow}"
    );
    let shrink = EtcdStep::of(&config("etcdCount: 3\n"), Some(&running_with_etcd(4, "t")))
        .unwrap()
        .describe();
    assert!(
        shrink.contains("removes etcd-3 from the member list")
            && shrink.contains("leaving a quorum of 2 of 3")
            && shrink.ends_with("this plan reaches etcdCount: 3"),
        "{shrink}"
    );
}
