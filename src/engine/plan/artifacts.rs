//! The artifact bucket: what the stack reads from S3 (add-on manifests, and templates over
//! CloudFormation's inline limit) uploaded under content-addressed keys, and read back for
//! diffs.

use std::collections::{BTreeMap, BTreeSet};

use crate::assets::{AssetKind, AssetRecord};
use crate::aws::AwsContext;
use crate::aws::s3::S3Objects;
use crate::config::{ArtifactLocation, ClusterConfig};
use crate::engine::EngineError;
use crate::hash::sha256_hex;
use crate::render::{self, Rendered};
use crate::state::StateError;
use crate::state::objects::{ObjectStore, Precondition};

/// CloudFormation's limit for a template passed inline; larger ones go through S3.
const INLINE_TEMPLATE_LIMIT: usize = 51_200;

/// The deployed text of each add-on manifest that changes, read back from the artifact bucket
/// by its old hash so plan can show a diff. One that cannot be read is listed by hash alone.
pub async fn previous_manifests(
    config: &ClusterConfig,
    context: &AwsContext,
    prior: &BTreeMap<String, AssetRecord>,
    desired: &BTreeMap<String, AssetRecord>,
) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let Some(artifacts) = config.artifacts() else {
        return found;
    };
    let objects = artifact_objects(context, &artifacts);
    for (path, new) in desired {
        let Some(old) = prior.get(path) else { continue };
        if new.kind != AssetKind::Manifest || old.sha256 == new.sha256 {
            continue;
        }
        if let Ok(Some(object)) = objects.get(&artifacts.addon_key(&old.sha256)).await
            && sha256_hex(&object.bytes) == old.sha256
            && let Ok(text) = String::from_utf8(object.bytes)
        {
            found.insert(path.clone(), text);
        }
    }
    found
}

fn artifact_objects(context: &AwsContext, artifacts: &ArtifactLocation) -> S3Objects {
    S3Objects::connect(context, &artifacts.region, &artifacts.bucket)
}

/// The artifact bucket's location and objects; rendering already refused a cluster without one.
fn artifact_store(
    config: &ClusterConfig,
    context: &AwsContext,
) -> Result<(ArtifactLocation, S3Objects), EngineError> {
    let artifacts = config
        .artifacts()
        .ok_or(render::RenderError::NoArtifactBucket)?;
    let objects = artifact_objects(context, &artifacts);
    Ok((artifacts, objects))
}

/// Uploads every add-on manifest whose key is not in `present`. Overwriting is safe because a
/// key names its content's hash, and it restores an object someone changed: the controllers
/// refuse one that does not match.
async fn upload_addons(
    objects: &S3Objects,
    rendered: &Rendered,
    present: &BTreeSet<String>,
) -> Result<(), EngineError> {
    for object in rendered
        .addon_objects
        .iter()
        .filter(|o| !present.contains(&o.key))
    {
        let text =
            rendered
                .manifests
                .get(&object.name)
                .ok_or_else(|| EngineError::AddonNotRendered {
                    name: object.name.clone(),
                })?;
        objects
            .put(&object.key, text.as_bytes(), Precondition::Overwrite)
            .await
            .map_err(StateError::from)?;
    }
    Ok(())
}

/// Uploads the add-on objects the deployed stack names that are no longer in the bucket.
/// Changed content is not looked for here: the controllers refuse it at boot, and every plan
/// that changes the stack uploads all of them again.
pub async fn restore_missing_addons(
    config: &ClusterConfig,
    context: &AwsContext,
    rendered: &Rendered,
) -> Result<(), EngineError> {
    if context.is_preview() {
        return Ok(());
    }
    let (artifacts, objects) = artifact_store(config, context)?;
    let present: BTreeSet<String> = objects
        .list(&artifacts.addons_prefix(), None, 100_000)
        .await
        .map_err(StateError::from)?
        .into_iter()
        .collect();
    upload_addons(&objects, rendered, &present).await
}

/// Uploads what the stack reads from S3 to the artifact bucket under content-addressed keys:
/// every add-on manifest, and the template when it is over the inline limit (its URL is
/// returned).
/// Uploads a template over the inline limit (content-addressed, so plan and apply upload it
/// once) and gives its URL; `None` when it goes inline.
pub async fn upload_template(
    config: &ClusterConfig,
    context: &AwsContext,
    template_sha256: &str,
    body: &str,
) -> Result<Option<String>, EngineError> {
    if body.len() <= INLINE_TEMPLATE_LIMIT {
        return Ok(None);
    }
    let (artifacts, objects) = artifact_store(config, context)?;
    let key = artifacts.template_key(template_sha256);
    objects
        .put(&key, body.as_bytes(), Precondition::Overwrite)
        .await
        .map_err(StateError::from)?;
    Ok(Some(artifacts.url(&key)))
}

pub async fn upload_artifacts(
    config: &ClusterConfig,
    context: &AwsContext,
    rendered: &Rendered,
    template_sha256: &str,
    body: &str,
) -> Result<Option<String>, EngineError> {
    let (_, objects) = artifact_store(config, context)?;
    if !context.is_preview() {
        upload_addons(&objects, rendered, &BTreeSet::new()).await?;
    }
    upload_template(config, context, template_sha256, body).await
}
