//! Opens the state backend `cluster.yaml` names: the local `state/` folder or an S3 bucket.

use std::path::Path;

use crate::audit::AuditLog;
use crate::aws::AwsContext;
use crate::config::{ClusterConfig, StateBackendKind};
use crate::state::local::LocalObjects;
use crate::state::objects::{Layout, Objects};
use crate::state::s3::S3Objects;
use crate::state::store::{Loaded, StateStore};

use super::EngineError;

/// The state store and audit log of one cluster.
#[derive(Debug, Clone)]
pub struct Backend {
    pub store: StateStore<Objects>,
    pub audit: AuditLog<Objects>,
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
        }
    }

    /// The backend `config` names; `aws` is needed only for S3.
    pub fn open(dir: &Path, config: &ClusterConfig, aws: &AwsContext) -> Backend {
        match config.state.backend {
            StateBackendKind::Local => Backend::local(dir),
            StateBackendKind::S3 => {
                let region = config.state.region.as_deref().unwrap_or(&config.region);
                let bucket = config.state.bucket.as_deref().unwrap_or_default();
                Backend::s3(
                    S3Objects::connect(aws, region, bucket),
                    config.state.key.as_deref().unwrap_or_default(),
                )
            }
        }
    }

    /// The current state, checked to belong to this cluster.
    pub async fn load(&self, config: &ClusterConfig) -> Result<Option<Loaded>, EngineError> {
        let loaded = self.store.load().await?;
        if let Some(loaded) = &loaded
            && loaded.state.cluster_name != config.cluster_name
        {
            return Err(EngineError::Refused(format!(
                "the state at {} belongs to cluster \"{}\" but cluster.yaml names \"{}\"",
                self.store.location(),
                loaded.state.cluster_name,
                config.cluster_name
            )));
        }
        Ok(loaded)
    }
}
