//! The checks of what apply re-derives, each against a plan that differs in one way.

use super::*;
use crate::planfile::fixtures::rolling_plan;
use crate::state::{RecordState, StackState};

fn config(extra: &str) -> ClusterConfig {
    let text = format!(
        "clusterName: demo\nexternalDNSName: demo.example.com\nregion: us-west-2\navailabilityZone: us-west-2a\nkmsKeyArn: arn:aws:kms:us-west-2:123456789012:key/x\ntemplateBucket: demo-artifacts\nhostedZoneId: Z0123\ncreateRecordSet: true\n{extra}"
    );
    ClusterConfig::parse(std::path::Path::new("cluster.yaml"), &text).unwrap()
}

const ACCOUNT: &str = "123456789012";
const STACK: &str = "arn:aws:cloudformation:us-west-2:123456789012:stack/demo/1";

fn state() -> State {
    let mut s = State::new("demo", "l".into());
    s.account_id = Some(ACCOUNT.into());
    s.region = Some("us-west-2".into());
    s.stack = Some(StackState {
        name: "demo".into(),
        id: Some(STACK.into()),
        template_sha256: "t".into(),
        parameters: Default::default(),
        tags: Default::default(),
        render_key: None,
    });
    s
}

#[test]
fn a_plan_for_another_region_account_or_stack_is_named_as_such() {
    let config = config("");
    let plan = rolling_plan();
    assert_eq!(
        check_target(&config, &plan, ACCOUNT, Some(&state())),
        Ok(())
    );
    let mut elsewhere = rolling_plan();
    elsewhere.target.region = "us-east-1".into();
    assert_eq!(
        check_target(&config, &elsewhere, ACCOUNT, None),
        Err(PlanMismatch::Region {
            planned: "us-east-1".into(),
            configured: "us-west-2".into()
        })
    );
    assert_eq!(
        check_target(&config, &plan, "210987654321", None),
        Err(PlanMismatch::Account {
            planned: ACCOUNT.into(),
            caller: "210987654321".into()
        })
    );
    let mut other_stack = rolling_plan();
    other_stack.target.stack_id = Some("arn:aws:cloudformation:us-west-2:1:stack/x/2".into());
    assert!(matches!(
        check_target(&config, &other_stack, ACCOUNT, Some(&state())),
        Err(PlanMismatch::Stack { recorded, .. }) if recorded == STACK
    ));
    // A plan that creates the stack again (deleted outside kube-aws) may name no stack.
    other_stack.stack.action = crate::planfile::Action::Create;
    assert_eq!(
        check_target(&config, &other_stack, ACCOUNT, Some(&state())),
        Ok(())
    );
}

#[test]
fn only_the_configured_record_in_its_zone_and_deletions_of_owned_ones_pass() {
    let config = config("");
    let wanted = desired_record_spec(&config);
    let upsert = |name: &str, zone: &str| RecordChange {
        action: RecordAction::Upsert,
        hosted_zone_id: zone.into(),
        name: name.into(),
        record_type: wanted.record_type.clone(),
        ttl: wanted.ttl,
        old_values: None,
        new_values: vec!["203.0.113.9".into()],
    };
    let with = |records: Vec<RecordChange>| {
        let mut plan = rolling_plan();
        plan.records = records;
        plan
    };
    let check = |plan: &Plan, prior: Option<&State>| check_records(&config, plan, prior, None);

    assert_eq!(
        check(&with(vec![upsert(&wanted.name, "/hostedzone/Z0123")]), None),
        Ok(())
    );
    assert!(matches!(
        check(&with(vec![upsert("evil.example.com.", "Z0123")]), None),
        Err(PlanMismatch::OtherRecord { name, .. }) if name == "evil.example.com."
    ));
    assert!(matches!(
        check(&with(vec![upsert(&wanted.name, "ZEVIL")]), None),
        Err(PlanMismatch::OtherZone { zone, wanted, .. }) if zone == "ZEVIL" && wanted == "Z0123"
    ));

    let owned = RecordState {
        hosted_zone_id: "/hostedzone/Z0123".into(),
        name: "old.example.com.".into(),
        record_type: "CNAME".into(),
        ttl: 300,
        values: vec!["lb.example".into()],
    };
    let delete = |values: &str| RecordChange {
        action: RecordAction::Delete,
        hosted_zone_id: "Z0123".into(),
        name: owned.name.clone(),
        record_type: owned.record_type.clone(),
        ttl: 300,
        old_values: None,
        new_values: vec![values.into()],
    };
    let mut prior = state();
    prior.records.push(owned.clone());
    assert_eq!(
        check(&with(vec![delete("lb.example")]), Some(&prior)),
        Ok(())
    );
    assert!(matches!(
        check(&with(vec![delete("somebody-elses.example")]), Some(&prior)),
        Err(PlanMismatch::DeletesUnowned { .. })
    ));
    assert!(matches!(
        check(&with(vec![delete("lb.example")]), None),
        Err(PlanMismatch::DeletesUnowned { .. })
    ));

    let mut destroy = with(vec![upsert(&wanted.name, "Z0123")]);
    destroy.kind = PlanKind::Destroy;
    assert!(matches!(
        check(&destroy, None),
        Err(PlanMismatch::DestroyWritesRecord { .. })
    ));
    let off = ClusterConfig {
        create_record_set: false,
        ..config.clone()
    };
    assert!(matches!(
        check_records(&off, &with(vec![upsert(&wanted.name, "Z0123")]), None, None),
        Err(PlanMismatch::OtherRecord { wanted, .. }) if wanted == "no record (createRecordSet: false)"
    ));
}

#[test]
fn a_new_state_for_another_cluster_or_lineage_or_with_unlisted_assets_is_refused() {
    let config = config("");
    let plan = rolling_plan();
    let mut other = rolling_plan();
    other.new_state.cluster_name = "other".into();
    assert_eq!(
        check_new_state(&config, &other, None, None),
        Err(PlanMismatch::StateCluster {
            found: "other".into(),
            configured: "demo".into()
        })
    );
    let mut prior = state();
    prior.lineage = "another-lineage".into();
    assert!(matches!(
        check_new_state(&config, &plan, Some(&prior), None),
        Err(PlanMismatch::Lineage { recorded, .. }) if recorded == "another-lineage"
    ));
    // The fixture's new_state lists no assets, its plan two: both paths are named.
    prior.lineage = plan.new_state.lineage.clone();
    assert_eq!(
        check_new_state(&config, &plan, Some(&prior), None),
        Err(PlanMismatch::Assets(vec![
            "stack-template.json".into(),
            "tls/ca".into()
        ]))
    );
}
