//! The versioned state file: what was last applied (lineage, serial, stack, asset hashes,
//! certificates and key ciphertexts, records), its codec, and the backends that keep it.

pub mod local;
pub mod lock;
pub mod objects;
pub mod store;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::assets::{AssetRecord, TlsAssets};
use crate::config::ReleaseChannel;

/// The state format this build writes; readers refuse any other.
pub const FORMAT_VERSION: u32 = 1;

/// Everything kube-aws knows about a deployed cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub format_version: u32,
    /// Chosen once when the first state is written; a plan for another lineage is refused.
    pub lineage: String,
    /// +1 on every write.
    pub serial: u64,
    pub tool_version: String,
    pub cluster_name: String,
    pub stack: Option<StackState>,
    /// With `stackPerPool`, each worker pool's own stack by pool name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pool_stacks: BTreeMap<String, StackState>,
    /// Every rendered asset by path, with its content hash.
    pub assets: BTreeMap<String, AssetRecord>,
    pub tls: TlsAssets,
    /// The AMI in use, so a newer Flatcar release never rolls the cluster unasked.
    pub image: Option<ImageState>,
    /// Route53 records this tool created, and only those.
    pub records: Vec<RecordState>,
    /// The account and region the cluster lives in, once applied; absent in states written
    /// before they were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The audit entry of the run that wrote this state (its `started` entry): `history
    /// --verify` checks the log still reaches it, so deleting the newest entries shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_head: Option<AuditHead>,
    /// The hash of everything the assets were rendered from (`engine::plan::render_key`):
    /// equal inputs render equal bytes, so a plan with the same key need not render again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub render_key: Option<String>,
    /// How plans for this cluster are signed, as the last apply left it: a plan that changes
    /// it must be signed with the key recorded here, and the audit entries that anchor this
    /// state must carry its signature. Absent in states written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_signing: Option<PlanSigning>,
    /// A rotation of the Secrets encryption key applied part way (`plan --rotate-secrets-key`
    /// is three reviewed plans): which step the cluster is at, so plan and status say what is
    /// left. Only words hang on it; the keys are what the sealed configuration holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_rotation: Option<SecretsRotation>,
    /// The Kubernetes version the last apply deployed (`kubernetesVersion`), which the next
    /// plan's version must follow in skew order. Absent in states written before it was
    /// recorded, and after destroy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
}

/// How far an unfinished rotation of the Secrets encryption key has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretsRotation {
    /// Step 1 applied: the new key reads, the old one still encrypts.
    NewKeyAdded,
    /// Step 2 applied: the new key encrypts and the Secrets were rewritten with it; the old
    /// key still reads.
    EncryptingWithNewKey,
}

impl SecretsRotation {
    /// The step applied, of three.
    pub fn step(self) -> u8 {
        match self {
            SecretsRotation::NewKeyAdded => 1,
            SecretsRotation::EncryptingWithNewKey => 2,
        }
    }

    /// Where the cluster is and what finishes it.
    pub fn describe(self) -> String {
        let now = match self {
            SecretsRotation::NewKeyAdded => {
                "a new key was added for reading; the old key still encrypts"
            }
            SecretsRotation::EncryptingWithNewKey => {
                "the new key encrypts and every Secret was rewritten with it; the old key still reads"
            }
        };
        format!(
            "a Secrets key rotation is at step {} of 3 ({now}): `kube-aws plan --rotate-secrets-key` makes step {}",
            self.step(),
            self.step() + 1
        )
    }
}

/// How plans (and audit entries) are signed: with a KMS key, or not at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanSigning {
    /// `planSigningKeyArn`.
    Key(String),
    /// `unsignedPlans: true`.
    Unsigned,
}

impl PlanSigning {
    /// How `config` signs plans; `None` when it says neither (only offline plans may be made
    /// then).
    pub fn configured(config: &crate::config::ClusterConfig) -> Option<PlanSigning> {
        match (&config.plan_signing_key_arn, config.unsigned_plans) {
            (Some(key), _) => Some(PlanSigning::Key(key.clone())),
            (None, true) => Some(PlanSigning::Unsigned),
            (None, false) => None,
        }
    }

    /// The key, when plans are signed.
    pub fn key(&self) -> Option<&str> {
        match self {
            PlanSigning::Key(key) => Some(key),
            PlanSigning::Unsigned => None,
        }
    }
}

impl std::fmt::Display for PlanSigning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanSigning::Key(key) => write!(f, "signed with {key}"),
            PlanSigning::Unsigned => f.write_str("unsigned"),
        }
    }
}

/// Which audit entry a state write belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    pub seq: u64,
    pub entry_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackState {
    pub name: String,
    pub id: Option<String>,
    pub template_sha256: String,
    pub parameters: BTreeMap<String, String>,
    /// `stackTags` as applied: a change to them alone is a stack update too. Defaults to none
    /// for v1 states written before the field existed.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// A pool stack's: the hash of what its template and cloud-config are rendered from
    /// (`engine::plan::pool_render_keys`); a plan whose key is the same reuses them unrendered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub render_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageState {
    pub release_channel: ReleaseChannel,
    pub ami_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordState {
    pub hosted_zone_id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub record_type: String,
    pub ttl: u32,
    pub values: Vec<String>,
}

impl State {
    /// The Kubernetes version the cluster runs: the recorded one, while a stack is recorded.
    pub fn running_kubernetes_version(&self) -> Option<&str> {
        self.stack.as_ref()?;
        self.kubernetes_version.as_deref()
    }

    /// An empty state for a cluster that has never been applied.
    pub fn new(cluster_name: &str, lineage: String) -> State {
        State {
            format_version: FORMAT_VERSION,
            lineage,
            serial: 0,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            cluster_name: cluster_name.to_string(),
            stack: None,
            pool_stacks: BTreeMap::new(),
            assets: BTreeMap::new(),
            tls: TlsAssets::new(),
            image: None,
            records: Vec::new(),
            account_id: None,
            region: None,
            audit_head: None,
            render_key: None,
            plan_signing: None,
            secrets_rotation: None,
            kubernetes_version: None,
        }
    }
}

/// The TLS assets an apply is about to ship, written under its lock just before it executes
/// the change set. If the run dies before it writes the state, the next plan reuses them, so
/// the cluster that now runs with them is not re-keyed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingAssets {
    pub format_version: u32,
    /// The state the apply started from; pending assets apply only while it is current.
    pub lineage: Option<String>,
    pub prior_serial: u64,
    pub plan_sha256: String,
    pub change_set_arn: Option<String>,
    /// RFC 3339, UTC.
    pub written: String,
    pub tls: TlsAssets,
}

impl PendingAssets {
    /// Whether these assets were shipped on top of `current` (and not superseded since).
    pub fn applies_to(&self, current: Option<&State>) -> bool {
        if self.format_version != 1 {
            return false;
        }
        match current {
            None => self.prior_serial == 0,
            Some(s) => {
                self.prior_serial == s.serial && self.lineage.as_deref() == Some(s.lineage.as_str())
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{origin}: not a kube-aws state file: {source}")]
    Malformed {
        origin: String,
        source: serde_json::Error,
    },
    #[error(
        "{origin}: state format_version {found} is not known to kube-aws {} (it reads version {FORMAT_VERSION}); use the kube-aws release that wrote it",
        env!("CARGO_PKG_VERSION")
    )]
    UnknownVersion { origin: String, found: u64 },
    #[error(transparent)]
    Store(#[from] objects::StoreError),
    #[error(
        "the state is locked by {} for `{}` since {} (lock {}, lease {} {}).{}",
        info.holder, info.operation, info.created, info.id,
        if *expired { "expired at" } else { "until" }, info.lease_expires,
        if *expired { format!(" If that run is gone, `kube-aws state unlock {}` removes the lock.", info.id) } else { format!(" If you know that run is dead, `kube-aws state unlock {} --force` removes the lock.", info.id) }
    )]
    Locked {
        info: Box<store::LockInfo>,
        expired: bool,
    },
    #[error("another process took or released the lock at the same moment; try again")]
    LockContended,
    #[error(
        "lock {id} is no longer held by this process (was it force-unlocked?); nothing more is written"
    )]
    LockLost { id: String },
    #[error("the state is not locked")]
    NotLocked,
    #[error("the lock is {}, not {given}; held by {} for `{}` since {}", info.id, info.holder, info.operation, info.created)]
    LockIdMismatch {
        given: String,
        info: Box<store::LockInfo>,
    },
    #[error(
        "lock {} is held by {} for `{}` since {} and its lease runs until {}: that run may still be changing the cluster. If you know it is dead, remove the lock with `kube-aws state unlock {} --force`",
        info.id, info.holder, info.operation, info.created, info.lease_expires, info.id
    )]
    LockLive { info: Box<store::LockInfo> },
    #[error("stale: {message}")]
    Stale { message: String },
    #[error(
        "S3 bucket {bucket} does not have versioning enabled; kube-aws keeps every state version there. Enable it with: aws s3api put-bucket-versioning --bucket {bucket} --versioning-configuration Status=Enabled"
    )]
    Unversioned { bucket: String },
}

/// Decodes a state file, refusing unknown format versions before looking at anything else.
///
/// Upgrading: when version 2 exists, read the version here first, decode a v1 document with
/// the v1 types and convert it (`From<StateV1> for State`), so old states keep loading.
pub fn decode(origin: &str, bytes: &[u8]) -> Result<State, StateError> {
    let malformed = |source| StateError::Malformed {
        origin: origin.to_string(),
        source,
    };
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(malformed)?;
    match value.get("format_version").and_then(|v| v.as_u64()) {
        // From the bytes, not the value: serde's errors then say the line and column.
        Some(v) if v == u64::from(FORMAT_VERSION) => {
            let state: State = serde_json::from_slice(bytes).map_err(malformed)?;
            if state.serial == u64::MAX {
                return Err(malformed(serde::de::Error::custom(
                    "serial is 18446744073709551615, which has no successor",
                )));
            }
            Ok(state)
        }
        Some(found) => Err(StateError::UnknownVersion {
            origin: origin.to_string(),
            found,
        }),
        None => Err(malformed(serde::de::Error::missing_field("format_version"))),
    }
}

/// Canonical bytes of a state: sorted keys, so equal states are equal bytes.
pub fn encode(state: &State) -> Vec<u8> {
    crate::hash::canonical_json_pretty(state).expect("a state always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_decode_is_identity_and_bytes_are_stable() {
        let state = State::new("demo", "00000000-0000-4000-8000-000000000000".into());
        let bytes = encode(&state);
        let back = decode("test", &bytes).unwrap();
        assert_eq!(back, state);
        assert_eq!(encode(&back), bytes);
    }

    #[test]
    fn unknown_format_version_is_refused_with_its_number() {
        let err = decode("state.json", br#"{"format_version": 7, "lineage": "x"}"#).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("format_version 7"), "{message}");
        assert!(message.starts_with("state.json:"), "{message}");
    }
}
