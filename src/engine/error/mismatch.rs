//! How a plan differs from what apply re-derives: the words apply's checks report, kept
//! beside the error they become so that the error does not depend on apply.

/// How a plan differs from what apply re-derives. Apply adds "nothing was executed".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanMismatch {
    #[error(
        "the plan's assets are not what cluster.yaml and the cluster directory render with the plan's AMI and certificates: {}; apply applies only what this directory renders: make a new plan here",
        .0.join(", ")
    )]
    AssetsNotRendered(Vec<String>),
    #[error(
        "the plan gives node pool {0} a stack, but cluster.yaml declares no such pool with stackPerPool"
    )]
    UndeclaredPool(String),
    #[error(
        "the plan leaves stack {0}'s change set to apply, but the cluster stack does not change, so plan made it: it was removed from the plan"
    )]
    PoolChangeSetRemoved(String),
    #[error("the plan's new_state pins no AMI")]
    NoImage,
    #[error(
        "the plan's new state records Kubernetes {planned}, but cluster.yaml says {configured}"
    )]
    KubernetesVersion { planned: String, configured: String },
    #[error("kubernetesVersion: {0}")]
    VersionSkew(String),
    #[error(
        "the plan's template for stack {stack} hashes to {planned}, but cluster.yaml and the cluster directory render {rendered} with the plan's AMI and certificates; apply applies only what this directory renders: make a new plan here"
    )]
    NotRendered {
        stack: String,
        planned: String,
        rendered: String,
    },
    #[error(
        "the plan passes stack {stack} the parameters {planned:?}, but its rendered template takes {rendered:?}"
    )]
    PoolParameters {
        stack: String,
        planned: Vec<String>,
        rendered: Vec<String>,
    },
    #[error(
        "the plan's new state records plan signing as {planned}, but cluster.yaml says {configured}"
    )]
    Signing { planned: String, configured: String },
    #[error("the plan is for region {planned} but cluster.yaml's region is {configured}")]
    Region { planned: String, configured: String },
    #[error("the plan is for account {planned} but these credentials are for account {caller}")]
    Account { planned: String, caller: String },
    #[error("the state records account {recorded} but these credentials are for account {caller}")]
    StateAccount { recorded: String, caller: String },
    #[error("the state records region {recorded} but cluster.yaml's region is {configured}")]
    StateRegion {
        recorded: String,
        configured: String,
    },
    #[error("the plan is for stack {planned} but the state records stack {recorded}")]
    Stack { planned: String, recorded: String },
    #[error(
        "the plan deletes {record_type} {name} in zone {zone}, which the state does not record as this cluster's"
    )]
    DeletesUnowned {
        record_type: String,
        name: String,
        zone: String,
    },
    #[error("the destroy plan writes record {name}; a destroy only deletes records")]
    DestroyWritesRecord { name: String },
    #[error("the plan writes {record_type} {name} (TTL {ttl}), but cluster.yaml asks for {wanted}")]
    OtherRecord {
        record_type: String,
        name: String,
        ttl: u32,
        wanted: String,
    },
    #[error(
        "the plan writes {name} in zone {zone}, but cluster.yaml and the state put it in {wanted}"
    )]
    OtherZone {
        name: String,
        zone: String,
        wanted: String,
    },
    #[error("the plan's new_state is for cluster {found}, not {configured}")]
    StateCluster { found: String, configured: String },
    #[error("the plan's new_state has lineage {found}, not the state's {recorded}")]
    Lineage { found: String, recorded: String },
    #[error("the plan's new_state holds other assets than the plan lists: {}", .0.join(", "))]
    Assets(Vec<String>),
    #[error(
        "the plan's new_state records other pool stacks than the plan reviews: {}",
        .0.join(", ")
    )]
    PoolStacks(Vec<String>),
    #[error("the plan's new_state records template {recorded} but the plan reviewed {reviewed}")]
    Template { recorded: String, reviewed: String },
    #[error("the plan's new_state changes certificate {name}, which the plan says it keeps")]
    ChangesKept { name: String },
    #[error("the plan's new_state holds a CA certificate that is not PEM")]
    CaNotPem,
    #[error("the plan's new_state holds a CA certificate that does not parse: {0}")]
    CaUnparsable(String),
    #[error("the plan's new_state holds certificate {name}, which is not PEM")]
    NotPem { name: String },
    #[error(
        "the plan's new_state holds certificate {name} whose certificate_sha256 is not its hash"
    )]
    HashMismatch { name: String },
    #[error("the plan's new_state holds certificate {name}, which does not parse: {reason}")]
    Unparsable { name: String, reason: String },
    #[error("the plan's new_state holds certificate {name}, which is not signed by its own key")]
    NotSelfSigned { name: String },
    #[error("the plan's new_state holds certificate {name}, which the {ca} CA did not issue")]
    NotIssuedByCa { name: String, ca: &'static str },
    #[error(
        "the plan's new_state replaces the service-account key, which is never re-issued (every token would be void)"
    )]
    ServiceAccountReplaced,
}
