//! Why a command did not do what it was asked: one variant per case a caller may need to tell
//! apart, with the words the user reads kept here, in `#[error]`, and nowhere else.

use std::path::PathBuf;

use crate::assets::tls::TlsError;
use crate::aws::AwsError;
use crate::aws::cloudformation::StackStatus;
use crate::config::{ConfigError, MISSING_PLAN_SIGNING_KEY};
use crate::finding::Finding;
use crate::planfile::PlanError;
use crate::render::RenderError;
use crate::state::StateError;

mod mismatch;

pub use mismatch::PlanMismatch;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Render(#[from] RenderError),
    #[error("{0}")]
    State(#[from] StateError),
    #[error("{0}")]
    Aws(#[from] AwsError),
    #[error("{0}")]
    Tls(#[from] TlsError),
    #[error("{0}")]
    Plan(#[from] PlanError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    // Where the cluster lives.
    #[error(
        "--region (or AWS_REGION) is {given} but cluster.yaml's region is {configured}: a cluster lives in one region; unset it, or change cluster.yaml if the cluster really moved"
    )]
    RegionFlagMismatch { given: String, configured: String },
    #[error(
        "STS cannot say who this caller is ({0}); the audit log records the caller's ARN and kube-aws does not guess one, so nothing was done"
    )]
    ActorUnverified(AwsError),
    #[error("the state records stack id {recorded}, which is not a CloudFormation stack ARN")]
    NotAStackArn { recorded: String },
    #[error(
        "the state records the stack in {region} ({recorded}) but cluster.yaml's region is {configured}: a cluster lives in one region"
    )]
    StateInOtherRegion {
        recorded: String,
        region: String,
        configured: String,
    },
    #[error(
        "the stack named {stack} here is {live}, not the stack the state records ({recorded}): these credentials reach another account's (or a re-created) stack; nothing was planned"
    )]
    OtherStack {
        stack: String,
        live: String,
        recorded: String,
    },
    #[error(
        "the stack the state records ({recorded}) is not here, and STS cannot say which account this is: {source}"
    )]
    AccountUnknown { recorded: String, source: AwsError },
    #[error(
        "the state records the stack in account {account} ({recorded}) but these credentials are for account {caller_account} ({caller}); nothing was planned"
    )]
    StateInOtherAccount {
        recorded: String,
        account: String,
        caller_account: String,
        caller: String,
    },
    #[error(
        "the state at {location} belongs to cluster \"{found}\" but cluster.yaml names \"{configured}\""
    )]
    StateOfOtherCluster {
        location: String,
        found: String,
        configured: String,
    },
    #[error(
        "{origin} is the state of cluster \"{found}\", but cluster.yaml names \"{configured}\""
    )]
    PushedStateOfOtherCluster {
        origin: String,
        found: String,
        configured: String,
    },
    #[error("there is no state at {0} yet (nothing has been applied)")]
    NoState(String),

    // Planning.
    #[error("--offline plans against the local state only, but cluster.yaml keeps the state in S3")]
    OfflineWithRemoteState,
    #[error("{}: {MISSING_PLAN_SIGNING_KEY}", file.display())]
    MissingPlanSigningKey { file: PathBuf },
    #[error("destroy needs AWS; it cannot be planned --offline")]
    DestroyOffline,
    #[error("--rotate-secrets-key decrypts the key through KMS: it cannot be planned --offline")]
    RotationNeedsKms,
    #[error("the Secrets encryption key is new in this plan: there is nothing to rotate yet")]
    NothingToRotate,
    #[error("the state has no Secrets encryption key to rotate")]
    NoSecretsKey,
    #[error("{}", invalid(findings))]
    Invalid { findings: Vec<Finding> },
    #[error("the rendered stack template is not JSON: {0}")]
    TemplateNotJson(String),
    #[error(
        "stack {stack} is in {status} after a failed create and cannot be updated; run `kube-aws destroy`, then plan again"
    )]
    StackFailedCreate { stack: String, status: StackStatus },
    #[error(
        "stack {stack} is busy ({status}); wait for it to finish (`kube-aws status` follows it), then plan again"
    )]
    StackBusy { stack: String, status: StackStatus },
    #[error(
        "the cluster stack has no resource {resource}, which a node pool stack takes as a parameter"
    )]
    PoolParameterMissing { resource: String },
    #[error(
        "node pool stack {stack} failed to create ({status}), which CloudFormation cannot update; delete it (`aws cloudformation delete-stack --stack-name {stack}`) and plan again: the plan creates it anew. The rest of the cluster is not affected"
    )]
    PoolStackFailedCreate { stack: String, status: StackStatus },
    #[error(
        "stack {stack} runs a template other than the one the state records (changed outside kube-aws); remove its render_key from the state's pool_stacks to render it again"
    )]
    PoolTemplateDrifted { stack: String },
    #[error(
        "stack {stack} exists ({live}) but is not this cluster's: its description is not {expected:?}, and the state does not record it. Rename the node pool; nothing was planned"
    )]
    ForeignPoolStack {
        stack: String,
        live: String,
        expected: String,
    },
    #[error("cluster.yaml: stackPerPool: {message}")]
    StackLayoutChange { message: String },
    #[error("change set {name} failed: {reason}")]
    ChangeSetFailed { name: String, reason: String },
    #[error("change set {name} was not created within 30 minutes")]
    ChangeSetTimedOut { name: String },
    #[error(transparent)]
    Zone(#[from] ZoneProblem),
    #[error("add-on {name} was not rendered")]
    AddonNotRendered { name: String },
    #[error("the plan was not sealed before signing")]
    Unsealed,

    // Applying.
    #[error("this plan was made with --offline, as a preview; make it online to apply it")]
    OfflinePlan,
    #[error(
        "this plan was made with --preview (a pull request's plan, made without keys: its certificates are not issued and it is not signed); apply the plan the protected job makes from the merged commit"
    )]
    PreviewPlan,
    #[error("the plan is for cluster \"{planned}\" but cluster.yaml names \"{configured}\"")]
    PlanForOtherCluster { planned: String, configured: String },
    #[error("interrupted before the state lock was taken; nothing changed")]
    InterruptedBeforeLock,
    #[error("cluster.yaml: {MISSING_PLAN_SIGNING_KEY}")]
    SigningKeyRequired,
    #[error(
        "the plan is not signed, and cluster.yaml requires plans signed with {key}; make the plan with kube-aws plan"
    )]
    Unsigned { key: String },
    #[error(
        "the plan is signed with {signed_with}, not with planSigningKeyArn {key}; it was not made for this cluster"
    )]
    SignedWithOtherKey { signed_with: String, key: String },
    #[error("the plan's signature is not base64: {0}")]
    SignatureNotBase64(String),
    #[error("the plan's plan_sha256 is not a SHA-256")]
    DigestNotSha256,
    #[error(
        "the plan's signature does not verify with {key}: it was changed after it was signed; make a new plan"
    )]
    BadSignature { key: String },
    #[error("{0}; nothing was executed")]
    Mismatch(#[from] PlanMismatch),
    #[error("Route53 change {change_id} was not INSYNC within 10 minutes")]
    RecordsNotInSync { change_id: String },
    #[error(
        "{what} needs confirmation but standard input is not a terminal; review a plan file and `apply` it, or pass --auto-approve"
    )]
    NeedsConfirmation { what: String },

    // Keys the state holds.
    #[error("the operating system's random source failed: {0}")]
    NoRandomness(String),
    #[error("the {what} ciphertext is not base64: {reason}")]
    CiphertextNotBase64 { what: &'static str, reason: String },
    #[error("the decrypted {what} is not {expected}")]
    DecryptedNotText {
        what: &'static str,
        expected: &'static str,
    },
    #[error("{0}")]
    Rotation(String),
    #[error("there is no state yet: apply the cluster first")]
    NotApplied,
    #[error("the state holds no admin certificate")]
    NoAdminCertificate,

    // The files a command writes and reads.
    #[error("{} already exists; kube-aws init never overwrites it", .0.display())]
    ClusterFileExists(PathBuf),
    #[error("cannot render cluster.yaml: {0}")]
    InitTemplate(String),
    #[error("{} already exist; use --force to overwrite (your changes would be lost)", join_paths(.0))]
    TemplatesExist(Vec<PathBuf>),
    #[error("{} already exists; use --force to replace it", .0.display())]
    OutputExists(PathBuf),
    #[error("there is no audit entry {0}")]
    NoAuditEntry(u64),
    #[error(
        "{location} holds certificates said to be shipped by an interrupted apply of plan {plan}, but {why}; they are not reused. If no apply of that plan ran, someone wrote them: remove {location} and plan again"
    )]
    UnprovenPending {
        location: String,
        plan: String,
        why: String,
    },
    #[error(
        "the state at {location} is not the one the audit log says was written last: {why}. Nothing was planned or applied. `kube-aws history --verify` shows the log; to go back to an older state on purpose, `kube-aws state push --rollback FILE` writes it as a new serial with an audit entry"
    )]
    StateNotInLog { location: String, why: String },
    #[error(
        "{origin} is serial {pushed}, and --rollback writes only a state no newer than the newest one stored or written (serial {current}); push it without --rollback"
    )]
    NotARollback {
        origin: String,
        pushed: u64,
        current: u64,
    },
    #[error(
        "plan signing changes ({change}), so apply takes this plan only signed with the key the state records, {key}; make the plan with that key"
    )]
    SigningChangeNotSignedByRecordedKey { change: String, key: String },
    #[error(
        "{why}, and this plan would issue a new cluster CA. A new CA in one apply breaks the running cluster: each instance that rolls onto it distrusts the ones that have not (etcd peers refuse each other and lose quorum, kubelets are refused by the API server), and kube-aws cannot yet rotate a CA through a period that trusts both. Nothing was planned. {hint}"
    )]
    CaReissueRefused { why: String, hint: String },
    #[error("{origin} holds plan {found}, not {wanted}")]
    KeptPlanMismatch {
        origin: String,
        found: String,
        wanted: String,
    },
    #[error("{}: {reason}", path.display())]
    PlanTemplate { path: PathBuf, reason: String },
    #[error("{}: this plan changes no template", .0.display())]
    NoTemplateChange(PathBuf),
    #[error(
        "node pool {pool} has no stack of its own{}",
        if stacks.is_empty() { " (stackPerPool is not set)".to_string() } else { format!("; the pool stacks are {}", stacks.join(", ")) }
    )]
    NoPoolStack { pool: String, stacks: Vec<String> },
    #[error("init needs --region (or AWS_REGION)")]
    InitNeedsRegion,
    #[error("cannot serialise output: {0}")]
    Output(String),
}

fn invalid(findings: &[Finding]) -> String {
    let lines: Vec<String> = findings.iter().map(Finding::to_string).collect();
    format!(
        "validation found {} error(s); nothing was planned (`kube-aws validate` shows every finding):\n{}",
        findings.len(),
        lines.join("\n")
    )
}

fn join_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why the zone cluster.yaml names cannot hold the API record.
#[derive(Debug, thiserror::Error)]
pub enum ZoneProblem {
    #[error("hosted zone {0} does not exist (hostedZoneId/hostedZone in cluster.yaml)")]
    Missing(String),
    #[error("hosted zone {zone} ({id}) is not a parent of externalDNSName {name}")]
    NotParent {
        zone: String,
        id: String,
        name: String,
    },
    #[error(transparent)]
    Aws(#[from] AwsError),
}
