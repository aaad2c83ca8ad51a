//! Opens the state backend `cluster.yaml` names: the local `state/` folder or an S3 bucket.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use time::OffsetDateTime;

use crate::audit::{AuditEntry, AuditLog, EntrySignature, NewEntry};
use crate::aws::AwsContext;
use crate::aws::kms::{KmsVault, PLAN_SIGNING_ALGORITHM};
use crate::aws::s3::S3Objects;
use crate::config::{ClusterConfig, StateBackendKind};
use crate::planfile::{self, Plan};
use crate::state::StateError;
use crate::state::local::LocalObjects;
use crate::state::objects::{
    Layout, Object, ObjectStore, ObjectVersion, Precondition, StoreError, Written,
};
use crate::state::store::{Loaded, StateStore};

use super::EngineError;

/// The pauses between tries of a write a passing failure must not cost (four tries in all).
const RETRY_PAUSES_MS: [u64; 3] = [200, 400, 800];

/// `attempt` tried again after each pause while it fails with an error `passing` calls
/// passing. Each try is itself the SDK's retries; this is for the few writes whose loss costs
/// the user more than a second: an audit entry left unsigned fails every later verify, a lock
/// left behind blocks every plan and apply until its lease runs out.
pub(super) async fn tried_again<T, E, Fut>(
    mut attempt: impl FnMut() -> Fut,
    passing: impl Fn(&E) -> bool,
) -> Result<T, E>
where
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut result = attempt().await;
    for pause_ms in RETRY_PAUSES_MS {
        match &result {
            Err(e) if passing(e) => {}
            _ => return result,
        }
        tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
        result = attempt().await;
    }
    result
}

/// The state store and audit log of one cluster, and the key its audit entries are signed
/// with.
#[derive(Debug, Clone)]
pub struct Backend {
    pub store: StateStore<Objects>,
    pub audit: AuditLog<Objects>,
    /// `planSigningKeyArn`: entries are signed with it (as RAW messages) when the cluster has
    /// one, and `history --verify` then insists on every signature.
    signer: Option<(KmsVault, String)>,
    /// KMS, to check signatures made with a key cluster.yaml no longer names (the one the
    /// state records); absent offline.
    verifier: Option<KmsVault>,
}

impl Backend {
    /// The local backend under `dir/state/`.
    pub fn local(dir: &Path) -> Backend {
        let layout = Layout::local();
        let objects = Objects::Local(LocalObjects::new(dir, &[layout.state.as_str()]));
        Backend::over(objects, layout, None)
    }

    /// The S3 backend: `objects` in its bucket, the state at `key`.
    pub fn s3(objects: S3Objects, key: &str) -> Backend {
        let bucket = objects.bucket().to_string();
        Backend::over(Objects::S3(objects), Layout::s3(key), Some(bucket))
    }

    fn over(objects: Objects, layout: Layout, versioned_bucket: Option<String>) -> Backend {
        let audit = AuditLog::new(objects.clone(), &layout.audit_prefix);
        Backend {
            store: StateStore::new(objects, layout, versioned_bucket),
            audit,
            signer: None,
            verifier: None,
        }
    }

    /// Keeps an applied plan, as it was reviewed, under its hash (once: the key is its hash).
    pub async fn keep_plan(&self, plan: &Plan) -> Result<(), EngineError> {
        let key = format!(
            "{}{}.json",
            self.store.layout().plans_prefix,
            plan.plan_sha256
        );
        match self
            .store
            .objects()
            .put(&key, &planfile::encode(plan), Precondition::IfAbsent)
            .await
        {
            Ok(_) | Err(StoreError::PreconditionFailed { .. }) => Ok(()),
            Err(e) => Err(StateError::from(e).into()),
        }
    }

    /// The plan an entry applied, if it was kept, checked against its hash.
    pub async fn kept_plan(&self, plan_sha256: &str) -> Result<Option<Plan>, EngineError> {
        if plan_sha256.len() != 64 || !plan_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let key = format!("{}{plan_sha256}.json", self.store.layout().plans_prefix);
        let Some(object) = self
            .store
            .objects()
            .get(&key)
            .await
            .map_err(StateError::from)?
        else {
            return Ok(None);
        };
        let origin = self.store.objects().location(&key);
        let plan = planfile::decode(&origin, &object.bytes)?;
        if plan.plan_sha256 != plan_sha256 {
            return Err(EngineError::KeptPlanMismatch {
                origin,
                found: plan.plan_sha256,
                wanted: plan_sha256.to_string(),
            });
        }
        Ok(Some(plan))
    }

    /// Signs audit entries with `key` from now on.
    pub fn signing_with(mut self, kms: KmsVault, key: &str) -> Backend {
        self.signer = Some((kms, key.to_string()));
        self
    }

    /// Appends an audit entry, signed when the cluster has a signing key.
    pub async fn append_audit(
        &self,
        now: OffsetDateTime,
        new: NewEntry,
    ) -> Result<AuditEntry, EngineError> {
        let entry = self
            .audit
            .append_with(now, new, async |sha256: &str| {
                let Some((kms, key)) = &self.signer else {
                    return Ok(None);
                };
                // The run has already acted: an entry KMS cannot sign is still written,
                // unsigned, and `history --verify` names it, rather than lost; a failing Sign is
                // tried again first (the fault-injection test met one that exhausted the SDK's
                // three attempts).
                let Ok(signature) =
                    tried_again(|| kms.sign_raw(key, sha256.as_bytes()), |_| true).await
                else {
                    return Ok(None);
                };
                Ok(Some(EntrySignature {
                    key_arn: key.clone(),
                    algorithm: PLAN_SIGNING_ALGORITHM.into(),
                    value: BASE64.encode(signature),
                }))
            })
            .await?;
        Ok(entry)
    }

    /// The KMS key this cluster signs with, and the client to verify with.
    pub fn signer(&self) -> Option<(&KmsVault, &str)> {
        self.signer.as_ref().map(|(kms, key)| (kms, key.as_str()))
    }

    /// Whether this cluster signs its audit entries.
    pub fn signs_entries(&self) -> bool {
        self.signer.is_some()
    }

    /// Whether an entry's signature holds, as a problem for `history --verify` if not.
    pub async fn entry_signature_problem(&self, entry: &AuditEntry) -> Option<String> {
        let (kms, key) = self.signer.as_ref()?;
        signature_problem(kms, key, entry).await
    }

    /// Whether `plan` carries a signature by `key` that KMS verifies (never offline).
    pub async fn plan_signed_with(&self, plan: &Plan, key: &str) -> bool {
        let (Some(kms), Some(signature), Some(digest)) =
            (self.verifier.as_ref(), &plan.signature, plan.digest())
        else {
            return false;
        };
        let Ok(value) = BASE64.decode(&signature.value) else {
            return false;
        };
        signature.key_arn == key
            && kms
                .verify_digest(key, &digest, &value)
                .await
                .unwrap_or(false)
    }

    /// Whether an entry carries a signature by `key` that holds, as a problem if not. Offline
    /// (no KMS client, only for a preview apply refuses) it is not checked.
    pub async fn entry_signed_with(&self, entry: &AuditEntry, key: &str) -> Option<String> {
        let kms = self.verifier.as_ref()?;
        signature_problem(kms, key, entry).await
    }

    /// The backend `config` names; `aws` is needed only for S3.
    pub fn open(dir: &Path, config: &ClusterConfig, aws: &AwsContext) -> Backend {
        let backend = match config.state.backend {
            StateBackendKind::Local => Backend::local(dir),
            StateBackendKind::S3 => {
                let region = config.state.region.as_deref().unwrap_or(&config.region);
                let bucket = config.state.bucket.as_deref().unwrap_or_default();
                Backend::s3(
                    S3Objects::connect(aws, region, bucket),
                    config.state.key.as_deref().unwrap_or_default(),
                )
            }
        };
        let backend = Backend {
            verifier: Some(aws.kms()),
            ..backend
        };
        match &config.plan_signing_key_arn {
            Some(key) => backend.signing_with(aws.kms(), key),
            None => backend,
        }
    }

    /// The current state, checked to belong to this cluster.
    pub async fn load(&self, config: &ClusterConfig) -> Result<Option<Loaded>, EngineError> {
        let loaded = self.store.load().await?;
        if let Some(loaded) = &loaded
            && loaded.state.cluster_name != config.cluster_name
        {
            return Err(EngineError::StateOfOtherCluster {
                location: self.store.location(),
                found: loaded.state.cluster_name.clone(),
                configured: config.cluster_name.clone(),
            });
        }
        Ok(loaded)
    }
}

/// Whether `entry` carries a signature by `key` that KMS verifies, as a problem if not.
async fn signature_problem(kms: &KmsVault, key: &str, entry: &AuditEntry) -> Option<String> {
    let Some(signature) = &entry.signature else {
        return Some(format!(
            "entry {} is not signed, and entries are signed with {key}: it was written before entries were signed, or rewritten",
            entry.seq
        ));
    };
    if signature.key_arn != key {
        return Some(format!(
            "entry {} is signed with {}, not with {key}",
            entry.seq, signature.key_arn
        ));
    }
    let Ok(value) = BASE64.decode(&signature.value) else {
        return Some(format!("entry {}'s signature is not base64", entry.seq));
    };
    match kms
        .verify_raw(key, entry.entry_sha256.as_bytes(), &value)
        .await
    {
        Ok(true) => None,
        Ok(false) => Some(format!(
            "entry {} was edited: its signature does not verify with {key}",
            entry.seq
        )),
        Err(e) => Some(format!(
            "entry {}'s signature could not be checked: {e}",
            entry.seq
        )),
    }
}

/// The backend chosen by `cluster.yaml`: the one place that knows both kinds of storage.
#[derive(Debug, Clone)]
pub enum Objects {
    Local(LocalObjects),
    S3(S3Objects),
}

impl ObjectStore for Objects {
    fn location(&self, key: &str) -> String {
        match self {
            Objects::Local(o) => o.location(key),
            Objects::S3(o) => o.location(key),
        }
    }
    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        match self {
            Objects::Local(o) => o.get(key).await,
            Objects::S3(o) => o.get(key).await,
        }
    }
    async fn put(
        &self,
        key: &str,
        bytes: &[u8],
        condition: Precondition,
    ) -> Result<Written, StoreError> {
        match self {
            Objects::Local(o) => o.put(key, bytes, condition).await,
            Objects::S3(o) => o.put(key, bytes, condition).await,
        }
    }
    async fn delete(&self, key: &str, if_match: &str) -> Result<(), StoreError> {
        match self {
            Objects::Local(o) => o.delete(key, if_match).await,
            Objects::S3(o) => o.delete(key, if_match).await,
        }
    }
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<Vec<String>, StoreError> {
        match self {
            Objects::Local(o) => o.list(prefix, start_after, max).await,
            Objects::S3(o) => o.list(prefix, start_after, max).await,
        }
    }
    async fn versions(&self, key: &str) -> Result<Vec<ObjectVersion>, StoreError> {
        match self {
            Objects::Local(o) => o.versions(key).await,
            Objects::S3(o) => o.versions(key).await,
        }
    }
    async fn get_version(&self, key: &str, version_id: &str) -> Result<Object, StoreError> {
        match self {
            Objects::Local(o) => o.get_version(key, version_id).await,
            Objects::S3(o) => o.get_version(key, version_id).await,
        }
    }
}
