//! The plan's decisions from hand-made inputs: no emulator, no render of a whole cluster.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::assets::TlsAsset;
use crate::aws::cloudformation::ResourceChange as CfnChange;
use crate::planfile::fixtures::resource_change;

pub(crate) fn config() -> ClusterConfig {
    let text = "clusterName: demo\nexternalDNSName: k8s.example.com\nregion: us-west-2\navailabilityZone: us-west-2a\nkmsKeyArn: arn:aws:kms:us-west-2:1:key/x\ntemplateBucket: demo-artifacts\nhostedZoneId: ZDEMO\ncreateRecordSet: true\n";
    ClusterConfig::parse(std::path::Path::new("cluster.yaml"), text).unwrap()
}

fn record(kind: AssetKind, sha: char) -> AssetRecord {
    AssetRecord {
        kind,
        sha256: sha.to_string().repeat(64),
    }
}

fn rendered(cloud_configs: &[(&str, &str)], manifests: &[(&str, &str)]) -> Rendered {
    let map = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    Rendered {
        cloud_configs: map(cloud_configs),
        stack_template: "{}".into(),
        manifests: map(manifests),
        addon_objects: vec![],
        pool_stacks: Default::default(),
        reused_pools: Default::default(),
    }
}

fn template_with_userdata(text: &str) -> Value {
    json!({"Resources": {"LaunchTemplateWorker": {
        "Type": "AWS::EC2::LaunchTemplate",
        "Properties": {"LaunchTemplateData": {"UserData": render::gzip_base64(text)}}
    }}})
}

fn tls(name: &str) -> TlsAsset {
    TlsAsset {
        name: name.into(),
        spec_sha256: "s".into(),
        certificate_pem: String::new(),
        certificate_sha256: String::new(),
        public_key_pem: None,
        key_ciphertext: format!("sealed-{name}"),
        not_after: "2036-01-01T00:00:00Z".into(),
    }
}

/// A pool's cloud-config that moved to the pool's own stack (or lives there) is diffed against
/// the text that stack runs, found by the hash the state records.
#[test]
fn a_pool_cloud_config_is_diffed_against_what_its_pool_stack_runs() {
    let old_text = "#cloud-config\nkey: SEALED-OLD-CIPHERTEXT\nworkers: 2\n";
    let new_text = "#cloud-config\nkey: SEALED-NEW-CIPHERTEXT\nworkers: 3\n";
    let path = "userdata/cloud-config-worker-gpu";
    let prior = BTreeMap::from([(
        path.to_string(),
        AssetRecord {
            kind: AssetKind::CloudConfig,
            sha256: sha256_hex(old_text),
        },
    )]);
    let desired = BTreeMap::from([(
        path.to_string(),
        AssetRecord {
            kind: AssetKind::CloudConfig,
            sha256: sha256_hex(new_text),
        },
    )]);
    let rendered = rendered(&[("cloud-config-worker-gpu", new_text)], &[]);
    let cluster_template = json!({"Resources": {}});
    let pool_template = template_with_userdata(old_text);
    let no_manifests = BTreeMap::new();
    let inputs = |deployed_pool_templates: Vec<&Value>| {
        asset_changes(&AssetInputs {
            prior: &prior,
            desired: &desired,
            rendered: &rendered,
            new_template: &cluster_template,
            deployed_template: Some(&cluster_template),
            deployed_pool_templates,
            old_manifests: &no_manifests,
            issued: &[],
            secrets: vec!["SEALED-NEW-CIPHERTEXT", "SEALED-OLD-CIPHERTEXT"],
        })
    };
    let changes = inputs(vec![&pool_template]);
    let diff = changes[0].diff.as_deref().unwrap();
    assert!(
        diff.contains("-workers: 2") && diff.contains("+workers: 3"),
        "{diff}"
    );
    assert!(!diff.contains("SEALED-"), "{diff}");
    // Without the pool stack's template, there is nothing to diff against.
    let changes = inputs(vec![]);
    assert_eq!(changes[0].diff, None);
}

#[test]
fn each_asset_is_created_updated_deleted_or_kept_and_only_updates_carry_a_redacted_diff() {
    let paths = |pairs: [(&str, AssetKind, char); 5]| -> BTreeMap<String, AssetRecord> {
        pairs
            .into_iter()
            .map(|(p, kind, sha)| (p.to_string(), record(kind, sha)))
            .collect()
    };
    let prior = paths([
        ("userdata/cloud-config-worker", AssetKind::CloudConfig, 'a'),
        ("addons/coredns.yaml", AssetKind::Manifest, 'b'),
        ("addons/old.yaml", AssetKind::Manifest, 'c'),
        ("tls/apiserver", AssetKind::Tls, 'd'),
        ("tls/ca", AssetKind::Tls, 'e'),
    ]);
    let desired = paths([
        ("userdata/cloud-config-worker", AssetKind::CloudConfig, '1'),
        ("addons/coredns.yaml", AssetKind::Manifest, '2'),
        ("addons/new.yaml", AssetKind::Manifest, '3'),
        ("tls/apiserver", AssetKind::Tls, 'd'),
        ("tls/ca", AssetKind::Tls, 'e'),
    ]);
    let new_text = "#cloud-config\nkey: SEALED-NEW-CIPHERTEXT\nworkers: 3\n";
    let old_text = "#cloud-config\nkey: SEALED-OLD-CIPHERTEXT\nworkers: 2\n";
    let rendered = rendered(
        &[("cloud-config-worker", new_text)],
        &[("coredns.yaml", "replicas: 2\n"), ("new.yaml", "x\n")],
    );
    let old_manifests = BTreeMap::from([(
        "addons/coredns.yaml".to_string(),
        "replicas: 1\n".to_string(),
    )]);
    let issued = vec![(
        "apiserver".to_string(),
        IssueReason::Expiring {
            not_after: "2026-12-01T00:00:00Z".into(),
        },
    )];
    let changes = asset_changes(&AssetInputs {
        prior: &prior,
        desired: &desired,
        rendered: &rendered,
        new_template: &template_with_userdata(new_text),
        deployed_template: Some(&template_with_userdata(old_text)),
        deployed_pool_templates: Vec::new(),
        old_manifests: &old_manifests,
        issued: &issued,
        secrets: vec!["SEALED-NEW-CIPHERTEXT", "SEALED-OLD-CIPHERTEXT"],
    });
    let by_path: BTreeMap<&str, &AssetChange> =
        changes.iter().map(|c| (c.path.as_str(), c)).collect();
    let action = |path: &str| by_path[path].action;
    assert_eq!(changes.len(), 6);
    assert_eq!(action("userdata/cloud-config-worker"), Action::Update);
    assert_eq!(action("addons/coredns.yaml"), Action::Update);
    assert_eq!(action("addons/new.yaml"), Action::Create);
    assert_eq!(action("addons/old.yaml"), Action::Delete);
    // Same spec hash, issued again near expiry: an update, with the reason.
    assert_eq!(action("tls/apiserver"), Action::Update);
    assert_eq!(
        by_path["tls/apiserver"].reason.as_deref(),
        Some("expires 2026-12-01T00:00:00Z, within the renewal window")
    );
    assert_eq!(action("tls/ca"), Action::NoOp);
    assert_eq!(by_path["tls/ca"].reason, None);

    let userdata_diff = by_path["userdata/cloud-config-worker"]
        .diff
        .as_deref()
        .unwrap();
    assert!(userdata_diff.contains("-workers: 2") && userdata_diff.contains("+workers: 3"));
    assert!(
        !userdata_diff.contains("SEALED-"),
        "key ciphertexts are redacted: {userdata_diff}"
    );
    let manifest_diff = by_path["addons/coredns.yaml"].diff.as_deref().unwrap();
    assert!(manifest_diff.contains("-replicas: 1") && manifest_diff.contains("+replicas: 2"));
    assert!(
        by_path["addons/new.yaml"].diff.is_none(),
        "new assets are listed, not printed"
    );
    assert!(by_path["addons/old.yaml"].diff.is_none());
    assert_eq!(by_path["addons/old.yaml"].new_sha256, None);
}

#[test]
fn certificates_say_keep_issue_or_rotate_and_name_an_interrupted_apply_they_reuse() {
    let mut assets = TlsAssets::new();
    for name in [
        "ca",
        "apiserver",
        "admin",
        BOOTSTRAP_TOKEN,
        SECRETS_ENCRYPTION,
    ] {
        assets.insert(name.to_string(), tls(name));
    }
    let mut prior = State::new("demo", "l".into());
    for name in ["ca", BOOTSTRAP_TOKEN] {
        prior.tls.insert(name.into(), tls(name));
    }
    // `admin` is in neither the state nor `issued`: an interrupted apply shipped it.
    let issued = vec![
        (
            "apiserver".to_string(),
            IssueReason::SpecChanged(vec!["names +DNS:k8s.example.org".into()]),
        ),
        (
            SECRETS_ENCRYPTION.to_string(),
            IssueReason::Rotated(crate::assets::tls::RotationStep::AddNewKey),
        ),
    ];
    let certs = certificates(&assets, &issued, Some(&prior), Some("shipped by plan abc"));
    let by_name: BTreeMap<&str, &Certificate> =
        certs.iter().map(|c| (c.name.as_str(), c)).collect();
    assert_eq!(by_name["ca"].action, CertificateAction::Keep);
    assert_eq!(by_name["ca"].reason, None);
    assert_eq!(by_name["ca"].not_after, "2036-01-01T00:00:00Z");
    assert_eq!(by_name["apiserver"].action, CertificateAction::Issue);
    assert_eq!(
        by_name["apiserver"].reason.as_deref(),
        Some("its spec changed: names +DNS:k8s.example.org")
    );
    let secrets = by_name[SECRETS_ENCRYPTION];
    assert_eq!(secrets.action, CertificateAction::Rotate);
    assert!(
        secrets
            .reason
            .as_deref()
            .unwrap()
            .starts_with("Secrets key rotation, step 1 of 3")
    );
    assert_eq!(
        secrets.not_after,
        "never (rotated by plan --rotate-secrets-key)"
    );
    assert_eq!(
        by_name[BOOTSTRAP_TOKEN].not_after,
        "never (rotated only when its spec changes)"
    );
    assert_eq!(by_name[BOOTSTRAP_TOKEN].reason, None);
    assert_eq!(by_name["admin"].action, CertificateAction::Keep);
    assert_eq!(
        by_name["admin"].reason.as_deref(),
        Some("shipped by plan abc")
    );
}

fn cfn(
    action: ResourceAction,
    id: &str,
    kind: &str,
    replacement: Option<Replacement>,
) -> CfnChange {
    CfnChange {
        action,
        logical_id: id.into(),
        resource_type: kind.into(),
        physical_id: None,
        replacement,
        scope: vec![],
        details: vec![],
    }
}

#[test]
fn resource_changes_keep_cloudformations_word_forecast_the_rest_and_roll_groups() {
    let group = json!({"Type": "AWS::AutoScaling::AutoScalingGroup",
        "Properties": {"LaunchTemplate": {"LaunchTemplateId": {"Ref": "LaunchTemplateWorker"}}, "DesiredCapacity": "3"},
        "UpdatePolicy": {"AutoScalingRollingUpdate": {"MaxBatchSize": "2", "MinInstancesInService": "1", "PauseTime": "PT5M"}}});
    let deployed = json!({"Resources": {
        "Subnet0": {"Type": "AWS::EC2::Subnet", "Properties": {"CidrBlock": "10.0.0.0/24"}},
        "LaunchTemplateWorker": {"Type": "AWS::EC2::LaunchTemplate", "Properties": {"LaunchTemplateData": {"ImageId": "ami-1"}}},
        "Workers": group.clone(),
    }});
    let new = json!({"Resources": {
        "Subnet0": {"Type": "AWS::EC2::Subnet", "Properties": {"CidrBlock": "10.0.1.0/24"}},
        "LaunchTemplateWorker": {"Type": "AWS::EC2::LaunchTemplate", "Properties": {"LaunchTemplateData": {"ImageId": "ami-2"}}},
        "Workers": group,
        "Bucket": {"Type": "AWS::S3::Bucket"},
    }});
    let described = [
        cfn(ResourceAction::Modify, "Subnet0", "AWS::EC2::Subnet", None),
        cfn(
            ResourceAction::Modify,
            "LaunchTemplateWorker",
            "AWS::EC2::LaunchTemplate",
            Some(Replacement::False),
        ),
        cfn(ResourceAction::Add, "Bucket", "AWS::S3::Bucket", None),
    ];
    let out = resource_changes(&described, Some(&deployed), &new);
    let ids: Vec<&str> = out.iter().map(|c| c.logical_id.as_str()).collect();
    assert_eq!(
        ids,
        ["Bucket", "LaunchTemplateWorker", "Subnet0", "Workers"],
        "sorted, with the rolling group added"
    );
    let subnet = &out[2];
    assert_eq!(
        subnet.replacement,
        Some(Replacement::True),
        "CidrBlock is create-only"
    );
    assert_eq!(subnet.replacement_source, Some(ReplacementSource::Forecast));
    assert_eq!(subnet.changed_properties, ["CidrBlock"]);
    let launch_template = &out[1];
    assert_eq!(
        launch_template.replacement_source,
        Some(ReplacementSource::ChangeSet)
    );
    assert!(
        launch_template
            .details
            .iter()
            .any(|d| d.contains("Workers rolls"))
    );
    let workers = &out[3];
    assert_eq!(workers.action, ResourceAction::Modify);
    assert!(workers.replaces(), "its instances are replaced");
    let rolling = workers.rolling.as_ref().unwrap();
    assert_eq!(
        (rolling.instances, rolling.max_batch_size, rolling.batches),
        (3, 2, 2)
    );
    assert_eq!(out[0].replacement, None, "an addition has no replacement");
}

#[test]
fn the_summary_counts_resources_online_assets_offline_and_every_record_change() {
    let stack = |resource_changes| StackChange {
        name: "s".into(),
        action: Action::Update,
        change_set_name: None,
        change_set_arn: None,
        template_sha256: None,
        template_url: None,
        resource_changes,
    };
    let asset = |kind, action| AssetChange {
        path: "p".into(),
        kind,
        action,
        old_sha256: None,
        new_sha256: None,
        diff: None,
        reason: None,
    };
    let assets = [
        asset(AssetKind::StackTemplate, Action::Update),
        asset(AssetKind::CloudConfig, Action::Update),
        asset(AssetKind::Manifest, Action::Create),
        asset(AssetKind::Manifest, Action::Delete),
        asset(AssetKind::Tls, Action::NoOp),
    ];
    let record = |action, old: Option<Vec<String>>| RecordChange {
        action,
        hosted_zone_id: "Z".into(),
        name: "api.".into(),
        record_type: "A".into(),
        ttl: 300,
        old_values: old,
        new_values: vec![],
    };
    let records = [
        record(RecordAction::Upsert, None),
        record(RecordAction::Upsert, Some(vec!["1.2.3.4".into()])),
        record(RecordAction::Delete, Some(vec![])),
        record(RecordAction::NoOp, Some(vec![])),
    ];
    // Offline: no change set, so the assets are counted (the template itself is not).
    let offline = summarize(&stack(vec![]), &[], &records, &assets);
    assert_eq!(
        (offline.add, offline.change, offline.remove, offline.replace),
        (2, 2, 2, 0)
    );
    // Online: the change set's resources are counted, not the assets.
    let change = |action, replacement| resource_change("X", action, replacement);
    let online = summarize(
        &stack(vec![
            change(ResourceAction::Add, None),
            change(ResourceAction::Remove, None),
            change(ResourceAction::Modify, Some(Replacement::True)),
            change(ResourceAction::Modify, Some(Replacement::Conditional)),
        ]),
        &[],
        &[],
        &assets,
    );
    assert_eq!(
        (online.add, online.change, online.remove, online.replace),
        (1, 1, 1, 1)
    );
}

#[test]
fn a_destroy_keeps_nothing_of_the_cluster_and_moves_the_serial_on() {
    let mut prior = State::new("demo", "lineage-1".into());
    prior.serial = 4;
    prior
        .assets
        .insert("tls/ca".into(), record(AssetKind::Tls, 'a'));
    prior.assets.insert(
        "stack-template".into(),
        record(AssetKind::StackTemplate, 'b'),
    );
    prior.records.push(RecordState {
        hosted_zone_id: "Z".into(),
        name: "api.".into(),
        record_type: "A".into(),
        ttl: 300,
        values: vec!["1.2.3.4".into()],
    });
    prior.secrets_rotation = Some(crate::state::SecretsRotation::NewKeyAdded);
    prior.kubernetes_version = Some("v1.35.8".into());
    let next = destroyed_state(&config(), Some(&prior), "unused".into());
    assert_eq!(next.kubernetes_version, None, "nothing runs any version");
    assert_eq!((next.serial, next.lineage.as_str()), (5, "lineage-1"));
    assert_eq!(
        next.secrets_rotation, None,
        "no rotation of a key that is gone"
    );
    assert!(next.stack.is_none() && next.records.is_empty());
    // Nothing of the cluster stays, its certificates and keys included.
    assert!(next.assets.is_empty() && next.tls.is_empty());
    let deleted = destroyed_assets(Some(&prior));
    let deleted: Vec<(&str, Action)> = deleted
        .iter()
        .map(|d| (d.path.as_str(), d.action))
        .collect();
    assert_eq!(
        deleted,
        [
            ("stack-template", Action::Delete),
            ("tls/ca", Action::Delete)
        ]
    );
    let fresh = destroyed_state(&config(), None, "lineage-new".into());
    assert_eq!((fresh.serial, fresh.lineage.as_str()), (1, "lineage-new"));
}

#[test]
fn the_state_records_what_the_plan_upserts_and_forgets_what_it_deletes() {
    let change = |action, name: &str| RecordChange {
        action,
        hosted_zone_id: "Z".into(),
        name: name.into(),
        record_type: "A".into(),
        ttl: 60,
        old_values: None,
        new_values: vec!["10.0.0.50".into()],
    };
    let kept = recorded_records(&[
        change(RecordAction::Upsert, "api."),
        change(RecordAction::NoOp, "same."),
        change(RecordAction::Delete, "gone."),
    ]);
    let names: Vec<&str> = kept.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["api.", "same."]);
    assert_eq!(kept[0].values, ["10.0.0.50"]);
}

#[test]
fn a_pool_stack_follows_a_cluster_change_that_gives_a_parameter_a_new_identity() {
    let parameters = vec![
        "SecurityGroupWorker".to_string(),
        "Subnet0".to_string(),
        "Subnet1".to_string(),
    ];
    let change = |id: &str, action, replacement| resource_change(id, action, replacement);
    // The controllers' launch template, an in-place group change and an unrelated removal
    // leave the pool's parameters as they are.
    let untouched = [
        change(
            "LaunchTemplateController",
            ResourceAction::Modify,
            Some(Replacement::False),
        ),
        change(
            "SecurityGroupWorker",
            ResourceAction::Modify,
            Some(Replacement::False),
        ),
        change("EIPController", ResourceAction::Remove, None),
    ];
    assert!(moving_parameters(&parameters, &untouched).is_empty());
    // A replaced (or perhaps replaced) group, a removed subnet: the pool must follow.
    let moving = [
        change(
            "SecurityGroupWorker",
            ResourceAction::Modify,
            Some(Replacement::Conditional),
        ),
        change("Subnet1", ResourceAction::Remove, None),
        change("Subnet2", ResourceAction::Add, None),
    ];
    assert_eq!(
        moving_parameters(&parameters, &moving),
        [&parameters[0], &parameters[2]]
    );
}
