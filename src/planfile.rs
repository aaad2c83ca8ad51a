//! The plan file: everything `plan` decided, bound to the state it was made against, sealed
//! with `plan_sha256` so `apply` executes exactly what was reviewed. No I/O here.

use serde::{Deserialize, Serialize};

use crate::assets::AssetKind;
use crate::hash::{canonical_json, canonical_json_pretty, sha256_hex};
use crate::state::{PlanSigning, State};

pub const FORMAT_VERSION: u32 = 1;
/// Shown where a value is only known once the stack has been applied.
pub const KNOWN_AFTER_APPLY: &str = "(known after apply)";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlanKind {
    Apply,
    Destroy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Create,
    Update,
    Delete,
    NoOp,
}

impl Action {
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Delete => "-",
            Action::NoOp => " ",
        }
    }
}

/// Defines one word of the plan's vocabulary: an enum whose variants serialise to the given
/// words (the plan format's bytes), with `as_str`, `Display` and `FromStr` agreeing with serde.
macro_rules! plan_word {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $word:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $word)] $variant,)+
        }

        impl $name {
            /// The word the plan file and the views use.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownWord;
            fn from_str(word: &str) -> Result<$name, UnknownWord> {
                match word {
                    $($word => Ok($name::$variant),)+
                    _ => Err(UnknownWord {
                        what: stringify!($name),
                        word: word.to_string(),
                    }),
                }
            }
        }
    };
}

/// A word from outside (CloudFormation's answer) that the plan vocabulary has no variant for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{word:?} is not a {what} kube-aws knows")]
pub struct UnknownWord {
    pub what: &'static str,
    pub word: String,
}

plan_word! {
    /// What CloudFormation does to one resource, in its words.
    ResourceAction {
        Add = "Add",
        Modify = "Modify",
        Remove = "Remove",
        Import = "Import",
        /// Decided only while the stack updates (a dynamic reference, a macro).
        Dynamic = "Dynamic",
        /// Brings the resource's recorded state in line with what it really is (drift).
        SyncWithActual = "SyncWithActual",
    }
}

plan_word! {
    /// Whether a modified resource is replaced, in CloudFormation's words.
    Replacement {
        True = "True",
        False = "False",
        /// Depends on a value known only during the update.
        Conditional = "Conditional",
    }
}

plan_word! {
    /// Who forecast a replacement.
    ReplacementSource {
        /// CloudFormation said so in the change set.
        ChangeSet = "change-set",
        /// Derived from the template's changed properties (data/create-only-properties.json).
        Forecast = "forecast",
    }
}

plan_word! {
    /// What apply does to a Route53 record: Route53's change actions, and `no-op`.
    RecordAction {
        Upsert = "UPSERT",
        Delete = "DELETE",
        NoOp = "no-op",
    }
}

impl RecordAction {
    /// Whether apply sends this change to Route53.
    pub fn changes(self) -> bool {
        self != RecordAction::NoOp
    }

    pub fn symbol(self) -> &'static str {
        match self {
            RecordAction::Upsert => "~",
            RecordAction::Delete => "-",
            RecordAction::NoOp => " ",
        }
    }
}

plan_word! {
    /// What the plan does to a certificate or key.
    CertificateAction {
        Keep = "keep",
        Issue = "issue",
        /// One step of a key rotation (`plan --rotate-secrets-key`).
        Rotate = "rotate",
    }
}

impl CertificateAction {
    /// Whether the plan ships key material the state does not hold yet.
    pub fn is_new(self) -> bool {
        self != CertificateAction::Keep
    }
}

/// Counts of what a plan changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSummary {
    pub add: u32,
    pub change: u32,
    pub remove: u32,
    pub replace: u32,
}

/// Where a run came from: the cluster directory's git commit, and its CI run and pull request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
    /// Whether the cluster directory had uncommitted changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_dirty: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_run_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<String>,
}

impl Provenance {
    pub fn is_empty(&self) -> bool {
        *self == Provenance::default()
    }
}

/// The state the plan was made against; apply refuses if the state moved on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriorBinding {
    pub lineage: Option<String>,
    pub serial: u64,
    pub state_sha256: Option<String>,
    /// S3 object version of the state, for remote states.
    pub version_id: Option<String>,
}

/// Where the plan applies. apply refuses to run it against another region, account or stack,
/// whatever credentials or flags it is given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub region: String,
    /// Unknown only in an offline plan.
    pub account_id: Option<String>,
    /// The stack's ARN; unknown only in an offline plan of a cluster never applied.
    pub stack_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetChange {
    pub path: String,
    pub kind: AssetKind,
    pub action: Action,
    pub old_sha256: Option<String>,
    pub new_sha256: Option<String>,
    /// Unified diff of the decoded content with secrets redacted, when both sides are known.
    pub diff: Option<String>,
    /// Why, when it is not obvious (e.g. a certificate near expiry).
    pub reason: Option<String>,
}

/// How an Auto Scaling group's instances will roll when its launch template changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollingForecast {
    /// The group's size: its desired capacity, or for an autoscaled group (whose size is the
    /// cluster-autoscaler's and not in the template) its minimum, a lower bound.
    pub instances: u32,
    /// `instances` is a lower bound: the group has no desired capacity in its template.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub autoscaled: bool,
    pub max_batch_size: u32,
    pub batches: u32,
    pub min_in_service: u32,
    pub pause_time: String,
    /// The group holds each instance it terminates in a termination lifecycle hook for this
    /// long at most while the node drainer empties it: the instances are drained first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_timeout_seconds: Option<u32>,
}

impl RollingForecast {
    /// How many instances roll, as the plan views say it.
    pub fn instances_text(&self) -> String {
        if self.autoscaled {
            format!("at least {} (autoscaled)", self.instances)
        } else {
            self.instances.to_string()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceChange {
    pub action: ResourceAction,
    pub logical_id: String,
    pub resource_type: String,
    pub physical_id: Option<String>,
    pub replacement: Option<Replacement>,
    /// Who said so: CloudFormation's change set, or a forecast from the template.
    pub replacement_source: Option<ReplacementSource>,
    pub scope: Vec<String>,
    pub details: Vec<String>,
    /// Properties that differ between the deployed and the new template.
    pub changed_properties: Vec<String>,
    pub rolling: Option<RollingForecast>,
}

impl ResourceChange {
    /// Whether the resource (or the instances behind it) is replaced for certain.
    pub fn replaces(&self) -> bool {
        self.replacement == Some(Replacement::True) || self.rolling.is_some()
    }

    /// Whether the resource may get a new identity: added, or replaced for certain or
    /// perhaps. What depends on its identity (a DNS record's value) is known only after apply.
    pub fn may_get_new_identity(&self) -> bool {
        self.action == ResourceAction::Add
            || self.replaces()
            || self.replacement == Some(Replacement::Conditional)
    }

    /// `+`, `-`, `±` or `~`, as the plan views print it.
    pub fn symbol(&self) -> &'static str {
        match self.action {
            ResourceAction::Add => "+",
            ResourceAction::Remove => "-",
            _ if self.replaces() => "±",
            _ => "~",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackChange {
    pub name: String,
    pub action: Action,
    pub change_set_name: Option<String>,
    pub change_set_arn: Option<String>,
    pub template_sha256: Option<String>,
    /// Set when the template was too large to pass inline and was uploaded.
    pub template_url: Option<String>,
    pub resource_changes: Vec<ResourceChange>,
}

impl StackChange {
    /// A stack's change that has (or needs) no change set: unchanged, deleted, or offline.
    pub fn without_change_set(
        name: String,
        action: Action,
        template_sha256: Option<String>,
    ) -> StackChange {
        StackChange {
            name,
            action,
            change_set_name: None,
            change_set_arn: None,
            template_sha256,
            template_url: None,
            resource_changes: Vec::new(),
        }
    }
}

/// A worker pool's own stack (`stackPerPool`), planned beside the cluster stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStackChange {
    pub pool: String,
    pub stack: StackChange,
    /// Its parameters, each the cluster stack's output of the same name.
    pub parameters: Vec<String>,
    /// The exact template the stack gets, whenever it is created or updated (what `export
    /// --plan --pool` writes). When no change set was made at plan time (the cluster stack is
    /// created or changes, so its outputs are known only after it), apply makes one from this
    /// template, checked against `stack.template_sha256` first.
    pub template: Option<String>,
}

impl PoolStackChange {
    /// The pool's stack as the state records it, with `action` and no change set.
    pub fn of_recorded(
        pool: &str,
        recorded: &crate::state::StackState,
        action: Action,
    ) -> PoolStackChange {
        PoolStackChange {
            pool: pool.to_string(),
            stack: StackChange::without_change_set(
                recorded.name.clone(),
                action,
                Some(recorded.template_sha256.clone()),
            ),
            // The names it was applied with, which the render gives again.
            parameters: recorded.parameters.keys().cloned().collect(),
            template: None,
        }
    }

    /// Whether apply creates the change set (no change set was made at plan time).
    pub fn change_set_at_apply(&self) -> bool {
        self.stack.action != Action::NoOp
            && self.stack.action != Action::Delete
            && self.stack.change_set_arn.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordChange {
    pub action: RecordAction,
    pub hosted_zone_id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub record_type: String,
    pub ttl: u32,
    pub old_values: Option<Vec<String>>,
    /// [`KNOWN_AFTER_APPLY`] until the stack output exists.
    pub new_values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    pub name: String,
    pub not_after: String,
    pub action: CertificateAction,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: u32,
    pub tool_version: String,
    pub kind: PlanKind,
    pub cluster_name: String,
    /// Made with `--offline`: a preview that apply refuses.
    pub offline: bool,
    /// Made with `--preview` (a pull request's plan, with no key): apply refuses it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub preview: bool,
    /// What an offline plan did not look at.
    pub skipped: Vec<String>,
    /// What the reviewer should know beyond the changes (a step of a move between layouts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub prior: PriorBinding,
    pub target: Target,
    pub assets: Vec<AssetChange>,
    pub stack: StackChange,
    /// Each worker pool's own stack, with `stackPerPool`: apply runs them after `stack`,
    /// destroy before it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pool_stacks: Vec<PoolStackChange>,
    pub records: Vec<RecordChange>,
    pub certificates: Vec<Certificate>,
    /// A change of how plans are signed: apply takes it only from a plan signed with the key
    /// the state records (when it records one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<SigningChange>,
    /// The exact template the change set applies (what `export --plan` writes).
    pub template: Option<String>,
    /// The state apply writes, with values known only after apply filled in then.
    pub new_state: State,
    pub summary: ChangeSummary,
    pub plan_sha256: String,
    /// KMS's signature of `plan_sha256` with `planSigningKeyArn`; like the hash, it is not part
    /// of what it covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<PlanSignature>,
    /// Where the plan was made: commit, CI run, pull request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

/// How plans are signed before and after this plan; `from` is absent for a state written
/// before the setting was recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningChange {
    pub from: Option<PlanSigning>,
    pub to: PlanSigning,
}

impl SigningChange {
    /// One line for every output: what signs plans from now on.
    pub fn describe(&self) -> String {
        match &self.from {
            Some(PlanSigning::Key(key)) => format!(
                "Plan signing changes: signed with {key} → {}. Apply takes this plan only signed with {key}, the key the state records",
                self.to
            ),
            Some(from) => format!("Plan signing changes: {from} → {}", self.to),
            None => format!(
                "Plan signing is recorded in the state from now on: {} (states written before did not record it)",
                self.to
            ),
        }
    }
}

/// A plan's signature: who can make it is whoever may `kms:Sign` with that key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSignature {
    pub key_arn: String,
    /// Always `ECDSA_SHA_256`, over the 32 bytes `plan_sha256` spells in hex.
    pub algorithm: String,
    /// Base64 of the DER signature.
    pub value: String,
}

/// The fields a plan's hash does not cover: the hash itself and the signature of it.
const UNHASHED: [&str; 2] = ["plan_sha256", "signature"];

impl Plan {
    /// Whether applying this plan changes anything.
    pub fn has_changes(&self) -> bool {
        self.stack.action != Action::NoOp
            || self
                .pool_stacks
                .iter()
                .any(|p| p.stack.action != Action::NoOp)
            || self.records.iter().any(|r| r.action.changes())
            || self.assets.iter().any(|a| a.action != Action::NoOp)
            || self.signing.is_some()
    }

    /// The assets the plan creates, updates or deletes.
    pub fn changed_assets(&self) -> Vec<&AssetChange> {
        self.assets
            .iter()
            .filter(|a| a.action != Action::NoOp)
            .collect()
    }

    /// The hash over every field but `plan_sha256`.
    pub fn compute_sha256(&self) -> String {
        let mut value = serde_json::to_value(self).expect("a plan serialises");
        if let Some(map) = value.as_object_mut() {
            for field in UNHASHED {
                map.remove(field);
            }
        }
        sha256_hex(canonical_json(&value).expect("a value serialises"))
    }

    /// Sets `plan_sha256`.
    pub fn seal(mut self) -> Plan {
        self.plan_sha256 = self.compute_sha256();
        self
    }

    /// The template a pool stack's change set applies, checked against the hash the plan
    /// records for it (`None` when the plan does not change that pool's stack).
    pub fn reviewed_pool_template(&self, pool: &str) -> Result<Option<&str>, String> {
        let Some(change) = self.pool_stacks.iter().find(|p| p.pool == pool) else {
            return Ok(None);
        };
        let Some(template) = &change.template else {
            return Ok(None);
        };
        let actual = sha256_hex(template);
        match &change.stack.template_sha256 {
            Some(recorded) if *recorded == actual => Ok(Some(template)),
            recorded => Err(format!(
                "the plan's template for node pool {pool} hashes to {actual}, not to the template_sha256 it records ({})",
                recorded.as_deref().unwrap_or("none")
            )),
        }
    }

    /// The template the change set applies, checked against the hash the plan records for it
    /// (`None` when the plan changes no template).
    pub fn reviewed_template(&self) -> Result<Option<&str>, String> {
        let Some(template) = &self.template else {
            return Ok(None);
        };
        let actual = sha256_hex(template);
        match &self.stack.template_sha256 {
            Some(recorded) if *recorded == actual => Ok(Some(template)),
            recorded => Err(format!(
                "the plan's template hashes to {actual}, not to the template_sha256 it records ({})",
                recorded.as_deref().unwrap_or("none")
            )),
        }
    }

    /// The 32 bytes a signature covers: `plan_sha256` decoded from hex.
    pub fn digest(&self) -> Option<Vec<u8>> {
        let hex = self.plan_sha256.as_bytes();
        if hex.len() != 64 {
            return None;
        }
        hex.chunks(2)
            .map(|pair| {
                std::str::from_utf8(pair)
                    .ok()
                    .and_then(|p| u8::from_str_radix(p, 16).ok())
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{origin}: not a kube-aws plan: {source}")]
    Malformed {
        origin: String,
        source: serde_json::Error,
    },
    #[error(
        "{origin}: plan format_version {found} is not known to kube-aws {} (it reads version {FORMAT_VERSION})",
        env!("CARGO_PKG_VERSION")
    )]
    UnknownVersion { origin: String, found: u64 },
    #[error(
        "{origin}: the plan was changed after it was made (plan_sha256 {recorded} does not match its content, which hashes to {actual}); make a new plan"
    )]
    Tampered {
        origin: String,
        recorded: String,
        actual: String,
    },
}

pub fn encode(plan: &Plan) -> Vec<u8> {
    canonical_json_pretty(plan).expect("a plan serialises")
}

/// Decodes a plan, refusing unknown versions and any content that does not match its hash.
pub fn decode(origin: &str, bytes: &[u8]) -> Result<Plan, PlanError> {
    let malformed = |source| PlanError::Malformed {
        origin: origin.to_string(),
        source,
    };
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(malformed)?;
    match value.get("format_version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(FORMAT_VERSION) => {}
        Some(found) => {
            return Err(PlanError::UnknownVersion {
                origin: origin.to_string(),
                found,
            });
        }
        None => return Err(malformed(serde::de::Error::missing_field("format_version"))),
    }
    let recorded = value
        .get("plan_sha256")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    let mut rest = value.clone();
    if let Some(map) = rest.as_object_mut() {
        for field in UNHASHED {
            map.remove(field);
        }
    }
    let actual = sha256_hex(canonical_json(&rest).expect("a value serialises"));
    if actual != recorded {
        return Err(PlanError::Tampered {
            origin: origin.to_string(),
            recorded,
            actual,
        });
    }
    // From the bytes, not the value: serde's errors then say the line and column.
    let plan: Plan = serde_json::from_slice(bytes).map_err(malformed)?;
    Ok(plan)
}

/// Plans for tests across the crate.
#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;
