//! Carries out each command: reads the cluster directory, calls the pure parts (config, render,
//! assets) and the AWS traits in the right order, and returns results for `cli` to print.

// What the tests and benches reach (`backend`, `plan`, `validate`) is public; the rest is the
// crate's own, so the compiler reports what nothing uses.
mod anchor;
pub(crate) mod apply;
pub mod backend;
mod error;
pub(crate) mod export;
pub(crate) mod history;
pub(crate) mod init;
pub(crate) mod interrupt;
pub(crate) mod kubeconfig;
mod pending;
pub(crate) mod pki;
pub mod plan;
pub(crate) mod provenance;
pub(crate) mod render_templates;
mod signing;
pub(crate) mod state;
pub(crate) mod status;
pub mod validate;

use std::collections::BTreeMap;
use std::path::Path;

use time::Duration;

use crate::aws::AwsContext;
use crate::config::ClusterConfig;
use crate::render::{self, Templates};

use backend::Backend;
pub use error::{EngineError, PlanMismatch, ZoneProblem};
pub use plan::{Build, BuildInputs, build};

pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError + '_ {
    move |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Replaces `path` with `bytes` atomically: a reader sees the old file or the new one, never
/// half of one.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), EngineError> {
    crate::state::local::write_atomically(path, bytes).map_err(io_error(path))
}

pub fn read_file(path: &Path) -> Result<Vec<u8>, EngineError> {
    crate::bounded::read(path, crate::bounded::RECORD_LIMIT).map_err(io_error(path))
}

/// How to reach AWS: `--region` and `--profile`; everything else comes from the standard chain.
#[derive(Debug, Clone, Default)]
pub struct AwsOptions {
    pub region: Option<String>,
    pub profile: Option<String>,
}

impl AwsOptions {
    /// The AWS context for `config`'s cluster, in its region. A `--region` (or `AWS_REGION`)
    /// naming another region is refused rather than followed: the cluster lives in one region,
    /// and planning it elsewhere would plan a second cluster.
    pub async fn context(&self, config: &ClusterConfig) -> Result<AwsContext, EngineError> {
        self.check_region(config)?;
        Ok(AwsContext::load(&config.region, self.profile.as_deref())
            .await
            .acting_through(config.cloud_formation_role_arn.clone()))
    }

    /// Refuses a `--region` other than cluster.yaml's, with or without AWS.
    pub fn check_region(&self, config: &ClusterConfig) -> Result<(), EngineError> {
        match self.region.as_deref() {
            Some(region) if region != config.region => Err(EngineError::RegionFlagMismatch {
                given: region.to_string(),
                configured: config.region.clone(),
            }),
            _ => Ok(()),
        }
    }
}

/// The built-in templates, replaced by the cluster directory's own where present.
pub fn load_templates(dir: &Path) -> Result<Templates, EngineError> {
    let mut overrides = BTreeMap::new();
    for name in render::built_in().map(|t| t.path) {
        let path = dir.join(name);
        match crate::bounded::read_in(dir, name, crate::bounded::CLUSTER_FILE_LIMIT) {
            Ok(bytes) => {
                let text = String::from_utf8(bytes).map_err(|e| {
                    io_error(&path)(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
                })?;
                overrides.insert(name, text);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&path)(e)),
        }
    }
    Ok(Templates::with_overrides(overrides))
}

/// Certificates closer than this to expiry are re-issued.
pub const DEFAULT_RENEW_BEFORE: Duration = Duration::days(30);

/// Reads `cluster.yaml` and connects to AWS and the state backend it names.
pub async fn open(
    dir: &Path,
    aws: &AwsOptions,
) -> Result<(ClusterConfig, AwsContext, Backend), EngineError> {
    let config = ClusterConfig::load(dir)?;
    let context = aws.context(&config).await?;
    let backend = Backend::open(dir, &config, &context);
    Ok((config, context, backend))
}

/// [`open`] for the commands that only report or unlock (status, history, state show, pull,
/// versions, unlock): a cluster.yaml that parses but has problems (an unknown key, a value
/// `validate` refuses) still says where the state and the stack are, so an operator is not
/// locked out while a bad edit waits for review. `config_problems` says what is wrong.
pub(crate) async fn open_reading(
    dir: &Path,
    aws: &AwsOptions,
) -> Result<(ClusterConfig, AwsContext, Backend), EngineError> {
    let (config, _) = ClusterConfig::load_lenient(dir)?;
    let context = aws.context(&config).await?;
    let backend = Backend::open(dir, &config, &context);
    Ok((config, context, backend))
}

/// What is wrong with a cluster.yaml that still parses, for the reading commands to warn of.
pub fn config_problems(dir: &Path) -> Option<String> {
    match ClusterConfig::load_lenient(dir) {
        Ok((_, problems)) => problems.map(|p| p.to_string()),
        Err(_) => None,
    }
}

/// The line of top-level `key:` in cluster.yaml, for findings about settings.
pub(crate) fn setting_line(dir: &Path, key: &str) -> Option<usize> {
    let bytes = crate::bounded::read_in(
        dir,
        crate::config::CLUSTER_FILE,
        crate::bounded::CLUSTER_FILE_LIMIT,
    )
    .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    text.lines()
        .position(|l| l.starts_with(&format!("{key}:")))
        .map(|i| i + 1)
}

/// `finding` about top-level setting `key`, placed at its line.
pub(crate) fn at_setting(
    dir: &Path,
    key: &str,
    finding: crate::finding::Finding,
) -> crate::finding::Finding {
    crate::finding::Finding {
        line: setting_line(dir, key),
        ..finding.in_field(key)
    }
}
