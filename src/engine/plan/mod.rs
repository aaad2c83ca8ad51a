//! `plan` and the planning half of `destroy`: render against the state, hash and diff every
//! asset, create and describe the CloudFormation change set, diff the Route53 records, and
//! seal it all into a plan file. The no-op path makes no KMS call and no CloudFormation write.
//!
//! `build` renders, `stack` and `records` ask AWS, `artifacts` uploads what the stack reads,
//! and `changes` makes every decision from what they found, without AWS.

mod artifacts;
mod build;
mod changes;
mod destroy;
mod notes;
pub(crate) use changes::{desired_assets, signing_after, signing_change};
pub(crate) mod records;
pub(crate) mod stack;

use destroy::plan_destroy;
use notes::plan_notes;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use time::{Duration, OffsetDateTime};

use super::backend::Backend;
use super::{AwsOptions, EngineError};
use crate::assets::TlsAssets;
use crate::aws::AwsContext;
use crate::aws::cloudformation::StackService;
use crate::aws::kms::KmsVault;
use crate::config::{ClusterConfig, StateBackendKind};
use crate::planfile::{
    Action, ChangeSummary, Plan, PlanKind, PoolStackChange, PriorBinding, StackChange, Target,
};
use crate::state::lock::Locker;
use crate::state::store::Loaded;
use crate::state::{PendingAssets, State};

pub use build::{Build, BuildInputs, Prepared, build, prepare, render_for_apply, render_key};
pub use changes::applied_state;

#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub offline: bool,
    /// Online, but with no KMS call at all (a pull request's plan): nothing is decrypted,
    /// issued or signed, and the plan says it is a preview, which apply refuses.
    pub preview: bool,
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
            preview: false,
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
        return Err(EngineError::OfflineWithRemoteState);
    }
    if !options.offline && config.plan_signing_key_arn.is_none() && !config.unsigned_plans {
        return Err(EngineError::MissingPlanSigningKey {
            file: dir.join(crate::config::CLUSTER_FILE),
        });
    }
    // Offline, no AWS client is made at all (it would read the system's CA certificates):
    // the state is local and nothing is signed.
    let (context, backend) = if options.offline {
        aws.check_region(&config)?;
        (None, Backend::local(dir))
    } else {
        let mut context = aws.context(&config).await?;
        if options.preview {
            context = context.previewing();
        }
        let backend = Backend::open(dir, &config, &context);
        (Some(context), backend)
    };
    progress("reading the state");
    // Terraform's plan takes the lock; this one reads it: a plan made while an apply runs, or
    // after one died holding it, describes a state that is changing or half-applied.
    if let Some(info) = backend.store.locker.current().await? {
        return Err(crate::state::StateError::Locked {
            expired: info.expired_at(now),
            info: Box::new(info),
        }
        .into());
    }
    let prior = backend.load(&config).await?;
    super::anchor::check(&backend, prior.as_ref(), super::anchor::Signatures::Skip).await?;
    // What the state records of plan signing (`None` without a state), before `prior` moves.
    let recorded_signing = prior.as_ref().map(|l| l.state.plan_signing.clone());
    let online = context.as_ref();
    let mut plan = if options.destroy {
        plan_destroy(&config, prior, online, progress).await?
    } else {
        plan_apply(
            dir, &config, &backend, prior, online, options, now, progress,
        )
        .await?
    };
    plan.signing = changes::signing_change(recorded_signing.as_ref(), &plan.new_state);
    // An offline plan is a preview apply refuses: where it was made is not worth a git call.
    let provenance = match online {
        Some(_) => super::provenance::collect(dir),
        None => Default::default(),
    };
    let plan = Plan {
        provenance: (!provenance.is_empty()).then_some(provenance),
        preview: options.preview,
        ..plan
    }
    .seal();
    // While signing changes away from a key the state records, that key signs the plan.
    let key = super::signing::signing_key_for(
        &config,
        recorded_signing.as_ref().and_then(Option::as_ref),
    );
    match (online, key) {
        (Some(context), Some(key)) if options.sign && !options.preview => {
            progress("signing the plan");
            sign(plan, &context.kms(), &key).await
        }
        _ => Ok(plan),
    }
}

/// Signs the sealed plan's hash with the plan signing key, through KMS.
async fn sign(
    mut plan: Plan,
    kms: &crate::aws::kms::KmsVault,
    key: &str,
) -> Result<Plan, EngineError> {
    use base64::Engine;
    let digest = plan.digest().ok_or(EngineError::Unsealed)?;
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

/// A plan's fields that do not depend on what it plans; `plan` seals it once, with its
/// provenance.
fn unsealed(
    config: &ClusterConfig,
    kind: PlanKind,
    prior: PriorBinding,
    target: Target,
    stack: StackChange,
) -> Plan {
    Plan {
        format_version: crate::planfile::FORMAT_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        kind,
        cluster_name: config.cluster_name.clone(),
        offline: false,
        preview: false,
        skipped: Vec::new(),
        notes: Vec::new(),
        prior,
        target,
        assets: Vec::new(),
        stack,
        pool_stacks: Vec::new(),
        records: Vec::new(),
        certificates: Vec::new(),
        signing: None,
        template: None,
        new_state: State::new(&config.cluster_name, String::new()),
        summary: ChangeSummary::default(),
        plan_sha256: String::new(),
        signature: None,
        provenance: None,
    }
}

/// Where the plan applies, as the stacks found it; `new_state` records the same, with each
/// pool stack the plan leaves as it is (its id and the parameters it runs with).
fn bind_to_stacks(
    config: &ClusterConfig,
    new_state: &mut State,
    stack: &stack::StackPlan,
    settled_pools: BTreeMap<String, (String, BTreeMap<String, String>)>,
) -> Target {
    let target = Target {
        region: config.region.clone(),
        account_id: stack.stack_id.as_deref().and_then(stack::stack_account),
        stack_id: stack.stack_id.clone(),
    };
    new_state.region = Some(target.region.clone());
    new_state.account_id = target.account_id.clone();
    if let Some(s) = new_state.stack.as_mut() {
        s.id = stack.stack_id.clone();
    }
    for (pool, (id, parameters)) in settled_pools {
        if let Some(recorded) = new_state.pool_stacks.get_mut(&pool) {
            recorded.id = Some(id);
            recorded.parameters = parameters;
        }
    }
    target
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
    let binding = prior_binding(prior.as_ref());
    let prior = prior.as_ref().map(|p| &p.state);
    check_stack_layout(config, prior)?;
    let refused: Vec<_> = running_cluster_findings(dir, config, prior)
        .into_iter()
        .filter(|f| f.severity == crate::finding::Severity::Error)
        .collect();
    if !refused.is_empty() {
        return Err(EngineError::Invalid { findings: refused });
    }
    // From here on, the cluster as this plan deploys it (one etcd member closer).
    let etcd_step = EtcdStep::of(config, prior);
    let deployed = as_deployed(config, prior);
    let config = &*deployed;

    // What an interrupted apply shipped is reused rather than issued again.
    let mut inputs = BuildInputs::new(config, prior, now);
    inputs.renew_before = options.renew_before;
    inputs.rotate_secrets_key = options.rotate_secrets_key;
    let reused = match online {
        Some(_) => reuse_shipped(backend, &inputs, progress).await?,
        None => None,
    };
    if let Some((tls, _)) = &reused {
        inputs.previous_tls = tls;
    }
    let shipped_by = reused.as_ref().map(|(_, why)| why.as_str());
    // A preview holds no key: certificates due are shown, as offline, not issued.
    let kms = online.filter(|_| !options.preview).map(AwsContext::kms);
    let images = online.map(AwsContext::images);
    let prepared = prepare(dir, &inputs, kms.as_ref(), images.as_ref(), progress).await?;
    if online.is_none()
        && let Some(plan) = unchanged_offline(config, prior, &binding, &prepared)
    {
        return Ok(plan);
    }
    // An unchanged pool in a stack of its own is not rendered again (its key is the state's).
    let reuse = prepared.reusable_pools(prior);
    let built = prepared.render_reusing(config, &reuse)?;
    built.refuse_invalid()?;
    refuse_other_changes_while_moving(config, prior, &built)?;
    // Rendered from the user's template file: render checks it is JSON, and a slip there is
    // an error here, never a panic.
    let new_template: Value = serde_json::from_str(&built.rendered.stack_template)
        .map_err(|e| EngineError::TemplateNotJson(e.to_string()))?;
    if etcd_step.is_some() {
        refuse_step_without_membership_scripts(dir, &built.rendered, &new_template)?;
    }
    let mut skipped = built.skipped.clone();
    if !reuse.is_empty() {
        skipped.push(format!(
            "rendering {} unchanged node pool(s): their inputs hash to the keys the state records, so their stacks and cloud-configs are the state's",
            reuse.len()
        ));
    }

    let stack = stack::plan_stack(
        dir,
        config,
        prior,
        &binding,
        online,
        &built.rendered,
        &new_template,
        progress,
    )
    .await?;
    skipped.extend(stack.skipped.clone());
    if etcd_step.is_some()
        && let Some(deployed) = &stack.deployed_template
    {
        refuse_step_before_members_run_the_scripts(dir, deployed)?;
    }
    let stack::PoolStacksPlan {
        changes: pool_stacks,
        settled: settled_pools,
        deployed_templates: deployed_pool_templates,
    } = stack::plan_pool_stacks(
        config,
        prior,
        &binding,
        online,
        &built.rendered,
        &stack,
        progress,
    )
    .await?;
    let records = match online {
        None => {
            skipped.push(records::OFFLINE_SKIPPED.into());
            Vec::new()
        }
        Some(context) => {
            records::plan_records(
                config,
                prior,
                &stack.change,
                &new_template,
                &stack.outputs,
                &context.route53(),
                progress,
            )
            .await?
        }
    };

    let mut new_state = applied_state(config, prior, uuid::Uuid::new_v4().to_string(), &built);
    let prior_assets = prior.map(|s| s.assets.clone()).unwrap_or_default();
    let old_manifests = match online {
        Some(context) => {
            artifacts::previous_manifests(config, context, &prior_assets, &new_state.assets).await
        }
        None => Default::default(),
    };
    let secrets: Vec<&str> = built
        .tls
        .assets
        .values()
        .chain(inputs.previous_tls.values())
        .map(|a| a.key_ciphertext.as_str())
        .collect();
    let assets = changes::asset_changes(&changes::AssetInputs {
        prior: &prior_assets,
        desired: &new_state.assets,
        rendered: &built.rendered,
        new_template: &new_template,
        deployed_template: stack.deployed_template.as_ref(),
        deployed_pool_templates: deployed_pool_templates.iter().collect(),
        old_manifests: &old_manifests,
        issued: &built.tls.issued,
        secrets,
    });
    let certificates =
        changes::certificates(&built.tls.assets, &built.tls.issued, prior, shipped_by);

    let target = bind_to_stacks(config, &mut new_state, &stack, settled_pools);
    new_state.records = changes::recorded_records(&records);
    let summary = changes::summarize(&stack.change, &pool_stacks, &records, &assets);
    let overrides: Vec<&str> = built.templates.overrides().map(|(name, _)| name).collect();
    let mut notes: Vec<String> = etcd_step.map(|step| step.describe()).into_iter().collect();
    notes.extend(plan_notes(
        (config, prior, options),
        (built.keep_pools_in_cluster_stack, &overrides),
        &stack.change,
        &pool_stacks,
    ));
    let template = (stack.change.action != Action::NoOp).then_some(built.rendered.stack_template);
    Ok(Plan {
        offline: online.is_none(),
        skipped,
        notes,
        assets,
        template,
        pool_stacks,
        records,
        certificates,
        new_state,
        summary,
        ..unsealed(config, PlanKind::Apply, binding, target, stack.change)
    })
}

/// What cluster.yaml asks of a running cluster that one plan cannot simply do, at the
/// setting's line for plan and validate alike: a Kubernetes version out of skew order (an
/// error), and an etcd membership change (a warning saying the steps it takes).
pub(crate) fn running_cluster_findings(
    dir: &Path,
    config: &ClusterConfig,
    prior: Option<&State>,
) -> Vec<crate::finding::Finding> {
    let mut findings = version_skew_findings(dir, config, prior);
    findings.extend(etcd_membership_findings(dir, config, prior));
    findings
}

/// How many etcd members the running cluster has: one cloud-config asset each in its state.
fn running_etcd_members(prior: &State) -> usize {
    use crate::assets::{AssetKind, CloudConfigId, asset_path};
    (0..)
        .take_while(|&i| {
            let path = asset_path(AssetKind::CloudConfig, &CloudConfigId::Etcd(i).name());
            prior.assets.contains_key(&path)
        })
        .count()
}

/// One reviewed step of an etcd membership change. Each plan moves the member count one
/// member toward `etcdCount`, so no step changes the quorum by more than one member: an added
/// member joins as a learner and becomes a voter once it has caught up (etcd-join,
/// etcd-membership), and a removed one leaves the member list before its instance goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EtcdStep {
    pub running: usize,
    pub deployed: usize,
    pub wanted: usize,
}

impl EtcdStep {
    /// The step a plan of `config` against `prior` takes, if the count changes.
    pub(crate) fn of(config: &ClusterConfig, prior: Option<&State>) -> Option<EtcdStep> {
        let running = running_etcd_members(prior.filter(|s| s.stack.is_some())?);
        let wanted = config.etcd_count as usize;
        if running == 0 || running == wanted {
            return None;
        }
        let deployed = if wanted > running {
            running + 1
        } else {
            running - 1
        };
        Some(EtcdStep {
            running,
            deployed,
            wanted,
        })
    }

    /// The plans it takes from the running count to `etcdCount`, this one included.
    pub(crate) fn plans_left(&self) -> usize {
        self.running.abs_diff(self.wanted)
    }

    /// What the step does, for the plan's notes and validate.
    pub(crate) fn describe(&self) -> String {
        let after = match self.plans_left() - 1 {
            0 => format!("this plan reaches etcdCount: {}", self.wanted),
            n => format!(
                "{n} more plan(s) after this one reach etcdCount: {} (plan again after each apply)",
                self.wanted
            ),
        };
        let (running, deployed) = (self.running, self.deployed);
        if deployed > running {
            format!(
                "etcd grows from {running} to {deployed} members, one member per plan: etcd-{running} starts, joins the running cluster as a learner through its members (etcd-join) and becomes a voter once it has caught up (etcd-membership), so the quorum stays {} of {running} until then. Every member rolls once with its data volume (the member list each renders changed); {after}",
                running / 2 + 1
            )
        } else {
            format!(
                "etcd shrinks from {running} to {deployed} members, one member per plan: the first member rolled (with its data volume) removes etcd-{deployed} from the member list (etcd-membership), before the stack deletes etcd-{deployed}'s instance once the update is done (its volume is kept as a snapshot), leaving a quorum of {} of {deployed}; {after}",
                deployed / 2 + 1
            )
        }
    }
}

/// `config` as this plan deploys it against `prior`: `etcdCount` one member closer to what
/// cluster.yaml asks for ([`EtcdStep`]). apply renders the reviewed plan from the same.
pub(crate) fn as_deployed<'a>(
    config: &'a ClusterConfig,
    prior: Option<&State>,
) -> std::borrow::Cow<'a, ClusterConfig> {
    match EtcdStep::of(config, prior) {
        Some(step) => std::borrow::Cow::Owned(ClusterConfig {
            etcd_count: step.deployed as u32,
            ..config.clone()
        }),
        None => std::borrow::Cow::Borrowed(config),
    }
}

/// What a member needs for a membership step: etcd-join (a member without data joins as a
/// learner) and etcd-membership (promotes it, removes the member a shrink drops).
const MEMBERSHIP_SCRIPTS: [&str; 2] = ["/opt/bin/etcd-join", "/opt/bin/etcd-membership"];

/// An error at `etcdCount`'s line: this membership step cannot be taken, and why.
fn step_refused(dir: &Path, why: String) -> EngineError {
    EngineError::Invalid {
        findings: vec![crate::engine::at_setting(
            dir,
            "etcdCount",
            crate::finding::Finding::error(crate::config::CLUSTER_FILE, None, why),
        )],
    }
}

/// A step's render must carry the membership scripts and let a member read its stack's status
/// (a cluster directory's own templates, copied by an older `kube-aws render`, may not): an
/// added member would otherwise found a cluster of its own and a removed one stay a voter.
fn refuse_step_without_membership_scripts(
    dir: &Path,
    rendered: &crate::render::Rendered,
    new_template: &Value,
) -> Result<(), EngineError> {
    let lacking: Vec<&String> = rendered
        .cloud_configs
        .iter()
        .filter(|(name, _)| name.starts_with("cloud-config-etcd-"))
        .filter(|(_, text)| MEMBERSHIP_SCRIPTS.iter().any(|s| !text.contains(s)))
        .map(|(name, _)| name)
        .collect();
    // The etcd role's own policies, not any other role's.
    let describes = new_template["Resources"]["IAMRoleEtcd"]
        .to_string()
        .contains("\"cloudformation:DescribeStacks\"");
    if lacking.is_empty() && describes {
        return Ok(());
    }
    Err(step_refused(
        dir,
        format!(
            "changing the etcd member count needs {} in every member's cloud-config and cloudformation:DescribeStacks for the etcd role; this render lacks {}: merge the built-in templates (`kube-aws render` shows them) into the cluster directory's own",
            MEMBERSHIP_SCRIPTS.join(" and "),
            if lacking.is_empty() {
                "the DescribeStacks permission".to_string()
            } else {
                lacking
                    .iter()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ),
    ))
}

/// The running members must already carry the membership scripts: a step whose update rolls
/// back goes back to them, and only they remove a member that joined before the rollback.
fn refuse_step_before_members_run_the_scripts(
    dir: &Path,
    deployed: &Value,
) -> Result<(), EngineError> {
    let running = changes::userdata_by_resource(deployed)
        .get("LaunchTemplateEtcd0")
        .and_then(|u| crate::diff::decode_userdata(u));
    match running {
        Some(text) if MEMBERSHIP_SCRIPTS.iter().all(|s| text.contains(s)) => Ok(()),
        _ => Err(step_refused(
            dir,
            format!(
                "the running etcd members do not have {} yet (applied by an earlier kube-aws): apply once with etcdCount as it runs, then change it",
                MEMBERSHIP_SCRIPTS.join(" and ")
            ),
        )),
    }
}

/// validate's word on a membership change: a warning at `etcdCount`'s line saying the steps.
fn etcd_membership_findings(
    dir: &Path,
    config: &ClusterConfig,
    prior: Option<&State>,
) -> Vec<crate::finding::Finding> {
    let Some(step) = EtcdStep::of(config, prior) else {
        return Vec::new();
    };
    vec![crate::engine::at_setting(
        dir,
        "etcdCount",
        crate::finding::Finding::warning(
            crate::config::CLUSTER_FILE,
            None,
            format!(
                "the running cluster has {} etcd member(s): {}",
                step.running,
                step.describe()
            ),
        ),
    )]
}

/// A running cluster's Kubernetes version moves in skew order (`releases::version_move`): a
/// `kubernetesVersion` that skips a minor or goes back one is an error at its line, for plan
/// and validate alike. Nothing to check before the first apply or in a state that records no
/// version.
pub(crate) fn version_skew_findings(
    dir: &Path,
    config: &ClusterConfig,
    prior: Option<&State>,
) -> Vec<crate::finding::Finding> {
    match prior.and_then(State::running_kubernetes_version) {
        Some(deployed) => skew_findings(dir, config, deployed, |message| message),
        None => Vec::new(),
    }
}

/// The cluster stack's `KubernetesVersion` output is the version its control plane runs. It
/// is newer than the state's when an apply changed the cluster stack and stopped before it
/// wrote the state (a pool stack failed, or it was interrupted): a plan is held to the skew
/// order against it too, so going back to the state's version is refused.
pub(crate) fn live_version_findings(
    dir: &Path,
    config: &ClusterConfig,
    prior: Option<&State>,
    outputs: &BTreeMap<String, String>,
) -> Vec<crate::finding::Finding> {
    let Some(live) = outputs.get(KUBERNETES_VERSION_OUTPUT) else {
        return Vec::new();
    };
    let recorded = prior.and_then(State::running_kubernetes_version);
    if recorded == Some(live.as_str()) {
        return Vec::new();
    }
    skew_findings(dir, config, live, |message| {
        format!(
            "the cluster stack runs {live} (its {KUBERNETES_VERSION_OUTPUT} output) while the state records {} (an apply changed the cluster stack and stopped before it wrote the state): {message}",
            recorded.unwrap_or("no version")
        )
    })
}

/// `kubernetesVersion` against the version `deployed` runs, as an error at its line (its
/// message as `say` puts it) when the move breaks the skew order.
fn skew_findings(
    dir: &Path,
    config: &ClusterConfig,
    deployed: &str,
    say: impl FnOnce(String) -> String,
) -> Vec<crate::finding::Finding> {
    match crate::releases::version_move(deployed, &config.kubernetes_version) {
        Ok(_) => Vec::new(),
        Err(message) => vec![crate::engine::at_setting(
            dir,
            "kubernetesVersion",
            crate::finding::Finding::error(crate::config::CLUSTER_FILE, None, say(message)),
        )],
    }
}

/// The cluster stack's output naming the Kubernetes version it deploys.
pub(crate) const KUBERNETES_VERSION_OUTPUT: &str = "KubernetesVersion";

/// Refuses to move an applied cluster from a stack per pool back to one stack: the plan would
/// delete every pool's stack, and its instances with it, before the cluster stack had
/// groups of its own again. (The other way is a two-step move: see `migration_notes`.)
fn check_stack_layout(config: &ClusterConfig, prior: Option<&State>) -> Result<(), EngineError> {
    let Some(prior) = prior.filter(|s| s.stack.is_some()) else {
        return Ok(());
    };
    let message = match (config.stack_per_pool, prior.pool_stacks.is_empty()) {
        (false, false) => format!(
            "the cluster was applied with a stack per node pool ({}); without stackPerPool the plan would delete them and replace every worker. Set stackPerPool: true again",
            prior
                .pool_stacks
                .values()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => return Ok(()),
    };
    Err(EngineError::StackLayoutChange { message })
}

/// The first step of moving to `stackPerPool` leaves the cluster stack exactly as it runs, so
/// no group there rolls just before step 2 removes it and nothing else changes unreviewed
/// beside the move: a plan that would change it too is refused.
fn refuse_other_changes_while_moving(
    config: &ClusterConfig,
    prior: Option<&State>,
    built: &Build,
) -> Result<(), EngineError> {
    let recorded = prior.and_then(|s| s.stack.as_ref());
    let rendered = crate::hash::sha256_hex(&built.rendered.stack_template);
    match recorded {
        Some(recorded)
            if built.keep_pools_in_cluster_stack && recorded.template_sha256 != rendered =>
        {
            Err(EngineError::StackLayoutChange {
                message: format!(
                    "moving to a stack per pool leaves stack {} as it runs, but this plan would also change it (its template {} → {}). Apply the other changes first without stackPerPool (with this kube-aws version), then set it",
                    config.stack_name(),
                    &recorded.template_sha256[..12.min(recorded.template_sha256.len())],
                    &rendered[..12]
                ),
            })
        }
        _ => Ok(()),
    }
}

/// What an offline plan made from the state says it did not do.
pub const RENDER_SKIPPED: &str = "rendering: the inputs hash to the state's render key, so the assets are the state's, byte for byte";

/// The offline plan of a cluster whose render inputs hash to the state's render key: the
/// render would give the state's assets byte for byte, so nothing is rendered, validated or
/// compressed, and the plan is the one the full offline path makes (a test compares them).
/// `None` when anything differs, or the state predates render keys.
fn unchanged_offline(
    config: &ClusterConfig,
    prior: Option<&State>,
    binding: &PriorBinding,
    prepared: &Prepared,
) -> Option<Plan> {
    let prior = prior?;
    let recorded_stack = prior.stack.as_ref()?;
    let bound = changes::state_render_key(
        &prepared.render_key,
        &prior.assets,
        &recorded_stack.template_sha256,
        &prior.pool_stacks,
    );
    if prior.render_key.as_ref() != Some(&bound)
        || !prepared.tls.issued.is_empty()
        || recorded_stack.tags != config.stack_tags
        || prior
            .pool_stacks
            .values()
            .any(|s| s.tags != config.stack_tags)
    {
        return None;
    }
    let mut skipped = prepared.skipped.clone();
    skipped.push(stack::OFFLINE_SKIPPED.into());
    skipped.push(records::OFFLINE_SKIPPED.into());
    skipped.push(RENDER_SKIPPED.into());
    let assets = changes::asset_changes(&changes::AssetInputs {
        prior: &prior.assets,
        desired: &prior.assets,
        rendered: &crate::render::Rendered::default(),
        new_template: &Value::Null,
        deployed_template: None,
        deployed_pool_templates: Vec::new(),
        old_manifests: &Default::default(),
        issued: &[],
        secrets: Vec::new(),
    });
    let certificates = changes::certificates(&prepared.tls.assets, &[], Some(prior), None);
    let target = Target {
        region: config.region.clone(),
        account_id: recorded_stack.id.as_deref().and_then(stack::stack_account),
        stack_id: recorded_stack.id.clone(),
    };
    let mut new_state = changes::unchanged_state(
        config,
        prior,
        &recorded_stack.template_sha256,
        &prepared.image,
        &prepared.tls.assets,
        bound,
    );
    new_state.region = Some(target.region.clone());
    new_state.account_id = target.account_id.clone();
    new_state.records = Vec::new();
    let change = StackChange::without_change_set(
        config.stack_name(),
        Action::NoOp,
        Some(recorded_stack.template_sha256.clone()),
    );
    let pool_stacks: Vec<PoolStackChange> = prior
        .pool_stacks
        .iter()
        .map(|(pool, recorded)| PoolStackChange::of_recorded(pool, recorded, Action::NoOp))
        .collect();
    let summary = changes::summarize(&change, &pool_stacks, &[], &assets);
    Some(Plan {
        offline: true,
        pool_stacks,
        skipped,
        assets,
        certificates,
        new_state,
        summary,
        ..unsealed(config, PlanKind::Apply, binding.clone(), target, change)
    })
}

/// The state's certificates plus those an interrupted apply shipped, and the reason the plan
/// gives for keeping them; `None` when there are none to reuse.
async fn reuse_shipped(
    backend: &Backend,
    inputs: &BuildInputs<'_>,
    progress: Progress<'_>,
) -> Result<Option<(TlsAssets, String)>, EngineError> {
    let Some(pending) = shipped_by_interrupted_apply(backend, inputs).await? else {
        return Ok(None);
    };
    let short = pending
        .plan_sha256
        .get(..12)
        .unwrap_or(&pending.plan_sha256);
    progress(&format!(
        "reusing the certificates the interrupted apply of plan {short} shipped"
    ));
    let why = format!("shipped by the interrupted apply of plan {short} and kept");
    let mut merged = inputs.previous_tls.clone();
    merged.extend(pending.tls);
    Ok(Some((merged, why)))
}

/// The assets an apply shipped but never recorded (it died between executing its change set
/// and writing the state), when this plan would otherwise issue new ones. Looked for only
/// then, so a plan that issues nothing makes no extra request.
async fn shipped_by_interrupted_apply(
    backend: &Backend,
    inputs: &BuildInputs<'_>,
) -> Result<Option<PendingAssets>, EngineError> {
    let preview = super::pki::resolve::<KmsVault>(
        inputs.config,
        inputs.previous_tls,
        None,
        inputs.now,
        inputs.renew_before,
    )
    .await?;
    if preview.issued.is_empty() {
        return Ok(None);
    }
    Ok(super::pending::proven(inputs.config, backend, inputs.prior)
        .await?
        .map(|(pending, _)| pending))
}

#[cfg(test)]
mod tests;
