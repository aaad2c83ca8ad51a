//! `plan` and the planning half of `destroy`: render against the state, hash and diff every
//! asset, create and describe the CloudFormation change set, diff the Route53 records, and
//! seal it all into a plan file. The no-op path makes no KMS call and no CloudFormation write.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration as StdDuration;

use serde_json::Value;
use time::{Duration, OffsetDateTime};

use super::backend::Backend;
use super::{AwsOptions, EngineError, pki};
use crate::assets::{AssetKind, AssetRecord, asset_path};
use crate::audit::ChangeSummary;
use crate::aws::AwsContext;
use crate::aws::cloudformation::{ChangeSetRequest, StackService};
use crate::aws::images::ImageCatalog;
use crate::aws::route53::{DnsService, fqdn};
use crate::config::{ClusterConfig, StateBackendKind};
use crate::diff;
use crate::hash::{canonical_json, sha256_hex};
use crate::planfile::{
    Action, AssetChange, Certificate, CertificateAction, KNOWN_AFTER_APPLY, Plan, PlanKind,
    PriorBinding, RecordAction, RecordChange, Replacement, ReplacementSource, ResourceAction,
    ResourceChange, StackChange, Target,
};
use crate::render::{self, RenderInputs};
use crate::state::store::Loaded;
use crate::state::{ImageState, RecordState, StackState, State};

/// CloudFormation's limit for a template passed inline; larger ones go through S3.
pub const INLINE_TEMPLATE_LIMIT: usize = 51_200;

#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub offline: bool,
    pub renew_before: Duration,
    pub destroy: bool,
    /// Move the Secrets encryption key one rotation step on.
    pub rotate_secrets_key: bool,
    /// Sign the plan (with `planSigningKeyArn`, when cluster.yaml names one). Off only for a
    /// plan that is shown and never applied, which saves its KMS call.
    pub sign: bool,
}

impl Default for PlanOptions {
    fn default() -> PlanOptions {
        PlanOptions {
            offline: false,
            renew_before: super::DEFAULT_RENEW_BEFORE,
            destroy: false,
            rotate_secrets_key: false,
            sign: true,
        }
    }
}

/// Reports what planning is doing, for a progress display.
pub type Progress<'a> = &'a mut dyn FnMut(&str);

/// Makes a plan for the cluster in `dir`.
pub async fn plan(
    dir: &Path,
    aws: &AwsOptions,
    options: &PlanOptions,
    now: OffsetDateTime,
    progress: Progress<'_>,
) -> Result<Plan, EngineError> {
    let config = ClusterConfig::load(dir)?;
    if options.offline && config.state.backend == StateBackendKind::S3 {
        return Err(EngineError::Refused(
            "--offline plans against the local state only, but cluster.yaml keeps the state in S3"
                .into(),
        ));
    }
    if !options.offline && config.plan_signing_key_arn.is_none() && !config.unsigned_plans {
        return Err(EngineError::Refused(format!(
            "{}: {}",
            dir.join(crate::config::CLUSTER_FILE).display(),
            crate::config::MISSING_PLAN_SIGNING_KEY
        )));
    }
    let context = aws.context(&config).await?;
    let backend = Backend::open(dir, &config, &context);
    progress("reading the state");
    let prior = backend.load(&config).await?;
    let online = (!options.offline).then_some(&context);
    let plan = if options.destroy {
        plan_destroy(&config, prior, online, progress).await?
    } else {
        plan_apply(
            dir, &config, &backend, prior, online, options, now, progress,
        )
        .await?
    };
    let provenance = super::provenance::collect(dir);
    let plan = Plan {
        provenance: (!provenance.is_empty()).then_some(provenance),
        ..plan
    }
    .seal();
    match (online, &config.plan_signing_key_arn) {
        (Some(context), Some(key)) if options.sign => {
            progress("signing the plan");
            sign(plan, &context.kms(), key).await
        }
        _ => Ok(plan),
    }
}

/// The region and account a stack ARN (`arn:PARTITION:cloudformation:REGION:ACCOUNT:stack/…`)
/// names.
fn stack_arn_place(arn: &str) -> Option<(&str, &str)> {
    let mut parts = arn.split(':');
    let (Some("arn"), Some(_), Some("cloudformation"), Some(region), Some(account)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    Some((region, account))
}

/// The account a stack ARN names.
pub(crate) fn stack_account(arn: &str) -> Option<String> {
    stack_arn_place(arn).map(|(_, account)| account.to_string())
}

/// Refuses to plan a stack other than the one the state records: another region, another
/// account's stack of the same name, or none at all where another account is asked. Without
/// this, credentials for the wrong account plan (and apply) a second cluster.
async fn check_stack_binding(
    config: &ClusterConfig,
    recorded: &str,
    live: Option<&str>,
    context: &AwsContext,
) -> Result<(), EngineError> {
    let Some((region, account)) = stack_arn_place(recorded) else {
        return Err(EngineError::Refused(format!(
            "the state records stack id {recorded}, which is not a CloudFormation stack ARN"
        )));
    };
    if region != config.region {
        return Err(EngineError::Refused(format!(
            "the state records the stack in {region} ({recorded}) but cluster.yaml's region is {}: a cluster lives in one region",
            config.region
        )));
    }
    match live {
        Some(id) if id == recorded => Ok(()),
        Some(id) => Err(EngineError::Refused(format!(
            "the stack named {} here is {id}, not the stack the state records ({recorded}): these credentials reach another account's (or a re-created) stack; nothing was planned",
            config.stack_name()
        ))),
        None => {
            let caller = context.actor().await.map_err(|e| {
                EngineError::Refused(format!(
                    "the stack the state records ({recorded}) is not here, and STS cannot say which account this is: {e}"
                ))
            })?;
            let caller_account = arn_account(&caller);
            if caller_account != account {
                return Err(EngineError::Refused(format!(
                    "the state records the stack in account {account} ({recorded}) but these credentials are for account {caller_account} ({caller}); nothing was planned"
                )));
            }
            // Deleted outside kube-aws, in this account: planning creates it again.
            Ok(())
        }
    }
}

/// The account an ARN names (its fifth field).
pub(crate) fn arn_account(arn: &str) -> &str {
    arn.split(':').nth(4).unwrap_or_default()
}

/// The account these credentials belong to, from STS.
async fn caller_account(context: &AwsContext) -> Result<String, EngineError> {
    let caller = context
        .actor()
        .await
        .map_err(super::apply::unverified_actor)?;
    Ok(arn_account(&caller).to_string())
}

/// Signs the sealed plan's hash with the plan signing key, through KMS.
async fn sign(
    mut plan: Plan,
    kms: &crate::aws::kms::KmsVault,
    key: &str,
) -> Result<Plan, EngineError> {
    use base64::Engine;
    let digest = plan
        .digest()
        .ok_or_else(|| EngineError::Refused("the plan was not sealed before signing".into()))?;
    let signature = kms.sign_digest(key, &digest).await?;
    plan.signature = Some(crate::planfile::PlanSignature {
        key_arn: key.to_string(),
        algorithm: crate::aws::kms::PLAN_SIGNING_ALGORITHM.into(),
        value: base64::engine::general_purpose::STANDARD.encode(signature),
    });
    Ok(plan)
}

fn prior_binding(prior: Option<&Loaded>) -> PriorBinding {
    PriorBinding {
        lineage: prior.map(|p| p.state.lineage.clone()),
        serial: prior.map_or(0, |p| p.state.serial),
        state_sha256: prior.map(|p| p.sha256.clone()),
        version_id: prior.and_then(|p| p.version_id.clone()),
    }
}

async fn resolve_image(
    config: &ClusterConfig,
    prior: Option<&State>,
    online: Option<&AwsContext>,
    skipped: &mut Vec<String>,
) -> Result<ImageState, EngineError> {
    let pinned = config.ami_id.clone().or_else(|| {
        prior
            .and_then(|s| s.image.as_ref())
            .filter(|i| i.release_channel == config.release_channel)
            .map(|i| i.ami_id.clone())
    });
    let ami_id = match (pinned, online) {
        (Some(ami), _) => ami,
        (None, Some(context)) => {
            context
                .images()
                .latest_flatcar(config.release_channel)
                .await?
        }
        (None, None) => {
            skipped.push(format!(
                "the Flatcar {} AMI lookup (EC2 DescribeImages)",
                config.release_channel.as_str()
            ));
            KNOWN_AFTER_APPLY.to_string()
        }
    };
    Ok(ImageState {
        release_channel: config.release_channel,
        ami_id,
    })
}

/// Every `UserData` string in a template, by the logical id of the resource carrying it.
fn userdata_by_resource(template: &Value) -> BTreeMap<String, String> {
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
    String::from_utf8(crate::hash::canonical_json_pretty(&copy).expect("JSON serialises"))
        .expect("UTF-8")
}

/// Every asset a render produces, by path, with its hash.
fn desired_assets(
    config: &ClusterConfig,
    rendered: &render::Rendered,
    tls: &crate::assets::TlsAssets,
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

/// The state an apply of this render writes (stack id and record values aside, which only the
/// apply itself learns). Plans carry it as `new_state`.
pub fn applied_state(
    config: &ClusterConfig,
    prior: Option<&State>,
    image: &ImageState,
    tls: &crate::assets::TlsAssets,
    rendered: &render::Rendered,
) -> State {
    State {
        format_version: crate::state::FORMAT_VERSION,
        lineage: prior
            .map(|s| s.lineage.clone())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        serial: prior.map_or(0, |s| s.serial) + 1,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        cluster_name: config.cluster_name.clone(),
        stack: Some(StackState {
            name: config.stack_name(),
            id: prior
                .and_then(|s| s.stack.as_ref())
                .and_then(|s| s.id.clone()),
            template_sha256: sha256_hex(&rendered.stack_template),
            parameters: BTreeMap::new(),
            tags: config.stack_tags.clone(),
        }),
        assets: desired_assets(config, rendered, tls),
        tls: tls.clone(),
        image: Some(image.clone()),
        records: prior.map(|s| s.records.clone()).unwrap_or_default(),
        account_id: prior.and_then(|s| s.account_id.clone()),
        audit_head: prior.and_then(|s| s.audit_head.clone()),
        region: Some(config.region.clone()),
    }
}

#[allow(clippy::too_many_arguments)] // one call site; the pieces are the plan's inputs
async fn plan_apply(
    dir: &Path,
    config: &ClusterConfig,
    backend: &Backend,
    prior: Option<Loaded>,
    online: Option<&AwsContext>,
    options: &PlanOptions,
    now: OffsetDateTime,
    progress: Progress<'_>,
) -> Result<Plan, EngineError> {
    let mut skipped = Vec::new();
    let prior_state = prior.as_ref().map(|p| &p.state);
    let image = resolve_image(config, prior_state, online, &mut skipped).await?;

    progress("rendering assets");
    let empty = Default::default();
    let mut previous_tls = prior_state.map(|s| &s.tls).unwrap_or(&empty);
    let kms = online.map(AwsContext::kms);
    let shipped;
    let mut shipped_by: Option<String> = None;
    if online.is_some()
        && let Some(pending) =
            shipped_by_interrupted_apply(config, backend, prior_state, previous_tls, now, options)
                .await?
    {
        progress(&format!(
            "reusing the certificates the interrupted apply of plan {} shipped",
            pending
                .plan_sha256
                .get(..12)
                .unwrap_or(&pending.plan_sha256)
        ));
        shipped_by = Some(format!(
            "shipped by the interrupted apply of plan {} and kept",
            pending
                .plan_sha256
                .get(..12)
                .unwrap_or(&pending.plan_sha256)
        ));
        let mut merged = previous_tls.clone();
        merged.extend(pending.tls);
        shipped = merged;
        previous_tls = &shipped;
    }
    if online.is_none() {
        skipped.push("issuing certificates (KMS Encrypt): new ones are shown, not made".into());
    }
    let mut tls = pki::resolve(
        config,
        previous_tls,
        kms.as_ref(),
        now,
        options.renew_before,
    )
    .await?;
    if options.rotate_secrets_key {
        let Some(kms) = kms.as_ref() else {
            return Err(EngineError::Refused(
                "--rotate-secrets-key decrypts the key through KMS: it cannot be planned --offline"
                    .into(),
            ));
        };
        progress("rotating the Secrets encryption key");
        pki::rotate_secrets_key(config, &mut tls, kms).await?;
    }
    let templates = super::load_templates(dir)?;
    let rendered = render::render(
        &templates,
        &RenderInputs {
            config,
            ami_id: &image.ami_id,
            tls: &tls.assets,
        },
    )?;
    // The offline part of validate runs first: a plan is never made of files it rejects.
    let errors: Vec<String> = super::validate::check_rendered(&rendered, &templates, false)
        .into_iter()
        .filter(|f| f.severity == crate::validate::Severity::Error)
        .map(|f| f.to_string())
        .collect();
    if !errors.is_empty() {
        return Err(EngineError::Refused(format!(
            "validation found {} error(s); nothing was planned (`kube-aws validate` shows every finding):\n{}",
            errors.len(),
            errors.join("\n")
        )));
    }
    let template_sha256 = sha256_hex(&rendered.stack_template);
    // Rendered from the user's template file: render checks it is JSON, and a slip there is
    // an error here, never a panic.
    let new_template: Value = serde_json::from_str(&rendered.stack_template).map_err(|e| {
        EngineError::Refused(format!("the rendered stack template is not JSON: {e}"))
    })?;

    // The state this plan writes, and so the desired assets by path (stack id and records are
    // filled in below, once known).
    let mut new_state = applied_state(config, prior_state, &image, &tls.assets, &rendered);
    let desired = new_state.assets.clone();
    let record_spec = config
        .create_record_set
        .then(|| desired_record_spec(config));

    // The stack.
    let stack_name = config.stack_name();
    let binding = prior_binding(prior.as_ref());
    let mut stack = StackChange {
        name: stack_name.clone(),
        action: Action::NoOp,
        change_set_name: None,
        change_set_arn: None,
        template_sha256: Some(template_sha256.clone()),
        template_url: None,
        resource_changes: Vec::new(),
    };
    // What the stack was last applied with: its template and its tags.
    let state_template = prior_state
        .and_then(|s| s.stack.as_ref())
        .map(|s| (s.template_sha256.clone(), s.tags.clone()));
    let desired_stack = (template_sha256.clone(), config.stack_tags.clone());
    let mut stack_id = prior_state
        .and_then(|s| s.stack.as_ref())
        .and_then(|s| s.id.clone());
    let mut deployed_template: Option<Value> = None;
    let mut live_outputs: BTreeMap<String, String> = BTreeMap::new();
    match online {
        None => {
            skipped.push("CloudFormation: no change set was created or described".into());
            stack.action = match state_template {
                None => Action::Create,
                Some(applied) if applied != desired_stack => Action::Update,
                Some(_) => Action::NoOp,
            };
        }
        Some(context) => {
            let cfn = context.cloudformation();
            progress("describing the stack");
            let live = cfn.describe_stack(&stack_name).await?;
            let exists = match &live {
                None => false,
                Some(s) if s.status == "REVIEW_IN_PROGRESS" => false,
                Some(s) if s.status == "ROLLBACK_COMPLETE" || s.status == "ROLLBACK_FAILED" => {
                    return Err(EngineError::Refused(format!(
                        "stack {stack_name} is in {} after a failed create and cannot be updated; run `kube-aws destroy`, then plan again",
                        s.status
                    )));
                }
                Some(s) if s.status.ends_with("_IN_PROGRESS") => {
                    return Err(EngineError::Refused(format!(
                        "stack {stack_name} is busy ({}); wait for it to finish (`kube-aws status` follows it), then plan again",
                        s.status
                    )));
                }
                Some(_) => true,
            };
            if let Some(recorded) = prior_state
                .and_then(|s| s.stack.as_ref())
                .and_then(|s| s.id.as_deref())
            {
                // A stack only in REVIEW_IN_PROGRESS is an earlier plan's change set for a stack
                // deleted outside kube-aws, not another cluster: checked as an absent one.
                check_stack_binding(
                    config,
                    recorded,
                    live.as_ref()
                        .filter(|s| s.status != "REVIEW_IN_PROGRESS")
                        .map(|s| s.id.as_str()),
                    context,
                )
                .await?;
            }
            if let Some(s) = &live {
                stack_id = Some(s.id.clone());
                live_outputs = s.outputs.clone();
            }
            let unchanged = exists && state_template.as_ref() == Some(&desired_stack);
            if !unchanged {
                if exists {
                    progress("reading the deployed template");
                    let body = cfn.get_template(&stack_name, None).await?;
                    deployed_template = serde_json::from_str(&body).ok();
                }
                let change_set_name = format!(
                    "kube-aws-{}",
                    &sha256_hex(
                        canonical_json(&(
                            &binding,
                            &template_sha256,
                            &config.stack_tags,
                            &config.cluster_name
                        ))
                        .expect("serialises")
                    )[..12]
                );
                let body = render::submitted_stack(&rendered.stack_template);
                progress("uploading the add-on manifests");
                let template_url =
                    upload_artifacts(config, context, &rendered, &template_sha256, &body).await?;
                let request = ChangeSetRequest {
                    stack_name: stack_name.clone(),
                    change_set_name: change_set_name.clone(),
                    create: !exists,
                    template_body: template_url.is_none().then_some(body),
                    template_url: template_url.clone(),
                    tags: config.stack_tags.clone(),
                    description: format!(
                        "kube-aws plan for {} (state serial {})",
                        config.cluster_name, binding.serial
                    ),
                };
                progress(&format!("creating change set {change_set_name}"));
                match cfn.create_change_set(&request).await {
                    Ok((_, id)) => {
                        if !id.is_empty() {
                            stack_id = Some(id);
                        }
                    }
                    // The same inputs were planned before: that change set is this plan's.
                    Err(e) if e.code.as_deref() == Some("AlreadyExistsException") => {}
                    Err(e) => return Err(e.into()),
                }
                let described =
                    wait_for_change_set(&cfn, &stack_name, &change_set_name, progress).await?;
                match described {
                    None => {
                        progress("no changes: deleting the empty change set");
                        cfn.delete_change_set(&stack_name, &change_set_name).await?;
                        stack.action = Action::NoOp;
                    }
                    Some(cs) => {
                        stack.action = if exists {
                            Action::Update
                        } else {
                            Action::Create
                        };
                        stack.change_set_name = Some(change_set_name);
                        stack.change_set_arn = Some(cs.arn.clone());
                        stack.template_url = template_url;
                        if let Some(id) = cs.stack_id.clone() {
                            stack_id = Some(id);
                        }
                        stack.resource_changes = resource_changes(
                            &cs.changes,
                            deployed_template.as_ref(),
                            &new_template,
                        );
                    }
                }
            } else {
                // The stack stays as it is, but a replaced controller fetches its add-ons
                // again: put back any object that was deleted since (one listing).
                restore_missing_addons(config, context, &rendered).await?;
            }
        }
    }

    // Records.
    let mut records = Vec::new();
    match (online, &record_spec) {
        (None, _) => skipped.push("Route53: records were not looked up".into()),
        (Some(context), _) => {
            records = plan_records(
                config,
                prior_state,
                record_spec.as_ref(),
                &stack,
                &live_outputs,
                &context.route53(),
                progress,
            )
            .await?;
        }
    }

    // Assets, with diffs of what is deployed where the deployed template is known.
    let old_userdata = deployed_template
        .as_ref()
        .map(userdata_by_resource)
        .unwrap_or_default();
    let new_userdata = userdata_by_resource(&new_template);
    let mut secrets: Vec<String> = tls
        .assets
        .values()
        .map(|a| a.key_ciphertext.clone())
        .collect();
    secrets.extend(previous_tls.values().map(|a| a.key_ciphertext.clone()));
    let secret_refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let prior_assets = prior_state.map(|s| s.assets.clone()).unwrap_or_default();
    let reasons: BTreeMap<&str, &pki::IssueReason> =
        tls.issued.iter().map(|(n, r)| (n.as_str(), r)).collect();
    let old_manifests = match online {
        Some(context) => previous_manifests(config, context, &prior_assets, &desired).await,
        None => BTreeMap::new(),
    };
    let mut assets = Vec::new();
    let paths: BTreeSet<&String> = desired.keys().chain(prior_assets.keys()).collect();
    for path in paths {
        let old = prior_assets.get(path);
        let new = desired.get(path);
        let action = match (old, new) {
            (None, Some(_)) => Action::Create,
            (Some(_), None) => Action::Delete,
            (Some(o), Some(n)) if o.sha256 != n.sha256 => Action::Update,
            _ => Action::NoOp,
        };
        let kind = new
            .map(|n| n.kind)
            .or(old.map(|o| o.kind))
            .expect("one side exists");
        let mut reason = None;
        if kind == AssetKind::Tls {
            let name = path.trim_start_matches("tls/");
            if let Some(r) = reasons.get(name) {
                reason = Some(describe_reason(name, r));
            }
        }
        let action = if kind == AssetKind::Tls && action == Action::NoOp && reason.is_some() {
            Action::Update
        } else {
            action
        };
        // New assets are listed, not printed whole: the resource list says what they add.
        let diff = if action != Action::Update {
            None
        } else {
            let new_text = match kind {
                AssetKind::StackTemplate => Some(readable_template(&new_template)),
                AssetKind::CloudConfig => rendered
                    .cloud_configs
                    .get(path.trim_start_matches("userdata/"))
                    .cloned(),
                AssetKind::Manifest => rendered
                    .manifests
                    .get(path.trim_start_matches("addons/"))
                    .cloned(),
                _ => None,
            };
            let old_text = match kind {
                AssetKind::StackTemplate => deployed_template.as_ref().map(readable_template),
                AssetKind::CloudConfig => {
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
                AssetKind::Manifest => old_manifests.get(path.as_str()).cloned(),
                _ => None,
            };
            match (old_text, new_text) {
                (Some(o), Some(n)) => diff::unified(
                    path,
                    &diff::redact(&o, &secret_refs),
                    &diff::redact(&n, &secret_refs),
                ),
                _ => None,
            }
        };
        assets.push(AssetChange {
            path: path.clone(),
            kind,
            action,
            old_sha256: old.map(|o| o.sha256.clone()),
            new_sha256: new.map(|n| n.sha256.clone()),
            diff,
            reason,
        });
    }

    let certificates = tls
        .assets
        .values()
        .map(|a| Certificate {
            name: a.name.clone(),
            not_after: if a.name == crate::assets::tls::BOOTSTRAP_TOKEN {
                "never (rotated only when its spec changes)".into()
            } else if a.name == crate::assets::tls::SECRETS_ENCRYPTION {
                "never (rotated by plan --rotate-secrets-key)".into()
            } else if a.not_after.is_empty() {
                KNOWN_AFTER_APPLY.into()
            } else {
                a.not_after.clone()
            },
            action: match reasons.get(a.name.as_str()) {
                Some(pki::IssueReason::Rotated(_)) => CertificateAction::Rotate,
                Some(_) => CertificateAction::Issue,
                None => CertificateAction::Keep,
            },
            reason: match reasons.get(a.name.as_str()) {
                Some(r) => Some(describe_reason(&a.name, r)),
                // Not in the state, yet kept: the interrupted apply's.
                None if prior_state.and_then(|s| s.tls.get(&a.name)) != Some(a) => {
                    shipped_by.clone()
                }
                None => None,
            },
        })
        .collect();

    let target = Target {
        region: config.region.clone(),
        account_id: stack_id.as_deref().and_then(stack_account),
        stack_id: stack_id.clone(),
    };
    new_state.region = Some(target.region.clone());
    new_state.account_id = target.account_id.clone();
    if let Some(stack) = new_state.stack.as_mut() {
        stack.id = stack_id;
    }
    new_state.records = records
        .iter()
        .filter(|r| r.action != RecordAction::Delete)
        .map(|r| RecordState {
            hosted_zone_id: r.hosted_zone_id.clone(),
            name: r.name.clone(),
            record_type: r.record_type.clone(),
            ttl: r.ttl,
            values: r.new_values.clone(),
        })
        .collect();
    let summary = summarize(&stack, &records, &assets);
    Ok(Plan {
        format_version: crate::planfile::FORMAT_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        kind: PlanKind::Apply,
        cluster_name: config.cluster_name.clone(),
        offline: online.is_none(),
        skipped,
        prior: binding,
        target,
        assets,
        template: (stack.action != Action::NoOp).then(|| rendered.stack_template.clone()),
        stack,
        records,
        certificates,
        new_state,
        summary,
        plan_sha256: String::new(),
        signature: None,
        provenance: None,
    }
    .seal())
}

/// The assets an apply shipped but never recorded (it died between executing its change set
/// and writing the state), when this plan would otherwise issue new ones. Looked for only
/// then, so a plan that issues nothing makes no extra request.
async fn shipped_by_interrupted_apply(
    config: &ClusterConfig,
    backend: &Backend,
    prior: Option<&State>,
    previous_tls: &crate::assets::TlsAssets,
    now: OffsetDateTime,
    options: &PlanOptions,
) -> Result<Option<crate::state::PendingAssets>, EngineError> {
    let preview = pki::resolve::<crate::aws::kms::KmsVault>(
        config,
        previous_tls,
        None,
        now,
        options.renew_before,
    )
    .await?;
    if preview.issued.is_empty() {
        return Ok(None);
    }
    Ok(backend
        .store
        .pending_for(prior)
        .await
        .map(|(pending, _)| pending))
}

fn describe_reason(name: &str, reason: &pki::IssueReason) -> String {
    if name == crate::assets::tls::BOOTSTRAP_TOKEN {
        return match reason {
            pki::IssueReason::New => "new kubelet bootstrap token".into(),
            _ => "the bootstrap token is replaced: nodes that have not joined yet need the new one"
                .into(),
        };
    }
    if let pki::IssueReason::Rotated(step) = reason {
        return step.describe().into();
    }
    if name == crate::assets::tls::SECRETS_ENCRYPTION {
        return match reason {
            pki::IssueReason::New => {
                "new key that encrypts Secrets in etcd (secretbox), kept from now on".into()
            }
            _ => "the Secrets encryption key is replaced: Secrets written with the old key can no longer be read".into(),
        };
    }
    if name == crate::assets::tls::SERVICE_ACCOUNT {
        return match reason {
            pki::IssueReason::New => {
                "new service-account signing key pair, kept across certificate renewals".into()
            }
            _ => "the service-account key pair is replaced: every service-account token signed so far stops working".into(),
        };
    }
    match reason {
        pki::IssueReason::New => "new certificate".into(),
        pki::IssueReason::SpecChanged => {
            "its spec changed (subject, SANs, usages, validity or issuer)".into()
        }
        pki::IssueReason::Expiring { not_after } => {
            format!("expires {not_after}, within the renewal window")
        }
        pki::IssueReason::Rotated(step) => step.describe().into(),
    }
}

/// Polls until the change set is created. `None` when CloudFormation found nothing to change.
async fn wait_for_change_set<C: StackService>(
    cfn: &C,
    stack: &str,
    name: &str,
    progress: Progress<'_>,
) -> Result<Option<crate::aws::cloudformation::ChangeSetDescription>, EngineError> {
    let mut delay = StdDuration::from_millis(500);
    let deadline = std::time::Instant::now() + StdDuration::from_secs(30 * 60);
    loop {
        let described = cfn.describe_change_set(stack, name).await?;
        match described.status.as_str() {
            "CREATE_COMPLETE" => return Ok(Some(described)),
            "FAILED" => {
                let reason = described.status_reason.clone().unwrap_or_default();
                if reason.contains("didn't contain changes")
                    || reason.contains("No updates are to be performed")
                {
                    return Ok(None);
                }
                return Err(EngineError::Refused(format!(
                    "change set {name} failed: {reason}"
                )));
            }
            status => progress(&format!("change set {name}: {status}")),
        }
        if std::time::Instant::now() > deadline {
            return Err(EngineError::Refused(format!(
                "change set {name} was not created within 30 minutes"
            )));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 3 / 2).min(StdDuration::from_secs(10));
    }
}

/// The change set's changes, with changed properties from the template diff, a replacement
/// forecast where CloudFormation gave none, and the instances that will roll.
fn resource_changes(
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

/// The externalDNSName record as configured (its value comes from the stack's outputs).
#[derive(serde::Serialize)]
struct RecordSpec {
    name: String,
    record_type: String,
    ttl: u32,
    zone: Option<String>,
}

fn desired_record_spec(config: &ClusterConfig) -> RecordSpec {
    RecordSpec {
        name: fqdn(&config.external_dns_name),
        record_type: if config.controllers_behind_load_balancer() {
            "CNAME"
        } else {
            "A"
        }
        .into(),
        ttl: config.record_set_ttl,
        zone: config.hosted_zone_id.clone().or(config.hosted_zone.clone()),
    }
}

/// The id of the zone cluster.yaml names, after checking that it exists and is a parent of
/// the record's name.
async fn checked_zone<D: DnsService>(
    config: &ClusterConfig,
    spec: &RecordSpec,
    dns: &D,
    progress: Progress<'_>,
) -> Result<String, EngineError> {
    progress("looking up the hosted zone");
    let zone = match (&config.hosted_zone_id, &config.hosted_zone) {
        (Some(id), _) => dns.zone_by_id(id).await?,
        (None, Some(name)) => dns.zone_by_name(name).await?,
        (None, None) => None,
    }
    .ok_or_else(|| {
        EngineError::Refused(format!(
            "hosted zone {} does not exist (hostedZoneId/hostedZone in cluster.yaml)",
            config
                .hosted_zone_id
                .clone()
                .or(config.hosted_zone.clone())
                .unwrap_or_default()
        ))
    })?;
    let name = spec.name.trim_end_matches('.');
    if !(name == zone.name || name.ends_with(&format!(".{}", zone.name))) {
        return Err(EngineError::Refused(format!(
            "hosted zone {} ({}) is not a parent of externalDNSName {name}",
            zone.name, zone.id
        )));
    }
    Ok(zone.id)
}

async fn plan_records<D: DnsService>(
    config: &ClusterConfig,
    prior: Option<&State>,
    spec: Option<&RecordSpec>,
    stack: &StackChange,
    outputs: &BTreeMap<String, String>,
    dns: &D,
    progress: Progress<'_>,
) -> Result<Vec<RecordChange>, EngineError> {
    let mut out = Vec::new();
    if let Some(spec) = spec {
        // A zone this record was already applied in was checked then: reading the record is
        // enough (and fails clearly if the zone is gone), which keeps a no-op plan cheap.
        let applied_in = config.hosted_zone_id.as_ref().and_then(|id| {
            prior?
                .records
                .iter()
                .find(|r| {
                    r.hosted_zone_id.trim_start_matches("/hostedzone/")
                        == id.trim_start_matches("/hostedzone/")
                        && fqdn(&r.name) == fqdn(&spec.name)
                })
                .map(|r| r.hosted_zone_id.clone())
        });
        let zone_id = match applied_in {
            Some(id) => id,
            None => checked_zone(config, spec, dns, progress).await?,
        };
        // The endpoint is known from the live stack unless the resource behind it is new or
        // replaced by this plan.
        let endpoint_changes = stack.resource_changes.iter().any(|c| {
            matches!(
                c.logical_id.as_str(),
                "EIPController" | "ElbAPIServer" | "NlbAPIServer"
            ) && c.may_get_new_identity()
        });
        let new_values = match outputs.get("ControllerEndpoint") {
            Some(v) if !endpoint_changes && stack.action != Action::Create => vec![v.clone()],
            _ => vec![KNOWN_AFTER_APPLY.to_string()],
        };
        progress("reading the record");
        let live = dns.record(&zone_id, &spec.name, &spec.record_type).await?;
        let action = match &live {
            Some(l) if l.values == new_values && l.ttl == spec.ttl => RecordAction::NoOp,
            _ => RecordAction::Upsert,
        };
        out.push(RecordChange {
            action,
            hosted_zone_id: zone_id,
            name: spec.name.clone(),
            record_type: spec.record_type.clone(),
            ttl: spec.ttl,
            old_values: live.map(|l| l.values),
            new_values,
        });
    }
    // Records this tool created that are no longer wanted; never any other record.
    for owned in prior.map(|s| s.records.as_slice()).unwrap_or_default() {
        let still_wanted = out
            .iter()
            .any(|r| fqdn(&r.name) == fqdn(&owned.name) && r.record_type == owned.record_type);
        if !still_wanted {
            out.push(RecordChange {
                action: RecordAction::Delete,
                hosted_zone_id: owned.hosted_zone_id.clone(),
                name: owned.name.clone(),
                record_type: owned.record_type.clone(),
                ttl: owned.ttl,
                old_values: Some(owned.values.clone()),
                new_values: owned.values.clone(),
            });
        }
    }
    Ok(out)
}

fn summarize(
    stack: &StackChange,
    records: &[RecordChange],
    assets: &[AssetChange],
) -> ChangeSummary {
    let mut s = ChangeSummary::default();
    if stack.resource_changes.is_empty() && stack.action != Action::NoOp {
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
    for c in &stack.resource_changes {
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

/// The deployed text of each add-on manifest that changes, read back from the artifact bucket
/// by its old hash so plan can show a diff. One that cannot be read is listed by hash alone.
async fn previous_manifests(
    config: &ClusterConfig,
    context: &AwsContext,
    prior: &BTreeMap<String, AssetRecord>,
    desired: &BTreeMap<String, AssetRecord>,
) -> BTreeMap<String, String> {
    use crate::state::objects::ObjectStore;
    let mut found = BTreeMap::new();
    let Some(artifacts) = config.artifacts() else {
        return found;
    };
    let objects = artifact_objects(context, &artifacts);
    for (path, new) in desired {
        let Some(old) = prior.get(path) else { continue };
        if new.kind != AssetKind::Manifest || old.sha256 == new.sha256 {
            continue;
        }
        if let Ok(Some(object)) = objects.get(&artifacts.addon_key(&old.sha256)).await
            && sha256_hex(&object.bytes) == old.sha256
            && let Ok(text) = String::from_utf8(object.bytes)
        {
            found.insert(path.clone(), text);
        }
    }
    found
}

fn artifact_objects(
    context: &AwsContext,
    artifacts: &crate::config::ArtifactLocation,
) -> crate::state::s3::S3Objects {
    crate::state::s3::S3Objects::connect(context, &artifacts.region, &artifacts.bucket)
}

/// The artifact bucket's location and objects; rendering already refused a cluster without one.
fn artifact_store(
    config: &ClusterConfig,
    context: &AwsContext,
) -> Result<(crate::config::ArtifactLocation, crate::state::s3::S3Objects), EngineError> {
    let artifacts = config
        .artifacts()
        .ok_or(render::RenderError::NoArtifactBucket)?;
    let objects = artifact_objects(context, &artifacts);
    Ok((artifacts, objects))
}

/// Uploads every add-on manifest whose key is not in `present`. Overwriting is safe because a
/// key names its content's hash, and it restores an object someone changed: the controllers
/// refuse one that does not match.
async fn upload_addons(
    objects: &crate::state::s3::S3Objects,
    rendered: &render::Rendered,
    present: &BTreeSet<String>,
) -> Result<(), EngineError> {
    use crate::state::objects::{ObjectStore, Precondition};
    for object in rendered
        .addon_objects
        .iter()
        .filter(|o| !present.contains(&o.key))
    {
        let text = rendered.manifests.get(&object.name).ok_or_else(|| {
            EngineError::Refused(format!("add-on {} was not rendered", object.name))
        })?;
        objects
            .put(&object.key, text.as_bytes(), Precondition::Overwrite)
            .await
            .map_err(crate::state::StateError::from)?;
    }
    Ok(())
}

/// Uploads the add-on objects the deployed stack names that are no longer in the bucket.
/// Changed content is not looked for here: the controllers refuse it at boot, and every plan
/// that changes the stack uploads all of them again.
async fn restore_missing_addons(
    config: &ClusterConfig,
    context: &AwsContext,
    rendered: &render::Rendered,
) -> Result<(), EngineError> {
    use crate::state::objects::ObjectStore;
    let (artifacts, objects) = artifact_store(config, context)?;
    let present: BTreeSet<String> = objects
        .list(&artifacts.addons_prefix(), None, 100_000)
        .await
        .map_err(crate::state::StateError::from)?
        .into_iter()
        .collect();
    upload_addons(&objects, rendered, &present).await
}

/// Uploads what the stack reads from S3 to the artifact bucket under content-addressed keys:
/// every add-on manifest, and the template when it is over the inline limit (its URL is
/// returned).
async fn upload_artifacts(
    config: &ClusterConfig,
    context: &AwsContext,
    rendered: &render::Rendered,
    template_sha256: &str,
    body: &str,
) -> Result<Option<String>, EngineError> {
    use crate::state::objects::{ObjectStore, Precondition};
    let (artifacts, objects) = artifact_store(config, context)?;
    upload_addons(&objects, rendered, &BTreeSet::new()).await?;
    if body.len() <= INLINE_TEMPLATE_LIMIT {
        return Ok(None);
    }
    let key = artifacts.template_key(template_sha256);
    objects
        .put(&key, body.as_bytes(), Precondition::Overwrite)
        .await
        .map_err(crate::state::StateError::from)?;
    Ok(Some(artifacts.url(&key)))
}

/// The plan for `destroy`: delete the stack and the records this tool created.
async fn plan_destroy(
    config: &ClusterConfig,
    prior: Option<Loaded>,
    online: Option<&AwsContext>,
    progress: Progress<'_>,
) -> Result<Plan, EngineError> {
    let Some(context) = online else {
        return Err(EngineError::Refused(
            "destroy needs AWS; it cannot be planned --offline".into(),
        ));
    };
    let binding = prior_binding(prior.as_ref());
    let stack_name = config.stack_name();
    progress("describing the stack");
    let live = context.cloudformation().describe_stack(&stack_name).await?;
    let prior_state = prior.as_ref().map(|p| p.state.clone());
    let recorded_id = prior_state
        .as_ref()
        .and_then(|s| s.stack.as_ref())
        .and_then(|s| s.id.clone());
    if let Some(recorded) = &recorded_id {
        check_stack_binding(
            config,
            recorded,
            live.as_ref().map(|s| s.id.as_str()),
            context,
        )
        .await?;
    }
    let stack_id = live.as_ref().map(|s| s.id.clone()).or(recorded_id);
    let target = Target {
        region: config.region.clone(),
        account_id: match stack_id.as_deref().and_then(stack_account) {
            Some(account) => Some(account),
            None => Some(caller_account(context).await?),
        },
        stack_id,
    };
    let stack = StackChange {
        name: stack_name.clone(),
        action: if live.is_some() {
            Action::Delete
        } else {
            Action::NoOp
        },
        change_set_name: None,
        change_set_arn: None,
        template_sha256: prior_state
            .as_ref()
            .and_then(|s| s.stack.as_ref())
            .map(|s| s.template_sha256.clone()),
        template_url: None,
        resource_changes: Vec::new(),
    };
    let records: Vec<RecordChange> = prior_state
        .as_ref()
        .map(|s| s.records.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|r| RecordChange {
            action: RecordAction::Delete,
            hosted_zone_id: r.hosted_zone_id,
            name: r.name,
            record_type: r.record_type,
            ttl: r.ttl,
            old_values: Some(r.values.clone()),
            new_values: r.values,
        })
        .collect();
    let assets: Vec<AssetChange> = prior_state
        .as_ref()
        .map(|s| s.assets.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, a)| a.kind != AssetKind::Tls)
        .map(|(path, a)| AssetChange {
            path,
            kind: a.kind,
            action: Action::Delete,
            old_sha256: Some(a.sha256),
            new_sha256: None,
            diff: None,
            reason: None,
        })
        .collect();
    let mut new_state = prior_state
        .clone()
        .unwrap_or_else(|| State::new(&config.cluster_name, uuid::Uuid::new_v4().to_string()));
    new_state.serial = binding.serial + 1;
    new_state.tool_version = env!("CARGO_PKG_VERSION").to_string();
    new_state.stack = None;
    new_state.records = Vec::new();
    // The certificates stay: a re-created cluster keeps its CA and kubeconfigs stay valid.
    new_state.assets.retain(|_, a| a.kind == AssetKind::Tls);
    let summary = ChangeSummary {
        remove: u32::from(stack.action == Action::Delete) + records.len() as u32,
        ..ChangeSummary::default()
    };
    Ok(Plan {
        format_version: crate::planfile::FORMAT_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        kind: PlanKind::Destroy,
        cluster_name: config.cluster_name.clone(),
        offline: false,
        skipped: Vec::new(),
        prior: binding,
        target,
        assets,
        template: None,
        stack,
        records,
        certificates: Vec::new(),
        new_state,
        summary,
        plan_sha256: String::new(),
        signature: None,
        provenance: None,
    }
    .seal())
}
