//! Plans the view and engine tests print and check: one rolling update of the workers.

use super::*;
use crate::assets::AssetKind;
use crate::state::State;

/// A change-set resource change with only what a test varies.
pub fn resource_change(
    id: &str,
    action: ResourceAction,
    replacement: Option<Replacement>,
) -> ResourceChange {
    ResourceChange {
        action,
        logical_id: id.into(),
        resource_type: "AWS::EC2::Instance".into(),
        physical_id: None,
        replacement,
        replacement_source: None,
        scope: vec![],
        details: vec![],
        changed_properties: vec![],
        rolling: None,
    }
}

fn sha(c: char) -> Option<String> {
    Some(c.to_string().repeat(64))
}

/// A fixed plan for the change every operator makes: a new worker instance type.
pub fn rolling_plan() -> Plan {
    let mut new_state = State::new("demo", "5b0f6c1e-8d0a-4c57-9a3e-2f6b1d7c9e41".into());
    new_state.serial = 4;
    Plan {
        format_version: 1,
        tool_version: "0.1.0".into(),
        kind: PlanKind::Apply,
        cluster_name: "demo".into(),
        offline: false,
        preview: false,
        skipped: vec![],
        prior: PriorBinding {
            lineage: Some(new_state.lineage.clone()),
            serial: 3,
            state_sha256: sha('d'),
            version_id: None,
        },
        target: Target {
            region: "us-west-2".into(),
            account_id: Some("123456789012".into()),
            stack_id: Some("arn:aws:cloudformation:us-west-2:123456789012:stack/demo/1".into()),
        },
        assets: vec![
            AssetChange {
                path: "stack-template.json".into(),
                kind: AssetKind::StackTemplate,
                action: Action::Update,
                old_sha256: sha('a'),
                new_sha256: sha('b'),
                diff: Some("--- a/stack-template.json\n+++ b/stack-template.json\n@@ -1,3 +1,3 @@\n   \"ImageId\": \"ami-0f1a7c00000000001\",\n-  \"InstanceType\": \"t3.medium\",\n+  \"InstanceType\": \"m5.large\",\n".into()),
                reason: None,
            },
            AssetChange {
                path: "tls/ca".into(),
                kind: AssetKind::Tls,
                action: Action::NoOp,
                old_sha256: sha('c'),
                new_sha256: sha('c'),
                diff: None,
                reason: None,
            },
        ],
        pool_stacks: Vec::new(),
        notes: Vec::new(),
        stack: StackChange {
            name: "demo".into(),
            action: Action::Update,
            change_set_name: Some("kube-aws-0123456789ab".into()),
            change_set_arn: Some("arn:aws:cloudformation:us-west-2:123456789012:changeSet/kube-aws-0123456789ab/1".into()),
            template_sha256: sha('b'),
            template_url: None,
            resource_changes: vec![
                ResourceChange {
                    action: ResourceAction::Modify,
                    logical_id: "AutoScaleWorkers".into(),
                    resource_type: "AWS::AutoScaling::AutoScalingGroup".into(),
                    physical_id: None,
                    replacement: Some(Replacement::False),
                    replacement_source: Some(ReplacementSource::Forecast),
                    scope: vec![],
                    details: vec![],
                    changed_properties: vec![],
                    rolling: Some(RollingForecast {
                        instances: 3,
                        autoscaled: false,
                        max_batch_size: 1,
                        batches: 3,
                        min_in_service: 3,
                        pause_time: "PT3M".into(),
                        drain_timeout_seconds: Some(600),
                    }),
                },
                ResourceChange {
                    action: ResourceAction::Modify,
                    logical_id: "LaunchTemplateWorkers".into(),
                    resource_type: "AWS::EC2::LaunchTemplate".into(),
                    physical_id: Some("lt-0123".into()),
                    replacement: Some(Replacement::False),
                    replacement_source: Some(ReplacementSource::Forecast),
                    scope: vec![],
                    details: vec![
                        "every instance launched from it is replaced: AutoScaleWorkers rolls"
                            .into(),
                    ],
                    changed_properties: vec!["LaunchTemplateData".into()],
                    rolling: None,
                },
            ],
        },
        records: vec![RecordChange {
            action: RecordAction::NoOp,
            hosted_zone_id: "Z0123".into(),
            name: "demo.example.com.".into(),
            record_type: "A".into(),
            ttl: 300,
            old_values: Some(vec!["203.0.113.10".into()]),
            new_values: vec!["203.0.113.10".into()],
        }],
        certificates: vec![Certificate {
            name: "ca".into(),
            not_after: "2036-11-25T21:00:00Z".into(),
            action: CertificateAction::Keep,
            reason: None,
        }],
        signing: None,
        template: None,
        new_state,
        summary: ChangeSummary {
            add: 0,
            change: 1,
            remove: 0,
            replace: 1,
        },
        plan_sha256: String::new(),
        signature: None,
        provenance: None,
    }
    .seal()
}
