//! Carries out each command: reads the cluster directory, calls the pure parts (config, render,
//! assets) and the AWS traits in the right order, and returns results for `cli` to print.

pub mod apply;
pub mod backend;
pub mod history;
pub mod pki;
pub mod plan;
mod plan_checks;
pub mod provenance;
pub mod status;
pub mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use time::{Duration, OffsetDateTime};

use crate::assets::tls::TlsError;
use crate::aws::images::ImageCatalog;
use crate::aws::kms::KeyVault;
use crate::aws::{AwsContext, AwsError};
use crate::config::{CLUSTER_FILE, ClusterConfig, ConfigError};
use crate::render::{self, RenderError, RenderInputs, Rendered, Templates};
use crate::state::{ImageState, State, StateError};

use backend::Backend;

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
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The command will not proceed, for the reason given.
    #[error("{0}")]
    Refused(String),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError + '_ {
    move |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    }
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
        if let Some(region) = self.region.as_deref()
            && region != config.region
        {
            return Err(EngineError::Refused(format!(
                "--region (or AWS_REGION) is {region} but cluster.yaml's region is {}: a cluster lives in one region; unset it, or change cluster.yaml if the cluster really moved",
                config.region
            )));
        }
        Ok(AwsContext::load(&config.region, self.profile.as_deref()).await)
    }
}

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
        return Err(EngineError::Refused(format!(
            "{} already exists; kube-aws init never overwrites it",
            path.display()
        )));
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
                kubernetesVersion => render::DEFAULT_KUBERNETES_VERSION,
                stateBucket => options.state_bucket.clone(),
                stateKey => state_key,
                templateBucket => options.template_bucket.clone(),
                planSigningKeyArn => options.plan_signing_key_arn.clone(),
                unsignedPlans => options.unsigned_plans,
            },
        )
        .map_err(|e| EngineError::Refused(format!("cannot render cluster.yaml: {e}")))?;
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

/// Copies the built-in templates into the cluster directory for customisation. Without
/// `force` it refuses (and writes nothing) if any of them is already there.
pub fn render_templates(dir: &Path, force: bool) -> Result<Vec<PathBuf>, EngineError> {
    let targets: Vec<(PathBuf, &str)> = render::BUILT_IN
        .iter()
        .map(|(name, text)| (dir.join(name), *text))
        .collect();
    if !force {
        let present: Vec<String> = targets
            .iter()
            .filter(|(path, _)| path.exists())
            .map(|(path, _)| path.display().to_string())
            .collect();
        if !present.is_empty() {
            return Err(EngineError::Refused(format!(
                "{} already exist; use --force to overwrite (your changes would be lost)",
                present.join(", ")
            )));
        }
    }
    for (path, text) in &targets {
        crate::state::local::write_atomically(path, text.as_bytes()).map_err(io_error(path))?;
    }
    Ok(targets.into_iter().map(|(path, _)| path).collect())
}

/// The built-in templates, replaced by the cluster directory's own where present.
pub fn load_templates(dir: &Path) -> Result<Templates, EngineError> {
    let mut overrides = BTreeMap::new();
    for (name, _) in render::BUILT_IN {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
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

/// Everything rendered for one cluster against its state.
#[derive(Debug, Clone)]
pub struct Build {
    pub config: ClusterConfig,
    pub prior: Option<State>,
    pub image: ImageState,
    pub tls: pki::ResolvedTls,
    pub rendered: Rendered,
}

/// Picks the AMI: `amiId` if set, else the one the state already uses for this channel, else
/// the newest of the channel (one EC2 call, only when the state has none).
async fn resolve_image<I: ImageCatalog>(
    config: &ClusterConfig,
    prior: Option<&State>,
    images: &I,
) -> Result<ImageState, EngineError> {
    if let Some(ami_id) = &config.ami_id {
        return Ok(ImageState {
            release_channel: config.release_channel,
            ami_id: ami_id.clone(),
        });
    }
    if let Some(image) = prior.and_then(|s| s.image.as_ref())
        && image.release_channel == config.release_channel
    {
        return Ok(image.clone());
    }
    Ok(ImageState {
        release_channel: config.release_channel,
        ami_id: images.latest_flatcar(config.release_channel).await?,
    })
}

/// Renders everything against `prior`, issuing only what changed.
pub async fn build<V: KeyVault, I: ImageCatalog>(
    dir: &Path,
    config: ClusterConfig,
    prior: Option<State>,
    vault: &V,
    images: &I,
    now: OffsetDateTime,
) -> Result<Build, EngineError> {
    let templates = load_templates(dir)?;
    let empty = Default::default();
    let previous_tls = prior.as_ref().map(|s| &s.tls).unwrap_or(&empty);
    let image = resolve_image(&config, prior.as_ref(), images).await?;
    let tls = pki::resolve(
        &config,
        previous_tls,
        Some(vault),
        now,
        DEFAULT_RENEW_BEFORE,
    )
    .await?;
    let rendered = render::render(
        &templates,
        &RenderInputs {
            config: &config,
            ami_id: &image.ami_id,
            tls: &tls.assets,
        },
    )?;
    Ok(Build {
        config,
        prior,
        image,
        tls,
        rendered,
    })
}

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

/// `kube-aws export`: the whole stack as one CloudFormation JSON document.
pub async fn export(
    dir: &Path,
    aws: &AwsOptions,
    now: OffsetDateTime,
) -> Result<String, EngineError> {
    let (config, context, backend) = open(dir, aws).await?;
    let prior = backend.load(&config).await?.map(|l| l.state);
    let build = build(dir, config, prior, &context.kms(), &context.images(), now).await?;
    Ok(build.rendered.stack_template)
}
