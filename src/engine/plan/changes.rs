//! The decisions of a plan, without AWS: which assets change and how (with diffs), what each
//! certificate does and why, what the change set's resources do (with replacement and
//! rolling forecasts), the state an apply writes, and the summary line. Everything here is a
//! function of its inputs, so it is tested without an emulator.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::records::desired_record_spec;
use crate::assets::tls::{BOOTSTRAP_TOKEN, SECRETS_ENCRYPTION, SERVICE_ACCOUNT};
use crate::assets::{AssetKind, AssetRecord, CloudConfigId, TlsAssets, asset_name, asset_path};
use crate::config::ClusterConfig;
use crate::diff;
use crate::engine::pki::IssueReason;
use crate::hash::{canonical_json, canonical_json_pretty, sha256_hex};
use crate::planfile::{
    Action, AssetChange, Certificate, CertificateAction, ChangeSummary, KNOWN_AFTER_APPLY,
    PoolStackChange, RecordAction, RecordChange, Replacement, ReplacementSource, ResourceAction,
    ResourceChange, SigningChange, StackChange,
};
use crate::render::{self, Rendered};
use crate::state::{ImageState, PlanSigning, RecordState, StackState, State};

/// Every `UserData` string in a template, by the logical id of the resource carrying it.
pub(super) fn userdata_by_resource(template: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(resources) = template["Resources"].as_object() {
        for (id, resource) in resources {
            let props = &resource["Properties"];
            let userdata = props["UserData"]
                .as_str()
                .or_else(|| props["LaunchTemplateData"]["UserData"].as_str());
            if let Some(u) = userdata {
                out.insert(id.clone(), u.to_string());
            }
        }
    }
    out
}

/// The template with userdata blobs replaced by their hash, for a readable diff.
fn readable_template(template: &Value) -> String {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, inner) in map.iter_mut() {
                    if k == "UserData"
                        && let Value::String(s) = inner
                    {
                        *s = format!(
                            "<gzip+base64 cloud-config sha256:{}>",
                            &sha256_hex(&*s)[..12]
                        );
                    } else {
                        walk(inner);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut copy = template.clone();
    walk(&mut copy);
    String::from_utf8(canonical_json_pretty(&copy).expect("JSON serialises")).expect("UTF-8")
}

/// Every asset a render produces, by path, with its hash.
pub(crate) fn desired_assets(
    config: &ClusterConfig,
    rendered: &Rendered,
    tls: &TlsAssets,
) -> BTreeMap<String, AssetRecord> {
    let mut desired = BTreeMap::new();
    let mut add = |kind, name: &str, sha256: String| {
        desired.insert(asset_path(kind, name), AssetRecord { kind, sha256 });
    };
    add(
        AssetKind::StackTemplate,
        "",
        sha256_hex(&rendered.stack_template),
    );
    for (name, text) in &rendered.cloud_configs {
        add(AssetKind::CloudConfig, name, sha256_hex(text));
    }
    for object in &rendered.addon_objects {
        add(AssetKind::Manifest, &object.name, object.sha256.clone());
    }
    for (name, asset) in tls {
        add(AssetKind::Tls, name, asset.spec_sha256.clone());
    }
    if config.create_record_set {
        let spec = desired_record_spec(config);
        add(
            AssetKind::Record,
            &spec.name,
            sha256_hex(canonical_json(&spec).expect("serialises")),
        );
    }
    desired
}

/// The state an apply of `built` writes (stack id and record values aside, which only the
/// apply itself learns). Plans carry it as `new_state`. `lineage` names a cluster's first state.
pub fn applied_state(
    config: &ClusterConfig,
    prior: Option<&State>,
    lineage: String,
    built: &super::Build,
) -> State {
    let (image, tls, rendered) = (&built.image, &built.tls.assets, &built.rendered);
    let (render_key, pool_keys) = (&built.render_key, &built.pool_keys);
    let template_sha256 = sha256_hex(&rendered.stack_template);
    let mut assets = desired_assets(config, rendered, tls);
    // A pool not rendered (its key is the state's) keeps the cloud-config the state records.
    for pool in &rendered.reused_pools {
        let path = asset_path(
            AssetKind::CloudConfig,
            &CloudConfigId::Worker(pool.to_string()).name(),
        );
        if let Some(recorded) = prior.and_then(|s| s.assets.get(&path)) {
            assets.insert(path, recorded.clone());
        }
    }
    let pool_stacks = applied_pool_stacks(config, prior, rendered, pool_keys);
    let bound_key = state_render_key(render_key, &assets, &template_sha256, &pool_stacks);
    let mut state = state_with_assets(
        config,
        prior,
        lineage,
        image,
        tls,
        template_sha256,
        assets,
        bound_key,
    );
    state.pool_stacks = pool_stacks;
    state.secrets_rotation = rotation_after(prior, &built.tls.issued);
    state
}

/// Where the Secrets key rotation stands once this plan is applied: a rotation step moves it
/// (the last one ends it), a key issued anew ends it, anything else leaves it where it was.
fn rotation_after(
    prior: Option<&State>,
    issued: &[(String, crate::engine::pki::IssueReason)],
) -> Option<crate::state::SecretsRotation> {
    use crate::assets::tls::{RotationStep, SECRETS_ENCRYPTION};
    use crate::engine::pki::IssueReason;
    use crate::state::SecretsRotation;
    match issued.iter().find(|(name, _)| name == SECRETS_ENCRYPTION) {
        Some((_, IssueReason::Rotated(RotationStep::AddNewKey))) => {
            Some(SecretsRotation::NewKeyAdded)
        }
        Some((_, IssueReason::Rotated(RotationStep::EncryptWithNewKey))) => {
            Some(SecretsRotation::EncryptingWithNewKey)
        }
        Some(_) => None,
        None => prior.and_then(|s| s.secrets_rotation),
    }
}

/// The state an apply writes when the render would give exactly what `prior` records (its
/// render key, already bound to those assets, is the plan's): the same assets and template,
/// without rendering them.
pub fn unchanged_state(
    config: &ClusterConfig,
    prior: &State,
    template_sha256: &str,
    image: &ImageState,
    tls: &TlsAssets,
    bound_key: String,
) -> State {
    let mut state = state_with_assets(
        config,
        Some(prior),
        prior.lineage.clone(),
        image,
        tls,
        template_sha256.to_string(),
        prior.assets.clone(),
        bound_key,
    );
    state.pool_stacks = prior.pool_stacks.clone();
    state
}

/// The render key a state records: the inputs' key bound to the assets and template hash the
/// state says they rendered, so a state whose assets were edited (by hand, or pushed) never
/// passes for the render of its inputs.
pub fn state_render_key(
    inputs_key: &str,
    assets: &BTreeMap<String, AssetRecord>,
    template_sha256: &str,
    pool_stacks: &BTreeMap<String, StackState>,
) -> String {
    // The assets are a BTreeMap of plain records: serde_json gives the same bytes each time.
    // A cluster without pool stacks hashes as it did before they existed.
    let pool_templates: BTreeMap<&str, &str> = pool_stacks
        .iter()
        .map(|(pool, s)| (pool.as_str(), s.template_sha256.as_str()))
        .collect();
    let bytes = if pool_templates.is_empty() {
        serde_json::to_vec(&(inputs_key, assets, template_sha256))
    } else {
        serde_json::to_vec(&(inputs_key, assets, template_sha256, pool_templates))
    };
    sha256_hex(bytes.expect("asset records serialise"))
}

/// The pool stacks an apply of this render leaves: each rendered pool's stack with its
/// template hash and render key, keeping the id and parameters the state knows; a pool not
/// rendered (its key is the state's) as the state records it.
fn applied_pool_stacks(
    config: &ClusterConfig,
    prior: Option<&State>,
    rendered: &Rendered,
    pool_keys: &BTreeMap<String, String>,
) -> BTreeMap<String, StackState> {
    let recorded = |pool: &str| prior.and_then(|s| s.pool_stacks.get(pool));
    let reused = rendered.reused_pools.iter().filter_map(|pool| {
        let mut kept = recorded(pool)?.clone();
        kept.tags = config.stack_tags.clone();
        Some((pool.clone(), kept))
    });
    rendered
        .pool_stacks
        .iter()
        .map(|(pool, stack)| {
            let recorded = recorded(pool);
            (
                pool.clone(),
                StackState {
                    name: stack.stack_name.clone(),
                    id: recorded.and_then(|s| s.id.clone()),
                    template_sha256: sha256_hex(&stack.template),
                    // What it runs with until apply passes new values.
                    parameters: recorded.map(|s| s.parameters.clone()).unwrap_or_default(),
                    tags: config.stack_tags.clone(),
                    render_key: pool_keys.get(pool).cloned(),
                },
            )
        })
        .chain(reused)
        .collect()
}

/// The pool stack parameters whose cluster-stack resource the cluster's change adds, replaces
/// (or may), or removes: they take new values, so the pool stack must follow with its
/// template unchanged or not.
pub fn moving_parameters<'a>(
    parameters: &'a [String],
    cluster_changes: &[ResourceChange],
) -> Vec<&'a String> {
    parameters
        .iter()
        .filter(|name| {
            cluster_changes.iter().any(|c| {
                c.logical_id == **name
                    && (c.may_get_new_identity() || c.action == ResourceAction::Remove)
            })
        })
        .collect()
}

/// The changes a stack's template diff forecasts, where no change set was made yet (apply
/// makes it after the cluster stack): what is added, modified or removed, with the same
/// replacement and rolling forecasts a change set gets. `deployed` is `None` for a new stack.
pub fn forecast_from_templates(
    deployed: Option<&Value>,
    new_template: &Value,
) -> Vec<ResourceChange> {
    let empty = Value::Object(Default::default());
    let forecast: Vec<crate::aws::cloudformation::ResourceChange> =
        diff::template_diff(deployed.unwrap_or(&empty), new_template)
            .into_iter()
            .map(|d| crate::aws::cloudformation::ResourceChange {
                action: d.action,
                logical_id: d.logical_id,
                resource_type: d.resource_type,
                physical_id: None,
                replacement: None,
                scope: Vec::new(),
                details: vec!["forecast from the template: the change set is made by apply".into()],
            })
            .collect();
    resource_changes(&forecast, deployed, new_template)
}

#[allow(clippy::too_many_arguments)] // the two callers above are its whole interface
fn state_with_assets(
    config: &ClusterConfig,
    prior: Option<&State>,
    lineage: String,
    image: &ImageState,
    tls: &TlsAssets,
    template_sha256: String,
    assets: BTreeMap<String, AssetRecord>,
    bound_key: String,
) -> State {
    State {
        format_version: crate::state::FORMAT_VERSION,
        lineage: prior.map_or(lineage, |s| s.lineage.clone()),
        serial: prior.map_or(0, |s| s.serial) + 1,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        cluster_name: config.cluster_name.clone(),
        pool_stacks: BTreeMap::new(),
        stack: Some(StackState {
            name: config.stack_name(),
            id: prior
                .and_then(|s| s.stack.as_ref())
                .and_then(|s| s.id.clone()),
            template_sha256,
            parameters: BTreeMap::new(),
            tags: config.stack_tags.clone(),
            render_key: None,
        }),
        assets,
        tls: tls.clone(),
        image: Some(image.clone()),
        records: prior.map(|s| s.records.clone()).unwrap_or_default(),
        account_id: prior.and_then(|s| s.account_id.clone()),
        audit_head: prior.and_then(|s| s.audit_head.clone()),
        region: Some(config.region.clone()),
        render_key: Some(bound_key),
        plan_signing: signing_after(config, prior),
        secrets_rotation: prior.and_then(|s| s.secrets_rotation),
        kubernetes_version: Some(config.kubernetes_version.clone()),
    }
}

/// The change set's changes, with changed properties from the template diff, a replacement
/// forecast where CloudFormation gave none, and the instances that will roll.
pub fn resource_changes(
    changes: &[crate::aws::cloudformation::ResourceChange],
    deployed: Option<&Value>,
    new_template: &Value,
) -> Vec<ResourceChange> {
    let empty = Value::Object(Default::default());
    let template_diff = diff::template_diff(deployed.unwrap_or(&empty), new_template);
    let by_id: BTreeMap<&str, &diff::ResourceDiff> = template_diff
        .iter()
        .map(|d| (d.logical_id.as_str(), d))
        .collect();
    let modified: BTreeSet<String> = template_diff
        .iter()
        .filter(|d| d.action == ResourceAction::Modify)
        .map(|d| d.logical_id.clone())
        .chain(
            changes
                .iter()
                .filter(|c| c.action == ResourceAction::Modify)
                .map(|c| c.logical_id.clone()),
        )
        .collect();
    let rolling = match deployed {
        Some(deployed) => diff::rolling_forecasts(new_template, deployed, &modified),
        None => BTreeMap::new(),
    };
    let mut out: Vec<ResourceChange> = changes
        .iter()
        .map(|c| {
            let changed = by_id
                .get(c.logical_id.as_str())
                .map(|d| d.changed_properties.clone())
                .unwrap_or_default();
            let (replacement, source) = match (c.replacement, c.action) {
                (Some(r), _) => (Some(r), Some(ReplacementSource::ChangeSet)),
                (None, ResourceAction::Modify) => (
                    diff::forecast_replacement(&c.resource_type, &changed),
                    Some(ReplacementSource::Forecast),
                ),
                _ => (None, None),
            };
            ResourceChange {
                action: c.action,
                logical_id: c.logical_id.clone(),
                resource_type: c.resource_type.clone(),
                physical_id: c.physical_id.clone(),
                replacement,
                replacement_source: source,
                scope: c.scope.clone(),
                details: c.details.clone(),
                changed_properties: changed,
                rolling: rolling.get(&c.logical_id).cloned(),
            }
        })
        .collect();
    // The launch template behind a rolling group names what its change does to instances.
    for group in rolling.keys() {
        let launch_template = new_template["Resources"][group]["Properties"]["LaunchTemplate"]
            ["LaunchTemplateId"]["Ref"]
            .as_str()
            .unwrap_or_default();
        if let Some(lt) = out.iter_mut().find(|c| c.logical_id == launch_template) {
            lt.details.push(format!(
                "every instance launched from it is replaced: {group} rolls"
            ));
        }
    }
    // Groups whose instances roll although the group itself is unchanged in the template.
    for (id, forecast) in rolling {
        if let Some(existing) = out.iter_mut().find(|c| c.logical_id == id) {
            existing.rolling = Some(forecast);
            continue;
        }
        out.push(ResourceChange {
            action: ResourceAction::Modify,
            logical_id: id.clone(),
            resource_type: "AWS::AutoScaling::AutoScalingGroup".into(),
            physical_id: None,
            replacement: Some(Replacement::False),
            replacement_source: Some(ReplacementSource::Forecast),
            scope: vec![],
            details: vec![
                "its launch template changes: instances are replaced by a rolling update".into(),
            ],
            changed_properties: vec![],
            rolling: Some(forecast),
        });
    }
    out.sort_by(|a, b| a.logical_id.cmp(&b.logical_id));
    out
}

pub fn summarize(
    stack: &StackChange,
    pool_stacks: &[PoolStackChange],
    records: &[RecordChange],
    assets: &[AssetChange],
) -> ChangeSummary {
    let mut s = ChangeSummary::default();
    let stacks: Vec<&StackChange> = std::iter::once(stack)
        .chain(pool_stacks.iter().map(|p| &p.stack))
        .collect();
    if stacks
        .iter()
        .any(|stack| stack.resource_changes.is_empty() && stack.action == Action::Delete)
    {
        // A pool stack deleted on its own: one removal, like the stack a destroy deletes.
        s.remove += pool_stacks
            .iter()
            .filter(|p| p.stack.action == Action::Delete)
            .count() as u32;
    }
    if stacks.iter().any(|stack| {
        stack.resource_changes.is_empty()
            && stack.action != Action::NoOp
            && stack.action != Action::Delete
    }) {
        // No change set to count (offline): count the assets instead.
        for a in assets.iter().filter(|a| a.kind != AssetKind::StackTemplate) {
            match a.action {
                Action::Create => s.add += 1,
                Action::Update => s.change += 1,
                Action::Delete => s.remove += 1,
                Action::NoOp => {}
            }
        }
    }
    for c in stacks.iter().flat_map(|stack| &stack.resource_changes) {
        match c.action {
            ResourceAction::Add => s.add += 1,
            ResourceAction::Remove => s.remove += 1,
            _ if c.replaces() => s.replace += 1,
            _ => s.change += 1,
        }
    }
    for r in records {
        match (r.action, &r.old_values) {
            (RecordAction::Upsert, None) => s.add += 1,
            (RecordAction::Upsert, Some(_)) => s.change += 1,
            (RecordAction::Delete, _) => s.remove += 1,
            (RecordAction::NoOp, _) => {}
        }
    }
    s
}

/// What the asset diff compares: the state's assets and the render's, and the texts behind
/// them where they are known.
pub struct AssetInputs<'a> {
    pub prior: &'a BTreeMap<String, AssetRecord>,
    pub desired: &'a BTreeMap<String, AssetRecord>,
    pub rendered: &'a Rendered,
    pub new_template: &'a Value,
    /// The template the live cluster stack runs, when the stack changes.
    pub deployed_template: Option<&'a Value>,
    /// The templates the changed pool stacks run.
    pub deployed_pool_templates: Vec<&'a Value>,
    /// The deployed text of changed add-on manifests, by asset path.
    pub old_manifests: &'a BTreeMap<String, String>,
    /// Why each certificate or key is issued.
    pub issued: &'a [(String, IssueReason)],
    /// Key ciphertexts, redacted from every diff.
    pub secrets: Vec<&'a str>,
}

/// Every asset the state or the render has, with what happens to it and, for changed
/// templates, cloud-configs and manifests, a redacted diff of what is deployed.
pub fn asset_changes(inputs: &AssetInputs<'_>) -> Vec<AssetChange> {
    let deployed_template = inputs.deployed_template;
    let old_userdata = deployed_template
        .map(userdata_by_resource)
        .unwrap_or_default();
    let new_userdata = userdata_by_resource(inputs.new_template);
    // Every cloud-config the stacks run, by its hash, which the state records for each: found
    // whichever stack and resource carried it (a pool's moves to its own stack).
    let deployed_cloud_configs: BTreeMap<String, String> = deployed_template
        .into_iter()
        .chain(inputs.deployed_pool_templates.iter().copied())
        .flat_map(|t| userdata_by_resource(t).into_values())
        .filter_map(|u| diff::decode_userdata(&u))
        .map(|text| (sha256_hex(&text), text))
        .collect();
    let reasons: BTreeMap<&str, &IssueReason> =
        inputs.issued.iter().map(|(n, r)| (n.as_str(), r)).collect();
    let paths: BTreeSet<&String> = inputs.desired.keys().chain(inputs.prior.keys()).collect();
    let mut out = Vec::new();
    for path in paths {
        let old = inputs.prior.get(path);
        let new = inputs.desired.get(path);
        let kind = match (old, new) {
            (_, Some(n)) => n.kind,
            (Some(o), None) => o.kind,
            (None, None) => continue,
        };
        let reason = (kind == AssetKind::Tls)
            .then(|| asset_name(AssetKind::Tls, path))
            .and_then(|name| Some(describe_reason(name, reasons.get(name)?)));
        let action = match (old, new) {
            (None, _) => Action::Create,
            (_, None) => Action::Delete,
            (Some(o), Some(n)) if o.sha256 != n.sha256 => Action::Update,
            // A certificate issued again for the same spec (near expiry) changes too.
            _ if reason.is_some() => Action::Update,
            _ => Action::NoOp,
        };
        // New assets are listed, not printed whole: the resource list says what they add.
        let diff = if action == Action::Update {
            let new_text = match kind {
                AssetKind::StackTemplate => Some(readable_template(inputs.new_template)),
                AssetKind::CloudConfig => inputs
                    .rendered
                    .cloud_configs
                    .get(asset_name(kind, path))
                    .cloned(),
                AssetKind::Manifest => inputs
                    .rendered
                    .manifests
                    .get(asset_name(kind, path))
                    .cloned(),
                _ => None,
            };
            let old_text = match kind {
                AssetKind::StackTemplate => deployed_template.map(readable_template),
                AssetKind::CloudConfig
                    if old.is_some_and(|o| deployed_cloud_configs.contains_key(&o.sha256)) =>
                {
                    old.and_then(|o| deployed_cloud_configs.get(&o.sha256))
                        .cloned()
                }
                AssetKind::CloudConfig => {
                    // The deployed cloud-config is the userdata of the resource that carries
                    // the new one.
                    let carrier = new_text.as_ref().and_then(|text| {
                        let encoded = render::gzip_base64(text);
                        new_userdata
                            .iter()
                            .find(|(_, u)| **u == encoded)
                            .map(|(id, _)| id.clone())
                    });
                    carrier
                        .and_then(|id| old_userdata.get(&id))
                        .and_then(|u| diff::decode_userdata(u))
                }
                AssetKind::Manifest => inputs.old_manifests.get(path.as_str()).cloned(),
                _ => None,
            };
            match (old_text, new_text) {
                (Some(o), Some(n)) => diff::unified(
                    path,
                    &diff::redact(&o, &inputs.secrets),
                    &diff::redact(&n, &inputs.secrets),
                ),
                _ => None,
            }
        } else {
            None
        };
        out.push(AssetChange {
            path: path.clone(),
            kind,
            action,
            old_sha256: old.map(|o| o.sha256.clone()),
            new_sha256: new.map(|n| n.sha256.clone()),
            diff,
            reason,
        });
    }
    out
}

/// The records the state holds after the plan's changes.
pub fn recorded_records(records: &[RecordChange]) -> Vec<RecordState> {
    records
        .iter()
        .filter(|r| r.action != RecordAction::Delete)
        .map(|r| RecordState {
            hosted_zone_id: r.hosted_zone_id.clone(),
            name: r.name.clone(),
            record_type: r.record_type.clone(),
            ttl: r.ttl,
            values: r.new_values.clone(),
        })
        .collect()
}

/// What a destroy removes from the state: the stack, its records and every asset but the
/// certificates (a re-created cluster keeps its CA, and kubeconfigs stay valid).
pub fn destroyed_state(config: &ClusterConfig, prior: Option<&State>, lineage: String) -> State {
    let mut next = prior
        .cloned()
        .unwrap_or_else(|| State::new(&config.cluster_name, lineage));
    next.serial = prior.map_or(0, |s| s.serial) + 1;
    next.tool_version = env!("CARGO_PKG_VERSION").to_string();
    next.stack = None;
    next.pool_stacks = BTreeMap::new();
    next.records = Vec::new();
    // The certificates and keys go too: kept, a cluster created again under this name would
    // trust this one's CA, and its admin kubeconfigs would work there.
    next.assets.clear();
    next.tls = Default::default();
    // With the Secrets key gone, so is any rotation of it.
    next.secrets_rotation = None;
    // Nothing runs, so no version: a cluster created again under this name starts afresh.
    next.kubernetes_version = None;
    // Nothing rendered is deployed any more: the next plan renders everything.
    next.render_key = None;
    next.plan_signing = signing_after(config, prior);
    next
}

/// The plan signing the next state records: cluster.yaml's, or (for an offline preview made
/// without either setting) the state's as it is.
pub fn signing_after(config: &ClusterConfig, prior: Option<&State>) -> Option<PlanSigning> {
    PlanSigning::configured(config).or_else(|| prior.and_then(|s| s.plan_signing.clone()))
}

/// The change of plan signing a plan makes, when the state (`recorded` is what it records;
/// `None` without a state) records another one. A state from before signing was recorded
/// shows as `from: None`; a first apply records it unasked.
pub fn signing_change(
    recorded: Option<&Option<PlanSigning>>,
    next: &State,
) -> Option<SigningChange> {
    let recorded = recorded?;
    let to = next.plan_signing.clone()?;
    (recorded.as_ref() != Some(&to)).then(|| SigningChange {
        from: recorded.clone(),
        to,
    })
}

/// The assets a destroy deletes: everything but the certificates.
pub fn destroyed_assets(prior: Option<&State>) -> Vec<AssetChange> {
    prior
        .map(|s| s.assets.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|(path, a)| AssetChange {
            path,
            kind: a.kind,
            action: Action::Delete,
            old_sha256: Some(a.sha256),
            new_sha256: None,
            diff: None,
            reason: None,
        })
        .collect()
}

mod certificates;
pub use certificates::certificates;
use certificates::describe_reason;

#[cfg(test)]
mod tests;
