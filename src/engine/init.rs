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

#[cfg(test)]
mod tests {
    use super::*;

    /// cluster.yaml's promise: a commented line shows the default, unless it ends with
    /// `# e.g.`, when it shows an example. Each commented one-line setting is uncommented on
    /// its own and parsed: a default must parse to the same configuration, an example must
    /// change it (or need editing to parse).
    #[test]
    fn each_commented_line_is_the_default_or_marked_as_an_example() {
        let dir = tempfile::tempdir().unwrap();
        let options = InitOptions {
            cluster_name: "demo".into(),
            external_dns_name: "k8s.example.com".into(),
            region: "us-west-2".into(),
            availability_zone: "us-west-2a".into(),
            key_name: None,
            kms_key_arn: "arn:aws:kms:us-west-2:123456789012:key/x".into(),
            hosted_zone_id: None,
            state_bucket: Some("demo-state".into()),
            state_key: None,
            template_bucket: None,
            plan_signing_key_arn: None,
            unsigned_plans: true,
        };
        let path = init(dir.path(), &options).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let as_json = |text: &str| {
            ClusterConfig::parse(&path, text)
                .map(|c| serde_json::to_value(c).unwrap())
                .map_err(|e| e.to_string())
        };
        let base = as_json(&text).unwrap();
        let mut wrong = Vec::new();
        let mut checked = 0;
        for (i, line) in text.lines().enumerate() {
            let Some(setting) = line.strip_prefix('#') else {
                continue;
            };
            let Some((key, value)) = setting.split_once(": ") else {
                continue;
            };
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
                continue;
            }
            let example = value.trim_end().ends_with("# e.g.");
            let mut lines: Vec<&str> = text.lines().collect();
            lines[i] = setting;
            // An example may need editing (`ACCOUNT`) or another setting (`vpcId`) to parse.
            let changed = match as_json(&(lines.join("\n") + "\n")) {
                Ok(config) => config != base,
                Err(e) if example && !e.contains("unknown key") => true,
                Err(e) => {
                    wrong.push(format!("line {}: `{setting}` does not parse: {e}", i + 1));
                    continue;
                }
            };
            checked += 1;
            if changed != example {
                wrong.push(format!(
                    "line {}: `{setting}` {}",
                    i + 1,
                    if changed {
                        "is not the default: end it with `# e.g.`"
                    } else {
                        "is the default: it is not an example"
                    }
                ));
            }
        }
        assert!(checked > 30, "{checked} lines checked");
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}
