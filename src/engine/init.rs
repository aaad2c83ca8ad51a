//! `kube-aws init`: writes a commented cluster.yaml from the flags, never over an existing one.

use std::path::{Path, PathBuf};

use super::{EngineError, io_error};
use crate::config::{CLUSTER_FILE, ClusterConfig};
use crate::render;

/// Flags of `kube-aws init`.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    pub cluster_name: String,
    pub external_dns_name: String,
    pub region: String,
    pub availability_zone: String,
    pub key_name: Option<String>,
    pub kms_key_arn: String,
    pub hosted_zone_id: Option<String>,
    pub state_bucket: Option<String>,
    pub state_key: Option<String>,
    pub template_bucket: Option<String>,
    pub plan_signing_key_arn: Option<String>,
    pub unsigned_plans: bool,
}

/// Writes a commented `cluster.yaml`; refuses to replace one. The result is parsed back before
/// it is written, so init never leaves a file that the other commands reject.
pub fn init(dir: &Path, options: &InitOptions) -> Result<PathBuf, EngineError> {
    let path = dir.join(CLUSTER_FILE);
    if path.exists() {
        return Err(EngineError::ClusterFileExists(path));
    }
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_syntax(render::keep_trailing_newline());
    let state_key = options
        .state_key
        .clone()
        .unwrap_or_else(|| format!("{}/state.json", options.cluster_name));
    let text = env
        .render_str(
            include_str!("../../templates/cluster.yaml"),
            minijinja::context! {
                clusterName => options.cluster_name.clone(),
                externalDNSName => options.external_dns_name.clone(),
                region => options.region.clone(),
                availabilityZone => options.availability_zone.clone(),
                keyName => options.key_name.clone(),
                kmsKeyArn => options.kms_key_arn.clone(),
                hostedZoneId => options.hosted_zone_id.clone(),
                createRecordSet => options.hosted_zone_id.is_some(),
                kubernetesVersion => crate::releases::DEFAULT_KUBERNETES_VERSION,
                stateBucket => options.state_bucket.clone(),
                stateKey => state_key,
                templateBucket => options.template_bucket.clone(),
                planSigningKeyArn => options.plan_signing_key_arn.clone(),
                unsignedPlans => options.unsigned_plans,
            },
        )
        .map_err(|e| EngineError::InitTemplate(e.to_string()))?;
    ClusterConfig::parse(&path, &text)?;
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
        .map_err(io_error(&path))?;
    Ok(path)
}
