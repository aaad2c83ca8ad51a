//! Renders the cluster against its state: one build for `plan`, `export` and `validate`,
//! online (issuing through KMS, the newest AMI from EC2) or offline (stand-ins, listed as
//! skipped).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use time::{Duration, OffsetDateTime};

use super::Progress;
use crate::assets::TlsAssets;
use crate::aws::images::ImageCatalog;
use crate::aws::kms::KeyVault;
use crate::config::ClusterConfig;
use crate::engine::{EngineError, load_templates, pki};
use crate::planfile::KNOWN_AFTER_APPLY;
use crate::render::{self, RenderInputs, Rendered, Templates};
use crate::state::{ImageState, State};

static NO_TLS: TlsAssets = TlsAssets::new();

/// What a build renders from, besides the cluster directory.
#[derive(Debug, Clone)]
pub struct BuildInputs<'a> {
    pub config: &'a ClusterConfig,
    pub prior: Option<&'a State>,
    /// The certificates and keys to reuse: the state's, plus any an interrupted apply shipped.
    pub previous_tls: &'a TlsAssets,
    pub now: OffsetDateTime,
    /// Certificates closer than this to expiry are issued again.
    pub renew_before: Duration,
    /// Move the Secrets encryption key one rotation step on (needs a vault).
    pub rotate_secrets_key: bool,
    /// The AMI id rendered when no image catalog is given and none is pinned.
    pub offline_ami: &'a str,
}

impl<'a> BuildInputs<'a> {
    /// Renders `config` against `prior` as `plan` would: reusing the state's certificates,
    /// renewing within the default window, rotating nothing.
    pub fn new(
        config: &'a ClusterConfig,
        prior: Option<&'a State>,
        now: OffsetDateTime,
    ) -> BuildInputs<'a> {
        BuildInputs {
            config,
            prior,
            previous_tls: prior.map_or(&NO_TLS, |s| &s.tls),
            now,
            renew_before: crate::engine::DEFAULT_RENEW_BEFORE,
            rotate_secrets_key: false,
            offline_ami: KNOWN_AFTER_APPLY,
        }
    }
}

/// Everything rendered for one cluster against its state.
#[derive(Debug, Clone)]
pub struct Build {
    pub image: ImageState,
    pub tls: pki::ResolvedTls,
    pub templates: Templates,
    pub rendered: Rendered,
    /// What was not looked at because there was no vault or catalog (offline).
    pub skipped: Vec<String>,
    /// The hash of what `rendered` was made from ([`render_key`]).
    pub render_key: String,
    /// The first step of moving to `stackPerPool` ([`moves_to_pool_stacks`]).
    pub keep_pools_in_cluster_stack: bool,
    /// With `stackPerPool`, each pool's own render key ([`pool_render_keys`]).
    pub pool_keys: BTreeMap<String, String>,
}

/// What a render is made from besides cluster.yaml, resolved first: a plan whose
/// [`render_key`] is the state's knows the render without making it.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub image: ImageState,
    pub tls: pki::ResolvedTls,
    pub templates: Templates,
    pub skipped: Vec<String>,
    pub render_key: String,
    /// This render moves an applied single-stack cluster to `stackPerPool` (its first step).
    pub keep_pools_in_cluster_stack: bool,
    /// With `stackPerPool`, each pool's own render key ([`pool_render_keys`]).
    pub pool_keys: BTreeMap<String, String>,
}

/// The hash of everything a render reads: the build's own sources (code, built-in templates
/// and release data, hashed by `build.rs`), cluster.yaml as parsed, the cluster directory's
/// template overrides, the AMI and the TLS assets. Rendering is a pure function of these (it
/// reads no clock and no other file), so equal keys mean byte-identical assets.
pub fn render_key(
    config: &ClusterConfig,
    templates: &Templates,
    ami_id: &str,
    tls: &TlsAssets,
    keep_pools_in_cluster_stack: bool,
) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    // Each part labelled and length-prefixed, so no two different inputs feed equal bytes.
    let mut feed = |label: &str, bytes: &[u8]| {
        hasher.update(label.as_bytes());
        hasher.update([0]);
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    feed("sources", env!("KUBE_AWS_SOURCE_SHA256").as_bytes());
    // A built-in's text is part of the sources hash already; only overrides are fed.
    for (name, text) in templates.overrides() {
        feed(&format!("override:{name}"), text.as_bytes());
    }
    // Plain serde_json: struct fields in declaration order and BTreeMaps sorted give the same
    // bytes for the same values within one build, which the sources hash pins.
    let json = |what: &str, value: serde_json::Result<Vec<u8>>| {
        value.unwrap_or_else(|e| panic!("{what} serialises: {e}"))
    };
    feed("config", &json("cluster.yaml", serde_json::to_vec(config)));
    feed("ami", ami_id.as_bytes());
    feed("tls", &json("the TLS assets", serde_json::to_vec(tls)));
    // Only fed when set, so every other key stays what it was.
    if keep_pools_in_cluster_stack {
        feed("layout", b"pools kept in the cluster stack");
    }
    hex::encode(hasher.finalize())
}

/// With `stackPerPool`, the render key of each pool's stack and cloud-config: everything the
/// cluster's key hashes but the other pools, so one pool's change leaves the others' keys as
/// they were. Empty for a cluster whose pools share its stack.
pub fn pool_render_keys(
    config: &ClusterConfig,
    templates: &Templates,
    ami_id: &str,
    tls: &TlsAssets,
) -> BTreeMap<String, String> {
    if !config.stack_per_pool {
        return BTreeMap::new();
    }
    // The built-in pool template and worker cloud-config read no other pool; an override
    // might (`cluster.nodePools`), so then every pool's key covers them all.
    let overridden = templates.overrides().next().is_some();
    let without_pools = ClusterConfig {
        node_pools: if overridden {
            config.node_pools.clone()
        } else {
            Vec::new()
        },
        ..config.clone()
    };
    let shared = render_key(&without_pools, templates, ami_id, tls, false);
    config
        .worker_pools()
        .into_iter()
        .map(|pool| {
            let resolved = serde_json::to_vec(&pool).expect("a pool serialises");
            let key = crate::hash::sha256_hex([shared.as_bytes(), &[0], &resolved].concat());
            (pool.name, key)
        })
        .collect()
}

/// Renders the cluster in `dir`. With a `vault`, certificates are issued and sealed; without,
/// what would be issued stands in as a placeholder. With `images`, the AMI is the newest of the
/// channel when neither cluster.yaml nor the state pins one.
pub async fn build<V: KeyVault, I: ImageCatalog>(
    dir: &Path,
    inputs: &BuildInputs<'_>,
    vault: Option<&V>,
    images: Option<&I>,
    progress: Progress<'_>,
) -> Result<Build, EngineError> {
    prepare(dir, inputs, vault, images, progress)
        .await?
        .render(inputs.config)
}

/// Whether this plan is the first step of moving an applied single-stack cluster to
/// `stackPerPool`: its pools get their own stacks while they stay in the cluster stack.
pub fn moves_to_pool_stacks(config: &ClusterConfig, prior: Option<&State>) -> bool {
    config.stack_per_pool && prior.is_some_and(|s| s.stack.is_some() && s.pool_stacks.is_empty())
}

/// Reads the templates and resolves the AMI and the TLS assets: everything but the render.
pub async fn prepare<V: KeyVault, I: ImageCatalog>(
    dir: &Path,
    inputs: &BuildInputs<'_>,
    vault: Option<&V>,
    images: Option<&I>,
    progress: Progress<'_>,
) -> Result<Prepared, EngineError> {
    let config = inputs.config;
    // A template that cannot be read fails before any AWS call.
    let templates = load_templates(dir)?;
    let mut skipped = Vec::new();
    let image = resolve_image(inputs, images, &mut skipped).await?;
    progress("rendering assets");
    if vault.is_none() {
        skipped.push("issuing certificates (KMS Encrypt): new ones are shown, not made".into());
    }
    let mut tls = pki::resolve(
        config,
        inputs.previous_tls,
        vault,
        inputs.now,
        inputs.renew_before,
    )
    .await?;
    if inputs.rotate_secrets_key {
        let Some(vault) = vault else {
            return Err(EngineError::RotationNeedsKms);
        };
        progress("rotating the Secrets encryption key");
        pki::rotate_secrets_key(config, &mut tls, vault).await?;
    }
    let keep_pools_in_cluster_stack = moves_to_pool_stacks(config, inputs.prior);
    let render_key = render_key(
        config,
        &templates,
        &image.ami_id,
        &tls.assets,
        keep_pools_in_cluster_stack,
    );
    let pool_keys = pool_render_keys(config, &templates, &image.ami_id, &tls.assets);
    Ok(Prepared {
        image,
        tls,
        templates,
        skipped,
        render_key,
        keep_pools_in_cluster_stack,
        pool_keys,
    })
}

/// The stacks a plan applies, rendered again from cluster.yaml, the cluster directory's
/// templates and the AMI and TLS assets of the plan's own `new_state`, with nothing issued or
/// looked up (rendering reads nothing else): what apply holds an unsigned plan's templates to.
pub fn render_for_apply(
    dir: &Path,
    config: &ClusterConfig,
    prior: Option<&State>,
    next: &State,
) -> Result<Rendered, EngineError> {
    let Some(image) = next.image.clone() else {
        return Err(EngineError::Mismatch(crate::engine::PlanMismatch::NoImage));
    };
    // The plan deployed one etcd member closer to etcdCount; so does this render.
    let deployed = super::as_deployed(config, prior);
    let config = &*deployed;
    let prepared = Prepared {
        image,
        tls: pki::ResolvedTls {
            assets: next.tls.clone(),
            issued: Vec::new(),
        },
        templates: load_templates(dir)?,
        skipped: Vec::new(),
        render_key: String::new(),
        keep_pools_in_cluster_stack: moves_to_pool_stacks(config, prior),
        pool_keys: BTreeMap::new(),
    };
    Ok(prepared.render(config)?.rendered)
}

impl Prepared {
    /// Renders every asset.
    pub fn render(self, config: &ClusterConfig) -> Result<Build, EngineError> {
        self.render_reusing(config, &BTreeSet::new())
    }

    /// The pools whose stack and cloud-config `prior` already holds as this render would make
    /// them: their key is the one it records, and it records their cloud-config.
    pub fn reusable_pools(&self, prior: Option<&State>) -> BTreeSet<String> {
        let Some(prior) = prior else {
            return BTreeSet::new();
        };
        self.pool_keys
            .iter()
            .filter(|(pool, key)| {
                prior
                    .pool_stacks
                    .get(*pool)
                    .and_then(|s| s.render_key.as_ref())
                    == Some(key)
                    && prior.assets.contains_key(&crate::assets::asset_path(
                        crate::assets::AssetKind::CloudConfig,
                        &crate::assets::CloudConfigId::Worker(pool.to_string()).name(),
                    ))
            })
            .map(|(pool, _)| pool.clone())
            .collect()
    }

    /// Renders every asset but those of the pools in `reuse` (see [`Self::reusable_pools`]).
    pub fn render_reusing(
        self,
        config: &ClusterConfig,
        reuse: &BTreeSet<String>,
    ) -> Result<Build, EngineError> {
        let rendered = render::render(
            &self.templates,
            &RenderInputs {
                config,
                ami_id: &self.image.ami_id,
                tls: &self.tls.assets,
                keep_pools_in_cluster_stack: self.keep_pools_in_cluster_stack,
                reuse_pools: reuse,
            },
        )?;
        Ok(Build {
            image: self.image,
            tls: self.tls,
            templates: self.templates,
            rendered,
            skipped: self.skipped,
            render_key: self.render_key,
            keep_pools_in_cluster_stack: self.keep_pools_in_cluster_stack,
            pool_keys: self.pool_keys,
        })
    }
}

impl Build {
    /// Refuses a render that the offline part of `validate` finds errors in: a plan is never
    /// made of files it rejects (every pool's cloud-config, as `validate` checks them).
    pub fn refuse_invalid(&self) -> Result<(), EngineError> {
        let findings: Vec<_> = crate::validate::rendered::check(&self.rendered, &self.templates)
            .into_iter()
            .filter(|f| f.severity == crate::finding::Severity::Error)
            .collect();
        if findings.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Invalid { findings })
        }
    }
}

/// Picks the AMI: `amiId` if set, else the one the state already uses for this channel, else
/// the newest of the channel (one EC2 call, only when the state has none), else offline's
/// stand-in.
async fn resolve_image<I: ImageCatalog>(
    inputs: &BuildInputs<'_>,
    images: Option<&I>,
    skipped: &mut Vec<String>,
) -> Result<ImageState, EngineError> {
    let config = inputs.config;
    let pinned = config.ami_id.clone().or_else(|| {
        inputs
            .prior
            .and_then(|s| s.image.as_ref())
            .filter(|i| i.release_channel == config.release_channel)
            .map(|i| i.ami_id.clone())
    });
    let ami_id = match (pinned, images) {
        (Some(ami), _) => ami,
        (None, Some(images)) => images.latest_flatcar(config.release_channel).await?,
        (None, None) => {
            skipped.push(format!(
                "the Flatcar {} AMI lookup (EC2 DescribeImages)",
                config.release_channel.as_str()
            ));
            inputs.offline_ami.to_string()
        }
    };
    Ok(ImageState {
        release_channel: config.release_channel,
        ami_id,
    })
}
